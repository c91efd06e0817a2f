//! Appending, group commit, rotation, segment removal and close.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cxdb_wal::{Error, Wal, WalConfig};

use crate::{config, file_len, payload, records, segment_files, write_wal};

#[test]
fn round_trip_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let payloads: Vec<_> = (0..50)
        .map(|i| payload(i, (i as usize * 37) % 120))
        .collect();
    let (wal, _) = Wal::open(config(dir.path(), 300), 0).unwrap();
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(wal.append_blocking(p.clone()).unwrap(), i as u64 + 1);
    }
    let stats = wal.stats();
    assert_eq!((stats.last_seq, stats.appends), (50, 50));
    assert_eq!(wal.last_seq(), 50);
    drop(wal);

    let files = segment_files(dir.path());
    assert!(files.len() > 5, "expected several segments, got {files:?}");
    assert_eq!(stats.segments, files.len());
    assert_eq!(stats.bytes, files.iter().map(|f| file_len(f)).sum::<u64>());
    assert!(files[0].ends_with("00000000000000000001.wal"));

    let (wal, replayed) = Wal::open(config(dir.path(), 300), 0).unwrap();
    assert_eq!(replayed, records(&payloads));
    assert_eq!(wal.append_blocking(payload(50, 10)).unwrap(), 51);
    drop(wal);

    let (wal, replayed) = Wal::open(config(dir.path(), 300), 20).unwrap();
    let mut expected = records(&payloads);
    expected.push(cxdb_wal::ReplayedRecord {
        seq: 51,
        payload: payload(50, 10),
    });
    assert_eq!(replayed, expected[20..]);
    assert_eq!(wal.last_seq(), 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(WalConfig::new(dir.path()), 0).unwrap();
    let wal = Arc::new(wal);
    let tasks: Vec<_> = (0..8u64)
        .map(|task| {
            let wal = Arc::clone(&wal);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..200 {
                    let tag = task * 1000 + i;
                    acked.push((wal.append(payload(tag, 64)).await.unwrap(), tag));
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0].0 < w[1].0),
            "one task's seqs must increase"
        );
        acked.extend(seqs);
    }
    acked.sort_unstable();
    let seqs: Vec<u64> = acked.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=1600).collect::<Vec<_>>());

    let stats = wal.stats();
    assert_eq!(stats.appends, 1600);
    assert!(
        stats.syncs < stats.appends,
        "group commit should share fsyncs: {} syncs for {} appends",
        stats.syncs,
        stats.appends
    );
    wal.close().unwrap();

    // Every acknowledged seq holds the payload its appender sent.
    let (_wal, replayed) = Wal::open(WalConfig::new(dir.path()), 0).unwrap();
    assert_eq!(replayed.len(), 1600);
    for (record, (seq, tag)) in replayed.iter().zip(&acked) {
        assert_eq!(record.seq, *seq);
        assert_eq!(record.payload, payload(*tag, 64));
    }
}

/// More records than one `writev` takes (512 records of 2 slices) queued at
/// once, of varied sizes including empty ones: each lands whole, in seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_commit_writes_every_record_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(WalConfig::new(dir.path()), 0).unwrap();
    let sizes: Vec<usize> = (0..1_500).map(|i| (i * 37) % 300).collect();
    let appends = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| wal.append(payload(i as u64, len)));
    let seqs: Vec<u64> = futures::future::join_all(appends)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let syncs = wal.stats().syncs;
    assert!(syncs < 1_500, "{syncs} syncs: the appends were not grouped");
    wal.close().unwrap();

    let (_wal, replayed) = Wal::open(WalConfig::new(dir.path()), 0).unwrap();
    assert_eq!(replayed.len(), sizes.len());
    for (i, (record, seq)) in replayed.iter().zip(&seqs).enumerate() {
        assert_eq!(record.seq, *seq);
        assert_eq!(record.payload, payload(i as u64, sizes[i]));
    }
}

#[test]
fn remove_through_deletes_only_covered_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    // 60-byte payloads make 76-byte records: a segment rotates after its second record.
    let (wal, _) = Wal::open(config(dir.path(), 100), 0).unwrap();
    for i in 0..9 {
        wal.append_blocking(payload(i, 60)).unwrap();
    }
    let names = || -> Vec<u64> {
        segment_files(dir.path())
            .iter()
            .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(names(), [1, 3, 5, 7, 9]);
    assert_eq!(wal.remove_through(4).unwrap(), 2);
    assert_eq!(names(), [5, 7, 9]);
    assert_eq!(
        wal.remove_through(5).unwrap(),
        0,
        "segment 5..=6 is not fully covered"
    );
    assert_eq!(
        wal.remove_through(100).unwrap(),
        2,
        "the active segment stays"
    );
    assert_eq!(names(), [9]);

    assert_eq!(wal.rotate().unwrap(), 9);
    assert_eq!(
        wal.rotate().unwrap(),
        9,
        "rotating an empty segment is a no-op"
    );
    assert_eq!(names(), [9, 10]);
    assert_eq!(wal.remove_through(9).unwrap(), 1);
    assert_eq!(names(), [10]);
    assert_eq!(wal.stats().segments, 1);
    drop(wal);

    // Every record is gone; the caller's position decides where seqs continue.
    let (wal, replayed) = Wal::open(config(dir.path(), 100), 9).unwrap();
    assert!(replayed.is_empty());
    assert_eq!(wal.append_blocking(payload(10, 5)).unwrap(), 10);
    drop(wal);

    for file in segment_files(dir.path()) {
        std::fs::remove_file(file).unwrap();
    }
    let (wal, replayed) = Wal::open(config(dir.path(), 100), 500).unwrap();
    assert!(replayed.is_empty());
    assert_eq!(wal.last_seq(), 500);
    assert_eq!(wal.append_blocking(payload(501, 5)).unwrap(), 501);
    drop(wal);
    let (_wal, replayed) = Wal::open(config(dir.path(), 100), 500).unwrap();
    assert_eq!(replayed.iter().map(|r| r.seq).collect::<Vec<_>>(), [501]);
}

#[test]
fn opening_ahead_of_the_log_leaves_a_gap_only_the_caller_may_skip() {
    let dir = tempfile::tempdir().unwrap();
    write_wal(dir.path(), 1 << 20, &[payload(1, 3), payload(2, 3)]);
    let (wal, replayed) = Wal::open(WalConfig::new(dir.path()), 50).unwrap();
    assert!(replayed.is_empty());
    assert_eq!(wal.append_blocking(payload(51, 3)).unwrap(), 51);
    drop(wal);

    let (_wal, replayed) = Wal::open(WalConfig::new(dir.path()), 50).unwrap();
    assert_eq!(replayed.iter().map(|r| r.seq).collect::<Vec<_>>(), [51]);
    drop(_wal);

    // Asking for seqs 3..=50, which were never written, is an error, not silence.
    let Err(Error::Corrupt {
        segment,
        offset,
        reason,
    }) = Wal::open(WalConfig::new(dir.path()), 0)
    else {
        panic!("a gap the caller did not persist must be reported");
    };
    assert!(segment.ends_with("00000000000000000051.wal"), "{segment:?}");
    assert_eq!(offset, 0);
    assert!(reason.contains("previous one ends at seq 2"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_after_close_fails_and_acknowledged_appends_survive() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(WalConfig::new(dir.path()), 0).unwrap();
    let wal = Arc::new(wal);
    let tasks: Vec<_> = (0..4u64)
        .map(|task| {
            let wal = Arc::clone(&wal);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    match wal.append(payload(task * 1000 + i, 16)).await {
                        Ok(seq) => acked.push(seq),
                        Err(Error::Closed) => return acked,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
                acked
            })
        })
        .collect();
    // Close while appends are in flight, once some have landed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while wal.last_seq() < 20 {
        assert!(Instant::now() < deadline, "appends made no progress");
        tokio::task::yield_now().await;
    }
    wal.close().unwrap();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }

    let err = wal.append(payload(0, 1)).await.unwrap_err();
    assert!(matches!(err, Error::Closed));
    assert_eq!(
        err.to_string(),
        "WAL is closed; no more appends are accepted"
    );
    assert!(matches!(
        wal.append_blocking(payload(0, 1)),
        Err(Error::Closed)
    ));
    assert!(matches!(wal.rotate(), Err(Error::Closed)));
    wal.close().unwrap();

    // Exactly the acknowledged appends are on disk.
    acked.sort_unstable();
    let (_wal, replayed) = Wal::open(WalConfig::new(dir.path()), 0).unwrap();
    assert_eq!(replayed.iter().map(|r| r.seq).collect::<Vec<_>>(), acked);
}

//! Replay after crashes and corruption: torn tails are cut, anything else is reported.

use std::fs;
use std::path::Path;

use bytes::Bytes;
use cxdb_wal::{Error, Recovery, Wal, WalConfig};
use proptest::prelude::*;

use crate::{config, file_len, payload, record_ends, records, segment_files, write_wal};

/// Opens `dir` expecting exactly the first `survivors` of `payloads`, then checks that
/// appending continues right after them and that the repair itself survives a reopen.
fn assert_recovers_prefix(
    dir: &Path,
    segment_max_bytes: u64,
    payloads: &[Bytes],
    survivors: usize,
) {
    let (wal, replayed) = Wal::open(config(dir, segment_max_bytes), 0).unwrap();
    assert_eq!(replayed, records(&payloads[..survivors]));
    let next = survivors as u64 + 1;
    assert_eq!(wal.append_blocking(payload(next, 9)).unwrap(), next);
    drop(wal);
    let (_wal, replayed) = Wal::open(config(dir, segment_max_bytes), 0).unwrap();
    assert_eq!(replayed.len(), survivors + 1);
    assert_eq!(replayed[survivors].payload, payload(next, 9));
}

#[test]
fn torn_tail_is_cut_at_the_last_whole_record() {
    let sizes = [10, 0, 33, 100, 7];
    let payloads: Vec<_> = (1..).zip(sizes).map(|(i, len)| payload(i, len)).collect();
    let ends = record_ends(&sizes);
    let template = tempfile::tempdir().unwrap();
    write_wal(template.path(), 1 << 20, &payloads);
    let name = segment_files(template.path())[0]
        .file_name()
        .unwrap()
        .to_owned();
    let original = fs::read(template.path().join(&name)).unwrap();
    let total = original.len();
    assert_eq!(total as u64, ends[4]);

    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // Cut inside the last payload (1..=6), its header (7..=22), on a record boundary (23),
    // then inside the 100-byte payload and header of the record before it.
    for cut in [1, 6, 7, 8, 15, 22, 23, 24, 80, 123, 138, 139, 140] {
        cases.push((format!("cut {cut} bytes"), original[..total - cut].to_vec()));
    }
    for zeros in [1, 15, 16, 17, 4096] {
        let mut bytes = original.clone();
        bytes.resize(total + zeros, 0);
        cases.push((format!("{zeros} trailing zero bytes"), bytes));
    }
    let mut bytes = original.clone();
    bytes.extend([0xAB; 40]);
    cases.push(("40 garbage bytes".to_owned(), bytes));
    let mut bytes = original.clone();
    bytes[total - 1] ^= 0xFF;
    cases.push(("crc mismatch in the last record".to_owned(), bytes));

    for (case, bytes) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(&name);
        fs::write(&path, &bytes).unwrap();
        let whole = ends
            .iter()
            .filter(|&&end| end <= bytes.len() as u64)
            .count();
        let survivors = if case.starts_with("crc") { 4 } else { whole };

        let (wal, replayed) = Wal::open(config(dir.path(), 1 << 20), 0).unwrap();
        assert_eq!(replayed, records(&payloads[..survivors]), "{case}");
        assert_eq!(
            file_len(&path),
            ends[..survivors].last().copied().unwrap_or(8),
            "{case}"
        );
        drop(wal);
        assert_recovers_prefix(dir.path(), 1 << 20, &payloads, survivors);
    }
}

#[test]
fn torn_segment_header_is_rewritten() {
    let payloads: Vec<_> = (1..=3).map(|i| payload(i, 20)).collect();
    for keep in [0, 3, 7] {
        let dir = tempfile::tempdir().unwrap();
        // Small segments: the last file is the empty segment started after record 3.
        write_wal(dir.path(), 40, &payloads);
        let last = segment_files(dir.path()).pop().unwrap();
        assert!(last.ends_with("00000000000000000004.wal"));
        let bytes = fs::read(&last).unwrap();
        fs::write(&last, &bytes[..keep]).unwrap();
        assert_recovers_prefix(dir.path(), 40, &payloads, 3);
    }
}

fn corrupt_at(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5A;
    fs::write(path, bytes).unwrap();
}

fn open_err(dir: &Path, segment_max_bytes: u64) -> Error {
    match Wal::open(config(dir, segment_max_bytes), 0) {
        Ok(_) => panic!("open must refuse a corrupt WAL"),
        Err(e) => e,
    }
}

#[test]
fn corruption_in_the_middle_of_the_last_segment() {
    let sizes = [20; 5];
    let payloads: Vec<_> = (1..=5).map(|i| payload(i, 20)).collect();
    let ends = record_ends(&sizes);
    // (byte to flip, offset of the record it belongs to, expected reason)
    let cases = [
        (ends[0] + 16 + 3, ends[0], "crc mismatch"), // payload of record 2
        (ends[1] + 9, ends[1], "crc mismatch"),      // seq of record 3
        (8 + 3, 8, "payload length"),                // length of record 1
    ];
    for (flip, offset, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_wal(dir.path(), 1 << 20, &payloads);
        let path = segment_files(dir.path())[0].clone();
        corrupt_at(&path, flip);
        let before = fs::read(&path).unwrap();

        let err = open_err(dir.path(), 1 << 20);
        let Error::Corrupt {
            segment,
            offset: at,
            reason: why,
        } = &err
        else {
            panic!("expected Corrupt, got {err}");
        };
        assert_eq!((segment, *at), (&path, offset));
        assert!(why.contains(reason), "{why}");
        let msg = err.to_string();
        let expected = format!(
            "corrupt WAL record in {} at offset {offset}: ",
            path.display()
        );
        assert!(msg.starts_with(&expected), "{msg}");
        assert!(
            msg.ends_with("(cxdb serve --wal-recovery truncate)"),
            "{msg}"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            before,
            "strict recovery must not modify files"
        );

        let config = WalConfig {
            recovery: Recovery::TruncateCorrupt,
            ..WalConfig::new(dir.path())
        };
        let (wal, replayed) = Wal::open(config, 0).unwrap();
        let kept = ends
            .iter()
            .position(|&end| end == offset)
            .map_or(0, |i| i + 1);
        assert_eq!(replayed, records(&payloads[..kept]));
        assert_eq!(file_len(&path), offset);
        assert_eq!(wal.append_blocking(payload(9, 1)).unwrap(), kept as u64 + 1);
    }
}

#[test]
fn corruption_in_a_closed_segment() {
    // 60-byte payloads: two records a segment, files 1, 3, 5 and an empty 7.
    let payloads: Vec<_> = (1..=6).map(|i| payload(i, 60)).collect();
    let ends = record_ends(&[60, 60]);
    let cases = [
        ("crc", ends[0] + 20, ends[0], "crc mismatch"), // the last record of segment 1
        ("magic", 2, 0, "bad segment magic"),
    ];
    for (case, flip, offset, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        write_wal(dir.path(), 100, &payloads);
        let files = segment_files(dir.path());
        assert_eq!(files.len(), 4);
        corrupt_at(&files[0], flip);

        let err = open_err(dir.path(), 100);
        let Error::Corrupt {
            segment,
            offset: at,
            reason: why,
        } = &err
        else {
            panic!("{case}: expected Corrupt, got {err}");
        };
        assert_eq!((segment, *at), (&files[0], offset), "{case}");
        assert!(why.contains(reason), "{case}: {why}");

        let config = WalConfig {
            recovery: Recovery::TruncateCorrupt,
            ..config(dir.path(), 100)
        };
        let (wal, replayed) = Wal::open(config, 0).unwrap();
        let kept = usize::from(offset == ends[0]);
        assert_eq!(replayed, records(&payloads[..kept]), "{case}");
        assert_eq!(
            segment_files(dir.path()),
            files[..1],
            "{case}: later segments deleted"
        );
        assert_eq!(file_len(&files[0]), offset.max(8), "{case}");
        assert_eq!(wal.append_blocking(payload(9, 1)).unwrap(), kept as u64 + 1);
    }

    // A closed segment that lost its tail is not a torn tail: later segments depend on it.
    let dir = tempfile::tempdir().unwrap();
    write_wal(dir.path(), 100, &payloads);
    let first = segment_files(dir.path())[0].clone();
    let bytes = fs::read(&first).unwrap();
    fs::write(&first, &bytes[..bytes.len() - 5]).unwrap();
    let err = open_err(dir.path(), 100);
    assert!(
        matches!(&err, Error::Corrupt { offset, .. } if *offset == ends[0]),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn replay_after_any_cut_of_the_last_file_returns_the_whole_records_before_it(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..2000), 0..10),
        segment_max_bytes in prop_oneof![Just(1u64 << 30), 100u64..5000],
        cut in any::<prop::sample::Index>(),
    ) {
        let payloads: Vec<Bytes> = payloads.into_iter().map(Bytes::from).collect();
        let dir = tempfile::tempdir().unwrap();
        write_wal(dir.path(), segment_max_bytes, &payloads);
        let last = segment_files(dir.path()).pop().unwrap();
        let first_seq: usize = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let in_last: Vec<usize> = payloads[first_seq - 1..].iter().map(|p| p.len()).collect();
        let cut = cut.index(file_len(&last) as usize + 1) as u64;
        let whole = record_ends(&in_last).into_iter().filter(|&end| end <= cut).count();
        fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(cut).unwrap();

        let (wal, replayed) = Wal::open(config(dir.path(), segment_max_bytes), 0).unwrap();
        let survivors = first_seq - 1 + whole;
        prop_assert_eq!(replayed, records(&payloads[..survivors]));
        prop_assert_eq!(wal.append_blocking(Bytes::new()).unwrap(), survivors as u64 + 1);
    }
}

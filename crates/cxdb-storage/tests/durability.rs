use cxdb_model::Event;
use cxdb_storage::WriteOptions;

use crate::common::*;

fn wal_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("wal"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "wal"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn restart_replays_the_wal_and_persist_removes_segments() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    for i in 0..10 {
        let batch: Vec<Event> = (0..10)
            .map(|j| message("acme", &format!("r{i}-{j}"), DAY0 + i * HOUR))
            .collect();
        s.write(batch, WriteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    drop(s); // no graceful shutdown: only the WAL has the data
    let s = open(dir.path()).await;
    assert_eq!(s.stats().buffer_rows, 100, "replayed into the buffer");
    assert_eq!(all_ids(&s).await.len(), 100);
    let out = s.persist().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((out.files, out.rows), (1, 100));
    assert_eq!(s.stats().buffer_rows, 0);
    // The active segment (opened by persist's rotation) stays; all older are gone.
    assert_eq!(wal_files(dir.path()), 1);
    drop(s);
    let s = open(dir.path()).await;
    assert_eq!(
        s.stats().buffer_rows,
        0,
        "persisted records are not replayed again"
    );
    let seen = all_ids(&s).await;
    assert_eq!(seen.len(), 100);
    assert!(seen.values().all(|n| *n == 1));
}

#[tokio::test]
async fn graceful_shutdown_persists_the_buffer() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    s.write(vec![message("acme", "s1", DAY0)], WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        s.write(vec![message("acme", "s2", DAY0)], WriteOptions::default())
            .await
            .is_err()
    );
    assert_eq!(s.manifest().files.len(), 1);
}

#[tokio::test]
async fn persist_by_size_in_the_background() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut c = config(dir.path());
    c.background = true;
    c.persist_rows = 50;
    c.background_tick = std::time::Duration::from_millis(10);
    let s = cxdb_storage::Storage::open(c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let batch: Vec<Event> = (0..60)
        .map(|j| message("acme", &format!("b{j}"), DAY0))
        .collect();
    s.write(batch, WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.manifest().files.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "buffer over persist_rows was not persisted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(s.manifest().files[0].rows, 60);
    s.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn compaction_swaps_files_atomically_for_running_readers() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    for f in 0..4 {
        let batch: Vec<Event> = (0..25)
            .map(|j| message("acme", &format!("k{f}-{j}"), DAY0 + j))
            .collect();
        s.write(batch, WriteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        s.persist().await.unwrap_or_else(|e| panic!("{e}"));
    }
    // A reader that took its snapshot before the compaction...
    let before = s
        .snapshot(|_, _| true)
        .unwrap_or_else(|e| panic!("snapshot: {e}"));
    assert_eq!(before.files.len(), 4);
    let c = s.compact(Some(2)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((c.files_in, c.files_out), (4, 1));
    // ...still reads every event once from the old files (deferred deletion)...
    let old_rows: usize = s
        .read_snapshot(&before)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(old_rows, 100);
    // ...and a new reader sees one file with every event once.
    let after = s
        .snapshot(|_, _| true)
        .unwrap_or_else(|e| panic!("snapshot: {e}"));
    assert_eq!(after.files.len(), 1);
    assert_eq!(after.files[0].rows, 100);
    let seen = all_ids(&s).await;
    assert_eq!(seen.len(), 100);
    assert!(seen.values().all(|n| *n == 1));
    // Old files go only after the grace period.
    assert_eq!(
        s.delete_replaced_files(cxdb_model::time::now_micros())
            .await
            .unwrap_or(99),
        0
    );
    let later = cxdb_model::time::now_micros() + 301_000_000;
    assert_eq!(s.delete_replaced_files(later).await.unwrap_or(0), 4);
    for f in &before.files {
        assert!(
            !dir.path().join(&f.path).exists(),
            "{} still exists",
            f.path
        );
    }
    assert!(s.manifest().pending_deletes.is_empty());
}

#[tokio::test]
async fn retention_drops_old_partitions_of_one_tenant() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    let mut batch = Vec::new();
    for d in 0..10 {
        batch.push(message("acme", &format!("a{d}"), DAY0 + d * DAY));
        batch.push(message("beta", &format!("b{d}"), DAY0 + d * DAY));
    }
    s.write(batch, WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.persist().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.manifest().files.len(), 20);
    s.set_retention("acme", Some(3))
        .unwrap_or_else(|e| panic!("{e}"));
    // "now" = day 9 + 12h: keep days 6, 7, 8, 9 (cut-off day 6 = day 9 - 3).
    let now = DAY0 + 9 * DAY + 12 * HOUR;
    let r = s
        .apply_retention(now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.partitions, r.files, r.rows), (6, 6, 6));
    let seen = all_ids(&s).await;
    let acme: Vec<_> = {
        let mut v: Vec<_> = seen
            .keys()
            .filter(|(t, _)| t == "acme")
            .map(|(_, i)| i.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(acme, vec!["a6", "a7", "a8", "a9"]);
    assert_eq!(
        seen.keys().filter(|(t, _)| t == "beta").count(),
        10,
        "beta has no retention"
    );
    // Survives a restart.
    drop(s);
    let s = open(dir.path()).await;
    assert_eq!(s.manifest().retention_days.get("acme"), Some(&3));
    assert_eq!(all_ids(&s).await.len(), 14);
}

use std::collections::BTreeSet;

use arrow::array::{Array, StringArray};
use cxdb_model::Event;
use cxdb_storage::{Storage, WriteOptions};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::PageIndexPolicy;

use crate::common::*;

#[tokio::test]
async fn the_lake_is_hive_partitioned_parquet_any_engine_can_read() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    let mut events: Vec<Event> = Vec::new();
    for d in 0..2 {
        for i in 0..30 {
            // Written out of time order: the file must come out sorted.
            events.push(message(
                "acme",
                &format!("p{d}-{i}"),
                DAY0 + d * DAY + (30 - i) * 1_000_000,
            ));
        }
    }
    events.push(message("beta", "q1", DAY0));
    s.write(events, WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.persist().await.unwrap_or_else(|e| panic!("{e}"));

    let manifest = s.manifest();
    let dirs: BTreeSet<String> = manifest
        .files
        .iter()
        .map(|f| {
            f.path
                .rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        dirs.into_iter().collect::<Vec<_>>(),
        vec![
            "events/tenant_id=acme/date=2026-01-01",
            "events/tenant_id=acme/date=2026-01-02",
            "events/tenant_id=beta/date=2026-01-01",
        ]
    );
    // Read back with the plain parquet crate, no cxdb code involved.
    let mut ids = BTreeSet::new();
    for f in &manifest.files {
        let file = std::fs::File::open(dir.path().join(&f.path)).unwrap_or_else(|e| panic!("{e}"));
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
            .unwrap_or_else(|e| panic!("{e}"));
        let meta = builder.metadata().clone();
        let rg = meta.row_group(0);
        assert_eq!(
            rg.column(0).compression(),
            parquet::basic::Compression::ZSTD(Default::default())
        );
        assert!(rg.column(2).statistics().is_some(), "event_time statistics");
        assert!(meta.column_index().is_some(), "page index");
        assert!(
            rg.column(1).bloom_filter_offset().is_some(),
            "event_id Bloom filter"
        );
        let mut last_time = i64::MIN;
        for batch in builder.build().unwrap_or_else(|e| panic!("{e}")) {
            let batch = batch.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(batch.schema().fields().len(), 31);
            let id = batch
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .unwrap_or_else(|| panic!("ids"));
            let t = batch
                .column(2)
                .as_any()
                .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                .cloned()
                .unwrap_or_else(|| panic!("times"));
            for i in 0..id.len() {
                ids.insert(id.value(i).to_string());
                assert!(t.value(i) >= last_time, "sorted by event_time");
                last_time = t.value(i);
            }
        }
    }
    assert_eq!(ids.len(), 61);
}

#[tokio::test]
async fn memory_object_store_by_url() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut c = config(dir.path());
    c.object_store_url = Some("memory://".into());
    let s = Storage::open(c).await.unwrap_or_else(|e| panic!("{e}"));
    s.write(vec![message("acme", "m1", DAY0)], WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.persist().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!dir.path().join("events").exists(), "nothing on local disk");
    assert_eq!(all_ids(&s).await.len(), 1);

    let mut bad = config(dir.path());
    bad.object_store_url = Some("nosuch://x".into());
    let err = Storage::open(bad)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("invalid object store URL \"nosuch://x\""),
        "{err}"
    );
}

#[tokio::test]
async fn uncommitted_lake_files_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    s.write(vec![message("acme", "o1", DAY0)], WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.persist().await.unwrap_or_else(|e| panic!("{e}"));
    drop(s);
    // What a crash between upload and catalog commit leaves behind.
    let orphan = dir
        .path()
        .join("events/tenant_id=acme/date=2026-01-01/orphan.parquet");
    let committed = std::fs::read_dir(orphan.parent().unwrap_or(dir.path()))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.path())
        .unwrap_or_default();
    std::fs::copy(&committed, &orphan).unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    assert!(!orphan.exists());
    assert!(committed.exists());
    assert_eq!(all_ids(&s).await.len(), 1);
}

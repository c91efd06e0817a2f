use std::sync::Arc;

use cxdb_model::Event;
use cxdb_storage::{Storage, WriteOptions};

use crate::common::*;

#[tokio::test]
async fn accepted_events_are_visible_before_any_parquet_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    let events: Vec<Event> = (0..5)
        .map(|i| message("acme", &format!("e{i}"), DAY0 + i))
        .collect();
    let out = s
        .write(events, WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.accepted, 5);
    assert_eq!(s.stats().files, 0, "nothing persisted yet");
    let seen = all_ids(&s).await;
    assert_eq!(seen.len(), 5);
    assert!(seen.values().all(|n| *n == 1));
    // ingested_at is set by the server, whatever the client sent.
    let snap = s
        .snapshot(|_, _| true)
        .unwrap_or_else(|e| panic!("snapshot: {e}"));
    let batch = &snap.buffered[0].batches[0];
    let ingested = batch
        .column(3)
        .as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        .map(|a| a.value(0))
        .unwrap_or_default();
    assert!(ingested > DAY0, "ingested_at {ingested} was not set");
}

#[tokio::test]
async fn invalid_events_are_rejected_and_valid_ones_kept() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    let mut bad_csat = message("acme", "b1", DAY0);
    bad_csat.event_type = "csat.submitted".into();
    bad_csat.csat_score = Some(9);
    let bad_tenant = message("ACME", "b2", DAY0);
    let events = vec![
        message("acme", "g1", DAY0),
        bad_csat,
        bad_tenant,
        message("acme", "g2", DAY0),
    ];
    let out = s
        .write(events.clone(), WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.accepted, 2);
    let rejected: Vec<(usize, Option<String>, String)> = out
        .rejected
        .iter()
        .map(|r| (r.index, r.event_id.clone(), r.field.clone()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (1, Some("b1".into()), "csat_score".into()),
            (2, Some("b2".into()), "tenant_id".into())
        ]
    );
    let seen = all_ids(&s).await;
    assert_eq!(seen.len(), 2);
    assert!(!seen.contains_key(&("acme".into(), "b1".into())));

    // All-or-nothing: one bad event and nothing is written.
    let mut atomic = events;
    atomic[0].event_id = "g3".into();
    atomic[3].event_id = "g4".into();
    let out = s
        .write(
            atomic,
            WriteOptions {
                atomic: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((out.accepted, out.rejected.len()), (0, 2));
    assert_eq!(all_ids(&s).await.len(), 2);
    assert_eq!(
        s.stats().wal_appends,
        1,
        "rejected events never reach the log"
    );
}

#[tokio::test]
async fn duplicates_are_never_counted_twice() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    let w = WriteOptions::default();
    // Within one batch.
    let out = s
        .write(
            vec![
                message("acme", "d1", DAY0),
                message("acme", "d1", DAY0),
                message("beta", "d1", DAY0),
            ],
            w.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (out.accepted, out.duplicates.clone()),
        (2, vec![1]),
        "same id in another tenant is distinct"
    );
    // Later, still buffered.
    let out = s
        .write(vec![message("acme", "d1", DAY0)], w.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((out.accepted, out.duplicates.len()), (0, 1));
    // After persistence.
    s.persist().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.stats().buffer_rows, 0);
    let out = s
        .write(
            vec![message("acme", "d1", DAY0), message("acme", "d2", DAY0)],
            w.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((out.accepted, out.duplicates.clone()), (1, vec![0]));
    // With another event_time (another date partition): still the same event.
    let out = s
        .write(vec![message("acme", "d1", DAY0 + 5 * DAY)], w.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.duplicates, vec![0]);
    s.persist().await.unwrap_or_else(|e| panic!("{e}"));
    // After compaction.
    for i in 0..3 {
        s.write(vec![message("acme", &format!("c{i}"), DAY0)], w.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        s.persist().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let c = s.compact(Some(2)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((c.partitions, c.files_in, c.files_out), (1, 5, 1));
    let out = s
        .write(
            vec![message("acme", "d1", DAY0), message("acme", "c2", DAY0)],
            w.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.duplicates, vec![0, 1]);
    // After a restart: both persisted ids and ids only in the WAL.
    s.write(vec![message("acme", "w1", DAY0)], w.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(s);
    let s = open(dir.path()).await;
    let out = s
        .write(
            vec![
                message("acme", "d1", DAY0),
                message("acme", "w1", DAY0),
                message("acme", "new", DAY0),
            ],
            w.clone(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((out.accepted, out.duplicates.clone()), (1, vec![0, 1]));
    let seen = all_ids(&s).await;
    // acme: d1 d2 c0 c1 c2 w1 new; beta: d1
    assert_eq!(seen.len(), 8);
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    assert_eq!(s.stats().duplicates, 2, "counters start again at a restart");
}

#[tokio::test]
async fn concurrent_writers_of_the_same_ids_store_each_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let events: Vec<Event> = (0..200)
                .map(|i| message("acme", &format!("x{i}"), DAY0 + i))
                .collect();
            s.write(events, WriteOptions::default())
                .await
                .map(|o| o.accepted)
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(accepted, 200);
    let st = s.stats();
    assert_eq!(st.accepted, 200);
    assert_eq!(st.duplicates, 1400);
    assert!(st.wal_syncs <= st.wal_appends);
}

/// `write_batch` (Flight DoPut, columnar) and `write` (rows) are one set of
/// rules: the same requests give the same outcomes and the same stored rows.
#[tokio::test]
async fn batch_writes_follow_the_row_rules() {
    use cxdb_model::{EventBatchBuilder, events_from_batch};

    let (dir_rows, dir_cols) = (
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
    );
    let (rows, cols) = (open(dir_rows.path()).await, open(dir_cols.path()).await);
    let mut bad_csat = message("acme", "b1", DAY0);
    bad_csat.event_type = "csat.submitted".into();
    bad_csat.csat_score = Some(9);
    let mut private = message("acme", "p1", DAY0 + HOUR);
    private.is_public = Some(false);
    let mut bad_channel = message("acme", "b3", DAY0);
    bad_channel.channel = Some("pigeon".into());
    let scoped = WriteOptions {
        tenant: Some("acme".into()),
        ..Default::default()
    };
    let atomic = WriteOptions {
        atomic: true,
        ..Default::default()
    };
    let requests: Vec<(Vec<Event>, WriteOptions, bool)> = vec![
        (
            vec![
                message("acme", "g1", DAY0),
                bad_csat.clone(),
                message("ACME", "b2", DAY0),
                message("acme", "g2", DAY0 + DAY),
                message("acme", "g1", DAY0),
                private,
                bad_channel,
                message("beta", "g1", DAY0),
            ],
            WriteOptions::default(),
            true, // then persist: g1 is only in a Parquet file
        ),
        (
            vec![message("acme", "g1", DAY0), message("acme", "g3", DAY0)],
            WriteOptions::default(),
            false,
        ),
        (
            vec![message("acme", "g4", DAY0), message("beta", "g5", DAY0)],
            scoped,
            false,
        ),
        (vec![message("acme", "g6", DAY0), bad_csat], atomic, false),
    ];
    for (n, (events, opts, persist)) in requests.into_iter().enumerate() {
        let mut builder = EventBatchBuilder::with_capacity(events.len());
        for e in &events {
            builder.push(e);
        }
        let batch = builder.finish();
        let by_rows = rows
            .write(events, opts.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let by_cols = cols
            .write_batch(&batch, opts)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(by_rows, by_cols, "request {n}");
        if persist {
            rows.persist().await.unwrap_or_else(|e| panic!("{e}"));
            cols.persist().await.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // acme: g1 g2 p1 g3 g4; beta: g1 (b*, the second g1, g5, g6 refused).
    let stored = |s: Arc<Storage>| async move {
        let batches = s
            .read_snapshot(
                &s.snapshot(|_, _| true)
                    .unwrap_or_else(|e| panic!("snapshot: {e}")),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut events: Vec<Event> = batches
            .iter()
            .flat_map(|b| events_from_batch(b).unwrap_or_else(|e| panic!("{e}")))
            .map(|mut e| {
                assert!(e.ingested_at > DAY0, "ingested_at set");
                e.ingested_at = 0;
                e
            })
            .collect();
        events.sort_by(|a, b| (&a.tenant_id, &a.event_id).cmp(&(&b.tenant_id, &b.event_id)));
        events
    };
    let (from_rows, from_cols) = (stored(rows).await, stored(cols).await);
    let keys: Vec<(&str, &str, Option<bool>)> = from_cols
        .iter()
        .map(|e| (e.tenant_id.as_str(), e.event_id.as_str(), e.is_public))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("acme", "g1", Some(true)),
            ("acme", "g2", Some(true)),
            ("acme", "g3", Some(true)),
            ("acme", "g4", Some(true)),
            ("acme", "p1", Some(false)),
            ("beta", "g1", Some(true)),
        ]
    );
    assert_eq!(from_rows, from_cols);
}

/// A batch may omit nullable columns and `ingested_at`; a null in a
/// required column rejects that row only, naming the column.
#[tokio::test]
async fn batch_with_minimal_columns_and_a_null_id() {
    use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("event_id", DataType::Utf8, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("event_type", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["acme", "acme"])) as ArrayRef,
            Arc::new(StringArray::from(vec![Some("m1"), None])),
            Arc::new(TimestampMicrosecondArray::from(vec![DAY0, DAY0]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec!["custom.ping", "custom.ping"])),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = s
        .write_batch(&batch, WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.accepted, 1);
    let rejected: Vec<(usize, &str, &str)> = out
        .rejected
        .iter()
        .map(|r| (r.index, r.field.as_str(), r.message.as_str()))
        .collect();
    assert_eq!(rejected, vec![(1, "event_id", "is required")]);
    let seen = all_ids(&s).await;
    assert_eq!(seen.len(), 1);
    assert!(seen.contains_key(&("acme".into(), "m1".into())));
}

/// The ids and event times of a batch's rows, in row order.
fn ids_and_times(batch: &arrow::array::RecordBatch) -> Vec<(String, i64)> {
    let ids = batch
        .column(cxdb_model::column::EVENT_ID)
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap_or_else(|| panic!("event_id is not Utf8"));
    let times = batch
        .column(cxdb_model::column::EVENT_TIME)
        .as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        .unwrap_or_else(|| panic!("event_time is not a timestamp"));
    (0..batch.num_rows())
        .map(|i| (ids.value(i).to_string(), times.value(i)))
        .collect()
}

/// Writes spanning several (tenant, day) partitions are kept whole and
/// shared by their partitions until a query or the persister copies a
/// partition's rows out: each partition shows exactly its rows, in write
/// order; a persist writes each partition's rows sorted by time, whether a
/// query had copied them out before or not; the persisted ids stay
/// duplicates.
#[tokio::test]
async fn writes_across_partitions_are_split_exactly_and_persisted_sorted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = open(dir.path()).await;
    // Two writes of 12 events each: acme and beta alternate, every third
    // event is on the next day, times run backwards within a write.
    let write = |w: i64| -> Vec<Event> {
        (0..12)
            .map(|i| {
                let tenant = if i % 2 == 0 { "acme" } else { "beta" };
                let day = if i % 3 == 0 { DAY } else { 0 };
                let time = DAY0 + day + HOUR + (12 - i) * 1_000_000 + w * 500_000;
                message(tenant, &format!("w{w}-{i}"), time)
            })
            .collect()
    };
    let expected = |tenant: &str, day: i64| -> Vec<(String, i64)> {
        (0..2)
            .flat_map(|w| write(w).into_iter())
            .filter(|e| e.tenant_id == tenant && (e.event_time - DAY0) / DAY == day)
            .map(|e| (e.event_id, e.event_time))
            .collect()
    };
    for w in 0..2 {
        let out = s
            .write(write(w), WriteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.accepted, 12);
    }

    // Only acme is read (its rows are copied out); beta stays shared.
    let acme = s
        .snapshot(|t, _| t == "acme")
        .unwrap_or_else(|e| panic!("snapshot: {e}"));
    assert_eq!(acme.buffered.len(), 2, "acme on two days");
    for p in &acme.buffered {
        let rows: Vec<_> = p.batches.iter().flat_map(ids_and_times).collect();
        let day = i64::from(p.key.day) - DAY0 / DAY;
        assert_eq!(rows, expected("acme", day), "acme day +{day}");
    }
    let all = s
        .snapshot(|_, _| true)
        .unwrap_or_else(|e| panic!("snapshot: {e}"));
    assert_eq!(all.buffered.len(), 4);
    let buffered: usize = all
        .buffered
        .iter()
        .flat_map(|p| &p.batches)
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(buffered, 24);

    s.persist().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.stats().buffer_rows, 0);
    let manifest = s.manifest();
    assert_eq!(manifest.files.len(), 4);
    for f in &manifest.files {
        let batches = s
            .lake()
            .read_file(&f.path, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let rows: Vec<_> = batches.iter().flat_map(ids_and_times).collect();
        let day = i64::from(f.day) - DAY0 / DAY;
        let mut want = expected(&f.tenant_id, day);
        want.sort_by_key(|(_, t)| *t);
        assert_eq!(rows, want, "file of {} day +{day}", f.tenant_id);
    }
    // The persisted ids left the hot set and are still duplicates.
    let out = s
        .write(write(1), WriteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((out.accepted, out.duplicates.len()), (0, 12));
    assert_eq!(s.stats().dedup_hot_ids, 0);
}

use cxdb_model::Event;
use cxdb_storage::WriteOptions;

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
    let snap = s.snapshot(|_, _| true);
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

//! Round trips between JSON, `Event`s and Arrow batches.

use cxdb_model::{Event, EventBatchBuilder, events_from_batch, events_schema};
use proptest::prelude::*;

fn opt_str() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-zA-Z0-9 _é]{0,12}")
}

prop_compose! {
    fn any_event()(
        tenant in "[a-z0-9][a-z0-9_-]{0,10}",
        id in "[a-zA-Z0-9-]{1,20}",
        t in 631_152_000_000_000i64..7_258_118_400_000_000,
        channel in opt_str(), conv in opt_str(), body in opt_str(),
        is_public in proptest::option::of(any::<bool>()),
        csat in proptest::option::of(1i32..=5),
        confidence in proptest::option::of(0.0f64..=1.0),
        duration in proptest::option::of(0i64..1_000_000),
        tags in proptest::option::of(proptest::collection::vec("[a-z]{1,5}", 0..4)),
    ) -> Event {
        Event {
            tenant_id: tenant, event_id: id, event_time: t, ingested_at: t + 1,
            event_type: "custom.test".into(), channel, conversation_id: conv, body,
            is_public, csat_score: csat, confidence, duration_ms: duration, tags,
            ..Default::default()
        }
    }
}

proptest! {
    #[test]
    fn batch_round_trip(events in proptest::collection::vec(any_event(), 0..40)) {
        let mut b = EventBatchBuilder::with_capacity(events.len());
        for e in &events { b.push(e); }
        let batch = b.finish();
        prop_assert_eq!(batch.schema(), events_schema());
        prop_assert_eq!(batch.num_rows(), events.len());
        prop_assert_eq!(events_from_batch(&batch).ok(), Some(events));
    }
}

#[test]
fn partial_batch_accepted_and_wrong_types_named() {
    use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    let s = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let ms =
        Arc::new(TimestampMillisecondArray::from(vec![1_767_225_600_000]).with_timezone("UTC"));
    let batch = RecordBatch::try_from_iter(vec![
        ("tenant_id", s("acme")),
        ("event_id", s("e1")),
        ("event_time", ms as ArrayRef),
        ("event_type", s("custom.x")),
        ("channel", s("chat")),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let events = events_from_batch(&batch).unwrap_or_default();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_time, 1_767_225_600_000_000);
    assert_eq!(events[0].channel.as_deref(), Some("chat"));

    let bad = RecordBatch::try_from_iter(vec![
        ("tenant_id", s("acme")),
        ("event_id", s("e1")),
        (
            "event_time",
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
        ),
        ("event_type", s("custom.x")),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let err = events_from_batch(&bad)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("\"event_time\" has type Int64"), "{err}");

    let missing = RecordBatch::try_from_iter(vec![("tenant_id", s("acme"))])
        .unwrap_or_else(|e| panic!("{e}"));
    let err = events_from_batch(&missing)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("required column \"event_id\" is missing"),
        "{err}"
    );

    let unknown =
        RecordBatch::try_from_iter(vec![("colour", s("red"))]).unwrap_or_else(|e| panic!("{e}"));
    let err = events_from_batch(&unknown)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("unknown column \"colour\""), "{err}");
}

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use cxdb_model::Event;
use cxdb_storage::{Storage, StorageConfig};

/// 2026-01-01T00:00:00Z
pub(crate) const DAY0: i64 = 1_767_225_600_000_000;
pub(crate) const HOUR: i64 = 3_600_000_000;
pub(crate) const DAY: i64 = 24 * HOUR;

pub(crate) fn message(tenant: &str, id: &str, time: i64) -> Event {
    Event {
        tenant_id: tenant.into(),
        event_id: id.into(),
        event_time: time,
        event_type: "message.created".into(),
        conversation_id: Some(format!("conv-{}", id.len() % 7)),
        actor_type: Some("customer".into()),
        channel: Some("chat".into()),
        body: Some(format!("hello from {id}")),
        ..Default::default()
    }
}

/// A config for tests: no background task (tests call persist / compact
/// themselves), so nothing happens behind the test's back.
pub(crate) fn config(dir: &Path) -> StorageConfig {
    let mut c = StorageConfig::new(dir);
    c.background = false;
    c
}

pub(crate) async fn open(dir: &Path) -> Arc<Storage> {
    Storage::open(config(dir))
        .await
        .unwrap_or_else(|e| panic!("open: {e}"))
}

/// Every (tenant, event_id) visible in the storage, with its count.
pub(crate) async fn all_ids(s: &Storage) -> HashMap<(String, String), usize> {
    let snap = s
        .snapshot(|_, _| true)
        .unwrap_or_else(|e| panic!("snapshot: {e}"));
    let batches = s
        .read_snapshot(&snap)
        .await
        .unwrap_or_else(|e| panic!("read: {e}"));
    let mut out = HashMap::new();
    for b in batches {
        let t = b.column(0).as_any().downcast_ref::<StringArray>().cloned();
        let id = b.column(1).as_any().downcast_ref::<StringArray>().cloned();
        let (Some(t), Some(id)) = (t, id) else {
            panic!("bad batch")
        };
        for i in 0..t.len() {
            *out.entry((t.value(i).to_string(), id.value(i).to_string()))
                .or_insert(0) += 1;
        }
    }
    out
}

pub(crate) fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.event_id.clone()).collect()
}

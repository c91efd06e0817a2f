//! Which conversations changed: the feed behind incrementally maintained
//! per-conversation state in the query layer.
//!
//! A subscriber ([`Storage::subscribe_conversation_changes`]) collects the
//! `(tenant_id, conversation_id)` of every event made visible after it
//! subscribed, with the earliest `event_time` written for each, until it
//! [`takes`](ConversationChanges::take) them. Anything that removes events
//! (retention) sets [`Changes::reset`]: state derived from the old events
//! must be rebuilt from scratch. A new subscriber starts reset, as it has
//! seen nothing. More touched conversations than the subscriber's limit
//! (past which it rebuilds rather than updates) also become a reset, so a
//! server that ingests for hours with nobody reading the views neither
//! spends work per event on the feed nor holds every conversation's key.
//!
//! Events are recorded after they are in the write buffer, so every change
//! a subscriber takes is visible to a scan snapshot taken after the take.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use cxdb_model::column;
use hashbrown::Equivalent;
use parking_lot::Mutex;

/// `(tenant_id, conversation_id)` → the earliest `event_time` (epoch
/// micros) written for it.
pub type Touched = hashbrown::HashMap<(String, String), i64, ahash::RandomState>;

/// A borrowed `(tenant_id, conversation_id)`: looks a key up without
/// allocating its strings. Hashes as the owned tuple does (each field in
/// order), as `Equivalent` requires.
#[derive(Hash)]
struct KeyRef<'a>(&'a str, &'a str);

impl Equivalent<(String, String)> for KeyRef<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// Conversation keys touched since the last take.
#[derive(Debug, Default)]
pub struct Changes {
    /// Events were removed: derived state must be rebuilt from scratch.
    pub reset: bool,
    pub touched: Touched,
}

impl Changes {
    /// Folds `other` (later changes) into `self`.
    pub fn merge(&mut self, other: Changes) {
        self.reset |= other.reset;
        for ((tenant, conversation), at) in other.touched {
            self.note(&tenant, &conversation, at);
        }
    }

    /// Allocates the key's strings only for a conversation not yet noted
    /// (a write mostly touches conversations already pending).
    fn note(&mut self, tenant: &str, conversation: &str, at: i64) {
        match self.touched.get_mut(&KeyRef(tenant, conversation)) {
            Some(earliest) => *earliest = (*earliest).min(at),
            None => {
                self.touched
                    .insert((tenant.to_string(), conversation.to_string()), at);
            }
        }
    }
}

/// One subscriber's collected changes.
#[derive(Debug)]
pub struct ConversationChanges {
    pending: Mutex<Changes>,
    /// Beyond this many touched conversations the subscriber rebuilds
    /// rather than updates, so the changes collapse into a reset: nothing
    /// more is collected (no work per event, no memory per conversation)
    /// until the next take.
    limit: usize,
}

impl ConversationChanges {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            pending: Mutex::new(Changes {
                reset: true,
                touched: Touched::default(),
            }),
            limit,
        }
    }

    /// A reset makes the touched keys moot; too many of them make a reset.
    fn cap(&self, pending: &mut Changes) {
        if pending.reset || pending.touched.len() > self.limit {
            pending.reset = true;
            pending.touched = Touched::default();
        }
    }

    /// Everything collected so far; the subscriber starts afresh.
    pub fn take(&self) -> Changes {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Gives back changes taken but not applied (a refresh that failed or
    /// was cancelled), so that the next take sees them again.
    pub fn restore(&self, changes: Changes) {
        let mut pending = self.pending.lock();
        pending.merge(changes);
        self.cap(&mut pending);
    }

    pub(crate) fn record(&self, batch: &RecordBatch) {
        let tenants = batch.column(column::TENANT_ID).as_string::<i32>();
        let conversations = batch.column(column::CONVERSATION_ID).as_string::<i32>();
        let times = batch
            .column(column::EVENT_TIME)
            .as_primitive::<TimestampMicrosecondType>();
        let mut pending = self.pending.lock();
        if pending.reset {
            return;
        }
        for i in 0..batch.num_rows() {
            if conversations.is_null(i) {
                continue;
            }
            pending.note(tenants.value(i), conversations.value(i), times.value(i));
        }
        self.cap(&mut pending);
    }

    pub(crate) fn reset(&self) {
        let mut pending = self.pending.lock();
        pending.reset = true;
        self.cap(&mut pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cxdb_model::{Event, EventBatchBuilder};

    /// A batch whose rows touch `(tenant, conversation)` at `time`.
    fn batch(rows: &[(&str, &str, i64)]) -> RecordBatch {
        let mut builder = EventBatchBuilder::with_capacity(rows.len());
        for (i, (tenant, conversation, time)) in rows.iter().enumerate() {
            builder.push(&Event {
                tenant_id: tenant.to_string(),
                event_id: format!("e{i}"),
                event_time: *time,
                event_type: "message.created".into(),
                conversation_id: Some(conversation.to_string()),
                ..Event::default()
            });
        }
        builder.finish()
    }

    /// Past its limit a subscriber's changes become one reset, and stay one
    /// (nothing collected) until taken; then collecting starts again.
    #[test]
    fn too_many_conversations_collapse_into_a_reset() {
        let changes = ConversationChanges::new(2);
        assert!(changes.take().reset, "a new subscriber starts reset");
        changes.record(&batch(&[("t", "c1", 5), ("t", "c2", 6), ("t", "c1", 4)]));
        let taken = changes.take();
        assert!(!taken.reset);
        assert_eq!(taken.touched.len(), 2);
        assert_eq!(
            taken.touched.get(&("t".to_string(), "c1".to_string())),
            Some(&4)
        );

        changes.record(&batch(&[("t", "c1", 1), ("t", "c2", 1), ("t", "c3", 1)]));
        changes.record(&batch(&[("t", "c4", 1)]));
        let taken = changes.take();
        assert!(taken.reset && taken.touched.is_empty());

        changes.record(&batch(&[("t", "c9", 9)]));
        changes.restore(Changes {
            reset: false,
            touched: [(("t".to_string(), "c8".to_string()), 8)]
                .into_iter()
                .collect(),
        });
        let taken = changes.take();
        assert!(!taken.reset);
        assert_eq!(taken.touched.len(), 2);
    }

    /// A conversation noted again is found by its borrowed key (one entry,
    /// the earliest time) — it would be a second entry if `KeyRef` hashed
    /// differently from the owned key.
    #[test]
    fn notes_each_conversation_once_with_its_earliest_time() {
        let mut changes = Changes::default();
        changes.note("t1", "c1", 30);
        changes.note("t1", "c1", 10);
        changes.note("t1", "c1", 20);
        changes.note("t2", "c1", 5);
        changes.note("t1", "c2", 7);
        let mut later = Changes::default();
        later.note("t1", "c1", 3);
        later.note("t3", "c9", 1);
        changes.merge(later);
        let mut got: Vec<_> = changes
            .touched
            .iter()
            .map(|((t, c), at)| (t.as_str(), c.as_str(), *at))
            .collect();
        got.sort_unstable();
        assert_eq!(
            got,
            [
                ("t1", "c1", 3),
                ("t1", "c2", 7),
                ("t2", "c1", 5),
                ("t3", "c9", 1)
            ]
        );
    }
}

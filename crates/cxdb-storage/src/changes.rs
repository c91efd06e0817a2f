//! Which conversations changed: the feed behind incrementally maintained
//! per-conversation state in the query layer.
//!
//! A subscriber ([`Storage::subscribe_conversation_changes`]) collects the
//! `(tenant_id, conversation_id)` of every event made visible after it
//! subscribed, with the earliest `event_time` written for each, until it
//! [`takes`](ConversationChanges::take) them. Anything that removes events
//! (retention) sets [`Changes::reset`]: state derived from the old events
//! must be rebuilt from scratch. A new subscriber starts reset, as it has
//! seen nothing.
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
}

impl ConversationChanges {
    pub(crate) fn new() -> Self {
        Self {
            pending: Mutex::new(Changes {
                reset: true,
                touched: Touched::default(),
            }),
        }
    }

    /// Everything collected so far; the subscriber starts afresh.
    pub fn take(&self) -> Changes {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Gives back changes taken but not applied (a refresh that failed or
    /// was cancelled), so that the next take sees them again.
    pub fn restore(&self, changes: Changes) {
        self.pending.lock().merge(changes);
    }

    pub(crate) fn record(&self, batch: &RecordBatch) {
        let tenants = batch.column(column::TENANT_ID).as_string::<i32>();
        let conversations = batch.column(column::CONVERSATION_ID).as_string::<i32>();
        let times = batch
            .column(column::EVENT_TIME)
            .as_primitive::<TimestampMicrosecondType>();
        let mut pending = self.pending.lock();
        for i in 0..batch.num_rows() {
            if conversations.is_null(i) {
                continue;
            }
            pending.note(tenants.value(i), conversations.value(i), times.value(i));
        }
    }

    pub(crate) fn reset(&self) {
        self.pending.lock().reset = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

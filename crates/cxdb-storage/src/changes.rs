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

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use cxdb_model::column;
use parking_lot::Mutex;

/// Conversation keys touched since the last take.
#[derive(Debug, Default)]
pub struct Changes {
    /// Events were removed: derived state must be rebuilt from scratch.
    pub reset: bool,
    /// `(tenant_id, conversation_id)` → the earliest `event_time` (epoch
    /// micros) written for it.
    pub touched: HashMap<(String, String), i64>,
}

impl Changes {
    /// Folds `other` (later changes) into `self`.
    pub fn merge(&mut self, other: Changes) {
        self.reset |= other.reset;
        for (key, at) in other.touched {
            self.note(key, at);
        }
    }

    fn note(&mut self, key: (String, String), at: i64) {
        match self.touched.entry(key) {
            Entry::Occupied(mut e) => *e.get_mut() = (*e.get()).min(at),
            Entry::Vacant(e) => {
                e.insert(at);
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
                touched: HashMap::new(),
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
            let key = (
                tenants.value(i).to_string(),
                conversations.value(i).to_string(),
            );
            pending.note(key, times.value(i));
        }
    }

    pub(crate) fn reset(&self) {
        self.pending.lock().reset = true;
    }
}

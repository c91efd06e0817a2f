//! The cxdb event model (SPEC §2): the Arrow schema of the `events` table, the
//! event types and enums, per-event validation with errors naming the event and
//! the field, and conversions between JSON objects, [`Event`] rows and Arrow
//! [`RecordBatch`](arrow::record_batch::RecordBatch)es.
//!
//! Every ingest protocol decodes into [`Event`]s (or an Arrow batch converted
//! with [`events_from_batch`]), runs [`Event::validate`] and hands the accepted
//! rows to the storage layer as one batch built by [`EventBatchBuilder`].

mod batch;
mod error;
mod event;
mod json;
mod schema;
pub mod time;
pub mod vocab;

pub use batch::{EventBatchBuilder, events_from_batch};
pub use error::{Error, EventError, Result};
pub use event::{Event, MAX_EVENT_ID_CHARS};
pub use json::{event_from_json, event_from_json_line};
pub use schema::{EVENT_COLUMNS, column, events_schema, timestamp_type};

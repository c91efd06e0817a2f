//! The cxdb event model (SPEC §2): the Arrow schema of the `events` table, the
//! event types and enums, per-event validation with errors naming the event and
//! the field, and conversions between JSON objects, [`Event`] rows and Arrow
//! [`RecordBatch`](arrow::record_batch::RecordBatch)es.
//!
//! The row protocols (HTTP NDJSON, webhooks) decode into [`Event`]s, run
//! [`Event::validate`] and hand the accepted rows to the storage layer as
//! one batch built by [`EventBatchBuilder`]. Arrow batches (Flight `DoPut`,
//! and gRPC `Write`, whose protobuf the server decodes straight into
//! columns) stay columnar: [`EventColumns`] converts the client's types, the
//! same rules ([`EventFields::check`]) run on each row in place, and the
//! accepted rows are filtered out of the batch without building [`Event`]s.

mod batch;
mod error;
mod event;
mod json;
mod schema;
pub mod time;
pub mod vocab;

pub use batch::{BatchFields, EventBatchBuilder, EventColumns, events_from_batch};
pub use error::{Error, EventError, Result};
pub use event::{Event, EventFields, MAX_EVENT_ID_CHARS, default_is_public};
pub use json::{event_from_json, event_from_json_line};
pub use schema::{EVENT_COLUMNS, column, events_schema, timestamp_type};

//! The cxdb catalog: the versioned manifest of the database, kept in the data dir's
//! `catalog/` folder. It records which Parquet files hold which tenant/date partition,
//! how far the WAL has been persisted, files awaiting deferred deletion, and the
//! per-tenant configuration (business calendars, SLA policies, retention) of SPEC §2.
//!
//! Every change is a [`Catalog::commit`] that writes a whole new, checksummed manifest
//! version atomically (see the `catalog` module for the file format); a crash at any
//! point leaves the previous or the new version, never a mix. Readers hold an
//! `Arc<Manifest>` snapshot and never block writers.

mod calendar;
mod catalog;
mod error;
mod manifest;
mod sla;
mod token;
mod view;
mod vocab;

pub use calendar::{BusinessCalendar, DAY_NAMES, OpenInterval, WeeklyHours};
pub use catalog::{Catalog, KEEP_VERSIONS, manifest_file_name};
pub use error::{Error, Result};
pub use manifest::{FileMeta, Manifest, PendingDelete};
pub use sla::SlaPolicy;
pub use token::{NewToken, Role, TokenRecord, parse_token, sha256_hex};
pub use view::{ViewRecord, check_view_name, view_visible};

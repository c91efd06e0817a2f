//! gRPC services of `cxdb.v1`: ingest, query (Arrow IPC streams), admin.

mod admin;
mod ingest;
mod query;

pub(crate) use admin::AdminSvc;
pub(crate) use ingest::IngestSvc;
pub(crate) use query::QuerySvc;

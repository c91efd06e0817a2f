//! gRPC services of `cxdb.v1`: ingest, query (Arrow IPC streams), admin.

mod admin;
mod columns;
mod ingest;
mod query;

pub(crate) use admin::AdminSvc;
pub(crate) use ingest::IngestServer;
pub(crate) use query::QuerySvc;

use cxdb_query::Principal;
use tonic::{Request, Status};

use crate::AppState;
use crate::auth::{Action, metadata_token};

/// Authenticates a call by its `authorization` metadata and checks that the
/// token's role allows `action`.
pub(crate) fn authorize<T>(
    state: &AppState,
    request: &Request<T>,
    action: Action,
) -> Result<Principal, Status> {
    let token = metadata_token(request.metadata())?;
    Ok(state.authorize(token.as_deref(), action)?)
}

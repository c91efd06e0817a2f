//! `cxdb export` over Flight SQL: a statement query whose calls carry the
//! header `x-cxdb-export: {"format": "parquet", "destination": "out.parquet"}`.
//! Such a call needs a role that may export (analyst, admin), and its
//! `DoGet` is recorded in `audit_log` when the stream ends, with the rows
//! the server sent (cxdb-query's `QueryEngine::client_export`).
//!
//! Why a header rather than recording every `DoGet`: a `DoGet` alone cannot
//! tell an export from a dashboard's query, and auditing every query would
//! bury the exports. The format and destination are the client's word
//! (only it knows where it writes); who, when, the query and the rows are
//! the server's own. A client that leaves the header out is an ordinary
//! query, under the rules of queries.

use cxdb_query::{ClientExport, Principal, may_export};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::error::Error;

/// The header naming an export.
const HEADER: &str = "x-cxdb-export";

/// The export a call declares, once `principal` may export; `None` for an
/// ordinary query.
pub(super) fn declared(
    principal: &Principal,
    metadata: &MetadataMap,
) -> Result<Option<ClientExport>, Status> {
    let Some(value) = metadata.get(HEADER) else {
        return Ok(None);
    };
    may_export(principal).map_err(Error::from)?;
    let bad = |why: &str| {
        Status::invalid_argument(format!(
            "{HEADER} must be JSON {{\"format\": \"…\", \"destination\": \"…\"}}: {why}"
        ))
    };
    let text = value.to_str().map_err(|_| bad("not ASCII"))?;
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
    let field = |name: &str| {
        json.get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| bad(&format!("no {name}")))
    };
    Ok(Some(ClientExport {
        format: field("format")?,
        destination: field("destination")?,
    }))
}

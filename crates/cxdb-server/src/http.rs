//! HTTP (axum): `/healthz`, `/readyz`, `/metrics`, `POST /v1/events`
//! (NDJSON, optionally gzip), `POST /v1/flush`.

use std::io::Read;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cxdb_model::{Event, event_from_json_line};
use cxdb_query::Principal;
use cxdb_storage::WriteOutcome;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Action, bearer};
use crate::error::Error;
use crate::metrics::Protocol;

/// The HTTP server's state: the app, once the storage has replayed its log.
#[derive(Debug, Default)]
pub(crate) struct HttpState {
    pub(crate) app: OnceLock<Arc<AppState>>,
    pub(crate) max_request_bytes: usize,
}

impl HttpState {
    fn app(&self) -> Result<&Arc<AppState>, Error> {
        self.app.get().ok_or_else(|| {
            Error::Unavailable("cxdb is starting: replaying the write-ahead log".into())
        })
    }
}

pub(crate) fn router(state: Arc<HttpState>) -> Router {
    // The body limit is checked here (413 with a JSON body), not by axum's
    // default plain-text rejection.
    let limit = state.max_request_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/events", post(post_events))
        .route("/v1/flush", post(flush))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn readyz(State(s): State<Arc<HttpState>>) -> Response {
    match s.app.get() {
        Some(_) => (StatusCode::OK, "ready").into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "replaying the write-ahead log",
        )
            .into_response(),
    }
}

/// The principal of a request's `Authorization: Bearer <token>` header, if
/// its role allows `action`.
fn authorize(app: &AppState, headers: &HeaderMap, action: Action) -> Result<Principal, Error> {
    app.authorize(bearer_header(headers)?, action)
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_header(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    match headers.get(header::AUTHORIZATION) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(bearer)
            .map(Some)
            .ok_or_else(|| {
                Error::Unauthenticated("the Authorization header must be `Bearer <token>`".into())
            }),
    }
}

/// Under `--auth token`, any valid token may read the metrics (as InfluxDB 3
/// does); they hold counts, never tenant data.
async fn metrics(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Result<Response, Error> {
    let app = s.app()?;
    app.authenticate(bearer_header(&headers)?)?;
    let body = app.metrics.render(&app.storage.stats());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

async fn flush(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Result<Response, Error> {
    let app = s.app()?;
    let principal = authorize(app, &headers, Action::Admin)?;
    if let Some(t) = &principal.tenant {
        return Err(Error::PermissionDenied(format!(
            "this token is scoped to tenant {t:?}; flushing needs an unscoped admin token"
        )));
    }
    let out = app.storage.persist().await?;
    Ok(axum::Json(json!({ "files": out.files, "rows": out.rows })).into_response())
}

#[derive(Debug, Deserialize)]
struct EventsParams {
    #[serde(default)]
    atomic: bool,
}

/// The JSON answer of SPEC §5; `line_of` maps an event's position to the
/// number reported to the client.
pub(crate) fn write_outcome_json(out: &WriteOutcome, line_of: impl Fn(usize) -> usize) -> Value {
    json!({
        "accepted": out.accepted,
        "duplicate": out.duplicates.len(),
        "rejected": out.rejected.iter().map(|r| json!({
            "line": line_of(r.index),
            "event_id": r.event_id,
            "field": r.field,
            "error": r.message,
        })).collect::<Vec<_>>(),
    })
}

async fn post_events(
    State(s): State<Arc<HttpState>>,
    Query(params): Query<EventsParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let app = s.app()?;
    let principal = authorize(app, &headers, Action::Write)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge(format!(
            "request body is larger than the limit of {} bytes",
            s.max_request_bytes
        )),
        _ => Error::InvalidArgument(format!("cannot read the request body: {e}")),
    })?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let text = if gzip {
        gunzip(&body, s.max_request_bytes)?
    } else {
        body.to_vec()
    };
    let text = String::from_utf8(text).map_err(|e| {
        Error::InvalidArgument(format!(
            "the body is not UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;

    // Parse every line; remember which line each event came from (1-based,
    // counting blank lines, as an editor shows them).
    let mut events: Vec<Event> = Vec::new();
    let mut lines: Vec<usize> = Vec::new();
    let mut parse_errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match event_from_json_line(events.len(), line) {
            Ok(e) => {
                events.push(e);
                lines.push(i + 1);
            }
            Err(mut e) => {
                e.index = i + 1;
                parse_errors.push(e);
            }
        }
    }
    if events.is_empty() && parse_errors.is_empty() {
        return Err(Error::InvalidArgument(
            "the body holds no events (NDJSON: one JSON object per line)".into(),
        ));
    }
    app.admit_events(&principal, events.len() + parse_errors.len())?;
    app.metrics
        .record_rejected(Protocol::Http, parse_errors.len());

    let out = if params.atomic && !parse_errors.is_empty() {
        WriteOutcome::default()
    } else {
        app.storage
            .write(events, AppState::write_options(&principal, params.atomic))
            .await?
    };
    app.metrics.record_write(Protocol::Http, &out);
    let mut body = write_outcome_json(&out, |i| lines.get(i).copied().unwrap_or(0));
    // Lines that did not parse: already numbered by line.
    if let Some(rejected) = body.get_mut("rejected").and_then(Value::as_array_mut) {
        for e in &parse_errors {
            rejected.push(json!({
                "line": e.index, "event_id": e.event_id, "field": e.field, "error": e.message,
            }));
        }
        rejected.sort_by_key(|r| r.get("line").and_then(Value::as_u64).unwrap_or(0));
    }
    let status = if out.accepted + out.duplicates.len() > 0 {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((status, axum::Json(body)).into_response())
}

/// Decompresses a gzip body, refusing to inflate beyond `limit` bytes.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| Error::InvalidArgument(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(Error::PayloadTooLarge(format!(
            "the decompressed body is larger than the limit of {limit} bytes"
        )));
    }
    Ok(out)
}

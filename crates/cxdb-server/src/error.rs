//! The one place where errors become protocol answers: a gRPC status, an
//! HTTP status with a JSON body (and, with pgwire, a SQLSTATE). Users get a
//! specific message; internal errors are logged with `error!` and answered
//! without their details.

use datafusion::error::DataFusionError;

/// Errors of the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Query(#[from] cxdb_query::Error),

    #[error(transparent)]
    Storage(#[from] cxdb_storage::Error),

    #[error("{0}")]
    InvalidArgument(String),

    #[error("{0}")]
    NotFound(String),

    /// No token, or one that is unknown or revoked.
    #[error("{0}")]
    Unauthenticated(String),

    /// A valid token whose role or tenant scope does not allow the request.
    #[error("{0}")]
    PermissionDenied(String),

    #[error("{0}")]
    PayloadTooLarge(String),

    /// Over `--max-events-per-second` for the caller's token.
    #[error(
        "rate limit of {limit} events/s for this token exceeded; retry in {:.2} s",
        retry_after.as_secs_f64()
    )]
    RateLimited {
        limit: u32,
        retry_after: std::time::Duration,
    },

    #[error("{0}")]
    Unavailable(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },

    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure, independent of protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    Unauthenticated,
    PermissionDenied,
    PayloadTooLarge,
    ResourceExhausted,
    /// A query ran out of its time (`--query-timeout`).
    DeadlineExceeded,
    Unimplemented,
    Unavailable,
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Self::PermissionDenied(_) | Self::Query(cxdb_query::Error::PermissionDenied(_)) => {
                ErrorKind::PermissionDenied
            }
            Self::PayloadTooLarge(_) => ErrorKind::PayloadTooLarge,
            Self::RateLimited { .. } => ErrorKind::ResourceExhausted,
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Io { .. } | Self::Internal(_) => ErrorKind::Internal,
            Self::Storage(e) => storage_kind(e),
            Self::Query(cxdb_query::Error::DataFusion(e)) => datafusion_kind(e),
            Self::Query(cxdb_query::Error::Storage(e)) => storage_kind(e),
            Self::Query(cxdb_query::Error::Internal(_)) => ErrorKind::Internal,
        }
    }

    /// The message a client sees: the error itself, unless it is internal.
    pub fn public_message(&self) -> String {
        match self.kind() {
            ErrorKind::Internal => {
                tracing::error!(error = %self, "internal error");
                "internal error; see the server log".to_string()
            }
            _ => match self {
                Self::Query(cxdb_query::Error::DataFusion(e)) => datafusion_message(e),
                other => other.to_string(),
            },
        }
    }
}

fn storage_kind(e: &cxdb_storage::Error) -> ErrorKind {
    match e {
        cxdb_storage::Error::ShutDown => ErrorKind::Unavailable,
        cxdb_storage::Error::Model(_) => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    }
}

/// DataFusion errors by their root cause (InfluxDB's
/// `datafusion_error_to_tonic_code`), with no catch-all for user errors.
fn datafusion_kind(e: &DataFusionError) -> ErrorKind {
    match e.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::Configuration(_)
        | DataFusionError::Execution(_) => ErrorKind::InvalidArgument,
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            arrow::error::ArrowError::CastError(_)
            | arrow::error::ArrowError::ParseError(_)
            | arrow::error::ArrowError::DivideByZero
            | arrow::error::ArrowError::ArithmeticOverflow(_)
            | arrow::error::ArrowError::InvalidArgumentError(_) => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        },
        DataFusionError::NotImplemented(_) => ErrorKind::Unimplemented,
        DataFusionError::ResourcesExhausted(_) => ErrorKind::ResourceExhausted,
        DataFusionError::External(source) => match source.downcast_ref() {
            Some(cxdb_query::LimitExceeded::Timeout(_)) => ErrorKind::DeadlineExceeded,
            Some(
                cxdb_query::LimitExceeded::ResultRows(_)
                | cxdb_query::LimitExceeded::Concurrency(_),
            ) => ErrorKind::ResourceExhausted,
            None => ErrorKind::Internal,
        },
        _ => ErrorKind::Internal,
    }
}

/// DataFusion's message for the root cause, without the nesting prefixes.
fn datafusion_message(e: &DataFusionError) -> String {
    match cxdb_query::LimitExceeded::of(e) {
        // Without DataFusion's "External error: " prefix.
        Some(limit) => limit.to_string(),
        None => e.find_root().to_string(),
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let msg = e.public_message();
        match e.kind() {
            ErrorKind::InvalidArgument => Self::invalid_argument(msg),
            ErrorKind::NotFound => Self::not_found(msg),
            ErrorKind::Unauthenticated => Self::unauthenticated(msg),
            ErrorKind::PermissionDenied => Self::permission_denied(msg),
            ErrorKind::PayloadTooLarge | ErrorKind::ResourceExhausted => {
                Self::resource_exhausted(msg)
            }
            ErrorKind::DeadlineExceeded => Self::deadline_exceeded(msg),
            ErrorKind::Unimplemented => Self::unimplemented(msg),
            ErrorKind::Unavailable => Self::unavailable(msg),
            ErrorKind::Internal => Self::internal(msg),
        }
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        use axum::http::StatusCode;
        let status = match self.kind() {
            ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            // As Google's API gateways map DEADLINE_EXCEEDED.
            ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = serde_json::json!({ "error": self.public_message() });
        if let Self::RateLimited { retry_after, .. } = self {
            let seconds = crate::limits::retry_after_secs(retry_after).to_string();
            let retry = [(axum::http::header::RETRY_AFTER, seconds)];
            return (status, retry, axum::Json(body)).into_response();
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: say which scheme is expected.
            let challenge = [(axum::http::header::WWW_AUTHENTICATE, "Bearer")];
            return (status, challenge, axum::Json(body)).into_response();
        }
        (status, axum::Json(body)).into_response()
    }
}

//! The one place where errors become SQLSTATEs. pgwire hands every error of
//! a connection to [`SqlStateMapper`] before answering; DataFusion errors
//! are classified by their root cause (as `crate::error` does for gRPC and
//! HTTP), and internal errors are logged and answered without their details.
//!
//! | SQLSTATE | when |
//! |---|---|
//! | 42601 syntax_error | the SQL does not parse |
//! | 42P01 undefined_table | unknown table or view |
//! | 42703 undefined_column | unknown column |
//! | 42702 ambiguous_column, 42701 duplicate_column | schema errors |
//! | 42883 undefined_function | unknown function, no matching signature |
//! | 42803 grouping_error | a column neither grouped nor aggregated |
//! | 42000 | other planning errors |
//! | 42501 insufficient_privilege | DDL, DML, COPY FROM: SQL is read-only |
//! | 0A000 feature_not_supported | statements and syntax DataFusion lacks |
//! | 22xxx data exceptions | casts (22P02), division by zero (22012), overflow (22003), bad values (22023), other runtime errors (22000) |
//! | 28P01 invalid_password | authentication failed |
//! | 53200 out_of_memory, 53000 insufficient_resources, 54000 program_limit_exceeded | limits: `--query-memory`, `--max-concurrent-queries`, `--max-result-rows` |
//! | 57014 query_canceled | CancelRequest, `statement_timeout` (pgwire, datafusion-postgres), `--query-timeout` |
//! | 57P01 admin_shutdown, 57P03 cannot_connect_now | the server is stopping |
//! | XX000 internal_error | anything else, logged |

use arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion_postgres::pgwire::api::{ClientInfo, ErrorHandler};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};
use tracing::{debug, error};

use crate::error::ErrorKind;

/// An error that carries its own SQLSTATE through DataFusion (as
/// `DataFusionError::External`), e.g. from a cxdb function.
#[derive(Debug)]
pub(crate) struct SqlStateError {
    code: &'static str,
    message: String,
}

impl SqlStateError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for SqlStateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqlStateError {}

impl From<SqlStateError> for PgWireError {
    fn from(e: SqlStateError) -> Self {
        Self::UserError(Box::new(user_error(e.code, e.message)))
    }
}

fn user_error(code: &str, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new("ERROR".into(), code.into(), message.into())
}

fn internal(what: &dyn std::fmt::Display) -> ErrorInfo {
    error!(error = %what, "internal error answering a PostgreSQL client");
    user_error("XX000", "internal error; see the server log")
}

/// pgwire's error hook: rewrites errors from DataFusion, the SQL parser and
/// cxdb into SQLSTATEs. pgwire's own errors (protocol, cancel) keep theirs.
#[derive(Debug)]
pub(crate) struct SqlStateMapper;

impl ErrorHandler for SqlStateMapper {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        if let PgWireError::ApiError(source) = error {
            let info = api_error(source.as_ref());
            *error = PgWireError::UserError(Box::new(info));
        }
        debug!(error = %error, "PostgreSQL error response");
    }
}

fn api_error(e: &(dyn std::error::Error + 'static)) -> ErrorInfo {
    if let Some(e) = e.downcast_ref::<DataFusionError>() {
        datafusion_error(e)
    } else if let Some(e) = e.downcast_ref::<ParserError>() {
        parser_error(e)
    } else if let Some(e) = e.downcast_ref::<ArrowError>() {
        arrow_error(e)
    } else if let Some(e) = e.downcast_ref::<SqlStateError>() {
        user_error(e.code, e.message.clone())
    } else {
        internal(&e)
    }
}

fn parser_error(e: &ParserError) -> ErrorInfo {
    match e {
        ParserError::RecursionLimitExceeded => user_error("54001", e.to_string()),
        _ => user_error("42601", e.to_string()),
    }
}

/// DataFusion errors by their root cause, with no catch-all for user errors.
pub(crate) fn datafusion_error(e: &DataFusionError) -> ErrorInfo {
    let root = e.find_root();
    let message = || root.to_string();
    match root {
        DataFusionError::SQL(parser, _) => parser_error(parser),
        DataFusionError::SchemaError(schema, _) => match schema.as_ref() {
            SchemaError::FieldNotFound { .. } => user_error("42703", message()),
            SchemaError::AmbiguousReference { .. } => user_error("42702", message()),
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => user_error("42701", message()),
        },
        DataFusionError::Plan(text) => user_error(plan_sqlstate(text), message()),
        DataFusionError::NotImplemented(_) => user_error("0A000", message()),
        DataFusionError::Configuration(_) => user_error("22023", message()),
        DataFusionError::Execution(_) => user_error("22000", message()),
        DataFusionError::ResourcesExhausted(_) => user_error("53200", message()),
        DataFusionError::ArrowError(a, _) => arrow_error(a),
        DataFusionError::External(source) => external_error(source.as_ref(), root),
        _ => internal(root),
    }
}

/// DataFusion's planning errors are strings; these are the ones a client
/// can act on.
fn plan_sqlstate(text: &str) -> &'static str {
    if text.starts_with("table '") && text.ends_with("' not found") {
        "42P01"
    } else if text.starts_with("Invalid function ")
        || text.starts_with("table function '")
        || text.contains("No function matches")
    {
        "42883"
    } else if text.contains("must appear in the GROUP BY clause")
        || text.contains("not in the GROUP BY")
    {
        "42803"
    } else {
        "42000"
    }
}

fn arrow_error(e: &ArrowError) -> ErrorInfo {
    match e {
        ArrowError::CastError(_) | ArrowError::ParseError(_) => user_error("22P02", e.to_string()),
        ArrowError::DivideByZero => user_error("22012", "division by zero"),
        ArrowError::ArithmeticOverflow(_) => user_error("22003", e.to_string()),
        ArrowError::InvalidArgumentError(_) => user_error("22023", e.to_string()),
        _ => internal(e),
    }
}

/// Errors that reached DataFusion from a table provider or function.
fn external_error(
    source: &(dyn std::error::Error + Send + Sync + 'static),
    root: &DataFusionError,
) -> ErrorInfo {
    if let Some(e) = source.downcast_ref::<SqlStateError>() {
        user_error(e.code, e.message.clone())
    } else if let Some(limit) = source.downcast_ref::<cxdb_query::LimitExceeded>() {
        let code = match limit {
            cxdb_query::LimitExceeded::Timeout(_) => "57014",
            cxdb_query::LimitExceeded::ResultRows(_) => "54000",
            cxdb_query::LimitExceeded::Concurrency(_) => "53000",
        };
        user_error(code, limit.to_string())
    } else if let Some(cxdb_storage::Error::ShutDown) = source.downcast_ref::<cxdb_storage::Error>()
    {
        user_error("57P01", "the server is shutting down")
    } else if let Some(e) = source.downcast_ref::<ArrowError>() {
        arrow_error(e)
    } else {
        internal(root)
    }
}

/// cxdb's own errors, by kind.
pub(crate) fn server_error(e: crate::Error) -> PgWireError {
    let code = match e.kind() {
        ErrorKind::InvalidArgument => "22023",
        ErrorKind::NotFound => "42704",
        ErrorKind::Unauthenticated => "28000",
        ErrorKind::PermissionDenied => "42501",
        ErrorKind::PayloadTooLarge => "54000",
        ErrorKind::ResourceExhausted => "53000",
        ErrorKind::DeadlineExceeded => "57014",
        ErrorKind::Unimplemented => "0A000",
        ErrorKind::Unavailable => "57P03",
        ErrorKind::Internal => "XX000",
    };
    // A refused token ends the session, as in PostgreSQL; the other errors
    // end only the statement.
    let severity = match e.kind() {
        ErrorKind::Unauthenticated | ErrorKind::Internal => "FATAL",
        _ => "ERROR",
    };
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.into(),
        code.into(),
        e.public_message(),
    )))
}

/// A refused token: FATAL 28P01, like PostgreSQL's failed password, unless
/// the server could not check it.
pub(crate) fn authentication_failed(user: &str, e: crate::Error) -> PgWireError {
    if matches!(e.kind(), ErrorKind::Internal | ErrorKind::Unavailable) {
        return server_error(e);
    }
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        "28P01".into(),
        format!("password authentication failed for user \"{user}\": {e}"),
    )))
}

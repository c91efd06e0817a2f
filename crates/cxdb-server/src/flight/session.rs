//! Flight's session-option actions (`SetSessionOptions`, `GetSessionOptions`,
//! `CloseSession`; Flight.proto, experimental), which arrow-flight 59 does
//! not generate. ADBC reads `catalog` / `schema` through them for its
//! "current catalog" option, and JDBC treats UNIMPLEMENTED as fatal.
//!
//! cxdb keeps no per-connection session for Flight SQL (every call is
//! stateless), so options are accepted and not stored; reads answer the
//! fixed catalog and schema every statement resolves names against.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message;

pub(crate) const SET_SESSION_OPTIONS: &str = "SetSessionOptions";
pub(crate) const GET_SESSION_OPTIONS: &str = "GetSessionOptions";
pub(crate) const CLOSE_SESSION: &str = "CloseSession";

#[derive(Clone, PartialEq, Message)]
pub(crate) struct SessionOptionValue {
    #[prost(oneof = "OptionValue", tags = "1, 2, 3, 4, 5")]
    pub(crate) option_value: Option<OptionValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum OptionValue {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(sfixed64, tag = "3")]
    Int64(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    StringList(StringListValue),
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct StringListValue {
    #[prost(string, repeated, tag = "1")]
    pub(crate) values: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct SetSessionOptionsRequest {
    #[prost(map = "string, message", tag = "1")]
    pub(crate) session_options: HashMap<String, SessionOptionValue>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct SetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub(crate) errors: HashMap<String, SetSessionOptionsError>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct SetSessionOptionsError {
    /// `SetSessionOptionsResult.ErrorValue`: 1 INVALID_NAME, 2 INVALID_VALUE.
    #[prost(int32, tag = "1")]
    pub(crate) value: i32,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct GetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub(crate) session_options: HashMap<String, SessionOptionValue>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct CloseSessionResult {
    /// `CloseSessionResult.Status`: 1 CLOSED.
    #[prost(int32, tag = "1")]
    pub(crate) status: i32,
}

const INVALID_VALUE: i32 = 2;
/// Nothing to close; answered as done so clients closing a connection see
/// no error.
const CLOSED: i32 = 1;

fn string(v: &str) -> SessionOptionValue {
    SessionOptionValue {
        option_value: Some(OptionValue::String(v.to_string())),
    }
}

/// The options every statement runs with.
pub(crate) fn current() -> GetSessionOptionsResult {
    GetSessionOptionsResult {
        session_options: HashMap::from([
            ("catalog".to_string(), string("cxdb")),
            ("schema".to_string(), string("public")),
        ]),
    }
}

/// Accepts any option except a `catalog` / `schema` other than the fixed
/// ones, which is answered as INVALID_VALUE (names still resolve in
/// `cxdb.public`). A body that does not decode sets nothing.
pub(crate) fn set(body: &Bytes) -> SetSessionOptionsResult {
    let request = SetSessionOptionsRequest::decode(body.as_ref()).unwrap_or_default();
    let fixed = current().session_options;
    let errors = request
        .session_options
        .into_iter()
        .filter(|(name, value)| {
            fixed
                .get(name)
                .is_some_and(|f| value.option_value.is_some() && f != value)
        })
        .map(|(name, _)| {
            (
                name,
                SetSessionOptionsError {
                    value: INVALID_VALUE,
                },
            )
        })
        .collect();
    SetSessionOptionsResult { errors }
}

pub(crate) fn close() -> CloseSessionResult {
    CloseSessionResult { status: CLOSED }
}

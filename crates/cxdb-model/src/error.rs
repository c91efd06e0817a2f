use std::fmt;

/// Errors of the model crate that are not about one event.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("record batch does not match the events schema: {0}")]
    Schema(String),

    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one event was rejected: which event (position in the request and its
/// `event_id` when it had one) and which field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    /// Position of the event in its request (0-based).
    pub index: usize,
    /// The event's id, when it could be read.
    pub event_id: Option<String>,
    /// The offending field (a column name of SPEC §2, or the key that was sent).
    pub field: String,
    pub message: String,
}

impl EventError {
    pub fn new(
        index: usize,
        event_id: Option<&str>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            index,
            event_id: event_id.map(str::to_owned),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.event_id {
            Some(id) => write!(
                f,
                "event {} (event_id {id:?}): {}: {}",
                self.index, self.field, self.message
            ),
            None => write!(f, "event {}: {}: {}", self.index, self.field, self.message),
        }
    }
}

impl std::error::Error for EventError {}

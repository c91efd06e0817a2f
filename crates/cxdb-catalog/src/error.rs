//! Errors returned by the catalog.

use std::path::PathBuf;

/// Everything that can go wrong validating, loading or committing the catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input (a calendar, an SLA policy, weekly hours) that breaks a rule; the message
    /// names the field and the offending value and is meant for the end user.
    #[error("{0}")]
    Invalid(String),

    /// A change refused because of the state of the catalog (deleting a
    /// calendar an SLA policy still uses): gRPC `FAILED_PRECONDITION`.
    #[error("{0}")]
    InUse(String),

    #[error("catalog I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Encoding the manifest failed (decoding failures of stored versions are `Corrupt`).
    #[error("catalog JSON error: {0}")]
    Json(#[from] serde_json::Error),

    /// Manifest files exist in the catalog directory but none of them verifies.
    #[error("catalog in {} is corrupt: {reason}", dir.display())]
    Corrupt { dir: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

//! Errors returned by the WAL.

use std::path::PathBuf;

/// Everything that can go wrong opening, appending to or maintaining the WAL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A record (or segment header) failed verification somewhere other than a torn tail.
    #[error(
        "corrupt WAL record in {} at offset {offset}: {reason}; to start anyway, losing this \
         record and everything after it, set recovery to truncate \
         (cxdb serve --wal-recovery truncate)",
        segment.display()
    )]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        reason: String,
    },

    #[error("WAL I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// An earlier write or fsync failed, so the on-disk state of the active segment is
    /// unknown; appending more could leave acknowledged records after a hole.
    #[error(
        "WAL refuses appends because a write or fsync failed ({reason}); \
         the segment state is unknown, reopen the WAL to recover"
    )]
    Poisoned { reason: String },

    #[error("WAL is closed; no more appends are accepted")]
    Closed,

    #[error("WAL record payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge { len: usize, max: usize },

    #[error("WAL writer thread panicked")]
    WriterPanicked,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adapter for `map_err` that attaches what we were doing to an I/O error.
pub(crate) fn io(context: impl FnOnce() -> String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        context: context(),
        source,
    }
}

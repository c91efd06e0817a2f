/// Errors of the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Wal(#[from] cxdb_wal::Error),

    #[error(transparent)]
    Catalog(#[from] cxdb_catalog::Error),

    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),

    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error(transparent)]
    Model(#[from] cxdb_model::Error),

    #[error("invalid object store URL {url:?}: {reason}")]
    ObjectStoreUrl { url: String, reason: String },

    #[error("WAL record {seq} cannot be decoded: {reason}")]
    WalRecord { seq: u64, reason: String },

    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },

    #[error("the storage engine is shut down")]
    ShutDown,

    #[error("internal task failed: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

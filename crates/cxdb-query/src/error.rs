/// Errors of the query layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),

    #[error(transparent)]
    Storage(#[from] cxdb_storage::Error),

    /// The principal's role does not allow the statement.
    #[error("{0}")]
    PermissionDenied(String),

    #[error("internal: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! Errors of the demo configuration.

/// A [`DemoConfig`](crate::DemoConfig) the simulation cannot run as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("tenant id {0:?} does not match [a-z0-9][a-z0-9_-]{{0,63}}")]
    InvalidTenant(String),
    #[error("conversations_per_hour must be a finite number >= 0, got {0}")]
    InvalidRate(f64),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

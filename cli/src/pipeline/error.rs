//! The pipeline layer's error.

use super::verification::hogql::SideError;
use crate::posthog_api::rest::RestError;
use crate::shared::retry::{GaveUp, ReadError};
use crate::store::error::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A read the retry policy gave up on.
    #[error(transparent)]
    Read(#[from] GaveUp),
    /// A read tried once (a dry run).
    #[error(transparent)]
    Source(#[from] ReadError),
    #[error("the senders stopped")]
    SendersStopped,
    /// A side of a verification could not answer.
    #[error(transparent)]
    Side(#[from] SideError),
    /// PostHog's REST API stopped a `metadata` run (a refused key, out of reach).
    #[error(transparent)]
    Api(RestError),
    /// A source could not be opened (why).
    #[error("{0}")]
    SourceOpen(String),
}

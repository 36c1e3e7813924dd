//! The store layer's error.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the state file {} cannot be opened: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("the state file {} cannot be used: {source}", path.display())]
    Unusable { path: PathBuf, source: rusqlite::Error },
    #[error("the state file {} was written by a newer migrator3000 (schema version {found}; this one knows up to {known}): use that version", path.display())]
    Newer { path: PathBuf, found: i64, known: i64 },
    #[error("the state file could not be read or written: {0}")]
    Db(#[from] rusqlite::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

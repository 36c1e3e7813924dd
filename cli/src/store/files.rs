//! What an import of files keeps in the state file (`files_read`): each file this
//! destination got whole, by the fingerprint of its content (not its name or place), so
//! that the same file read again, from another folder or a bucket, sends nothing. A
//! page carries the files whose last line it holds, written with its cursor.

use std::collections::HashSet;

use rusqlite::{params, Connection};

use super::error::StoreResult;
use super::state_file::StateFile;

/// A file wholly handed over to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRead {
    /// The destination (its host and project key).
    pub destination: String,
    /// The fingerprint of the file's bytes as stored (`sources::lines::fingerprint`).
    pub fingerprint: String,
    /// Where it was read this time.
    pub name: String,
    pub lines: u64,
}

pub(super) fn write(tx: &Connection, files: &[FileRead]) -> rusqlite::Result<()> {
    for file in files {
        tx.execute(
            "INSERT OR REPLACE INTO files_read (destination, fingerprint, name, lines) VALUES (?1, ?2, ?3, ?4)",
            params![file.destination, file.fingerprint, file.name, file.lines as i64],
        )?;
    }
    Ok(())
}

impl StateFile {
    /// The fingerprints of the files `destination` got whole, by any run.
    pub fn files_read(&self, destination: &str) -> StoreResult<HashSet<String>> {
        let mut statement = self.db.prepare("SELECT fingerprint FROM files_read WHERE destination = ?1")?;
        let rows = statement.query_map(params![destination], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

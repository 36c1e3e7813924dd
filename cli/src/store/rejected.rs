//! The `rejected` table: every event the transform or the destination refused, with why.

use rusqlite::{params, Connection};

use super::error::StoreResult;
use super::state_file::StateFile;

/// A refused event: (uuid, event name, reason).
pub type Refused = (Option<String>, Option<String>, String);

pub(super) fn insert(tx: &Connection, run: &str, (uuid, event, reason): &Refused) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO rejected (run, uuid, event, reason) VALUES (?1, ?2, ?3, ?4)",
        params![run, uuid, event, reason],
    )?;
    Ok(())
}

impl StateFile {
    pub fn rejected_sample(&self, run: &str, most: usize) -> StoreResult<Vec<(String, String, String)>> {
        let mut statement = self
            .db
            .prepare("SELECT COALESCE(uuid, ''), COALESCE(event, ''), reason FROM rejected WHERE run = ?1 LIMIT ?2")?;
        let rows = statement.query_map(params![run, most as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

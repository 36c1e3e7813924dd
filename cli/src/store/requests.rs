//! The `requests` table: requests kept to be sent again, waiting (with their due time)
//! or parked after their attempts.

use migrator3000::batch::{Batch, Body};
use rusqlite::{params, Connection};

use super::error::StoreResult;
use super::state_file::StateFile;

/// A request kept to be sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub id: i64,
    pub run: String,
    pub batch: Batch,
    pub attempt: u32,
    pub state: String,
    pub due_at: i64,
    pub reason: String,
}

/// A request to keep: (batch, attempt, state, due_at ms, reason).
pub type ToKeep = (Batch, u32, String, i64, String);

fn batch_of(body: Vec<u8>, gzip: bool, json_bytes: i64, uuids: &str) -> Batch {
    let body = if gzip { Body::Gzip(body) } else { Body::Json(String::from_utf8_lossy(&body).into_owned()) };
    Batch { body, json_bytes: json_bytes as usize, uuids: serde_json::from_str(uuids).unwrap_or_default() }
}

pub(super) fn insert(tx: &Connection, run: &str, keep: &ToKeep) -> rusqlite::Result<()> {
    let (batch, attempt, state, due_at, reason) = keep;
    tx.execute(
        "INSERT INTO requests (run, body, gzip, json_bytes, uuids, attempt, state, due_at, reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            run,
            batch.body.bytes(),
            batch.body.is_gzip(),
            batch.json_bytes as i64,
            serde_json::to_string(&batch.uuids).unwrap_or_default(),
            attempt,
            state,
            due_at,
            reason
        ],
    )?;
    Ok(())
}

pub(super) fn delete(tx: &Connection, id: i64) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM requests WHERE id = ?1", params![id])?;
    Ok(())
}

impl StateFile {
    /// Requests of `run` in `state` (all runs when `run` is `None`).
    pub fn kept(&self, run: Option<&str>, state: &str) -> StoreResult<Vec<Kept>> {
        let mut statement = self.db.prepare(
            "SELECT id, run, body, gzip, json_bytes, uuids, attempt, state, due_at, reason FROM requests \
             WHERE state = ?1 AND (?2 IS NULL OR run = ?2) ORDER BY due_at, id",
        )?;
        let rows = statement.query_map(params![state, run], |row| {
            Ok(Kept {
                id: row.get(0)?,
                run: row.get(1)?,
                batch: batch_of(row.get(2)?, row.get(3)?, row.get(4)?, &row.get::<_, String>(5)?),
                attempt: row.get(6)?,
                state: row.get(7)?,
                due_at: row.get(8)?,
                reason: row.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Parked (and held) requests wait again, from their first attempt.
    pub fn unpark(&self) -> StoreResult<usize> {
        Ok(self.db.execute(
            "UPDATE requests SET state = 'waiting', attempt = 1, due_at = 0 WHERE state IN ('parked', 'held')",
            [],
        )?)
    }

    /// A run's waiting requests are parked again (a resend found the destination still
    /// out of reach).
    pub fn park_waiting(&self, run: &str) -> StoreResult<usize> {
        Ok(self
            .db
            .execute("UPDATE requests SET state = 'parked' WHERE state = 'waiting' AND run = ?1", params![run])?)
    }

    pub fn count_events(&self, run: &str, state: &str) -> StoreResult<u64> {
        let kept = self.kept(Some(run), state)?;
        Ok(kept.iter().map(|k| k.batch.uuids.len() as u64).sum())
    }
}

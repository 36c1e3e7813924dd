//! The `runs` table: one range of a migration each, with its cursor and its counts.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::error::StoreResult;
use super::state_file::StateFile;

/// The position after an event: the order every source pages in is
/// (timestamp, then uuid), so equal timestamps across page boundaries are not skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The source's own timestamp text of the last event handed over (kept exactly,
    /// microseconds included), e.g. "2024-03-01 12:00:00.123456".
    pub timestamp: String,
    /// The last event's uuid (or any key that breaks ties in the source's order).
    pub key: String,
}

/// One range of a migration as the state file knows it: a migration (a source into a
/// destination project) is copied in runs over ranges that do not overlap, each with
/// its range fixed when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    /// The migration it belongs to: what is read, and where it goes.
    pub migration: String,
    pub source: String,
    pub destination: String,
    pub api_key: String,
    pub gzip: bool,
    pub from: String,
    pub to: String,
    pub cursor: Option<Cursor>,
    pub total: Option<u64>,
    pub read: u64,
    pub delivered: u64,
    pub rejected: u64,
    /// Events sent without `historical_migration` (younger than 48 hours when sent).
    pub live: u64,
    /// Rows left out as repeats of an event (same uuid) the source had not merged yet.
    pub duplicates: u64,
    pub done: bool,
}

const RUN_COLUMNS: &str =
    "id, source, destination, api_key, gzip, range_from, range_to, cursor, total, read, delivered, rejected, done, \
     COALESCE(migration, ''), live, duplicates";

impl StateFile {
    pub fn run(&self, id: &str) -> StoreResult<Option<Run>> {
        Ok(self
            .db
            .query_row(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"), params![id], row_to_run)
            .optional()?)
    }

    pub fn runs(&self) -> StoreResult<Vec<Run>> {
        let mut statement = self.db.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY rowid"))?;
        let rows = statement.query_map([], row_to_run)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The runs of a migration, by the start of their range.
    pub fn runs_of(&self, migration: &str) -> StoreResult<Vec<Run>> {
        let mut statement = self
            .db
            .prepare(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE migration = ?1 ORDER BY range_from, rowid"))?;
        let rows = statement.query_map(params![migration], row_to_run)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn start(&self, run: &Run) -> StoreResult<()> {
        self.db.execute(
            "INSERT OR IGNORE INTO runs (id, migration, source, destination, api_key, gzip, range_from, range_to, \
             total) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                run.id,
                run.migration,
                run.source,
                run.destination,
                run.api_key,
                run.gzip,
                run.from,
                run.to,
                run.total
            ],
        )?;
        self.db.execute("UPDATE runs SET total = COALESCE(?2, total) WHERE id = ?1", params![run.id, run.total])?;
        Ok(())
    }

    /// A run whose range is to be read again from its start (the source held more there
    /// than was read): not done, no cursor, nothing read yet; what it delivered stays.
    pub fn reopen(&self, run: &Run) -> StoreResult<()> {
        self.start(run)?;
        self.db.execute(
            "UPDATE runs SET done = 0, cursor = NULL, read = 0, duplicates = 0 WHERE id = ?1",
            params![run.id],
        )?;
        Ok(())
    }

    /// The run is read again from the start by its next run (what it settled stays).
    pub fn rewind(&self, run: &str) -> StoreResult<()> {
        self.db.execute("UPDATE runs SET cursor = NULL WHERE id = ?1", params![run])?;
        Ok(())
    }

    pub fn finish(&self, run: &str) -> StoreResult<()> {
        self.db.execute("UPDATE runs SET done = 1 WHERE id = ?1", params![run])?;
        Ok(())
    }
}

/// Adds a page's counts to its run.
pub(super) fn add_counts(
    tx: &Connection,
    run: &str,
    read: u64,
    delivered: u64,
    rejected: u64,
    live: u64,
    duplicates: u64,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE runs SET read = read + ?2, delivered = delivered + ?3, rejected = rejected + ?4, live = live + ?5, \
         duplicates = duplicates + ?6 WHERE id = ?1",
        params![run, read as i64, delivered as i64, rejected as i64, live as i64, duplicates as i64],
    )?;
    Ok(())
}

pub(super) fn move_cursor(tx: &Connection, run: &str, cursor: &Cursor) -> rusqlite::Result<()> {
    let json = serde_json::to_string(cursor).unwrap_or_default();
    tx.execute("UPDATE runs SET cursor = ?2 WHERE id = ?1", params![run, json])?;
    Ok(())
}

fn row_to_run(row: &Row<'_>) -> rusqlite::Result<Run> {
    let cursor: Option<String> = row.get(7)?;
    Ok(Run {
        id: row.get(0)?,
        source: row.get(1)?,
        destination: row.get(2)?,
        api_key: row.get(3)?,
        gzip: row.get(4)?,
        from: row.get(5)?,
        to: row.get(6)?,
        cursor: cursor.and_then(|c| serde_json::from_str(&c).ok()),
        total: row.get::<_, Option<i64>>(8)?.map(|n| n as u64),
        read: row.get::<_, i64>(9)? as u64,
        delivered: row.get::<_, i64>(10)? as u64,
        rejected: row.get::<_, i64>(11)? as u64,
        done: row.get(12)?,
        migration: row.get(13)?,
        live: row.get::<_, i64>(14)? as u64,
        duplicates: row.get::<_, i64>(15)? as u64,
    })
}

//! The state of every migration in one SQLite file, so that a run killed at any moment
//! resumes where it was: per run, the cursor before which every event is delivered,
//! rejected (with its reason, kept here) or kept here as a request to send again;
//! the requests waiting or parked with their attempts; and the counts.

use std::path::Path;

use migrator3000::batch::{Batch, Body};
use rusqlite::{params, Connection, OptionalExtension};

use crate::amplitude::ledger::{Known, Ledger};
use crate::source::Cursor;

pub struct State {
    db: Connection,
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

/// What one page (or one resend) settled, written at once with the cursor it reaches.
#[derive(Debug, Default)]
pub struct Settled {
    pub read: u64,
    pub delivered: u64,
    pub rejected: Vec<(Option<String>, Option<String>, String)>,
    /// (batch, attempt, state, due_at ms, reason)
    pub keep: Vec<(Batch, u32, String, i64, String)>,
    /// What an Amplitude page gave its destination.
    pub ledger: Ledger,
    /// (UTC day, uuid) of each event an import handed over, for `verify`.
    pub converted: Vec<(String, String)>,
    pub live: u64,
    pub duplicates: u64,
}

/// Columns of `runs` added since the first state files, added to an older file when it is
/// opened. Its runs keep a NULL migration: no migration of today continues them.
const ADDED: [(&str, &str); 3] =
    [("migration", "TEXT"), ("live", "INTEGER NOT NULL DEFAULT 0"), ("duplicates", "INTEGER NOT NULL DEFAULT 0")];

const RUN_COLUMNS: &str =
    "id, source, destination, api_key, gzip, range_from, range_to, cursor, total, read, delivered, rejected, done, \
     COALESCE(migration, ''), live, duplicates";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    api_key TEXT NOT NULL,
    gzip INTEGER NOT NULL,
    range_from TEXT NOT NULL,
    range_to TEXT NOT NULL,
    cursor TEXT,
    total INTEGER,
    read INTEGER NOT NULL DEFAULT 0,
    delivered INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT NOT NULL,
    body BLOB NOT NULL,
    gzip INTEGER NOT NULL,
    json_bytes INTEGER NOT NULL,
    uuids TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS amplitude_links (
    destination TEXT NOT NULL,
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (destination, device_id)
);
CREATE TABLE IF NOT EXISTS amplitude_groups (
    destination TEXT NOT NULL,
    group_type TEXT NOT NULL,
    group_key TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (destination, group_type, group_key)
);
CREATE TABLE IF NOT EXISTS amplitude_files (
    destination TEXT NOT NULL,
    name TEXT NOT NULL,
    content TEXT NOT NULL,
    lines INTEGER NOT NULL,
    PRIMARY KEY (destination, name)
);
CREATE TABLE IF NOT EXISTS rejected (
    run TEXT NOT NULL,
    uuid TEXT,
    event TEXT,
    reason TEXT NOT NULL
);
";

fn batch_of(body: Vec<u8>, gzip: bool, json_bytes: i64, uuids: &str) -> Batch {
    let body = if gzip { Body::Gzip(body) } else { Body::Json(String::from_utf8_lossy(&body).into_owned()) };
    Batch { body, json_bytes: json_bytes as usize, uuids: serde_json::from_str(uuids).unwrap_or_default() }
}

impl State {
    pub fn open(path: &Path) -> Result<State, String> {
        let db =
            Connection::open(path).map_err(|e| format!("the state file {} cannot be opened: {e}", path.display()))?;
        // WAL and synchronous writes: a commit survives kill -9 and power loss alike.
        let unusable = |e: rusqlite::Error| format!("the state file {} cannot be used: {e}", path.display());
        db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(unusable)?;
        db.execute_batch(SCHEMA).map_err(unusable)?;
        let columns: Vec<String> = {
            let mut statement = db.prepare("SELECT name FROM pragma_table_info('runs')").map_err(unusable)?;
            let names = statement.query_map([], |r| r.get(0)).map_err(unusable)?;
            names.collect::<Result<_, _>>().map_err(unusable)?
        };
        for (column, kind) in ADDED {
            if !columns.iter().any(|c| c == column) {
                db.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {column} {kind}")).map_err(unusable)?;
            }
        }
        db.execute_batch("CREATE INDEX IF NOT EXISTS runs_by_migration ON runs (migration)").map_err(unusable)?;
        adopt_old_links(&db).map_err(unusable)?;
        Ok(State { db })
    }

    pub fn run(&self, id: &str) -> Result<Option<Run>, String> {
        self.db
            .query_row(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"), params![id], row_to_run)
            .optional()
            .map_err(db_error)
    }

    pub fn runs(&self) -> Result<Vec<Run>, String> {
        let mut statement =
            self.db.prepare(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY rowid")).map_err(db_error)?;
        let rows = statement.query_map([], row_to_run).map_err(db_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
    }

    /// The runs of a migration, by the start of their range.
    pub fn runs_of(&self, migration: &str) -> Result<Vec<Run>, String> {
        let mut statement = self
            .db
            .prepare(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE migration = ?1 ORDER BY range_from, rowid"))
            .map_err(db_error)?;
        let rows = statement.query_map(params![migration], row_to_run).map_err(db_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
    }

    pub fn start(&self, run: &Run) -> Result<(), String> {
        self.db
            .execute(
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
            )
            .map_err(db_error)?;
        self.db
            .execute("UPDATE runs SET total = COALESCE(?2, total) WHERE id = ?1", params![run.id, run.total])
            .map_err(db_error)?;
        Ok(())
    }

    /// Writes what was settled and moves the cursor, in one transaction.
    pub fn settle(&mut self, run: &str, settled: &Settled, cursor: Option<&Cursor>) -> Result<(), String> {
        let tx = self.db.transaction().map_err(db_error)?;
        for (batch, attempt, state, due_at, reason) in &settled.keep {
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
            )
            .map_err(db_error)?;
        }
        write_ledger(&tx, &settled.ledger).map_err(db_error)?;
        for (uuid, event, reason) in &settled.rejected {
            tx.execute(
                "INSERT INTO rejected (run, uuid, event, reason) VALUES (?1, ?2, ?3, ?4)",
                params![run, uuid, event, reason],
            )
            .map_err(db_error)?;
        }
        tx.execute(
            "UPDATE runs SET read = read + ?2, delivered = delivered + ?3, rejected = rejected + ?4, live = live + ?5, \
             duplicates = duplicates + ?6 WHERE id = ?1",
            params![
                run,
                settled.read as i64,
                settled.delivered as i64,
                settled.rejected.len() as i64,
                settled.live as i64,
                settled.duplicates as i64
            ],
        )
        .map_err(db_error)?;
        crate::verify::store::record_imported(&tx, run, &settled.converted).map_err(db_error)?;
        if let Some(cursor) = cursor {
            let json = serde_json::to_string(cursor).unwrap_or_default();
            tx.execute("UPDATE runs SET cursor = ?2 WHERE id = ?1", params![run, json]).map_err(db_error)?;
        }
        tx.commit().map_err(db_error)
    }

    /// What an Amplitude import gave `destination` so far, by any run.
    pub fn amplitude_known(&self, destination: &str) -> Result<Known, String> {
        let mut known = Known::default();
        let query = |sql: &str, each: &mut dyn FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>| {
            let mut statement = self.db.prepare(sql)?;
            let mut rows = statement.query(params![destination])?;
            while let Some(row) = rows.next()? {
                each(row)?;
            }
            Ok(())
        };
        query("SELECT device_id FROM amplitude_links WHERE destination = ?1", &mut |r| {
            known.devices.insert(r.get(0)?);
            Ok(())
        })
        .and_then(|_| {
            query("SELECT group_type, group_key, digest FROM amplitude_groups WHERE destination = ?1", &mut |r| {
                known.groups.insert((r.get(0)?, r.get(1)?), r.get(2)?);
                Ok(())
            })
        })
        .and_then(|_| {
            query("SELECT name, content FROM amplitude_files WHERE destination = ?1", &mut |r| {
                known.files.insert(r.get(0)?, r.get(1)?);
                Ok(())
            })
        })
        .map_err(db_error)?;
        Ok(known)
    }

    pub fn finish(&self, run: &str) -> Result<(), String> {
        self.db.execute("UPDATE runs SET done = 1 WHERE id = ?1", params![run]).map(|_| ()).map_err(db_error)
    }

    /// Requests of `run` in `state` (all runs when `run` is `None`).
    pub fn kept(&self, run: Option<&str>, state: &str) -> Result<Vec<Kept>, String> {
        let mut statement = self
            .db
            .prepare(
                "SELECT id, run, body, gzip, json_bytes, uuids, attempt, state, due_at, reason FROM requests \
                 WHERE state = ?1 AND (?2 IS NULL OR run = ?2) ORDER BY due_at, id",
            )
            .map_err(db_error)?;
        let rows = statement
            .query_map(params![state, run], |row| {
                Ok(Kept {
                    id: row.get(0)?,
                    run: row.get(1)?,
                    batch: batch_of(row.get(2)?, row.get(3)?, row.get(4)?, &row.get::<_, String>(5)?),
                    attempt: row.get(6)?,
                    state: row.get(7)?,
                    due_at: row.get(8)?,
                    reason: row.get(9)?,
                })
            })
            .map_err(db_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
    }

    /// A kept request was sent again: it goes, and what became of it is written.
    pub fn resent(&mut self, kept: &Kept, settled: &Settled) -> Result<(), String> {
        self.db.execute("DELETE FROM requests WHERE id = ?1", params![kept.id]).map_err(db_error)?;
        self.settle(&kept.run, settled, None)
    }

    /// Parked (and held) requests wait again, from their first attempt.
    pub fn unpark(&self) -> Result<usize, String> {
        self.db
            .execute(
                "UPDATE requests SET state = 'waiting', attempt = 1, due_at = 0 WHERE state IN ('parked', 'held')",
                [],
            )
            .map_err(db_error)
    }

    /// A run's waiting requests are parked again (a resend found the destination still
    /// out of reach).
    pub fn park_waiting(&self, run: &str) -> Result<usize, String> {
        self.db
            .execute("UPDATE requests SET state = 'parked' WHERE state = 'waiting' AND run = ?1", params![run])
            .map_err(db_error)
    }

    pub fn count_events(&self, run: &str, state: &str) -> Result<u64, String> {
        let kept = self.kept(Some(run), state)?;
        Ok(kept.iter().map(|k| k.batch.uuids.len() as u64).sum())
    }

    pub fn rejected_sample(&self, run: &str, most: usize) -> Result<Vec<(String, String, String)>, String> {
        let mut statement = self
            .db
            .prepare("SELECT COALESCE(uuid, ''), COALESCE(event, ''), reason FROM rejected WHERE run = ?1 LIMIT ?2")
            .map_err(db_error)?;
        let rows = statement
            .query_map(params![run, most as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_error)
    }
}

/// Writes what an Amplitude page gave its destination.
fn write_ledger(tx: &Connection, ledger: &Ledger) -> rusqlite::Result<()> {
    let to = &ledger.destination;
    for (user, device) in &ledger.links {
        tx.execute(
            "INSERT OR IGNORE INTO amplitude_links (destination, device_id, user_id) VALUES (?1, ?2, ?3)",
            params![to, device, user],
        )?;
    }
    for (kind, key, digest) in &ledger.groups {
        tx.execute(
            "INSERT OR REPLACE INTO amplitude_groups (destination, group_type, group_key, digest) VALUES (?1, ?2, ?3, ?4)",
            params![to, kind, key, digest],
        )?;
    }
    for file in &ledger.files {
        tx.execute(
            "INSERT OR REPLACE INTO amplitude_files (destination, name, content, lines) VALUES (?1, ?2, ?3, ?4)",
            params![to, file.name, file.content, file.lines as i64],
        )?;
    }
    Ok(())
}

/// A state file from before links were kept per destination holds them in
/// `amplitude_aliases`, without saying where they were sent: they are kept under no
/// destination (README: "Devices and users"), so every destination gets its links.
fn adopt_old_links(db: &Connection) -> rusqlite::Result<()> {
    let old: bool = db.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'amplitude_aliases'",
        [],
        |r| r.get(0),
    )?;
    if old {
        db.execute_batch(
            "BEGIN; INSERT OR IGNORE INTO amplitude_links (destination, device_id, user_id) \
             SELECT '', device_id, user_id FROM amplitude_aliases; DROP TABLE amplitude_aliases; COMMIT;",
        )?;
    }
    Ok(())
}

fn row_to_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
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

fn db_error(error: rusqlite::Error) -> String {
    format!("the state file could not be read or written: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amplitude::ledger::Imported;

    fn run() -> Run {
        Run {
            id: "r".into(),
            migration: "m".into(),
            source: "s".into(),
            destination: "http://d".into(),
            api_key: "phc".into(),
            gzip: true,
            from: "2021-01-01".into(),
            to: "2021-02-01".into(),
            cursor: None,
            total: Some(10),
            read: 0,
            delivered: 0,
            rejected: 0,
            live: 0,
            duplicates: 0,
            done: false,
        }
    }

    #[test]
    fn a_settled_page_moves_the_cursor_with_what_it_kept_and_rejected() {
        let dir = std::env::temp_dir().join(format!("m3k-state-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let mut state = State::open(&dir).unwrap();
        state.start(&run()).unwrap();
        state.start(&run()).unwrap();
        let batch = Batch { body: Body::Gzip(vec![1, 2, 3]), json_bytes: 9, uuids: vec!["a".into(), "b".into()] };
        let settled = Settled {
            read: 5,
            delivered: 2,
            rejected: vec![(Some("u".into()), Some("e".into()), "why".into())],
            keep: vec![(batch.clone(), 2, "waiting".into(), 1000, "HTTP 503".into())],
            ledger: Ledger {
                destination: "http://d phc".into(),
                links: vec![("user".into(), "device".into())],
                groups: vec![("org".into(), "o1".into(), "digest".into())],
                files: vec![Imported { name: "f.json.gz".into(), content: "crc32 1".into(), lines: 3 }],
            },
            converted: vec![],
            live: 1,
            duplicates: 3,
        };
        let cursor = Cursor { timestamp: "2021-01-02 00:00:00.000001".into(), key: "k".into() };
        state.settle("r", &settled, Some(&cursor)).unwrap();
        let reopened = State::open(&dir).unwrap();
        let saved = reopened.run("r").unwrap().unwrap();
        assert_eq!((saved.read, saved.delivered, saved.rejected, saved.live, saved.duplicates), (5, 2, 1, 1, 3));
        assert_eq!(reopened.runs_of("m").unwrap(), std::slice::from_ref(&saved));
        assert_eq!(saved.cursor, Some(cursor));
        let kept = reopened.kept(Some("r"), "waiting").unwrap();
        assert_eq!((kept[0].batch.clone(), kept[0].attempt), (batch, 2));
        assert_eq!(reopened.count_events("r", "waiting").unwrap(), 2);
        assert_eq!(reopened.rejected_sample("r", 10).unwrap(), [("u".into(), "e".into(), "why".into())]);
        let known = reopened.amplitude_known("http://d phc").unwrap();
        assert!(known.devices.contains("device"));
        assert_eq!(known.groups[&("org".to_string(), "o1".to_string())], "digest");
        assert_eq!(known.files["f.json.gz"], "crc32 1");
        assert!(reopened.amplitude_known("http://other phc").unwrap().devices.is_empty(), "kept per destination");
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn links_of_an_old_state_file_are_kept_under_no_destination() {
        let path = std::env::temp_dir().join(format!("m3k-state-old-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let db = Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE amplitude_aliases (user_id TEXT NOT NULL, device_id TEXT NOT NULL, \
             PRIMARY KEY (user_id, device_id)); INSERT INTO amplitude_aliases VALUES ('u1', 'd1');",
        )
        .unwrap();
        drop(db);
        let state = State::open(&path).unwrap();
        assert!(state.amplitude_known("http://d phc").unwrap().devices.is_empty());
        assert!(state.amplitude_known("").unwrap().devices.contains("d1"));
        drop(state);
        State::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
    }
}

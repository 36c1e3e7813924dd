//! The state file, opened: WAL and synchronous writes, its schema brought up to date.

use std::path::Path;

use rusqlite::Connection;

use super::error::{StoreError, StoreResult};
use super::schema;

pub struct StateFile {
    pub(super) db: Connection,
}

impl StateFile {
    pub fn open(path: &Path) -> StoreResult<StateFile> {
        let db = Connection::open(path).map_err(|source| StoreError::Open { path: path.into(), source })?;
        let unusable = |source| StoreError::Unusable { path: path.into(), source };
        // WAL and synchronous writes: a commit survives kill -9 and power loss alike.
        db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(unusable)?;
        if let Err(found) = schema::upgrade(&db).map_err(unusable)? {
            return Err(StoreError::Newer { path: path.into(), found, known: schema::LATEST });
        }
        Ok(StateFile { db })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::LATEST;

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
        let state = StateFile::open(&path).unwrap();
        assert!(state.amplitude_known("http://d phc").unwrap().devices.is_empty());
        assert!(state.amplitude_known("").unwrap().devices.contains("d1"));
        drop(state);
        StateFile::open(&path).unwrap();
        let version: i64 = Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, LATEST);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_file_of_a_newer_build_is_refused() {
        let path = std::env::temp_dir().join(format!("m3k-state-newer-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
        let Err(error) = StateFile::open(&path) else { panic!("opened") };
        assert!(error.to_string().contains("newer migrator3000"), "{error}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_file_of_the_build_before_versions_opens_with_its_runs() {
        let path = std::env::temp_dir().join(format!("m3k-state-unversioned-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let db = Connection::open(&path).unwrap();
        // The tables as that build left them: runs with every column, no verify tables.
        db.execute_batch(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, source TEXT NOT NULL, destination TEXT NOT NULL, \
             api_key TEXT NOT NULL, gzip INTEGER NOT NULL, range_from TEXT NOT NULL, range_to TEXT NOT NULL, \
             cursor TEXT, total INTEGER, read INTEGER NOT NULL DEFAULT 0, delivered INTEGER NOT NULL DEFAULT 0, \
             rejected INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0, migration TEXT, \
             live INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0); \
             INSERT INTO runs (id, source, destination, api_key, gzip, range_from, range_to, read, migration) \
             VALUES ('r', 's', 'http://d', 'phc', 1, '2021-01-01', '2021-02-01', 7, 'm');",
        )
        .unwrap();
        drop(db);
        let state = StateFile::open(&path).unwrap();
        let run = state.run("r").unwrap().unwrap();
        assert_eq!((run.read, run.migration.as_str()), (7, "m"));
        assert!(state.imports("%").unwrap().is_empty());
        let version: i64 = state.db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, LATEST);
        let _ = std::fs::remove_file(&path);
    }
}

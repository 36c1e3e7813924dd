//! Verification's tables: what each Amplitude import converted and handed to the
//! destination (`verify_imports`, `verify_imported`: a uuid a row, by UTC day), and each
//! verification (`verify_checks`) with its days (`verify_days`) and the uuids it found
//! missing or extra (`verify_uuids`).

use rusqlite::{params, Connection, ToSql};

use super::error::StoreResult;
use super::state_file::StateFile;

/// A verification as it is kept.
pub struct CheckRecord<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    pub from: String,
    pub to: String,
    pub verdict: &'a str,
    pub days: Vec<DayRecord<'a>>,
}

/// One day of a verification as it is kept.
pub struct DayRecord<'a> {
    pub day: String,
    pub at_source: u64,
    pub at_destination: u64,
    pub verdict: &'a str,
    pub missing: &'a [String],
    pub extra: &'a [String],
}

/// The condition "the run in `column` has a source like one of the patterns", the
/// patterns bound from `?first` on. One kind of import (Amplitude's, Mixpanel's, files)
/// is chosen this way wherever its imports are asked for, so that each is verified
/// apart.
pub(super) fn of_sources(column: &str, sources: &[&str], first: usize) -> String {
    let likes: Vec<String> = (0..sources.len()).map(|i| format!("source LIKE ?{}", first + i)).collect();
    let likes = if likes.is_empty() { "0".to_string() } else { likes.join(" OR ") };
    format!("{column} IN (SELECT id FROM runs WHERE {likes})")
}

/// The values of a statement: `leading`, then the patterns.
pub(super) fn bound<'a>(leading: &[&'a dyn ToSql], sources: &'a [&'a str]) -> Vec<&'a dyn ToSql> {
    let mut values = leading.to_vec();
    values.extend(sources.iter().map(|s| s as &dyn ToSql));
    values
}

/// The (UTC day, uuid) of every event a page of an import handed over, in the page's
/// own transaction.
pub(super) fn record_imported(tx: &Connection, run: &str, converted: &[(String, String)]) -> rusqlite::Result<()> {
    if converted.is_empty() {
        return Ok(());
    }
    tx.execute("INSERT OR IGNORE INTO verify_imports (run) VALUES (?1)", params![run])?;
    let import: i64 = tx.query_row("SELECT id FROM verify_imports WHERE run = ?1", params![run], |r| r.get(0))?;
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO verify_imported (day, uuid, import) VALUES (?1, ?2, ?3)")?;
    for (day, uuid) in converted {
        insert.execute(params![day, uuid, import])?;
    }
    Ok(())
}

impl StateFile {
    /// The imports that recorded what they handed over, of the runs whose source is like
    /// one of `sources` (SQL LIKE: `the files at %`).
    pub fn imports(&self, sources: &[&str]) -> StoreResult<Vec<String>> {
        let mut statement = self
            .db
            .prepare(&format!("SELECT run FROM verify_imports WHERE {} ORDER BY id", of_sources("run", sources, 1)))?;
        let rows = statement.query_map(bound(&[], sources).as_slice(), |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The days from `from` to `to` (exclusive, YYYY-MM-DD) the imports of `sources`
    /// handed events of, each with its distinct uuids.
    pub fn imported_days(&self, sources: &[&str], from: &str, to: &str) -> StoreResult<Vec<(String, u64)>> {
        let mut statement = self.db.prepare(&format!(
            "SELECT day, COUNT(DISTINCT uuid) FROM verify_imported WHERE day >= ?1 AND day < ?2 AND import IN \
             (SELECT id FROM verify_imports WHERE {}) GROUP BY day ORDER BY day",
            of_sources("run", sources, 3)
        ))?;
        let values = bound(&[&from, &to], sources);
        let rows =
            statement.query_map(values.as_slice(), |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` distinct uuids the imports of `sources` handed over from `from` to
    /// `to`, after `after`, in text order.
    pub fn imported_uuids(
        &self,
        sources: &[&str],
        from: &str,
        to: &str,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let mut statement = self.db.prepare(&format!(
            "SELECT DISTINCT uuid FROM verify_imported WHERE day >= ?1 AND day < ?2 AND uuid > ?3 AND import IN \
             (SELECT id FROM verify_imports WHERE {}) ORDER BY uuid LIMIT ?4",
            of_sources("run", sources, 5)
        ))?;
        let limit = limit as i64;
        let values = bound(&[&from, &to, &after, &limit], sources);
        let rows = statement.query_map(values.as_slice(), |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes a verification with its days and every missing and extra uuid; returns its id.
    pub fn save_check(&mut self, check: &CheckRecord<'_>) -> StoreResult<i64> {
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT INTO verify_checks (at, source, destination, range_from, range_to, verdict) VALUES (?1, ?2, ?3, \
             ?4, ?5, ?6)",
            params![
                migrator3000::timestamp::format(chrono::Utc::now()),
                check.source,
                check.destination,
                check.from,
                check.to,
                check.verdict
            ],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut day_row = tx.prepare_cached(
                "INSERT INTO verify_days (check_id, day, at_source, at_destination, missing, extra, verdict) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut uuid_row =
                tx.prepare_cached("INSERT INTO verify_uuids (check_id, day, uuid, kind) VALUES (?1, ?2, ?3, ?4)")?;
            for day in &check.days {
                day_row.execute(params![
                    id,
                    day.day,
                    day.at_source as i64,
                    day.at_destination as i64,
                    day.missing.len() as i64,
                    day.extra.len() as i64,
                    day.verdict
                ])?;
                for uuid in day.missing {
                    uuid_row.execute(params![id, day.day, uuid, "missing"])?;
                }
                for uuid in day.extra {
                    uuid_row.execute(params![id, day.day, uuid, "extra"])?;
                }
            }
        }
        tx.commit()?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::state_file::Use;

    #[test]
    fn imported_uuids_and_a_check_with_its_uuids_are_kept() {
        let path = std::env::temp_dir().join(format!("m3k-verify-store-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut state = StateFile::open(&path, Use::Record).unwrap();
        state
            .db
            .execute_batch(
                "INSERT INTO runs (id, source, destination, api_key, gzip, range_from, range_to) \
                 VALUES ('import a', 'the Amplitude export e.zip', 'http://d', 'phc', 1, '', '')",
            )
            .unwrap();
        let tx = state.db.transaction().unwrap();
        let converted = vec![("2024-03-01".to_string(), "u1".to_string()), ("2024-03-01".into(), "u1".into())];
        record_imported(&tx, "import a", &converted).unwrap();
        tx.commit().unwrap();
        assert_eq!(state.imports(&["%Amplitude%"]).unwrap(), ["import a"]);
        assert!(state.imports(&["%Mixpanel%"]).unwrap().is_empty(), "imports are told apart by their source");
        assert_eq!(
            state.imported_days(&["%Amplitude%"], "2024-03-01", "2024-03-02").unwrap(),
            [("2024-03-01".into(), 1)]
        );
        assert!(state.imported_days(&["%Mixpanel%"], "2024-03-01", "2024-03-02").unwrap().is_empty());
        let count: i64 = state.db.query_row("SELECT COUNT(*) FROM verify_imported", [], |r| r.get(0)).unwrap();
        assert_eq!(count, 1);
        let missing = vec!["u2".to_string()];
        let check = CheckRecord {
            source: "s",
            destination: "d",
            from: "2024-03-01".into(),
            to: "2024-03-02".into(),
            verdict: "differences",
            days: vec![DayRecord {
                day: "2024-03-01".into(),
                at_source: 2,
                at_destination: 1,
                verdict: "differs",
                missing: &missing,
                extra: &[],
            }],
        };
        let id = state.save_check(&check).unwrap();
        let kept: (String, String) = state
            .db
            .query_row("SELECT uuid, kind FROM verify_uuids WHERE check_id = ?1", params![id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(kept, ("u2".to_string(), "missing".to_string()));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn each_kind_of_import_is_chosen_by_its_source_alone() {
        let path = std::env::temp_dir().join(format!("m3k-verify-kinds-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut state = StateFile::open(&path, Use::Record).unwrap();
        let runs = [
            ("amplitude", "the Amplitude export /data/e.zip", "018e0000-0000-7000-8000-000000000001"),
            (
                "mixpanel",
                "Mixpanel's export API (project 1, https://data.mixpanel.com)",
                "018e0000-0000-7000-8000-000000000002",
            ),
            // A folder whose name says Amplitude and Mixpanel: still files.
            ("files", "the files at /data/amplitude-and-mixpanel/", "018e0000-0000-7000-8000-000000000003"),
        ];
        for (id, source, _) in runs {
            state
                .db
                .execute(
                    "INSERT INTO runs (id, source, destination, api_key, gzip, range_from, range_to) \
                     VALUES (?1, ?2, 'http://d', 'phc', 1, '', '')",
                    params![id, source],
                )
                .unwrap();
        }
        let tx = state.db.transaction().unwrap();
        for (id, _, uuid) in runs {
            record_imported(&tx, id, &[("2024-03-01".to_string(), uuid.to_string())]).unwrap();
        }
        tx.commit().unwrap();
        let amplitude = ["the Amplitude export %", "Amplitude's Export API %"];
        let mixpanel = ["the Mixpanel export %", "Mixpanel's export API %"];
        let files = ["the files at %"];
        for (kind, (run, _, uuid)) in [&amplitude[..], &mixpanel, &files].into_iter().zip(runs) {
            assert_eq!(state.imports(kind).unwrap(), [run]);
            assert_eq!(state.imported_days(kind, "2024-03-01", "2024-03-02").unwrap(), [("2024-03-01".into(), 1)]);
            assert_eq!(state.imported_uuids(kind, "2024-03-01", "2024-03-02", "", 10).unwrap(), [uuid]);
        }
        assert!(state.imports(&[]).unwrap().is_empty(), "no pattern, no import");
        // Mixpanel's own rerun skips what Mixpanel's runs handed over, and only that.
        let handed = state.handed_over(&mixpanel, "http://d", "phc").unwrap();
        let expected = uuid::Uuid::parse_str(runs[1].2).unwrap().as_u128();
        assert_eq!(handed.into_iter().collect::<Vec<_>>(), [expected]);
        drop(state);
        let _ = std::fs::remove_file(&path);
    }
}

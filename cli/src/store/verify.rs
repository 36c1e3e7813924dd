//! Verification's tables in the state file, apart from the migrations' own: what each
//! Amplitude import converted and handed to the destination (a uuid a row, by UTC day),
//! and each verification with its days and the uuids it found missing or extra.

use rusqlite::{params, Connection, Transaction};

use super::compare::{Day, Verdict};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS verify_imports (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS verify_imported (
    day TEXT NOT NULL,
    uuid TEXT NOT NULL,
    import INTEGER NOT NULL,
    PRIMARY KEY (day, uuid, import)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS verify_checks (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    range_from TEXT NOT NULL,
    range_to TEXT NOT NULL,
    verdict TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS verify_days (
    check_id INTEGER NOT NULL,
    day TEXT NOT NULL,
    at_source INTEGER NOT NULL,
    at_destination INTEGER NOT NULL,
    missing INTEGER NOT NULL,
    extra INTEGER NOT NULL,
    verdict TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS verify_uuids (
    check_id INTEGER NOT NULL,
    day TEXT NOT NULL,
    uuid TEXT NOT NULL,
    kind TEXT NOT NULL
);
";

pub fn ensure(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(SCHEMA)
}

/// The (UTC day, uuid) of every event a page of an import handed over, in the page's
/// own transaction.
pub fn record_imported(tx: &Transaction<'_>, run: &str, converted: &[(String, String)]) -> rusqlite::Result<()> {
    if converted.is_empty() {
        return Ok(());
    }
    ensure(tx)?;
    tx.execute("INSERT OR IGNORE INTO verify_imports (run) VALUES (?1)", params![run])?;
    let import: i64 = tx.query_row("SELECT id FROM verify_imports WHERE run = ?1", params![run], |r| r.get(0))?;
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO verify_imported (day, uuid, import) VALUES (?1, ?2, ?3)")?;
    for (day, uuid) in converted {
        insert.execute(params![day, uuid, import])?;
    }
    Ok(())
}

/// The imports that recorded what they handed over.
pub fn imports(db: &Connection) -> rusqlite::Result<Vec<String>> {
    ensure(db)?;
    let mut statement = db.prepare("SELECT run FROM verify_imports ORDER BY id")?;
    let rows = statement.query_map([], |r| r.get(0))?;
    rows.collect()
}

pub struct Check<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    pub from: String,
    pub to: String,
    pub verdict: &'a str,
    pub days: &'a [Day],
}

pub fn verdict_name(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Equal => "equal",
        Verdict::Differs => "differs",
        Verdict::StillArriving => "still arriving",
        Verdict::Unknown(_) => "not counted",
    }
}

/// Writes a verification with its days and every missing and extra uuid; returns its id.
pub fn save(db: &mut Connection, check: &Check<'_>) -> rusqlite::Result<i64> {
    ensure(db)?;
    let tx = db.transaction()?;
    tx.execute(
        "INSERT INTO verify_checks (at, source, destination, range_from, range_to, verdict) VALUES (?1, ?2, ?3, ?4, \
         ?5, ?6)",
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
            "INSERT INTO verify_days (check_id, day, at_source, at_destination, missing, extra, verdict) VALUES (?1, \
             ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut uuid_row =
            tx.prepare_cached("INSERT INTO verify_uuids (check_id, day, uuid, kind) VALUES (?1, ?2, ?3, ?4)")?;
        for day in check.days {
            let name = day.day.to_string();
            day_row.execute(params![
                id,
                name,
                day.source.events as i64,
                day.destination.events as i64,
                day.missing.len() as i64,
                day.extra.len() as i64,
                verdict_name(&day.verdict)
            ])?;
            for uuid in &day.missing {
                uuid_row.execute(params![id, name, uuid, "missing"])?;
            }
            for uuid in &day.extra {
                uuid_row.execute(params![id, name, uuid, "extra"])?;
            }
        }
    }
    tx.commit()?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::side::DayCount;

    #[test]
    fn imported_uuids_and_a_check_with_its_uuids_are_kept() {
        let path = std::env::temp_dir().join(format!("m3k-verify-store-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut db = Connection::open(&path).unwrap();
        let tx = db.transaction().unwrap();
        let converted = vec![("2024-03-01".to_string(), "u1".to_string()), ("2024-03-01".into(), "u1".into())];
        record_imported(&tx, "import a", &converted).unwrap();
        tx.commit().unwrap();
        assert_eq!(imports(&db).unwrap(), ["import a"]);
        let count: i64 = db.query_row("SELECT COUNT(*) FROM verify_imported", [], |r| r.get(0)).unwrap();
        assert_eq!(count, 1);
        let day = Day {
            day: chrono::NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
            source: DayCount { rows: 2, events: 2, ..Default::default() },
            destination: DayCount { rows: 1, events: 1, ..Default::default() },
            missing: vec!["u2".into()],
            extra: vec![],
            verdict: Verdict::Differs,
        };
        let check = Check {
            source: "s",
            destination: "d",
            from: "2024-03-01".into(),
            to: "2024-03-02".into(),
            verdict: "differences",
            days: std::slice::from_ref(&day),
        };
        let id = save(&mut db, &check).unwrap();
        let kept: (String, String) = db
            .query_row("SELECT uuid, kind FROM verify_uuids WHERE check_id = ?1", params![id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(kept, ("u2".to_string(), "missing".to_string()));
        let _ = std::fs::remove_file(&path);
    }
}

//! The one owner of the state file's schema: every table is created here, and a file is
//! brought to the latest version by the ladder of upgrades below, in order, each in its
//! own transaction, with SQLite's `PRAGMA user_version` counting the steps taken.
//!
//! A hand-written ladder rather than a migrations crate: the files written before the
//! schema had a version are at `user_version` 0 in several shapes (tables made on
//! demand, columns added later, an older links table), and the first step must adopt
//! each of them as it is; later steps are plain SQL.
//!
//! It also says whose a file is: SQLite's `application_id` marks a state file as
//! migrator3000's. A file with another id, or with tables of another program, is not
//! ours and is left untouched; a file of a build before the mark (our tables, or none)
//! is ours and is marked.

use rusqlite::Connection;

/// The version this build writes.
pub const LATEST: i64 = 5;

/// SQLite's `application_id` of a migrator3000 state file ("M3KS").
pub const APPLICATION_ID: i32 = 0x4d33_4b53;

/// Every table a state file of any version holds (`amplitude_aliases`: before links
/// were kept per destination): a file with others is not ours.
const OUR_TABLES: [&str; 18] = [
    "runs",
    "requests",
    "amplitude_links",
    "amplitude_groups",
    "amplitude_files",
    "amplitude_aliases",
    "rejected",
    "verify_imports",
    "verify_imported",
    "verify_checks",
    "verify_days",
    "verify_uuids",
    "persons_sent",
    "mixpanel_links",
    "mixpanel_files",
    "files_read",
    "metadata_migrations",
    "metadata_objects",
];

/// Whose a SQLite file is, when not ours.
#[derive(Debug, PartialEq, Eq)]
pub enum Foreign {
    /// Marked with another program's `application_id`.
    Marked(i32),
    /// Unmarked, with tables that are not ours (these).
    Tables(Vec<String>),
}

/// `None` when `db` is a state file (marked, of a build before the mark, or empty);
/// reads only, writes nothing.
pub fn foreign(db: &Connection) -> rusqlite::Result<Option<Foreign>> {
    let id: i32 = db.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if id == APPLICATION_ID {
        return Ok(None);
    }
    if id != 0 {
        return Ok(Some(Foreign::Marked(id)));
    }
    let mut statement =
        db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let tables: Vec<String> = statement.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let others: Vec<String> = tables.into_iter().filter(|t| !OUR_TABLES.contains(&t.as_str())).collect();
    Ok((!others.is_empty()).then_some(Foreign::Tables(others)))
}

/// Marks `db` as a state file: done before anything else is written to it.
pub fn mark(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))
}

/// Brings the file to `LATEST`; `Err(found)` when a newer build wrote it.
pub fn upgrade(db: &Connection) -> rusqlite::Result<Result<(), i64>> {
    let found = version(db)?;
    if found > LATEST {
        return Ok(Err(found));
    }
    for (to, step) in STEPS.iter().enumerate().map(|(i, s)| (i as i64 + 1, s)) {
        if to > found {
            db.execute_batch("BEGIN IMMEDIATE")?;
            let done = step(db).and_then(|_| db.execute_batch(&format!("PRAGMA user_version = {to}; COMMIT")));
            if let Err(error) = done {
                let _ = db.execute_batch("ROLLBACK");
                return Err(error);
            }
        }
    }
    Ok(Ok(()))
}

/// The version a file is at (0: of a build before versions, or new).
pub fn version(db: &Connection) -> rusqlite::Result<i64> {
    db.query_row("PRAGMA user_version", [], |r| r.get(0))
}

type Step = fn(&Connection) -> rusqlite::Result<()>;

/// Step `i` takes a file from version `i` to `i + 1`.
const STEPS: [Step; 5] = [version_1, version_2, version_3, version_4, version_5];

/// Version 1: the schema as it stood when versions began. A file of an earlier build
/// may hold any part of it: what is missing is added, what is there is kept.
fn version_1(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(VERSION_1)?;
    let columns: Vec<String> = {
        let mut statement = db.prepare("SELECT name FROM pragma_table_info('runs')")?;
        let names = statement.query_map([], |r| r.get(0))?;
        names.collect::<Result<_, _>>()?
    };
    // Columns of `runs` added after the first state files. Old runs keep a NULL
    // migration: no migration of today continues them.
    for (column, kind) in
        [("migration", "TEXT"), ("live", "INTEGER NOT NULL DEFAULT 0"), ("duplicates", "INTEGER NOT NULL DEFAULT 0")]
    {
        if !columns.iter().any(|c| c == column) {
            db.execute_batch(&format!("ALTER TABLE runs ADD COLUMN {column} {kind}"))?;
        }
    }
    db.execute_batch("CREATE INDEX IF NOT EXISTS runs_by_migration ON runs (migration)")?;
    adopt_old_links(db)
}

/// Version 2: the persons each migration sent (`store::persons`).
fn version_2(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS persons_sent (
            migration TEXT NOT NULL,
            person_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            digest TEXT NOT NULL,
            PRIMARY KEY (migration, person_id)
        ) WITHOUT ROWID;",
    )
}

/// Version 3: a Mixpanel import's record per destination: its devices linked to a user,
/// and its files wholly imported, known by their content's fingerprint.
fn version_3(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE mixpanel_links (
            destination TEXT NOT NULL,
            device_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            PRIMARY KEY (destination, device_id)
        );
        CREATE TABLE mixpanel_files (
            destination TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            name TEXT NOT NULL,
            lines INTEGER NOT NULL,
            PRIMARY KEY (destination, fingerprint)
        );",
    )
}

/// Version 4: the files an import of files handed over whole, per destination, by
/// the fingerprint of their content (`store::files`).
fn version_4(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE files_read (
            destination TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            name TEXT NOT NULL,
            lines INTEGER NOT NULL,
            PRIMARY KEY (destination, fingerprint)
        );",
    )
}

/// Version 5: `metadata`: each copy of a project's metadata (source host and project to
/// destination host and project), and each object it copied or matched: its copy's id at
/// the destination (none while its create is under way), the fields sent (references
/// rewritten) and the fields as the destination answered them, to tell later which side
/// changed.
fn version_5(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE metadata_migrations (
            id INTEGER PRIMARY KEY,
            source_host TEXT NOT NULL,
            source_project INTEGER NOT NULL,
            destination_host TEXT NOT NULL,
            destination_project INTEGER NOT NULL,
            UNIQUE (source_host, source_project, destination_host, destination_project)
        );
        CREATE TABLE metadata_objects (
            migration INTEGER NOT NULL,
            kind TEXT NOT NULL,
            source_id TEXT NOT NULL,
            destination_id TEXT,
            how TEXT NOT NULL,
            sent TEXT NOT NULL,
            answered TEXT,
            PRIMARY KEY (migration, kind, source_id)
        ) WITHOUT ROWID;",
    )
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
            "INSERT OR IGNORE INTO amplitude_links (destination, device_id, user_id) \
             SELECT '', device_id, user_id FROM amplitude_aliases; DROP TABLE amplitude_aliases;",
        )?;
    }
    Ok(())
}

const VERSION_1: &str = "
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

//! The state file, opened: whether `--state` names one this command may use (a folder
//! that exists, a file it can read and write, whole, a SQLite database of its own and
//! not another program's), held by one run at a time (`lock`), in WAL with synchronous
//! writes, and its schema brought up to date.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::error::{self, NotAStateFile, StoreError, StoreResult};
use super::lock::{self, Lock};
use super::schema;

/// How a command uses the state file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// A migration: the file is made if missing, and held while the command runs.
    Run,
    /// Sends what an earlier run kept (`resend-parked`): the file must exist, held.
    Resume,
    /// Writes beside a run without sending what runs keep (`verify`): made if missing,
    /// not held.
    Record,
    /// Reads what runs wrote (`verify --from amplitude`, `demo`): the file must exist;
    /// not held.
    Read,
    /// Shows what runs wrote (`status`): the file must exist; read only while a run
    /// holds it.
    Look,
}

pub struct StateFile {
    pub(super) db: Connection,
    path: PathBuf,
    /// Held while this command may change what runs keep: one run at a time.
    _lock: Option<Lock>,
}

impl StateFile {
    /// Checks the state file at `path`, holds it (as `purpose` asks), opens it, marks it
    /// as ours and brings it up to date (unless it is opened read only).
    pub fn open(path: &Path, purpose: Use) -> StoreResult<StateFile> {
        error::opened_now(path);
        check_folder(path)?;
        let exists = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => return Err(NotAStateFile::Folder { path: path.into() }.into()),
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(cause) => return Err(StoreError::Unreachable { path: path.into(), cause }),
        };
        if !exists && matches!(purpose, Use::Resume | Use::Read | Use::Look) {
            return Err(StoreError::Missing { path: path.into() });
        }
        // What the file lets this process do, from the file itself (as root, whatever its
        // mode says, a file may still be read and written).
        let writable = !exists || OpenOptions::new().read(true).write(true).open(path).is_ok();
        if exists {
            if let Err(cause) = File::open(path) {
                return Err(StoreError::Unreadable { path: path.into(), cause });
            }
            if !writable && !matches!(purpose, Use::Look | Use::Read) {
                return Err(StoreError::ReadOnly { path: path.into() });
            }
            whole(path)?;
        }
        let lock = match purpose {
            Use::Run | Use::Resume => Some(lock::take(path)?),
            Use::Look => lock::take_quietly(path),
            Use::Record | Use::Read => None,
        };
        let read_only = !writable || (purpose == Use::Look && lock.is_none());
        if !read_only && matches!(purpose, Use::Run | Use::Resume) {
            folder_writable(path)?;
        }
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else if exists {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let unusable = |source| StoreError::Open { path: path.into(), source };
        let db = Connection::open_with_flags(path, flags).map_err(unusable)?;
        match schema::foreign(&db).map_err(unusable)? {
            None => {}
            Some(schema::Foreign::Marked(id)) => {
                return Err(NotAStateFile::OtherProgram { path: path.into(), id }.into())
            }
            Some(schema::Foreign::Tables(tables)) => {
                return Err(NotAStateFile::OtherTables { path: path.into(), tables }.into())
            }
        }
        let found = if read_only {
            schema::version(&db).map_err(unusable)?
        } else {
            // Marked before anything else is written: from here on the file says it is ours.
            schema::mark(&db).map_err(unusable)?;
            // WAL and synchronous writes: a commit survives kill -9 and power loss alike.
            db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(unusable)?;
            match schema::upgrade(&db).map_err(unusable)? {
                Ok(()) => schema::LATEST,
                Err(found) => found,
            }
        };
        if found > schema::LATEST {
            return Err(StoreError::Newer { path: path.into(), found, known: schema::LATEST });
        }
        Ok(StateFile { db, path: path.into(), _lock: lock })
    }

    /// The file as `--state` named it.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What can be told of a state file before it exists (a run that fails before it reads
/// anything leaves no file): its folder, that it is not a folder itself, and that the
/// folder takes new files.
pub fn check_new(path: &Path) -> StoreResult<()> {
    check_folder(path)?;
    if path.is_dir() {
        return Err(NotAStateFile::Folder { path: path.into() }.into());
    }
    folder_writable(path)
}

/// The folder `path` is in (`.` for a bare file name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn check_folder(path: &Path) -> StoreResult<()> {
    let folder = folder_of(path);
    match std::fs::metadata(&folder) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(NotAStateFile::InAFile { path: path.into(), folder }.into()),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::NoFolder { path: path.into(), folder }),
        Err(cause) => Err(StoreError::FolderUnreadable { path: path.into(), folder, cause }),
    }
}

/// SQLite writes `-wal` and `-shm` files beside the state file, and the lock file lies
/// there too: the folder must take new files.
fn folder_writable(path: &Path) -> StoreResult<()> {
    let folder = folder_of(path);
    let probe = folder.join(format!(
        ".{}.probe-{}",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    match File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(cause) => Err(StoreError::FolderReadOnly { path: path.into(), folder, cause }),
    }
}

/// A file shorter than its own header says (cut short by a copy, a full disk, a
/// truncation) is refused at once, not at the first page past its end. Read from the
/// header itself: SQLite reads the schema, which may lie past the end, first.
fn whole(path: &Path) -> StoreResult<()> {
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        // Pages past the main file's end may be in the write-ahead log.
        return Ok(());
    }
    let mut start = Vec::with_capacity(100);
    let size = File::open(path)
        .and_then(|f| {
            let size = f.metadata()?.len();
            f.take(100).read_to_end(&mut start)?;
            Ok(size)
        })
        .unwrap_or(0);
    let magic = b"SQLite format 3\0";
    if start.len() < 100 {
        if start.len() >= 16 && start.starts_with(magic) {
            return Err(StoreError::CutShort { path: path.into(), size, expected: None });
        }
        // Empty (SQLite makes it a database), or another kind of file (SQLite says so).
        return Ok(());
    }
    let header = &start[..100];
    let number = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    if !header.starts_with(magic) || number(24) != number(92) {
        // Not a database (SQLite says so), or a header whose page count is not kept.
        return Ok(());
    }
    let page = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    let pages = u64::from(number(28));
    if size < pages * page {
        return Err(StoreError::CutShort { path: path.into(), size, expected: Some((pages, page)) });
    }
    Ok(())
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
        let state = StateFile::open(&path, Use::Run).unwrap();
        assert!(state.amplitude_known("http://d phc").unwrap().devices.is_empty());
        assert!(state.amplitude_known("").unwrap().devices.contains("d1"));
        drop(state);
        StateFile::open(&path, Use::Run).unwrap();
        let version: i64 = Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, LATEST);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_file_of_a_newer_build_is_refused() {
        let path = std::env::temp_dir().join(format!("m3k-state-newer-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
        let Err(error) = StateFile::open(&path, Use::Run) else { panic!("opened") };
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
        let state = StateFile::open(&path, Use::Run).unwrap();
        let run = state.run("r").unwrap().unwrap();
        assert_eq!((run.read, run.migration.as_str()), (7, "m"));
        assert!(state.imports(&["%"]).unwrap().is_empty());
        let version: i64 = state.db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, LATEST);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_second_holder_is_told_who_holds_the_file() {
        let folder = std::env::temp_dir().join(format!("m3k-state-file-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join("s.sqlite");
        let first = StateFile::open(&path, Use::Run).unwrap();
        assert!(first._lock.is_some());
        let Err(StoreError::InUse { holder, .. }) = StateFile::open(&path, Use::Run) else {
            panic!("a second run was let in")
        };
        assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}");
        let looking = StateFile::open(&path, Use::Look).unwrap();
        assert!(looking._lock.is_none(), "status took the lock a run holds");
        drop(first);
        drop(looking);
        assert!(StateFile::open(&path, Use::Run).is_ok());
        let _ = std::fs::remove_dir_all(&folder);
    }

    #[test]
    fn every_table_of_the_schema_is_known_as_ours() {
        let path = std::env::temp_dir().join(format!("m3k-state-ours-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let state = StateFile::open(&path, Use::Run).unwrap();
        state.db.execute_batch("PRAGMA application_id = 0").unwrap();
        assert_eq!(schema::foreign(&state.db).unwrap(), None);
        drop(state);
        let _ = std::fs::remove_file(&path);
    }
}

//! The store layer's error: every failure of the state file, with the file's name, what
//! it is, and what to do.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `--state` does not name a state file (a folder, another program's database).
    #[error(transparent)]
    NotAStateFile(#[from] NotAStateFile),
    /// Another run holds the state file (what it wrote in the lock file: its pid,
    /// subcommand and start).
    #[error(
        "the state file {} is in use by another run: {holder}. One run at a time per state file: wait for it to end \
         (or stop it with Ctrl-C), then run this command again; `migrator3000 status` shows its progress meanwhile",
        path.display()
    )]
    InUse { path: PathBuf, holder: String },
    /// A command that only uses what runs wrote, given a file that does not exist.
    #[error(
        "the state file {} does not exist: no migration has run with it. Check --state (the file the migration was \
         run with; the default is ./migrator3000.sqlite); nothing was created.",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("--state {}: the folder {} does not exist; create it (mkdir -p {}) or correct --state", path.display(), folder.display(), folder.display())]
    NoFolder { path: PathBuf, folder: PathBuf },
    #[error("--state {}: the folder {} cannot be read: {cause}", path.display(), folder.display())]
    FolderUnreadable { path: PathBuf, folder: PathBuf, cause: std::io::Error },
    #[error(
        "the folder {} of the state file {} is read-only ({}): SQLite writes files beside the state file as it goes. \
         Give this user write permission on the folder, or give --state a file in a writable folder",
        folder.display(), path.display(), os_cause(cause)
    )]
    FolderReadOnly { path: PathBuf, folder: PathBuf, cause: std::io::Error },
    #[error("--state {} cannot be read: {cause}", path.display())]
    Unreachable { path: PathBuf, cause: std::io::Error },
    #[error(
        "the state file {} cannot be read ({}): give this user read and write permission on it (chmod u+rw {}) or run \
         the command as its owner",
        path.display(), os_cause(cause), path.display()
    )]
    Unreadable { path: PathBuf, cause: std::io::Error },
    #[error(
        "the state file {} is read-only: this command writes to it as it goes. Give this user write permission on it \
         (chmod u+w {}) or copy it somewhere writable and give --state the copy",
        path.display(), path.display()
    )]
    ReadOnly { path: PathBuf },
    /// Shorter than its header says (`expected`, when the header is whole).
    #[error(
        "the state file {} is cut short: {}. Restore a whole copy of it, or start with a new --state (it would not \
         know what was already sent: `migrator3000 verify` finds what is missing)",
        path.display(), cut_short(*size, *expected)
    )]
    CutShort { path: PathBuf, size: u64, expected: Option<(u64, u64)> },
    #[error(
        "the lock file {} of the state file {} cannot be made ({}): give this user write permission on its folder, \
         or give --state a file in a writable folder",
        lock.display(), path.display(), os_cause(cause)
    )]
    LockFile { path: PathBuf, lock: PathBuf, cause: std::io::Error },
    #[error("the lock file {} cannot be locked: {cause}", lock.display())]
    Lock { lock: PathBuf, cause: std::io::Error },
    /// SQLite could not open or prepare the file.
    #[error("{}", explain(Some(path), source))]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("the state file {} was written by a newer migrator3000 (schema version {found}; this one knows up to {known}): use that version", path.display())]
    Newer { path: PathBuf, found: i64, known: i64 },
    /// A read or write of the open state file.
    #[error("{}", explain(opened().as_deref(), .0))]
    Db(#[from] rusqlite::Error),
}

/// `--state` names something that is not a state file: the flag is wrong.
#[derive(Debug, thiserror::Error)]
pub enum NotAStateFile {
    #[error("--state {} is a folder, not a file; give --state a file, e.g. {}", path.display(), path.join("migrator3000.sqlite").display())]
    Folder { path: PathBuf },
    #[error("--state {}: {} is a file, not a folder; give --state a path in an existing folder", path.display(), folder.display())]
    InAFile { path: PathBuf, folder: PathBuf },
    #[error(
        "--state {} is another program's SQLite database (its application_id is {id:#x}, not migrator3000's): it was \
         left untouched. Give --state a file of migrator3000's own, e.g. migrator3000.sqlite",
        path.display()
    )]
    OtherProgram { path: PathBuf, id: i32 },
    #[error(
        "--state {} is not a migrator3000 state file: it is a SQLite database with tables of another program ({}{}); \
         it was left untouched. Give --state a file of migrator3000's own, e.g. migrator3000.sqlite",
        path.display(), tables.iter().take(5).cloned().collect::<Vec<_>>().join(", "), if tables.len() > 5 { ", ..." } else { "" }
    )]
    OtherTables { path: PathBuf, tables: Vec<String> },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The state file last opened, which a failure of a read or write names.
static OPENED: Mutex<Option<PathBuf>> = Mutex::new(None);

pub(super) fn opened_now(path: &Path) {
    *OPENED.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.to_path_buf());
}

fn opened() -> Option<PathBuf> {
    OPENED.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn os_cause(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn cut_short(size: u64, expected: Option<(u64, u64)>) -> String {
    match expected {
        Some((pages, page)) => format!("{size} bytes where its header says {} ({pages} pages of {page})", pages * page),
        None => format!("{size} bytes, not even a whole SQLite header"),
    }
}

/// A failure of SQLite on the state file in words: which file, what it is, what to do.
fn explain(path: Option<&Path>, error: &rusqlite::Error) -> String {
    let shown = path.map_or_else(|| "the state file".into(), |p| format!("the state file {}", p.display()));
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => format!(
            "the disk holding {shown} is full: free some space on it (or move the file to another disk and give \
             --state its new path), then run the same command again; what was settled is kept"
        ),
        Some(ErrorCode::ReadOnly) => format!(
            "{shown} cannot be written (read-only: its permissions, its folder's, or a read-only disk): make it \
             writable, then run the same command again"
        ),
        Some(ErrorCode::NotADatabase) => format!(
            "{shown} is not a SQLite database: it is cut short or damaged, or another kind of file. Give --state \
             the right file, or restore a copy of it (a new file would not know what was already sent: `migrator3000 \
             verify` finds what is missing)"
        ),
        Some(ErrorCode::DatabaseCorrupt) => format!(
            "{shown} is damaged ({error}): it was cut short or overwritten. Restore a copy of it, or start with a new \
             --state (it would not know what was already sent: `migrator3000 verify` finds what is missing)"
        ),
        Some(ErrorCode::CannotOpen) => format!("{shown} cannot be opened ({error}): check --state"),
        Some(ErrorCode::PermissionDenied) => {
            format!("{shown} cannot be used (permission denied): give this user read and write permission on it")
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "{shown} is busy: another program keeps it locked. Stop that program, then run the same command again"
        ),
        Some(ErrorCode::SystemIoFailure) => format!(
            "{shown} could not be read or written (an I/O error: {error}); check the disk holding it, then run the \
             same command again"
        ),
        _ => format!("{shown} could not be read or written: {error}"),
    }
}

//! One run at a time per state file: an OS lock (flock, through fs4) on
//! `<state>.lock` beside it, released by the OS however the run ends (kill -9
//! included; the lock file stays, it is the lock on it that counts). The holder writes
//! who it is in the file, so that a second run can say it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::error::{StoreError, StoreResult};

/// The lock of a state file, held until dropped (or the process ends).
pub struct Lock {
    _file: File,
}

/// The lock file beside the state file: `migrator3000.sqlite.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(lock_path(path))
}

/// Takes the lock of the state file at `path`, or says who holds it.
pub fn take(path: &Path) -> StoreResult<Lock> {
    let mut file = open_lock_file(path).map_err(|cause| StoreError::LockFile {
        path: path.into(),
        lock: lock_path(path),
        cause,
    })?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            return Err(StoreError::InUse { path: path.into(), holder: holder(&mut file) })
        }
        Err(fs4::TryLockError::Error(cause)) => return Err(StoreError::Lock { lock: lock_path(path), cause }),
    }
    let _ = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| writeln!(file, "{}", me()));
    Ok(Lock { _file: file })
}

/// The lock when no run holds it (`status`: it then may bring the file up to date).
pub fn take_quietly(path: &Path) -> Option<Lock> {
    let file = open_lock_file(path).ok()?;
    fs4::FileExt::try_lock(&file).ok()?;
    Some(Lock { _file: file })
}

/// Who holds a state file: what the holder wrote in the lock file.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    let text = text.trim();
    if text.is_empty() {
        "another run (it has not said which yet)".into()
    } else {
        text.to_string()
    }
}

/// What this process writes in the lock file it holds.
fn me() -> String {
    // The subcommand, never the flags' values (keys, passwords).
    const COMMANDS: [&str; 9] =
        ["posthog", "amplitude", "mixpanel", "files", "metadata", "status", "verify", "demo", "resend-parked"];
    let command = std::env::args().skip(1).find(|w| COMMANDS.contains(&w.as_str())).unwrap_or_default();
    format!(
        "pid {}, `migrator3000 {command}`, since {}",
        std::process::id(),
        migrator3000::timestamp::format(chrono::Utc::now())
    )
}

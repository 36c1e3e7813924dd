//! Local Mixpanel exports: files (JSON lines, plain or gzip) given one by one or as
//! folders (every file in them, sub-folders included, hidden ones left out), read in
//! the order of their paths (the export API's files are named by their day), and
//! Engage exports given with `--profiles`, read after the events.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Bytes, Feed, Kind, Unit};
use crate::shared::retry::ReadError;
use crate::sources::error::SourceError;

pub struct LocalFiles {
    describe: String,
    files: Vec<(PathBuf, Kind)>,
}

/// Every file at `path`, given to `flag`.
fn walk(flag: &'static str, path: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    if path.is_dir() {
        let entries =
            fs::read_dir(path).map_err(|source| SourceError::CannotRead { flag, path: path.to_path_buf(), source })?;
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with('.') {
                walk(flag, &entry.path(), out)?;
            }
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    } else {
        return Err(SourceError::NotThere { flag, path: path.to_path_buf() });
    }
    Ok(())
}

impl LocalFiles {
    pub fn open(events: &[PathBuf], profiles: &[PathBuf]) -> Result<LocalFiles, SourceError> {
        let mut files = Vec::new();
        for (paths, kind, flag) in [(events, Kind::Events, "--files"), (profiles, Kind::Profiles, "--profiles")] {
            let mut found = Vec::new();
            for path in paths {
                walk(flag, path, &mut found)?;
            }
            found.sort();
            found.dedup();
            files.extend(found.into_iter().map(|p| (p, kind)));
        }
        if files.is_empty() {
            return Err(SourceError::NoFiles);
        }
        let named: Vec<String> = events.iter().chain(profiles).map(|p| p.display().to_string()).collect();
        Ok(LocalFiles { describe: format!("the Mixpanel export {}", named.join(", ")), files })
    }
}

impl Feed for LocalFiles {
    fn units(&self) -> Vec<Unit> {
        self.files.iter().map(|(path, kind)| Unit { name: path.display().to_string(), kind: *kind }).collect()
    }

    fn read(&mut self, unit: &Unit) -> Result<Bytes, ReadError> {
        Ok(fs::read(&unit.name))
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn is_local(&self) -> bool {
        true
    }
}

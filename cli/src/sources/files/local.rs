//! Files on this machine: one file, or a folder and its sub-folders.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Listed, Place};
use crate::shared::retry::ReadError;
use crate::sources::error::SourceError;

pub struct Local {
    path: PathBuf,
}

impl Local {
    pub fn open(path: &Path) -> Result<Local, SourceError> {
        if !path.exists() {
            return Err(SourceError::NotThere { flag: "--files", path: path.to_path_buf() });
        }
        Ok(Local { path: path.to_path_buf() })
    }

    fn where_(&self, name: &str) -> PathBuf {
        if self.path.is_dir() {
            self.path.join(name)
        } else {
            self.path.clone()
        }
    }
}

fn listed(path: &Path, name: String) -> Result<Listed, ReadError> {
    let meta = fs::metadata(path).map_err(|e| ReadError::Fatal(format!("--files: {}: {e}", path.display())))?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    Ok(Listed { name, size: meta.len(), version: format!("modified {}", modified.map_or(0, |d| d.as_nanos())) })
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Listed>) -> Result<(), ReadError> {
    let entries = fs::read_dir(dir).map_err(|e| ReadError::Fatal(format!("--files: {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else {
            let name = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
            out.push(listed(&path, name)?);
        }
    }
    Ok(())
}

impl Place for Local {
    fn list(&mut self) -> Result<Vec<Listed>, ReadError> {
        let mut out = Vec::new();
        if self.path.is_dir() {
            walk(&self.path, &self.path, &mut out)?;
        } else {
            let name = self.path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
            out.push(listed(&self.path, name)?);
        }
        Ok(out)
    }

    fn read(&mut self, file: &Listed) -> Result<Vec<u8>, ReadError> {
        let path = self.where_(&file.name);
        fs::read(&path).map_err(|e| ReadError::Fatal(format!("--files: {}: {e}", path.display())))
    }

    fn describe(&self) -> String {
        format!("the files at {}", self.path.display())
    }
}

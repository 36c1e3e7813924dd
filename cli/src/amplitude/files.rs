//! A local Amplitude export: the zip the Export API returns (folders of `*.json.gz`
//! files), or a folder of such files, as one unit.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Archive, File};
use crate::source::SourceError;

pub struct LocalExport {
    path: PathBuf,
}

impl LocalExport {
    pub fn open(path: &Path) -> Result<LocalExport, String> {
        if !path.exists() {
            return Err(format!("--files: {} does not exist", path.display()));
        }
        Ok(LocalExport { path: path.to_path_buf() })
    }
}

/// The `.json.gz` / `.json` files of a zip, by name.
pub fn zip_files(bytes: &[u8], what: &str) -> Result<Vec<File>, String> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("{what} is not a zip ({e})"))?;
    let mut files = Vec::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| format!("{what}: {e}"))?;
        let name = file.name().to_string();
        if !file.is_file() || !(name.ends_with(".json.gz") || name.ends_with(".json")) {
            continue;
        }
        let mut data = Vec::with_capacity(file.size() as usize);
        file.read_to_end(&mut data).map_err(|e| format!("{what}: {name}: {e}"))?;
        files.push((name, data));
    }
    Ok(files)
}

fn folder_files(root: &Path, dir: &Path, out: &mut Vec<File>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("--files: {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            folder_files(root, &path, out)?;
            continue;
        }
        let name = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        if name.ends_with(".json.gz") || name.ends_with(".json") {
            out.push((name, fs::read(&path).map_err(|e| format!("--files: {}: {e}", path.display()))?));
        } else if name.ends_with(".zip") {
            let bytes = fs::read(&path).map_err(|e| format!("--files: {}: {e}", path.display()))?;
            out.extend(zip_files(&bytes, &name)?.into_iter().map(|(inner, data)| (format!("{name}/{inner}"), data)));
        }
    }
    Ok(())
}

impl Archive for LocalExport {
    fn units(&self) -> Vec<String> {
        vec![String::new()]
    }

    fn files(&mut self, _unit: &str) -> Result<Vec<File>, SourceError> {
        if self.path.is_dir() {
            let mut files = Vec::new();
            folder_files(&self.path, &self.path, &mut files).map_err(SourceError::Fatal)?;
            return Ok(files);
        }
        let bytes =
            fs::read(&self.path).map_err(|e| SourceError::Fatal(format!("--files: {}: {e}", self.path.display())))?;
        zip_files(&bytes, &self.path.display().to_string()).map_err(SourceError::Fatal)
    }

    fn describe(&self) -> String {
        format!("the Amplitude export {}", self.path.display())
    }
}

//! A local Amplitude export, as one unit: the zip the Export API returns (folders of
//! `*.json.gz` files), a folder of such files (or of such zips), or one `.json.gz`.
//! Files are listed first, each with what identifies its content (a zip entry's CRC-32
//! and size; a file's size and modification time), and read one at a time.

use std::collections::HashMap;
use std::fs;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::convert::Converted;
use super::{Archive, Bytes, Entry};
use crate::shared::retry::ReadError;
use crate::sources::error::{SourceError, Unreadable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Folder,
    Zip,
    File,
}

/// Where an entry's bytes are.
enum Place {
    File(PathBuf),
    InZip(PathBuf, String),
    /// A zip that cannot be opened, and why.
    Broken(Unreadable),
}

pub struct LocalExport {
    path: PathBuf,
    kind: Kind,
    places: HashMap<String, Place>,
    /// The zip last read from, kept open for its next entry.
    open: Option<(PathBuf, zip::ZipArchive<BufReader<fs::File>>)>,
}

fn is_export_file(name: &str) -> bool {
    name.ends_with(".json.gz") || name.ends_with(".json")
}

/// The export files of an open zip: each one's name in it, and what identifies its
/// content (its CRC-32 and size, from the zip's directory: nothing is unpacked).
pub fn zip_listing<R: Read + Seek>(archive: &mut zip::ZipArchive<R>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let Ok(file) = archive.by_index_raw(i) else { continue };
        if file.is_file() && is_export_file(file.name()) {
            out.push((file.name().to_string(), format!("crc32 {:08x}, {} bytes", file.crc32(), file.size())));
        }
    }
    out
}

/// One file of an open zip (its CRC-32 checked as it is unpacked).
pub fn zip_read<R: Read + Seek>(archive: &mut zip::ZipArchive<R>, name: &str) -> Bytes {
    let mut file = archive.by_name(name)?;
    let mut data = Vec::with_capacity(file.size() as usize);
    file.read_to_end(&mut data)?;
    Ok(data)
}

fn file_content(path: &Path) -> Result<String, SourceError> {
    let meta = fs::metadata(path).map_err(|source| SourceError::CannotRead {
        flag: "--files",
        path: path.to_path_buf(),
        source,
    })?;
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    Ok(format!("{} bytes, modified {}", meta.len(), modified.map_or(0, |d| d.as_nanos())))
}

impl LocalExport {
    pub fn open(path: &Path) -> Result<LocalExport, SourceError> {
        if !path.exists() {
            return Err(SourceError::NotThere { flag: "--files", path: path.to_path_buf() });
        }
        let kind = if path.is_dir() {
            Kind::Folder
        } else {
            let mut head = [0u8; 4];
            let read = fs::File::open(path)
                .and_then(|mut f| f.read(&mut head))
                .map_err(|source| SourceError::CannotRead { flag: "--files", path: path.to_path_buf(), source })?;
            let name = path.to_string_lossy();
            match &head[..read] {
                [b'P', b'K', ..] => Kind::Zip,
                [0x1f, 0x8b, ..] => Kind::File,
                [b'{', ..] | [0xef, 0xbb, 0xbf, ..] if is_export_file(&name) => Kind::File,
                _ => return Err(SourceError::NotAnExport(path.to_path_buf())),
            }
        };
        Ok(LocalExport { path: path.to_path_buf(), kind, places: HashMap::new(), open: None })
    }

    /// The entries of the zip at `path`, named `prefix` + their name in it.
    fn zip_entries(&mut self, path: &Path, prefix: &str, out: &mut Vec<Entry>) {
        let opened = fs::File::open(path)
            .map_err(Unreadable::from)
            .and_then(|f| zip::ZipArchive::new(BufReader::new(f)).map_err(|e| Unreadable::NotAWholeZip(Arc::new(e))));
        let mut archive = match opened {
            Ok(archive) => archive,
            Err(why) => {
                let name = if prefix.is_empty() {
                    path.display().to_string()
                } else {
                    prefix.trim_end_matches('/').to_string()
                };
                out.push(Entry { name: name.clone(), content: "unreadable".into() });
                self.places.insert(name, Place::Broken(why));
                return;
            }
        };
        for (inner, content) in zip_listing(&mut archive) {
            let name = format!("{prefix}{inner}");
            out.push(Entry { name: name.clone(), content });
            self.places.insert(name, Place::InZip(path.to_path_buf(), inner));
        }
    }

    fn folder_entries(&mut self, dir: &Path, out: &mut Vec<Entry>) -> Result<(), SourceError> {
        let entries = fs::read_dir(dir).map_err(|source| SourceError::CannotRead {
            flag: "--files",
            path: dir.to_path_buf(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                self.folder_entries(&path, out)?;
                continue;
            }
            let name = path.strip_prefix(&self.path).unwrap_or(&path).to_string_lossy().into_owned();
            if is_export_file(&name) {
                let content = file_content(&path)?;
                out.push(Entry { name: name.clone(), content });
                self.places.insert(name, Place::File(path));
            } else if name.ends_with(".zip") {
                self.zip_entries(&path, &format!("{name}/"), out);
            }
        }
        Ok(())
    }

    fn read_in_zip(&mut self, path: &Path, inner: &str) -> Bytes {
        if self.open.as_ref().is_none_or(|(open, _)| open != path) {
            let file = fs::File::open(path)?;
            let archive =
                zip::ZipArchive::new(BufReader::new(file)).map_err(|e| Unreadable::ZipCutShort(Arc::new(e)))?;
            self.open = Some((path.to_path_buf(), archive));
        }
        let (_, archive) = self.open.as_mut().ok_or(Unreadable::NoZip)?;
        zip_read(archive, inner)
    }
}

impl LocalExport {
    /// Whether the export holds anything to import, before its migration starts: its
    /// files are read, in order, until a line is an event (or a group's properties). An
    /// error naming --files when it holds no export file, or every file was read and no
    /// line is one; a file that cannot be read is left to the import to name.
    pub fn check(&mut self) -> Result<(), ReadError> {
        let mut entries = self.entries("")?;
        let what = "give the zip Amplitude's Export API returned (gzipped files of one JSON object a line), or the \
                    folder it was unzipped to";
        if entries.is_empty() {
            return Err(ReadError::Fatal(format!(
                "--files: {} holds no file of an Amplitude export (no .json.gz or .json file, loose or in a zip); \
                 {what}",
                self.path.display()
            )));
        }
        entries.sort_by(|a, b| super::order::compare(&a.name, &b.name));
        let (mut lines, mut first) = (0u64, None);
        for entry in &entries {
            let Ok(Ok(text)) = self.read("", entry).map(|bytes| bytes.and_then(|b| super::lines_of(&b))) else {
                return Ok(());
            };
            for (n, line) in text.iter().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                lines += 1;
                match super::convert::convert(line) {
                    Ok(Converted::Event(_) | Converted::Groups { .. }) => return Ok(()),
                    Ok(Converted::Skipped) => {}
                    Err(why) => {
                        first.get_or_insert_with(|| format!("{} line {}: {why}", entry.name, n + 1));
                    }
                }
            }
        }
        let files = if entries.len() == 1 { "its file".to_string() } else { format!("its {} files", entries.len()) };
        Err(ReadError::Fatal(match first {
            Some(first) => format!(
                "--files: {} holds no Amplitude event: none of the {lines} lines of {files} is one (the first, {first}); \
                 {what}",
                self.path.display()
            ),
            None if lines == 0 => format!(
                "--files: {} holds no Amplitude event: {files} {} empty; {what}",
                self.path.display(),
                if entries.len() == 1 { "is" } else { "are" }
            ),
            None => format!(
                "--files: {} holds no Amplitude event: the {lines} lines of {files} are session_start markers, which \
                 are not imported; {what}",
                self.path.display()
            ),
        }))
    }
}

impl Archive for LocalExport {
    fn units(&self) -> Vec<String> {
        vec![String::new()]
    }

    fn entries(&mut self, _unit: &str) -> Result<Vec<Entry>, ReadError> {
        let mut out = Vec::new();
        self.places.clear();
        let path = self.path.clone();
        match self.kind {
            Kind::Folder => self.folder_entries(&path, &mut out)?,
            Kind::Zip => self.zip_entries(&path, "", &mut out),
            Kind::File => {
                let name = path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned());
                let content = file_content(&path)?;
                out.push(Entry { name: name.clone(), content });
                self.places.insert(name, Place::File(path));
            }
        }
        Ok(out)
    }

    fn read(&mut self, _unit: &str, entry: &Entry) -> Result<Bytes, ReadError> {
        Ok(match self.places.get(&entry.name) {
            Some(Place::File(path)) => fs::read(path).map_err(Unreadable::from),
            Some(Place::InZip(path, inner)) => {
                let (path, inner) = (path.clone(), inner.clone());
                self.read_in_zip(&path, &inner)
            }
            Some(Place::Broken(why)) => Err(why.clone()),
            None => Err(Unreadable::Gone),
        })
    }

    fn describe(&self) -> String {
        format!("the Amplitude export {}", self.path.display())
    }

    fn listing(&mut self) -> Result<Option<Vec<Entry>>, ReadError> {
        self.entries("").map(Some)
    }
}

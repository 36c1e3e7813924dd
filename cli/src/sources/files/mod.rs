//! Files of PostHog-shaped events as a source: JSON lines (plain, gzip or zstd) in a
//! local folder (`local`) or an S3-compatible bucket (`s3`), read in the order of their
//! names, each line turned into an event (`convert`). Each file is known by the
//! fingerprint of its content: a file this destination got whole (recorded with the
//! page holding its last line) is skipped wherever it lies now, and a kill resumes at
//! the file and line where the last settled page ended.

pub mod convert;
pub mod local;
pub mod s3;

use std::collections::{BTreeMap, HashSet};

use serde_json::json;

use crate::shared::retry::ReadError;
use crate::sources::lines;
use crate::sources::{Page, Source};
use crate::store::files::FileRead;
use crate::store::runs::Cursor;

/// A file as listed: its name (a path under the folder, or a key in the bucket), its
/// size, and what tells a changed file at the same name (a modification time, an ETag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub size: u64,
    pub version: String,
}

/// Where the files lie.
pub trait Place {
    /// Every file under the place, in any order.
    fn list(&mut self) -> Result<Vec<Listed>, ReadError>;
    /// One file's bytes as stored.
    fn read(&mut self, file: &Listed) -> Result<Vec<u8>, ReadError>;
    fn describe(&self) -> String;
}

/// The kinds of file read: JSON lines, maybe compressed.
pub fn is_events_file(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    let plain = ["", ".gz", ".zst", ".zstd"].iter().find_map(|c| base.strip_suffix(c).filter(|_| !c.is_empty()));
    let plain = plain.unwrap_or(&base);
    // PostHog's batch export writes a manifest beside its files: it holds no events.
    !plain.ends_with("_manifest.json") && [".jsonl", ".ndjson", ".json"].iter().any(|ext| plain.ends_with(ext))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The destination (host and project key) files are recorded for.
    pub destination: String,
    /// Skip a file that cannot be read (damaged) instead of stopping at it.
    pub skip_unreadable: bool,
}

/// A position: the file (by name and fingerprint), its lines handed over, and the
/// byte after the last of them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    name: String,
    fingerprint: String,
    line: u64,
    offset: usize,
}

const SEPARATOR: char = '\u{1f}';

impl Position {
    fn key(&self) -> String {
        format!("{}{SEPARATOR}{}{SEPARATOR}{}{SEPARATOR}{}", self.name, self.fingerprint, self.line, self.offset)
    }

    fn of(key: &str) -> Option<Position> {
        let mut parts = key.split(SEPARATOR);
        Some(Position {
            name: parts.next()?.into(),
            fingerprint: parts.next()?.into(),
            line: parts.next()?.parse().ok()?,
            offset: parts.next()?.parse().ok()?,
        })
    }
}

struct Open {
    index: usize,
    fingerprint: String,
    text: String,
    at: Position,
}

#[derive(Debug, Default)]
struct Counts {
    known_files: u64,
    /// Rejected lines per file (this process).
    rejected: BTreeMap<String, u64>,
    not_read: Vec<String>,
    unreadable: Vec<String>,
}

pub struct Files<P: Place> {
    place: P,
    options: Options,
    /// Fingerprints of the files this destination got whole.
    known: HashSet<String>,
    listing: Option<Vec<Listed>>,
    next: usize,
    open: Option<Open>,
    resume: Option<Position>,
    started: bool,
    last_time: String,
    counts: Counts,
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl<P: Place> Files<P> {
    pub fn new(place: P, options: Options, known: HashSet<String>) -> Files<P> {
        Files {
            place,
            options,
            known,
            listing: None,
            next: 0,
            open: None,
            resume: None,
            started: false,
            last_time: String::new(),
            counts: Counts::default(),
        }
    }

    /// Lists the files once: those of events in name order (others are named in the
    /// summary). Their names, sizes and versions are part of the migration's identity.
    pub fn take_stock(&mut self) -> Result<(), ReadError> {
        if self.listing.is_some() {
            return Ok(());
        }
        let mut all = self.place.list()?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let (files, others): (Vec<Listed>, Vec<Listed>) = all.into_iter().partition(|f| is_events_file(&f.name));
        // PostHog's batch export's manifests are expected beside its files: not named.
        self.counts.not_read =
            others.into_iter().map(|f| f.name).filter(|name| !name.ends_with("_manifest.json")).collect();
        self.listing = Some(files);
        Ok(())
    }

    fn listing(&self) -> &[Listed] {
        self.listing.as_deref().unwrap_or_default()
    }

    /// The bytes of all files, and of those before the one at `index`.
    fn bytes_before(&self, index: usize) -> (u64, u64) {
        let listing = self.listing();
        (listing.iter().map(|f| f.size).sum(), listing[..index.min(listing.len())].iter().map(|f| f.size).sum())
    }

    /// Opens the next file to read: files this destination got whole are skipped, and on
    /// a resume the files before the one it was in. `false` when none is left.
    fn open_next(&mut self) -> Result<bool, ReadError> {
        loop {
            let Some(file) = self.listing().get(self.next).cloned() else { return Ok(false) };
            if let Some(resume) = &self.resume {
                if file.name < resume.name {
                    self.next += 1;
                    continue;
                }
            }
            // The index moves past a file only once it is read or skipped: after an error
            // (a bucket that fails for a while) the same file is tried again.
            let bytes = self.place.read(&file)?;
            let fingerprint = lines::fingerprint(&bytes);
            if self.known.contains(&fingerprint) {
                self.next += 1;
                self.counts.known_files += 1;
                continue;
            }
            let text = match lines::text(&bytes) {
                Ok(text) => text,
                Err(why) => {
                    if !self.options.skip_unreadable {
                        return Err(ReadError::Fatal(format!(
                            "{}: {} cannot be read: {why}. Put a whole copy in its place, or run again with \
                             --skip-unreadable to import the rest without it",
                            self.place.describe(),
                            file.name
                        )));
                    }
                    self.next += 1;
                    self.counts.unreadable.push(format!(
                        "{} was skipped as unreadable (--skip-unreadable): {why}. Put a whole copy in its place and \
                         run again to import it.",
                        file.name
                    ));
                    continue;
                }
            };
            let mut at = Position { name: file.name.clone(), fingerprint: fingerprint.clone(), line: 0, offset: 0 };
            if let Some(resume) = self.resume.take() {
                // The same content at the same name: on from where the run was.
                if resume.name == file.name && resume.fingerprint == fingerprint && resume.offset <= text.len() {
                    at = resume;
                }
            }
            self.open = Some(Open { index: self.next, fingerprint, text, at });
            self.next += 1;
            return Ok(true);
        }
    }
}

impl<P: Place + Send> Source for Files<P> {
    fn next_page(&mut self, after: Option<&Cursor>, limit: usize) -> Result<Page, ReadError> {
        if !self.started {
            self.take_stock()?;
            self.resume = after.and_then(|c| Position::of(&c.key));
            if let Some(cursor) = after {
                self.last_time = cursor.timestamp.clone();
            }
            self.started = true;
        }
        let mut page = Page::default();
        let mut handed = 0;
        let mut last: Option<Position> = None;
        while handed < limit {
            let Some(open) = self.open.as_mut() else {
                match self.open_next() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    // What the page holds goes first; the error comes again on the next call.
                    Err(_) if handed > 0 || !page.files.is_empty() => break,
                    Err(error) => return Err(error),
                }
            };
            let Some((line, next)) = lines::next_line(&open.text, open.at.offset) else {
                page.files.push(FileRead {
                    destination: self.options.destination.clone(),
                    fingerprint: open.fingerprint.clone(),
                    name: open.at.name.clone(),
                    lines: open.at.line,
                });
                self.known.insert(open.fingerprint.clone());
                last = Some(open.at.clone());
                self.open = None;
                continue;
            };
            let line = line.trim();
            open.at.offset = next;
            open.at.line += 1;
            last = Some(open.at.clone());
            if line.is_empty() {
                continue;
            }
            handed += 1;
            match convert::convert(line) {
                Ok(event) => {
                    self.last_time = event.timestamp;
                    page.events.push(event.json);
                }
                Err(why) => {
                    page.skipped.push(format!("{} line {}: {why}", open.at.name, open.at.line));
                    *self.counts.rejected.entry(open.at.name.clone()).or_default() += 1;
                }
            }
        }
        if let Some(at) = last {
            page.next = Some(Cursor { timestamp: self.last_time.clone(), key: at.key() });
        }
        Ok(page)
    }

    fn describe(&self) -> String {
        self.place.describe()
    }

    /// The place and what it holds: another file, or a changed one, makes another
    /// migration (whose files this destination got whole are skipped by content).
    fn identity(&self) -> String {
        let files: Vec<(&str, u64, &str)> =
            self.listing().iter().map(|f| (f.name.as_str(), f.size, f.version.as_str())).collect();
        let digest = migrator3000::event_id::derive(&json!(["files", files]));
        format!("{} (content {})", self.place.describe(), &digest[..8])
    }

    /// The bytes of the files behind the cursor, of the bytes of them all.
    fn share(&self, cursor: &Cursor) -> Option<f64> {
        let at = Position::of(&cursor.key)?;
        let index = self.listing().iter().position(|f| f.name == at.name)?;
        let (total, before) = self.bytes_before(index);
        let within = match &self.open {
            Some(open) if open.index == index => at.offset as f64 / open.text.len().max(1) as f64,
            _ => 1.0,
        };
        let size = self.listing()[index].size as f64;
        Some(((before as f64 + within * size) / total.max(1) as f64).min(1.0))
    }

    fn starting_note(&self) -> Option<String> {
        let listing = self.listing();
        let (total, _) = self.bytes_before(0);
        Some(format!(
            "{} of events, {:.1} MB.",
            plural(listing.len() as u64, "file", "files"),
            total as f64 / 1_000_000.0
        ))
    }

    fn remarks(&self) -> Vec<String> {
        let c = &self.counts;
        let mut out = Vec::new();
        if c.known_files > 0 {
            out.push(format!(
                "{} this destination got before (the same content) {} skipped.",
                plural(c.known_files, "file", "files"),
                if c.known_files == 1 { "was" } else { "were" }
            ));
        }
        if !c.rejected.is_empty() {
            let each: Vec<String> = c.rejected.iter().map(|(name, n)| format!("{name}: {n}")).collect();
            out.push(format!("Lines rejected, by file: {}.", each.join(", ")));
        }
        if !c.not_read.is_empty() {
            let names: Vec<&str> = c.not_read.iter().take(5).map(String::as_str).collect();
            out.push(format!(
                "{} not read (only JSON lines are: .jsonl, .ndjson, .json, plain, .gz or .zst): {}{}.",
                plural(c.not_read.len() as u64, "file was", "files were"),
                names.join(", "),
                if c.not_read.len() > 5 { ", ..." } else { "" }
            ));
        }
        out.extend(c.unreadable.iter().cloned());
        out
    }

    /// Files skipped as unreadable: their lines were not imported, so the run is not
    /// complete and the next one reads again (files the destination got whole skipped).
    fn unaccounted(&self) -> Option<String> {
        let skipped = self.counts.unreadable.len() as u64;
        (skipped > 0).then(|| {
            format!(
                "{} could not be read (named above): {} lines were not imported. Put a whole copy in place and run \
                 the same command: what was imported is not sent again",
                plural(skipped, "file", "files"),
                if skipped == 1 { "its" } else { "their" }
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    struct Memory(Vec<(String, Vec<u8>)>);

    impl Place for Memory {
        fn list(&mut self) -> Result<Vec<Listed>, ReadError> {
            Ok(self
                .0
                .iter()
                .map(|(name, bytes)| Listed { name: name.clone(), size: bytes.len() as u64, version: String::new() })
                .collect())
        }
        fn read(&mut self, file: &Listed) -> Result<Vec<u8>, ReadError> {
            Ok(self.0.iter().find(|(n, _)| *n == file.name).unwrap().1.clone())
        }
        fn describe(&self) -> String {
            "memory".into()
        }
    }

    fn line(n: u32) -> String {
        json!({"event": "clicked", "distinct_id": "u", "timestamp": format!("2024-03-01T00:00:{n:02}Z"), "properties": {"n": n}}).to_string()
    }

    fn memory() -> Memory {
        Memory(vec![
            ("b.jsonl".into(), [line(3), "oops".into(), String::new(), line(4)].join("\n").into_bytes()),
            ("a.jsonl".into(), [line(1), line(2)].join("\n").into_bytes()),
            ("export_manifest.json".into(), b"{\"files\": []}".to_vec()),
            ("notes.txt".into(), b"hello".to_vec()),
        ])
    }

    fn options() -> Options {
        Options { destination: "d".into(), skip_unreadable: false }
    }

    fn numbers(page: &Page) -> Vec<u64> {
        page.events
            .iter()
            .map(|e| serde_json::from_str::<Value>(e).unwrap()["properties"]["n"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn files_are_read_in_name_order_bad_lines_named_and_whole_files_recorded() {
        let mut files = Files::new(memory(), options(), HashSet::new());
        let first = files.next_page(None, 3).unwrap();
        assert_eq!(numbers(&first), [1, 2, 3]);
        assert_eq!(first.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["a.jsonl"]);
        assert_eq!(first.files[0].fingerprint, lines::fingerprint(&memory().0[1].1));
        let second = files.next_page(first.next.as_ref(), 3).unwrap();
        assert_eq!(numbers(&second), [4]);
        assert_eq!(second.skipped, ["b.jsonl line 2: the line is not a JSON object"]);
        assert_eq!(second.files.len(), 1, "b.jsonl ends with this page");
        assert!(files.next_page(second.next.as_ref(), 3).unwrap().next.is_none());
        let remarks = files.remarks().join("\n");
        assert!(remarks.contains("Lines rejected, by file: b.jsonl: 1."), "{remarks}");
        assert!(remarks.contains("1 file was not read") && remarks.contains("notes.txt"), "{remarks}");
    }

    #[test]
    fn a_new_source_resumes_at_the_line_and_skips_files_by_content() {
        let mut first = Files::new(memory(), options(), HashSet::new());
        let page = first.next_page(None, 3).unwrap();
        let mut resumed = Files::new(memory(), options(), HashSet::new());
        let rest = resumed.next_page(page.next.as_ref(), 100).unwrap();
        assert_eq!(numbers(&rest), [4], "resumed after line 1 of b.jsonl");
        // A file moved and renamed, with the same content: skipped.
        let known: HashSet<String> = page.files.iter().map(|f| f.fingerprint.clone()).collect();
        let mut moved = memory();
        moved.0[1].0 = "old/renamed.jsonl.gz".into();
        let mut again = Files::new(moved, options(), known);
        let all = again.next_page(None, 100).unwrap();
        assert_eq!(numbers(&all), [3, 4]);
        assert!(again.remarks()[0].starts_with("1 file this destination got before"), "{:?}", again.remarks());
    }

    #[test]
    fn a_changed_file_at_the_cursor_is_read_from_its_start() {
        let mut first = Files::new(memory(), options(), HashSet::new());
        let page = first.next_page(None, 3).unwrap();
        let mut changed = memory();
        changed.0[0].1 = [line(5), line(6)].join("\n").into_bytes();
        let mut resumed = Files::new(changed, options(), HashSet::new());
        assert_eq!(numbers(&resumed.next_page(page.next.as_ref(), 100).unwrap()), [5, 6]);
    }

    #[test]
    fn names_of_event_files() {
        for yes in ["a.jsonl", "x/2024-01-01T00:00:00-2024-01-01T01:00:00.jsonl.gz", "a.json.zst", "A.NDJSON"] {
            assert!(is_events_file(yes), "{yes}");
        }
        for no in ["a.parquet", "a.jsonl.br", "p/2024_manifest.json", "a.csv", "a.gz"] {
            assert!(!is_events_file(no), "{no}");
        }
    }
}

//! Amplitude as a source: its export (a zip of gzipped JSON-lines files, one or more per
//! hour), read from local files or from Amplitude's Export API, each line converted
//! (`convert`), and each device linked once to its user by an alias event before the
//! user's first event on it. A device several users shared is linked to the first of
//! them only: linking it to more would merge those users into one person.

pub mod convert;
pub mod export_api;
pub mod files;

use std::collections::{HashSet, VecDeque};
use std::io::Read;

use crate::source::{Cursor, Page, Source, SourceError};
use convert::Converted;

/// An export file: its name and its bytes.
pub type File = (String, Vec<u8>);

/// Where the export files come from: units (the local export, or one hour range of the
/// Export API each) of named files.
pub trait Archive {
    /// The units in order, by name.
    fn units(&self) -> Vec<String>;
    /// The files of a unit, by name, with their bytes (gzipped JSON lines, or plain).
    fn files(&mut self, unit: &str) -> Result<Vec<File>, SourceError>;
    fn describe(&self) -> String;
}

/// A position in the export: the unit, the file in it, and the last line handed over.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    unit: String,
    file: String,
    line: u64,
}

const SEPARATOR: char = '\u{1f}';

impl Position {
    fn key(&self) -> String {
        format!("{}{SEPARATOR}{}{SEPARATOR}{}", self.unit, self.file, self.line)
    }

    fn of(key: &str) -> Option<Position> {
        let mut parts = key.split(SEPARATOR);
        Some(Position { unit: parts.next()?.into(), file: parts.next()?.into(), line: parts.next()?.parse().ok()? })
    }
}

/// The lines of one export file: gunzipped when gzipped.
pub fn lines_of(name: &str, bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut text = String::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| format!("{name} is not a readable gzip of text ({e})"))?;
    } else {
        text = String::from_utf8_lossy(bytes).into_owned();
    }
    Ok(text.lines().map(str::to_string).collect())
}

pub struct Amplitude<A: Archive> {
    archive: A,
    /// Devices linked to a user before this run (from the state file) and during it.
    linked: HashSet<String>,
    units: VecDeque<String>,
    /// Every unit, and the current unit's files with their lines once read: how far a
    /// cursor is through the export.
    all_units: Vec<String>,
    unit_files: Vec<(String, Option<u64>)>,
    files: VecDeque<File>,
    lines: VecDeque<String>,
    at: Option<Position>,
    last_time: String,
    started: bool,
}

impl<A: Archive> Amplitude<A> {
    pub fn new(archive: A, linked: &HashSet<(String, String)>) -> Amplitude<A> {
        let linked = linked.iter().map(|(_, device)| device.clone()).collect();
        let all_units = archive.units();
        Amplitude {
            archive,
            linked,
            units: all_units.clone().into(),
            all_units,
            unit_files: Vec::new(),
            files: VecDeque::new(),
            lines: VecDeque::new(),
            at: None,
            last_time: String::new(),
            started: false,
        }
    }

    /// The next file's lines, skipping what `resume` says was handed over already.
    fn next_file(&mut self, resume: Option<&Position>) -> Result<bool, SourceError> {
        loop {
            if let Some((name, bytes)) = self.files.pop_front() {
                let unit = self.at.as_ref().map(|p| p.unit.clone()).unwrap_or_default();
                if resume.is_some_and(|r| (r.unit.as_str(), r.file.as_str()) > (unit.as_str(), name.as_str())) {
                    continue;
                }
                let lines = lines_of(&name, &bytes).map_err(SourceError::Fatal)?;
                if let Some(file) = self.unit_files.iter_mut().find(|(file, _)| *file == name) {
                    file.1 = Some(lines.len() as u64);
                }
                let skip = resume.filter(|r| r.unit == unit && r.file == name).map_or(0, |r| r.line);
                self.lines = lines.into_iter().skip(skip as usize).collect();
                self.at = Some(Position { unit, file: name, line: skip });
                return Ok(true);
            }
            let Some(unit) = self.units.front().cloned() else { return Ok(false) };
            if resume.is_some_and(|r| r.unit > unit) {
                self.units.pop_front();
                continue;
            }
            // Fetched before it leaves the queue: a failure leaves it to try again.
            let mut files = self.archive.files(&unit)?;
            files.sort_by(|a, b| a.0.cmp(&b.0));
            self.unit_files = files.iter().map(|(name, _)| (name.clone(), None)).collect();
            self.units.pop_front();
            self.files = files.into();
            self.at = Some(Position { unit, file: String::new(), line: 0 });
        }
    }
}

impl<A: Archive> Source for Amplitude<A> {
    fn next_page(&mut self, after: Option<&Cursor>, limit: usize) -> Result<Page, SourceError> {
        let resume = if self.started { None } else { after.and_then(|c| Position::of(&c.key)) };
        if !self.started {
            if let Some(cursor) = after {
                self.last_time = cursor.timestamp.clone();
            }
        }
        self.started = true;
        let mut page = Page::default();
        let mut handed = 0;
        while handed < limit {
            let Some(line) = self.lines.pop_front() else {
                if self.next_file(resume.as_ref())? {
                    continue;
                }
                break;
            };
            let at = self.at.as_mut().expect("a file is open");
            at.line += 1;
            if line.trim().is_empty() {
                continue;
            }
            handed += 1;
            let where_ = format!("{} line {}", at.file, at.line);
            match convert::convert(&line) {
                Err(why) => page.skipped.push(format!("Amplitude export {where_}: {why}")),
                Ok(Converted::Skipped) => {}
                Ok(Converted::Event(event)) => {
                    if let (Some(user), Some(device)) = (&event.user_id, &event.device_id) {
                        if user != device && self.linked.insert(device.clone()) {
                            page.events.push(convert::alias(user, device, &event.timestamp).to_string());
                            page.aliases.push((user.clone(), device.clone()));
                        }
                    }
                    self.last_time = event.timestamp.clone();
                    page.events.push(event.json.to_string());
                }
            }
        }
        if handed > 0 {
            let at = self.at.as_ref().expect("a file is open");
            page.next = Some(Cursor { timestamp: self.last_time.clone(), key: at.key() });
        }
        Ok(page)
    }

    fn describe(&self) -> String {
        self.archive.describe()
    }

    /// The units behind the cursor, and of its unit the files and lines behind it.
    fn share(&self, cursor: &Cursor) -> Option<f64> {
        let at = Position::of(&cursor.key)?;
        let unit = self.all_units.iter().position(|u| *u == at.unit)?;
        let within = match self.unit_files.iter().position(|(file, _)| *file == at.file) {
            Some(i) => {
                let lines = self.unit_files[i].1.unwrap_or(0).max(1);
                (i as f64 + (at.line as f64 / lines as f64).min(1.0)) / self.unit_files.len() as f64
            }
            None => 0.0,
        };
        Some((unit as f64 + within) / self.all_units.len().max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    struct Memory(Vec<(String, Vec<File>)>);

    impl Archive for Memory {
        fn units(&self) -> Vec<String> {
            self.0.iter().map(|(u, _)| u.clone()).collect()
        }
        fn files(&mut self, unit: &str) -> Result<Vec<File>, SourceError> {
            Ok(self.0.iter().find(|(u, _)| u == unit).map(|(_, f)| f.clone()).unwrap_or_default())
        }
        fn describe(&self) -> String {
            "memory".into()
        }
    }

    fn line(user: Option<&str>, device: &str, n: u32) -> String {
        let mut e = json!({"event_type": "clicked", "device_id": device, "event_time": format!("2024-03-01 00:00:{n:02}"), "$insert_id": format!("i{n}")});
        if let Some(user) = user {
            e["user_id"] = json!(user);
        }
        e.to_string()
    }

    fn archive() -> Memory {
        let file = |lines: Vec<String>| lines.join("\n").into_bytes();
        Memory(vec![
            (
                "a".into(),
                vec![
                    (
                        "2.json".into(),
                        file(vec![line(Some("u1"), "d1", 3), "broken".into(), line(Some("u1"), "d1", 4)]),
                    ),
                    ("1.json".into(), file(vec![line(None, "d1", 1), line(Some("u1"), "d1", 2)])),
                ],
            ),
            ("b".into(), vec![("1.json".into(), file(vec![line(Some("u2"), "d1", 5), line(Some("u1"), "d2", 6)]))]),
        ])
    }

    fn names(page: &Page) -> Vec<String> {
        page.events
            .iter()
            .map(|e| serde_json::from_str::<Value>(e).unwrap()["event"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn files_are_read_in_order_pairs_linked_once_and_bad_lines_reported() {
        let mut source = Amplitude::new(archive(), &HashSet::new());
        let first = source.next_page(None, 3).unwrap();
        assert_eq!(names(&first), ["clicked", "$create_alias", "clicked", "clicked"]);
        assert_eq!(first.aliases, [("u1".to_string(), "d1".to_string())]);
        assert!(first.skipped.is_empty());
        let second = source.next_page(first.next.as_ref(), 3).unwrap();
        assert_eq!(second.skipped, ["Amplitude export 2.json line 2: the line is not a JSON object"]);
        // u2 on d1, which u1 has: not linked (it would merge u1 and u2).
        assert_eq!(names(&second), ["clicked", "clicked"]);
        assert!(second.aliases.is_empty());
        let third = source.next_page(second.next.as_ref(), 3).unwrap();
        assert_eq!(names(&third), ["$create_alias", "clicked"]);
        assert_eq!(third.aliases, [("u1".to_string(), "d2".to_string())]);
        let end = source.next_page(third.next.as_ref(), 3).unwrap();
        assert!(end.next.is_none() && end.events.is_empty());
    }

    #[test]
    fn the_share_done_counts_units_files_and_lines_behind_the_cursor() {
        let mut source = Amplitude::new(archive(), &HashSet::new());
        let first = source.next_page(None, 3).unwrap();
        // Unit a of two: 1.json done, 2.json at line 1 of 3.
        let share = source.share(first.next.as_ref().unwrap()).unwrap();
        assert!((share - (1.0 + 1.0 / 3.0) / 2.0 / 2.0).abs() < 1e-9, "{share}");
        let mut cursor = first.next;
        while let Some(next) = source.next_page(cursor.as_ref(), 3).unwrap().next {
            cursor = Some(next);
        }
        assert_eq!(source.share(cursor.as_ref().unwrap()), Some(1.0));
        assert_eq!(source.share(&Cursor { timestamp: String::new(), key: "nowhere".into() }), None);
    }

    #[test]
    fn a_new_source_resumes_after_the_cursor_and_links_no_pair_twice() {
        let mut first = Amplitude::new(archive(), &HashSet::new());
        let page = first.next_page(None, 4).unwrap();
        let linked: HashSet<_> = page.aliases.iter().cloned().collect();
        let mut resumed = Amplitude::new(archive(), &linked);
        let rest = resumed.next_page(page.next.as_ref(), 100).unwrap();
        assert!(rest.skipped.is_empty(), "the broken line was handed over before");
        // 2.json line 3, then b: u1/d1 is not linked again.
        assert_eq!(names(&rest), ["clicked", "clicked", "$create_alias", "clicked"]);
        assert_eq!(rest.aliases, [("u1".to_string(), "d2".to_string())]);
    }
}

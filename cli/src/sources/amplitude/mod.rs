//! Amplitude as a source: its export (a zip of gzipped JSON-lines files, one or more per
//! hour), read from local files or from Amplitude's Export API, the files of each unit
//! in the order of the hour they hold, each line converted (`convert`). Before a user's
//! first event on a device, the device is linked to the user by an alias event; with
//! `--group-identify`, a group's properties go as a `$groupidentify` when they change.
//! What each destination got (links, group properties, whole files) is kept in the
//! state file per destination (`ledger`), so a rerun, a resume, the next export or a
//! changed one sends nothing twice and misses nothing.

pub mod convert;
pub mod device;
pub mod export_api;
pub mod fields;
pub mod files;
pub mod groups;
pub mod order;

use std::collections::VecDeque;
use std::io::Read;

use migrator3000::event_id;
use serde_json::json;

use crate::shared::retry::ReadError;
use crate::sources::error::Unreadable;
use crate::sources::{Page, Source};
use crate::store::amplitude::{Imported, Known};
use crate::store::runs::Cursor;
use convert::{Converted, Time};
use groups::Group;

/// One file of an export: its name (a path in the zip or folder), and what identifies
/// its content (a zip entry's CRC-32 and size, a file's size and modification time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub content: String,
}

/// A file's bytes, or why they cannot be read (a file cut short, a damaged zip).
pub type Bytes = Result<Vec<u8>, Unreadable>;

/// Where the export files come from: units (the local export, or one day of the Export
/// API each) of files.
pub trait Archive {
    /// The units in order.
    fn units(&self) -> Vec<String>;
    /// The files of a unit, in any order.
    fn entries(&mut self, unit: &str) -> Result<Vec<Entry>, ReadError>;
    /// One file's bytes (gzipped JSON lines, or plain).
    fn read(&mut self, unit: &str, entry: &Entry) -> Result<Bytes, ReadError>;
    fn describe(&self) -> String;
    /// Every file, when they are known before reading (a local export): what the export
    /// holds, to tell it from another one.
    fn listing(&mut self) -> Result<Option<Vec<Entry>>, ReadError> {
        Ok(None)
    }
}

/// The fingerprint of an export's files in a migration's identity (`take_stock`), e.g.
/// in the runs an import recorded for `verify`; none for the Export API.
pub fn fingerprint_of(identity: &str) -> Option<&str> {
    let at = identity.find("(content ")? + "(content ".len();
    identity.get(at..at + 8)
}

/// How the import goes, from the command's flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The destination (host and project key) the ledger is kept for.
    pub destination: String,
    /// Send group properties as `$groupidentify` events.
    pub group_identify: bool,
    /// Skip a file that cannot be read instead of stopping at it.
    pub skip_unreadable: bool,
}

/// A position in the export: the unit, the file in it, and the last line handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
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
pub fn lines_of(bytes: &[u8]) -> Result<Vec<String>, Unreadable> {
    let mut text = String::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| Unreadable::NotAWholeGzip(e.into()))?;
    } else {
        text = String::from_utf8_lossy(bytes).into_owned();
    }
    // Editors on Windows start a UTF-8 file with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Ok(text.lines().map(str::to_string).collect())
}

/// What the lines of export files became: every line read is one of these.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    /// Lines that became an event.
    events: u64,
    /// Amplitude's records of a Group Identify call.
    groups: u64,
    /// Lines that are not an event (reported and counted as rejected).
    rejected: u64,
    /// Blank lines and `session_start` markers: nothing to send.
    skipped: u64,
}

impl Tally {
    fn sum(&self) -> u64 {
        self.events + self.groups + self.rejected + self.skipped
    }

    fn add(&mut self, other: &Tally) {
        self.events += other.events;
        self.groups += other.groups;
        self.rejected += other.rejected;
        self.skipped += other.skipped;
    }
}

/// What the summary says of the run beyond its counts.
#[derive(Debug, Default)]
struct Counts {
    client_timed: u64,
    server_timed: u64,
    groups_not_sent: u64,
    unreadable: Vec<String>,
    known_files: u64,
    /// The lines of the files read whole by this process.
    lines: Tally,
    /// Files whose lines are not all accounted for: each with how many are not.
    unaccounted: Vec<String>,
}

pub struct Amplitude<A: Archive> {
    archive: A,
    options: Options,
    /// What the destination got before this run (from the state file) and during it.
    known: Known,
    units: VecDeque<String>,
    all_units: Vec<String>,
    /// The current unit's files in reading order, with their lines once read.
    entries: Vec<(Entry, Option<u64>)>,
    next_entry: usize,
    /// The file being read, by its index in `entries`.
    reading: Option<usize>,
    /// Of the file being read: its lines handed over before this process (a resume), and
    /// what the lines read since became.
    file_before: u64,
    file_tally: Tally,
    lines: VecDeque<String>,
    at: Option<Position>,
    /// Where the run was, until the source has reached it again.
    resume: Option<Position>,
    last_time: String,
    started: bool,
    counts: Counts,
    /// A digest of a local export's files and their content (`take_stock`).
    content: Option<String>,
    differences: Option<String>,
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl<A: Archive> Amplitude<A> {
    pub fn new(archive: A, options: Options, known: Known) -> Amplitude<A> {
        let all_units = archive.units();
        Amplitude {
            archive,
            options,
            known,
            units: all_units.clone().into(),
            all_units,
            entries: Vec::new(),
            next_entry: 0,
            reading: None,
            file_before: 0,
            file_tally: Tally::default(),
            lines: VecDeque::new(),
            at: None,
            resume: None,
            last_time: String::new(),
            started: false,
            counts: Counts::default(),
            content: None,
            differences: None,
        }
    }

    /// Lists a local export's files, once, before reading: what it holds (its files and
    /// their content) becomes part of its identity, to tell it from another one at the
    /// same path, and how it differs from what this destination got is said when its
    /// migration starts. Nothing for the Export API (its range says which days).
    pub fn take_stock(&mut self) -> Result<(), ReadError> {
        let Some(mut listing) = self.archive.listing()? else { return Ok(()) };
        listing.sort_by(|a, b| a.name.cmp(&b.name));
        let pairs: Vec<(&str, &str)> = listing.iter().map(|e| (e.name.as_str(), e.content.as_str())).collect();
        self.content = Some(event_id::derive(&json!(["amplitude export", pairs]))[..8].to_string());
        self.differences = self.differences(&listing);
        Ok(())
    }

    /// The digest of a local export's files and their content, once `take_stock` read
    /// them (none for the Export API).
    pub fn fingerprint(&self) -> Option<&str> {
        self.content.as_deref()
    }

    /// How the export differs from what this destination imported of it before (`None`
    /// when it imported none of its files, or all of them as they are).
    fn differences(&self, listing: &[Entry]) -> Option<String> {
        let (mut new, mut changed, mut same) = (0, 0, 0);
        for entry in listing {
            match self.known.files.get(&entry.name) {
                None => new += 1,
                Some(content) if *content == entry.content => same += 1,
                Some(_) => changed += 1,
            }
        }
        if same + changed == 0 || new + changed == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if new > 0 {
            parts.push(plural(new, "new file", "new files"));
        }
        if changed > 0 {
            parts.push(plural(changed, "changed file", "changed files"));
        }
        Some(format!(
            "The export differs from what was imported into this destination before: {}; {} imported before {} \
             skipped.",
            parts.join(", "),
            plural(same, "file", "files"),
            if same == 1 { "is" } else { "are" }
        ))
    }

    /// Opens the next file to read (skipping those this destination wholly got, and
    /// those before the resume position), the next unit's files when a unit is done.
    fn next_file(&mut self) -> Result<bool, ReadError> {
        loop {
            if self.next_entry < self.entries.len() {
                // The index moves past a file only once it is read or skipped: after an
                // error the same file is tried again.
                let index = self.next_entry;
                let entry = self.entries[index].0.clone();
                if self.known.files.get(&entry.name) == Some(&entry.content) {
                    self.next_entry += 1;
                    self.counts.known_files += 1;
                    continue;
                }
                let unit = self.at.as_ref().map(|p| p.unit.clone()).unwrap_or_default();
                let read = self.archive.read(&unit, &entry)?.and_then(|bytes| lines_of(&bytes));
                if read.is_ok() || self.options.skip_unreadable {
                    self.next_entry += 1;
                }
                let lines = match read {
                    Ok(lines) => lines,
                    Err(why) => {
                        let place = if unit.is_empty() {
                            self.archive.describe()
                        } else {
                            format!("{} ({unit})", self.archive.describe())
                        };
                        if !self.options.skip_unreadable {
                            return Err(ReadError::Fatal(format!(
                                "{place}: {} cannot be read: {why}. Download the export again, or run again with \
                                 --skip-unreadable to import the rest without it",
                                entry.name
                            )));
                        }
                        self.counts.unreadable.push(format!(
                            "{} in {place} was skipped as unreadable (--skip-unreadable): {why}. Download it again \
                             and rerun to import it.",
                            entry.name
                        ));
                        continue;
                    }
                };
                self.entries[index].1 = Some(lines.len() as u64);
                let skip = match self.resume.take() {
                    Some(r) if r.unit == unit && r.file == entry.name => r.line,
                    other => {
                        self.resume = other;
                        0
                    }
                };
                self.lines = lines.into_iter().skip(skip as usize).collect();
                (self.file_before, self.file_tally) = (skip, Tally::default());
                self.at = Some(Position { unit, file: entry.name, line: skip });
                self.reading = Some(index);
                return Ok(true);
            }
            let Some(unit) = self.units.front().cloned() else { return Ok(false) };
            if self.resume.as_ref().is_some_and(|r| r.unit > unit) {
                self.units.pop_front();
                continue;
            }
            // Listed before it leaves the queue: a failure leaves it to try again.
            let mut entries = self.archive.entries(&unit)?;
            entries.sort_by(|a, b| order::compare(&a.name, &b.name));
            self.units.pop_front();
            // Resuming: the files before the one the run was in were handed over.
            self.next_entry = match &self.resume {
                Some(r) if r.unit == unit => entries.iter().position(|e| e.name == r.file).unwrap_or(0),
                _ => 0,
            };
            self.entries = entries.into_iter().map(|e| (e, None)).collect();
            self.at = Some(Position { unit, file: String::new(), line: 0 });
        }
    }

    /// Whether every line of a file read to its end is accounted for (the lines before a
    /// resume were, by the run before); a file whose lines are not is named.
    fn accounted(&mut self, file: &Imported) -> bool {
        let tally = std::mem::take(&mut self.file_tally);
        self.counts.lines.add(&tally);
        let accounted = self.file_before + tally.sum();
        if accounted == file.lines {
            return true;
        }
        self.counts.unaccounted.push(format!(
            "{} ({} of its {} lines)",
            file.name,
            file.lines.abs_diff(accounted),
            file.lines
        ));
        false
    }

    /// The `$groupidentify` events of the groups whose properties changed for this
    /// destination, recorded in the page's ledger.
    fn group_events(&mut self, groups: &[Group], distinct_id: Option<&str>, timestamp: &str, page: &mut Page) {
        if !self.options.group_identify {
            if groups.iter().any(|g| !g.properties.is_empty()) {
                self.counts.groups_not_sent += 1;
            }
            return;
        }
        for group in groups {
            let digest = group.digest();
            let slot = (group.kind.clone(), group.key.clone());
            if self.known.groups.get(&slot) == Some(&digest) {
                continue;
            }
            page.events.push(group.identify(distinct_id, timestamp).to_string());
            page.ledger.groups.push((group.kind.clone(), group.key.clone(), digest.clone()));
            self.known.groups.insert(slot, digest);
        }
    }
}

impl<A: Archive + Send> Source for Amplitude<A> {
    fn next_page(&mut self, after: Option<&Cursor>, limit: usize) -> Result<Page, ReadError> {
        if !self.started {
            self.resume = after.and_then(|c| Position::of(&c.key));
            if let Some(cursor) = after {
                self.last_time = cursor.timestamp.clone();
            }
            self.started = true;
        }
        let mut page = Page::default();
        page.ledger.destination = self.options.destination.clone();
        let mut handed = 0;
        while handed < limit {
            let Some(line) = self.lines.pop_front() else {
                if let Some(index) = self.reading.take() {
                    let (entry, lines) = &self.entries[index];
                    let imported = Imported {
                        name: entry.name.clone(),
                        content: entry.content.clone(),
                        lines: lines.unwrap_or(0),
                    };
                    // A file is imported whole only when each of its lines is accounted for.
                    if self.accounted(&imported) {
                        self.known.files.insert(imported.name.clone(), imported.content.clone());
                        page.ledger.files.push(imported);
                    }
                }
                match self.next_file() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    // What the page holds goes first; the error comes again on the next call.
                    Err(_) if handed > 0 || !page.ledger.is_empty() || !page.events.is_empty() => break,
                    Err(error) => return Err(error),
                }
            };
            let at = self.at.as_mut().expect("a file is open");
            at.line += 1;
            if line.trim().is_empty() {
                self.file_tally.skipped += 1;
                continue;
            }
            handed += 1;
            let where_ = format!("{} line {}", at.file, at.line);
            match convert::convert(&line) {
                Err(why) => {
                    self.file_tally.rejected += 1;
                    page.skipped.push(format!("Amplitude export {where_}: {why}"))
                }
                Ok(Converted::Skipped) => self.file_tally.skipped += 1,
                Ok(Converted::Groups { groups, distinct_id, timestamp }) => {
                    self.file_tally.groups += 1;
                    self.group_events(&groups, distinct_id.as_deref(), &timestamp, &mut page);
                    self.last_time = timestamp;
                }
                Ok(Converted::Event(event)) => {
                    self.file_tally.events += 1;
                    match event.timed_by {
                        Time::Event => {}
                        Time::Client => self.counts.client_timed += 1,
                        Time::Server => self.counts.server_timed += 1,
                    }
                    if let (Some(user), Some(device)) = (&event.user_id, &event.device_id) {
                        if user != device && self.known.devices.insert(device.clone()) {
                            page.events.push(convert::alias(user, device, &event.timestamp).to_string());
                            page.ledger.links.push((user.clone(), device.clone()));
                        }
                    }
                    let distinct_id = event.json["distinct_id"].as_str().map(str::to_string);
                    self.group_events(&event.groups, distinct_id.as_deref(), &event.timestamp, &mut page);
                    self.last_time = event.timestamp.clone();
                    page.events.push(event.json.to_string());
                }
            }
        }
        if handed > 0 || !page.ledger.is_empty() {
            let at = self.at.as_ref().expect("a file was open");
            page.next = Some(Cursor { timestamp: self.last_time.clone(), key: at.key() });
        }
        Ok(page)
    }

    fn describe(&self) -> String {
        self.archive.describe()
    }

    fn identity(&self) -> String {
        match &self.content {
            Some(content) => format!("{} (content {content})", self.archive.describe()),
            None => self.archive.describe(),
        }
    }

    fn starting_note(&self) -> Option<String> {
        self.differences.clone()
    }

    /// The units behind the cursor, and of its unit the files and lines behind it.
    fn share(&self, cursor: &Cursor) -> Option<f64> {
        let at = Position::of(&cursor.key)?;
        let unit = self.all_units.iter().position(|u| *u == at.unit)?;
        let within = match self.entries.iter().position(|(entry, _)| entry.name == at.file) {
            Some(i) => {
                let lines = self.entries[i].1.unwrap_or(0).max(1);
                (i as f64 + (at.line as f64 / lines as f64).min(1.0)) / self.entries.len() as f64
            }
            None => 0.0,
        };
        Some((unit as f64 + within) / self.all_units.len().max(1) as f64)
    }

    fn remarks(&self) -> Vec<String> {
        let c = &self.counts;
        let mut out = Vec::new();
        if c.known_files > 0 {
            out.push(format!(
                "{} imported into this destination before {} skipped.",
                plural(c.known_files, "file", "files"),
                if c.known_files == 1 { "was" } else { "were" }
            ));
        }
        let fallbacks = [
            (c.client_timed, "event_time", "client_event_time"),
            (c.server_timed, "event_time nor client_event_time", "server_received_time"),
        ];
        for (n, missing, field) in fallbacks.into_iter().filter(|(n, ..)| *n > 0) {
            let whose = if n == 1 { "its" } else { "their" };
            out.push(format!("{} no {missing}: timed by {whose} {field}.", plural(n, "event had", "events had")));
        }
        if c.groups_not_sent > 0 {
            out.push(format!(
                "{} group properties, not sent: run again with --group-identify to set them on PostHog's groups.",
                plural(c.groups_not_sent, "line carried", "lines carried")
            ));
        }
        out.extend(c.unreadable.iter().cloned());
        let l = &c.lines;
        if l.sum() > 0 {
            let mut parts = vec![plural(l.events, "became an event", "became events")];
            if l.groups > 0 {
                parts.push(format!("{} set a group's properties", l.groups));
            }
            parts.push(format!("{} rejected", plural(l.rejected, "was", "were")));
            if l.skipped > 0 {
                parts.push(format!("{} blank or a session_start marker", plural(l.skipped, "was", "were")));
            }
            out.push(format!(
                "Of the {} read from the export, {}.",
                plural(l.sum(), "line", "lines"),
                parts.join(", ")
            ));
        }
        out
    }

    fn unaccounted(&self) -> Option<String> {
        let c = &self.counts;
        let mut parts = Vec::new();
        if !c.unreadable.is_empty() {
            parts.push(format!(
                "{} could not be read (named above): {} lines were not imported. Download the export again and run \
                 the same command: what was imported is not sent again",
                plural(c.unreadable.len() as u64, "file", "files"),
                if c.unreadable.len() == 1 { "its" } else { "their" }
            ));
        }
        if !c.unaccounted.is_empty() {
            parts.push(format!(
                "lines of {} were read but not accounted for: {}. Run the same command to read {} again",
                plural(c.unaccounted.len() as u64, "file", "files"),
                c.unaccounted.join(", "),
                if c.unaccounted.len() == 1 { "it" } else { "them" }
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Units of (file name, bytes).
    type Files = Vec<(String, Vec<u8>)>;
    struct Memory(Vec<(String, Files)>);

    impl Archive for Memory {
        fn units(&self) -> Vec<String> {
            self.0.iter().map(|(u, _)| u.clone()).collect()
        }
        fn entries(&mut self, unit: &str) -> Result<Vec<Entry>, ReadError> {
            let files = self.0.iter().find(|(u, _)| u == unit).map(|(_, f)| f.clone()).unwrap_or_default();
            Ok(files
                .iter()
                .map(|(name, bytes)| Entry { name: name.clone(), content: format!("{}", bytes.len()) })
                .collect())
        }
        fn read(&mut self, unit: &str, entry: &Entry) -> Result<Bytes, ReadError> {
            let files = &self.0.iter().find(|(u, _)| u == unit).unwrap().1;
            Ok(Ok(files.iter().find(|(n, _)| *n == entry.name).unwrap().1.clone()))
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
                        "p_2024-03-01_10#0.json".into(),
                        file(vec![line(Some("u1"), "d1", 3), "broken".into(), line(Some("u1"), "d1", 4)]),
                    ),
                    ("p_2024-03-01_9#0.json".into(), file(vec![line(None, "d1", 1), line(Some("u1"), "d1", 2)])),
                ],
            ),
            (
                "b".into(),
                vec![(
                    "p_2024-03-02_0#0.json".into(),
                    file(vec![line(Some("u2"), "d1", 5), line(Some("u1"), "d2", 6)]),
                )],
            ),
        ])
    }

    fn names(page: &Page) -> Vec<String> {
        page.events
            .iter()
            .map(|e| serde_json::from_str::<Value>(e).unwrap()["event"].as_str().unwrap().to_string())
            .collect()
    }

    fn source(known: Known) -> Amplitude<Memory> {
        Amplitude::new(archive(), Options { destination: "dest".into(), ..Options::default() }, known)
    }

    #[test]
    fn files_are_read_by_hour_devices_linked_once_and_bad_lines_reported() {
        let mut source = source(Known::default());
        let first = source.next_page(None, 3).unwrap();
        assert_eq!(names(&first), ["clicked", "$create_alias", "clicked", "clicked"]);
        assert_eq!(first.ledger.links, [("u1".to_string(), "d1".to_string())]);
        assert_eq!(first.ledger.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["p_2024-03-01_9#0.json"]);
        assert!(first.skipped.is_empty());
        let second = source.next_page(first.next.as_ref(), 3).unwrap();
        assert_eq!(second.skipped, ["Amplitude export p_2024-03-01_10#0.json line 2: the line is not a JSON object"]);
        // u2 on d1, which u1 has: not linked (it would merge u1 and u2).
        assert_eq!(names(&second), ["clicked", "clicked"]);
        assert!(second.ledger.links.is_empty());
        let third = source.next_page(second.next.as_ref(), 3).unwrap();
        assert_eq!(names(&third), ["$create_alias", "clicked"]);
        assert_eq!(third.ledger.links, [("u1".to_string(), "d2".to_string())]);
        assert_eq!(third.ledger.destination, "dest");
        assert_eq!(third.ledger.files.len(), 1, "the last file's end is settled with its last lines");
        assert!(source.next_page(third.next.as_ref(), 3).unwrap().next.is_none());
    }

    #[test]
    fn the_share_done_counts_units_files_and_lines_behind_the_cursor() {
        let mut source = source(Known::default());
        let first = source.next_page(None, 3).unwrap();
        // Unit a of two: the 9 o'clock file done, the 10 o'clock one at line 1 of 3.
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
    fn a_new_source_resumes_after_the_cursor_and_skips_what_the_destination_got() {
        let mut first = source(Known::default());
        let page = first.next_page(None, 4).unwrap();
        let mut known = Known::default();
        known.devices.extend(page.ledger.links.iter().map(|(_, d)| d.clone()));
        let mut resumed = source(known.clone());
        let rest = resumed.next_page(page.next.as_ref(), 100).unwrap();
        assert!(rest.skipped.is_empty(), "the broken line was handed over before");
        // The 10 o'clock file's line 3, then b: u1/d1 is not linked again.
        assert_eq!(names(&rest), ["clicked", "clicked", "$create_alias", "clicked"]);
        // A new run at this destination skips the files it got whole.
        known.files.extend(page.ledger.files.iter().map(|f| (f.name.clone(), f.content.clone())));
        let mut again = source(known);
        let all = again.next_page(None, 100).unwrap();
        assert_eq!(names(&all), ["clicked", "clicked", "clicked", "$create_alias", "clicked"]);
        assert!(again.remarks().iter().any(|r| r == "1 file imported into this destination before was skipped."));
    }

    /// A Memory whose reads of one file fail (for a while, as a 503 would) so many times.
    struct Flaky(Memory, &'static str, u32);

    impl Archive for Flaky {
        fn units(&self) -> Vec<String> {
            self.0.units()
        }
        fn entries(&mut self, unit: &str) -> Result<Vec<Entry>, ReadError> {
            self.0.entries(unit)
        }
        fn read(&mut self, unit: &str, entry: &Entry) -> Result<Bytes, ReadError> {
            if entry.name == self.1 && self.2 > 0 {
                self.2 -= 1;
                return Err(ReadError::Transient { message: "503".into(), retry_after_seconds: None });
            }
            self.0.read(unit, entry)
        }
        fn describe(&self) -> String {
            self.0.describe()
        }
    }

    #[test]
    fn a_file_that_fails_to_come_mid_page_loses_no_line_of_the_page() {
        let options = Options { destination: "d".into(), ..Options::default() };
        let mut source = Amplitude::new(Flaky(archive(), "p_2024-03-01_10#0.json", 2), options, Known::default());
        let first = source.next_page(None, 100).unwrap();
        assert_eq!(names(&first), ["clicked", "$create_alias", "clicked"], "the 9 o'clock file comes alone");
        assert!(source.next_page(first.next.as_ref(), 100).is_err(), "the failure comes on the next call");
        // Tried again (as the migration does after a wait): the same file, from its first line.
        let rest = source.next_page(first.next.as_ref(), 100).unwrap();
        assert_eq!(names(&rest), ["clicked", "clicked", "clicked", "$create_alias", "clicked"]);
        assert_eq!(rest.skipped.len(), 1);
    }

    #[test]
    fn an_unreadable_file_stops_the_import_until_it_is_skipped_when_asked() {
        let mut memory = archive();
        memory.0[0].1[0].1 = vec![0x1f, 0x8b, 8, 0, 0, 0];
        let mut stops = source(Known::default());
        stops.archive = Memory(memory.0.clone());
        let first = stops.next_page(None, 100).unwrap();
        assert_eq!(names(&first).len(), 3, "what came before the file is handed over");
        for _ in 0..2 {
            let Err(ReadError::Fatal(why)) = stops.next_page(first.next.as_ref(), 100) else { panic!("no stop") };
            assert!(
                why.contains("p_2024-03-01_10#0.json cannot be read") && why.contains("--skip-unreadable"),
                "{why}"
            );
        }
        let options = Options { skip_unreadable: true, ..Options::default() };
        let mut skips = Amplitude::new(memory, options, Known::default());
        let all = skips.next_page(None, 100).unwrap();
        assert_eq!(names(&all).len(), 6, "{:?}", names(&all));
        assert!(skips
            .remarks()
            .iter()
            .any(|r| r.contains("p_2024-03-01_10#0.json in memory (a) was skipped as unreadable")));
    }

    #[test]
    fn group_properties_go_once_per_change_and_only_when_asked() {
        let lines = [
            json!({"event_type": "x", "user_id": "u", "event_time": "2024-03-01 00:00:01", "groups": {"org": "o1"}, "group_properties": {"org": {"o1": {"tier": 1}}}}),
            json!({"event_type": "x", "user_id": "u", "event_time": "2024-03-01 00:00:02", "groups": {"org": "o1"}, "group_properties": {"org": {"o1": {"tier": 1}}}}),
            json!({"event_type": "x", "user_id": "u", "event_time": "2024-03-01 00:00:03", "groups": {"org": "o1"}, "group_properties": {"org": {"o1": {"tier": 2}}}}),
        ];
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        let memory = || Memory(vec![(String::new(), vec![("f.json".into(), text.join("\n").into_bytes())])]);
        let on = Options { destination: "d".into(), group_identify: true, ..Options::default() };
        let page = Amplitude::new(memory(), on, Known::default()).next_page(None, 10).unwrap();
        assert_eq!(names(&page), ["$groupidentify", "x", "x", "$groupidentify", "x"]);
        assert_eq!(page.ledger.groups.len(), 2);
        let mut off = Amplitude::new(memory(), Options::default(), Known::default());
        assert_eq!(names(&off.next_page(None, 10).unwrap()), ["x", "x", "x"]);
        assert!(off
            .remarks()
            .iter()
            .any(|r| r.contains("3 lines carried group properties") && r.contains("--group-identify")));
    }
}

//! Mixpanel as a source: its raw event export (JSON lines, one file a day, plain or
//! gzip), read from local files or from its export API a day at a time, and optionally
//! its people, from an Engage export or the Engage API (`engage_api`). Each line is converted (`convert`); a line whose uuid was
//! handed to this destination before (Mixpanel's exports repeat `$insert_id`) is sent
//! once; before a user's first event on a device, the device is linked to the user once
//! per destination. Files are known by the fingerprint of their content: a file this
//! destination got whole is skipped wherever it lies and whatever its name.

pub mod convert;
pub mod countries;
pub mod engage_api;
pub mod export_api;
pub mod files;

use std::collections::{HashSet, VecDeque};

use migrator3000::event_id;
use serde_json::json;

use crate::shared::retry::ReadError;
use crate::sources::lines::{fingerprint, lines_of};
use crate::sources::{Page, Source};
use crate::store::mixpanel::Known;
use crate::store::runs::Cursor;
use convert::Converted;

/// What a unit holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Raw export lines: events.
    Events,
    /// Engage export lines: profiles.
    Profiles,
    /// A page of profiles from the Engage API: asked for again on a rerun (its session
    /// gone), never resumed at a line; its profiles' uuids keep it from being sent twice.
    EngagePage,
}

/// One file (or one day of the export API), read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: String,
    pub kind: Kind,
}

/// A file's bytes, or why they cannot be read.
pub type Bytes = Result<Vec<u8>, std::io::Error>;

/// Where the units come from: local files, or the export API.
pub trait Feed {
    fn units(&self) -> Vec<Unit>;
    /// A unit found by reading the last one (the Engage API's next page), if any.
    fn more(&mut self) -> Option<Unit> {
        None
    }
    fn read(&mut self, unit: &Unit) -> Result<Bytes, ReadError>;
    fn describe(&self) -> String;
    /// Local files are known before reading: their fingerprints are part of which
    /// migration this is.
    fn is_local(&self) -> bool {
        false
    }
}

/// How the import goes, from the command's flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The destination (host and project key) the ledger is kept for.
    pub destination: String,
    /// The time a profile without `$last_seen` or `$created` gets.
    pub now: String,
}

/// A line larger than this cannot be one event at PostHog's capture.
pub const LARGEST_LINE: usize = 1 << 20;

const SEPARATOR: char = '\u{1f}';

#[derive(Debug, Default)]
struct Counts {
    known_files: u64,
    identity_events: u64,
    repeats: u64,
    profiles: u64,
}

pub struct Mixpanel<F: Feed> {
    feed: F,
    options: Options,
    known: Known,
    /// Uuids handed to this destination (before this run, from the state file, and in it).
    handed: HashSet<u128>,
    units: Vec<Unit>,
    next_unit: usize,
    /// The unit being read: its index, fingerprint and line count.
    reading: Option<(usize, String, u64)>,
    lines: VecDeque<String>,
    line: u64,
    resume: Option<(usize, u64)>,
    started: bool,
    last_time: String,
    counts: Counts,
    content: Option<String>,
    /// A read that failed after this page had lines: said on the next call, so that the
    /// retry policy waits what the service asked (a 429's Retry-After) before reading again.
    deferred: Option<ReadError>,
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn parse_uuid(text: &str) -> Option<u128> {
    uuid::Uuid::try_parse(text).ok().map(|u| u.as_u128())
}

impl<F: Feed> Mixpanel<F> {
    pub fn new(feed: F, options: Options, known: Known, handed: HashSet<u128>) -> Mixpanel<F> {
        let units = feed.units();
        Mixpanel {
            feed,
            options,
            known,
            handed,
            units,
            next_unit: 0,
            reading: None,
            lines: VecDeque::new(),
            line: 0,
            resume: None,
            started: false,
            last_time: String::new(),
            counts: Counts::default(),
            content: None,
            deferred: None,
        }
    }

    /// Reads local files once before the import: the fingerprints of their content
    /// become part of the migration's identity (another folder content, another
    /// migration), so a rerun of the same files resumes.
    pub fn take_stock(&mut self) -> Result<(), ReadError> {
        if !self.feed.is_local() {
            return Ok(());
        }
        let mut prints = Vec::new();
        for unit in self.units.clone().into_iter().filter(|u| u.kind != Kind::EngagePage) {
            let bytes = self.feed.read(&unit)?.map_err(|why| ReadError::Fatal(format!("{}: {why}", unit.name)))?;
            prints.push(fingerprint(&bytes));
        }
        self.content = Some(event_id::derive(&json!(["mixpanel files", prints]))[..8].to_string());
        Ok(())
    }

    /// Opens the next unit to read; `false` when every unit is read.
    fn next_unit(&mut self) -> Result<bool, ReadError> {
        loop {
            if self.next_unit == self.units.len() {
                match self.feed.more() {
                    Some(unit) => self.units.push(unit),
                    None => return Ok(false),
                }
            }
            let index = self.next_unit;
            let fetched = self.units[index].kind == Kind::EngagePage;
            if !fetched && self.resume.is_some_and(|(unit, _)| unit > index) {
                self.next_unit += 1;
                continue;
            }
            let unit = self.units[index].clone();
            let bytes = self.feed.read(&unit)?.map_err(|why| {
                ReadError::Fatal(format!("{} ({}) cannot be read: {why}", unit.name, self.feed.describe()))
            })?;
            let print = fingerprint(&bytes);
            self.next_unit += 1;
            if self.known.files.contains_key(&print) {
                self.counts.known_files += 1;
                continue;
            }
            let lines = lines_of(&bytes).map_err(|why| {
                ReadError::Fatal(format!("{} ({}) cannot be read: {why}", unit.name, self.feed.describe()))
            })?;
            let skip = match self.resume.take() {
                Some((at, line)) if at == index && !fetched => line,
                other => {
                    self.resume = other;
                    0
                }
            };
            self.reading = Some((index, print, lines.len() as u64));
            self.lines = lines.into_iter().skip(skip as usize).collect();
            self.line = skip;
            return Ok(true);
        }
    }

    /// Hands over an event unless this destination has its uuid already.
    fn hand(&mut self, event: String, uuid: &str, page: &mut Page) {
        match parse_uuid(uuid) {
            Some(u) if !self.handed.insert(u) => {
                self.counts.repeats += 1;
                page.duplicates += 1;
            }
            _ => page.events.push(event),
        }
    }

    fn take_link(&mut self, link: Option<(String, String)>, timestamp: &str, page: &mut Page) {
        let Some((user, device)) = link else { return };
        if user != device && self.known.devices.insert(device.clone()) {
            page.events.push(convert::alias(&user, &device, timestamp).to_string());
            page.mixpanel.links.push((user, device));
        }
    }
}

impl<F: Feed + Send> Source for Mixpanel<F> {
    fn next_page(&mut self, after: Option<&Cursor>, limit: usize) -> Result<Page, ReadError> {
        if !self.started {
            self.resume = after.and_then(|c| {
                let (unit, line) = c.key.split_once(SEPARATOR)?;
                Some((unit.parse().ok()?, line.parse().ok()?))
            });
            if let Some(cursor) = after {
                self.last_time = cursor.timestamp.clone();
            }
            self.started = true;
        }
        if let Some(error) = self.deferred.take() {
            return Err(error);
        }
        let mut page = Page::default();
        page.mixpanel.destination = self.options.destination.clone();
        let mut handed = 0;
        while handed < limit {
            let Some(text) = self.lines.pop_front() else {
                if let Some((index, print, lines)) = self.reading.take() {
                    let name = self.units[index].name.clone();
                    self.known.files.insert(print.clone(), name.clone());
                    page.mixpanel.files.push((print, name, lines));
                }
                match self.next_unit() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(error) if handed > 0 || !page.mixpanel.is_empty() => {
                        self.deferred = Some(error);
                        break;
                    }
                    Err(error) => return Err(error),
                }
            };
            self.line += 1;
            if text.trim().is_empty() {
                continue;
            }
            handed += 1;
            let (index, ..) = self.reading.as_ref().expect("a unit is open");
            let unit = self.units[*index].clone();
            let place = match unit.kind {
                Kind::EngagePage => format!("{} profile {}", unit.name, self.line),
                _ => format!("Mixpanel export {} line {}", unit.name, self.line),
            };
            if text.len() > LARGEST_LINE {
                page.skipped.push(format!("{place}: the line is larger than 1 MB (no event at PostHog can be)"));
                continue;
            }
            if matches!(unit.kind, Kind::Profiles | Kind::EngagePage) {
                match convert::profile(&text, &self.options.now) {
                    Err(why) => page.skipped.push(format!("{place}: {why}")),
                    Ok(event) => {
                        self.counts.profiles += 1;
                        let uuid = event["uuid"].as_str().unwrap_or_default().to_string();
                        self.hand(event.to_string(), &uuid, &mut page);
                    }
                }
                continue;
            }
            match convert::convert(&text) {
                Err(why) => page.skipped.push(format!("{place}: {why}")),
                Ok(Converted::Identity { link, timestamp }) => {
                    self.counts.identity_events += 1;
                    self.take_link(link, &timestamp, &mut page);
                    self.last_time = timestamp;
                }
                Ok(Converted::Event(event)) => {
                    self.take_link(event.link.clone(), &event.timestamp, &mut page);
                    self.last_time = event.timestamp.clone();
                    let uuid = event.json["uuid"].as_str().unwrap_or_default().to_string();
                    self.hand(event.json.to_string(), &uuid, &mut page);
                }
            }
        }
        if handed > 0 || !page.mixpanel.is_empty() {
            let unit = self.reading.as_ref().map_or(self.next_unit.saturating_sub(1), |r| r.0);
            page.next = Some(Cursor {
                timestamp: self.last_time.clone(),
                key: format!("{unit}{SEPARATOR}{}", if self.reading.is_some() { self.line } else { u64::MAX }),
            });
        }
        Ok(page)
    }

    fn describe(&self) -> String {
        self.feed.describe()
    }

    fn identity(&self) -> String {
        match &self.content {
            Some(content) => format!("{} (content {content})", self.feed.describe()),
            None => self.feed.describe(),
        }
    }

    fn share(&self, cursor: &Cursor) -> Option<f64> {
        let (unit, line) = cursor.key.split_once(SEPARATOR)?;
        let (unit, line): (usize, u64) = (unit.parse().ok()?, line.parse().ok()?);
        let within = match &self.reading {
            Some((index, _, lines)) if *index == unit => (line as f64 / (*lines).max(1) as f64).min(1.0),
            _ if line == u64::MAX => 1.0,
            _ => 0.0,
        };
        Some(((unit as f64 + within) / self.units.len().max(1) as f64).min(1.0))
    }

    fn remarks(&self) -> Vec<String> {
        let c = &self.counts;
        let mut out = Vec::new();
        if c.known_files > 0 {
            out.push(format!(
                "{} this destination got whole before (the same content) {} skipped.",
                plural(c.known_files, "file", "files"),
                if c.known_files == 1 { "was" } else { "were" }
            ));
        }
        if c.repeats > 0 {
            out.push(format!(
                "{} the export repeated (the same $insert_id) {} sent once.",
                plural(c.repeats, "line", "lines"),
                if c.repeats == 1 { "was" } else { "were" }
            ));
        }
        if c.identity_events > 0 {
            out.push(format!(
                "{} of Mixpanel's identity events ($identify, $create_alias, $merge): no events, their links \
                 made once per device.",
                thousands(c.identity_events)
            ));
        }
        if c.profiles > 0 {
            out.push(format!("{} set on their persons.", plural(c.profiles, "profile", "profiles")));
        }
        out
    }
}

fn thousands(n: u64) -> String {
    crate::shared::words::thousands(n)
}

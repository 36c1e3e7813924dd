//! Where the history comes from: a source hands over pages of events in a stable
//! order, each page resumable from the cursor of the last event of the page before.

pub mod amplitude;
pub mod error;
pub mod files;
pub mod lines;
pub mod mixpanel;
pub mod posthog;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use crate::shared::retry::ReadError;
use crate::store::amplitude::Ledger;
use crate::store::files::FileRead;
use crate::store::mixpanel::Ledger as MixpanelLedger;
use crate::store::runs::Cursor;

/// One page: events as JSON object texts shaped like a captured PostHog event
/// (`uuid`, `event`, `distinct_id`, `timestamp` (RFC 3339), `properties` (object),
/// optional `$set`/`$set_once`), and the cursor to resume after the last of them.
#[derive(Debug, Default)]
pub struct Page {
    pub events: Vec<String>,
    /// `None` when the page is empty.
    pub next: Option<Cursor>,
    /// Input the source could not turn into an event, each with why: reported and
    /// counted, never fatal.
    pub skipped: Vec<String>,
    /// What an Amplitude import's page gave its destination (links, group properties,
    /// whole files): stored with the page, so that no rerun sends them again.
    pub ledger: Ledger,
    /// What a Mixpanel import's page gave its destination (links, whole files).
    pub mixpanel: MixpanelLedger,
    /// The files an import of files finished with this page (their last line in it).
    pub files: Vec<FileRead>,
    /// Rows left out because they repeat an event already handed over (the same uuid:
    /// rows a ReplacingMergeTree has not merged yet).
    pub duplicates: u64,
    /// Lines for `--debug`.
    pub notes: Vec<String>,
}

/// A span of time read by one query (or, from the Query API, by a few pages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Rows in it when the range was selected.
    pub rows: u64,
}

/// The days of `[from, to)` holding events (`days`: each with its rows, in order) as
/// windows of at most about `max_rows`: consecutive days share a window while they fit
/// in it, and a larger day is cut into equal spans of time.
pub fn windows(
    days: &[(NaiveDate, u64)],
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    max_rows: u64,
) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    for (day, rows) in days {
        let Some(start) = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()) else { continue };
        let end = start + chrono::Duration::days(1);
        let (start, end) = (from.map_or(start, |f| f.max(start)), to.map_or(end, |t| t.min(end)));
        if end <= start {
            continue;
        }
        if let Some(last) = out.last_mut().filter(|last| last.rows + rows <= max_rows) {
            (last.to, last.rows) = (end, last.rows + rows);
            continue;
        }
        let parts = rows.div_ceil(max_rows.max(1)).max(1);
        let span = (end - start) / parts as i32;
        for part in 0..parts {
            let to = if part + 1 == parts { end } else { start + span * (part + 1) as i32 };
            out.push(Window { from: start + span * part as i32, to, rows: rows / parts });
        }
    }
    out
}

/// The UTC day of a timestamp as `YYYY-MM-DD`, in SQL that ClickHouse and HogQL both
/// take. ClickHouse's `toDate` is out of its range before 1970-01-01 and after 2149-06-06
/// (it gives 1970-01-01 for 1969-12-31 23:59:59.5, 2082-11-04 for 2262-04-11): a day
/// counted there is a day no window reads.
pub fn utc_day(timestamp: &str) -> String {
    format!("formatDateTime({timestamp}, '%Y-%m-%d', 'UTC')")
}

/// A window that holds more rows than this process read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Rows the source holds there (after the cursor the window was first read after).
    pub counted: u64,
    pub read: u64,
}

/// The rows a source handed over of each window it read in this process (by the window's
/// start), with the cursor it started that window after: what `unread` compares.
#[derive(Debug, Default)]
pub struct Tally(BTreeMap<DateTime<Utc>, (Option<Cursor>, u64)>);

impl Tally {
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// A query of `window` after `after`: the first one of the window starts its count.
    pub fn started(&mut self, window: &Window, after: Option<&Cursor>) {
        self.0.entry(window.from).or_insert_with(|| (after.cloned(), 0));
    }

    pub fn add(&mut self, window: &Window, rows: u64) {
        if let Some((_, read)) = self.0.get_mut(&window.from) {
            *read += rows;
        }
    }

    /// The windows of `windows` read here that hold more rows than were read of them,
    /// each counted again by `count` (the rows of a window after a cursor).
    pub fn unread(
        &self,
        windows: &[Window],
        mut count: impl FnMut(&Window, Option<&Cursor>) -> Result<u64, ReadError>,
    ) -> Result<Vec<Unread>, ReadError> {
        let mut out = Vec::new();
        for window in windows {
            let Some((after, read)) = self.0.get(&window.from) else { continue };
            let counted = count(window, after.as_ref())?;
            if counted > *read {
                out.push(Unread { from: window.from, to: window.to, counted, read: *read });
            }
        }
        Ok(out)
    }
}

/// What a source holds in a range: its first and last timestamps (none when it holds
/// nothing) and how many events, from one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    pub count: u64,
}

/// `Send`: pages are read on a thread of their own while the answers are recorded.
pub trait Source: Send {
    /// Reads from `from` (inclusive) to `to` (exclusive) from now on (either `None`: from
    /// the source's first event, or to after its last), and says what that range holds;
    /// `None` for a source that cannot tell (it is read whole).
    fn select(
        &mut self,
        _from: Option<DateTime<Utc>>,
        _to: Option<DateTime<Utc>>,
    ) -> Result<Option<Bounds>, ReadError> {
        Ok(None)
    }
    /// Up to `limit` events strictly after `after` (from the range's start when
    /// `None`) and before the range's end, in (timestamp, key) order.
    fn next_page(&mut self, after: Option<&Cursor>, limit: usize) -> Result<Page, ReadError>;
    /// What to call this source in progress lines, e.g. "ClickHouse at http://...".
    fn describe(&self) -> String;
    /// What makes two runs read the same source (part of a migration's identity).
    fn identity(&self) -> String {
        self.describe()
    }
    /// How far through the source `cursor` is (0 to 1), for a source that knows better
    /// than the share of the time range behind the cursor's timestamp.
    fn share(&self, _cursor: &Cursor) -> Option<f64> {
        None
    }
    /// What to say when a migration of this source starts (never when one resumes).
    fn starting_note(&self) -> Option<String> {
        None
    }
    /// What the summary should say of the run beyond its counts (how some input was read).
    fn remarks(&self) -> Vec<String> {
        Vec::new()
    }
    /// The windows read since the last `select` that hold more rows than were read of them
    /// (each counted again now); empty for a source that cannot tell.
    fn unread(&mut self) -> Result<Vec<Unread>, ReadError> {
        Ok(Vec::new())
    }
    /// The rows `[from, to)` holds now; `None` for a source that cannot tell.
    fn count(&mut self, _from: DateTime<Utc>, _to: DateTime<Utc>) -> Result<Option<u64>, ReadError> {
        Ok(None)
    }
    /// What this run read of the source but could not account for (an import's lines
    /// not read): when any, the run is not complete, and the next one reads again from
    /// the start.
    fn unaccounted(&self) -> Option<String> {
        None
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        migrator3000::timestamp::parse_iso(text).unwrap()
    }

    fn day(text: &str) -> NaiveDate {
        migrator3000::timestamp::parse_date(text).unwrap()
    }

    #[test]
    fn days_become_windows_small_days_together_and_large_days_cut() {
        let days = [(day("2021-06-01"), 10), (day("2021-06-02"), 20), (day("2021-06-03"), 250), (day("2021-06-05"), 5)];
        let all = windows(&days, None, None, 100);
        let spans: Vec<_> = all.iter().map(|w| (w.from, w.to, w.rows)).collect();
        assert_eq!(
            spans,
            [
                (at("2021-06-01T00:00:00Z"), at("2021-06-03T00:00:00Z"), 30),
                (at("2021-06-03T00:00:00Z"), at("2021-06-03T08:00:00Z"), 83),
                (at("2021-06-03T08:00:00Z"), at("2021-06-03T16:00:00Z"), 83),
                (at("2021-06-03T16:00:00Z"), at("2021-06-06T00:00:00Z"), 88),
            ]
        );
        let clipped = windows(&days[..1], Some(at("2021-06-01T12:00:00Z")), Some(at("2021-06-01T13:00:00Z")), 100);
        assert_eq!(clipped, [Window { from: at("2021-06-01T12:00:00Z"), to: at("2021-06-01T13:00:00Z"), rows: 10 }]);
        assert!(windows(&days, Some(at("2021-07-01T00:00:00Z")), None, 100).is_empty());
    }

    #[test]
    fn a_window_read_short_is_found_by_counting_it_again_after_where_it_started() {
        let days = [(day("2021-06-01"), 10), (day("2021-06-02"), 20), (day("2021-06-04"), 5)];
        let all = windows(&days, None, None, 10);
        let resumed = Cursor { timestamp: "2021-06-02 10:00:00".into(), key: "u".into() };
        let mut tally = Tally::default();
        tally.started(&all[0], None);
        tally.add(&all[0], 10);
        tally.started(&all[1], Some(&resumed));
        tally.started(&all[1], None); // read on after a broken answer: still from the resume
        tally.add(&all[1], 4);
        // all[2] never read in this process: not judged.
        let mut asked = Vec::new();
        let unread = tally
            .unread(&all, |w, after| {
                asked.push((w.from, after.cloned()));
                Ok(if w.from == all[1].from { 7 } else { w.rows })
            })
            .unwrap();
        assert_eq!(unread, [Unread { from: all[1].from, to: all[1].to, counted: 7, read: 4 }]);
        assert_eq!(asked, [(all[0].from, None), (all[1].from, Some(resumed))]);
    }
}

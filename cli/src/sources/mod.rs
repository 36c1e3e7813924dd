//! Where the history comes from: a source hands over pages of events in a stable
//! order, each page resumable from the cursor of the last event of the page before.

pub mod amplitude;
pub mod files;
pub mod lines;
pub mod posthog;

use chrono::{DateTime, NaiveDate, Utc};

use crate::shared::retry::ReadError;
use crate::store::amplitude::Ledger;
use crate::store::files::FileRead;
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

/// What a source holds in a range: its first and last timestamps (none when it holds
/// nothing) and how many events, from one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    pub count: u64,
}

pub trait Source {
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
}

//! Where the history comes from: a source hands over pages of events in a stable
//! order, each page resumable from the cursor of the last event of the page before.

use serde::{Deserialize, Serialize};

use crate::amplitude::ledger::Ledger;

/// The position after an event: the order every source pages in is
/// (timestamp, then uuid), so equal timestamps across page boundaries are not skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The source's own timestamp text of the last event handed over (kept exactly,
    /// microseconds included), e.g. "2024-03-01 12:00:00.123456".
    pub timestamp: String,
    /// The last event's uuid (or any key that breaks ties in the source's order).
    pub key: String,
}

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
}

#[derive(Debug)]
pub enum SourceError {
    /// Bad credentials, unknown team/project, unreachable host: the user must act.
    Fatal(String),
    /// May succeed later (429, 5xx, timeouts); `retry_after_seconds` if the source said.
    Transient { message: String, retry_after_seconds: Option<u64> },
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::Fatal(m) => f.write_str(m),
            SourceError::Transient { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for SourceError {}

pub trait Source {
    /// Up to `limit` events strictly after `after` (from the range's start when
    /// `None`) and before the range's end, in (timestamp, key) order.
    fn next_page(&mut self, after: Option<&Cursor>, limit: usize) -> Result<Page, SourceError>;
    /// What to call this source in progress lines, e.g. "ClickHouse at http://...".
    fn describe(&self) -> String;
    /// How far through the source `cursor` is (0 to 1), for a source that knows better
    /// than the share of the time range behind the cursor's timestamp.
    fn share(&self, _cursor: &Cursor) -> Option<f64> {
        None
    }
    /// What the summary should say of the run beyond its counts (how some input was read).
    fn remarks(&self) -> Vec<String> {
        Vec::new()
    }
}
pub mod clickhouse;
pub mod query_api;

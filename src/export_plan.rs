//! What the history's export reads: the host job with its range (`ExportPlan`), and the
//! stretch of it one page belongs to (`Window`). Below `export` (which schedules the
//! job) and `migrator` (which bounds a page by its window), so neither imports the other.

use chrono::{DateTime, Utc};

use crate::version::ExportJob;

/// The host job to start for the history, and its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPlan {
    pub job: ExportJob,
    /// `None`: from the source's first event.
    pub date_from: Option<DateTime<Utc>>,
    pub date_to: DateTime<Utc>,
}

/// A stretch of history: `from` (if any) inclusive to `to` exclusive; `only`: of it,
/// just the events at these instants (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub from: Option<DateTime<Utc>>,
    pub to: DateTime<Utc>,
    pub only: Option<Vec<i64>>,
}

impl Window {
    pub fn holds(&self, at: DateTime<Utc>) -> bool {
        at < self.to
            && self.from.is_none_or(|f| at >= f)
            && self.only.as_ref().is_none_or(|only| only.contains(&at.timestamp_millis()))
    }
}

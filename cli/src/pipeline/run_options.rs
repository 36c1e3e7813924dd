//! What a run of a migration needs to know: where it goes, what it leaves out, how much
//! it reads and sends at a time.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::sink::delivery::Capture;

#[derive(Clone)]
pub struct Options {
    pub run: String,
    pub api_key: String,
    pub capture: Capture,
    pub events_to_ignore: BTreeSet<String>,
    pub page_size: usize,
    pub concurrency: usize,
    /// Events after this go without `historical_migration`: PostHog asks that migrated
    /// events be older than 48 hours.
    pub young_after: DateTime<Utc>,
    /// Record the (day, uuid) of every event handed over, for `verify --from amplitude`.
    pub record_days: bool,
}

//! The two sides a verification compares, each answering the same two questions: how
//! many events each UTC day of a window holds, and which uuids (in their text's order,
//! a page at a time, so that no answer is over PostHog's 50,000 rows). Pages follow
//! the uuid's text rather than `cityHash64(uuid) % n`: an Amplitude import's uuids are
//! in SQLite and the demo's destination in memory, and text order is the one order
//! that every side computes alike.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::hogql::{number, HogQl, SideError};
use crate::shared::retry::{ReadError, RetryPolicy};
use crate::sources::posthog::clickhouse::{quoted, time_literal, ClickHouse};
use crate::sources::utc_day;
use crate::store::error::StoreError;
use crate::store::state_file::StateFile;

/// From `from` (inclusive) to `to` (exclusive), whole UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Window {
    pub fn day(day: NaiveDate) -> Window {
        Window { from: day, to: day + Duration::days(1) }
    }

    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days()
    }

    fn start(&self) -> DateTime<Utc> {
        self.from.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
    }

    fn end(&self) -> DateTime<Utc> {
        self.to.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
    }

    /// The window as a condition on `timestamp` (which the engines prune on).
    pub fn condition(&self) -> String {
        format!("timestamp >= {} AND timestamp < {}", time_literal(self.start()), time_literal(self.end()))
    }
}

/// What one side holds of one day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayCount {
    /// Rows, duplicates the engine has not merged yet included.
    pub rows: u64,
    /// Distinct uuids: the events.
    pub events: u64,
    /// The xor of `cityHash64(uuid)` over the rows: compared when neither side has
    /// duplicates (a pair of them cancels out), so that equal counts of different events
    /// do not pass for equal.
    pub checksum: Option<u64>,
    /// Seconds since the day last took an event (the destination's `created_at`).
    pub quiet_seconds: Option<i64>,
}

pub trait Side {
    fn describe(&self) -> String;
    /// The days of `window` that hold events.
    fn days(&mut self, window: Window) -> Result<Vec<(NaiveDate, DayCount)>, SideError>;
    /// Up to `limit` distinct uuids of `window` after `after`, in text order.
    fn uuids(&mut self, window: Window, after: Option<&str>, limit: usize) -> Result<Vec<String>, SideError>;
    /// Queries sent so far (each counts against a Query API's hourly budget).
    fn queries(&self) -> u64 {
        0
    }
}

fn day_of(text: &str) -> Result<NaiveDate, SideError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| SideError::Fatal(format!("a day came back as {text:?}, not YYYY-MM-DD")))
}

fn after_condition(after: Option<&str>) -> String {
    after.map_or(String::new(), |a| format!(" AND toString(uuid) > {}", quoted(a)))
}

/// A PostHog's events through its Query API (the destination, or a source).
pub struct QueryApiSide {
    pub api: HogQl,
}

impl Side for QueryApiSide {
    fn describe(&self) -> String {
        self.api.describe()
    }

    fn days(&mut self, window: Window) -> Result<Vec<(NaiveDate, DayCount)>, SideError> {
        // HogQL shows timestamps in the project's time zone: the day is taken in UTC.
        // An explicit LIMIT: without one the API gives 100 rows.
        let query = format!(
            "SELECT {} AS utc_day, count() AS event_rows, uniqExact(uuid) AS event_uuids, \
             groupBitXor(cityHash64(uuid)) AS uuid_xor, dateDiff('second', max(created_at), now()) AS quiet_seconds \
             FROM events WHERE {} GROUP BY utc_day ORDER BY utc_day LIMIT 50000",
            utc_day("timestamp"),
            window.condition()
        );
        let rows = self.api.rows(&query)?;
        rows.iter()
            .map(|row| {
                let cell = |i: usize| row.get(i).and_then(number);
                let day = day_of(row.first().and_then(|v| v.as_str()).unwrap_or_default())?;
                let checksum = row.get(3).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
                Ok((
                    day,
                    DayCount {
                        rows: cell(1).unwrap_or(0) as u64,
                        events: cell(2).unwrap_or(0) as u64,
                        checksum,
                        quiet_seconds: cell(4),
                    },
                ))
            })
            .collect()
    }

    fn uuids(&mut self, window: Window, after: Option<&str>, limit: usize) -> Result<Vec<String>, SideError> {
        let query = format!(
            "SELECT DISTINCT toString(uuid) AS event_uuid FROM events WHERE {}{} ORDER BY event_uuid LIMIT {limit}",
            window.condition(),
            after_condition(after)
        );
        let rows = self.api.rows(&query)?;
        Ok(rows.iter().filter_map(|row| row.first()?.as_str().map(str::to_string)).collect())
    }

    fn queries(&self) -> u64 {
        self.api.queries()
    }
}

/// A PostHog's ClickHouse, read with the `posthog` command's own client.
pub struct ClickHouseSide {
    pub clickhouse: ClickHouse,
    pub retry: RetryPolicy,
}

impl ClickHouseSide {
    fn run(&mut self, sql: &str) -> Result<String, SideError> {
        let clickhouse = &mut self.clickhouse;
        let answer = self.retry.read(|| match clickhouse.query(sql) {
            // ClickHouse's codes for a query over its time (159, 160) or memory (241).
            Err(ReadError::Transient { message, .. })
                if ["Code: 159.", "Code: 160.", "Code: 241."].iter().any(|c| message.contains(c)) =>
            {
                Ok(Err(SideError::TooBig(message)))
            }
            other => other.map(Ok),
        })?;
        answer
    }

    fn scope(&self, window: Window) -> String {
        format!(
            "{} WHERE team_id = {} AND {}",
            self.clickhouse.table_sql(),
            self.clickhouse.team_id,
            window.condition()
        )
    }
}

impl Side for ClickHouseSide {
    fn describe(&self) -> String {
        format!(
            "ClickHouse at {} ({}.{}, team {})",
            self.clickhouse.url, self.clickhouse.database, self.clickhouse.table, self.clickhouse.team_id
        )
    }

    fn days(&mut self, window: Window) -> Result<Vec<(NaiveDate, DayCount)>, SideError> {
        let sql = format!(
            "SELECT {} AS utc_day, count(), uniqExact(uuid), groupBitXor(cityHash64(uuid)) FROM {} GROUP BY \
             utc_day ORDER BY utc_day FORMAT TSV",
            utc_day("timestamp"),
            self.scope(window)
        );
        let text = self.run(&sql)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let cells: Vec<&str> = line.split('\t').collect();
                let n = |i: usize| cells.get(i).and_then(|c| c.trim().parse::<u64>().ok());
                Ok((
                    day_of(cells[0])?,
                    DayCount {
                        rows: n(1).unwrap_or(0),
                        events: n(2).unwrap_or(0),
                        checksum: n(3),
                        quiet_seconds: None,
                    },
                ))
            })
            .collect()
    }

    fn uuids(&mut self, window: Window, after: Option<&str>, limit: usize) -> Result<Vec<String>, SideError> {
        let sql = format!(
            "SELECT DISTINCT toString(uuid) AS event_uuid FROM {}{} ORDER BY event_uuid LIMIT {limit} FORMAT TSV",
            self.scope(window),
            after_condition(after)
        );
        Ok(self.run(&sql)?.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
    }
}

/// What an import (Amplitude's, Mixpanel's, or of files) converted and handed to the destination,
/// per day, as the import recorded it in the state file.
pub struct ImportSide {
    pub state: StateFile,
    /// The runs compared (those of one kind of import).
    pub imports: Vec<String>,
    /// What they are, e.g. "Amplitude import", and more than one of them.
    pub what: &'static str,
    pub whats: &'static str,
    /// Their runs' sources, as SQL LIKE patterns.
    pub sources: &'static [&'static str],
}

fn db_failure(e: StoreError) -> SideError {
    // The store's error names the file, the cause and what to do.
    SideError::Fatal(e.to_string())
}

impl Side for ImportSide {
    fn describe(&self) -> String {
        match self.imports.as_slice() {
            [one] => format!("the {} recorded in the state file ({one})", self.what),
            many => format!("the {} {} recorded in the state file", many.len(), self.whats),
        }
    }

    fn days(&mut self, window: Window) -> Result<Vec<(NaiveDate, DayCount)>, SideError> {
        let days = self
            .state
            .imported_days(self.sources, &window.from.to_string(), &window.to.to_string())
            .map_err(db_failure)?;
        days.into_iter()
            .map(|(day, events)| {
                Ok((day_of(&day)?, DayCount { rows: events, events, checksum: None, quiet_seconds: None }))
            })
            .collect()
    }

    fn uuids(&mut self, window: Window, after: Option<&str>, limit: usize) -> Result<Vec<String>, SideError> {
        let (from, to) = (window.from.to_string(), window.to.to_string());
        self.state.imported_uuids(self.sources, &from, &to, after.unwrap_or(""), limit).map_err(db_failure)
    }
}

//! The source PostHog's Query API, for instances whose ClickHouse is not reachable (a
//! hobby deploy publishes no ClickHouse port): `POST /api/projects/:id/query/` with a
//! HogQL query and a personal API key with the Query Read permission. As PostHog runs
//! it (posthog/api/query.py): the answer is `{"results": [[...]], "columns": [...]}`,
//! up to 50,000 rows with an explicit LIMIT; a query still running answers 202 with
//! `query_status`, polled at `GET /api/projects/:id/query/:query_id/`; HogQL queries are
//! throttled to 120 an hour per key (`HogQLQueryThrottle`, 429 beyond); a query that
//! runs too long answers 504, one estimated too expensive 512.
//!
//! Pages are keyset pages on (timestamp, uuid) within windows of days holding about a
//! page of events each, so that a query reads little beyond its page; a window that
//! times out is cut in two and read on.

use std::collections::VecDeque;
use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::clickhouse::{after_clause, event_of, json_count, time_literal};
use super::{windows, Bounds, Cursor, Page, Source, SourceError, Window};

/// PostHog's cap on rows a query returns, and the default page on this source.
pub const MOST_ROWS: usize = 50_000;
/// PostHog's throttle of HogQL queries, per personal API key.
pub const QUERIES_PER_HOUR: usize = 120;
/// A window is not cut below this: a query that times out on so little halves its page.
const SHORTEST_WINDOW: chrono::Duration = chrono::Duration::seconds(1);
/// Polls of a query still running, a second apart at first.
const POLL_FOR: Duration = Duration::from_secs(1800);

/// The flags a user sets for one Query API, to name in refusals.
pub struct Flags {
    pub host: &'static str,
    pub project: &'static str,
    pub key: &'static str,
}

pub const SOURCE_FLAGS: Flags = Flags { host: "--query-api-host", project: "--project-id", key: "--personal-api-key" };

pub struct QueryApi {
    pub host: String,
    pub project_id: u64,
    /// The flags named when the API refuses the key or the project.
    pub flags: &'static Flags,
    key: String,
    agent: ureq::Agent,
    /// At most this many queries in any hour (PostHog's throttle).
    pub per_hour: usize,
    sent: VecDeque<Instant>,
    windows: Vec<Window>,
    /// The window of the next page, and the cursor that page follows.
    window: usize,
    position: Option<Option<Cursor>>,
    /// The rows a page asks for after a timeout on a window too short to cut.
    limit_cap: Option<usize>,
    /// Said with the next page: windows cut after timeouts.
    pub notes: Vec<String>,
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        // HogQL may hand `properties` back as an object rather than its text.
        other => other.to_string(),
    }
}

/// One day of the range, as the source counted it.
struct DayCount {
    day: NaiveDate,
    rows: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

impl DayCount {
    fn of(row: &[Value]) -> Result<DayCount, SourceError> {
        let unreadable = || SourceError::Fatal(format!("the Query API counted a day as {row:?}"));
        let [day, rows, first, last] = row else { return Err(unreadable()) };
        Ok(DayCount {
            day: migrator3000::timestamp::parse_date(&cell(day)).ok_or_else(unreadable)?,
            rows: json_count(rows).ok_or_else(unreadable)?,
            first: migrator3000::timestamp::parse_iso(&cell(first)).ok_or_else(unreadable)?,
            last: migrator3000::timestamp::parse_iso(&cell(last)).ok_or_else(unreadable)?,
        })
    }
}

/// What came of one query.
pub enum Reply {
    Done(String),
    /// 504 or 512: the query was too much for the source.
    TooMuch(u16, String),
}

impl QueryApi {
    pub fn new(host: &str, project_id: u64, key: &str) -> QueryApi {
        QueryApi {
            host: host.trim_end_matches('/').to_string(),
            project_id,
            key: key.to_string(),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(30))
                .timeout_read(Duration::from_secs(900))
                .build(),
            flags: &SOURCE_FLAGS,
            per_hour: QUERIES_PER_HOUR,
            sent: VecDeque::new(),
            windows: Vec::new(),
            window: 0,
            position: None,
            limit_cap: None,
            notes: Vec::new(),
        }
    }

    fn range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
        let mut range = String::from("true");
        if let Some(from) = from {
            range.push_str(&format!(" AND timestamp >= {}", time_literal(from)));
        }
        if let Some(to) = to {
            range.push_str(&format!(" AND timestamp < {}", time_literal(to)));
        }
        range
    }

    /// The HogQL of a page: keyset pagination on (timestamp, uuid) compared by the
    /// engine itself within the window, timestamps as UTC text with their microseconds.
    pub fn page_query(window: &Window, after: Option<&Cursor>, limit: usize) -> String {
        format!(
            "SELECT toString(uuid), event, distinct_id, properties, toString(toTimeZone(timestamp, 'UTC')), \
             elements_chain FROM events WHERE {}{} ORDER BY timestamp, uuid LIMIT {}",
            Self::range(Some(window.from), Some(window.to)),
            after_clause(after),
            limit.clamp(1, MOST_ROWS)
        )
    }

    /// The events of each UTC day of the range, with the first and last timestamps.
    pub fn days_query(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
        format!(
            "SELECT toString(toDate(toTimeZone(timestamp, 'UTC'))) AS day, count() AS rows, \
             toString(toTimeZone(min(timestamp), 'UTC')), toString(toTimeZone(max(timestamp), 'UTC')) FROM events \
             WHERE {} GROUP BY day ORDER BY day LIMIT {MOST_ROWS}",
            Self::range(from, to)
        )
    }

    /// Waits until a query fits in the hourly budget.
    fn budget(&mut self) {
        let hour = Duration::from_secs(3600);
        while self.sent.front().is_some_and(|at| at.elapsed() >= hour) {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.per_hour.max(1) {
            if let Some(oldest) = self.sent.front() {
                let wait = hour.saturating_sub(oldest.elapsed());
                // Said now, not with the page: the wait can be most of an hour.
                eprintln!(
                    "{} queries in the last hour, PostHog's limit for HogQL: waiting {} s",
                    self.sent.len(),
                    wait.as_secs()
                );
                thread::sleep(wait);
            }
            self.sent.pop_front();
        }
        self.sent.push_back(Instant::now());
    }

    fn refused(&self, status: u16, retry_after: Option<u64>, text: &str) -> SourceError {
        let said: String = text.trim().chars().take(300).collect();
        match status {
            401 | 403 => SourceError::Fatal(format!(
                "the Query API refused the personal API key (HTTP {status}: {said}); check {} (it needs the Query \
                 Read permission) and {}",
                self.flags.key, self.flags.project
            )),
            404 => SourceError::Fatal(format!(
                "the Query API of {} has no project {} (HTTP 404); check {} and {}",
                self.host, self.project_id, self.flags.host, self.flags.project
            )),
            429 => SourceError::Transient {
                message: format!("the Query API is rate limited (HTTP 429 {said})"),
                retry_after_seconds: retry_after.or(Some(60)),
            },
            400..=499 => SourceError::Fatal(format!("the Query API refused the query (HTTP {status}: {said})")),
            _ => SourceError::Transient {
                message: format!("the Query API failed (HTTP {status}: {said})"),
                retry_after_seconds: retry_after,
            },
        }
    }

    /// An answer's status and text, whatever its status.
    fn read(&self, answer: Result<ureq::Response, ureq::Error>) -> Result<(u16, Option<u64>, String), SourceError> {
        let response = match answer {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(transport)) => {
                return Err(SourceError::Transient {
                    message: format!("the Query API at {} did not answer ({transport})", self.host),
                    retry_after_seconds: None,
                })
            }
        };
        let status = response.status();
        let retry_after = response.header("retry-after").and_then(|h| h.trim().parse().ok());
        let mut text = String::new();
        // Read whole, whatever its size: a page of 50,000 events is some 100 MB.
        response.into_reader().read_to_string(&mut text).map_err(|e| SourceError::Transient {
            message: format!("reading the Query API's answer: {e}"),
            retry_after_seconds: None,
        })?;
        Ok((status, retry_after, text))
    }

    /// Runs one HogQL query, following a 202 to its end.
    pub fn run(&mut self, hogql: &str) -> Result<Reply, SourceError> {
        self.budget();
        let body = json!({"query": {"kind": "HogQLQuery", "query": hogql}});
        let url = format!("{}/api/projects/{}/query/", self.host, self.project_id);
        let answer = self
            .agent
            .post(&url)
            .set("Authorization", &format!("Bearer {}", self.key))
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
        let (mut status, mut retry_after, mut text) = self.read(answer)?;
        let started = Instant::now();
        let mut wait = Duration::from_secs(1);
        while status == 202 {
            let status_of: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let Some(id) = status_of["query_status"]["id"].as_str().map(str::to_string) else {
                return Err(SourceError::Transient {
                    message: "the Query API answered 202 without a query_status id".into(),
                    retry_after_seconds: None,
                });
            };
            if started.elapsed() > POLL_FOR {
                return Ok(Reply::TooMuch(504, format!("query {id} still running after {} s", POLL_FOR.as_secs())));
            }
            thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(20));
            let poll =
                self.agent.get(&format!("{url}{id}/")).set("Authorization", &format!("Bearer {}", self.key)).call();
            (status, retry_after, text) = self.read(poll)?;
            if status == 200 {
                // The finished query's answer, inside its status.
                let done: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                text = done["query_status"]["results"].to_string();
            }
        }
        match status {
            200..=299 => Ok(Reply::Done(text)),
            504 | 512 => Ok(Reply::TooMuch(status, text.trim().chars().take(200).collect())),
            _ => Err(self.refused(status, retry_after, &text)),
        }
    }

    /// The rows of a query's answer.
    pub fn rows(text: &str) -> Result<Vec<Vec<Value>>, SourceError> {
        let answer: Answer = serde_json::from_str(text).map_err(|_| SourceError::Transient {
            message: format!(
                "the Query API answered something that is not a query result: {}",
                text.chars().take(200).collect::<String>()
            ),
            retry_after_seconds: None,
        })?;
        answer
            .results
            .iter()
            .map(|row| {
                serde_json::from_str(row.get())
                    .map_err(|e| SourceError::Fatal(format!("the Query API returned a row that is not a list ({e})")))
            })
            .collect()
    }

    /// The events of each day of `[from, to)`; a range the source gives up counting is
    /// counted in halves.
    fn days(&mut self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<Vec<DayCount>, SourceError> {
        let said = match self.run(&Self::days_query(from, to))? {
            Reply::Done(text) => return Self::rows(&text)?.iter().map(|row| DayCount::of(row)).collect(),
            Reply::TooMuch(status, said) => format!("HTTP {status} {said}"),
        };
        let (from, to) = match (from, to) {
            (Some(from), Some(to)) => (from, to),
            _ => {
                let text = match self.run(&Self::ends_query(from, to))? {
                    Reply::Done(text) => text,
                    Reply::TooMuch(..) => {
                        return Err(SourceError::Fatal(format!(
                            "the Query API gives up counting the events ({said}); give a range with --start and --end"
                        )))
                    }
                };
                let ends = Self::rows(&text)?;
                let end = |i: usize| ends.first().and_then(|row| migrator3000::timestamp::parse_iso(&cell(&row[i])));
                let (Some(first), Some(last)) = (end(0), end(1)) else { return Ok(Vec::new()) };
                (from.unwrap_or(first), to.unwrap_or(last + chrono::Duration::microseconds(1)))
            }
        };
        if to - from <= chrono::Duration::days(1) {
            return Err(SourceError::Fatal(format!("the Query API gives up counting even one day's events ({said})")));
        }
        let middle = from + (to - from) / 2;
        eprintln!("the Query API gave up counting the events ({said}): counting them in halves");
        let mut days = self.days(Some(from), Some(middle))?;
        for day in self.days(Some(middle), Some(to))? {
            match days.last_mut().filter(|last| last.day == day.day) {
                Some(last) => (last.rows, last.last) = (last.rows + day.rows, day.last),
                None => days.push(day),
            }
        }
        Ok(days)
    }

    /// The first and last timestamps of the range.
    pub fn ends_query(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
        format!(
            "SELECT toString(toTimeZone(min(timestamp), 'UTC')), toString(toTimeZone(max(timestamp), 'UTC')) FROM \
             events WHERE {} HAVING count() > 0",
            Self::range(from, to)
        )
    }

    /// The window's remaining span is cut in two after a timeout; too short to cut, the
    /// page asks for half the rows.
    fn narrow(&mut self, after: Option<&Cursor>, limit: usize, status: u16, said: &str) -> Result<(), SourceError> {
        let window = &self.windows[self.window];
        let start = after
            .and_then(|c| migrator3000::timestamp::parse_iso(&c.timestamp))
            .map_or(window.from, |at| at.max(window.from));
        if window.to - start > SHORTEST_WINDOW * 2 {
            let middle = start + (window.to - start) / 2;
            let rest = Window { from: middle, to: window.to, rows: window.rows / 2 };
            self.windows[self.window].to = middle;
            self.windows.insert(self.window + 1, rest);
            self.notes.push(format!(
                "the Query API gave up on a query (HTTP {status} {said}): reading up to {} first",
                migrator3000::timestamp::format(middle)
            ));
        } else if limit > 1 {
            let cap = (limit / 2).max(1);
            self.limit_cap = Some(cap);
            self.notes.push(format!("the Query API gave up on a query (HTTP {status} {said}): pages of {cap} now"));
        } else {
            return Err(SourceError::Transient {
                message: format!("the Query API gives up even on one event (HTTP {status} {said})"),
                retry_after_seconds: None,
            });
        }
        Ok(())
    }
}

impl Source for QueryApi {
    fn select(
        &mut self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Option<Bounds>, SourceError> {
        let counted = self.days(from, to)?;
        let mut days = Vec::new();
        let mut bounds = Bounds { first: None, last: None, count: 0 };
        for day in counted {
            bounds.first = bounds.first.or(Some(day.first));
            bounds.last = Some(day.last);
            bounds.count += day.rows;
            days.push((day.day, day.rows));
        }
        self.windows = windows(&days, from, to, MOST_ROWS as u64);
        (self.window, self.position, self.limit_cap) = (0, None, None);
        Ok(Some(bounds))
    }

    fn next_page(&mut self, after: Option<&Cursor>, limit: usize) -> Result<Page, SourceError> {
        if self.position.as_ref().is_none_or(|p| p.as_ref() != after) {
            // Not where the last page ended (a resume, or a page read again).
            let at = after.and_then(|c| migrator3000::timestamp::parse_iso(&c.timestamp));
            self.window = at.map_or(0, |at| self.windows.iter().position(|w| w.to > at).unwrap_or(self.windows.len()));
        }
        let mut page = Page::default();
        let mut last = after.cloned();
        while page.events.is_empty() && self.window < self.windows.len() {
            let want = self.limit_cap.map_or(limit, |cap| cap.min(limit)).clamp(1, MOST_ROWS);
            let query = Self::page_query(&self.windows[self.window], last.as_ref(), want);
            let text = match self.run(&query)? {
                Reply::Done(text) => text,
                Reply::TooMuch(status, said) => {
                    self.narrow(last.as_ref(), want, status, &said)?;
                    page.notes.append(&mut self.notes);
                    continue;
                }
            };
            let rows = Self::rows(&text)?;
            let full = rows.len() >= want;
            for row in rows {
                let [uuid, event, distinct_id, properties, ts, elements_chain] = &row[..] else {
                    return Err(SourceError::Fatal(format!(
                        "the Query API returned a row of {} columns, not 6",
                        row.len()
                    )));
                };
                let (id, at) = (cell(uuid), cell(ts));
                page.events.push(event_of(
                    &id,
                    &cell(event),
                    &cell(distinct_id),
                    &cell(properties),
                    &at,
                    &cell(elements_chain),
                ));
                last = Some(Cursor { timestamp: at, key: id });
            }
            if !full {
                // The window is read: the next page starts the next one.
                self.window += 1;
            }
        }
        page.next = if page.events.is_empty() { None } else { last };
        self.position = Some(page.next.clone());
        page.notes.append(&mut self.notes);
        Ok(page)
    }

    fn describe(&self) -> String {
        format!("the Query API of {} (project {})", self.host, self.project_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        migrator3000::timestamp::parse_iso(text).unwrap()
    }

    #[test]
    fn the_query_pages_in_the_engines_order_within_its_window_and_caps_the_rows() {
        let window = Window { from: at("2021-06-01T00:00:00Z"), to: at("2021-06-03T00:00:00Z"), rows: 9 };
        let cursor = Cursor { timestamp: "2021-06-02 00:00:00.5".into(), key: "u".into() };
        let q = QueryApi::page_query(&window, Some(&cursor), 100_000);
        assert!(q.contains("timestamp < toDateTime64('2021-06-03 00:00:00.000000', 6, 'UTC')"), "{q}");
        assert!(
            q.contains(
                "timestamp >= toDateTime64('2021-06-02 00:00:00.5', 6, 'UTC') AND (timestamp, uuid) > \
                 (toDateTime64('2021-06-02 00:00:00.5', 6, 'UTC'), toUUID('u'))"
            ),
            "{q}"
        );
        assert!(q.ends_with("ORDER BY timestamp, uuid LIMIT 50000"), "{q}");
        assert_eq!(QueryApi::new("https://ph.example.com/", 7, "k").host, "https://ph.example.com");
    }

    #[test]
    fn a_window_that_times_out_is_cut_in_two_and_then_the_page_halves() {
        let mut api = QueryApi::new("https://ph", 7, "k");
        api.windows = vec![Window { from: at("2021-06-01T00:00:00Z"), to: at("2021-06-02T00:00:00Z"), rows: 10 }];
        api.narrow(None, 50_000, 504, "timeout").unwrap();
        assert_eq!(api.windows.len(), 2);
        assert_eq!((api.windows[0].to, api.windows[1].from), (at("2021-06-01T12:00:00Z"), at("2021-06-01T12:00:00Z")));
        api.windows[0].to = at("2021-06-01T00:00:01Z");
        api.narrow(None, 50_000, 504, "timeout").unwrap();
        assert_eq!(api.limit_cap, Some(25_000));
        assert!(api.narrow(None, 1, 504, "timeout").is_err());
        assert!(api.notes.iter().all(|n| n.contains("HTTP 504")), "{:?}", api.notes);
    }

    #[test]
    fn refusals_name_what_to_fix_and_rate_limits_wait() {
        let api = QueryApi::new("https://ph", 7, "k");
        assert!(matches!(api.refused(401, None, ""), SourceError::Fatal(m) if m.contains("--personal-api-key")));
        assert!(matches!(api.refused(429, Some(30), ""), SourceError::Transient { retry_after_seconds: Some(30), .. }));
        assert!(matches!(api.refused(502, None, "<html>"), SourceError::Transient { .. }));
    }
}

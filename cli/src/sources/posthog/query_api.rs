//! The source PostHog's Query API, for instances whose ClickHouse is not reachable (a
//! hobby deploy publishes no ClickHouse port), through the one Query API client
//! (`posthog_api::client`: the hourly budget, 202 polling, 429 and 504/512).
//!
//! Pages are keyset pages on (timestamp, uuid) within windows of days holding about a
//! page of events each, so that a query reads little beyond its page; a window that
//! times out is cut in two and read on.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::clickhouse::{after_clause, event_of, json_count, time_literal};
use super::Recount;
use crate::posthog_api::client::{QueryApiClient, Reply};
use crate::shared::defaults::QUERY_API_MOST_ROWS as MOST_ROWS;
use crate::shared::reporter::note;
use crate::shared::retry::ReadError;
use crate::sources::{utc_day, windows, Bounds, Page, Source, Tally, Unread, Window};
use crate::store::runs::Cursor;

/// A window is not cut below this: a query that times out on so little halves its page.
const SHORTEST_WINDOW: chrono::Duration = chrono::Duration::seconds(1);

pub struct QueryApiSource {
    pub client: QueryApiClient,
    windows: Vec<Window>,
    /// The window of the next page, and the cursor that page follows.
    window: usize,
    position: Option<Option<Cursor>>,
    /// The rows a page asks for after a timeout on a window too short to cut.
    limit_cap: Option<usize>,
    /// Said with the next page: windows cut after timeouts.
    pub notes: Vec<String>,
    /// The rows read of each window since the range was selected.
    tally: Tally,
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
    fn of(row: &[Value]) -> Result<DayCount, ReadError> {
        let unreadable = || ReadError::Fatal(format!("the Query API counted a day as {row:?}"));
        let [day, rows, first, last] = row else { return Err(unreadable()) };
        Ok(DayCount {
            day: migrator3000::timestamp::parse_date(&cell(day)).ok_or_else(unreadable)?,
            rows: json_count(rows).ok_or_else(unreadable)?,
            first: migrator3000::timestamp::parse_iso(&cell(first)).ok_or_else(unreadable)?,
            last: migrator3000::timestamp::parse_iso(&cell(last)).ok_or_else(unreadable)?,
        })
    }
}
impl QueryApiSource {
    pub fn new(client: QueryApiClient) -> QueryApiSource {
        QueryApiSource {
            client,
            windows: Vec::new(),
            window: 0,
            position: None,
            limit_cap: None,
            notes: Vec::new(),
            tally: Tally::default(),
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
            "SELECT {} AS day, count() AS rows, toString(toTimeZone(min(timestamp), 'UTC')), \
             toString(toTimeZone(max(timestamp), 'UTC')) FROM events WHERE {} GROUP BY day ORDER BY day LIMIT \
             {MOST_ROWS}",
            utc_day("timestamp"),
            Self::range(from, to)
        )
    }

    /// The rows of `[from, to)` after `after`.
    pub fn count_query(from: DateTime<Utc>, to: DateTime<Utc>, after: Option<&Cursor>) -> String {
        format!("SELECT count() FROM events WHERE {}{}", Self::range(Some(from), Some(to)), after_clause(after))
    }

    /// The events of each day of `[from, to)`; a range the source gives up counting is
    /// counted in halves.
    fn days(&mut self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<Vec<DayCount>, ReadError> {
        let said = match self.client.run(&Self::days_query(from, to))? {
            Reply::Done(text) => return QueryApiClient::rows(&text)?.iter().map(|row| DayCount::of(row)).collect(),
            Reply::TooMuch(status, said) => format!("HTTP {status} {said}"),
        };
        let (from, to) = match (from, to) {
            (Some(from), Some(to)) => (from, to),
            _ => {
                let text = match self.client.run(&Self::ends_query(from, to))? {
                    Reply::Done(text) => text,
                    Reply::TooMuch(..) => {
                        return Err(ReadError::Fatal(format!(
                            "the Query API gives up counting the events ({said}); give a range with --start and --end"
                        )))
                    }
                };
                let ends = QueryApiClient::rows(&text)?;
                let end = |i: usize| ends.first().and_then(|row| migrator3000::timestamp::parse_iso(&cell(&row[i])));
                let (Some(first), Some(last)) = (end(0), end(1)) else { return Ok(Vec::new()) };
                (from.unwrap_or(first), to.unwrap_or(last + chrono::Duration::microseconds(1)))
            }
        };
        if to - from <= chrono::Duration::days(1) {
            return Err(ReadError::Fatal(format!("the Query API gives up counting even one day's events ({said})")));
        }
        let middle = from + (to - from) / 2;
        note!("the Query API gave up counting the events ({said}): counting them in halves");
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
    fn narrow(&mut self, after: Option<&Cursor>, limit: usize, status: u16, said: &str) -> Result<(), ReadError> {
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
            return Err(ReadError::Transient {
                message: format!("the Query API gives up even on one event (HTTP {status} {said})"),
                retry_after_seconds: None,
            });
        }
        Ok(())
    }
}

impl Source for QueryApiSource {
    fn select(&mut self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<Option<Bounds>, ReadError> {
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
        self.tally.clear();
        Ok(Some(bounds))
    }

    fn next_page(&mut self, after: Option<&Cursor>, limit: usize) -> Result<Page, ReadError> {
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
            self.tally.started(&self.windows[self.window], last.as_ref());
            let text = match self.client.run(&query)? {
                Reply::Done(text) => text,
                Reply::TooMuch(status, said) => {
                    self.narrow(last.as_ref(), want, status, &said)?;
                    page.notes.append(&mut self.notes);
                    continue;
                }
            };
            let rows = QueryApiClient::rows(&text)?;
            let full = rows.len() >= want;
            self.tally.add(&self.windows[self.window], rows.len() as u64);
            for row in rows {
                let [uuid, event, distinct_id, properties, ts, elements_chain] = &row[..] else {
                    return Err(ReadError::Fatal(format!(
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
        self.client.describe()
    }

    fn unread(&mut self) -> Result<Vec<Unread>, ReadError> {
        self.recount_unread()
    }

    fn count(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Option<u64>, ReadError> {
        self.recount(from, to)
    }
}

impl Recount for QueryApiSource {
    fn windows(&self) -> &[Window] {
        &self.windows
    }

    fn tally(&mut self) -> &mut Tally {
        &mut self.tally
    }

    fn count_rows(&mut self, from: DateTime<Utc>, to: DateTime<Utc>, after: Option<&Cursor>) -> Result<u64, ReadError> {
        let text = match self.client.run(&Self::count_query(from, to, after))? {
            Reply::Done(text) => text,
            Reply::TooMuch(status, said) => {
                return Err(ReadError::Transient {
                    message: format!("the Query API gave up counting events (HTTP {status} {said})"),
                    retry_after_seconds: None,
                })
            }
        };
        let rows = QueryApiClient::rows(&text)?;
        rows.first()
            .and_then(|row| row.first())
            .and_then(json_count)
            .ok_or_else(|| ReadError::Fatal(format!("the Query API answered a count with {rows:?}")))
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
        let q = QueryApiSource::page_query(&window, Some(&cursor), 100_000);
        assert!(q.contains("timestamp < toDateTime64('2021-06-03 00:00:00.000000', 6, 'UTC')"), "{q}");
        assert!(
            q.contains(
                "timestamp >= toDateTime64('2021-06-02 00:00:00.5', 6, 'UTC') AND (timestamp, uuid) > \
                 (toDateTime64('2021-06-02 00:00:00.5', 6, 'UTC'), toUUID('u'))"
            ),
            "{q}"
        );
        assert!(q.ends_with("ORDER BY timestamp, uuid LIMIT 50000"), "{q}");
        assert_eq!(QueryApiClient::new("https://ph.example.com/", 7, "k").host, "https://ph.example.com");
    }

    #[test]
    fn a_window_that_times_out_is_cut_in_two_and_then_the_page_halves() {
        let mut api = QueryApiSource::new(QueryApiClient::new("https://ph", 7, "k"));
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
}

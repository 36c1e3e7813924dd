//! The source PostHog's ClickHouse, read through its HTTP interface (what PostHog's own
//! migration script reads): one team's rows of `events` (the Distributed table over
//! every shard), in ClickHouse's own order of (timestamp, uuid).
//!
//! PostHog orders its events by (team_id, toDate(timestamp), event, ...): within a day,
//! rows are not in time order, so no condition on the time prunes within a day. A page
//! query of its own (keyset and LIMIT) therefore reads the whole rest of the range every
//! time. Instead the range is cut into windows of a day (less for a day larger than
//! `WINDOW_ROWS`), and each window is one query whose answer is read as a stream and
//! handed over a page at a time: every row is read about once. The cursor is compared in
//! SQL, never in Rust: ClickHouse orders UUIDs by their second 64-bit half first.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::Recount;
use crate::shared::retry::ReadError;
use crate::sources::{utc_day, windows, Bounds, Page, Source, Tally, Unread, Window};
use crate::store::runs::Cursor;

/// A window holds at most about this many rows (ClickHouse sorts each window whole;
/// 500,000 events of 2 KB is about a gigabyte to sort). Smaller days share a window.
pub const WINDOW_ROWS: u64 = 500_000;

pub struct ClickHouse {
    pub url: String,
    pub user: String,
    pub password: String,
    pub database: String,
    pub table: String,
    pub team_id: u64,
    /// Notes for `--debug`: what each window's query read.
    pub debug: bool,
    agent: ureq::Agent,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    windows: Vec<Window>,
    /// The window the next page comes from.
    next_window: usize,
    open: Option<Stream>,
    /// Uuids handed over from the current window: rows that repeat one are left out.
    seen: HashSet<u128>,
    seen_window: Option<usize>,
    answered: bool,
    /// The rows read of each window since the range was selected.
    tally: Tally,
}

/// A window's answer being read.
struct Stream {
    window: usize,
    reader: BufReader<Box<dyn Read + Send + Sync>>,
    /// The last event handed over from it.
    last: Option<Cursor>,
    handed: u64,
    /// ClickHouse's own count of the rows the query read, from X-ClickHouse-Summary.
    read_rows: Option<u64>,
}

/// The columns of a window query, in its order: id, event, distinct_id, properties,
/// ts, elements_chain.
const COLUMNS: usize = 6;

#[derive(Deserialize)]
struct Day {
    day: String,
    rows: Value,
    first: String,
    last: String,
}

/// ClickHouse's errors about the query itself, which no retry mends: syntax, unknown
/// identifier, illegal or mismatched types, no common type.
const QUERY_ERRORS: [&str; 5] = ["Code: 62.", "Code: 47.", "Code: 43.", "Code: 53.", "Code: 386."];

/// The condition that starts a page after `cursor`: compared by the engine, in its own
/// order of (timestamp, uuid) (HogQL reads it the same). The plain bound on the time
/// beside the tuple is what the engine can prune partitions and days on.
pub fn after_clause(cursor: Option<&Cursor>) -> String {
    cursor.map_or(String::new(), |c| {
        let at = format!("toDateTime64({}, 6, 'UTC')", quoted(&c.timestamp));
        format!(" AND timestamp >= {at} AND (timestamp, uuid) > ({at}, toUUID({}))", quoted(&c.key))
    })
}

/// A string literal for ClickHouse SQL.
pub fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// An identifier (a database's or a table's name) for ClickHouse SQL: `my-events`.
pub fn identifier(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// A time as ClickHouse writes a DateTime64(6) in UTC: `2021-06-01 00:00:00.000000`.
pub fn clickhouse_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// A DateTime64 literal in UTC.
pub fn time_literal(t: DateTime<Utc>) -> String {
    format!("toDateTime64({}, 6, 'UTC')", quoted(&clickhouse_time(t)))
}

/// A ClickHouse UInt64 in JSON: a string by default (output_format_json_quote_64bit_integers).
pub fn json_count(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) => s.parse().ok(),
        other => other.as_u64(),
    }
}

/// A uuid's 128 bits, for the set of uuids handed over.
fn uuid_bits(text: &str) -> Option<u128> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32).then(|| u128::from_str_radix(&hex, 16).ok()).flatten()
}

impl ClickHouse {
    /// The events table as SQL names it: `database`.`table`.
    pub fn table_sql(&self) -> String {
        format!("{}.{}", identifier(&self.database), identifier(&self.table))
    }

    pub fn new(url: &str, user: &str, password: &str, database: &str, table: &str, team_id: u64) -> ClickHouse {
        ClickHouse {
            url: url.trim_end_matches('/').to_string(),
            user: user.into(),
            password: password.into(),
            database: database.into(),
            table: table.into(),
            team_id,
            debug: false,
            // No deadline for a whole answer (a window streams for as long as its pages take);
            // a read that stalls this long is a dead connection.
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(30))
                .timeout_read(Duration::from_secs(600))
                .timeout_write(Duration::from_secs(60))
                .build(),
            from: None,
            to: None,
            windows: Vec::new(),
            next_window: 0,
            open: None,
            seen: HashSet::new(),
            seen_window: None,
            answered: false,
            tally: Tally::default(),
        }
    }

    fn range(&self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
        let mut range = format!("team_id = {}", self.team_id);
        if let Some(from) = from {
            range.push_str(&format!(" AND timestamp >= {}", time_literal(from)));
        }
        if let Some(to) = to {
            range.push_str(&format!(" AND timestamp < {}", time_literal(to)));
        }
        range
    }

    /// The query of a window: every row of it after `after`, in order, unlimited.
    pub fn window_query(&self, window: &Window, after: Option<&Cursor>) -> String {
        format!(
            // Aliases other than the columns' names: ClickHouse lets an alias stand for the
            // column in WHERE and ORDER BY, which would compare and order uuids as text.
            "SELECT toString(uuid) AS id, event, distinct_id, properties, toString(timestamp) AS ts, elements_chain \
             FROM {} WHERE {}{} ORDER BY timestamp, uuid FORMAT RowBinary",
            self.table_sql(),
            self.range(Some(window.from), Some(window.to)),
            after_clause(after)
        )
    }

    /// The rows of each day of the range, with its first and last timestamps.
    pub fn days_query(&self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
        format!(
            "SELECT {} AS day, count() AS rows, toString(min(timestamp)) AS first, toString(max(timestamp)) AS last \
             FROM {} WHERE {} GROUP BY day ORDER BY day FORMAT JSONEachRow",
            utc_day("timestamp"),
            self.table_sql(),
            self.range(from, to)
        )
    }

    /// The rows of `[from, to)` after `after`.
    pub fn count_query(&self, from: DateTime<Utc>, to: DateTime<Utc>, after: Option<&Cursor>) -> String {
        format!(
            "SELECT count() FROM {} WHERE {}{} FORMAT TSV",
            self.table_sql(),
            self.range(Some(from), Some(to)),
            after_clause(after)
        )
    }

    /// The teams that have events, the largest first (to name them when a team has none).
    pub fn teams(&mut self) -> Result<Vec<(i64, u64)>, ReadError> {
        let text = self.query(&format!(
            "SELECT team_id, count() FROM {} GROUP BY team_id ORDER BY count() DESC LIMIT 10 FORMAT TSV",
            self.table_sql()
        ))?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let (team, rows) = line.split_once('\t')?;
                Some((team.parse().ok()?, rows.parse().ok()?))
            })
            .collect())
    }

    fn post(&mut self, sql: &str) -> Result<ureq::Response, ReadError> {
        let answer = self
            .agent
            .post(&format!("{}/", self.url))
            .set("X-ClickHouse-User", &self.user)
            .set("X-ClickHouse-Key", &self.password)
            .send_string(sql);
        match answer {
            Ok(response) => {
                self.answered = true;
                Ok(response)
            }
            Err(ureq::Error::Status(status, response)) => {
                self.answered = true;
                let text = response.into_string().unwrap_or_default();
                Err(self.refused(status, &text))
            }
            Err(ureq::Error::Transport(transport)) if !self.answered => Err(ReadError::Fatal(format!(
                "ClickHouse at {} cannot be reached ({transport}); check --clickhouse-url",
                self.url
            ))),
            Err(ureq::Error::Transport(transport)) => Err(ReadError::Transient {
                message: format!("ClickHouse at {} did not answer ({transport})", self.url),
                retry_after_seconds: None,
            }),
        }
    }

    /// Runs `sql` (with its FORMAT) and hands back the answer's text.
    pub fn query(&mut self, sql: &str) -> Result<String, ReadError> {
        let mut text = String::new();
        self.post(sql)?.into_reader().read_to_string(&mut text).map_err(|e| ReadError::Transient {
            message: format!("reading ClickHouse's answer: {e}"),
            retry_after_seconds: None,
        })?;
        Ok(text)
    }

    fn refused(&self, status: u16, text: &str) -> ReadError {
        let said: String = text.trim().chars().take(300).collect();
        // ClickHouse's error codes: 516 authentication failed, 192 unknown user,
        // 60 unknown table, 81 unknown database.
        if text.contains("Code: 516") || text.contains("Code: 192") || status == 401 || status == 403 {
            ReadError::Fatal(format!(
                "ClickHouse refused the user or password (HTTP {status}: {said}); check --clickhouse-user and \
                 --clickhouse-password"
            ))
        } else if text.contains("Code: 60.") || text.contains("Code: 81.") {
            ReadError::Fatal(format!(
                "ClickHouse has no table {}.{} (HTTP {status}: {said}); check --clickhouse-database and \
                 --clickhouse-table",
                self.database, self.table
            ))
        } else if (400..500).contains(&status) || QUERY_ERRORS.iter().any(|code| text.contains(code)) {
            ReadError::Fatal(format!("ClickHouse refused the query (HTTP {status}: {said})"))
        } else {
            ReadError::Transient {
                message: format!("ClickHouse failed (HTTP {status}: {said})"),
                retry_after_seconds: None,
            }
        }
    }

    /// The first window whose end is after the cursor.
    fn window_of(&self, after: Option<&Cursor>) -> usize {
        let at = after.and_then(|c| migrator3000::timestamp::parse_iso(&c.timestamp));
        at.map_or(0, |at| self.windows.iter().position(|w| w.to > at).unwrap_or(self.windows.len()))
    }

    fn open(&mut self, window: usize, after: Option<&Cursor>) -> Result<(), ReadError> {
        let sql = self.window_query(&self.windows[window], after);
        let response = self.post(&sql)?;
        self.tally.started(&self.windows[window], after);
        let read_rows = response
            .header("x-clickhouse-summary")
            .and_then(|h| serde_json::from_str::<Value>(h).ok())
            .and_then(|summary| json_count(&summary["read_rows"]));
        if self.seen_window != Some(window) {
            self.seen.clear();
            self.seen_window = Some(window);
        }
        self.open = Some(Stream {
            window,
            reader: BufReader::with_capacity(1 << 20, Box::new(response.into_reader())),
            last: after.cloned(),
            handed: 0,
            read_rows,
        });
        Ok(())
    }

    /// The next row of the open window's answer into `row`; `None` at its end.
    fn row(&mut self, row: &mut [Vec<u8>; COLUMNS]) -> Result<Option<()>, ReadError> {
        let Some(stream) = self.open.as_mut() else { return Ok(None) };
        match read_row(&mut stream.reader, row) {
            Ok(Some(())) if plausible(row) => Ok(Some(())),
            Ok(None) => Ok(None),
            Ok(Some(())) => {
                self.open = None;
                let text = String::from_utf8_lossy(&row.concat()).into_owned();
                Err(ReadError::Transient {
                    message: format!(
                        "ClickHouse's answer is not the rows asked for: {:?}",
                        text.chars().take(200).collect::<String>()
                    ),
                    retry_after_seconds: None,
                })
            }
            Err(Broken::Exception(text)) => {
                self.open = None;
                Err(self.refused(500, &text))
            }
            Err(Broken::Io(e)) => {
                let window = stream.window;
                self.open = None;
                Err(ReadError::Transient {
                    message: format!(
                        "ClickHouse's answer for {} broke off ({e}); reading on from the last event",
                        self.windows[window].from.format("%Y-%m-%d %H:%M")
                    ),
                    retry_after_seconds: None,
                })
            }
        }
    }
}

/// How reading an answer's rows failed.
#[derive(Debug)]
enum Broken {
    /// ClickHouse met an error while answering and wrote it into the answer.
    Exception(String),
    Io(std::io::Error),
}

/// Reads one row of ClickHouse's RowBinary format, where each String column is its length
/// (LEB128) and its bytes: nothing is escaped, so nothing is unescaped. (In JSONEachRow
/// the properties column is a JSON string holding JSON, a backslash before each of its
/// quotes: undoing them cost a fifth of the command's CPU.) `None` at the end of the answer.
fn read_row(reader: &mut impl BufRead, row: &mut [Vec<u8>; COLUMNS]) -> Result<Option<()>, Broken> {
    let start = reader.fill_buf().map_err(Broken::Io)?;
    if start.is_empty() {
        return Ok(None);
    }
    if start.starts_with(b"Code: ") {
        let mut text = String::new();
        let _ = reader.read_to_string(&mut text);
        return Err(Broken::Exception(text));
    }
    for column in row.iter_mut() {
        let (mut length, mut shift) = (0u64, 0);
        loop {
            let mut byte = [0u8];
            reader.read_exact(&mut byte).map_err(Broken::Io)?;
            length |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(Broken::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, "a length over 64 bits")));
            }
        }
        column.clear();
        // Read through `take`, so that a wrong length cannot make us allocate it all at once.
        let read = reader.take(length).read_to_end(column).map_err(Broken::Io)?;
        if read as u64 != length {
            return Err(Broken::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    Ok(Some(()))
}

/// Whether a row read looks like the query's: a uuid's text and a timestamp's, so that an
/// answer that is not RowBinary (or is cut mid-row) is never taken for events.
fn plausible(row: &[Vec<u8>; COLUMNS]) -> bool {
    uuid_bits(&String::from_utf8_lossy(&row[0])).is_some()
        && std::str::from_utf8(&row[4]).is_ok_and(|ts| migrator3000::timestamp::parse_iso(ts).is_some())
}

/// A column's text; ClickHouse stores bytes, so text that is not UTF-8 is mended as the
/// JSON formats' readers would (U+FFFD).
fn text(column: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(column) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(column),
    }
}

/// `2021-06-01 12:00:00.123456` as RFC 3339 UTC.
pub fn rfc3339(clickhouse: &str) -> String {
    format!("{}Z", clickhouse.trim().replacen(' ', "T", 1))
}

/// A row as a captured PostHog event's JSON text, written straight from its columns: the
/// properties column is JSON text already and goes in as it is (text that is not a JSON
/// object goes in as a string, for the transform to refuse with a reason), and
/// `elements_chain` goes at the top, where the transform moves it into the properties
/// (as `$elements_chain`) unless they hold their own. Parsing the properties into a tree
/// and printing them again cost more than everything else the command does to an event.
pub fn event_of(
    uuid: &str,
    event: &str,
    distinct_id: &str,
    properties: &str,
    ts: &str,
    elements_chain: &str,
) -> String {
    // Whether it is an object is only glanced at: the transform reads it whole anyway, and
    // text that only looks like one (never seen in PostHog's column) makes the event text
    // not JSON, which the migration refuses with the byte where it breaks.
    let trimmed = properties.trim();
    let object = trimmed.starts_with('{') && trimmed.ends_with('}');
    let mut out = Vec::with_capacity(properties.len() + elements_chain.len() + 200);
    let fields = [("uuid", uuid), ("event", event), ("distinct_id", distinct_id), ("timestamp", &rfc3339(ts))];
    for (i, (key, value)) in fields.into_iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"{\"" } else { b",\"" });
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        json_string(&mut out, value);
    }
    if !elements_chain.is_empty() {
        out.extend_from_slice(b",\"elements_chain\":");
        json_string(&mut out, elements_chain);
    }
    out.extend_from_slice(b",\"properties\":");
    if object {
        out.extend_from_slice(properties.as_bytes());
    } else {
        json_string(&mut out, properties);
    }
    out.push(b'}');
    // Only whole strs went in.
    String::from_utf8(out).unwrap_or_default()
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(out, text);
}

impl Source for ClickHouse {
    fn select(&mut self, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<Option<Bounds>, ReadError> {
        let text = self.query(&self.days_query(from, to))?;
        let mut days = Vec::new();
        let mut bounds = Bounds { first: None, last: None, count: 0 };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let day: Day = serde_json::from_str(line)
                .map_err(|e| ReadError::Fatal(format!("ClickHouse answered the days with {line:?} ({e})")))?;
            let (Some(date), Some(rows)) = (migrator3000::timestamp::parse_date(&day.day), json_count(&day.rows))
            else {
                return Err(ReadError::Fatal(format!("ClickHouse answered the days with {line:?}")));
            };
            let (first, last) =
                (migrator3000::timestamp::parse_iso(&day.first), migrator3000::timestamp::parse_iso(&day.last));
            bounds.first = bounds.first.or(first);
            bounds.last = last.or(bounds.last);
            bounds.count += rows;
            days.push((date, rows));
        }
        self.windows = windows(&days, from, to, WINDOW_ROWS);
        (self.from, self.to) = (from, to);
        self.next_window = 0;
        self.open = None;
        self.tally.clear();
        Ok(Some(bounds))
    }

    fn next_page(&mut self, after: Option<&Cursor>, limit: usize) -> Result<Page, ReadError> {
        let mut page = Page::default();
        if self.open.as_ref().is_some_and(|s| s.last.as_ref() != after) {
            // Not where the answer being read stands (a page read again): start afresh.
            self.open = None;
        }
        if self.open.is_none() {
            self.next_window = self.window_of(after);
        }
        let mut last = after.cloned();
        let mut row: [Vec<u8>; COLUMNS] = Default::default();
        while page.events.len() < limit {
            if self.open.is_none() {
                if self.next_window >= self.windows.len() {
                    break;
                }
                self.open(self.next_window, last.as_ref())?;
            }
            let line = match self.row(&mut row) {
                Ok(line) => line,
                // What was read so far goes; the next page reads on from its last event.
                Err(_) if !page.events.is_empty() => break,
                Err(error) => return Err(error),
            };
            let Some(()) = line else {
                let stream = self.open.take().expect("a window is open");
                if self.debug {
                    let window = &self.windows[stream.window];
                    page.notes.push(format!(
                        "window {} to {}: {} events handed over, {} rows read by ClickHouse (its X-ClickHouse-Summary)",
                        migrator3000::timestamp::format(window.from),
                        migrator3000::timestamp::format(window.to),
                        stream.handed,
                        stream.read_rows.map_or("unknown".to_string(), |n| n.to_string())
                    ));
                }
                self.next_window = stream.window + 1;
                continue;
            };
            let [id, event, distinct_id, properties, ts, elements_chain] = row.each_ref().map(|c| text(c));
            let cursor = Cursor { timestamp: ts.to_string(), key: id.to_string() };
            let stream = self.open.as_mut().expect("a window is open");
            self.tally.add(&self.windows[stream.window], 1);
            stream.last = Some(cursor.clone());
            last = Some(cursor);
            if uuid_bits(&id).is_some_and(|bits| !self.seen.insert(bits)) {
                page.duplicates += 1;
                page.next = last.clone();
                continue;
            }
            stream.handed += 1;
            page.events.push(event_of(&id, &event, &distinct_id, &properties, &ts, &elements_chain));
            page.next = last.clone();
        }
        Ok(page)
    }

    fn describe(&self) -> String {
        format!("ClickHouse at {} ({}.{}, team {})", self.url, self.database, self.table, self.team_id)
    }

    fn unread(&mut self) -> Result<Vec<Unread>, ReadError> {
        self.recount_unread()
    }

    fn count(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Option<u64>, ReadError> {
        self.recount(from, to)
    }
}

impl Recount for ClickHouse {
    fn windows(&self) -> &[Window] {
        &self.windows
    }

    fn tally(&mut self) -> &mut Tally {
        &mut self.tally
    }

    fn count_rows(&mut self, from: DateTime<Utc>, to: DateTime<Utc>, after: Option<&Cursor>) -> Result<u64, ReadError> {
        let text = self.query(&self.count_query(from, to, after))?;
        text.trim().parse().map_err(|_| ReadError::Fatal(format!("ClickHouse answered a count with {:?}", text.trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use migrator3000::transform;

    fn at(text: &str) -> DateTime<Utc> {
        migrator3000::timestamp::parse_iso(text).unwrap()
    }

    #[test]
    fn a_window_query_reads_its_window_after_the_cursor_in_clickhouses_order() {
        let ch = ClickHouse::new("http://ch:8123/", "u", "p", "default", "events", 2);
        let window = Window { from: at("2021-06-01T00:00:00Z"), to: at("2021-06-02T00:00:00Z"), rows: 7 };
        let first = ch.window_query(&window, None);
        assert!(
            first.contains(
                "FROM `default`.`events` WHERE team_id = 2 AND timestamp >= toDateTime64('2021-06-01 00:00:00.000000', \
                 6, 'UTC') AND timestamp < toDateTime64('2021-06-02 00:00:00.000000', 6, 'UTC')"
            ),
            "{first}"
        );
        assert!(first.ends_with("ORDER BY timestamp, uuid FORMAT RowBinary"), "{first}");
        assert!(!first.contains("LIMIT") && !first.contains("count"));
        let cursor = Cursor { timestamp: "2021-06-01 10:00:00.123456".into(), key: "0000-x'".into() };
        let next = ch.window_query(&window, Some(&cursor));
        assert!(
            next.contains(
                "AND timestamp >= toDateTime64('2021-06-01 10:00:00.123456', 6, 'UTC') AND (timestamp, uuid) > \
                 (toDateTime64('2021-06-01 10:00:00.123456', 6, 'UTC'), toUUID('0000-x\\''))"
            ),
            "{next}"
        );
    }

    #[test]
    fn rows_become_captured_events_with_their_microseconds_and_elements_chain() {
        let text = event_of(
            "u1",
            "$autocapture",
            "d \"q\"",
            "{\"a\":1, \"b\": {\"c\": [\"é\"]}}",
            "2021-06-01 10:00:00.123456",
            "a:nth-child=\"1\"",
        );
        let e: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(e["timestamp"], "2021-06-01T10:00:00.123456Z");
        assert_eq!(e["distinct_id"], "d \"q\"");
        assert_eq!(e["properties"], serde_json::json!({"a": 1, "b": {"c": ["é"]}}));
        // The transform moves it into the properties, as capture keeps it.
        let sent = transform::transform(e, chrono::Utc::now()).unwrap();
        let sent: Value = serde_json::from_str(&sent.json).unwrap();
        assert_eq!(sent["properties"]["$elements_chain"], "a:nth-child=\"1\"");
        for broken in ["not json", "{\"a\":", "[1]", ""] {
            let e: Value = serde_json::from_str(&event_of("u", "e", "d", broken, "2021-06-01 10:00:00", "")).unwrap();
            assert_eq!(e["properties"], broken, "{broken}");
            assert!(e.get("elements_chain").is_none());
        }
        // Text that only looks like an object makes the event text not JSON: refused whole.
        let text = event_of("u", "e", "d", "{\"a\":}", "2021-06-01 10:00:00", "");
        assert!(migrator3000::scan::event(&text).is_err());
    }

    #[test]
    fn rowbinary_rows_are_read_column_by_column_and_a_cut_answer_is_said() {
        fn column(out: &mut Vec<u8>, bytes: &[u8]) {
            let mut n = bytes.len();
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                out.push(if n == 0 { byte } else { byte | 0x80 });
                if n == 0 {
                    break;
                }
            }
            out.extend_from_slice(bytes);
        }
        let long = format!("{{\"p\":\"{}\"}}", "x".repeat(300));
        let mut body = Vec::new();
        for row in
            [["u1", "e", "d", long.as_str(), "2021-06-01 00:00:00.000001", ""], ["u2", "ü", "", "{}", "t", "a:b"]]
        {
            for text in row {
                column(&mut body, text.as_bytes());
            }
        }
        let two_rows = body.len();
        let read_all = |bytes: &[u8]| {
            let mut reader = std::io::BufReader::new(bytes);
            let mut rows = Vec::new();
            let mut row: [Vec<u8>; COLUMNS] = Default::default();
            loop {
                match read_row(&mut reader, &mut row) {
                    Ok(Some(())) => rows.push(row.each_ref().map(|c| text(c).into_owned())),
                    Ok(None) => return Ok(rows),
                    Err(broken) => return Err((rows.len(), broken)),
                }
            }
        };
        let rows = read_all(&body).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][3], long);
        assert_eq!(rows[1], ["u2", "ü", "", "{}", "t", "a:b"]);
        // Cut mid-row, or mid-column: said, after the whole rows.
        column(&mut body, b"bad \xff byte");
        assert!(matches!(read_all(&body), Err((2, Broken::Io(_)))));
        let mut cut = body[..two_rows].to_vec();
        column(&mut cut, b"1234567890");
        cut.truncate(cut.len() - 3);
        assert!(matches!(read_all(&cut), Err((2, Broken::Io(_)))));
        // An error ClickHouse wrote into the answer, after some rows.
        let mut failed = body[..two_rows].to_vec();
        failed.extend_from_slice(b"Code: 241. DB::Exception: Memory limit exceeded");
        assert!(matches!(read_all(&failed), Err((2, Broken::Exception(t))) if t.contains("Memory limit")));
        assert_eq!(text(b"a\xffc"), "a\u{fffd}c");
        // Rows that are not the query's are never taken for events.
        let good = ["0180bd2b-0a4a-7b66-a79d-4bbe5ec8d4c8", "e", "d", "{}", "2021-06-01 00:00:00.000001", ""];
        assert!(plausible(&good.map(|c| c.as_bytes().to_vec())));
        let mut bad = good;
        bad[0] = "ode: 241. DB::Exception";
        assert!(!plausible(&bad.map(|c| c.as_bytes().to_vec())));
    }

    #[test]
    fn refusals_say_which_flag_to_fix() {
        let ch = ClickHouse::new("http://ch:8123", "u", "p", "default", "events", 2);
        let auth = ch.refused(516, "Code: 516. DB::Exception: default: Authentication failed");
        assert!(matches!(&auth, ReadError::Fatal(m) if m.contains("--clickhouse-password")), "{auth}");
        let table = ch.refused(404, "Code: 60. DB::Exception: Table default.events does not exist.");
        assert!(matches!(&table, ReadError::Fatal(m) if m.contains("--clickhouse-table")), "{table}");
        assert!(matches!(ch.refused(503, ""), ReadError::Transient { .. }));
    }

    #[test]
    fn uuids_are_read_as_their_bits() {
        assert_eq!(uuid_bits("00000000-0000-0000-0000-00000000000a"), Some(10));
        assert_eq!(uuid_bits("not a uuid"), None);
    }
}

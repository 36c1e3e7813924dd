//! The source PostHog's ClickHouse, read through its HTTP interface (what PostHog's own
//! migration script reads): one team's rows of `events` (or `sharded_events`), in
//! ClickHouse's own order of (timestamp, uuid). The cursor is compared in SQL, never in
//! Rust: ClickHouse orders UUIDs by their second 64-bit half first.

use std::borrow::Cow;

use migrator3000::scan;

use super::{Cursor, Page, Source, SourceError};

pub struct ClickHouse {
    pub url: String,
    pub user: String,
    pub password: String,
    pub database: String,
    pub table: String,
    pub team_id: u64,
    /// ClickHouse datetimes, UTC: `2021-06-01 00:00:00.000000`.
    pub from: String,
    pub to: String,
    agent: ureq::Agent,
    pages: u64,
}

/// The columns of a page query, in its order.
const COLUMNS: usize = 6;

/// The rows of an answer in ClickHouse's RowBinary format: each String column is its
/// length (LEB128) and its bytes. Nothing is escaped, so nothing is unescaped: reading
/// JSONEachRow spent more on undoing the escapes of 2 KB of properties (a backslash
/// before every quote) than the transform spends on the event. Each item is a row, or
/// the byte where the answer stops making sense.
struct RowBinary<'a> {
    answer: &'a [u8],
    rest: &'a [u8],
}

impl<'a> RowBinary<'a> {
    fn new(answer: &'a [u8]) -> RowBinary<'a> {
        RowBinary { answer, rest: answer }
    }
}

impl<'a> Iterator for RowBinary<'a> {
    type Item = Result<[Cow<'a, str>; COLUMNS], usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let mut row: [Cow<'a, str>; COLUMNS] = Default::default();
        for column in &mut row {
            match column_text(&mut self.rest) {
                Some(text) => *column = text,
                None => {
                    let at = self.answer.len() - self.rest.len();
                    self.rest = &[];
                    return Some(Err(at));
                }
            }
        }
        Some(Ok(row))
    }
}

/// One String column; ClickHouse stores bytes, so text that is not UTF-8 is mended as
/// the JSON formats' readers would (U+FFFD).
fn column_text<'a>(rest: &mut &'a [u8]) -> Option<Cow<'a, str>> {
    let (mut length, mut shift) = (0u64, 0);
    loop {
        let (&byte, tail) = rest.split_first()?;
        *rest = tail;
        length |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let length = usize::try_from(length).ok().filter(|&n| n <= rest.len())?;
    let (bytes, tail) = rest.split_at(length);
    *rest = tail;
    Some(String::from_utf8_lossy(bytes))
}

/// ClickHouse's errors about the query itself, which no retry mends: syntax, unknown
/// identifier, illegal or mismatched types, no common type.
const QUERY_ERRORS: [&str; 5] = ["Code: 62.", "Code: 47.", "Code: 43.", "Code: 53.", "Code: 386."];

/// The condition that starts a page after `cursor`: compared by the engine, in its own
/// order of (timestamp, uuid) (HogQL reads it the same).
pub fn after_clause(cursor: Option<&Cursor>) -> String {
    cursor.map_or(String::new(), |c| {
        format!(
            " AND (timestamp, uuid) > (toDateTime64({}, 6, 'UTC'), toUUID({}))",
            quoted(&c.timestamp),
            quoted(&c.key)
        )
    })
}

/// A string literal for ClickHouse SQL.
pub fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl ClickHouse {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        url: &str,
        user: &str,
        password: &str,
        database: &str,
        table: &str,
        team_id: u64,
        from: &str,
        to: &str,
    ) -> ClickHouse {
        ClickHouse {
            url: url.trim_end_matches('/').to_string(),
            user: user.into(),
            password: password.into(),
            database: database.into(),
            table: table.into(),
            team_id,
            from: from.into(),
            to: to.into(),
            agent: ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(300)).build(),
            pages: 0,
        }
    }

    fn range(&self) -> String {
        format!(
            "team_id = {} AND timestamp >= toDateTime64({}, 6, 'UTC') AND timestamp < toDateTime64({}, 6, 'UTC')",
            self.team_id,
            quoted(&self.from),
            quoted(&self.to)
        )
    }

    /// The page query: keyset pagination, no count per page.
    pub fn page_query(&self, after: Option<&Cursor>, limit: usize) -> String {
        let after = after_clause(after);
        format!(
            // Aliases other than the columns' names: ClickHouse lets an alias stand for the
            // column in WHERE and ORDER BY, which would compare and order uuids as text.
            "SELECT toString(uuid) AS id, event, distinct_id, properties, toString(timestamp) AS ts, elements_chain \
             FROM {}.{} WHERE {}{after} ORDER BY timestamp, uuid LIMIT {limit} FORMAT RowBinary",
            self.database,
            self.table,
            self.range()
        )
    }

    /// How many events the range holds (once, for the progress bar).
    pub fn count(&mut self) -> Result<u64, SourceError> {
        let text = self.query(&format!(
            "SELECT count() FROM {}.{} WHERE {} FORMAT TSV",
            self.database,
            self.table,
            self.range()
        ))?;
        text.trim().parse().map_err(|_| SourceError::Fatal(format!("ClickHouse answered the count with {text:?}")))
    }

    fn query(&mut self, sql: &str) -> Result<String, SourceError> {
        self.query_bytes(sql).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    fn query_bytes(&mut self, sql: &str) -> Result<Vec<u8>, SourceError> {
        let answer = self
            .agent
            .post(&format!("{}/", self.url))
            .set("X-ClickHouse-User", &self.user)
            .set("X-ClickHouse-Key", &self.password)
            .send_string(sql);
        match answer {
            Ok(response) => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).map_err(|e| {
                    SourceError::Transient {
                        message: format!("reading ClickHouse's answer: {e}"),
                        retry_after_seconds: None,
                    }
                })?;
                Ok(bytes)
            }
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                Err(self.refused(status, &text))
            }
            Err(ureq::Error::Transport(transport)) if self.pages == 0 => Err(SourceError::Fatal(format!(
                "ClickHouse at {} cannot be reached ({transport}); check --clickhouse-url",
                self.url
            ))),
            Err(ureq::Error::Transport(transport)) => Err(SourceError::Transient {
                message: format!("ClickHouse at {} did not answer ({transport})", self.url),
                retry_after_seconds: None,
            }),
        }
    }

    fn refused(&self, status: u16, text: &str) -> SourceError {
        let said: String = text.trim().chars().take(300).collect();
        // ClickHouse's error codes: 516 authentication failed, 192 unknown user,
        // 60 unknown table, 81 unknown database.
        if text.contains("Code: 516") || text.contains("Code: 192") || status == 401 || status == 403 {
            SourceError::Fatal(format!(
                "ClickHouse refused the user or password (HTTP {status}: {said}); check --clickhouse-user and \
                 --clickhouse-password"
            ))
        } else if text.contains("Code: 60.") || text.contains("Code: 81.") {
            SourceError::Fatal(format!(
                "ClickHouse has no table {}.{} (HTTP {status}: {said}); check --clickhouse-database and \
                 --clickhouse-table",
                self.database, self.table
            ))
        } else if (400..500).contains(&status) || QUERY_ERRORS.iter().any(|code| text.contains(code)) {
            SourceError::Fatal(format!("ClickHouse refused the query (HTTP {status}: {said})"))
        } else {
            SourceError::Transient {
                message: format!("ClickHouse failed (HTTP {status}: {said})"),
                retry_after_seconds: None,
            }
        }
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
    let object = matches!(scan::object(properties), Ok(Some(_)));
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
    fn next_page(&mut self, after: Option<&Cursor>, limit: usize) -> Result<Page, SourceError> {
        let body = self.query_bytes(&self.page_query(after, limit))?;
        self.pages += 1;
        let mut page = Page::default();
        let mut last = None;
        for row in RowBinary::new(&body) {
            let [id, event, distinct_id, properties, ts, elements_chain] =
                row.map_err(|at| SourceError::Transient {
                    message: format!("ClickHouse's answer was cut short or is not RowBinary (at byte {at})"),
                    retry_after_seconds: None,
                })?;
            page.events.push(event_of(&id, &event, &distinct_id, &properties, &ts, &elements_chain));
            last = Some((ts, id));
        }
        page.next = last.map(|(ts, id)| Cursor { timestamp: ts.into_owned(), key: id.into_owned() });
        Ok(page)
    }

    fn describe(&self) -> String {
        format!("ClickHouse at {} ({}.{}, team {})", self.url, self.database, self.table, self.team_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use migrator3000::transform;
    use serde_json::Value;

    #[test]
    fn the_page_query_pages_by_timestamp_then_uuid_in_clickhouse() {
        let ch = ClickHouse::new(
            "http://ch:8123/",
            "u",
            "p",
            "default",
            "events",
            2,
            "2021-06-01 00:00:00",
            "2021-07-01 00:00:00",
        );
        let first = ch.page_query(None, 7);
        assert!(first.contains(
            "FROM default.events WHERE team_id = 2 AND timestamp >= toDateTime64('2021-06-01 00:00:00', 6, 'UTC')"
        ));
        assert!(first.ends_with("ORDER BY timestamp, uuid LIMIT 7 FORMAT RowBinary"), "{first}");
        assert!(!first.contains("count"));
        let cursor = Cursor { timestamp: "2021-06-01 10:00:00.123456".into(), key: "0000-x'".into() };
        let next = ch.page_query(Some(&cursor), 7);
        assert!(
            next.contains(
                "AND (timestamp, uuid) > (toDateTime64('2021-06-01 10:00:00.123456', 6, 'UTC'), toUUID('0000-x\\''))"
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
        column(&mut body, b"bad \xff byte");
        let rows: Vec<_> = RowBinary::new(&body[..two_rows]).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].as_ref().unwrap()[3], long);
        assert_eq!(rows[1].as_ref().unwrap().each_ref().map(|c| c.as_ref()), ["u2", "ü", "", "{}", "t", "a:b"]);
        // A third row of one column, then nothing: cut short, said where.
        let rows: Vec<_> = RowBinary::new(&body).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2], Err(body.len()));
        let mut cut = body[..two_rows].to_vec();
        column(&mut cut, b"1234567890");
        cut.truncate(cut.len() - 3);
        assert_eq!(RowBinary::new(&cut).nth(2), Some(Err(two_rows + 1)));
        assert_eq!(column_text(&mut &b"\x03a\xffc"[..]).unwrap(), "a\u{fffd}c");
    }

    #[test]
    fn refusals_say_which_flag_to_fix() {
        let ch = ClickHouse::new("http://ch:8123", "u", "p", "default", "events", 2, "a", "b");
        let auth = ch.refused(516, "Code: 516. DB::Exception: default: Authentication failed");
        assert!(matches!(&auth, SourceError::Fatal(m) if m.contains("--clickhouse-password")), "{auth}");
        let table = ch.refused(404, "Code: 60. DB::Exception: Table default.events does not exist.");
        assert!(matches!(&table, SourceError::Fatal(m) if m.contains("--clickhouse-table")), "{table}");
        assert!(matches!(ch.refused(503, ""), SourceError::Transient { .. }));
    }
}

//! The source PostHog's ClickHouse, read through its HTTP interface (what PostHog's own
//! migration script reads): one team's rows of `events` (or `sharded_events`), in
//! ClickHouse's own order of (timestamp, uuid). The cursor is compared in SQL, never in
//! Rust: ClickHouse orders UUIDs by their second 64-bit half first.

use serde::Deserialize;
use serde_json::value::RawValue;

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

#[derive(Deserialize)]
struct Row {
    id: String,
    event: String,
    distinct_id: String,
    properties: String,
    ts: String,
    #[serde(default)]
    elements_chain: String,
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
             FROM {}.{} WHERE {}{after} ORDER BY timestamp, uuid LIMIT {limit} FORMAT JSONEachRow",
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
        let answer = self
            .agent
            .post(&format!("{}/", self.url))
            .set("X-ClickHouse-User", &self.user)
            .set("X-ClickHouse-Key", &self.password)
            .send_string(sql);
        match answer {
            Ok(response) => response.into_string().map_err(|e| SourceError::Transient {
                message: format!("reading ClickHouse's answer: {e}"),
                retry_after_seconds: None,
            }),
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
    let object = properties.trim_start().starts_with('{') && serde_json::from_str::<&RawValue>(properties).is_ok();
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
        let text = self.query(&self.page_query(after, limit))?;
        self.pages += 1;
        let mut page = Page::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let row: Row = serde_json::from_str(line).map_err(|e| {
                SourceError::Fatal(format!("ClickHouse returned a row that cannot be read ({e}): {line}"))
            })?;
            page.events.push(event_of(
                &row.id,
                &row.event,
                &row.distinct_id,
                &row.properties,
                &row.ts,
                &row.elements_chain,
            ));
            page.next = Some(Cursor { timestamp: row.ts, key: row.id });
        }
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
        assert!(first.ends_with("ORDER BY timestamp, uuid LIMIT 7 FORMAT JSONEachRow"), "{first}");
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
    fn refusals_say_which_flag_to_fix() {
        let ch = ClickHouse::new("http://ch:8123", "u", "p", "default", "events", 2, "a", "b");
        let auth = ch.refused(516, "Code: 516. DB::Exception: default: Authentication failed");
        assert!(matches!(&auth, SourceError::Fatal(m) if m.contains("--clickhouse-password")), "{auth}");
        let table = ch.refused(404, "Code: 60. DB::Exception: Table default.events does not exist.");
        assert!(matches!(&table, SourceError::Fatal(m) if m.contains("--clickhouse-table")), "{table}");
        assert!(matches!(ch.refused(503, ""), SourceError::Transient { .. }));
    }
}

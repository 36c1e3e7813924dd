//! The source PostHog's Query API, for instances whose ClickHouse is not reachable (a
//! hobby deploy publishes no ClickHouse port): `POST /api/projects/:id/query/` with a
//! HogQL query and a personal API key with the Query Read permission. PostHog's docs
//! ("API queries"): the body is `{"query": {"kind": "HogQLQuery", "query": ...}}`, the
//! answer `{"results": [[...]], "columns": [...]}`, up to 50,000 rows with an explicit
//! LIMIT; HogQL queries are rate limited (429).

use serde::Deserialize;
use serde_json::{json, Value};

use super::clickhouse::{after_clause, event_of, quoted};
use super::{Cursor, Page, Source, SourceError};

/// PostHog's cap on rows a query returns.
pub const MOST_ROWS: usize = 50_000;

pub struct QueryApi {
    pub host: String,
    pub project_id: u64,
    key: String,
    /// UTC datetimes, `2021-06-01 00:00:00.000000`.
    pub from: String,
    pub to: String,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct Answer {
    results: Vec<Vec<Value>>,
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        // HogQL may hand `properties` back as an object rather than its text.
        other => other.to_string(),
    }
}

impl QueryApi {
    pub fn new(host: &str, project_id: u64, key: &str, from: &str, to: &str) -> QueryApi {
        QueryApi {
            host: host.trim_end_matches('/').to_string(),
            project_id,
            key: key.to_string(),
            from: from.into(),
            to: to.into(),
            agent: ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(600)).build(),
        }
    }

    /// The HogQL of a page: keyset pagination on (timestamp, uuid) compared by the
    /// engine itself, timestamps as UTC text with their microseconds.
    pub fn page_query(&self, after: Option<&Cursor>, limit: usize) -> String {
        let after = after_clause(after);
        format!(
            "SELECT toString(uuid), event, distinct_id, properties, toString(toTimeZone(timestamp, 'UTC')), \
             elements_chain FROM events WHERE timestamp >= toDateTime64({}, 6, 'UTC') AND timestamp < \
             toDateTime64({}, 6, 'UTC'){after} ORDER BY timestamp, uuid LIMIT {}",
            quoted(&self.from),
            quoted(&self.to),
            limit.min(MOST_ROWS)
        )
    }

    fn refused(&self, status: u16, retry_after: Option<u64>, text: &str) -> SourceError {
        let said: String = text.trim().chars().take(300).collect();
        match status {
            401 | 403 => SourceError::Fatal(format!(
                "the Query API refused the personal API key (HTTP {status}: {said}); check --personal-api-key (it \
                 needs the Query Read permission) and --project-id"
            )),
            404 => SourceError::Fatal(format!(
                "the Query API of {} has no project {} (HTTP 404); check --query-api-host and --project-id",
                self.host, self.project_id
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
}

impl Source for QueryApi {
    fn next_page(&mut self, after: Option<&Cursor>, limit: usize) -> Result<Page, SourceError> {
        let body = json!({"query": {"kind": "HogQLQuery", "query": self.page_query(after, limit)}});
        let url = format!("{}/api/projects/{}/query/", self.host, self.project_id);
        let answer = self
            .agent
            .post(&url)
            .set("Authorization", &format!("Bearer {}", self.key))
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
        let text = match answer {
            Ok(response) => response.into_string().map_err(|e| SourceError::Transient {
                message: format!("reading the Query API's answer: {e}"),
                retry_after_seconds: None,
            })?,
            Err(ureq::Error::Status(status, response)) => {
                let retry_after = response.header("retry-after").and_then(|h| h.trim().parse().ok());
                return Err(self.refused(status, retry_after, &response.into_string().unwrap_or_default()));
            }
            Err(ureq::Error::Transport(transport)) => {
                return Err(SourceError::Transient {
                    message: format!("the Query API at {} did not answer ({transport})", self.host),
                    retry_after_seconds: None,
                })
            }
        };
        let answer: Answer = serde_json::from_str(&text).map_err(|_| SourceError::Transient {
            message: format!(
                "the Query API answered something that is not a query result: {}",
                text.chars().take(200).collect::<String>()
            ),
            retry_after_seconds: None,
        })?;
        let mut page = Page::default();
        for row in answer.results {
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
            page.next = Some(Cursor { timestamp: at, key: id });
        }
        Ok(page)
    }

    fn describe(&self) -> String {
        format!("the Query API of {} (project {})", self.host, self.project_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_pages_in_the_engines_order_and_caps_the_rows() {
        let api = QueryApi::new("https://ph.example.com/", 7, "phx_k", "2021-06-01 00:00:00", "2021-07-01 00:00:00");
        let q = api.page_query(Some(&Cursor { timestamp: "2021-06-02 00:00:00.5".into(), key: "u".into() }), 100_000);
        assert!(
            q.contains("(timestamp, uuid) > (toDateTime64('2021-06-02 00:00:00.5', 6, 'UTC'), toUUID('u'))"),
            "{q}"
        );
        assert!(q.ends_with("ORDER BY timestamp, uuid LIMIT 50000"), "{q}");
        assert_eq!(api.host, "https://ph.example.com");
    }

    #[test]
    fn refusals_name_what_to_fix_and_rate_limits_wait() {
        let api = QueryApi::new("https://ph", 7, "k", "a", "b");
        assert!(matches!(api.refused(401, None, ""), SourceError::Fatal(m) if m.contains("--personal-api-key")));
        assert!(matches!(api.refused(429, Some(30), ""), SourceError::Transient { retry_after_seconds: Some(30), .. }));
        assert!(matches!(api.refused(502, None, "<html>"), SourceError::Transient { .. }));
    }
}

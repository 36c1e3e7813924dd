//! HogQL through a PostHog's Query API, as PostHog runs it (posthog/api/query.py,
//! posthog/rate_limit.py, posthog/hogql/constants.py): `POST /api/projects/:id/query/`
//! with a personal API key; at most 120 HogQL queries an hour per key
//! (`HogQLQueryThrottle`, 429 past it); at most 50,000 rows a query, and 100 when the
//! query has no LIMIT; a query that runs out of time or memory answers 504; a query
//! still running answers 202 with `query_status`, to be polled at
//! `GET /api/projects/:id/query/:query_id`, never sent again.

use std::collections::VecDeque;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// `HogQLQueryThrottle`'s rate.
pub const QUERIES_PER_HOUR: usize = 120;

/// The flags a user sets for one Query API, to name in messages.
pub struct Flags {
    pub host: &'static str,
    pub project: &'static str,
    pub key: &'static str,
}

pub const DESTINATION_FLAGS: Flags = Flags {
    host: "--destination-query-api-host",
    project: "--destination-project-id",
    key: "--destination-personal-api-key",
};

pub const SOURCE_FLAGS: Flags = Flags { host: "--query-api-host", project: "--project-id", key: "--personal-api-key" };

/// Why a query gave no rows.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The query ran out of time or memory (504): a smaller window may pass.
    TooBig(String),
    /// Nothing a retry mends: the message says what to fix.
    Fatal(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::TooBig(m) | Failure::Fatal(m) => f.write_str(m),
        }
    }
}

/// The queries of the last hour: the next one waits until it fits in the budget.
#[derive(Debug, Default)]
pub struct Budget {
    per_hour: usize,
    sent: VecDeque<Instant>,
}

impl Budget {
    pub fn new(per_hour: usize) -> Budget {
        Budget { per_hour: per_hour.max(1), sent: VecDeque::new() }
    }

    /// How long the next query must wait at `now` (zero when it fits).
    pub fn wait(&mut self, now: Instant) -> Duration {
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= HOUR) {
            self.sent.pop_front();
        }
        match self.sent.front() {
            Some(oldest) if self.sent.len() >= self.per_hour => HOUR - now.duration_since(*oldest),
            _ => Duration::ZERO,
        }
    }

    pub fn spent(&mut self, at: Instant) {
        self.sent.push_back(at);
    }
}

const HOUR: Duration = Duration::from_secs(3600);
/// 5xx answers and dropped connections are tried this often before the run gives up.
const ATTEMPTS: u32 = 6;
/// A query still running is polled this long at most.
const POLL_FOR: Duration = Duration::from_secs(900);

pub struct HogQl {
    host: String,
    project_id: u64,
    key: String,
    flags: &'static Flags,
    agent: ureq::Agent,
    budget: Budget,
    /// Queries sent (each counts against the hourly budget).
    pub queries: u64,
    /// Multiplies every wait (tests make them short).
    pub wait_scale: f64,
}

/// ClickHouse's words for a query over its time or memory, which PostHog may pass on
/// with a 400 rather than a 504.
const TOO_BIG_WORDS: [&str; 5] =
    ["TIMEOUT_EXCEEDED", "TOO_SLOW", "MEMORY_LIMIT_EXCEEDED", "Timeout exceeded", "Estimated query execution time"];

impl HogQl {
    pub fn new(host: &str, project_id: u64, key: &str, flags: &'static Flags) -> HogQl {
        let host = host.trim().trim_end_matches('/');
        let host = if host.contains("://") { host.to_string() } else { format!("https://{host}") };
        HogQl {
            host,
            project_id,
            key: key.to_string(),
            flags,
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(600)).build(),
            budget: Budget::new(QUERIES_PER_HOUR),
            queries: 0,
            wait_scale: 1.0,
        }
    }

    pub fn describe(&self) -> String {
        format!("the Query API of {} (project {})", self.host, self.project_id)
    }

    fn sleep(&self, wait: Duration) {
        thread::sleep(wait.mul_f64(self.wait_scale.max(0.0)));
    }

    /// The rows of a HogQL query, each a list of values in the order of its columns.
    pub fn rows(&mut self, query: &str) -> Result<Vec<Vec<Value>>, Failure> {
        let url = format!("{}/api/projects/{}/query/", self.host, self.project_id);
        let body = json!({"query": {"kind": "HogQLQuery", "query": query}}).to_string();
        let mut attempt = 0;
        loop {
            let wait = self.budget.wait(Instant::now());
            if !wait.is_zero() {
                eprintln!(
                    "{} queries to {} in the last hour, PostHog's limit: the next waits {} s.",
                    QUERIES_PER_HOUR,
                    self.host,
                    wait.as_secs()
                );
                self.sleep(wait);
            }
            self.budget.spent(Instant::now());
            self.queries += 1;
            attempt += 1;
            let answer = self
                .agent
                .post(&url)
                .set("Authorization", &format!("Bearer {}", self.key))
                .set("Content-Type", "application/json")
                .send_string(&body);
            let (status, retry_after, text) = match answer {
                Ok(response) => {
                    let status = response.status();
                    (status, None, response.into_string().unwrap_or_default())
                }
                Err(ureq::Error::Status(status, response)) => {
                    let retry_after = response.header("retry-after").and_then(|h| h.trim().parse::<u64>().ok());
                    (status, retry_after, response.into_string().unwrap_or_default())
                }
                Err(ureq::Error::Transport(transport)) if attempt < ATTEMPTS => {
                    eprintln!("The Query API at {} did not answer ({transport}); asking again.", self.host);
                    self.sleep(Duration::from_secs(1 << attempt));
                    continue;
                }
                Err(ureq::Error::Transport(transport)) => {
                    return Err(Failure::Fatal(format!(
                        "the Query API at {} did not answer ({transport}); check {}",
                        self.host, self.flags.host
                    )))
                }
            };
            match status {
                200 | 202 => return self.finished(status, &text),
                429 if attempt < ATTEMPTS * 4 => {
                    let wait = retry_after.unwrap_or(60).min(3600);
                    eprintln!("The Query API of {} is rate limited (HTTP 429): asking again in {wait} s.", self.host);
                    self.sleep(Duration::from_secs(wait));
                }
                500..=599 if !is_too_big(status, &text) && attempt < ATTEMPTS => {
                    self.sleep(Duration::from_secs(1 << attempt));
                }
                _ => return Err(self.refused(status, &text)),
            }
        }
    }

    /// A 200 holds the rows; a 202 (or a 200 whose query is not complete) is polled.
    fn finished(&mut self, status: u16, text: &str) -> Result<Vec<Vec<Value>>, Failure> {
        let answer: Value = serde_json::from_str(text).map_err(|_| {
            Failure::Fatal(format!(
                "the Query API answered something that is not a query result: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        let running = answer["query_status"]["complete"] == Value::Bool(false);
        if status == 202 || running {
            let id = answer["query_status"]["id"].as_str().unwrap_or_default().to_string();
            return self.poll(&id);
        }
        results_of(&answer)
    }

    fn poll(&mut self, id: &str) -> Result<Vec<Vec<Value>>, Failure> {
        if id.is_empty() {
            return Err(Failure::Fatal("the Query API said the query is running but gave no id to follow".into()));
        }
        let url = format!("{}/api/projects/{}/query/{id}/", self.host, self.project_id);
        let started = Instant::now();
        let mut wait = Duration::from_millis(500);
        while started.elapsed() < POLL_FOR.mul_f64(self.wait_scale.max(0.001)) {
            self.sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(10));
            let answer = self.agent.get(&url).set("Authorization", &format!("Bearer {}", self.key)).call();
            let (status, text) = match answer {
                Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
                Err(ureq::Error::Status(status, r)) => (status, r.into_string().unwrap_or_default()),
                Err(ureq::Error::Transport(_)) => continue,
            };
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let query_status = &body["query_status"];
            match status {
                200 if query_status["complete"] == Value::Bool(true) => return results_of(&query_status["results"]),
                202 | 200 => continue,
                _ => {
                    let said = query_status["error_message"].as_str().unwrap_or(&text).to_string();
                    return Err(self.refused(status, &said));
                }
            }
        }
        Err(Failure::TooBig(format!("the query was still running after {} s", POLL_FOR.as_secs())))
    }

    fn refused(&self, status: u16, text: &str) -> Failure {
        let said: String = text.trim().chars().take(300).collect();
        if is_too_big(status, text) {
            return Failure::TooBig(format!("the Query API ran out of time or memory (HTTP {status})"));
        }
        Failure::Fatal(match status {
            401 | 403 => format!(
                "the Query API of {} refused the personal API key (HTTP {status}: {said}); check {} (it needs the \
                 Query Read permission) and {}",
                self.host, self.flags.key, self.flags.project
            ),
            404 => format!(
                "the Query API of {} has no project {} (HTTP 404); check {} and {}",
                self.host, self.project_id, self.flags.host, self.flags.project
            ),
            429 => format!("the Query API of {} kept refusing queries as rate limited (HTTP 429)", self.host),
            _ => format!("the Query API of {} refused the query (HTTP {status}: {said})", self.host),
        })
    }
}

fn is_too_big(status: u16, text: &str) -> bool {
    // 504: PostHog's answer to a query over its time or memory; 524: a proxy's timeout.
    matches!(status, 504 | 512 | 524) || (status == 400 && TOO_BIG_WORDS.iter().any(|w| text.contains(w)))
}

/// The rows of a query response (`{"results": [[...]], "columns": [...]}`).
fn results_of(answer: &Value) -> Result<Vec<Vec<Value>>, Failure> {
    let rows = answer["results"].as_array().ok_or_else(|| {
        Failure::Fatal(format!(
            "the Query API's answer has no results: {}",
            answer.to_string().chars().take(200).collect::<String>()
        ))
    })?;
    Ok(rows.iter().map(|row| row.as_array().cloned().unwrap_or_default()).collect())
}

/// A cell as a number (HogQL answers numbers; some proxies quote 64-bit ones).
pub fn number(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_u64().map(|n| n as i64)).or_else(|| value.as_str()?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_holds_the_121st_query_of_an_hour_until_the_first_is_an_hour_old() {
        let mut budget = Budget::new(QUERIES_PER_HOUR);
        let start = Instant::now();
        for i in 0..QUERIES_PER_HOUR {
            let at = start + Duration::from_secs(i as u64);
            assert_eq!(budget.wait(at), Duration::ZERO, "query {i}");
            budget.spent(at);
        }
        let next = start + Duration::from_secs(200);
        assert_eq!(budget.wait(next), Duration::from_secs(3400));
        assert_eq!(budget.wait(start + HOUR), Duration::ZERO);
    }

    #[test]
    fn timeouts_and_memory_are_too_big_and_the_rest_names_its_flag() {
        let api = HogQl::new("us.posthog.com", 3, "phx_k", &DESTINATION_FLAGS);
        assert!(api.describe().contains("https://us.posthog.com"));
        assert!(matches!(api.refused(504, ""), Failure::TooBig(_)));
        assert!(matches!(api.refused(400, "Code: 241. MEMORY_LIMIT_EXCEEDED"), Failure::TooBig(_)));
        let key = api.refused(403, "{\"detail\":\"no scope\"}");
        assert!(matches!(&key, Failure::Fatal(m) if m.contains("--destination-personal-api-key")), "{key}");
        let project = api.refused(404, "");
        assert!(matches!(&project, Failure::Fatal(m) if m.contains("--destination-project-id")), "{project}");
    }

    #[test]
    fn results_and_numbers_are_read_as_posthog_and_proxies_give_them() {
        let rows = results_of(&json!({"results": [["2021-06-01", 3, "4"]], "columns": ["d", "n", "e"]})).unwrap();
        assert_eq!(number(&rows[0][1]), Some(3));
        assert_eq!(number(&rows[0][2]), Some(4));
        assert!(matches!(results_of(&json!({"detail": "x"})), Err(Failure::Fatal(_))));
    }
}

//! One client for a PostHog's Query API, as PostHog runs it (posthog/api/query.py):
//! `POST /api/projects/:id/query/` with a HogQL query and a personal API key with the
//! Query Read permission; the answer is `{"results": [[...]], "columns": [...]}`, up to
//! 50,000 rows with an explicit LIMIT; a query still running answers 202 with
//! `query_status`, polled at `GET /api/projects/:id/query/:query_id/`; HogQL queries are
//! throttled to 120 an hour per key (`HogQLQueryThrottle`, 429 with Retry-After beyond);
//! a query that runs too long answers 504, one estimated too expensive 512 (`TooMuch`:
//! the caller asks for less). Used by the Query API source and by `verify`. Its REST
//! part (`rest.rs`: lists, creates and updates of a project's objects) goes through the
//! same agent, first contact and answer reading.

use std::collections::VecDeque;
use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::shared::defaults::{FIRST_CONTACT_TRIES, QUERIES_PER_HOUR};
use crate::shared::reporter::note;
use crate::shared::retry::{ReadError, RetryPolicy};

/// Polls of a query still running, a second apart at first.
const POLL_FOR: Duration = Duration::from_secs(1800);

/// The flags a user sets for one Query API, to name in refusals.
pub struct Flags {
    pub host: &'static str,
    pub project: &'static str,
    pub key: &'static str,
}

pub const SOURCE_FLAGS: Flags = Flags { host: "--query-api-host", project: "--project-id", key: "--personal-api-key" };

pub const DESTINATION_FLAGS: Flags = Flags {
    host: "--destination-query-api-host",
    project: "--destination-project-id",
    key: "--destination-personal-api-key",
};

pub struct QueryApiClient {
    pub host: String,
    pub project_id: u64,
    /// The flags named when the API refuses the key or the project.
    pub flags: &'static Flags,
    pub(super) key: String,
    pub(super) agent: ureq::Agent,
    /// How answers and failures name this API ("the Query API", "the PostHog API").
    pub(super) what: &'static str,
    /// At most this many queries in any hour (PostHog's throttle).
    pub per_hour: usize,
    sent: VecDeque<Instant>,
    /// Queries sent (each counts against the hourly budget).
    pub queries: u64,
    /// Whether the API ever answered (any status): until it has, a request without an
    /// answer is a wrong address more likely than an API down a while.
    pub(super) answered: bool,
    /// Scales the waits between the first tries (tests make them short).
    pub retry: RetryPolicy,
    /// REST: the URL form (`projects` or `environments`) each kind answered under.
    pub(super) forms: std::collections::HashMap<String, &'static str>,
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    results: Vec<&'a RawValue>,
}
/// What came of one query.
pub enum Reply {
    Done(String),
    /// 504 or 512: the query was too much for the source.
    TooMuch(u16, String),
}
impl QueryApiClient {
    pub fn new(host: &str, project_id: u64, key: &str) -> QueryApiClient {
        QueryApiClient {
            host: host.trim_end_matches('/').to_string(),
            project_id,
            key: key.to_string(),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(30))
                .timeout_read(Duration::from_secs(900))
                .build(),
            flags: &SOURCE_FLAGS,
            what: "the Query API",
            per_hour: QUERIES_PER_HOUR,
            sent: VecDeque::new(),
            queries: 0,
            answered: false,
            retry: RetryPolicy::default(),
            forms: Default::default(),
        }
    }

    pub fn describe(&self) -> String {
        format!("the Query API of {} (project {})", self.host, self.project_id)
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
                note!(
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

    fn refused(&self, status: u16, retry_after: Option<u64>, text: &str) -> ReadError {
        let said: String = text.trim().chars().take(300).collect();
        match status {
            401 | 403 => ReadError::Fatal(format!(
                "the Query API refused the personal API key (HTTP {status}: {said}); check {} (it needs the Query \
                 Read permission) and {}",
                self.flags.key, self.flags.project
            )),
            404 => ReadError::Fatal(format!(
                "the Query API of {} has no project {} (HTTP 404); check {} and {}",
                self.host, self.project_id, self.flags.host, self.flags.project
            )),
            429 => ReadError::Transient {
                message: format!("the Query API is rate limited (HTTP 429 {said})"),
                retry_after_seconds: retry_after.or(Some(60)),
            },
            400..=499 => ReadError::Fatal(format!("the Query API refused the query (HTTP {status}: {said})")),
            _ => ReadError::Transient {
                message: format!("the Query API failed (HTTP {status}: {said})"),
                retry_after_seconds: retry_after,
            },
        }
    }

    /// An answer's status and text, whatever its status.
    pub(super) fn read(
        &self,
        answer: Result<ureq::Response, ureq::Error>,
    ) -> Result<(u16, Option<u64>, String), ReadError> {
        let response = match answer {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(transport)) => {
                return Err(ReadError::Transient {
                    message: format!("{} at {} did not answer ({transport})", self.what, self.host),
                    retry_after_seconds: None,
                })
            }
        };
        let status = response.status();
        let retry_after = response.header("retry-after").and_then(|h| h.trim().parse().ok());
        let mut text = String::new();
        // Read whole, whatever its size: a page of 50,000 events is some 100 MB.
        response.into_reader().read_to_string(&mut text).map_err(|e| ReadError::Transient {
            message: format!("reading the answer of {}: {e}", self.what),
            retry_after_seconds: None,
        })?;
        Ok((status, retry_after, text))
    }

    /// Sends a request (`send`) and reads its answer; while the API never answered, one
    /// without an answer is tried again a few times, a second more apart each, then named
    /// as out of reach by its flag, as the destination is.
    pub(super) fn first_contact(
        &mut self,
        send: impl Fn(&ureq::Agent) -> Result<ureq::Response, Box<ureq::Error>>,
    ) -> Result<(u16, Option<u64>, String), ReadError> {
        let unanswered = |answer: &Result<ureq::Response, Box<ureq::Error>>| matches!(answer, Err(error) if matches!(**error, ureq::Error::Transport(_)));
        let mut answer = send(&self.agent);
        let mut tries = 1;
        while !self.answered && tries < FIRST_CONTACT_TRIES && unanswered(&answer) {
            thread::sleep(Duration::from_secs_f64(tries as f64 * self.retry.scale.clamp(0.0, 1.0)));
            answer = send(&self.agent);
            tries += 1;
        }
        if unanswered(&answer) && !self.answered {
            let cause = answer.err().map_or(String::new(), |e| e.to_string());
            return Err(ReadError::Fatal(format!(
                "{} at {} cannot be reached ({cause}); check {} (the PostHog's address, e.g. \
                 https://posthog.example.com) and that this machine reaches it",
                self.what, self.host, self.flags.host
            )));
        }
        self.answered |= !unanswered(&answer);
        self.read(answer.map_err(|e| *e))
    }

    /// Runs one HogQL query, following a 202 to its end.
    pub fn run(&mut self, hogql: &str) -> Result<Reply, ReadError> {
        self.budget();
        self.queries += 1;
        let body = json!({"query": {"kind": "HogQLQuery", "query": hogql}}).to_string();
        let url = format!("{}/api/projects/{}/query/", self.host, self.project_id);
        let authorization = format!("Bearer {}", self.key);
        let (mut status, mut retry_after, mut text) = self.first_contact(|agent| {
            agent
                .post(&url)
                .set("Authorization", &authorization)
                .set("Content-Type", "application/json")
                .send_string(&body)
                .map_err(Box::new)
        })?;
        let started = Instant::now();
        let mut wait = Duration::from_secs(1);
        while status == 202 {
            let status_of: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let Some(id) = status_of["query_status"]["id"].as_str().map(str::to_string) else {
                return Err(ReadError::Transient {
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
    pub fn rows(text: &str) -> Result<Vec<Vec<Value>>, ReadError> {
        let answer: Answer = serde_json::from_str(text).map_err(|_| ReadError::Transient {
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
                    .map_err(|e| ReadError::Fatal(format!("the Query API returned a row that is not a list ({e})")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_what_to_fix_and_rate_limits_wait() {
        let api = QueryApiClient::new("https://ph", 7, "k");
        assert!(matches!(api.refused(401, None, ""), ReadError::Fatal(m) if m.contains("--personal-api-key")));
        assert!(matches!(api.refused(429, Some(30), ""), ReadError::Transient { retry_after_seconds: Some(30), .. }));
        assert!(matches!(api.refused(502, None, "<html>"), ReadError::Transient { .. }));
    }
}

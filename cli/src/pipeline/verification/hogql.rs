//! HogQL through a PostHog's Query API for verify, with the `posthog` command's own client
//! (source/query_api.rs: the hourly budget of 120 queries per key, a 202 polled to its
//! end, 504 and 512 told apart): a query's rows, or why there are none, in verify's terms.

use std::cell::Cell;

use serde_json::Value;

use crate::migrate;
use crate::source::query_api::{Flags, QueryApi, Reply};

pub use crate::source::query_api::QUERIES_PER_HOUR;

pub const DESTINATION_FLAGS: Flags = Flags {
    host: "--destination-query-api-host",
    project: "--destination-project-id",
    key: "--destination-personal-api-key",
};

/// Why a query gave no rows.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The query ran out of time or memory (504, 512): a smaller window may pass.
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

pub struct HogQl {
    pub api: QueryApi,
    /// Queries sent (each counts against the hourly budget).
    pub queries: u64,
    /// Multiplies every wait before asking again (tests make them short).
    pub retry_scale: f64,
}

impl HogQl {
    pub fn new(api: QueryApi, retry_scale: f64) -> HogQl {
        HogQl { api, queries: 0, retry_scale }
    }

    pub fn describe(&self) -> String {
        format!("the Query API of {} (project {})", self.api.host, self.api.project_id)
    }

    /// The rows of a HogQL query, each a list of values in the order of its columns; a
    /// rate limit or a failure for a while is waited out.
    pub fn rows(&mut self, query: &str) -> Result<Vec<Vec<Value>>, Failure> {
        let sent = Cell::new(0);
        let api = &mut self.api;
        let answer = migrate::patiently(
            || {
                sent.set(sent.get() + 1);
                api.run(query)
            },
            self.retry_scale,
            |note| eprintln!("{note}"),
        );
        self.queries += sent.get();
        match answer.map_err(Failure::Fatal)? {
            Reply::Done(text) => QueryApi::rows(&text).map_err(|e| Failure::Fatal(e.to_string())),
            Reply::TooMuch(status, _) => {
                Err(Failure::TooBig(format!("the Query API ran out of time or memory (HTTP {status})")))
            }
        }
    }
}

/// A cell as a number (HogQL answers numbers; some proxies quote 64-bit ones).
pub fn number(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_u64().map(|n| n as i64)).or_else(|| value.as_str()?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_read_as_posthog_and_proxies_give_them() {
        assert_eq!(number(&json!(3)), Some(3));
        assert_eq!(number(&json!("4")), Some(4));
        assert_eq!(number(&json!(null)), None);
    }
}

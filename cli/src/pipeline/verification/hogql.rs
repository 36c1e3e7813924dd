//! HogQL through the one Query API client for verify: a query's rows, or why there
//! are none, in verify's terms; a rate limit or a failure for a while is waited out by
//! the one retry policy.

use serde_json::Value;

use crate::posthog_api::client::{QueryApiClient, Reply};
use crate::shared::retry::{GaveUp, RetryPolicy};

/// Why a side gave no answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SideError {
    /// The query ran out of time or memory (504, 512): a smaller window may pass.
    #[error("{0}")]
    TooBig(String),
    /// Nothing a retry mends: the message says what to fix.
    #[error("{0}")]
    Fatal(String),
}

impl From<GaveUp> for SideError {
    fn from(gave_up: GaveUp) -> SideError {
        SideError::Fatal(gave_up.to_string())
    }
}

pub struct HogQl {
    pub client: QueryApiClient,
    pub retry: RetryPolicy,
}

impl HogQl {
    pub fn new(mut client: QueryApiClient, retry: RetryPolicy) -> HogQl {
        client.retry = retry;
        HogQl { client, retry }
    }

    pub fn describe(&self) -> String {
        self.client.describe()
    }

    /// Queries sent (each counts against the hourly budget).
    pub fn queries(&self) -> u64 {
        self.client.queries
    }

    /// The rows of a HogQL query, each a list of values in the order of its columns.
    pub fn rows(&mut self, query: &str) -> Result<Vec<Vec<Value>>, SideError> {
        let client = &mut self.client;
        match self.retry.read(|| client.run(query))? {
            Reply::Done(text) => QueryApiClient::rows(&text).map_err(|e| SideError::Fatal(e.to_string())),
            Reply::TooMuch(status, _) => {
                Err(SideError::TooBig(format!("the Query API ran out of time or memory (HTTP {status})")))
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

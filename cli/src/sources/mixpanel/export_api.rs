//! Mixpanel's raw event export API: `GET /api/2.0/export?project_id=&from_date=&to_date=`
//! with a service account (basic auth), answering JSON lines. Both dates are included,
//! so a day is asked for as `from_date = to_date = that day`: no day comes twice. Each
//! day is a unit. Mixpanel allows 60 queries an hour and 3 a second per project: the
//! requests are paced below both, and a 429 is waited out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use super::{Bytes, Feed, Kind, Unit};
use crate::shared::retry::ReadError;

/// The export's host for each of Mixpanel's data residency regions.
pub fn host(region: &str) -> Option<&'static str> {
    match region {
        "us" => Some("https://data.mixpanel.com"),
        "eu" => Some("https://data-eu.mixpanel.com"),
        "in" => Some("https://data-in.mixpanel.com"),
        _ => None,
    }
}

/// Mixpanel's limits on the raw export.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_hour: usize,
    pub per_second: usize,
}

pub const LIMITS: Limits = Limits { per_hour: 60, per_second: 3 };

/// Keeps requests within `Limits`: before each, waits until one more fits in the last
/// second and in the last hour.
pub struct Pace {
    limits: Limits,
    sent: VecDeque<Instant>,
}

impl Pace {
    pub fn new(limits: Limits) -> Pace {
        Pace { limits, sent: VecDeque::new() }
    }

    /// How long to wait before the next request, at `now`.
    pub fn wait(&mut self, now: Instant) -> Duration {
        let hour = Duration::from_secs(3600);
        while self.sent.front().is_some_and(|t| now.duration_since(*t) >= hour) {
            self.sent.pop_front();
        }
        let mut wait = Duration::ZERO;
        if self.sent.len() >= self.limits.per_hour {
            let oldest = self.sent[self.sent.len() - self.limits.per_hour];
            wait = wait.max(hour.saturating_sub(now.duration_since(oldest)));
        }
        if self.sent.len() >= self.limits.per_second {
            let oldest = self.sent[self.sent.len() - self.limits.per_second];
            // A little over a second: the server's second is not ours to the nanosecond.
            wait = wait.max(Duration::from_millis(1100).saturating_sub(now.duration_since(oldest)));
        }
        wait
    }

    pub fn sent(&mut self, at: Instant) {
        self.sent.push_back(at);
    }
}

pub struct ExportApi {
    base: String,
    project_id: u64,
    user: String,
    secret: String,
    days: Vec<NaiveDate>,
    agent: ureq::Agent,
    pace: Pace,
}

impl ExportApi {
    /// The days `[from, to)`.
    pub fn new(base: &str, project_id: u64, user: &str, secret: &str, from: NaiveDate, to: NaiveDate) -> ExportApi {
        let days = from.iter_days().take_while(|d| *d < to).collect();
        ExportApi {
            base: base.trim_end_matches('/').to_string(),
            project_id,
            user: user.into(),
            secret: secret.into(),
            days,
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(1800)).build(),
            pace: Pace::new(LIMITS),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> ExportApi {
        self.pace = Pace::new(limits);
        self
    }
}

impl Feed for ExportApi {
    fn units(&self) -> Vec<Unit> {
        self.days.iter().map(|d| Unit { name: d.to_string(), kind: Kind::Events }).collect()
    }

    fn read(&mut self, unit: &Unit) -> Result<Bytes, ReadError> {
        use base64::Engine;
        std::thread::sleep(self.pace.wait(Instant::now()));
        self.pace.sent(Instant::now());
        let url = format!(
            "{}/api/2.0/export?project_id={}&from_date={day}&to_date={day}",
            self.base,
            self.project_id,
            day = unit.name
        );
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.secret));
        let answer =
            self.agent.get(&url).set("Authorization", &format!("Basic {auth}")).set("Accept-Encoding", "gzip").call();
        match answer {
            Ok(response) => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).map_err(|e| {
                    ReadError::Transient {
                        message: format!("reading Mixpanel's export of {}: {e}", unit.name),
                        retry_after_seconds: None,
                    }
                })?;
                Ok(Ok(bytes))
            }
            Err(ureq::Error::Status(429, response)) => Err(ReadError::Transient {
                message: format!("Mixpanel's export API asks to slow down (HTTP 429) at {}", unit.name),
                retry_after_seconds: Some(
                    response.header("Retry-After").and_then(|s| s.trim().parse().ok()).unwrap_or(60),
                ),
            }),
            Err(ureq::Error::Status(code @ (401 | 403), _)) => Err(ReadError::Fatal(format!(
                "Mixpanel refused the service account (HTTP {code}): check MIXPANEL_SERVICE_ACCOUNT_USER, \
                 MIXPANEL_SERVICE_ACCOUNT_SECRET, --project-id and --region"
            ))),
            Err(ureq::Error::Status(code, response)) if code >= 500 => Err(ReadError::Transient {
                message: format!("Mixpanel's export API answered HTTP {code} for {}", unit.name),
                retry_after_seconds: response.header("Retry-After").and_then(|s| s.trim().parse().ok()),
            }),
            Err(ureq::Error::Status(code, response)) => {
                let body = response.into_string().unwrap_or_default();
                Err(ReadError::Fatal(format!(
                    "Mixpanel's export API refused {} (HTTP {code}): {}",
                    unit.name,
                    body.trim()
                )))
            }
            Err(error) => Err(ReadError::Transient {
                message: format!("Mixpanel's export API cannot be reached: {error}"),
                retry_after_seconds: None,
            }),
        }
    }

    fn describe(&self) -> String {
        format!("Mixpanel's export API (project {}, {})", self.project_id, self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_keeps_within_three_a_second_and_sixty_an_hour() {
        let mut pace = Pace::new(LIMITS);
        let start = Instant::now();
        let mut now = start;
        for _ in 0..61 {
            now += pace.wait(now);
            pace.sent(now);
        }
        // 61 requests: the 61st waits for the first to be an hour old.
        assert!(now.duration_since(start) >= Duration::from_secs(3600));
        let times: Vec<Instant> = pace.sent.iter().copied().collect();
        for w in times.windows(4) {
            assert!(w[3].duration_since(w[0]) >= Duration::from_secs(1), "4 requests within a second");
        }
    }
}

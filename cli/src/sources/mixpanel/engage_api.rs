//! Mixpanel's people from its Engage query API: `POST /api/query/engage?project_id=`
//! with a service account (basic auth), answering a page of profiles
//! (`{page, page_size, session_id, results: [{$distinct_id, $properties}], total}`).
//! The first page opens a session; each further page is asked for with that
//! `session_id` and `page` one more than the last, while the last page was full
//! (`page_size` profiles, at most 1000, chosen by Mixpanel). Each page is a unit, its
//! profiles one JSON line each, as in an Engage export file.
//!
//! The Query API allows 60 queries an hour and 5 at once per project, counted apart
//! from the raw export's: the pages are asked for one at a time, paced below 60 an
//! hour, and a 429 is waited out.
//!
//! A rerun asks for every page again (a new session) rather than resuming at a page:
//! a session is Mixpanel's cache of one query's result, it does not outlive a long
//! wait, and a new session need not order the profiles as the old one did, so a page
//! number kept from an earlier run names nothing. What makes the rerun send nothing
//! twice is the profile's uuid, derived from its id and properties: a profile this
//! destination got before is not sent again, a profile changed since is sent (its
//! newer properties).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::export_api::{Limits, Pace};
use super::{Bytes, Feed, Kind, Unit};
use crate::shared::retry::ReadError;

/// The Query API's host for each of Mixpanel's data residency regions (not the raw
/// export's `data` hosts).
pub fn host(region: &str) -> Option<&'static str> {
    match region {
        "us" => Some("https://mixpanel.com"),
        "eu" => Some("https://eu.mixpanel.com"),
        "in" => Some("https://in.mixpanel.com"),
        _ => None,
    }
}

/// The Query API's 60 an hour; it names no limit a second, so the raw export's 3 are
/// kept (they cost nothing beside 60 an hour). One query at a time keeps within its 5
/// at once.
pub const LIMITS: Limits = Limits { per_hour: 60, per_second: 3 };

const PAGE: &str = "Mixpanel's Engage API page ";

pub struct EngageApi {
    base: String,
    project_id: u64,
    user: String,
    secret: String,
    agent: ureq::Agent,
    pace: Pace,
    /// The session the first page opened.
    session: Option<String>,
    /// The page to ask for after the last one read, when that one was full.
    next: Option<u64>,
}

fn unit(page: u64) -> Unit {
    Unit { name: format!("{PAGE}{page}"), kind: Kind::EngagePage }
}

impl EngageApi {
    pub fn new(base: &str, project_id: u64, user: &str, secret: &str) -> EngageApi {
        EngageApi {
            base: base.trim_end_matches('/').to_string(),
            project_id,
            user: user.into(),
            secret: secret.into(),
            agent: ureq::AgentBuilder::new().timeout(Duration::from_secs(600)).build(),
            pace: Pace::new(LIMITS),
            session: None,
            next: None,
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> EngageApi {
        self.pace = Pace::new(limits);
        self
    }

    /// A page's profiles as JSON lines; notes the page to ask for next.
    fn take(&mut self, page: u64, answer: &str) -> Result<Vec<u8>, ReadError> {
        let broken = |why: &str| ReadError::Transient {
            message: format!("Mixpanel's Engage API answered page {page} with {why}"),
            retry_after_seconds: None,
        };
        let json: Value = serde_json::from_str(answer).map_err(|_| broken("no JSON"))?;
        if let Some(status) = json["status"].as_str().filter(|s| *s != "ok") {
            return Err(ReadError::Fatal(format!(
                "Mixpanel's Engage API refused page {page} ({status}): {}",
                json["error"].as_str().unwrap_or("")
            )));
        }
        let results = json["results"].as_array().ok_or_else(|| broken("no results"))?;
        if page == 0 {
            self.session = json["session_id"].as_str().map(String::from);
        }
        let page_size = json["page_size"].as_u64().unwrap_or(1000).max(1);
        let full = results.len() as u64 >= page_size;
        self.next = (full && self.session.is_some()).then_some(page + 1);
        let lines: Vec<String> = results.iter().map(Value::to_string).collect();
        Ok(lines.join("\n").into_bytes())
    }
}

impl Feed for EngageApi {
    fn units(&self) -> Vec<Unit> {
        vec![unit(0)]
    }

    fn more(&mut self) -> Option<Unit> {
        self.next.take().map(unit)
    }

    fn read(&mut self, unit: &Unit) -> Result<Bytes, ReadError> {
        use base64::Engine;
        let page: u64 = unit.name.strip_prefix(PAGE).and_then(|n| n.parse().ok()).unwrap_or(0);
        std::thread::sleep(self.pace.wait(Instant::now()));
        self.pace.sent(Instant::now());
        let url = format!("{}/api/query/engage?project_id={}", self.base, self.project_id);
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", self.user, self.secret));
        let request = self.agent.post(&url).set("Authorization", &format!("Basic {auth}"));
        let page_text = page.to_string();
        let answer = match (&self.session, page) {
            (Some(session), 1..) => request.send_form(&[("session_id", session.as_str()), ("page", &page_text)]),
            _ => request.send_form(&[]),
        };
        match answer {
            Ok(response) => {
                let text = response.into_string().map_err(|e| ReadError::Transient {
                    message: format!("reading Mixpanel's Engage API page {page}: {e}"),
                    retry_after_seconds: None,
                })?;
                Ok(Ok(self.take(page, &text)?))
            }
            Err(ureq::Error::Status(429, response)) => Err(ReadError::Transient {
                message: format!("Mixpanel's Engage API asks to slow down (HTTP 429) at page {page}"),
                retry_after_seconds: Some(
                    response.header("Retry-After").and_then(|s| s.trim().parse().ok()).unwrap_or(60),
                ),
            }),
            Err(ureq::Error::Status(code @ (401 | 403), _)) => Err(ReadError::Fatal(format!(
                "Mixpanel refused the service account (HTTP {code}) for its Engage API: check \
                 MIXPANEL_SERVICE_ACCOUNT_USER, MIXPANEL_SERVICE_ACCOUNT_SECRET, --project-id and --region"
            ))),
            Err(ureq::Error::Status(code, response)) if code >= 500 => Err(ReadError::Transient {
                message: format!("Mixpanel's Engage API answered HTTP {code} for page {page}"),
                retry_after_seconds: response.header("Retry-After").and_then(|s| s.trim().parse().ok()),
            }),
            Err(ureq::Error::Status(code, response)) => {
                let body = response.into_string().unwrap_or_default();
                Err(ReadError::Fatal(format!(
                    "Mixpanel's Engage API refused page {page} (HTTP {code}): {}; run the same command again to \
                     read the people again from the first page",
                    body.trim()
                )))
            }
            Err(error) => Err(ReadError::Transient {
                message: format!("Mixpanel's Engage API cannot be reached: {error}"),
                retry_after_seconds: None,
            }),
        }
    }

    fn describe(&self) -> String {
        format!("Mixpanel's Engage API (project {}, {})", self.project_id, self.base)
    }
}

/// Events from `events`, then the people from the Engage API.
pub struct WithPeople<F: Feed> {
    pub events: F,
    pub people: EngageApi,
}

impl<F: Feed> Feed for WithPeople<F> {
    fn units(&self) -> Vec<Unit> {
        let mut units = self.events.units();
        units.extend(self.people.units());
        units
    }

    fn more(&mut self) -> Option<Unit> {
        self.people.more()
    }

    fn read(&mut self, unit: &Unit) -> Result<Bytes, ReadError> {
        match unit.kind {
            Kind::EngagePage => self.people.read(unit),
            _ => self.events.read(unit),
        }
    }

    fn describe(&self) -> String {
        format!("{} and the people of {}", self.events.describe(), self.people.describe())
    }

    fn is_local(&self) -> bool {
        self.events.is_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_page_asks_for_the_next_in_its_session_and_a_short_one_ends() {
        let mut api = EngageApi::new("http://127.0.0.1:9", 1, "u", "s");
        let first = r#"{"page":0,"page_size":2,"session_id":"S1","status":"ok","total":3,
            "results":[{"$distinct_id":"a","$properties":{}},{"$distinct_id":4,"$properties":{"$email":"x"}}]}"#;
        let lines = String::from_utf8(api.take(0, first).unwrap()).unwrap();
        assert_eq!(lines.lines().count(), 2);
        assert_eq!(api.session.as_deref(), Some("S1"));
        assert_eq!(api.more(), Some(unit(1)));
        assert_eq!(api.more(), None, "one unit per page");
        let last = r#"{"page":1,"page_size":2,"session_id":"S1","status":"ok","results":[{"$distinct_id":"c","$properties":{}}]}"#;
        api.take(1, last).unwrap();
        assert_eq!(api.more(), None);
        let refused = r#"{"status":"error","error":"bad where"}"#;
        assert!(matches!(api.take(0, refused), Err(ReadError::Fatal(m)) if m.contains("bad where")));
        assert_eq!(host("eu"), Some("https://eu.mixpanel.com"));
    }
}

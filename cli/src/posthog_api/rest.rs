//! The REST part of the PostHog API client: a project's objects (actions, cohorts,
//! feature flags, ...) listed, created and updated as PostHog's own frontend does, through
//! the same agent, first contact and answer reading as the Query API part
//! (`client.rs`). What it follows of PostHog (its sources named in
//! `cli/tests/posthog_api/API.md`):
//!
//! - a list answers `{"count", "next", "previous", "results"}` a page at a time (100 for
//!   most kinds, 1,000 for annotations), `next` an absolute URL built from the request
//!   (behind a proxy its scheme or host may be the proxy's: only its path and query are
//!   followed, at the host we were given); a kind without paging answers
//!   `{"results": [...]}` (actions) or a bare list;
//! - an object is at `/api/projects/:id/<kind>/` or `/api/environments/:id/<kind>/`
//!   (`posthog/api/routing.py`): an instance of one era knows only one of them for a kind,
//!   so the other is tried on a 404, and the one that answered is kept for the kind;
//! - errors are `{"type", "code", "detail", "attr"}` (`posthog/exceptions.py`): a 400 on
//!   one object is that object's, and the caller goes on with the rest;
//! - 401/403 refuse the key (the variable to fix is named); 429 (`posthog/rate_limit.py`,
//!   with `Retry-After`), 408 and 5xx (often an HTML page of a proxy) are waited out by
//!   the one retry policy (`--retry-scale`).

use std::time::Duration;

use serde_json::Value;

use super::client::{Flags, QueryApiClient};
use crate::shared::retry::{GaveUp, ReadError, RetryPolicy};

/// The flags of `metadata`'s source, named in refusals.
pub const METADATA_SOURCE: Flags =
    Flags { host: "--source-host", project: "--source-project-id", key: "POSTHOG_PERSONAL_API_KEY" };
/// The flags of `metadata`'s destination.
pub const METADATA_DESTINATION: Flags = Flags {
    host: "--destination-host",
    project: "--destination-project-id",
    key: "POSTHOG_DESTINATION_PERSONAL_API_KEY",
};

/// The two URL forms of a project's objects, the older first.
const FORMS: [&str; 2] = ["projects", "environments"];

/// PostHog's answer to one object it would not take (a 400, 404, 409 ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub detail: String,
    /// The field at fault, when PostHog says.
    pub attr: Option<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.attr {
            Some(attr) => write!(f, "HTTP {} {} on `{attr}`: {}", self.status, self.code, self.detail),
            None if self.code.is_empty() => write!(f, "HTTP {}: {}", self.status, self.detail),
            None => write!(f, "HTTP {} {}: {}", self.status, self.code, self.detail),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// 401/403: the key (or the project it may see) must be fixed; names what to fix.
    #[error("{0}")]
    Key(String),
    /// Out of reach, no such project, or retries given up on: the run stops.
    #[error("{0}")]
    Stop(String),
    /// One object refused; the rest goes on.
    #[error("{0}")]
    Object(Refusal),
}

/// What a request sends.
pub enum Body {
    None,
    Json(Value),
    /// A form with one file (PostHog's cohort upload: `csv`).
    Multipart {
        fields: Vec<(String, String)>,
        file_field: String,
        file_name: String,
        file: Vec<u8>,
    },
}

/// One answer, as the caller needs it.
enum Answer {
    Json(Value),
    NotFound,
    Refused(Refusal),
    Key(u16, String),
}

const BOUNDARY: &str = "migrator3000-form-boundary-7d41c2";

impl Body {
    fn bytes(&self) -> (Option<String>, Vec<u8>) {
        match self {
            Body::None => (None, Vec::new()),
            Body::Json(value) => (Some("application/json".into()), value.to_string().into_bytes()),
            Body::Multipart { fields, file_field, file_name, file } => {
                let mut out = Vec::new();
                for (name, value) in fields {
                    out.extend(
                        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                            .as_bytes(),
                    );
                }
                out.extend(
                    format!(
                        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{file_field}\"; \
                         filename=\"{file_name}\"\r\nContent-Type: text/csv\r\n\r\n"
                    )
                    .as_bytes(),
                );
                out.extend(file);
                out.extend(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
                (Some(format!("multipart/form-data; boundary={BOUNDARY}")), out)
            }
        }
    }
}

/// PostHog's error body read: `{"type", "code", "detail", "attr"}`, or DRF's field errors
/// (`{"name": ["..."]}`), or whatever text came.
pub fn refusal(status: u16, text: &str) -> Refusal {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if let Some(detail) = body.get("detail") {
        return Refusal {
            status,
            code: body["code"].as_str().unwrap_or("").to_string(),
            detail: detail.as_str().map_or_else(|| detail.to_string(), str::to_string),
            attr: body["attr"].as_str().map(str::to_string),
        };
    }
    if let Some((field, said)) = body.as_object().and_then(|o| o.iter().next()) {
        let detail = said.get(0).and_then(Value::as_str).map_or_else(|| said.to_string(), str::to_string);
        return Refusal { status, code: "invalid".into(), detail, attr: Some(field.clone()) };
    }
    Refusal { status, code: String::new(), detail: short(text), attr: None }
}

/// An answer's text as a message says it: an HTML page (a proxy's) named as one.
fn short(text: &str) -> String {
    let text = text.trim();
    if text.starts_with('<') {
        return "an HTML page".into();
    }
    text.chars().take(300).collect()
}

impl QueryApiClient {
    /// A client of a PostHog's REST API (`flags` name what to fix when it refuses).
    pub fn rest(host: &str, project_id: u64, key: &str, flags: &'static Flags, retry: RetryPolicy) -> QueryApiClient {
        let mut client = QueryApiClient::new(host, project_id, key);
        client.flags = flags;
        client.what = "the PostHog API";
        client.retry = retry;
        client.agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(300))
            .build();
        client
    }

    /// Every object of a kind (`rel`: its path inside a project, e.g. `cohorts/`),
    /// every page followed.
    pub fn list(&mut self, rel: &str) -> Result<Vec<Value>, RestError> {
        let (form, first) = self.at_some_form(rel)?;
        let mut out = Vec::new();
        let mut page = first;
        loop {
            let next = match page {
                Value::Array(objects) => {
                    out.extend(objects);
                    None
                }
                mut paged => {
                    if let Some(Value::Array(objects)) = paged.get_mut("results").map(Value::take) {
                        out.extend(objects);
                    }
                    paged["next"].as_str().map(|n| self.follow(n))
                }
            };
            let Some(next) = next else { return Ok(out) };
            page = match self.call("GET", &next, &Body::None)? {
                Answer::Json(page) => page,
                Answer::NotFound => {
                    return Err(RestError::Stop(format!(
                        "{} of {} lost a page of {rel} under /api/{form}/ (HTTP 404 at {next})",
                        self.what, self.host
                    )))
                }
                Answer::Refused(refusal) => {
                    return Err(RestError::Stop(format!("{} refused a page of {rel}: {refusal}", self.what)))
                }
                Answer::Key(status, said) => return Err(self.key_error(status, &said)),
            };
        }
    }

    /// One object as its detail answers it (`rel`, e.g. `dashboards/12/`): some fields
    /// (a dashboard's tiles) are in no list.
    pub fn get(&mut self, rel: &str) -> Result<Value, RestError> {
        self.write("GET", rel, &Body::None)
    }

    /// Creates an object of a kind (`rel`, e.g. `feature_flags/`); its answer.
    pub fn create(&mut self, rel: &str, body: &Body) -> Result<Value, RestError> {
        self.write("POST", rel, body)
    }

    /// Changes the fields `body` holds of an object (`rel`, e.g. `feature_flags/12/`).
    pub fn update(&mut self, rel: &str, body: &Body) -> Result<Value, RestError> {
        self.write("PATCH", rel, body)
    }

    fn write(&mut self, method: &str, rel: &str, body: &Body) -> Result<Value, RestError> {
        let form = self.form_of(rel);
        let path = format!("/api/{form}/{}/{rel}", self.project_id);
        match self.call(method, &path, body)? {
            Answer::Json(value) => Ok(value),
            Answer::NotFound => Err(RestError::Object(Refusal {
                status: 404,
                code: "not_found".into(),
                detail: format!("{path} not found"),
                attr: None,
            })),
            Answer::Refused(refusal) => Err(RestError::Object(refusal)),
            Answer::Key(status, said) => Err(self.key_error(status, &said)),
        }
    }

    /// The kind's form known, or the one most likely (the last that answered).
    fn form_of(&self, rel: &str) -> &'static str {
        let kind = rel.split('/').next().unwrap_or(rel);
        self.forms.get(kind).or_else(|| self.forms.values().next()).copied().unwrap_or(FORMS[0])
    }

    /// The first page of `rel` under whichever form the instance has; the form kept.
    fn at_some_form(&mut self, rel: &str) -> Result<(&'static str, Value), RestError> {
        let kind = rel.split('/').next().unwrap_or(rel).to_string();
        let known = self.forms.get(&kind).copied();
        let order: Vec<&'static str> = match known {
            Some(form) => vec![form],
            None => {
                let likely = self.form_of(rel);
                let mut order = vec![likely];
                order.extend(FORMS.iter().filter(|f| **f != likely));
                order
            }
        };
        for form in order {
            let path = format!("/api/{form}/{}/{rel}", self.project_id);
            match self.call("GET", &path, &Body::None)? {
                Answer::Json(page) => {
                    self.forms.insert(kind, form);
                    return Ok((form, page));
                }
                Answer::NotFound => continue,
                Answer::Refused(refusal) => {
                    return Err(RestError::Stop(format!("{} refused to list {rel}: {refusal}", self.what)))
                }
                Answer::Key(status, said) => return Err(self.key_error(status, &said)),
            }
        }
        Err(RestError::Stop(format!(
            "{} of {} has no project {} with {kind} (HTTP 404 under /api/projects/ and /api/environments/); check \
             {} and {}",
            self.what, self.host, self.project_id, self.flags.host, self.flags.project
        )))
    }

    /// A `next` URL followed at our host: its path and query only.
    fn follow(&self, next: &str) -> String {
        match next.find("/api/") {
            Some(at) => next[at..].to_string(),
            None => next.to_string(),
        }
    }

    fn key_error(&self, status: u16, said: &str) -> RestError {
        RestError::Key(format!(
            "{} of {} refused the personal API key (HTTP {status}: {}); check {} (a personal API key of that \
             instance that may read and write this project's actions, cohorts and feature flags) and {}",
            self.what,
            self.host,
            refusal(status, said).detail,
            self.flags.key,
            self.flags.project
        ))
    }

    /// One request, tried again through the retry policy while it fails for a while.
    fn call(&mut self, method: &str, path: &str, body: &Body) -> Result<Answer, RestError> {
        let url = format!("{}{path}", self.host);
        let (content_type, bytes) = body.bytes();
        let authorization = format!("Bearer {}", self.key);
        let policy = self.retry;
        let what = self.what;
        policy
            .read(|| {
                let (status, retry_after, text) = self.first_contact(|agent| {
                    let mut request = agent.request(method, &url).set("Authorization", &authorization);
                    if let Some(content_type) = &content_type {
                        request = request.set("Content-Type", content_type);
                    }
                    let sent = if matches!(body, Body::None) { request.call() } else { request.send_bytes(&bytes) };
                    sent.map_err(Box::new)
                })?;
                classify(what, method, path, status, retry_after, &text)
            })
            .map_err(|gave_up| match gave_up {
                GaveUp::Fatal(message) => RestError::Stop(message),
                other @ (GaveUp::Tries { .. } | GaveUp::Interrupted { .. }) => RestError::Stop(other.to_string()),
            })
    }
}

fn classify(
    what: &str,
    method: &str,
    path: &str,
    status: u16,
    retry_after: Option<u64>,
    text: &str,
) -> Result<Answer, ReadError> {
    match status {
        200..=299 if text.trim().is_empty() => Ok(Answer::Json(Value::Null)),
        200..=299 => serde_json::from_str(text).map(Answer::Json).map_err(|_| ReadError::Transient {
            message: format!("{what} answered {method} {path} with something that is not JSON: {}", short(text)),
            retry_after_seconds: None,
        }),
        401 | 403 => Ok(Answer::Key(status, text.to_string())),
        404 => Ok(Answer::NotFound),
        429 => Err(ReadError::Transient {
            message: format!("{what} is rate limited (HTTP 429: {})", refusal(status, text).detail),
            retry_after_seconds: retry_after.or(Some(60)),
        }),
        408 | 500..=599 => Err(ReadError::Transient {
            message: format!("{what} failed {method} {path} (HTTP {status}: {})", short(text)),
            retry_after_seconds: retry_after,
        }),
        _ => Ok(Answer::Refused(refusal(status, text))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posthogs_error_bodies_are_read_with_their_field() {
        let said = r#"{"type":"validation_error","code":"unique","detail":"There is already a feature flag with this key.","attr":"key"}"#;
        let r = refusal(400, said);
        assert_eq!((r.code.as_str(), r.attr.as_deref()), ("unique", Some("key")));
        assert_eq!(r.to_string(), "HTTP 400 unique on `key`: There is already a feature flag with this key.");
        let drf = refusal(400, r#"{"name": ["This field may not be blank."]}"#);
        assert_eq!((drf.attr.as_deref(), drf.detail.as_str()), (Some("name"), "This field may not be blank."));
        assert_eq!(refusal(502, "<html><body>Bad gateway</body></html>").detail, "an HTML page");
    }

    #[test]
    fn waits_and_refusals_are_told_apart() {
        assert!(matches!(
            classify("api", "GET", "/x", 429, Some(7), "{}"),
            Err(ReadError::Transient { retry_after_seconds: Some(7), .. })
        ));
        assert!(matches!(classify("api", "GET", "/x", 503, None, "<html>"), Err(ReadError::Transient { .. })));
        assert!(matches!(classify("api", "GET", "/x", 403, None, "{}"), Ok(Answer::Key(403, _))));
        assert!(matches!(classify("api", "POST", "/x", 400, None, "{}"), Ok(Answer::Refused(_))));
        assert!(matches!(classify("api", "GET", "/x", 200, None, "<html>"), Err(ReadError::Transient { .. })));
    }
}

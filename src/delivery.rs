//! What an answer from capture means for the events of a request, and what to do next:
//! send, split, reject, retry later, park, or stop for the user to fix a setting.
//!
//! Stateless on purpose: a failed request is kept by the shim as it was sent (its body)
//! and may be answered for in another worker thread, or after a reload.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::batch::{Batch, BatchLimits, Batcher, Body};
use crate::transform::{Rejected, Rejection};

/// Attempts at a request before it is parked (kept in storage until a user resends it).
pub const MAX_ATTEMPTS: u32 = 12;
/// Back-off: 15 s, 30 s, 1 min, ... doubling, at most an hour: about 4 hours in all.
const FIRST_DELAY_SECONDS: u64 = 15;
const LONGEST_DELAY_SECONDS: u64 = 3600;
/// A `Retry-After` longer than this is taken as this.
const LONGEST_RETRY_AFTER_SECONDS: u64 = 6 * 3600;

/// The status codes as capture uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx with capture's answer: the events are in (over-quota drops also answer 200;
    /// nothing tells them apart).
    Delivered,
    /// 2xx with a body that is not capture's answer (a web app or proxy that serves its
    /// page for every path): nothing says the events arrived anywhere.
    NotCaptureAnswer,
    /// 400: at least one event of the request is malformed; the whole request is refused.
    Invalid,
    /// 413: the request is too large for this destination.
    TooLarge,
    /// 401/403: wrong project API key or host.
    Unauthorized,
    /// Other 4xx (404, 405, ...): this is not a capture endpoint; the host is wrong.
    WrongDestination,
    /// 3xx: the host redirects (a POST followed through a redirect becomes a GET).
    Redirect,
    /// No answer because TLS was spoken to a server that speaks plain http.
    PlainHttp,
    /// 408, 429, 5xx, and no answer at all: the same request may succeed later.
    Retry,
}

pub fn classify(status: u16) -> Answer {
    match status {
        200..=299 => Answer::Delivered,
        400 => Answer::Invalid,
        413 => Answer::TooLarge,
        401 | 403 => Answer::Unauthorized,
        408 | 429 => Answer::Retry,
        402 | 404..=407 | 409..=412 | 414..=428 | 430..=499 => Answer::WrongDestination,
        300..=399 => Answer::Redirect,
        // 1xx are not answers capture gives: treat them like a failing server.
        _ => Answer::Retry,
    }
}

/// `classify`, with what came back: a 2xx counts only with capture's answer, and a
/// connection that failed because the server speaks plain http says so. `text` is the
/// answer's body (for a 3xx, where it redirects to, if known); `error`, why no answer
/// came.
pub fn classify_reply(status: u16, text: &str, error: Option<&str>) -> Answer {
    match status {
        0 if error.is_some() && speaks_plain_http(text) => Answer::PlainHttp,
        200..=299 if !is_capture_answer(text) => Answer::NotCaptureAnswer,
        _ => classify(status),
    }
}

/// Capture's answer to a request it took: `{"status": 1}` (Django capture),
/// `{"status": "Ok"}` (the Rust capture, with `quota_limited` at times), or nothing at
/// all (a 204 of the Rust capture, and some proxies).
pub fn is_capture_answer(text: &str) -> bool {
    let text = text.trim();
    if text.is_empty() {
        return true;
    }
    let Ok(serde_json::Value::Object(answer)) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    match answer.get("status") {
        Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("ok"),
        _ => false,
    }
}

/// What TLS clients say when the server answers a TLS handshake in plain http: OpenSSL
/// (Node's `EPROTO`) and rustls.
fn speaks_plain_http(error_text: &str) -> bool {
    let text = error_text.to_ascii_lowercase();
    ["wrong version number", "invalidcontenttype", "packet length too long", "http_request"]
        .iter()
        .any(|sign| text.contains(sign))
}

/// A request of one event this much smaller than capture's limit for one event (about
/// 1 MB) and refused as too large (413) meets a limit of the endpoint (a proxy in front
/// of capture), not capture's: capture refuses a large event with 400.
pub const ENDPOINT_LIMIT_BELOW_BYTES: usize = 512 * 1024;

/// A `Retry-After` header: seconds, or an HTTP date.
pub fn retry_after_seconds(header: &str, now: DateTime<Utc>) -> Option<u64> {
    let header = header.trim();
    if let Ok(seconds) = header.parse::<u64>() {
        return Some(seconds);
    }
    let at = crate::timestamp::parse_http_date(header)?;
    Some(u64::try_from((at - now).num_seconds()).unwrap_or(0))
}

/// The wait before attempt `attempt + 1`, honouring the destination's `Retry-After`.
pub fn backoff_seconds(attempt: u32, retry_after: Option<u64>) -> u64 {
    let doubling = FIRST_DELAY_SECONDS.saturating_mul(1u64 << attempt.min(20)).min(LONGEST_DELAY_SECONDS);
    doubling.max(retry_after.unwrap_or(0).min(LONGEST_RETRY_AFTER_SECONDS))
}

/// What to do with a request after its answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Delivered {
        count: usize,
    },
    /// Send these instead (the halves of a refused request).
    Split(Vec<Batch>),
    /// The request held one event and the destination refused it.
    Rejected(Rejected),
    /// Send it again after `delay_seconds`, as attempt `attempt`.
    Retry {
        delay_seconds: u64,
        attempt: u32,
    },
    /// Tried `MAX_ATTEMPTS` times: keep it until the user resends it.
    Park,
    /// Nothing will get through until the user fixes where events go or the key:
    /// keep the request.
    Stop(Refusal),
}

/// Why the destination takes nothing until the user acts. Each front end words it with
/// its own names: the app with its settings form, the command with its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401 or 403: the project API key (or the host it belongs to) is wrong.
    Key { status: u16 },
    /// Another 4xx: the host is not PostHog's capture.
    NotCapture { status: u16 },
    /// Every event refused alone with the answer the whole request got: the answer is
    /// about the endpoint (a redirect from http:// to https:// turns POST into GET).
    Endpoint { status: u16, said: String },
    /// A 2xx whose body is not capture's answer: something else answers at this host.
    NotCaptureAnswer { status: u16, said: String },
    /// One event far under capture's limits refused as too large: the endpoint's limit
    /// (a proxy's body size limit) is below what capture takes.
    EndpointLimit { status: u16, bytes: usize },
    /// A redirect, to `to` (empty when not known).
    Redirect { status: u16, to: String },
    /// TLS (https) was spoken to a server that speaks plain http.
    PlainHttp { said: String },
}

impl Refusal {
    /// In the app's words: the fields of its settings form.
    pub fn app_words(&self) -> String {
        match self {
            Refusal::Key { status } => format!(
                "The destination refused the project API key (HTTP {status}). Check the settings \
                 \"Destination host\" and \"Destination project API key\"; saving them resends what waits."
            ),
            Refusal::NotCapture { status } => format!(
                "The destination answered HTTP {status}: it does not look like PostHog's capture. Check the \
                 setting \"Destination host\"; saving it resends what waits."
            ),
            Refusal::Endpoint { status, said } => format!(
                "The destination refuses every event alone with the answer it gave the whole request (HTTP {status} \
                 {said}): that is about where the events go, not the events. Check the setting \"Destination host\" \
                 (a redirect, e.g. from http:// to https://, turns POST into GET); saving it resends what waits."
            ),
            Refusal::NotCaptureAnswer { status, said } => format!(
                "The destination answered HTTP {status} with something that is not PostHog capture's answer ({said}): \
                 a web app or proxy answers there, and nothing says the events arrived. Check the setting \
                 \"Destination host\" (PostHog's capture, e.g. us.i.posthog.com); saving it resends what waits."
            ),
            Refusal::EndpointLimit { status, bytes } => format!(
                "The destination refuses a request of a single event ({bytes} bytes) as too large (HTTP {status}): \
                 capture takes 20 MB a request (2 MB on older builds), so the limit is that of a proxy in front of it \
                 (nginx's client_max_body_size is 1 MB by default). Raise that limit to 20 MB for the path /batch/ of \
                 the host in the setting \"Destination host\"; saving the settings then resends what waits."
            ),
            Refusal::Redirect { status, to } => format!(
                "The destination redirects (HTTP {status}){}: events are not sent through a redirect (a POST \
                 becomes a GET). Set \"Destination host\" to {}; saving it resends what waits.",
                if to.is_empty() { String::new() } else { format!(" to {to}") },
                crate::host::of_location(to).map_or("where it redirects to".into(), |host| format!("\"{host}\""))
            ),
            Refusal::PlainHttp { said } => format!(
                "The destination speaks plain http, not https ({said}). Write the setting \"Destination host\" \
                 with http:// (e.g. http://posthog.example.com:8000); saving it resends what waits."
            ),
        }
    }
}

/// A request as it was sent, handed back with its answer.
#[derive(Debug, Clone, Copy)]
pub struct Sent<'a> {
    pub body: &'a str,
    /// `json` or `gzip-base64`.
    pub encoding: &'a str,
    /// How many times it has been sent, this time included.
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRequest(pub String);

impl std::fmt::Display for UnreadableRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request to answer for cannot be read: {}", self.0)
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    api_key: String,
    historical_migration: bool,
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Identity {
    uuid: Option<String>,
    event: Option<String>,
}

/// The JSON text of a sent body.
pub fn body_json(sent: Sent<'_>) -> Result<String, UnreadableRequest> {
    match sent.encoding {
        "json" => Ok(sent.body.to_string()),
        "gzip-base64" => {
            let bytes = BASE64.decode(sent.body).map_err(|e| UnreadableRequest(format!("not base64 ({e})")))?;
            let json = crate::gzip::decompress(&bytes).map_err(|e| UnreadableRequest(e.to_string()))?;
            String::from_utf8(json).map_err(|_| UnreadableRequest("not UTF-8".into()))
        }
        other => Err(UnreadableRequest(format!("unknown encoding \"{other}\""))),
    }
}

/// Decides what follows `status` for `sent`. `limits` and `gzip` shape any halves.
pub fn decide(
    sent: Sent<'_>,
    status: u16,
    retry_after: Option<u64>,
    response: &str,
    limits: BatchLimits,
    gzip: bool,
) -> Result<Decision, UnreadableRequest> {
    let json = body_json(sent)?;
    let envelope = envelope(&json)?;
    let answer = classify_reply(status, response, None);
    if answer == Answer::Delivered {
        return Ok(Decision::Delivered { count: envelope.batch.len() });
    }
    let reply = Reply { answer, status, retry_after, text: response };
    Ok(decide_read(&envelope, sent.attempt, reply, limits, gzip))
}

/// What came back for a request: the answer as classified (a dispatch may classify a
/// connection cut while uploading as too large), its status, `Retry-After` and text.
#[derive(Debug, Clone, Copy)]
pub struct Reply<'a> {
    pub answer: Answer,
    pub status: u16,
    pub retry_after: Option<u64>,
    pub text: &'a str,
}

/// `decide` for a batch as the core made it.
pub fn decide_batch(
    batch: &Batch,
    attempt: u32,
    reply: Reply<'_>,
    limits: BatchLimits,
    gzip: bool,
) -> Result<Decision, UnreadableRequest> {
    if reply.answer == Answer::Delivered {
        return Ok(Decision::Delivered { count: batch.uuids.len() });
    }
    let json = batch_json(batch)?;
    Ok(decide_read(&envelope(&json)?, attempt, reply, limits, gzip))
}

/// The JSON text of a batch's body.
pub fn batch_json(batch: &Batch) -> Result<String, UnreadableRequest> {
    match &batch.body {
        Body::Json(text) => Ok(text.clone()),
        Body::Gzip(bytes) => {
            let json = crate::gzip::decompress(bytes).map_err(|e| UnreadableRequest(e.to_string()))?;
            String::from_utf8(json).map_err(|_| UnreadableRequest("not UTF-8".into()))
        }
    }
}

fn envelope(json: &str) -> Result<Envelope<'_>, UnreadableRequest> {
    serde_json::from_str(json).map_err(|e| UnreadableRequest(format!("not a batch ({e})")))
}

fn decide_read(envelope: &Envelope<'_>, attempt: u32, reply: Reply<'_>, limits: BatchLimits, gzip: bool) -> Decision {
    let Reply { answer, status, retry_after, text: response } = reply;
    let attempt = attempt.max(1);
    let split_or_reject = |too_large: bool| -> Decision {
        if envelope.batch.len() > 1 {
            return Decision::Split(halves(envelope, limits, gzip));
        }
        let identity = envelope.batch.first().and_then(|raw| serde_json::from_str::<Identity>(raw.get()).ok());
        let said = said(response);
        let what = if status == 0 { "no answer".to_string() } else { format!("HTTP {status}") };
        let reason = if too_large {
            Rejection::Refused(format!("the destination finds it too large ({what}) {said}").trim().to_string())
        } else {
            Rejection::Refused(format!("the destination refused it ({what}) {said}").trim().to_string())
        };
        Decision::Rejected(Rejected {
            reason,
            event_name: identity.as_ref().and_then(|i| i.event.clone()),
            uuid: identity.and_then(|i| i.uuid),
        })
    };
    match answer {
        Answer::Delivered => Decision::Delivered { count: envelope.batch.len() },
        Answer::Invalid => split_or_reject(false),
        Answer::TooLarge => match envelope.batch.as_slice() {
            [event] if event.get().len() < ENDPOINT_LIMIT_BELOW_BYTES => {
                Decision::Stop(Refusal::EndpointLimit { status, bytes: event.get().len() })
            }
            _ => split_or_reject(true),
        },
        Answer::Unauthorized => Decision::Stop(Refusal::Key { status }),
        Answer::WrongDestination => Decision::Stop(Refusal::NotCapture { status }),
        Answer::NotCaptureAnswer => {
            let said: String = said(response).chars().take(120).collect();
            Decision::Stop(Refusal::NotCaptureAnswer { status, said })
        }
        Answer::Redirect => {
            let to = said(response);
            let url = to.starts_with("http://") || to.starts_with("https://") || to.starts_with('/');
            Decision::Stop(Refusal::Redirect { status, to: if url { to } else { String::new() } })
        }
        Answer::PlainHttp => Decision::Stop(Refusal::PlainHttp { said: said(response) }),
        Answer::Retry if attempt >= MAX_ATTEMPTS => Decision::Park,
        Answer::Retry => {
            Decision::Retry { delay_seconds: backoff_seconds(attempt - 1, retry_after), attempt: attempt + 1 }
        }
    }
}

/// What the destination said, short enough for a log line: its first 200 characters,
/// on one line.
pub fn said(response: &str) -> String {
    let one_line: String = response.trim().chars().take(200).map(|c| if c.is_control() { ' ' } else { c }).collect();
    one_line.trim().to_string()
}

/// A request's events re-batched within `limits` (a request made before the
/// destination showed a lower limit).
pub fn rebatch(batch: &Batch, limits: BatchLimits, gzip: bool) -> Result<Vec<Batch>, UnreadableRequest> {
    let json = batch_json(batch)?;
    let envelope = envelope(&json)?;
    let mut batcher = Batcher::new(&envelope.api_key, envelope.historical_migration, limits, gzip);
    let mut out = Vec::new();
    for raw in &envelope.batch {
        let uuid = serde_json::from_str::<Identity>(raw.get()).ok().and_then(|i| i.uuid).unwrap_or_default();
        out.extend(batcher.push_json(&uuid, raw.get()));
    }
    out.extend(batcher.flush());
    Ok(out)
}

/// The two halves of a refused request, each re-batched within the limits.
fn halves(envelope: &Envelope<'_>, limits: BatchLimits, gzip: bool) -> Vec<Batch> {
    let middle = envelope.batch.len() / 2;
    let mut out = Vec::new();
    for half in [&envelope.batch[..middle], &envelope.batch[middle..]] {
        let mut batcher = Batcher::new(&envelope.api_key, envelope.historical_migration, limits, gzip);
        for raw in half {
            let uuid = serde_json::from_str::<Identity>(raw.get()).ok().and_then(|i| i.uuid).unwrap_or_default();
            out.extend(batcher.push_json(&uuid, raw.get()));
        }
        out.extend(batcher.flush());
    }
    out
}

#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "delivery_tests.rs"]
mod tests;

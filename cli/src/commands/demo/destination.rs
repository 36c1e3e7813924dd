//! The demo's destination: a server on loopback that takes `/batch/` requests as
//! PostHog's capture does (the project key, a name, a distinct_id and a uuid for every
//! event, gzip or not), answers one request in nine with a 503 and an empty body, and
//! while "over quota" answers one request of events it does not hold yet with a 200 and
//! drops them, as PostHog does. Once it has accepted `hold_at` events it answers no
//! request until that is lifted (the demo kills the command meanwhile). It keeps every
//! event it accepted by uuid, and answers the two HogQL queries `verify` asks (per-day
//! counts, and a day's uuids in pages) from them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiny_http::{Response, Server};

use super::error::DemoError;

pub const PROJECT: u64 = 1;
pub const PERSONAL_KEY: &str = "phx_demo_reader";

/// An event the destination holds.
pub struct Received {
    pub times: usize,
    pub name: String,
    /// Its UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub at: Instant,
}

pub struct Destination {
    pub url: String,
    pub received: Arc<Mutex<HashMap<String, Received>>>,
    pub accepted: Arc<AtomicUsize>,
    pub refused: Arc<AtomicUsize>,
    /// Events answered with a 200 and dropped.
    pub dropped: Arc<AtomicUsize>,
    /// While set, the next request capture accepts whose events it holds none of is
    /// dropped (and the quota is back).
    pub over_quota: Arc<AtomicBool>,
    /// Once this many events are accepted, requests are held unanswered until it is
    /// raised (none is taken meanwhile, and each is then answered 503).
    pub hold_at: Arc<AtomicUsize>,
    /// The run of the command (one more after each kill): a request of a command killed
    /// since it came (or from its connections) is answered 503 and not taken.
    run: Arc<AtomicUsize>,
}

/// Each accepted request takes this long, as a distant destination does: long enough
/// for the demo to kill the command half way.
const LATENCY: Duration = Duration::from_millis(40);

impl Destination {
    pub fn start(api_key: &str) -> Result<Destination, DemoError> {
        let server = Arc::new(Server::http("127.0.0.1:0").map_err(DemoError::NoServer)?);
        let port = server.server_addr().to_ip().map(|a| a.port()).ok_or(DemoError::NoPort)?;
        let destination = Destination {
            url: format!("http://127.0.0.1:{port}"),
            received: Arc::default(),
            accepted: Arc::default(),
            refused: Arc::default(),
            dropped: Arc::default(),
            over_quota: Arc::new(AtomicBool::new(false)),
            hold_at: Arc::new(AtomicUsize::new(usize::MAX)),
            run: Arc::default(),
        };
        let peers: Arc<Mutex<HashMap<std::net::SocketAddr, usize>>> = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        for _ in 0..4 {
            let (server, requests, key) = (server.clone(), requests.clone(), api_key.to_string());
            let (run, peers) = (destination.run.clone(), peers.clone());
            let (received, accepted, refused, dropped, over_quota, hold_at) = (
                destination.received.clone(),
                destination.accepted.clone(),
                destination.refused.clone(),
                destination.dropped.clone(),
                destination.over_quota.clone(),
                destination.hold_at.clone(),
            );
            let held = move || {
                let holding = accepted.load(Ordering::SeqCst) >= hold_at.load(Ordering::SeqCst);
                while accepted.load(Ordering::SeqCst) >= hold_at.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(5));
                }
                holding
            };
            let accepted = destination.accepted.clone();
            thread::spawn(move || {
                while let Ok(mut request) = server.recv() {
                    let generation = run.load(Ordering::SeqCst);
                    let peer = request.remote_addr().copied();
                    let first_seen = peer.map_or(generation, |p| {
                        *peers.lock().unwrap_or_else(|e| e.into_inner()).entry(p).or_insert(generation)
                    });
                    let mut body = Vec::new();
                    let read = request.as_reader().read_to_end(&mut body);
                    let authorization = request
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Authorization"))
                        .map(|h| h.value.as_str().to_string());
                    let (status, text) = if read.is_err() {
                        (400, String::new())
                    } else if request.url() == format!("/api/projects/{PROJECT}/query/") {
                        query_api(&body, authorization.as_deref(), &received)
                    } else if !request.url().starts_with("/batch") {
                        (404, "{\"detail\":\"Not found\"}".to_string())
                    } else if first_seen < generation {
                        (503, String::new())
                    } else if requests.fetch_add(1, Ordering::SeqCst) % 9 == 4 {
                        refused.fetch_add(1, Ordering::SeqCst);
                        (503, String::new())
                    } else {
                        thread::sleep(LATENCY);
                        if held() || run.load(Ordering::SeqCst) != generation {
                            (503, String::new())
                        } else {
                            let drop = |n: usize, fresh: bool| {
                                let now = run.load(Ordering::SeqCst) == generation;
                                let drop = fresh && now && over_quota.swap(false, Ordering::SeqCst);
                                if drop {
                                    dropped.fetch_add(n, Ordering::SeqCst);
                                }
                                drop
                            };
                            let answer = capture(&body, &key, &received, &accepted, drop);
                            // The request that reaches the hold is held too: its page stays unsettled.
                            held();
                            answer
                        }
                    };
                    let _ = request.respond(Response::from_string(text).with_status_code(status));
                }
            });
        }
        Ok(destination)
    }
}

impl Destination {
    /// The command was killed: what it sent is not taken any more, and nothing is held.
    pub fn killed(&self) {
        self.run.fetch_add(1, Ordering::SeqCst);
        self.hold_at.store(usize::MAX, Ordering::SeqCst);
    }
}

/// Capture's checks: the whole request is refused for one bad event. `drop` says, given
/// the request's events and whether none of them is held yet, whether to answer 200 and
/// keep none of them.
fn capture(
    body: &[u8],
    key: &str,
    received: &Mutex<HashMap<String, Received>>,
    accepted: &AtomicUsize,
    drop: impl FnOnce(usize, bool) -> bool,
) -> (u16, String) {
    let plain =
        if body.starts_with(&[0x1f, 0x8b]) { migrator3000::gzip::decompress(body).ok() } else { Some(body.to_vec()) };
    let Some(json) = plain.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
        return (400, "{\"type\":\"validation_error\",\"detail\":\"Malformed request data\"}".into());
    };
    if json["api_key"].as_str() != Some(key) {
        return (401, "{\"type\":\"authentication_error\",\"detail\":\"Project API key invalid.\"}".into());
    }
    let batch = json["batch"].as_array().cloned().unwrap_or_default();
    let valid = |e: &Value| {
        ["event", "distinct_id"].iter().all(|k| e[k].as_str().is_some_and(|s| !s.is_empty()))
            && e["uuid"].as_str().is_some_and(|u| u.len() == 36)
    };
    if batch.is_empty() || !batch.iter().all(valid) {
        return (400, "{\"type\":\"validation_error\",\"detail\":\"Invalid event\"}".into());
    }
    let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
    accepted.fetch_add(batch.len(), Ordering::SeqCst);
    let fresh = batch.iter().all(|e| !received.contains_key(e["uuid"].as_str().unwrap_or_default()));
    if drop(batch.len(), fresh) {
        return (200, "{\"status\":\"Ok\"}".into());
    }
    for event in &batch {
        let day = event["timestamp"].as_str().unwrap_or_default().chars().take(10).collect();
        let entry = received.entry(event["uuid"].as_str().unwrap_or_default().to_string()).or_insert(Received {
            times: 0,
            name: event["event"].as_str().unwrap_or_default().to_string(),
            day,
            at: Instant::now(),
        });
        entry.times += 1;
        entry.at = Instant::now();
    }
    (200, "{\"status\":\"Ok\"}".into())
}

/// The text of the quoted literal after `marker` in a query.
fn quoted_after<'a>(query: &'a str, marker: &str) -> Option<&'a str> {
    let rest = query[query.find(marker)? + marker.len()..].strip_prefix('\'')?;
    rest.get(..rest.find('\'')?)
}

/// Verify's two HogQL queries, answered from the events held: its per-day counts
/// (`GROUP BY utc_day`) and a window's distinct uuids in text order after a uuid.
fn query_api(body: &[u8], authorization: Option<&str>, received: &Mutex<HashMap<String, Received>>) -> (u16, String) {
    if authorization != Some(&format!("Bearer {PERSONAL_KEY}")) {
        return (401, "{\"type\":\"authentication_error\",\"detail\":\"Invalid personal API key.\"}".into());
    }
    let query = serde_json::from_slice::<Value>(body).ok().and_then(|b| b["query"]["query"].as_str().map(String::from));
    let Some(query) = query else { return (400, "{\"detail\":\"no HogQL query\"}".into()) };
    let day = |marker: &str| quoted_after(&query, marker).and_then(|t| t.get(..10)).map(str::to_string);
    let (Some(from), Some(to)) = (day("timestamp >= toDateTime64("), day("timestamp < toDateTime64(")) else {
        return (400, "{\"detail\":\"the demo answers only verify's queries\"}".into());
    };
    let received = received.lock().unwrap_or_else(|e| e.into_inner());
    let within = received.iter().filter(|(_, r)| r.day >= from && r.day < to);
    let results: Vec<Value> = if query.contains("GROUP BY utc_day") {
        // (rows, events, seconds since the last arrival) per day; no checksum.
        let mut days: BTreeMap<&str, (usize, usize, u64)> = BTreeMap::new();
        for (_, r) in within {
            let day = days.entry(&r.day).or_insert((0, 0, u64::MAX));
            *day = (day.0 + r.times, day.1 + 1, day.2.min(r.at.elapsed().as_secs()));
        }
        days.into_iter().map(|(d, (rows, events, quiet))| json!([d, rows, events, null, quiet])).collect()
    } else {
        let after = quoted_after(&query, "toString(uuid) > ");
        let limit: usize = query.rsplit("LIMIT ").next().and_then(|n| n.trim().parse().ok()).unwrap_or(100);
        let uuids: BTreeSet<&String> =
            within.map(|(u, _)| u).filter(|u| after.is_none_or(|a| u.as_str() > a)).collect();
        uuids.into_iter().take(limit.min(50_000)).map(|u| json!([u])).collect()
    };
    (200, json!({"results": results}).to_string())
}

//! The demo's destination: a server on loopback that takes `/batch/` requests as
//! PostHog's capture does (the project key, a name, a distinct_id and a uuid for every
//! event, gzip or not), answers one request in nine with a 503 and an empty body, and
//! counts every event it accepted by uuid.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use tiny_http::{Response, Server};

pub struct Destination {
    pub url: String,
    /// Every accepted event's uuid with how many times it came, and its name.
    pub received: Arc<Mutex<HashMap<String, (usize, String)>>>,
    pub accepted: Arc<AtomicUsize>,
    pub refused: Arc<AtomicUsize>,
}

/// Each accepted request takes this long, as a distant destination does: long enough
/// for the demo to kill the command half way.
const LATENCY: Duration = Duration::from_millis(40);

impl Destination {
    pub fn start(api_key: &str) -> Result<Destination, String> {
        let server = Arc::new(Server::http("127.0.0.1:0").map_err(|e| format!("no loopback server: {e}"))?);
        let port = server.server_addr().to_ip().map(|a| a.port()).ok_or("no loopback port")?;
        let destination = Destination {
            url: format!("http://127.0.0.1:{port}"),
            received: Arc::default(),
            accepted: Arc::default(),
            refused: Arc::default(),
        };
        let requests = Arc::new(AtomicUsize::new(0));
        for _ in 0..4 {
            let (server, requests, key) = (server.clone(), requests.clone(), api_key.to_string());
            let (received, accepted, refused) =
                (destination.received.clone(), destination.accepted.clone(), destination.refused.clone());
            thread::spawn(move || {
                while let Ok(mut request) = server.recv() {
                    let mut body = Vec::new();
                    let read = request.as_reader().read_to_end(&mut body);
                    let (status, text) = if read.is_err() || !request.url().starts_with("/batch") {
                        (404, "{\"detail\":\"Not found\"}".to_string())
                    } else if requests.fetch_add(1, Ordering::SeqCst) % 9 == 4 {
                        refused.fetch_add(1, Ordering::SeqCst);
                        (503, String::new())
                    } else {
                        thread::sleep(LATENCY);
                        capture(&body, &key, &received, &accepted)
                    };
                    let _ = request.respond(Response::from_string(text).with_status_code(status));
                }
            });
        }
        Ok(destination)
    }
}

/// Capture's checks: the whole request is refused for one bad event.
fn capture(
    body: &[u8],
    key: &str,
    received: &Mutex<HashMap<String, (usize, String)>>,
    accepted: &AtomicUsize,
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
    for event in &batch {
        let entry = received
            .entry(event["uuid"].as_str().unwrap_or_default().to_string())
            .or_insert((0, event["event"].as_str().unwrap_or_default().to_string()));
        entry.0 += 1;
    }
    accepted.fetch_add(batch.len(), Ordering::SeqCst);
    (200, "{\"status\":\"Ok\"}".into())
}

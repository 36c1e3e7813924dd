//! Request bodies for capture's `POST /batch/`, bounded in events and bytes.

use crate::gzip;
use crate::transform::Prepared;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_events: usize,
    /// Of the JSON body before compression (capture's limit applies after it).
    pub max_bytes: usize,
}

/// A request body: the JSON text, or its gzip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Json(String),
    Gzip(Vec<u8>),
}

impl Body {
    pub fn is_gzip(&self) -> bool {
        matches!(self, Body::Gzip(_))
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Body::Json(text) => text.as_bytes(),
            Body::Gzip(bytes) => bytes,
        }
    }
}

/// One request body and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub body: Body,
    /// Size of the JSON before compression.
    pub json_bytes: usize,
    pub uuids: Vec<String>,
}

/// Packs prepared events, in order, into `{"api_key", "historical_migration", "batch"}`
/// bodies. An event is never split; an event larger than `max_bytes` on its own (the
/// transform refuses those first) would travel alone.
#[derive(Debug)]
pub struct Batcher {
    limits: BatchLimits,
    gzip: bool,
    json: String,
    header_len: usize,
    uuids: Vec<String>,
}

const FOOTER: &str = "]}";

impl Batcher {
    pub fn new(api_key: &str, historical_migration: bool, limits: BatchLimits, gzip: bool) -> Batcher {
        let header = format!(
            "{{\"api_key\":{},\"historical_migration\":{historical_migration},\"batch\":[",
            serde_json::Value::String(api_key.to_string())
        );
        Batcher { limits, gzip, header_len: header.len(), json: header, uuids: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.uuids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.uuids.is_empty()
    }

    /// Adds an event; returns the batch it closed when the event did not fit beside
    /// the events already waiting.
    pub fn push(&mut self, event: &Prepared) -> Option<Batch> {
        self.push_json(&event.uuid, &event.json)
    }

    /// Adds an event already serialised for capture.
    pub fn push_json(&mut self, uuid: &str, json: &str) -> Option<Batch> {
        let grown = self.json.len() + usize::from(!self.is_empty()) + json.len() + FOOTER.len();
        let closed = if !self.is_empty() && (grown > self.limits.max_bytes || self.len() >= self.limits.max_events) {
            self.flush()
        } else {
            None
        };
        if !self.is_empty() {
            self.json.push(',');
        }
        self.json.push_str(json);
        self.uuids.push(uuid.to_string());
        closed
    }

    /// The batch of the events waiting, if any.
    pub fn flush(&mut self) -> Option<Batch> {
        if self.is_empty() {
            return None;
        }
        self.json.push_str(FOOTER);
        let json_bytes = self.json.len();
        let header = self.json[..self.header_len].to_string();
        let json = std::mem::replace(&mut self.json, header);
        let uuids = std::mem::take(&mut self.uuids);
        let body = if self.gzip { Body::Gzip(gzip::compress(json.as_bytes())) } else { Body::Json(json) };
        Some(Batch { body, json_bytes, uuids })
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn event(n: usize, padding: usize) -> Prepared {
        let json = json!({"event": "e", "n": n, "pad": "x".repeat(padding)}).to_string();
        Prepared {
            uuid: format!("uuid-{n}"),
            json,
            at: chrono::DateTime::UNIX_EPOCH,
            used_current_time: false,
            derived_uuid: false,
        }
    }

    fn run(limits: BatchLimits, gzip: bool, events: &[Prepared]) -> Vec<Batch> {
        let mut batcher = Batcher::new("phc_key", true, limits, gzip);
        let mut out: Vec<Batch> = events.iter().filter_map(|e| batcher.push(e)).collect();
        out.extend(batcher.flush());
        out
    }

    fn decode(batch: &Batch) -> Value {
        let text = match &batch.body {
            Body::Gzip(bytes) => String::from_utf8(gzip::decompress(bytes).unwrap()).unwrap(),
            Body::Json(text) => text.clone(),
        };
        assert_eq!(text.len(), batch.json_bytes);
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn body_has_the_batch_shape() {
        let batches = run(BatchLimits { max_events: 10, max_bytes: 10_000 }, false, &[event(0, 1), event(1, 1)]);
        assert_eq!(batches.len(), 1);
        let body = decode(&batches[0]);
        assert_eq!(body["api_key"], "phc_key");
        assert_eq!(body["historical_migration"], true);
        assert_eq!(body["batch"].as_array().unwrap().len(), 2);
        assert_eq!(body["batch"][1]["n"], 1);
        assert_eq!(batches[0].uuids, ["uuid-0", "uuid-1"]);
        let mut live = Batcher::new("k\"ey", false, BatchLimits { max_events: 1, max_bytes: 1000 }, false);
        live.push(&event(0, 0));
        let body = decode(&live.flush().unwrap());
        assert_eq!((body["api_key"].as_str(), body["historical_migration"].as_bool()), (Some("k\"ey"), Some(false)));
    }

    #[test]
    fn count_limit_holds_and_order_is_kept() {
        let events: Vec<_> = (0..25).map(|n| event(n, 3)).collect();
        let batches = run(BatchLimits { max_events: 10, max_bytes: 1_000_000 }, false, &events);
        assert_eq!(batches.iter().map(|b| b.uuids.len()).collect::<Vec<_>>(), [10, 10, 5]);
        let ns: Vec<u64> = batches
            .iter()
            .flat_map(|b| decode(b)["batch"].as_array().unwrap().clone())
            .map(|e| e["n"].as_u64().unwrap())
            .collect();
        assert_eq!(ns, (0..25).collect::<Vec<u64>>());
    }

    #[test]
    fn byte_limit_holds_without_splitting_events() {
        for max_bytes in [300, 301, 450, 999, 1000, 5000] {
            let events: Vec<_> = (0..40).map(|n| event(n, (n * 37) % 120)).collect();
            let batches = run(BatchLimits { max_events: 1000, max_bytes }, false, &events);
            let total: usize = batches.iter().map(|b| b.uuids.len()).sum();
            assert_eq!(total, 40);
            for b in &batches {
                assert!(b.json_bytes <= max_bytes, "{} > {max_bytes}", b.json_bytes);
                assert_eq!(decode(b)["batch"].as_array().unwrap().len(), b.uuids.len());
            }
            // Greedy: the next event would not have fitted in any closed batch.
            for pair in batches.windows(2) {
                let next = &events[pair[1].uuids[0].trim_start_matches("uuid-").parse::<usize>().unwrap()];
                assert!(pair[0].json_bytes + 1 + next.json.len() > max_bytes);
            }
        }
    }

    #[test]
    fn an_event_larger_than_the_limit_travels_alone() {
        let batches =
            run(BatchLimits { max_events: 10, max_bytes: 100 }, false, &[event(0, 1), event(1, 500), event(2, 1)]);
        assert_eq!(batches.iter().map(|b| b.uuids.len()).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn gzip_bodies_decode_to_the_same_json_and_are_smaller() {
        let events: Vec<_> = (0..50).map(|n| event(n, 200)).collect();
        let limits = BatchLimits { max_events: 100, max_bytes: 1_000_000 };
        let plain = run(limits, false, &events);
        let zipped = run(limits, true, &events);
        assert!(zipped[0].body.is_gzip() && !plain[0].body.is_gzip());
        assert_eq!(&zipped[0].body.bytes()[..2], &[0x1f, 0x8b]);
        assert_eq!(decode(&zipped[0]), decode(&plain[0]));
        assert!(zipped[0].body.bytes().len() * 4 < plain[0].body.bytes().len());
    }

    #[test]
    fn flush_of_nothing_is_nothing_and_batcher_is_reusable() {
        let mut batcher = Batcher::new("k", true, BatchLimits { max_events: 5, max_bytes: 1000 }, false);
        assert!(batcher.flush().is_none());
        batcher.push(&event(0, 0));
        assert!(batcher.flush().is_some());
        assert!(batcher.flush().is_none());
        batcher.push(&event(1, 0));
        assert_eq!(decode(&batcher.flush().unwrap())["batch"][0]["n"], 1);
    }
}

//! A destination PostHog on loopback, its parts real where verify measures them:
//! capture's `/batch/` (checked as capture checks) stores what it accepts in a real
//! ClickHouse engine of its own (PostHog's events table, `created_at` the time the row
//! was written), and the Query API answers HogQL from that engine: `events` becomes the
//! engine's table and the engine counts. As PostHog does, an answer holds at most 50,000
//! rows (100 without a LIMIT), and the key must be the project's personal API key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use super::persons::{hogql_tables, Persons};
use super::{body_json, capture_checks, ClickHouse, Reply, Request, Server, PASSWORD, USER};

pub const PROJECT: u64 = 1;
pub const PERSONAL_KEY: &str = "phx_destination_reader";
/// Where ingestion writes the destination's events, and where HogQL's `events` reads them
/// (PostHog's Distributed table over it).
pub const STORED: &str = "default.sharded_events";
pub const TABLE: &str = "default.events";

type EventRule<T> = Arc<Mutex<Box<dyn FnMut(&Value) -> T + Send>>>;
type QueryFault = Arc<Mutex<Box<dyn FnMut(&str) -> Option<Reply> + Send>>>;

pub struct PostHog {
    pub server: Server,
    /// Owned here alone, so that it stops with the test.
    pub engine: ClickHouse,
    /// The HogQL of every query the Query API was asked.
    pub hogql: Arc<Mutex<Vec<String>>>,
    /// Events answered with a 200 and never stored, as PostHog does over quota.
    pub drop: EventRule<bool>,
    /// Events stored only this long after capture answered (ingestion lag).
    pub lag: EventRule<Option<Duration>>,
    /// An answer to a HogQL query instead of the engine's (`None`: the engine's).
    pub query_fault: QueryFault,
    /// Rows an answer holds at most.
    pub rows_cap: Arc<AtomicUsize>,
    /// Events capture accepted (stored, dropped, or on their way).
    pub accepted: Arc<AtomicUsize>,
    /// Every query answers 202 (still running) and is polled for its rows.
    pub slow: Arc<AtomicBool>,
    /// The persons ingestion made of the stored events, by PostHog's rules, in order.
    pub persons: Arc<Mutex<Persons>>,
}

/// A query for the engine at `url`; its error as text instead of a panic.
pub fn engine_query(url: &str, sql: &str) -> Result<String, String> {
    let answer = ureq::post(&format!("{url}/"))
        .set("X-ClickHouse-User", USER)
        .set("X-ClickHouse-Key", PASSWORD)
        .send_string(sql);
    match answer {
        Ok(r) => r.into_string().map_err(|e| e.to_string()),
        Err(ureq::Error::Status(_, r)) => Err(r.into_string().unwrap_or_default()),
        Err(e) => Err(e.to_string()),
    }
}

fn clickhouse_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

/// Writes events as PostHog's ingestion does: one row each, `created_at` now.
fn store(engine: &str, events: &[Value]) {
    if events.is_empty() {
        return;
    }
    let now = chrono::Utc::now();
    let mut sql = format!(
        "INSERT INTO {STORED} (uuid, event, properties, timestamp, team_id, distinct_id, elements_chain, created_at, \
         _timestamp, _offset) FORMAT JSONEachRow\n"
    );
    for (i, e) in events.iter().enumerate() {
        let row = json!({
            "uuid": e["uuid"], "event": e["event"], "properties": e["properties"].to_string(),
            "timestamp": clickhouse_time(e["timestamp"].as_str().unwrap_or_default()), "team_id": PROJECT,
            "distinct_id": e["distinct_id"], "elements_chain": e["properties"]["$elements_chain"].as_str().unwrap_or(""),
            "created_at": now.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            "_timestamp": now.format("%Y-%m-%d %H:%M:%S").to_string(), "_offset": i,
        });
        sql.push_str(&row.to_string());
        sql.push('\n');
    }
    engine_query(engine, &sql).unwrap_or_else(|e| panic!("the destination could not store events: {e}"));
}

/// Ingests events as PostHog does: stored, then their persons applied in order (the
/// person rows written to the engine's person tables).
fn ingest(engine: &str, persons: &Mutex<Persons>, events: &[Value]) {
    let mut persons = persons.lock().unwrap();
    store(engine, events);
    for event in events {
        persons.apply(event);
    }
    for sql in persons.rows(PROJECT) {
        engine_query(engine, &sql).unwrap_or_else(|e| panic!("the destination could not store persons: {e}"));
    }
}

/// The engine's JSONCompact answer as the Query API's `{"results", "columns"}`, numbers
/// as numbers, at most `cap` rows.
fn results(text: &str, cap: usize) -> Value {
    let answer: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let meta = answer["meta"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Value> = answer["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .take(cap)
        .map(|row| {
            let cells = row.as_array().cloned().unwrap_or_default();
            let cells: Vec<Value> = cells
                .into_iter()
                .zip(&meta)
                .map(|(cell, m)| match (cell, m["type"].as_str().unwrap_or("")) {
                    (Value::String(s), t) if t.contains("Int") => s
                        .parse::<u64>()
                        .map(Value::from)
                        .or_else(|_| s.parse::<i64>().map(Value::from))
                        .unwrap_or(Value::String(s)),
                    (cell, _) => cell,
                })
                .collect();
            Value::Array(cells)
        })
        .collect();
    let columns: Vec<Value> = meta.iter().map(|m| m["name"].clone()).collect();
    json!({"results": rows, "columns": columns, "hasMore": false})
}

/// The rows a query may return: its LIMIT, PostHog's cap, 100 without a LIMIT.
fn row_limit(query: &str, cap: usize) -> usize {
    match query.rsplit_once(" LIMIT ") {
        Some((_, n)) => n.trim().parse::<usize>().map_or(cap, |n| n.min(cap)),
        None => 100,
    }
}

impl PostHog {
    pub fn start() -> PostHog {
        let engine = ClickHouse::start();
        let hogql = Arc::new(Mutex::new(Vec::new()));
        let drop: EventRule<bool> = Arc::new(Mutex::new(Box::new(|_| false)));
        let lag: EventRule<Option<Duration>> = Arc::new(Mutex::new(Box::new(|_| None)));
        let query_fault: QueryFault = Arc::new(Mutex::new(Box::new(|_| None)));
        let rows_cap = Arc::new(AtomicUsize::new(50_000));
        let accepted = Arc::new(AtomicUsize::new(0));
        let slow_queries = Arc::new(AtomicBool::new(false));
        let running: Arc<Mutex<HashMap<String, (usize, Value)>>> = Arc::default();
        let (slow, r) = (slow_queries.clone(), running.clone());
        let persons: Arc<Mutex<Persons>> = Arc::default();
        let p = persons.clone();
        let (e, h, d, l, q, c, a) = (
            engine.url.clone(),
            hogql.clone(),
            drop.clone(),
            lag.clone(),
            query_fault.clone(),
            rows_cap.clone(),
            accepted.clone(),
        );
        let server = Server::start(Arc::new(move |request: &Request| {
            if request.path.starts_with("/batch") {
                let Some(body) = body_json(request) else { return Reply::new(400, "{\"error\":\"malformed\"}") };
                let batch = match capture_checks(&body) {
                    Ok(batch) => batch,
                    Err(reply) => return reply,
                };
                a.fetch_add(batch.len(), Ordering::SeqCst);
                let (mut now, mut later) = (Vec::new(), Vec::new());
                let mut wait = Duration::ZERO;
                for event in batch {
                    if (d.lock().unwrap())(&event) {
                        continue;
                    }
                    match (l.lock().unwrap())(&event) {
                        Some(lag) => {
                            wait = wait.max(lag);
                            later.push(event);
                        }
                        None => now.push(event),
                    }
                }
                ingest(&e, &p, &now);
                if !later.is_empty() {
                    let (engine, persons) = (e.clone(), p.clone());
                    thread::spawn(move || {
                        thread::sleep(wait);
                        ingest(&engine, &persons, &later);
                    });
                }
                return Reply::new(200, "{\"status\":1}");
            }
            if request.headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {PERSONAL_KEY}")) {
                return Reply::new(401, "{\"type\":\"authentication_error\",\"detail\":\"Invalid personal API key.\"}");
            }
            let queries = format!("/api/projects/{PROJECT}/query/");
            if let Some(id) = request.path.strip_prefix(&queries).filter(|id| !id.is_empty()) {
                // A query still running: polled until its second look.
                let id = id.trim_end_matches('/').to_string();
                let mut running = r.lock().unwrap();
                return match running.get_mut(&id) {
                    Some((looks, _)) if *looks == 0 => {
                        *looks += 1;
                        Reply::new(202, &json!({"query_status": {"id": id, "complete": false}}).to_string())
                    }
                    Some((_, answer)) => {
                        let answer = answer.clone();
                        running.remove(&id);
                        Reply::new(
                            200,
                            &json!({"query_status": {"id": id, "complete": true, "results": answer}}).to_string(),
                        )
                    }
                    None => Reply::new(404, "{\"detail\":\"Query not found.\"}"),
                };
            }
            if request.path != queries || request.method != "POST" {
                return Reply::new(404, "{\"detail\":\"Not found.\"}");
            }
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            if body["query"]["kind"] != "HogQLQuery" {
                return Reply::new(400, "{\"detail\":\"not a HogQL query\"}");
            }
            let query = body["query"]["query"].as_str().unwrap_or_default().to_string();
            h.lock().unwrap().push(query.clone());
            if let Some(reply) = (q.lock().unwrap())(&query) {
                return reply;
            }
            let sql = hogql_tables(&query.replace(" FROM events ", &format!(" FROM {TABLE} ")), PROJECT);
            match engine_query(&e, &format!("{sql} FORMAT JSONCompact")) {
                Ok(text) if slow.load(Ordering::SeqCst) => {
                    let mut running = r.lock().unwrap();
                    let id = format!("q{}", running.len() + h.lock().unwrap().len());
                    running.insert(id.clone(), (0, results(&text, row_limit(&query, c.load(Ordering::SeqCst)))));
                    Reply::new(202, &json!({"query_status": {"id": id, "complete": false}}).to_string())
                }
                Ok(text) => Reply::new(200, &results(&text, row_limit(&query, c.load(Ordering::SeqCst))).to_string()),
                Err(error) => Reply::new(400, &json!({"type": "validation_error", "detail": error}).to_string()),
            }
        }));
        PostHog { server, engine, hogql, drop, lag, query_fault, rows_cap, accepted, slow: slow_queries, persons }
    }

    pub fn set_drop(&self, rule: impl FnMut(&Value) -> bool + Send + 'static) {
        *self.drop.lock().unwrap() = Box::new(rule);
    }

    pub fn set_lag(&self, rule: impl FnMut(&Value) -> Option<Duration> + Send + 'static) {
        *self.lag.lock().unwrap() = Box::new(rule);
    }

    pub fn set_query_fault(&self, fault: impl FnMut(&str) -> Option<Reply> + Send + 'static) {
        *self.query_fault.lock().unwrap() = Box::new(fault);
    }

    /// The distinct uuids of a UTC day as the engine holds them.
    pub fn uuids_of(&self, day: &str) -> Vec<String> {
        engine_query(
            &self.engine.url,
            &format!("SELECT DISTINCT toString(uuid) FROM {TABLE} WHERE toDate(timestamp) = '{day}' FORMAT TSV"),
        )
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
    }
}

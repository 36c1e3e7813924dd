//! Real parts for the command's tests: an HTTP/1.1 server on loopback (the destination's
//! capture, and the Query API), and a real ClickHouse engine (chdb behind
//! cli/tests/clickhouse/server.py, installed by scripts/bootstrap.sh).
#![allow(dead_code)]

pub mod export;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::Value;

pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

pub enum Reply {
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Closes the connection without a word.
    Drop,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Reply {
        Reply::Answer { status, headers: Vec::new(), body: body.as_bytes().to_vec() }
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A minimal HTTP/1.1 server on 127.0.0.1, keep-alive included, a thread a connection.
pub struct Server {
    pub url: String,
}

impl Server {
    pub fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let handler = handler.clone();
                thread::spawn(move || serve(stream, handler));
            }
        });
        Server { url }
    }
}

fn serve(stream: TcpStream, handler: Handler) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    // A TLS handshake (its first byte 0x16) sent to this plain-http server: answered as
    // plain-http servers do, with a 400 in plain text.
    if reader.fill_buf().is_ok_and(|bytes| bytes.first() == Some(&0x16)) {
        let _ = writer.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        match handler(&Request { method, path, headers, body }) {
            Reply::Drop => return,
            Reply::Answer { status, headers, body } => {
                let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(&body)).is_err() {
                    return;
                }
            }
        }
    }
}

/// What a test makes the destination answer, given a request's events (`None`:
/// capture's own answer).
pub type Fault = Box<dyn FnMut(&[Value]) -> Option<Reply> + Send>;

/// The destination: checks requests as capture does (one token, each event with a name,
/// a distinct_id and a valid uuid) and records the events it accepted.
pub struct Capture {
    pub server: Server,
    pub accepted: Arc<Mutex<Vec<Value>>>,
    /// The uuids of accepted events sent without `historical_migration` (as live events).
    pub live: Arc<Mutex<Vec<String>>>,
    pub requests: Arc<Mutex<usize>>,
    /// Answers for the requests to come, before capture's own (`None`: capture's).
    pub fault: Arc<Mutex<Fault>>,
}

pub fn body_json(request: &Request) -> Option<Value> {
    let bytes = if request.body.starts_with(&[0x1f, 0x8b]) {
        migrator3000::gzip::decompress(&request.body).ok()?
    } else {
        request.body.clone()
    };
    serde_json::from_slice(&bytes).ok()
}

/// Capture's checks of a request, as the real capture makes them: its accepted events,
/// or its answer when it refuses the whole request.
pub fn capture_checks(json: &Value) -> Result<Vec<Value>, Reply> {
    let batch = json["batch"].as_array().cloned().unwrap_or_default();
    if json["api_key"].as_str().unwrap_or("").is_empty() {
        return Err(Reply::new(401, "{\"error\":\"no token\"}"));
    }
    for e in &batch {
        let uuid_ok = e["uuid"].as_str().is_some_and(|u| u.len() == 36);
        if e["event"].as_str().unwrap_or("").is_empty()
            || e["distinct_id"].as_str().unwrap_or("").is_empty()
            || !uuid_ok
        {
            return Err(Reply::new(400, "{\"error\":\"bad event\"}"));
        }
    }
    if batch.is_empty() {
        return Err(Reply::new(400, "{\"error\":\"empty batch\"}"));
    }
    Ok(batch)
}

impl Capture {
    pub fn start() -> Capture {
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let live = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(0));
        let fault: Arc<Mutex<Fault>> = Arc::new(Mutex::new(Box::new(|_| None)));
        let (a, l, r, f) = (accepted.clone(), live.clone(), requests.clone(), fault.clone());
        let server = Server::start(Arc::new(move |request: &Request| {
            *r.lock().unwrap() += 1;
            let Some(json) = body_json(request) else { return Reply::new(400, "{\"error\":\"malformed\"}") };
            let batch = json["batch"].as_array().cloned().unwrap_or_default();
            if let Some(reply) = (f.lock().unwrap())(&batch) {
                return reply;
            }
            match capture_checks(&json) {
                Ok(batch) => {
                    if json["historical_migration"] != Value::Bool(true) {
                        l.lock().unwrap().extend(batch.iter().map(|e| e["uuid"].as_str().unwrap_or("").to_string()));
                    }
                    a.lock().unwrap().extend(batch);
                    Reply::new(200, "{\"status\":1}")
                }
                Err(reply) => reply,
            }
        }));
        Capture { server, accepted, live, requests, fault }
    }

    pub fn uuids(&self) -> Vec<String> {
        self.accepted.lock().unwrap().iter().map(|e| e["uuid"].as_str().unwrap().to_string()).collect()
    }

    pub fn set_fault(&self, fault: impl FnMut(&[Value]) -> Option<Reply> + Send + 'static) {
        *self.fault.lock().unwrap() = Box::new(fault);
    }

    /// Waits, looking every `poll`, until `events` events were accepted (`what`: what a
    /// minute without them means).
    pub fn wait_for(&self, events: usize, what: &str, poll: std::time::Duration) {
        let started = std::time::Instant::now();
        while self.accepted.lock().unwrap().len() < events {
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "{what}");
            thread::sleep(poll);
        }
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A real ClickHouse engine in a process of its own, stopped when dropped.
pub struct ClickHouse {
    pub url: String,
    child: Child,
    _data: TempDir,
}

pub const USER: &str = "migrator";
pub const PASSWORD: &str = "s3cret";

impl ClickHouse {
    pub fn start() -> ClickHouse {
        let python = root().join(".tools/clickhouse-venv/bin/python");
        assert!(
            python.exists(),
            "no ClickHouse engine: run `bash scripts/bootstrap.sh` (it installs chdb into .tools/)"
        );
        let data = TempDir::new("clickhouse");
        let mut child = Command::new(python)
            .arg(root().join("cli/tests/clickhouse/server.py"))
            .args(["--data", data.0.to_str().unwrap(), "--user", USER, "--password", PASSWORD])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("READY ").unwrap_or_else(|| panic!("the engine said {line:?}")).to_string();
        let engine = ClickHouse { url, child, _data: data };
        engine.query(EVENTS_TABLE);
        engine.query(PERSON_TABLES);
        engine
    }

    pub fn query(&self, sql: &str) -> String {
        let answer = ureq::post(&format!("{}/", self.url))
            .set("X-ClickHouse-User", USER)
            .set("X-ClickHouse-Key", PASSWORD)
            .send_string(sql);
        match answer {
            Ok(r) => r.into_string().unwrap(),
            Err(e) => {
                let said = e.to_string();
                panic!(
                    "{sql}: {said} {}",
                    e.into_response().map(|r| r.into_string().unwrap_or_default()).unwrap_or_default()
                )
            }
        }
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PostHog's events tables as on a cluster (posthog/models/event/sql.py): the
/// ReplacingMergeTree `sharded_events` and the Distributed `events` over it.
pub const EVENTS_TABLE: &str = include_str!("../clickhouse/schema.sql");

/// PostHog's person tables (posthog/models/person/sql.py): `person` and
/// `person_distinct_id2`, ReplacingMergeTrees on `version`.
pub const PERSON_TABLES: &str = include_str!("../clickhouse/persons.sql");

/// Inserts `count` realistic events for `team` (row numbers `first..first+count`, about
/// 1.8 KB of properties each), their timestamps spread over `distinct_times` values from
/// `from` on, a minute apart (and a microsecond), random uuids (both halves differ, so
/// ClickHouse's order of them is not their text's). The same SQL seeds the bench.
pub fn insert_events(engine: &ClickHouse, team: u64, first: u64, count: u64, distinct_times: u64, from: &str) {
    insert_events_every(engine, team, first, count, distinct_times, from, 60_000_001);
}

/// As `insert_events`, the timestamps `step_us` microseconds apart.
pub fn insert_events_every(
    engine: &ClickHouse,
    team: u64,
    first: u64,
    count: u64,
    distinct_times: u64,
    from: &str,
    step_us: u64,
) {
    let sql = include_str!("../clickhouse/seed.sql")
        .replace("{step_us}", &step_us.to_string())
        .replace("{team}", &team.to_string())
        .replace("{first}", &first.to_string())
        .replace("{count}", &count.to_string())
        .replace("{distinct_times}", &distinct_times.to_string())
        .replace("{from}", from);
    engine.query(&sql);
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "m3k-{what}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_migrator3000"))
}

pub fn run(args: &[&str]) -> Output {
    cli().args(args).output().unwrap()
}

pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

impl ClickHouse {
    /// The queries the engine answered so far, each with the rows it read from storage.
    pub fn queries(&self) -> Vec<(String, u64)> {
        let text = ureq::get(&format!("{}/queries", self.url)).call().unwrap().into_string().unwrap();
        text.lines()
            .map(|line| {
                let q: Value = serde_json::from_str(line).unwrap();
                (q["query"].as_str().unwrap().to_string(), q["read_rows"].as_u64().unwrap())
            })
            .collect()
    }

    /// The uuids of a team's events in a range, as the engine holds them.
    pub fn uuids(&self, team: u64) -> Vec<String> {
        let text = self.query(&format!("SELECT toString(uuid) FROM default.events WHERE team_id = {team} FORMAT TSV"));
        text.lines().map(str::to_string).collect()
    }
}

/// `posthog --from clickhouse` of team 2's June 2021 from the engine at `engine_url` to
/// the capture at `capture_url`, with `state` as its state file.
pub fn posthog_from_clickhouse(engine_url: &str, capture_url: &str, state: &Path) -> Vec<String> {
    words(&format!(
        "--state {} posthog --from clickhouse --clickhouse-url {engine_url} --clickhouse-user {USER} \
         --clickhouse-password {PASSWORD} --team-id 2 --start 2021-06-01 --end 2021-07-01 --host {capture_url} \
         --project-api-key phc_destination --retry-scale 0.001",
        state.display()
    ))
}

/// A command line as its words (no word here has a space).
pub fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

pub mod browser;
pub mod persons;
pub mod posthog;
pub mod posthog_api;

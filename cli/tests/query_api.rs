//! `migrator3000 posthog --from query-api` against a loopback server that answers as
//! PostHog's Query API runs (posthog/api/query.py): `POST /api/projects/:id/query/` with
//! HogQL and a personal API key; `{"results": [...], "columns": [...]}`; 429 when rate
//! limited; 202 with a `query_status` for a query still running, polled at
//! `GET /api/projects/:id/query/:id/`; 504 for a query that runs too long. It pages with
//! real keyset semantics over events of 1-2 KB, many of which share a timestamp.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

struct Row {
    ts: String,
    uuid: String,
    event: String,
    properties: String,
}

fn rows(count: usize) -> Vec<Row> {
    (0..count)
        .map(|n| Row {
            // Five distinct times on five days: pages of 7 cut through equal timestamps.
            ts: format!("2021-06-0{} 10:00:00.{:06}", 2 + n % 5, n % 5),
            uuid: format!("{:08x}-0000-4000-8000-{:012x}", (n * 7919) % 65536, n),
            event: if n % 3 == 0 { "$pageview".into() } else { "signed up".into() },
            properties: json!({
                "n": n, "$current_url": format!("https://example.com/ünï/{n}"), "$browser": "Chrome",
                "$os": "Mac OS X", "$device_type": "Desktop", "$lib": "web", "$lib_version": "1.150.2",
                "$session_id": format!("0189a{n:027x}"), "$raw_user_agent": "Mozilla/5.0 ".repeat(60),
            })
            .to_string(),
        })
        .collect()
}

/// The quoted texts after each `marker` in a query.
fn literals_after<'a>(query: &'a str, marker: &str) -> Vec<&'a str> {
    query
        .match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = query[at + marker.len()..].strip_prefix('\'')?;
            Some(&rest[..rest.find('\'')?])
        })
        .collect()
}

/// What the fake Query API saw and what it is to answer.
#[derive(Default)]
struct Api {
    /// Answers for the next queries, before the data's own (popped from the end).
    faults: Vec<Reply>,
    /// The same, for page queries only.
    page_faults: Vec<Reply>,
    posts: usize,
    limits: Vec<usize>,
    /// 504 for a page query whose window is longer than this many hours.
    longest_hours: Option<i64>,
    /// Queries answered 202 first, by their id, with the polls each still takes.
    running: HashMap<String, (usize, Value)>,
    /// Answer this many page queries with 202 first.
    slow: usize,
    polls: usize,
}

fn hours_between(from: &str, to: &str) -> i64 {
    let parse = |t: &str| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").unwrap();
    (parse(to) - parse(from)).num_hours()
}

/// Answers HogQL over `data` as the engine would: the days of a range, and keyset pages
/// in (timestamp, uuid) order.
fn answer(data: &[Row], query: &str) -> Value {
    let from = literals_after(query, "timestamp >= toDateTime64(");
    let to = literals_after(query, "timestamp < toDateTime64(");
    let in_range =
        |r: &&Row| from.first().is_none_or(|f| r.ts.as_str() >= *f) && to.first().is_none_or(|t| r.ts.as_str() < *t);
    if query.contains("GROUP BY day") {
        let mut days: Vec<(String, usize, String, String)> = Vec::new();
        for row in data.iter().filter(in_range) {
            let day = row.ts[..10].to_string();
            match days.iter_mut().find(|d| d.0 == day) {
                Some(d) => {
                    d.1 += 1;
                    d.2 = d.2.clone().min(row.ts.clone());
                    d.3 = d.3.clone().max(row.ts.clone());
                }
                None => days.push((day, 1, row.ts.clone(), row.ts.clone())),
            }
        }
        days.sort();
        let results: Vec<Value> = days.into_iter().map(|(d, n, f, l)| json!([d, n, f, l])).collect();
        return json!({"results": results, "columns": ["day", "rows", "first", "last"]});
    }
    let after = literals_after(query, "(timestamp, uuid) > (toDateTime64(")
        .first()
        .map(|ts| (ts.to_string(), literals_after(query, "toUUID(")[0].to_string()));
    let limit: usize = query.rsplit("LIMIT ").next().unwrap().trim().parse().unwrap();
    let results: Vec<Value> = data
        .iter()
        .filter(in_range)
        .filter(|r| after.as_ref().is_none_or(|(ts, uuid)| (&r.ts, &r.uuid) > (ts, uuid)))
        .take(limit)
        .map(|r| json!([r.uuid, r.event, "user-1", r.properties, r.ts, ""]))
        .collect();
    json!({"results": results, "columns": ["toString(uuid)", "event", "distinct_id", "properties", "ts", "elements_chain"], "hasMore": false})
}

fn query_api(data: Vec<Row>, api: Arc<Mutex<Api>>) -> Server {
    let mut data = data;
    data.sort_by(|a, b| (&a.ts, &a.uuid).cmp(&(&b.ts, &b.uuid)));
    Server::start(Arc::new(move |request: &Request| {
        if request.headers.get("authorization").map(String::as_str) != Some("Bearer phx_source_key") {
            return Reply::new(401, "{\"type\":\"authentication_error\",\"detail\":\"Invalid personal API key.\"}");
        }
        let mut api = api.lock().unwrap();
        if request.method == "GET" {
            let id = request.path.trim_start_matches("/api/projects/7/query/").trim_end_matches('/').to_string();
            api.polls += 1;
            let Some((left, results)) = api.running.get_mut(&id) else { return Reply::new(404, "{}") };
            if *left > 0 {
                *left -= 1;
                return Reply::new(202, &json!({"query_status": {"id": id, "complete": false}}).to_string());
            }
            let done = json!({"query_status": {"id": id, "complete": true, "error": false, "results": results}});
            return Reply::new(200, &done.to_string());
        }
        if request.path != "/api/projects/7/query/" {
            return Reply::new(404, "{\"detail\":\"Not found.\"}");
        }
        api.posts += 1;
        if let Some(reply) = api.faults.pop() {
            return reply;
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["query"]["kind"], "HogQLQuery");
        let query = body["query"]["query"].as_str().unwrap();
        if !query.contains("GROUP BY day") {
            let limit: usize = query.rsplit("LIMIT ").next().unwrap().trim().parse().unwrap();
            assert!(limit <= 50_000);
            api.limits.push(limit);
            if let Some(reply) = api.page_faults.pop() {
                return reply;
            }
            let window = (
                literals_after(query, "timestamp >= toDateTime64(")[0],
                literals_after(query, "timestamp < toDateTime64(")[0],
            );
            if api.longest_hours.is_some_and(|most| hours_between(window.0, window.1) > most) {
                return Reply::new(504, "{\"detail\":\"Query timed out\"}");
            }
            if api.slow > 0 {
                api.slow -= 1;
                let id = format!("q{}", api.posts);
                api.running.insert(id.clone(), (1, answer(&data, query)));
                return Reply::new(202, &json!({"query_status": {"id": id, "complete": false}}).to_string());
            }
        }
        Reply::new(200, &answer(&data, query).to_string())
    }))
}

/// The events alone: this fake Query API answers events queries only (the persons step
/// is tested in persons.rs against HogQL answered by a real engine).
fn command(api: &Server, capture: &Capture, state: &str, key: &str, more: &str) -> Vec<String> {
    words(&format!(
        "--state {state} posthog --from query-api --persons skip --query-api-host {} --project-id 7 \
         --personal-api-key {key} --host {} --project-api-key phc_destination --retry-scale 0.001 {more}",
        api.url, capture.server.url
    ))
}

fn in_range(data: &[Row], before: &str) -> HashSet<String> {
    data.iter().filter(|r| r.ts.as_str() < before).map(|r| r.uuid.clone()).collect()
}

#[test]
fn pages_through_equal_timestamps_waiting_out_rate_limits_and_failures() {
    let data = rows(100);
    let expected = in_range(&data, "2021-06-06");
    let api = Arc::new(Mutex::new(Api {
        faults: vec![
            Reply::new(500, ""),
            Reply::Answer {
                status: 429,
                // Waited out at --retry-scale: 30 ms here, not 30 s.
                headers: vec![("Retry-After".into(), "30".into())],
                body: b"{\"detail\":\"Rate limit exceeded\"}".to_vec(),
            },
        ],
        ..Api::default()
    }));
    let server = query_api(data, api.clone());
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let args = command(&server, &capture, state.to_str().unwrap(), "phx_source_key", "--page-size 7 --end 2021-06-06");
    let started = std::time::Instant::now();
    let output = cli().args(args).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("rate limited (HTTP 429"), "{}", text(&output));
    assert!(started.elapsed() < std::time::Duration::from_secs(25), "the waits ignored --retry-scale");
    let received = capture.uuids();
    assert_eq!(received.iter().cloned().collect::<HashSet<_>>(), expected);
    assert_eq!(received.len(), expected.len(), "an event arrived twice");
    // The two failures, the days once, then a page a query (the last one short).
    let api = api.lock().unwrap();
    assert_eq!(api.posts, 2 + 1 + 80usize.div_ceil(7), "{:?}", api.limits);
}

#[test]
fn pages_are_as_large_as_posthog_allows_by_default() {
    let data = rows(60);
    let api = Arc::new(Mutex::new(Api::default()));
    let server = query_api(data, api.clone());
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let output =
        cli().args(command(&server, &capture, state.to_str().unwrap(), "phx_source_key", "")).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(capture.uuids().len(), 60);
    let api = api.lock().unwrap();
    assert_eq!(api.limits, [50_000], "one page for the whole range");
}

#[test]
fn a_window_that_times_out_is_cut_and_read_on() {
    let data = rows(100);
    let expected: HashSet<String> = data.iter().map(|r| r.uuid.clone()).collect();
    // Too much for the source: any window over 6 hours (and one 512 too).
    let api = Arc::new(Mutex::new(Api {
        longest_hours: Some(6),
        page_faults: vec![Reply::new(512, "{\"detail\":\"Estimated query execution time is too long\"}")],
        ..Api::default()
    }));
    let server = query_api(data, api.clone());
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let output =
        cli().args(command(&server, &capture, state.to_str().unwrap(), "phx_source_key", "")).output().unwrap();
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("HTTP 504") && said.contains("reading up to"), "{said}");
    let received = capture.uuids();
    assert_eq!(received.iter().cloned().collect::<HashSet<_>>(), expected);
    assert_eq!(received.len(), 100, "an event arrived twice");
}

#[test]
fn a_query_still_running_is_polled_not_sent_again() {
    let data = rows(40);
    let api = Arc::new(Mutex::new(Api { slow: 2, ..Api::default() }));
    let server = query_api(data, api.clone());
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let args = command(&server, &capture, state.to_str().unwrap(), "phx_source_key", "--page-size 20");
    let output = cli().args(args).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(capture.uuids().len(), 40);
    let api = api.lock().unwrap();
    // The days, two full pages and the empty one after: each query sent once.
    assert_eq!(api.posts, 1 + 3, "a running query was sent again");
    assert_eq!(api.polls, 4, "two queries polled twice each");
}

#[test]
fn the_hourly_budget_of_queries_is_planned_and_said() {
    let data = rows(100);
    let api = Arc::new(Mutex::new(Api::default()));
    let server = query_api(data, api.clone());
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let args =
        command(&server, &capture, state.to_str().unwrap(), "phx_source_key", "--page-size 5 --queries-per-hour 10");
    let mut child = cli().args(args).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        said.push(line.clone());
        if line.contains("queries an hour per key") {
            break;
        }
        assert!(said.len() < 20, "{said:?}");
    }
    // 20 pages at 10 queries an hour: the 11th waits for the hour.
    assert!(said.last().unwrap().contains("20 pages of 5 take at least 2.0 h"), "{said:?}");
    while let Some(Ok(line)) = lines.next() {
        if line.contains("PostHog's limit for HogQL") {
            said.push(line);
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(said.last().unwrap().contains("10 queries in the last hour"), "{said:?}");
    assert_eq!(api.lock().unwrap().posts, 10, "it went over the budget");
}

#[test]
fn a_refused_personal_key_is_a_clear_error_and_nothing_is_sent() {
    let api = Arc::new(Mutex::new(Api::default()));
    let server = query_api(rows(10), api);
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let output = cli().args(command(&server, &capture, state.to_str().unwrap(), "phx_wrong", "")).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let said = text(&output);
    assert!(said.contains("refused the personal API key (HTTP 401") && said.contains("Query Read"), "{said}");
    assert!(capture.uuids().is_empty());
    assert!(!state.exists(), "nothing was read, nothing is stored");
}

#[test]
fn a_source_query_api_never_in_contact_is_named_by_its_flag_in_seconds() {
    // A port nothing listens on: every connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let line = format!(
        "--state {} posthog --from query-api --query-api-host {host} --project-id 7 --personal-api-key phx_k --host \
         {} --project-api-key phc_destination",
        state.display(),
        capture.server.url
    );
    let verify_line = format!(
        "--state {} verify --from query-api --query-api-host {host} --project-id 7 --personal-api-key phx_k \
         --destination-query-api-host {} --destination-project-id 1 --destination-personal-api-key phx_d",
        state.display(),
        capture.server.url
    );
    for (what, line) in [("posthog", line), ("verify", verify_line)] {
        let started = Instant::now();
        let mut child = cli().args(words(&line)).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // With the default waits: named within seconds, not asked again for minutes.
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        let said = text(&output);
        assert!(started.elapsed() < Duration::from_secs(15), "{what}: still asking after 15 s: {said}");
        assert_eq!(output.status.code(), Some(1), "{what}: {said}");
        let first = said.lines().next().unwrap_or_default();
        assert!(
            first.contains(&format!("the Query API at {host} cannot be reached")) && first.contains("--query-api-host"),
            "{what}: {said}"
        );
    }
    assert_eq!(*capture.requests.lock().unwrap(), 0);
}

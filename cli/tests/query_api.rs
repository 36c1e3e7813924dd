//! `migrator3000 posthog --from query-api` against a loopback server that answers as
//! PostHog's Query API documents (`POST /api/projects/:id/query/`, HogQL, a personal API
//! key; `{"results": [...], "columns": [...]}`; 429 when rate limited), paging with
//! real keyset semantics over events many of which share a timestamp.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
            // Five distinct times: pages of 7 cut through equal timestamps.
            ts: format!("2021-06-0{} 10:00:00.{:06}", 2 + n % 5, n % 5),
            uuid: format!("{:08x}-0000-4000-8000-{:012x}", (n * 7919) % 65536, n),
            event: if n % 3 == 0 { "$pageview".into() } else { "signed up".into() },
            properties: json!({"n": n, "$current_url": format!("https://example.com/{n}")}).to_string(),
        })
        .collect()
}

/// The quoted text after `marker` in a query.
fn literal_after<'a>(query: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &query[query.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('\'')?;
    Some(&rest[..rest.find('\'')?])
}

/// Answers HogQL pages over `data`, in the engine's order of (timestamp, uuid).
fn query_api(data: Vec<Row>, faults: Arc<Mutex<Vec<Reply>>>, calls: Arc<AtomicUsize>) -> Server {
    let mut data = data;
    data.sort_by(|a, b| (&a.ts, &a.uuid).cmp(&(&b.ts, &b.uuid)));
    Server::start(Arc::new(move |request: &Request| {
        calls.fetch_add(1, Ordering::SeqCst);
        if request.path != "/api/projects/7/query/" {
            return Reply::new(404, "{\"detail\":\"Not found.\"}");
        }
        if request.headers.get("authorization").map(String::as_str) != Some("Bearer phx_source_key") {
            return Reply::new(401, "{\"type\":\"authentication_error\",\"detail\":\"Invalid personal API key.\"}");
        }
        if let Some(reply) = faults.lock().unwrap().pop() {
            return reply;
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["query"]["kind"], "HogQLQuery");
        let query = body["query"]["query"].as_str().unwrap();
        let from = literal_after(query, "timestamp >= toDateTime64(").unwrap();
        let to = literal_after(query, "timestamp < toDateTime64(").unwrap();
        let after = literal_after(query, "(timestamp, uuid) > (toDateTime64(")
            .map(|ts| (ts.to_string(), literal_after(query, "toUUID(").unwrap().to_string()));
        let limit: usize = query.rsplit("LIMIT ").next().unwrap().trim().parse().unwrap();
        assert!(limit <= 50_000);
        let results: Vec<Value> = data
            .iter()
            .filter(|r| r.ts.as_str() >= from && r.ts.as_str() < to)
            .filter(|r| after.as_ref().is_none_or(|(ts, uuid)| (&r.ts, &r.uuid) > (ts, uuid)))
            .take(limit)
            .map(|r| json!([r.uuid, r.event, "user-1", r.properties, r.ts, ""]))
            .collect();
        let answer = json!({"results": results, "columns": ["toString(uuid)", "event", "distinct_id", "properties", "ts", "elements_chain"], "hasMore": false});
        Reply::new(200, &answer.to_string())
    }))
}

fn command(api: &Server, capture: &Capture, state: &str, key: &str) -> Vec<String> {
    words(&format!(
        "--state {state} posthog --from query-api --query-api-host {} --project-id 7 --personal-api-key {key} \
         --start 2021-06-01 --end 2021-06-06 --host {} --project-api-key phc_destination --page-size 7 \
         --retry-scale 0.001",
        api.url, capture.server.url
    ))
}

#[test]
fn pages_through_equal_timestamps_waiting_out_rate_limits_and_failures() {
    let data = rows(100);
    // One of them is after the range.
    let in_range: HashSet<String> =
        data.iter().filter(|r| r.ts.as_str() < "2021-06-06").map(|r| r.uuid.clone()).collect();
    let faults = Arc::new(Mutex::new(vec![
        Reply::new(500, ""),
        Reply::Answer {
            status: 429,
            headers: vec![("Retry-After".into(), "1".into())],
            body: b"{\"detail\":\"Rate limit exceeded\"}".to_vec(),
        },
    ]));
    let calls = Arc::new(AtomicUsize::new(0));
    let api = query_api(data, faults, calls.clone());
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let output = cli().args(command(&api, &capture, state.to_str().unwrap(), "phx_source_key")).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("rate limited (HTTP 429"), "{}", text(&output));
    let received = capture.uuids();
    assert_eq!(received.iter().cloned().collect::<HashSet<_>>(), in_range);
    assert_eq!(received.len(), in_range.len(), "an event arrived twice");
    // A page a query (no count per page), the two failures again, and the empty last page.
    assert_eq!(calls.load(Ordering::SeqCst), in_range.len().div_ceil(7) + 2 + 1);
}

#[test]
fn a_refused_personal_key_is_a_clear_error_and_nothing_advances() {
    let api = query_api(rows(10), Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicUsize::new(0)));
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let output = cli().args(command(&api, &capture, state.to_str().unwrap(), "phx_wrong")).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let said = text(&output);
    assert!(said.contains("refused the personal API key (HTTP 401") && said.contains("Query Read"), "{said}");
    assert!(capture.uuids().is_empty());
    assert!(text(&run(&["--state", state.to_str().unwrap(), "status"])).contains("not started; 0 read"));
}

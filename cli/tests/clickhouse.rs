//! `migrator3000 posthog --from clickhouse` against a real ClickHouse engine and a
//! loopback capture server: every event once, in pages that cut through equal
//! timestamps; crash and resume; wrong passwords and keys.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::*;

fn args<'a>(engine: &'a ClickHouse, capture: &'a Capture, state: &'a str, team: &'a str) -> Vec<String> {
    [
        "--state",
        state,
        "posthog",
        "--from",
        "clickhouse",
        "--clickhouse-url",
        &engine.url,
        "--clickhouse-user",
        USER,
        "--clickhouse-password",
        PASSWORD,
        "--team-id",
        team,
        "--start",
        "2021-06-01",
        "--end",
        "2021-07-01",
        "--host",
        &capture.server.url,
        "--project-api-key",
        "phc_destination",
        "--retry-scale",
        "0.001",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run_with(base: &[String], more: &[&str]) -> std::process::Output {
    cli().args(base).args(more).output().unwrap()
}

#[test]
fn every_event_arrives_once_across_pages_of_equal_timestamps() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 1000, 3, "2021-06-10 00:00:00");
    insert_events(&engine, 3, 1000, 200, 3, "2021-06-10 00:00:00"); // another team
    insert_events(&engine, 2, 1200, 50, 1, "2021-07-01 00:00:00"); // after the range
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("state.sqlite");
    let base = args(&engine, &capture, state.to_str().unwrap(), "2");
    let output = run_with(&base, &["--page-size", "7", "--concurrency", "3", "--batch-size", "5"]);
    assert!(output.status.success(), "{}", text(&output));
    let received = capture.uuids();
    let distinct: HashSet<_> = received.iter().cloned().collect();
    let expected: HashSet<_> = engine.uuids(2).into_iter().filter(|_| true).collect();
    let in_range: HashSet<_> = engine
        .query("SELECT toString(uuid) FROM default.events WHERE team_id = 2 AND timestamp < '2021-07-01' FORMAT TSV")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(in_range.len(), 1000);
    assert_eq!(distinct, in_range, "events lost or from outside the team or range");
    assert!(expected.len() > in_range.len());
    assert_eq!(received.len(), 1000, "an event arrived twice");
    // Microseconds kept, elements chain carried, person properties as they were.
    let events = capture.accepted.lock().unwrap().clone();
    assert!(events.iter().any(|e| e["timestamp"].as_str().unwrap().ends_with(".000001Z")), "microseconds lost");
    let autocapture = events.iter().find(|e| e["event"] == "$autocapture").unwrap();
    let chain = engine.query(&format!(
        "SELECT elements_chain FROM default.events WHERE uuid = toUUID('{}') FORMAT JSONEachRow",
        autocapture["uuid"].as_str().unwrap()
    ));
    let chain: serde_json::Value = serde_json::from_str(&chain).unwrap();
    assert!(chain["elements_chain"].as_str().unwrap().starts_with("button.btn.btn-primary:"), "{chain}");
    assert_eq!(autocapture["properties"]["$elements_chain"], chain["elements_chain"]);
    let identify = events.iter().find(|e| e["event"] == "$identify").unwrap();
    assert!(identify["properties"]["$set"]["email"].as_str().unwrap().ends_with("@example.com"));
    assert_eq!(identify["properties"]["$geoip_disable"], true);
    // The state says it is done, and a second run sends nothing more.
    let status = run(&["--state", state.to_str().unwrap(), "status"]);
    assert!(text(&status).contains("complete: up to"), "{}", text(&status));
    assert!(text(&status).contains("1000 read (100% of 1000), 1000 delivered, 0 rejected"), "{}", text(&status));
    let again = run_with(&base, &[]);
    assert!(text(&again).contains("already complete"), "{}", text(&again));
    assert_eq!(capture.uuids().len(), 1000);
}

#[test]
fn a_run_killed_mid_way_resumes_and_loses_nothing() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 3000, 40, "2021-06-02 00:00:00");
    let capture = Capture::start();
    // A slow destination, so that the kill lands mid-run.
    capture.set_fault(|_| {
        std::thread::sleep(Duration::from_millis(15));
        None
    });
    let dir = TempDir::new("state");
    let state = dir.0.join("state.sqlite");
    let base = args(&engine, &capture, state.to_str().unwrap(), "2");
    let mut child = cli().args(&base).args(["--page-size", "50", "--batch-size", "25"]).spawn().unwrap();
    let started = Instant::now();
    while capture.uuids().len() < 600 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = capture.uuids().len();
    assert!((600..3000).contains(&before), "{before} delivered before the kill");
    let output = run_with(&base, &["--page-size", "50", "--batch-size", "25"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("resuming after"), "{}", text(&output));
    let received = capture.uuids();
    let distinct: HashSet<_> = received.iter().cloned().collect();
    assert_eq!(distinct, engine.uuids(2).into_iter().collect::<HashSet<_>>(), "events lost");
    // Sent again only what was in flight at the kill: with the same uuids, a few pages.
    assert!(received.len() - distinct.len() <= 400, "{} events sent twice", received.len() - distinct.len());
}

#[test]
fn a_wrong_clickhouse_password_says_so_and_moves_nothing() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 10, 1, "2021-06-02 00:00:00");
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("state.sqlite");
    let mut base = args(&engine, &capture, state.to_str().unwrap(), "2");
    let at = base.iter().position(|a| a == PASSWORD).unwrap();
    base[at] = "wrong".into();
    let output = run_with(&base, &[]);
    assert_eq!(output.status.code(), Some(1));
    let said = text(&output);
    assert!(
        said.contains("ClickHouse refused the user or password") && said.contains("--clickhouse-password"),
        "{said}"
    );
    assert!(capture.uuids().is_empty());
    let table = run_with(&args(&engine, &capture, state.to_str().unwrap(), "2"), &["--clickhouse-table", "nope"]);
    assert!(text(&table).contains("--clickhouse-table"), "{}", text(&table));
}

#[test]
fn a_wrong_destination_key_stops_with_nothing_advanced_and_a_rerun_sends_everything() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 120, 4, "2021-06-02 00:00:00");
    let capture = Capture::start();
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = refused.clone();
    capture.set_fault(move |_| {
        flag.load(std::sync::atomic::Ordering::SeqCst).then(|| Reply::new(401, "{\"error\":\"invalid token\"}"))
    });
    let dir = TempDir::new("state");
    let state = dir.0.join("state.sqlite");
    let base = args(&engine, &capture, state.to_str().unwrap(), "2");
    let output = run_with(&base, &["--page-size", "30"]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output));
    assert!(text(&output).contains("refused the project API key (HTTP 401)"), "{}", text(&output));
    let status = text(&run(&["--state", state.to_str().unwrap(), "status"]));
    assert!(status.contains("not started; 0 read"), "{status}");
    refused.store(false, std::sync::atomic::Ordering::SeqCst);
    let output = run_with(&base, &["--page-size", "30"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(capture.uuids().into_iter().collect::<HashSet<_>>(), engine.uuids(2).into_iter().collect());
}

#[test]
fn dry_run_reads_and_transforms_but_sends_and_keeps_nothing() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 40, 2, "2021-06-02 00:00:00");
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("state.sqlite");
    let output = run_with(&args(&engine, &capture, state.to_str().unwrap(), "2"), &["--dry-run", "--page-size", "9"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("Dry run: 40 events read; 40 would be sent"), "{}", text(&output));
    assert_eq!(*capture.requests.lock().unwrap(), 0);
    assert!(!state.exists());
}

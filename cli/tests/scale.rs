//! `migrator3000 posthog --from clickhouse` as a new user runs it on real data: PostHog's
//! real DDL (a ReplacingMergeTree behind a Distributed table), events of 1-2 KB, the
//! default flags, reruns after a kill or with a wider range, a second project on the
//! same host, events older than 2020 and younger than 48 hours, rows not yet merged,
//! and the failures a user meets first.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use support::*;

/// The command with only the flags a user must give.
fn command(engine: &ClickHouse, capture: &Capture, state: &str, key: &str) -> Vec<String> {
    words(&format!(
        "--state {state} posthog --from clickhouse --clickhouse-url {} --clickhouse-user {USER} \
         --clickhouse-password {PASSWORD} --team-id 2 --host {} --project-api-key {key} --retry-scale 0.001",
        engine.url, capture.server.url
    ))
}

fn run_with(base: &[String], more: &[&str]) -> std::process::Output {
    cli().args(base).args(more).output().unwrap()
}

fn counts(uuids: &[String]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for uuid in uuids {
        *counts.entry(uuid.clone()).or_insert(0) += 1;
    }
    counts
}

fn clickhouse_time(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

#[test]
fn default_flags_copy_realistic_events_whose_pages_are_over_ten_mebibytes() {
    let engine = ClickHouse::start();
    // 12,000 events of about 1.8 KB: a page of the default 10,000 is some 18 MB.
    insert_events(&engine, 2, 0, 12_000, 300, "2021-06-01 00:00:00");
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let output = run_with(&command(&engine, &capture, state.to_str().unwrap(), "phc_destination"), &[]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    let received = capture.uuids();
    assert_eq!(received.iter().cloned().collect::<HashSet<_>>(), engine.uuids(2).into_iter().collect());
    assert_eq!(received.len(), 12_000, "an event arrived twice");
    // The first line says what is copied: the source's own first and last events.
    let first = String::from_utf8_lossy(&output.stderr).lines().next().unwrap_or_default().to_string();
    assert!(
        first.contains("12000 events")
            && first.contains("from 2021-06-01T00:00:00.000Z")
            && first.contains("the source's first and last"),
        "{first}"
    );
}

#[test]
fn a_migration_reads_each_row_about_once_not_once_a_page() {
    let engine = ClickHouse::start();
    // Four days across a month's end (two partitions), 24 pages of 500.
    insert_events_every(&engine, 2, 0, 12_000, 1200, "2021-06-29 00:00:00", 288_000_000);
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let base = command(&engine, &capture, state.to_str().unwrap(), "phc_destination");
    let output = run_with(&base, &["--page-size", "500", "--debug"]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert_eq!(capture.uuids().len(), 12_000);
    let ours: Vec<(String, u64)> =
        engine.queries().into_iter().filter(|(q, _)| q.starts_with("SELECT") && q.contains("team_id = 2")).collect();
    let read: u64 = ours.iter().map(|(_, rows)| rows).sum();
    // Keyset pages alone read the whole range 24 times (about 290,000 rows); a scan a
    // window reads each row about once (and the range's count reads the timestamps).
    assert!(read <= 6 * 12_000, "the migration read {read} rows to copy 12,000 in {} queries", ours.len());
    let pages = ours.iter().filter(|(q, _)| q.contains("ORDER BY timestamp, uuid")).count();
    assert!(pages <= 4, "{pages} page queries for 4 days: one a page, not one a window");
    assert!(said.contains("rows read by ClickHouse"), "--debug does not report the rows read: {said}");
}

#[test]
fn a_rerun_without_end_continues_the_run_it_killed() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 6000, 60, "2021-06-02 00:00:00");
    let capture = Capture::start();
    capture.set_fault(|_| {
        std::thread::sleep(Duration::from_millis(15));
        None
    });
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let base = command(&engine, &capture, state.to_str().unwrap(), "phc_destination");
    let flags = ["--page-size", "500", "--batch-size", "100"];
    let mut child = cli().args(&base).args(flags).stderr(std::process::Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while capture.uuids().len() < 1500 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = capture.uuids().len();
    assert!((1500..6000).contains(&before), "{before} delivered before the kill");
    let output = run_with(&base, &flags);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("resuming after"), "the rerun started over: {said}");
    let received = capture.uuids();
    assert_eq!(received.iter().cloned().collect::<HashSet<_>>(), engine.uuids(2).into_iter().collect());
    assert!(received.len() - 6000 <= 1500, "{} events sent twice", received.len() - 6000);
    let status = text(&run(&["--state", state.to_str().unwrap(), "status"]));
    assert!(status.contains("complete") && !status.contains("in progress"), "{status}");
}

#[test]
fn a_rerun_with_a_wider_range_copies_only_what_no_run_settled() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 1000, 100, "2021-06-02 00:00:00");
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let base = command(&engine, &capture, state.to_str().unwrap(), "phc_destination");
    let first = run_with(&base, &["--start", "2021-06-02T00:30:00Z", "--end", "2021-06-02T01:00:00Z"]);
    assert!(first.status.success(), "{}", text(&first));
    let after_first = capture.uuids().len();
    assert!(after_first > 0 && after_first < 1000, "{after_first}");
    // The whole source now: only what the first run did not copy is sent.
    let wider = run_with(&base, &[]);
    let said = text(&wider);
    assert!(wider.status.success(), "{said}");
    assert!(said.contains("copied before"), "{said}");
    let received = capture.uuids();
    assert_eq!(received.iter().cloned().collect::<HashSet<_>>(), engine.uuids(2).into_iter().collect());
    assert_eq!(received.len(), 1000, "{} events were sent again", received.len() - 1000);
    let again = run_with(&base, &[]);
    assert!(text(&again).contains("already complete"), "{}", text(&again));
    assert_eq!(capture.uuids().len(), 1000);
}

#[test]
fn a_second_project_on_the_same_host_is_a_migration_of_its_own() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 200, 10, "2021-06-02 00:00:00");
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let range = ["--start", "2021-06-01", "--end", "2021-07-01"];
    let one = run_with(&command(&engine, &capture, state.to_str().unwrap(), "phc_project_one"), &range);
    assert!(one.status.success(), "{}", text(&one));
    let two = run_with(&command(&engine, &capture, state.to_str().unwrap(), "phc_project_two"), &range);
    let said = text(&two);
    assert!(two.status.success(), "{said}");
    assert!(!said.contains("already complete"), "{said}");
    let counts = counts(&capture.uuids());
    assert_eq!(counts.len(), 200);
    assert!(counts.values().all(|n| *n == 2), "each event once into each project");
}

#[test]
fn the_whole_source_by_default_and_events_younger_than_48_hours_go_live() {
    let engine = ClickHouse::start();
    let now = Utc::now();
    insert_events(&engine, 2, 0, 50, 50, "2019-03-01 00:00:00");
    insert_events(&engine, 2, 50, 100, 100, "2021-06-02 00:00:00");
    insert_events(&engine, 2, 150, 40, 40, &clickhouse_time(now - chrono::Duration::hours(2)));
    // Clock-skewed clients: a day ahead.
    insert_events(&engine, 2, 190, 10, 10, &clickhouse_time(now + chrono::Duration::hours(24)));
    let young: HashSet<String> = engine
        .query(&format!(
            "SELECT toString(uuid) FROM default.events WHERE timestamp > '{}' FORMAT TSV",
            clickhouse_time(now - chrono::Duration::hours(3))
        ))
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(young.len(), 50);
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let output = run_with(&command(&engine, &capture, state.to_str().unwrap(), "phc_destination"), &[]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert_eq!(capture.uuids().into_iter().collect::<HashSet<_>>(), engine.uuids(2).into_iter().collect());
    assert_eq!(capture.uuids().len(), 200);
    let live: HashSet<String> = capture.live.lock().unwrap().iter().cloned().collect();
    assert_eq!(live, young, "events younger than 48 hours go without historical_migration, the others with it");
    assert!(said.contains("50 events younger than 48 hours"), "{said}");
    assert!(said.contains("from 2019-03-01T00:00:00.000Z"), "{said}");
}

#[test]
fn rows_not_yet_merged_are_counted_apart_and_sent_once() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 300, 30, "2021-06-02 00:00:00");
    // The same rows again, as a retried ingestion writes them: a part of their own that
    // the ReplacingMergeTree has not merged yet.
    engine.query(
        "INSERT INTO default.sharded_events SELECT * FROM default.sharded_events WHERE team_id = 2 ORDER BY uuid \
         LIMIT 40",
    );
    assert_eq!(engine.query("SELECT count() FROM default.events WHERE team_id = 2 FORMAT TSV").trim(), "340");
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let output = run_with(&command(&engine, &capture, state.to_str().unwrap(), "phc_destination"), &[]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert_eq!(capture.uuids().len(), 300, "a duplicate row was sent twice");
    assert!(said.contains("300 delivered"), "{said}");
    assert!(said.contains("40 rows at the source were duplicates"), "{said}");
}

#[test]
fn an_unreachable_destination_is_named_at_once_and_the_run_stops_early() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 100, 10, "2021-06-02 00:00:00");
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    for (host, cause) in [("http://127.0.0.1:9", "refused"), ("http://destination.invalid", "resolve")] {
        let args = words(&format!(
            "--state {} posthog --from clickhouse --clickhouse-url {} --clickhouse-user {USER} --clickhouse-password \
             {PASSWORD} --team-id 2 --host {host} --project-api-key phc_destination",
            state.display(),
            engine.url
        ));
        let started = Instant::now();
        let output = cli().args(args).output().unwrap();
        let said = text(&output);
        assert!(started.elapsed() < Duration::from_secs(120), "it tried for {:?}", started.elapsed());
        assert_eq!(output.status.code(), Some(1), "{said}");
        assert!(said.to_lowercase().contains(cause) && said.contains("--host"), "{said}");
    }
    let status = text(&run(&["--state", state.to_str().unwrap(), "status"]));
    assert!(status.contains("0 delivered"), "{status}");
}

#[test]
fn refusals_and_usage_errors_have_codes_of_their_own_and_speak_in_flags() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 30, 3, "2021-06-02 00:00:00");
    let capture = Capture::start();
    capture.set_fault(|_| Some(Reply::new(401, "{\"error\":\"invalid token\"}")));
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let base = command(&engine, &capture, state.to_str().unwrap(), "phc_destination");
    let refused = run_with(&base, &[]);
    let said = text(&refused);
    assert_eq!(refused.status.code(), Some(4), "{said}");
    assert!(said.contains("--project-api-key") && said.contains("--host"), "{said}");
    assert!(!said.contains("saving") && !said.contains("setting"), "the app's words: {said}");
    let usage = cli().args(["--state", state.to_str().unwrap(), "posthog", "--from", "clickhouse"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));
    let mut other_team = base.clone();
    let at = other_team.iter().position(|a| a == "--team-id").unwrap();
    other_team[at + 1] = "99".into();
    let no_team = run_with(&other_team, &[]);
    let said = text(&no_team);
    assert_eq!(no_team.status.code(), Some(1), "{said}");
    assert!(said.contains("no events of team 99") && said.contains("--team-id"), "{said}");
}

#[test]
fn resend_parked_says_what_is_still_parked_when_the_destination_is_still_down() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 20, 2, "2021-06-02 00:00:00");
    let capture = Capture::start();
    capture.set_fault(|_| Some(Reply::new(503, "")));
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let mut base = command(&engine, &capture, state.to_str().unwrap(), "phc_destination");
    let at = base.iter().position(|a| a == "--retry-scale").unwrap();
    base[at + 1] = "0.00001".into();
    let first = run_with(&base, &[]);
    assert_eq!(first.status.code(), Some(3), "{}", text(&first));
    let resent = run(&["--state", state.to_str().unwrap(), "resend-parked", "--retry-scale", "0.00001"]);
    let said = text(&resent);
    assert_eq!(resent.status.code(), Some(3), "{said}");
    assert!(said.contains("20 events are still parked") && !said.contains("Done"), "{said}");
}

//! Every event of a range is read, whatever its timestamp: events stamped before 1970 and
//! after 2149 (outside ClickHouse's `Date`, which `toDate` clamps or wraps), at the last
//! microsecond of a day and sharing it, on PostHog's real events tables, with the
//! command's default flags, from ClickHouse and from the Query API, and `verify` counts
//! them on their own days. A run that reads fewer events than its source counted never
//! says it is complete, and a rerun reads them again. A range or a start that holds
//! nothing is said in terms of its flags.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering;

use support::posthog::{PostHog, PERSONAL_KEY, PROJECT};
use support::*;

/// The days the edge events are on, with how many each holds.
const DAYS: [(&str, &str); 5] =
    [("1969-12-31", "1"), ("2021-06-10", "300"), ("2021-06-11", "3"), ("2021-06-12", "1"), ("2262-04-11", "1")];

/// 300 ordinary events on 2021-06-10, and events at the edges: three sharing the last
/// microsecond of 2021-06-11, one at the first of the next day, one half a second before
/// 1970, one on 2262-04-11. The number of events.
fn stamped_at_the_edges(engine: &ClickHouse, team: u64) -> usize {
    insert_events(engine, team, 0, 300, 300, "2021-06-10 00:00:00");
    insert_events(engine, team, 300, 3, 1, "2021-06-11 23:59:59.999999");
    insert_events(engine, team, 303, 1, 1, "2021-06-12 00:00:00");
    insert_events(engine, team, 304, 1, 1, "1969-12-31 23:59:59.500000");
    insert_events(engine, team, 305, 1, 1, "2262-04-11 00:00:00");
    306
}

fn uuids(engine: &ClickHouse, team: u64) -> HashSet<String> {
    engine.uuids(team).into_iter().collect()
}

fn run_line(line: &str) -> Output {
    cli().args(words(line)).output().unwrap()
}

fn clickhouse_flags(engine: &ClickHouse) -> String {
    format!(
        "--from clickhouse --clickhouse-url {} --clickhouse-user {USER} --clickhouse-password {PASSWORD} --team-id 2",
        engine.url
    )
}

fn query_api_flags(source: &PostHog) -> String {
    format!(
        "--from query-api --query-api-host {} --project-id {PROJECT} --personal-api-key {PERSONAL_KEY}",
        source.server.url
    )
}

fn migrate(state: &Path, from: &str, destination: &PostHog) -> Output {
    run_line(&format!(
        "--state {} posthog {from} --host {} --project-api-key phc_destination --retry-scale 0.001",
        state.display(),
        destination.server.url
    ))
}

fn verify(state: &Path, from: &str, destination: &PostHog, more: &str) -> Output {
    run_line(&format!(
        "--state {} verify {from} --destination-query-api-host {} --destination-project-id {PROJECT} \
         --destination-personal-api-key {PERSONAL_KEY} --settle-minutes 0 --retry-scale 0.01 {more}",
        state.display(),
        destination.server.url
    ))
}

/// The table line of `day` in an output, as its words.
fn row<'a>(said: &'a str, day: &str) -> Vec<&'a str> {
    said.lines()
        .rev()
        .find(|l| l.starts_with(day))
        .unwrap_or_else(|| panic!("no row for {day}: {said}"))
        .split_whitespace()
        .collect()
}

fn first_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).lines().next().unwrap_or_default().to_string()
}

/// The migration delivered every event, and verify counts each on its own UTC day.
fn every_event_arrives_and_is_counted_on_its_day(
    migrated: &Output,
    verified: &Output,
    events: usize,
    expected: &HashSet<String>,
    destination: &PostHog,
) {
    let said = text(migrated);
    assert_eq!(migrated.status.code(), Some(0), "{said}");
    assert!(said.contains(&format!("{events} events read, {events} delivered")), "{said}");
    assert_eq!(&uuids(&destination.engine, PROJECT), expected, "events missing at the destination: {said}");
    let said = text(verified);
    assert_eq!(verified.status.code(), Some(0), "{said}");
    for (day, count) in DAYS {
        assert_eq!(row(&said, day)[..3], [day, count, count], "{said}");
    }
    let last = String::from_utf8_lossy(&verified.stdout).lines().last().unwrap_or_default().to_string();
    assert_eq!(
        last,
        format!("Everything arrived: the {events} events of 5 days at the source are all at the destination.")
    );
}

#[test]
fn events_of_1969_2262_and_a_days_last_microsecond_arrive_from_clickhouse_and_verify_counts_them() {
    let engine = ClickHouse::start();
    let events = stamped_at_the_edges(&engine, 2);
    let destination = PostHog::start();
    let dir = TempDir::new("range");
    let state = dir.0.join("s.sqlite");
    let from = clickhouse_flags(&engine);
    let migrated = migrate(&state, &from, &destination);
    let verified = verify(&state, &from, &destination, "");
    every_event_arrives_and_is_counted_on_its_day(&migrated, &verified, events, &uuids(&engine, 2), &destination);
    // A range of its own around the edge events, given as days: each is read.
    let output = verify(&state, &from, &destination, "--start 1969-12-31 --end 1970-01-02");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(row(&text(&output), "1969-12-31")[..3], ["1969-12-31", "1", "1"]);
}

#[test]
fn events_of_1969_2262_and_a_days_last_microsecond_arrive_from_the_query_api_and_verify_counts_them() {
    let source = PostHog::start();
    let events = stamped_at_the_edges(&source.engine, PROJECT);
    let destination = PostHog::start();
    let dir = TempDir::new("range");
    let state = dir.0.join("s.sqlite");
    let from = query_api_flags(&source);
    let migrated = migrate(&state, &from, &destination);
    let verified = verify(&state, &from, &destination, "");
    let expected = uuids(&source.engine, PROJECT);
    every_event_arrives_and_is_counted_on_its_day(&migrated, &verified, events, &expected, &destination);
}

/// A rerun after a run that fell short: still short while the source cuts its answers,
/// then complete once it does not, every event delivered.
fn short_until_the_limit_is_lifted(state: &Path, from: &str, destination: &PostHog, expected: &HashSet<String>) {
    let output = migrate(state, from, destination);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(6), "{said}");
    assert!(!said.contains("complete."), "{said}");
    assert!(
        said.contains("Not complete: ")
            && said.contains("events the source holds were not read, in 2021-06-10T00:00:00.000Z to ")
            && said.contains("(500 there, "),
        "{said}"
    );
    let status = text(&run(&["--state", state.to_str().unwrap(), "status"]));
    assert!(status.contains("in progress"), "the window is left to read again: {status}");
    // Looked at again: still short while the answers are cut.
    let again = migrate(state, from, destination);
    assert_eq!(again.status.code(), Some(6), "{}", text(&again));
    assert!(!text(&again).contains("already complete"), "{}", text(&again));
    assert_ne!(&uuids(&destination.engine, PROJECT), expected);
}

#[test]
fn a_query_api_that_cuts_its_answers_short_is_never_complete_and_a_rerun_reads_again() {
    let source = PostHog::start();
    insert_events(&source.engine, PROJECT, 0, 500, 500, "2021-06-10 00:00:00");
    // Answers of at most 100 rows, whatever the LIMIT (as older PostHogs cut them at 10,000).
    source.rows_cap.store(100, Ordering::SeqCst);
    let destination = PostHog::start();
    let dir = TempDir::new("range");
    let state = dir.0.join("s.sqlite");
    let from = query_api_flags(&source);
    let expected = uuids(&source.engine, PROJECT);
    short_until_the_limit_is_lifted(&state, &from, &destination, &expected);
    source.rows_cap.store(50_000, Ordering::SeqCst);
    let output = migrate(&state, &from, &destination);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(uuids(&destination.engine, PROJECT), expected);
}

#[test]
fn a_range_without_events_of_a_team_that_has_some_names_start_and_end() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 50, 50, "2021-06-10 00:00:00");
    let destination = PostHog::start();
    let dir = TempDir::new("range");
    let state = dir.0.join("s.sqlite");
    let from = clickhouse_flags(&engine);
    let output = run_line(&format!(
        "--state {} posthog {from} --start 1969-12-31 --end 1970-01-02 --host {} --project-api-key phc_destination",
        state.display(),
        destination.server.url
    ));
    let first = first_line(&output);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        first.contains("holds 50 events, from 2021-06-10T00:00:00.000Z to 2021-06-10T00:49:00.000049Z")
            && first.contains("the range is empty. Check --start and --end."),
        "{first}"
    );
    assert!(!text(&output).contains("--team-id"), "the team has events: {}", text(&output));
}

#[test]
fn verify_with_a_start_in_the_future_is_refused_naming_start() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 50, 50, "2021-06-10 00:00:00");
    let destination = PostHog::start();
    let dir = TempDir::new("range");
    let state = dir.0.join("s.sqlite");
    let output = verify(&state, &clickhouse_flags(&engine), &destination, "--start 2099-01-01");
    let first = first_line(&output);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(first.contains("--start 2099-01-01 is in the future"), "{first}");
    assert!(!text(&output).contains("Everything arrived"), "{}", text(&output));
}

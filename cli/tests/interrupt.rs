//! Ctrl-C during a migration, and what a killed run leaves recorded: every page whose
//! requests were all answered is recorded at once, so that the same command run again
//! sends none of it a second time.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// How many of the destination's events came more than once.
fn twice(capture: &Capture) -> usize {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for uuid in capture.uuids() {
        *seen.entry(uuid).or_default() += 1;
    }
    seen.values().filter(|n| **n > 1).count()
}

#[test]
fn ctrl_c_records_what_was_answered_and_the_rerun_sends_none_of_it_again() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 3000, 3000, "2021-06-02 00:00:00");
    let capture = Capture::start();
    capture.set_fault(|_| {
        std::thread::sleep(Duration::from_millis(10));
        None
    });
    let dir = TempDir::new("sigint");
    let state = dir.0.join("s.sqlite");
    let base = posthog_from_clickhouse(&engine.url, &capture.server.url, &state);
    let child = cli()
        .args(&base)
        .args(["--batch-size", "20", "--page-size", "300"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    capture.wait_for(700, "the run sent too little", Duration::from_millis(5));
    let signal = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(signal.success());
    let output = child.wait_with_output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(130), "{said}");
    assert!(said.contains("Ctrl-C: no new page is read"), "{said}");
    assert!(said.contains("Interrupted (Ctrl-C)") && said.contains("Run the same command again to resume"), "{said}");
    let arrived = capture.uuids().len();
    assert!(arrived < 3000, "the run ended before Ctrl-C: {arrived}");
    capture.set_fault(|_| None);
    let rerun = cli().args(&base).output().unwrap();
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(twice(&capture), 0, "events sent again after Ctrl-C");
    let delivered: HashSet<String> = capture.uuids().into_iter().collect();
    assert_eq!(delivered, engine.uuids(2).into_iter().collect::<HashSet<_>>());
}

#[test]
fn a_page_is_recorded_as_soon_as_its_requests_are_answered() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 400, 400, "2021-06-02 00:00:00");
    let capture = Capture::start();
    // The first page's twenty requests are answered, a twentieth of a second each (the
    // loop has the next page read meanwhile); every later request waits (it is never
    // answered: the run is killed meanwhile).
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    capture.set_fault(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) < 20 {
            std::thread::sleep(Duration::from_millis(50));
            return None;
        }
        std::thread::sleep(Duration::from_secs(2));
        Some(Reply::Drop)
    });
    let dir = TempDir::new("recorded");
    let state = dir.0.join("s.sqlite");
    let base = posthog_from_clickhouse(&engine.url, &capture.server.url, &state);
    let mut child = cli().args(&base).args(["--batch-size", "5", "--page-size", "100"]).spawn().unwrap();
    capture.wait_for(100, "the first page was not sent", Duration::from_millis(5));
    // Killed once the state file holds the first page, or after 2 s (before any later
    // request is answered: a page recorded only then is sent again by the rerun, which
    // the test counts).
    let recorded = Instant::now();
    while recorded.elapsed() < Duration::from_millis(1900) && read_recorded(&state) < 100 {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    capture.set_fault(|_| None);
    let rerun = cli().args(&base).output().unwrap();
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(twice(&capture), 0, "the answered first page was sent again");
    assert_eq!(capture.uuids().len(), 400);
}

/// The events the state file records as read, in every run (0 before it exists).
fn read_recorded(state: &std::path::Path) -> i64 {
    let Ok(db) = rusqlite::Connection::open_with_flags(state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return 0;
    };
    db.query_row("SELECT COALESCE(SUM(read), 0) FROM runs", [], |r| r.get(0)).unwrap_or(0)
}

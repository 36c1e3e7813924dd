//! What the command does with the destination's answers: failures and empty bodies
//! waited out, refused events rejected and kept on record, requests parked after
//! their attempts and sent again when asked; bad flags refused in words.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use support::*;

fn command(engine: &ClickHouse, capture: &Capture, state: &str) -> Vec<String> {
    words(&format!(
        "--state {state} posthog --from clickhouse --clickhouse-url {} --clickhouse-user {USER} --clickhouse-password \
         {PASSWORD} --team-id 2 --start 2021-06-01 --end 2021-07-01 --host {} --project-api-key phc_destination \
         --retry-scale 0.0001 --batch-size 10",
        engine.url, capture.server.url
    ))
}

#[test]
fn failures_are_sent_again_refused_events_rejected_and_parked_requests_resent_when_asked() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 60, 3, "2021-06-02 00:00:00");
    let uuids = engine.uuids(2);
    let refused = uuids[7].clone();
    let doomed = uuids[33].clone();
    let capture = Capture::start();
    let failures = Arc::new(AtomicUsize::new(3));
    let outage = Arc::new(AtomicBool::new(true));
    let (f, o, r, d) = (failures.clone(), outage.clone(), refused.clone(), doomed.clone());
    capture.set_fault(move |batch| {
        let has = |u: &str| batch.iter().any(|e| e["uuid"] == u);
        if f.load(Ordering::SeqCst) > 0 {
            f.fetch_sub(1, Ordering::SeqCst);
            return Some(Reply::new(if f.load(Ordering::SeqCst) % 2 == 0 { 502 } else { 503 }, ""));
        }
        if has(&r) {
            return Some(Reply::new(400, "{\"type\":\"validation_error\",\"code\":\"invalid_payload\"}"));
        }
        if o.load(Ordering::SeqCst) && has(&d) {
            return Some(Reply::new(503, "<html><body>down</body></html>"));
        }
        None
    });
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let output = cli().args(command(&engine, &capture, state.to_str().unwrap())).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(3), "{said}");
    assert!(said.contains("rejected \"") && said.contains(&refused) && said.contains("(HTTP 400)"), "{said}");
    assert!(said.contains("resend-parked"), "{said}");
    let delivered: HashSet<String> = capture.uuids().into_iter().collect();
    assert!(!delivered.contains(&refused) && !delivered.contains(&doomed));
    let status = text(&run(&["--state", state.to_str().unwrap(), "status"]));
    assert!(status.contains("1 rejected, 0 waiting, 10 parked"), "{status}");

    outage.store(false, Ordering::SeqCst);
    let resent = run(&["--state", state.to_str().unwrap(), "resend-parked", "--retry-scale", "0.0001"]);
    assert!(resent.status.success(), "{}", text(&resent));
    let delivered: HashSet<String> = capture.uuids().into_iter().collect();
    let expected: HashSet<String> = uuids.iter().filter(|u| **u != refused).cloned().collect();
    assert_eq!(delivered, expected);
    let status = text(&run(&["--state", state.to_str().unwrap(), "status"]));
    assert!(status.contains("0 waiting, 0 parked"), "{status}");
}

#[test]
fn bad_flags_are_refused_in_words_before_anything_is_read() {
    let capture = Capture::start();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let base = |host: &str, key: &str, start: &str| {
        cli()
            .args(words(&format!(
                "--state {} posthog --from clickhouse --clickhouse-url http://127.0.0.1:9 --team-id 2 --host {host} \
                 --project-api-key {key} --start {start}",
                state.display()
            )))
            .output()
            .unwrap()
    };
    let personal = text(&base(&capture.server.url, "phx_personal_key_123", "2021-06-01"));
    assert!(
        personal.contains("--project-api-key: \"phx_pers…\" is not accepted: this is a personal API key"),
        "{personal}"
    );
    let date = text(&base(&capture.server.url, "phc_k", "2021-02-30"));
    assert!(date.contains("--start: \"2021-02-30\" is not accepted: it is not a real date"), "{date}");
    let host = text(&base("ftp://x", "phc_k", "2021-06-01"));
    assert!(host.contains("--host: \"ftp://x\" is not accepted"), "{host}");
    let unreachable = base(&capture.server.url, "phc_k", "2021-06-01");
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        text(&unreachable).contains("cannot be reached") && text(&unreachable).contains("--clickhouse-url"),
        "{}",
        text(&unreachable)
    );
    let status = run(&["--state", "/nonexistent/dir/s.sqlite", "status"]);
    assert!(text(&status).contains("the folder /nonexistent/dir does not exist"), "{}", text(&status));
}

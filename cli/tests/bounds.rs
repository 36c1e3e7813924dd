//! Counts given to the command out of their bounds: each refused by its flag, before
//! anything is read or sent.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::*;

fn command(engine: &ClickHouse, host: &str, state: &str, more: &str) -> Vec<String> {
    words(&format!(
        "--state {state} posthog --from clickhouse --clickhouse-url {} --clickhouse-user {USER} --clickhouse-password \
         {PASSWORD} --team-id 2 --start 2021-06-01 --end 2021-07-01 --host {host} --project-api-key phc_destination \
         {more}",
        engine.url
    ))
}

#[test]
fn counts_out_of_bounds_are_refused_by_their_flag_before_anything_runs() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 10, 10, "2021-06-02 00:00:00");
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let requests = Arc::new(AtomicUsize::new(0));
    let r = requests.clone();
    let destination = Server::start(Arc::new(move |_: &Request| {
        r.fetch_add(1, Ordering::SeqCst);
        Reply::new(200, "{\"status\":1}")
    }));
    let queries = engine.queries().len();
    for (flag, value) in [
        ("--concurrency", "100000"),
        ("--concurrency", "0"),
        ("--page-size", "18446744073709551615"),
        ("--page-size", "0"),
    ] {
        let output = cli()
            .args(command(&engine, &destination.url, state.to_str().unwrap(), &format!("{flag} {value}")))
            .output();
        let output = output.unwrap();
        let said = text(&output);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {said}");
        let first = said.lines().next().unwrap_or_default();
        assert!(first.starts_with(&format!("migrator3000: {flag}: \"{value}\" is not accepted")), "{first}");
        assert!(first.contains("from 1 to") && first.contains("leave it out"), "{first}");
    }
    // verify's minutes: a number too large for a wait, or not a number.
    for (flag, value) in [("--wait", "1e300"), ("--wait", "NaN"), ("--settle-minutes", "1e9")] {
        let line = format!(
            "--state {} verify --from clickhouse --clickhouse-url {} --team-id 2 --destination-query-api-host {} \
             --destination-project-id 1 --destination-personal-api-key phx_k {flag} {value}",
            state.display(),
            engine.url,
            destination.url
        );
        let output = cli().args(words(&line)).output().unwrap();
        let said = text(&output);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {said}");
        let first = said.lines().next().unwrap_or_default();
        assert!(first.starts_with(&format!("migrator3000: {flag}: ")) && first.contains("minutes, from 0"), "{first}");
    }
    assert_eq!(requests.load(Ordering::SeqCst), 0);
    assert_eq!(engine.queries().len(), queries, "the source was read");
    assert!(!state.exists(), "a refused flag made a state file");
}

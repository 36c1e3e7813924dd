//! `migrator3000 verify` against real parts: the source a real ClickHouse engine with
//! PostHog's events table, the migration the real `posthog` command, and the destination
//! a loopback PostHog whose capture stores what it accepts in a second engine and whose
//! Query API answers HogQL from it, so every count is the engine's.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};
use support::browser::Browser;
use support::posthog::{engine_query, PostHog, PERSONAL_KEY, PROJECT};
use support::*;

/// The source: team 2's events on `days` (day, events), timestamps a minute apart.
fn source(days: &[(&str, u64)]) -> ClickHouse {
    let engine = ClickHouse::start();
    let mut first = 0;
    for (day, count) in days {
        insert_events(&engine, 2, first, *count, *count, &format!("{day} 00:00:00"));
        first += count;
    }
    engine
}

fn migrate(source: &ClickHouse, destination: &PostHog, state: &Path) -> Output {
    let line = format!(
        "--state {} posthog --from clickhouse --clickhouse-url {} --clickhouse-user {USER} --clickhouse-password \
         {PASSWORD} --team-id 2 --start 2021-06-01 --end 2021-07-01 --host {} --project-api-key phc_destination \
         --retry-scale 0.001",
        state.display(),
        source.url,
        destination.server.url
    );
    let output = cli().args(words(&line)).output().unwrap();
    assert!(output.status.success(), "the migration: {}", text(&output));
    output
}

fn verify(source: &ClickHouse, destination: &PostHog, state: &Path, more: &str) -> Output {
    let line = format!(
        "--state {} verify --from clickhouse --clickhouse-url {} --clickhouse-user {USER} --clickhouse-password \
         {PASSWORD} --team-id 2 --destination-query-api-host {} --destination-project-id {PROJECT} \
         --destination-personal-api-key {PERSONAL_KEY} --retry-scale 0.01 {more}",
        state.display(),
        source.url,
        destination.server.url
    );
    cli().args(words(&line)).output().unwrap()
}

/// The table line of `day` in an output.
fn row<'a>(said: &'a str, day: &str) -> Vec<&'a str> {
    said.lines()
        .rev()
        .find(|l| l.starts_with(day))
        .unwrap_or_else(|| panic!("no row for {day}: {said}"))
        .split_whitespace()
        .collect()
}

fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default().to_string()
}

fn source_uuids(engine: &ClickHouse, day: &str, most: usize) -> Vec<String> {
    engine
        .query(&format!(
            "SELECT toString(uuid) FROM default.events WHERE team_id = 2 AND toDate(timestamp) = '{day}' ORDER BY \
             cityHash64(uuid) LIMIT {most} FORMAT TSV"
        ))
        .lines()
        .map(str::to_string)
        .collect()
}

/// The uuids of one kind a verification kept in the state file (its latest).
fn kept(state: &Path, kind: &str) -> HashSet<String> {
    let db = rusqlite::Connection::open(state).unwrap();
    let mut statement = db
        .prepare("SELECT uuid FROM verify_uuids WHERE kind = ?1 AND check_id = (SELECT MAX(id) FROM verify_checks)")
        .unwrap();
    let rows = statement.query_map([kind], |r| r.get::<_, String>(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

fn day_counts_queries(destination: &PostHog) -> Vec<String> {
    destination.hogql.lock().unwrap().iter().filter(|q| q.contains("GROUP BY utc_day")).cloned().collect()
}

#[test]
fn everything_equal_in_one_count_query_with_unmerged_duplicates_counted_once() {
    let engine = source(&[("2021-06-10", 300), ("2021-06-11", 250), ("2021-06-12", 200)]);
    let destination = PostHog::start();
    let dir = TempDir::new("verify");
    let state = dir.0.join("s.sqlite");
    migrate(&engine, &destination, &state);
    // The same events sent a second time by another run: rows the engine has not merged
    // yet (its merges held, so that they stay unmerged while the test looks).
    engine_query(&destination.engine.url, "SYSTEM STOP MERGES default.sharded_events").unwrap();
    migrate(&engine, &destination, &dir.0.join("second.sqlite"));
    let output = verify(&engine, &destination, &state, "--settle-minutes 0");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert_eq!(row(&said, "2021-06-10")[..5], ["2021-06-10", "300", "300", "-", "-"]);
    assert_eq!(row(&said, "2021-06-12")[..3], ["2021-06-12", "200", "200"]);
    assert!(said.contains("equal (200 rows not merged yet)"), "{said}");
    assert_eq!(
        last_line(&output),
        "Everything arrived: the 750 events of 3 days at the source are all at the destination."
    );
    // No range given: the source's own days, counted at the destination in one query.
    let counts = day_counts_queries(&destination);
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(counts[0].contains("'2021-06-10 00:00:00.000000'") && counts[0].contains("'2021-06-13 00:00:00.000000'"));
    assert!(counts[0].ends_with("LIMIT 50000"), "without a LIMIT the Query API gives 100 rows: {}", counts[0]);
    assert_eq!(destination.hogql.lock().unwrap().len(), 1, "no uuids listed for equal days");
}

#[test]
fn a_destination_that_drops_37_events_of_a_day_while_answering_200_is_found_out_and_mended() {
    let engine = source(&[("2021-06-10", 300), ("2021-06-11", 400), ("2021-06-12", 300)]);
    let destination = PostHog::start();
    let dropped: HashSet<String> = source_uuids(&engine, "2021-06-11", 37).into_iter().collect();
    let over_quota = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (gone, flag) = (dropped.clone(), over_quota.clone());
    destination.set_drop(move |e| flag.load(Ordering::SeqCst) && gone.contains(e["uuid"].as_str().unwrap_or("")));
    let dir = TempDir::new("verify");
    let state = dir.0.join("s.sqlite");
    let migrated = migrate(&engine, &destination, &state);
    assert!(text(&migrated).contains("1000 delivered"), "capture answered 200 to all: {}", text(&migrated));

    // Pages of 100 uuids: the day's 400 are walked in several pages on each side.
    let output = verify(&engine, &destination, &state, "--settle-minutes 0 --page-rows 100");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(5), "{said}");
    assert_eq!(row(&said, "2021-06-11")[..6], ["2021-06-11", "400", "363", "37", "0", "differs"]);
    assert_eq!(row(&said, "2021-06-10")[5], "equal");
    assert!(
        last_line(&output).starts_with("Not everything arrived: 37 missing and 0 extra events on 1 day (2021-06-11)")
    );
    assert_eq!(kept(&state, "missing"), dropped, "exactly the dropped uuids");
    assert!(kept(&state, "extra").is_empty());
    let pages: Vec<String> =
        destination.hogql.lock().unwrap().iter().filter(|q| q.contains("DISTINCT toString(uuid)")).cloned().collect();
    assert!(pages.len() >= 4 && pages.iter().all(|q| q.ends_with("LIMIT 100")), "{pages:?}");
    assert!(pages.iter().all(|q| q.contains("'2021-06-11 00:00:00.000000'")), "only the day that differs");

    // The quota is back: --resend sends exactly those 37, with their uuids, and the day is equal.
    over_quota.store(false, Ordering::SeqCst);
    let before = destination.accepted.load(Ordering::SeqCst);
    let output = verify(
        &engine,
        &destination,
        &state,
        &format!("--settle-minutes 0 --resend --host {} --project-api-key phc_destination", destination.server.url),
    );
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert_eq!(destination.accepted.load(Ordering::SeqCst) - before, 37, "{said}");
    assert!(said.contains("Sent again: 37 of the 37 missing events found at the source, 37 delivered"), "{said}");
    let at_destination: HashSet<String> = destination.uuids_of("2021-06-11").into_iter().collect();
    assert!(dropped.is_subset(&at_destination));
    assert_eq!(row(&said, "2021-06-11")[..3], ["2021-06-11", "400", "400"]);
    assert!(last_line(&output).starts_with("Everything arrived: the 1,000 events of 3 days"), "{said}");

    let again = verify(&engine, &destination, &state, "--settle-minutes 0");
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(kept(&state, "missing").is_empty());
}

#[test]
fn extra_events_at_the_destination_are_named_and_kept() {
    let engine = source(&[("2021-06-10", 200), ("2021-06-11", 200)]);
    let destination = PostHog::start();
    let dir = TempDir::new("verify");
    let state = dir.0.join("s.sqlite");
    migrate(&engine, &destination, &state);
    // Twelve events the source never had (the app's live events, a test...), on June 11.
    let extra: Vec<Value> = (0..12)
        .map(|i| {
            json!({"uuid": format!("0190b000-0000-7000-8000-{i:012x}"), "event": "$pageview", "distinct_id": "someone",
                   "timestamp": format!("2021-06-11T12:{i:02}:00.000000Z"),
                   "properties": {"$current_url": format!("https://example.com/other/{i}"), "$browser": "Chrome",
                                  "$lib": "web", "$session_id": "s-1", "padding": "x".repeat(1200)}})
        })
        .collect();
    let body = json!({"api_key": "phc_destination", "historical_migration": true, "batch": extra}).to_string();
    ureq::post(&format!("{}/batch/", destination.server.url)).send_string(&body).unwrap();
    // Every query answers 202 (still running): each is polled for its rows, never sent again.
    destination.slow.store(true, Ordering::SeqCst);
    let output = verify(&engine, &destination, &state, "--settle-minutes 0 --start 2021-06-10 --end 2021-06-12");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(5), "{said}");
    assert_eq!(row(&said, "2021-06-11")[..5], ["2021-06-11", "200", "212", "0", "12"]);
    assert!(last_line(&output).starts_with("Not everything arrived: 0 missing and 12 extra events"), "{said}");
    assert!(!last_line(&output).contains("--resend"), "nothing to send again");
    let expected: HashSet<String> = (0..12).map(|i| format!("0190b000-0000-7000-8000-{i:012x}")).collect();
    assert_eq!(kept(&state, "extra"), expected);
    let posted = destination.hogql.lock().unwrap().clone();
    assert_eq!(posted.iter().collect::<HashSet<_>>().len(), posted.len(), "a query sent twice: {posted:?}");
}

#[test]
fn refusals_and_bad_flags_are_said_in_the_commands_own_words() {
    let engine = source(&[("2021-06-10", 20)]);
    let destination = PostHog::start();
    let dir = TempDir::new("verify");
    let state = dir.0.join("s.sqlite");
    let flags = |key: &str, project: u64| {
        format!(
            "--state {} verify --from clickhouse --clickhouse-url {} --clickhouse-user {USER} --clickhouse-password \
             {PASSWORD} --team-id 2 --destination-query-api-host {} --destination-project-id {project} \
             --destination-personal-api-key {key} --retry-scale 0.01",
            state.display(),
            engine.url,
            destination.server.url
        )
    };
    let wrong_key = cli().args(words(&flags("phx_wrong", PROJECT))).output().unwrap();
    assert_eq!(wrong_key.status.code(), Some(1));
    assert!(text(&wrong_key).contains("refused the personal API key (HTTP 401"), "{}", text(&wrong_key));
    assert!(text(&wrong_key).contains("check --destination-personal-api-key"), "{}", text(&wrong_key));
    let wrong_project = cli().args(words(&flags(PERSONAL_KEY, 99))).output().unwrap();
    assert_eq!(wrong_project.status.code(), Some(1));
    assert!(
        text(&wrong_project)
            .contains("has no project 99 (HTTP 404); check --destination-query-api-host and --destination-project-id"),
        "{}",
        text(&wrong_project)
    );
    let no_host = cli().args(words(&flags(PERSONAL_KEY, PROJECT))).arg("--resend").output().unwrap();
    assert_eq!(no_host.status.code(), Some(2), "{}", text(&no_host));
    assert!(text(&no_host).contains("--host"), "{}", text(&no_host));
    let no_import = cli()
        .args(words(&format!(
            "--state {} verify --from amplitude --destination-query-api-host {} --destination-project-id 1 \
             --destination-personal-api-key {PERSONAL_KEY}",
            state.display(),
            destination.server.url
        )))
        .output()
        .unwrap();
    assert_eq!(no_import.status.code(), Some(1));
    let said = text(&no_import);
    assert!(said.contains(&format!("the state file {} does not exist", state.display())), "{said}");
    assert!(!state.exists(), "verify created the state file it was to read");
    assert!(destination.accepted.load(Ordering::SeqCst) == 0, "nothing sent");
}

/// The first and the day after the last day of a count query's window.
fn window_of(query: &str) -> (chrono::NaiveDate, chrono::NaiveDate) {
    let at = |marker: &str| {
        let rest = &query[query.find(marker).unwrap() + marker.len()..];
        chrono::NaiveDate::parse_from_str(&rest[..10], "%Y-%m-%d").unwrap()
    };
    (at("timestamp >= toDateTime64('"), at("timestamp < toDateTime64('"))
}

fn window_days(query: &str) -> i64 {
    let (from, to) = window_of(query);
    (to - from).num_days()
}

#[test]
fn a_query_api_that_times_out_on_large_windows_is_asked_for_smaller_ones() {
    let days = [("2021-06-10", 60), ("2021-06-11", 60), ("2021-06-12", 60), ("2021-06-13", 60), ("2021-06-14", 60)];
    let engine = source(&days);
    let destination = PostHog::start();
    let dir = TempDir::new("verify");
    let state = dir.0.join("s.sqlite");
    migrate(&engine, &destination, &state);
    // Over two days a count runs out of time, as PostHog answers it: 504.
    destination
        .set_query_fault(|q| (q.contains("GROUP BY utc_day") && window_days(q) > 2).then(|| Reply::new(504, "")));
    let output = verify(&engine, &destination, &state, "--settle-minutes 0 --start 2021-06-10 --end 2021-06-15");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(
        said.contains("ran out of time or memory (HTTP 504) for 2021-06-10 to 2021-06-14: counting it in two halves"),
        "{said}"
    );
    let windows: Vec<i64> = day_counts_queries(&destination).iter().map(|q| window_days(q)).collect();
    // 5 days, then 2 and 3, then 1 and 2 of the 3.
    assert_eq!(windows, [5, 2, 3, 1, 2], "{said}");
    assert!(last_line(&output).starts_with("Everything arrived: the 300 events of 5 days"));

    // A day that times out even alone is not counted: the run cannot say it is equal.
    let june12 = chrono::NaiveDate::from_ymd_opt(2021, 6, 12).unwrap();
    destination.set_query_fault(move |q| {
        let (from, to) = if q.contains("GROUP BY utc_day") { window_of(q) } else { (june12, june12) };
        (from <= june12 && june12 < to).then(|| Reply::new(504, ""))
    });
    let output = verify(&engine, &destination, &state, "--settle-minutes 0 --start 2021-06-10 --end 2021-06-15");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(row(&said, "2021-06-12").join(" ").contains("not counted: the destination could not count it"), "{said}");
    assert!(last_line(&output).starts_with("Could not verify everything yet"), "{said}");
}

#[test]
fn a_day_still_arriving_is_said_so_and_waited_for() {
    let engine = source(&[("2021-06-10", 150), ("2021-06-11", 150)]);
    let destination = PostHog::start();
    // A third of June 11 reaches the table 8 s after capture took it.
    destination.set_lag(|e| {
        let late = e["timestamp"].as_str().unwrap_or("").starts_with("2021-06-11")
            && e["properties"]["n"].as_u64().is_some_and(|n| n % 3 == 0);
        late.then_some(Duration::from_secs(8))
    });
    let dir = TempDir::new("verify");
    let state = dir.0.join("s.sqlite");
    migrate(&engine, &destination, &state);
    let output = verify(&engine, &destination, &state, "--settle-minutes 0.5");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert_eq!(row(&said, "2021-06-11")[5..], ["still", "arriving"], "{said}");
    assert_eq!(row(&said, "2021-06-10")[5], "equal");
    assert!(
        last_line(&output).contains("still arriving (2021-06-11)") && last_line(&output).contains("--wait"),
        "{said}"
    );
    assert!(kept(&state, "missing").is_empty(), "no uuid is called missing while it may be on its way");

    let output = verify(&engine, &destination, &state, "--settle-minutes 0.5 --wait 2");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("1 day still arriving: comparing again"), "{said}");
    assert_eq!(row(&said, "2021-06-11")[..3], ["2021-06-11", "150", "150"]);
}

#[test]
fn the_report_opens_offline_in_chromium_with_the_chart_the_table_and_the_day_that_differs_marked() {
    let engine = source(&[("2021-06-10", 120), ("2021-06-11", 160), ("2021-06-12", 140)]);
    let destination = PostHog::start();
    let dropped: HashSet<String> = source_uuids(&engine, "2021-06-11", 37).into_iter().collect();
    let gone = dropped.clone();
    destination.set_drop(move |e| gone.contains(e["uuid"].as_str().unwrap_or("")));
    let dir = TempDir::new("verify");
    let state = dir.0.join("s.sqlite");
    migrate(&engine, &destination, &state);
    let report = dir.0.join("report.html");
    let output = verify(&engine, &destination, &state, &format!("--settle-minutes 0 --report {}", report.display()));
    assert_eq!(output.status.code(), Some(5), "{}", text(&output));

    let browser = Browser::start();
    browser.open(&report);
    let seen = browser.eval(
        "const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.right, r.width, r.height]; };
         const chart = document.querySelector('svg#chart');
         const marked = [...chart.querySelectorAll('rect.marked')];
         const bars = [...chart.querySelectorAll('rect.bar-source, rect.bar-destination')];
         const rows = [...document.querySelectorAll('table#days tbody tr')];
         return {
           chart: box(chart),
           marked: marked.map(m => [m.dataset.day, getComputedStyle(m).fill, box(m)]),
           bars: bars.map(b => [b.dataset.day, b.getAttribute('class'), box(b)]),
           rows: rows.map(r => [r.dataset.day, r.innerText, getComputedStyle(r.cells[0]).backgroundColor, box(r)]),
           listed: [...document.querySelectorAll('section.day[data-day=\"2021-06-11\"] li')].map(li => li.innerText),
           fetched: performance.getEntriesByType('resource').length,
         };",
    );
    browser.screenshot(&dir.0.join("report.png"));
    let chart = seen["chart"].as_array().unwrap();
    assert!(chart[2].as_f64().unwrap() > 600.0 && chart[3].as_f64().unwrap() > 150.0, "the chart is laid out: {seen}");
    let marked = seen["marked"].as_array().unwrap();
    assert_eq!(marked.len(), 1, "{seen}");
    assert_eq!(marked[0][0], "2021-06-11");
    assert_eq!(marked[0][1], "rgb(243, 178, 170)", "the band is painted");
    // The band stands behind that day's two bars, and theirs only.
    let band = marked[0][2].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>();
    for bar in seen["bars"].as_array().unwrap() {
        let b = bar[2].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>();
        assert!(b[3] > 1.0, "every bar has a height: {bar}");
        let inside = b[0] >= band[0] - 0.5 && b[1] <= band[1] + 0.5;
        assert_eq!(inside, bar[0] == "2021-06-11", "{bar} against the band {band:?}");
    }
    let rows = seen["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let june11 = rows.iter().find(|r| r[0] == "2021-06-11").unwrap();
    assert!(june11[1].as_str().unwrap().contains("160\t123\t37\t0\tdiffers"), "{june11}");
    assert_eq!(june11[2], "rgb(253, 236, 234)", "the row that differs is marked");
    assert!(rows.iter().all(|r| r[3][3].as_f64().unwrap() > 10.0), "every row is laid out");
    let listed: HashSet<String> =
        seen["listed"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(listed, dropped, "the missing uuids of the day");
    assert_eq!(seen["fetched"], 0, "nothing fetched from elsewhere");
}

fn gzip_lines(lines: &[String]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(lines.join("\n").as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn an_amplitude_import_is_verified_from_what_it_recorded_and_mended_from_its_export() {
    let dir = TempDir::new("verify");
    let export = dir.0.join("export");
    std::fs::create_dir_all(&export).unwrap();
    for day in 1..=2 {
        let lines: Vec<String> = (0..120)
            .map(|n| {
                json!({"uuid": format!("5a3c{day:04x}-0000-4000-8000-{n:012x}"), "event_type": "[Amplitude] Page Viewed",
                       "user_id": format!("user-{}", n % 9), "device_id": format!("device-{}", n % 9),
                       "event_time": format!("2024-03-0{day} {:02}:{:02}:00.000000", n / 60, n % 60),
                       "event_properties": {"[Amplitude] Page URL": format!("https://shop.example.com/item/{n}"),
                                            "description": "a".repeat(900)},
                       "user_properties": {"plan": "pro", "initial_referrer": "https://www.google.com/"},
                       "country": "Portugal", "city": "Porto", "os_name": "Firefox", "platform": "Web",
                       "library": "amplitude-ts/2.3.0", "ip_address": null, "region": null})
                .to_string()
            })
            .collect();
        std::fs::write(export.join(format!("421337_2024-03-0{day}_0#0.json.gz")), gzip_lines(&lines)).unwrap();
    }
    let destination = PostHog::start();
    destination.set_drop(|e| e["uuid"].as_str().is_some_and(|u| u.starts_with("5a3c0002") && u.ends_with('7')));
    let state = dir.0.join("s.sqlite");
    let import = format!(
        "--state {} amplitude --files {} --host {} --project-api-key phc_destination --retry-scale 0.001",
        state.display(),
        export.display(),
        destination.server.url
    );
    let output = cli().args(words(&import)).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let verify_line = format!(
        "--state {} verify --from amplitude --destination-query-api-host {} --destination-project-id {PROJECT} \
         --destination-personal-api-key {PERSONAL_KEY} --settle-minutes 0",
        state.display(),
        destination.server.url
    );
    let output = cli().args(words(&verify_line)).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(5), "{said}");
    // 120 events and 9 aliases (one a device, on the first day) handed over on March 1.
    assert_eq!(row(&said, "2024-03-01")[..3], ["2024-03-01", "129", "129"]);
    assert_eq!(row(&said, "2024-03-02")[..4], ["2024-03-02", "120", "112", "8"]);
    let missing = kept(&state, "missing");
    assert!(missing.len() == 8 && missing.iter().all(|u| u.starts_with("5a3c0002") && u.ends_with('7')), "{missing:?}");

    destination.set_drop(|_| false);
    // Another export given by mistake (the same file names, other events): said at once,
    // and nothing is sent.
    let other = dir.0.join("other");
    std::fs::create_dir_all(&other).unwrap();
    for day in 1..=2 {
        let lines =
            [json!({"event_type": "x", "user_id": "u", "event_time": format!("2024-03-0{day} 00:00:00")}).to_string()];
        std::fs::write(other.join(format!("421337_2024-03-0{day}_0#0.json.gz")), gzip_lines(&lines)).unwrap();
    }
    let mistaken = format!(
        "{verify_line} --resend --files {} --host {} --project-api-key phc_destination",
        other.display(),
        destination.server.url
    );
    let output = cli().args(words(&mistaken)).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    let first = said.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("migrator3000: --files: {} is not the export the import read", other.display())),
        "{said}"
    );
    assert_eq!(destination.uuids_of("2024-03-02").len(), 112, "nothing may be sent from another export");
    let resend = format!(
        "{verify_line} --resend --files {} --host {} --project-api-key phc_destination",
        export.display(),
        destination.server.url
    );
    let output = cli().args(words(&resend)).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("Sent again: 8 of the 8 missing events found at the source, 8 delivered"), "{said}");
}

#[test]
fn a_source_read_through_its_query_api_is_verified_and_mended_through_it() {
    // The source a PostHog too, read through its Query API: HogQL answered by its engine.
    let source = PostHog::start();
    insert_events(&source.engine, PROJECT, 0, 150, 150, "2021-06-10 00:00:00");
    insert_events(&source.engine, PROJECT, 150, 150, 150, "2021-06-11 00:00:00");
    let destination = PostHog::start();
    let gone: HashSet<String> = engine_query(
        &source.engine.url,
        "SELECT toString(uuid) FROM default.events WHERE toDate(timestamp) = '2021-06-11' ORDER BY cityHash64(uuid) \
         LIMIT 5 FORMAT TSV",
    )
    .unwrap()
    .lines()
    .map(str::to_string)
    .collect();
    let dropped = gone.clone();
    destination.set_drop(move |e| dropped.contains(e["uuid"].as_str().unwrap_or("")));
    let dir = TempDir::new("verify");
    let state = dir.0.join("s.sqlite");
    let from = format!(
        "--from query-api --query-api-host {} --project-id {PROJECT} --personal-api-key {PERSONAL_KEY}",
        source.server.url
    );
    let migration = format!(
        "--state {} posthog {from} --host {} --project-api-key phc_destination --retry-scale 0.001",
        state.display(),
        destination.server.url
    );
    let output = cli().args(words(&migration)).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let check = format!(
        "--state {} verify {from} --destination-query-api-host {} --destination-project-id {PROJECT} \
         --destination-personal-api-key {PERSONAL_KEY} --settle-minutes 0 --retry-scale 0.01",
        state.display(),
        destination.server.url
    );
    let output = cli().args(words(&check)).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(5), "{said}");
    assert_eq!(row(&said, "2021-06-11")[..5], ["2021-06-11", "150", "145", "5", "0"]);
    assert_eq!(kept(&state, "missing"), gone);
    destination.set_drop(|_| false);
    let resend = format!("{check} --resend --host {} --project-api-key phc_destination", destination.server.url);
    let output = cli().args(words(&resend)).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("Sent again: 5 of the 5 missing events found at the source, 5 delivered"), "{said}");
}

#[test]
fn a_database_and_table_named_with_hyphens_are_read_and_verified() {
    let engine = source(&[("2021-06-10", 30), ("2021-06-11", 20)]);
    engine.query("CREATE DATABASE `posthog-prod`");
    engine.query("CREATE TABLE `posthog-prod`.`my-events` AS default.sharded_events");
    engine.query("INSERT INTO `posthog-prod`.`my-events` SELECT * FROM default.sharded_events");
    // The persons step that follows the events reads the same database's person tables.
    engine.query("CREATE TABLE `posthog-prod`.person AS default.person");
    engine.query("CREATE TABLE `posthog-prod`.person_distinct_id2 AS default.person_distinct_id2");
    let destination = PostHog::start();
    let dir = TempDir::new("verify");
    let state = dir.0.join("s.sqlite");
    let table = ["--clickhouse-database", "posthog-prod", "--clickhouse-table", "my-events"];
    let migrated = cli()
        .args(words(&format!(
            "--state {} posthog --from clickhouse --clickhouse-url {} --clickhouse-user {USER} --clickhouse-password \
             {PASSWORD} --team-id 2 --host {} --project-api-key phc_destination --retry-scale 0.001",
            state.display(),
            engine.url,
            destination.server.url
        )))
        .args(table)
        .output()
        .unwrap();
    let said = text(&migrated);
    assert!(migrated.status.success(), "{said}");
    assert!(said.contains("50 events from"), "{said}");
    assert_eq!(destination.uuids_of("2021-06-10").len() + destination.uuids_of("2021-06-11").len(), 50);
    let verify_line = format!(
        "--state {} verify --from clickhouse --clickhouse-url {} --clickhouse-user {USER} --clickhouse-password \
         {PASSWORD} --team-id 2 --destination-query-api-host {} --destination-project-id {PROJECT} \
         --destination-personal-api-key {PERSONAL_KEY} --retry-scale 0.01 --settle-minutes 0",
        state.display(),
        engine.url,
        destination.server.url
    );
    let output = cli().args(words(&verify_line)).args(table).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        last_line(&output),
        "Everything arrived: the 50 events of 2 days at the source are all at the destination."
    );
}

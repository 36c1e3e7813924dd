//! `migrator3000 amplitude` on generated Amplitude exports: anonymous-then-login, several
//! devices per user, several users per device, unicode, missing fields and malformed
//! lines; from a local zip, a folder killed and resumed, and the Export API.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::export::{gzip, zip};
use support::*;

fn line(n: usize, user: Option<&str>, device: Option<&str>, event: &str, hour: usize) -> String {
    let mut e = json!({
        "event_type": event, "event_time": format!("2024-03-01 {:02}:{:02}:{:02}.{:06}", hour % 24, n / 60 % 60, n % 60, n),
        "$insert_id": format!("insert-{n}"), "event_id": n, "session_id": 1_709_251_200_000u64 + n as u64,
        "event_properties": {"n": n, "[Amplitude] Page URL": format!("https://ex.com/ünï/{n}")},
        "user_properties": {"plan": if n % 2 == 0 { "pro" } else { "free" }, "initial_referrer": "google"},
        "country": "Portugal", "os_name": "Firefox", "platform": "Web", "library": "amplitude-ts/2.3.0"
    });
    if let Some(user) = user {
        e["user_id"] = json!(user);
    }
    if let Some(device) = device {
        e["device_id"] = json!(device);
    }
    e.to_string()
}

/// The lines of each hour's file, the (user, device) pairs to be linked, the number of
/// events that must arrive, and the number of lines refused.
struct Scenario {
    hours: Vec<Vec<String>>,
    pairs: HashSet<(String, String)>,
    events: usize,
    refused: usize,
}

fn scenario() -> Scenario {
    let hour0 = vec![
        line(0, None, Some("d1"), "[Amplitude] Page Viewed", 0), // anonymous first
        line(1, None, Some("d1"), "session_start", 0),
        line(2, Some("u1"), Some("d1"), "signed up — 登録", 0), // then logs in
        line(3, Some("u2"), Some("d2"), "[Amplitude] Element Clicked", 0),
        line(4, Some("u2"), Some("d3"), "opened app", 0), // a second device of u2
        "{\"event_type\": \"broken".to_string(),
    ];
    let hour1 = vec![
        line(5, Some("u3"), Some("d4"), "opened app", 1),
        line(6, Some("u4"), Some("d4"), "opened app", 1), // a second user on d4
        line(7, Some("u1"), Some("d1"), "purchase", 1),
        json!({"event_type": "bare", "user_id": "u5", "event_time": "2024-03-01 01:00:00"}).to_string(), // missing fields
        json!({"event_type": "nobody", "event_time": "2024-03-01 01:00:00"}).to_string(),
        String::new(),
        line(8, None, None, "anonymous nobody", 1),
    ];
    let pairs = [("u1", "d1"), ("u2", "d2"), ("u2", "d3"), ("u3", "d4")]
        .iter()
        .map(|(u, d)| (u.to_string(), d.to_string()))
        .collect();
    // 13 lines: session_start is no event, a blank line is nothing, and `nobody`, the
    // broken line and line 8 (no user, no device) are refused.
    Scenario { hours: vec![hour0, hour1], pairs, events: 8, refused: 3 }
}

fn destination(capture: &Capture, state: &str, source: &str) -> Vec<String> {
    words(&format!(
        "--state {state} amplitude {source} --start 2024-03-01 --end 2024-03-04 --host {} --project-api-key \
         phc_destination --retry-scale 0.001 --concurrency 1",
        capture.server.url
    ))
}

fn aliases(events: &[Value]) -> HashSet<(String, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "$create_alias")
        .map(|e| {
            (e["distinct_id"].as_str().unwrap().to_string(), e["properties"]["alias"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn a_local_export_arrives_with_each_device_linked_once_before_its_users_events() {
    let Scenario { hours, pairs, events, refused } = scenario();
    let dir = TempDir::new("amplitude");
    let files: Vec<(String, Vec<u8>)> =
        hours.iter().enumerate().map(|(h, lines)| (format!("123/123_2024-03-01_{h}#0.json.gz"), gzip(lines))).collect();
    let export = dir.0.join("export.zip");
    std::fs::write(&export, zip(&files)).unwrap();
    let capture = Capture::start();
    let state = dir.0.join("s.sqlite");
    let source = format!("--files {}", export.display());
    let output = cli().args(destination(&capture, state.to_str().unwrap(), &source)).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let received = capture.accepted.lock().unwrap().clone();
    assert_eq!(aliases(&received), pairs);
    assert_eq!(received.len(), events + pairs.len(), "{received:#?}");
    // Each alias comes before the first event of its user on its device.
    for (user, device) in &pairs {
        let alias =
            received.iter().position(|e| e["event"] == "$create_alias" && e["properties"]["alias"] == *device).unwrap();
        let first = received
            .iter()
            .position(|e| {
                e["event"] != "$create_alias" && e["distinct_id"] == *user && e["properties"]["$device_id"] == *device
            })
            .unwrap();
        assert!(alias < first, "{user} on {device}");
    }
    let by_name: HashMap<&str, &Value> = received.iter().map(|e| (e["event"].as_str().unwrap(), e)).collect();
    assert_eq!(by_name["$pageview"]["distinct_id"], "d1", "anonymous: the device is the distinct_id");
    assert_eq!(by_name["$pageview"]["properties"]["$current_url"], "https://ex.com/ünï/0");
    assert_eq!(by_name["signed up — 登録"]["$set"]["plan"], "pro");
    assert_eq!(by_name["signed up — 登録"]["$set_once"]["$initial_referrer"], "google");
    assert_eq!(by_name["$autocapture"]["properties"]["$geoip_country_name"], "Portugal");
    assert_eq!(by_name["bare"]["distinct_id"], "u5");
    assert!(!received.iter().any(|e| e["event"] == "session_start"));
    let said = text(&output);
    assert!(said.contains(&format!("{refused} rejected")), "{said}");
    assert!(said.contains("line 6: the line is not a JSON object"), "{said}");
    assert!(said.contains("neither user_id nor device_id"), "{said}");
}

fn big_export(dir: &Path, files: usize, per_file: usize, users: usize) -> (HashSet<String>, HashSet<(String, String)>) {
    let mut devices_seen = HashSet::new();
    let mut pairs = HashSet::new();
    let mut inserts = HashSet::new();
    for f in 0..files {
        let lines: Vec<String> = (0..per_file)
            .map(|i| {
                let n = f * per_file + i;
                let user = format!("user-{}", n % users);
                let device = format!("device-{}-{}", n % users, n % 2);
                if devices_seen.insert(device.clone()) {
                    pairs.insert((user.clone(), device.clone()));
                }
                inserts.insert(n);
                line(n, Some(&user), Some(&device), "viewed", f)
            })
            .collect();
        std::fs::create_dir_all(dir.join("export")).unwrap();
        std::fs::write(dir.join(format!("export/42_2024-03-01_{f:02}#0.json.gz")), gzip(&lines)).unwrap();
    }
    let uuids = inserts.len();
    assert_eq!(uuids, files * per_file);
    (inserts.into_iter().map(|n| n.to_string()).collect(), pairs)
}

#[test]
fn a_folder_killed_mid_way_resumes_and_no_device_is_linked_twice() {
    let dir = TempDir::new("amplitude");
    let (inserts, pairs) = big_export(&dir.0, 20, 150, 40);
    let capture = Capture::start();
    capture.set_fault(|_| {
        std::thread::sleep(Duration::from_millis(10));
        None
    });
    let state = dir.0.join("s.sqlite");
    let source = format!("--files {} --page-size 100 --batch-size 20", dir.0.join("export").display());
    let args = destination(&capture, state.to_str().unwrap(), &source);
    let mut child = cli().args(&args).spawn().unwrap();
    let started = Instant::now();
    while capture.uuids().len() < 800 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(capture.uuids().len() < 3000 + pairs.len(), "the kill came too late");
    let output = cli().args(&args).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("resuming after"), "{}", text(&output));
    let received = capture.accepted.lock().unwrap().clone();
    let inserts_received: HashSet<String> = received
        .iter()
        .filter_map(|e| e["properties"]["$amplitude_insert_id"].as_str())
        .map(|i| i.trim_start_matches("insert-").to_string())
        .collect();
    assert_eq!(inserts_received, inserts, "events lost");
    assert_eq!(aliases(&received), pairs);
    // Sent twice only around the kill, with the same uuids.
    let uuids: Vec<&str> = received.iter().map(|e| e["uuid"].as_str().unwrap()).collect();
    let distinct: HashSet<&str> = uuids.iter().copied().collect();
    assert_eq!(distinct.len(), inserts.len() + pairs.len());

    // The next day's export with the same users and devices links nothing again.
    let next = TempDir::new("amplitude-next");
    big_export(&next.0, 1, 50, 40);
    let before = capture.accepted.lock().unwrap().len();
    let source = format!("--files {}", next.0.join("export").display());
    let output = cli().args(destination(&capture, state.to_str().unwrap(), &source)).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let after = capture.accepted.lock().unwrap()[before..].to_vec();
    assert_eq!(after.len(), 50);
    assert!(aliases(&after).is_empty(), "a device was linked twice");
}

#[test]
fn the_export_api_is_read_day_by_day_waiting_out_429_with_404_days_empty() {
    let Scenario { hours, pairs, events, .. } = scenario();
    let day1 = zip(&hours
        .iter()
        .enumerate()
        .map(|(h, l)| (format!("9/9_2024-03-01_{h}#0.json.gz"), gzip(l)))
        .collect::<Vec<_>>());
    let day3 =
        zip(&[("9/9_2024-03-03_5#0.json.gz".to_string(), gzip(&[line(100, Some("u9"), Some("d9"), "late", 5)]))]);
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let api = Server::start(Arc::new(move |request: &Request| {
        let call = seen.fetch_add(1, Ordering::SeqCst);
        // Basic auth of key:secret.
        if request.headers.get("authorization").map(String::as_str) != Some("Basic a2V5OnNlY3JldA==") {
            return Reply::new(401, "Invalid API key");
        }
        if call == 0 {
            return Reply::Answer {
                status: 429,
                headers: vec![("Retry-After".into(), "1".into())],
                body: b"slow down".to_vec(),
            };
        }
        let query = request.path.split_once('?').map(|(_, q)| q).unwrap_or("");
        match query {
            "start=20240301T00&end=20240301T23" => {
                Reply::Answer { status: 200, headers: Vec::new(), body: day1.clone() }
            }
            "start=20240303T00&end=20240303T23" => {
                Reply::Answer { status: 200, headers: Vec::new(), body: day3.clone() }
            }
            "start=20240302T00&end=20240302T23" => Reply::new(404, "Raw data files were not found."),
            other => Reply::new(400, &format!("unexpected range {other}")),
        }
    }));
    let capture = Capture::start();
    let dir = TempDir::new("amplitude");
    let state = dir.0.join("s.sqlite");
    let source = format!("--api-key key --secret-key secret --amplitude-url {}", api.url);
    let output = cli().args(destination(&capture, state.to_str().unwrap(), &source)).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let received = capture.accepted.lock().unwrap().clone();
    assert_eq!(received.len(), events + pairs.len() + 2, "{}", text(&output));
    assert!(received.iter().any(|e| e["event"] == "late"));
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    let wrong = format!("--api-key key --secret-key nope --amplitude-url {}", api.url);
    let refused = cli().args(destination(&capture, dir.0.join("t.sqlite").to_str().unwrap(), &wrong)).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused).contains("Amplitude refused the keys (HTTP 401)"), "{}", text(&refused));
}

/// Runs an import of `source` (its --files) into `capture` with a state file in `dir`.
fn import(capture: &Capture, dir: &Path, source: &Path, more: &str) -> std::process::Output {
    let state = dir.join("s.sqlite");
    let source = format!("--files {} {more}", source.display());
    cli().args(destination(capture, state.to_str().unwrap(), &source)).output().unwrap()
}

#[test]
fn an_export_with_nothing_to_import_is_named_by_its_flag_and_nothing_is_stored() {
    let dir = TempDir::new("amplitude-nothing");
    let folder = |name: &str, files: &[(&str, Vec<u8>)]| {
        let path = dir.0.join(name);
        std::fs::create_dir_all(&path).unwrap();
        for (file, bytes) in files {
            std::fs::write(path.join(file), bytes).unwrap();
        }
        path
    };
    let package = "{\n  \"name\": \"shop\",\n  \"version\": \"1.0.0\"\n}\n".as_bytes().to_vec();
    let malformed: Vec<String> = (0..5).map(|n| format!("{{\"event_type\": \"cut off at {n}")).collect();
    let arrays: Vec<String> =
        (0..3).map(|n| json!([{"event_type": "viewed", "user_id": format!("u{n}")}]).to_string()).collect();
    let cases = [
        ("an empty folder", folder("empty", &[])),
        (
            "a folder that is not an export",
            folder("photos", &[("a.png", vec![0x89, b'P', b'N', b'G']), ("notes.txt", b"hi".to_vec())]),
        ),
        ("a zip without export files", {
            let path = dir.0.join("docs.zip");
            std::fs::write(&path, zip(&[("README.md".to_string(), b"# docs".to_vec())])).unwrap();
            path
        }),
        ("a folder of other JSON", folder("project", &[("package.json", package)])),
        ("an export of malformed lines", folder("malformed", &[("1_2024-03-01_0#0.json.gz", gzip(&malformed))])),
        ("an export of JSON arrays", folder("arrays", &[("1_2024-03-01_0#0.json.gz", gzip(&arrays))])),
    ];
    let capture = Capture::start();
    for (what, path) in cases {
        let run_dir = TempDir::new("amplitude-nothing-run");
        let output = import(&capture, &run_dir.0, &path, "");
        let said = text(&output);
        assert_eq!(output.status.code(), Some(1), "{what}: {said}");
        let first = said.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("migrator3000: --files: ") && first.contains(&path.display().to_string()),
            "{what}: {said}"
        );
        assert!(first.contains("holds no"), "{what}: {said}");
        assert!(!said.contains("complete"), "{what}: {said}");
        assert!(!run_dir.0.join("s.sqlite").exists(), "{what}: a state file was made");
    }
    assert_eq!(*capture.requests.lock().unwrap(), 0);
}

#[test]
fn a_file_that_starts_with_a_byte_order_mark_is_read_from_its_first_line() {
    let dir = TempDir::new("amplitude-bom");
    let export = dir.0.join("export");
    std::fs::create_dir_all(&export).unwrap();
    let good: Vec<String> = (0..6).map(|n| line(n, Some("u1"), Some("d1"), "viewed", n)).collect();
    let mut first = good[..4].to_vec();
    first[0] = format!("\u{feff}{}", first[0]);
    std::fs::write(export.join("7_2024-03-01_0#0.json.gz"), gzip(&first)).unwrap();
    // A plain .json file given alone, as an editor on Windows saves it.
    let plain = dir.0.join("7_2024-03-01_1#0.json");
    std::fs::write(&plain, format!("\u{feff}{}", good[4..].join("\n"))).unwrap();
    let capture = Capture::start();
    let output = import(&capture, &dir.0, &export, "");
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("0 rejected"), "{}", text(&output));
    let plain_dir = TempDir::new("amplitude-bom-plain");
    let output = import(&capture, &plain_dir.0, &plain, "");
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("0 rejected"), "{}", text(&output));
    let inserts: HashSet<String> = capture
        .accepted
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| e["properties"]["$amplitude_insert_id"].as_str().map(str::to_string))
        .collect();
    let expected: HashSet<String> = good
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["$insert_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(inserts, expected, "the first line of each file must arrive");
}

#[test]
fn an_import_whose_lines_are_not_all_read_never_says_complete_and_a_rerun_reads_again() {
    let dir = TempDir::new("amplitude-unaccounted");
    let export = dir.0.join("export");
    std::fs::create_dir_all(&export).unwrap();
    let file = |hour: usize| -> Vec<String> {
        (0..20)
            .map(|i| line(hour * 100 + i, Some(&format!("u{i}")), Some(&format!("d{hour}-{i}")), "viewed", hour))
            .collect()
    };
    std::fs::write(export.join("7_2024-03-01_0#0.json.gz"), gzip(&file(0))).unwrap();
    let whole = gzip(&file(1));
    // Cut short, as a download that stopped half way.
    std::fs::write(export.join("7_2024-03-01_1#0.json.gz"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(export.join("7_2024-03-01_2#0.json.gz"), gzip(&file(2))).unwrap();
    let capture = Capture::start();
    let output = import(&capture, &dir.0, &export, "--skip-unreadable");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(6), "{said}");
    assert!(!said.contains("The migration is complete"), "{said}");
    assert!(said.contains("7_2024-03-01_1#0.json.gz") && said.contains("not complete"), "{said}");
    assert!(said.contains("Of the 40 lines read from the export, 40 became events, 0 were rejected"), "{said}");
    let state = dir.0.join("s.sqlite");
    let status = text(&run(&["--state", state.to_str().unwrap(), "status"]));
    assert!(status.contains("in progress"), "{status}");
    let sent = capture.uuids().len();
    assert_eq!(sent, 40 + 40, "two files' events and their aliases");
    // The same command again reads again: the cut file still cannot be read, and what
    // was imported is not sent again.
    let again = import(&capture, &dir.0, &export, "--skip-unreadable");
    assert_eq!(again.status.code(), Some(6), "{}", text(&again));
    assert_eq!(capture.uuids().len(), sent, "{}", text(&again));
    // Downloaded again: the rest arrives, and the import is complete.
    std::fs::write(export.join("7_2024-03-01_1#0.json.gz"), &whole).unwrap();
    let fixed = import(&capture, &dir.0, &export, "--skip-unreadable");
    let said = text(&fixed);
    assert!(fixed.status.success(), "{said}");
    assert!(said.contains("The migration is complete"), "{said}");
    let received = capture.uuids();
    let distinct: HashSet<&String> = received.iter().collect();
    assert_eq!((received.len(), distinct.len()), (120, 120), "every event and alias once");
}

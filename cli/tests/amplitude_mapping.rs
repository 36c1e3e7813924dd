//! What each line of an Amplitude export becomes at the destination, on lines that
//! follow the Export API's documented schema (web, iOS and Android SDK values, nulls,
//! `EMPTY` placeholders, session -1), in files named and zipped as Amplitude names them;
//! the real command against the loopback capture.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};
use support::export::{self, line, Platform};
use support::*;

/// `migrator3000 amplitude --files <files> <extra>` into `capture`, with `state`.
fn import(capture: &Capture, state: &Path, files: &Path, extra: &str) -> Output {
    let args = words(&format!(
        "--state {} amplitude --files {} --host {} --project-api-key phc_destination --retry-scale 0.001 \
         --concurrency 1 {extra}",
        state.display(),
        files.display(),
        capture.server.url
    ));
    cli().args(args).output().unwrap()
}

/// A folder export: each file's lines gzipped under the name given.
fn folder(dir: &Path, files: &[(String, Vec<Value>)]) -> std::path::PathBuf {
    let root = dir.join("export");
    for (name, lines) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, export::gzip(&export::text(lines))).unwrap();
    }
    root
}

fn ok(output: &Output) -> String {
    let said = text(output);
    assert!(output.status.success(), "{said}");
    said
}

fn received(capture: &Capture) -> Vec<Value> {
    capture.accepted.lock().unwrap().clone()
}

/// The event whose `$amplitude_insert_id` is `insert-n`.
fn by_insert(events: &[Value], n: u64) -> &Value {
    let id = format!("insert-{n}");
    events
        .iter()
        .find(|e| e["properties"]["$amplitude_insert_id"] == *id.as_str())
        .unwrap_or_else(|| panic!("no event of {id} in {events:#?}"))
}

const DAY: &str = "2024-03-01";

#[test]
fn web_lines_get_browser_and_os_from_the_right_fields_and_every_device_type_is_posthogs() {
    let dir = TempDir::new("amp-web");
    let lines = vec![
        line(Platform::Web, 1, Some("u1"), "d1", "viewed item", "2024-03-01 09:00:01.000000"),
        line(Platform::Ios, 2, Some("u2"), "d2", "opened app", "2024-03-01 09:00:02.000000"),
        line(Platform::Android, 3, Some("u3"), "d3", "opened app", "2024-03-01 09:00:03.000000"),
        line(Platform::AndroidTablet, 4, Some("u4"), "d4", "opened app", "2024-03-01 09:00:04.000000"),
    ];
    let files = folder(&dir.0, &[(export::file_name(DAY, 9, 0), lines)]);
    let capture = Capture::start();
    ok(&import(&capture, &dir.0.join("s.sqlite"), &files, ""));
    let events = received(&capture);

    let web = &by_insert(&events, 1)["properties"];
    assert_eq!((&web["$browser"], &web["$browser_version"]), (&json!("Chrome"), &json!(122)), "{web:#}");
    assert_eq!((&web["$os"], &web["$device_type"]), (&json!("Mac OS X"), &json!("Desktop")), "{web:#}");
    assert!(web.get("$os_version").is_none(), "the browser's version is no OS version: {web:#}");

    let ios = &by_insert(&events, 2)["properties"];
    assert_eq!((&ios["$os"], &ios["$os_version"]), (&json!("iOS"), &json!("17.2.1")), "{ios:#}");
    assert_eq!((&ios["$device_type"], &ios["$device_model"]), (&json!("Mobile"), &json!("iPhone14,5")), "{ios:#}");
    assert_eq!((&ios["$device_manufacturer"], &ios["$app_version"]), (&json!("Apple"), &json!("3.2.0")));
    assert!(ios.get("$browser").is_none(), "{ios:#}");

    let android = &by_insert(&events, 3)["properties"];
    assert_eq!((&android["$os"], &android["$device_type"]), (&json!("Android"), &json!("Mobile")), "{android:#}");
    assert_eq!(by_insert(&events, 4)["properties"]["$device_type"], "Tablet");

    for event in events.iter().filter(|e| e["event"] != "$create_alias") {
        let kind = &event["properties"]["$device_type"];
        assert!(["Desktop", "Mobile", "Tablet"].contains(&kind.as_str().unwrap_or_default()), "{event:#}");
    }
}

#[test]
fn placeholders_are_dropped_and_initial_attribution_takes_posthogs_names() {
    let dir = TempDir::new("amp-empty");
    let mut with_referrer = line(Platform::Web, 2, Some("u2"), "d2", "x", "2024-03-01 09:00:02.000000");
    with_referrer["user_properties"]["initial_referrer"] = json!("https://news.example.org/");
    let lines = vec![line(Platform::Web, 1, Some("u1"), "d1", "x", "2024-03-01 09:00:01.000000"), with_referrer];
    let files = folder(&dir.0, &[(export::file_name(DAY, 9, 0), lines)]);
    let capture = Capture::start();
    ok(&import(&capture, &dir.0.join("s.sqlite"), &files, ""));
    let events = received(&capture);

    for event in &events {
        let text = event.to_string();
        assert!(!text.contains("\"EMPTY\""), "a placeholder went through: {event:#}");
    }
    let first = &by_insert(&events, 1)["$set_once"];
    assert_eq!(first["$initial_utm_medium"], "newsletter", "{first:#}");
    assert!(first.get("initial_utm_medium").is_none() && first.get("$initial_referrer").is_none(), "{first:#}");
    assert_eq!(by_insert(&events, 2)["$set_once"]["$initial_referrer"], "https://news.example.org/");
    assert_eq!(by_insert(&events, 1)["$set"]["plan"], "pro");
}

#[test]
fn session_minus_one_or_zero_is_no_session_and_real_ones_become_uuid_v7_of_their_start() {
    let dir = TempDir::new("amp-session");
    let mut lines: Vec<Value> = (1..=5)
        .map(|n| line(Platform::Web, n, Some("u1"), "d1", "x", &format!("2024-03-01 09:00:0{n}.000000")))
        .collect();
    lines[0]["session_id"] = json!(-1);
    lines[1]["session_id"] = json!(0);
    // 3 and 4: one session of d1; 5: the same start time on another device.
    lines[4]["device_id"] = json!("d2");
    let files = folder(&dir.0, &[(export::file_name(DAY, 9, 0), lines)]);
    let capture = Capture::start();
    ok(&import(&capture, &dir.0.join("s.sqlite"), &files, ""));
    let events = received(&capture);

    for n in [1, 2] {
        let p = &by_insert(&events, n)["properties"];
        assert!(p.get("$session_id").is_none() && p.get("$amplitude_session_id").is_none(), "{p:#}");
    }
    let session = |n| by_insert(&events, n)["properties"]["$session_id"].as_str().unwrap().to_string();
    let (three, four, five) = (session(3), session(4), session(5));
    assert_eq!(three, four, "one Amplitude session, one PostHog session");
    assert_ne!(three, five, "sessions of two devices that started in the same millisecond");
    // A UUID v7 whose time is the session's start (Amplitude's session id is its start, in ms).
    assert_eq!(&three[14..15], "7", "{three}");
    let millis = u64::from_str_radix(&three.replace('-', "")[..12], 16).unwrap();
    assert_eq!(millis, 1_709_280_000_000);
    assert_eq!(by_insert(&events, 3)["properties"]["$amplitude_session_id"], 1_709_280_000_000u64);
}

#[test]
fn page_attribution_and_viewport_fields_and_the_persons_properties_as_posthogs_sdks_set_them() {
    let dir = TempDir::new("amp-page");
    let lines = vec![
        line(Platform::Web, 1, Some("u1"), "d1", "[Amplitude] Page Viewed", "2024-03-01 09:00:01.000000"),
        line(Platform::Ios, 2, Some("u2"), "d2", "opened app", "2024-03-01 09:00:02.000000"),
    ];
    let files = folder(&dir.0, &[(export::file_name(DAY, 9, 0), lines)]);
    let capture = Capture::start();
    ok(&import(&capture, &dir.0.join("s.sqlite"), &files, ""));
    let events = received(&capture);

    let page = by_insert(&events, 1);
    assert_eq!(page["event"], "$pageview");
    let p = &page["properties"];
    for (key, value) in [
        ("$current_url", json!("https://shop.example.com/item/7?ref=mail")),
        ("$host", json!("shop.example.com")),
        ("$pathname", json!("/item/7")),
        ("title", json!("Item 7 — Shop")),
        ("$referrer", json!("https://www.google.com/")),
        ("$referring_domain", json!("www.google.com")),
        ("$viewport_height", json!(900)),
        ("$viewport_width", json!(1440)),
        ("$geoip_country_name", json!("Portugal")),
        ("$geoip_city_name", json!("Porto")),
    ] {
        assert_eq!(p[key], value, "{key}: {p:#}");
    }
    let set = &page["$set"];
    for key in [
        "$browser",
        "$browser_version",
        "$os",
        "$device_type",
        "$current_url",
        "$pathname",
        "$referrer",
        "$referring_domain",
        "$geoip_country_name",
        "$geoip_city_name",
        "$geoip_subdivision_1_name",
    ] {
        assert_eq!(set[key], p[key], "$set.{key}: {set:#}");
    }
    let app = &by_insert(&events, 2)["$set"];
    assert_eq!(
        (&app["$os"], &app["$os_version"], &app["$app_version"]),
        (&json!("iOS"), &json!("17.2.1"), &json!("3.2.0"))
    );
    assert!(app.get("$current_url").is_none(), "{app:#}");
}

#[test]
fn a_line_without_event_time_is_timed_by_client_then_server_time_and_the_summary_says_so() {
    let dir = TempDir::new("amp-time");
    let mut client = line(Platform::Web, 1, Some("u1"), "d1", "x", "2024-03-01 09:00:01.000000");
    client.as_object_mut().unwrap().remove("event_time");
    client["client_event_time"] = json!("2024-03-01 09:10:00.250000");
    let mut server = line(Platform::Web, 2, Some("u1"), "d1", "x", "2024-03-01 09:00:02.000000");
    server["event_time"] = Value::Null;
    server["client_event_time"] = Value::Null;
    server["server_received_time"] = json!("2024-03-01 09:20:00.500000");
    let mut none = line(Platform::Web, 3, Some("u1"), "d1", "x", "2024-03-01 09:00:03.000000");
    for field in ["event_time", "client_event_time", "server_received_time"] {
        none[field] = Value::Null;
    }
    let files = folder(&dir.0, &[(export::file_name(DAY, 9, 0), vec![client, server, none])]);
    let capture = Capture::start();
    let said = ok(&import(&capture, &dir.0.join("s.sqlite"), &files, ""));
    let events = received(&capture);

    assert_eq!(by_insert(&events, 1)["timestamp"], "2024-03-01T09:10:00.250Z");
    assert_eq!(by_insert(&events, 2)["timestamp"], "2024-03-01T09:20:00.500Z");
    assert!(!events.iter().any(|e| e["properties"]["$amplitude_insert_id"] == "insert-3"));
    assert!(said.contains("1 rejected"), "{said}");
    assert!(said.contains("line 3: the event has no event_time, client_event_time or server_received_time"), "{said}");
    assert!(said.contains("1 event had no event_time: timed by its client_event_time"), "{said}");
    assert!(
        said.contains("1 event had no event_time nor client_event_time: timed by its server_received_time"),
        "{said}"
    );
}

#[test]
fn files_are_read_in_the_order_of_their_hour_and_each_file_in_its_own_order() {
    let dir = TempDir::new("amp-order");
    let at = |n: u64, time: &str, plan: &str| {
        let mut l = line(Platform::Web, n, Some("u1"), "d1", "x", time);
        l["user_properties"]["plan"] = json!(plan);
        l
    };
    // By name, _10 and _11 come before _2 and _9.
    let files = [
        (export::file_name(DAY, 10, 1), vec![at(6, "2024-03-01 10:40:00.000000", "pro")]),
        (export::file_name(DAY, 2, 0), vec![at(1, "2024-03-01 02:00:00.000000", "free")]),
        (export::file_name(DAY, 9, 0), vec![at(2, "2024-03-01 09:00:00.000000", "free")]),
        // A file's own order is kept, even when a late line comes first.
        (
            export::file_name(DAY, 10, 0),
            vec![at(4, "2024-03-01 10:30:00.000000", "trial"), at(3, "2024-03-01 09:59:59.000000", "trial")],
        ),
        (export::file_name(DAY, 11, 0), vec![at(7, "2024-03-01 11:00:00.000000", "enterprise")]),
        (export::file_name("2024-03-02", 0, 0), vec![at(8, "2024-03-02 00:00:00.000000", "enterprise")]),
    ];
    let zip = dir.0.join("export.zip");
    let entries: Vec<(String, Vec<u8>)> =
        files.iter().map(|(name, lines)| (name.clone(), export::gzip(&export::text(lines)))).collect();
    std::fs::write(&zip, export::zip(&entries)).unwrap();
    let capture = Capture::start();
    ok(&import(&capture, &dir.0.join("s.sqlite"), &zip, "--batch-size 1"));
    let order: Vec<String> = received(&capture)
        .iter()
        .filter_map(|e| e["properties"]["$amplitude_insert_id"].as_str().map(str::to_string))
        .collect();
    let expected: Vec<String> = [1, 2, 4, 3, 6, 7, 8].iter().map(|n| format!("insert-{n}")).collect();
    assert_eq!(order, expected);
}

#[test]
fn session_end_is_kept_unless_ignored_and_session_start_is_dropped() {
    let dir = TempDir::new("amp-session-end");
    let lines = vec![
        line(Platform::Ios, 1, Some("u1"), "d1", "session_start", "2024-03-01 09:00:01.000000"),
        line(Platform::Ios, 2, Some("u1"), "d1", "opened app", "2024-03-01 09:00:02.000000"),
        line(Platform::Ios, 3, Some("u1"), "d1", "session_end", "2024-03-01 09:30:00.000000"),
    ];
    let files = folder(&dir.0, &[(export::file_name(DAY, 9, 0), lines)]);
    let capture = Capture::start();
    ok(&import(&capture, &dir.0.join("s.sqlite"), &files, ""));
    let names: Vec<String> = received(&capture).iter().map(|e| e["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["$create_alias", "opened app", "session_end"]);

    let other = Capture::start();
    ok(&import(&other, &dir.0.join("t.sqlite"), &files, "--events-to-ignore session_end"));
    let names: Vec<String> = received(&other).iter().map(|e| e["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["$create_alias", "opened app"]);
}

fn links(events: &[Value]) -> HashSet<(String, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "$create_alias")
        .map(|e| (e["distinct_id"].as_str().unwrap().into(), e["properties"]["alias"].as_str().unwrap().into()))
        .collect()
}

#[test]
fn a_second_destination_with_the_same_state_file_gets_every_link_too() {
    let dir = TempDir::new("amp-two");
    let lines = vec![
        line(Platform::Web, 1, None, "d1", "x", "2024-03-01 09:00:01.000000"),
        line(Platform::Web, 2, Some("u1"), "d1", "x", "2024-03-01 09:00:02.000000"),
        line(Platform::Ios, 3, Some("u2"), "d2", "x", "2024-03-01 09:00:03.000000"),
        // d1 again, with another user: PostHog would refuse to merge u1 and u3.
        line(Platform::Web, 4, Some("u3"), "d1", "x", "2024-03-01 09:00:04.000000"),
    ];
    let files = folder(&dir.0, &[(export::file_name(DAY, 9, 0), lines)]);
    let state = dir.0.join("s.sqlite");
    let expected: HashSet<(String, String)> =
        [("u1", "d1"), ("u2", "d2")].iter().map(|(u, d)| (u.to_string(), d.to_string())).collect();
    let first = Capture::start();
    ok(&import(&first, &state, &files, ""));
    assert_eq!(links(&received(&first)), expected);
    let second = Capture::start();
    ok(&import(&second, &state, &files, ""));
    assert_eq!(links(&received(&second)), expected, "the second destination got no links");
    // The first destination, again with the next day's export: nothing linked twice.
    let next = TempDir::new("amp-two-next");
    let lines = vec![line(Platform::Web, 5, Some("u1"), "d1", "x", "2024-03-02 09:00:00.000000")];
    let files = folder(&next.0, &[(export::file_name("2024-03-02", 9, 0), lines)]);
    let before = received(&first).len();
    ok(&import(&first, &state, &files, ""));
    assert!(links(&received(&first)[before..]).is_empty());
}

#[test]
fn links_of_a_state_file_from_before_destinations_are_sent_to_each_destination_once() {
    let dir = TempDir::new("amp-old-state");
    let state = dir.0.join("old.sqlite");
    {
        let db = rusqlite::Connection::open(&state).unwrap();
        db.execute_batch(
            "CREATE TABLE amplitude_aliases (user_id TEXT NOT NULL, device_id TEXT NOT NULL, \
             PRIMARY KEY (user_id, device_id)); INSERT INTO amplitude_aliases VALUES ('u1', 'd1');",
        )
        .unwrap();
    }
    let lines = vec![line(Platform::Web, 1, Some("u1"), "d1", "x", "2024-03-01 09:00:01.000000")];
    let files = folder(&dir.0, &[(export::file_name(DAY, 9, 0), lines)]);
    let capture = Capture::start();
    ok(&import(&capture, &state, &files, ""));
    assert_eq!(links(&received(&capture)).len(), 1, "the old table's pair was sent to no destination we know of");
}

fn groups(events: &[Value]) -> Vec<(String, String, Value, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "$groupidentify")
        .map(|e| {
            let p = &e["properties"];
            (
                p["$group_type"].as_str().unwrap().into(),
                p["$group_key"].as_str().unwrap().into(),
                p["$group_set"].clone(),
                e["distinct_id"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[test]
fn group_properties_become_groupidentify_once_per_change_when_asked() {
    let dir = TempDir::new("amp-groups");
    let with_group = |n: u64, seats: u64| {
        let mut l = line(Platform::Web, n, Some("u1"), "d1", "x", &format!("2024-03-01 09:00:0{n}.000000"));
        l["groups"] = json!({"company": ["acme"]});
        l["group_properties"] = json!({"company": {"acme": {"plan": "enterprise", "seats": seats}}});
        l
    };
    // Amplitude's own record of a Group Identify call: no user, no device.
    let mut identify = line(Platform::Web, 4, None, "", "$groupidentify", "2024-03-01 09:00:04.000000");
    identify["device_id"] = Value::Null;
    identify["groups"] = json!({"company": "globex"});
    identify["group_properties"] = json!({"company": {"globex": {"plan": "startup"}}});
    let lines = vec![with_group(1, 40), with_group(2, 40), with_group(3, 45), identify];
    let files = folder(&dir.0, &[(export::file_name(DAY, 9, 0), lines)]);

    let off = Capture::start();
    let said = ok(&import(&off, &dir.0.join("off.sqlite"), &files, ""));
    assert!(groups(&received(&off)).is_empty());
    assert_eq!(by_insert(&received(&off), 1)["properties"]["$groups"], json!({"company": "acme"}));
    assert!(said.contains("--group-identify"), "the summary must say how to bring groups over: {said}");

    let on = Capture::start();
    let state = dir.0.join("on.sqlite");
    ok(&import(&on, &state, &files, "--group-identify"));
    let sent = groups(&received(&on));
    assert_eq!(
        sent,
        [
            ("company".into(), "acme".into(), json!({"plan": "enterprise", "seats": 40}), "u1".into()),
            ("company".into(), "acme".into(), json!({"plan": "enterprise", "seats": 45}), "u1".into()),
            ("company".into(), "globex".into(), json!({"plan": "startup"}), "$company_globex".into()),
        ]
    );
    // Each before the event that carried it.
    let all = received(&on);
    let names: Vec<&str> = all.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names[..4], ["$create_alias", "$groupidentify", "x", "x"]);
    // The next export with unchanged properties changes nothing at this destination.
    let next = TempDir::new("amp-groups-next");
    let files = folder(&next.0, &[(export::file_name("2024-03-02", 9, 0), vec![with_group(5, 45)])]);
    let before = received(&on).len();
    ok(&import(&on, &state, &files, "--group-identify"));
    assert!(groups(&received(&on)[before..]).is_empty());
}

#[test]
fn a_single_json_gz_is_accepted() {
    let dir = TempDir::new("amp-single");
    let lines = vec![line(Platform::Android, 1, Some("u1"), "d1", "x", "2024-03-01 09:00:01.000000")];
    let files = folder(&dir.0, &[("421337_2024-03-01_9#0.json.gz".into(), lines)]);
    let capture = Capture::start();
    ok(&import(&capture, &dir.0.join("s.sqlite"), &files.join("421337_2024-03-01_9#0.json.gz"), ""));
    assert_eq!(received(&capture).len(), 2);

    std::fs::write(dir.0.join("notes.txt"), "not an export").unwrap();
    let output = import(&capture, &dir.0.join("t.sqlite"), &dir.0.join("notes.txt"), "");
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("is neither a zip nor a .json.gz"), "{}", text(&output));
}

#[test]
fn an_unreadable_file_is_named_with_its_folder_and_skipped_only_when_asked() {
    let dir = TempDir::new("amp-unreadable");
    let good = |n| vec![line(Platform::Web, n, Some("u1"), "d1", "x", &format!("2024-03-01 0{n}:00:00.000000"))];
    let files = folder(&dir.0, &[(export::file_name(DAY, 1, 0), good(1)), (export::file_name(DAY, 3, 0), good(3))]);
    let many: Vec<Value> =
        (0..2000).map(|i| line(Platform::Web, 100 + i, Some("u1"), "d1", "x", "2024-03-01 02:00:00.000000")).collect();
    let mut cut = export::gzip(&export::text(&many));
    cut.truncate(cut.len() / 2);
    let broken = files.join(export::file_name(DAY, 2, 0));
    std::fs::write(&broken, cut).unwrap();

    let capture = Capture::start();
    let state = dir.0.join("s.sqlite");
    let output = import(&capture, &state, &files, "");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("421337_2024-03-01_2#0.json.gz"), "the file is named: {said}");
    assert!(said.contains(&files.display().to_string()), "the folder is named: {said}");
    assert!(said.contains("--skip-unreadable"), "{said}");

    // The rest is imported, and the import is not complete while the file's lines are not.
    let output = import(&capture, &state, &files, "--skip-unreadable");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(6), "{said}");
    assert!(said.contains("The migration is not complete: 1 file could not be read"), "{said}");
    let inserts: HashSet<String> = received(&capture)
        .iter()
        .filter_map(|e| e["properties"]["$amplitude_insert_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(inserts, ["insert-1", "insert-3"].iter().map(|s| s.to_string()).collect());
    assert!(said.contains("skipped as unreadable") && said.contains("2#0.json.gz"), "{said}");
}

#[test]
fn a_rerun_imports_new_and_changed_files_only_and_says_what_differs() {
    let dir = TempDir::new("amp-rerun");
    let hour = |h: u32, n: u64| {
        (
            export::file_name(DAY, h, 0),
            vec![line(Platform::Web, n, Some("u1"), "d1", "x", &format!("2024-03-01 {h:02}:00:00.000000"))],
        )
    };
    let files = folder(&dir.0, &[hour(1, 1), hour(2, 2)]);
    let capture = Capture::start();
    let state = dir.0.join("s.sqlite");
    ok(&import(&capture, &state, &files, ""));
    assert_eq!(received(&capture).len(), 3);
    // A file added to the folder: only it is read.
    folder(&dir.0, &[hour(3, 3)]);
    let said = ok(&import(&capture, &state, &files, ""));
    let after: Vec<Value> = received(&capture)[3..].to_vec();
    assert_eq!(after.len(), 1, "{after:#?}");
    assert_eq!(after[0]["properties"]["$amplitude_insert_id"], "insert-3");
    assert!(said.contains("1 new file") && said.contains("2 files imported before"), "{said}");
    let said = ok(&import(&capture, &state, &files, ""));
    assert!(said.contains("already complete") && !said.contains("differs"), "{said}");
    assert_eq!(received(&capture).len(), 4);

    // A zip replaced by a newer one at the same path: one entry changed, one added.
    let zip = dir.0.join("export.zip");
    let entries = |list: &[(String, Vec<Value>)]| -> Vec<(String, Vec<u8>)> {
        list.iter().map(|(name, lines)| (name.clone(), export::gzip(&export::text(lines)))).collect()
    };
    std::fs::write(&zip, export::zip(&entries(&[hour(5, 5), hour(6, 6)]))).unwrap();
    ok(&import(&capture, &state, &zip, ""));
    assert_eq!(received(&capture).len(), 6);
    let changed = (
        export::file_name(DAY, 6, 0),
        vec![line(Platform::Web, 16, Some("u1"), "d1", "x", "2024-03-01 06:30:00.000000")],
    );
    std::fs::write(&zip, export::zip(&entries(&[hour(5, 5), changed, hour(7, 7)]))).unwrap();
    let said = ok(&import(&capture, &state, &zip, ""));
    let after: HashSet<String> = received(&capture)[6..]
        .iter()
        .filter_map(|e| e["properties"]["$amplitude_insert_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(after, ["insert-16", "insert-7"].iter().map(|s| s.to_string()).collect());
    assert!(
        said.contains("1 new file") && said.contains("1 changed") && said.contains("1 file imported before"),
        "{said}"
    );
}

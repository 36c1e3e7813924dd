//! Our Mixpanel mapping beside PostHog's own importer's (rust/batch-import-worker,
//! parse/content/mixpanel.rs), rule by rule. Its rules are written here as data, read
//! from its code; each case goes through the real command into the loopback capture,
//! and every field PostHog's importer sets is compared. Where we differ on purpose
//! (README: "What each Mixpanel field becomes"), the case says what we do instead.

mod support;

use serde_json::{json, Value};
use support::*;

/// PostHog's importer: the uuid of a line with `$insert_id`.
fn posthog_uuid(insert_id: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::from_bytes(*b"posthog_mixpanel"), insert_id.as_bytes()).to_string()
}

/// PostHog's importer's event name map.
const EVENT_NAMES: &[(&str, &str)] = &[("$mp_web_page_view", "$pageview"), ("Signed Up", "Signed Up")];
/// PostHog's importer's property renames.
const RENAMES: &[(&str, &str)] = &[
    ("$city", "$geoip_city_name"),
    ("$region", "$geoip_subdivision_1_name"),
    ("mp_country_code", "$geoip_country_code"),
];
/// Properties PostHog's importer removes.
const REMOVED: &[&str] =
    &["$mp_api_endpoint", "mp_processing_time_ms", "$insert_id", "$geo_source", "$mp_api_timestamp_ms"];
/// Properties PostHog's importer copies into `$set` / `$set_once`.
const SET: &[&str] = &[
    "$browser",
    "$browser_version",
    "$os",
    "$os_version",
    "$device",
    "$device_type",
    "$current_url",
    "$referrer",
    "$referring_domain",
    "$geoip_city_name",
    "$geoip_subdivision_1_name",
    "$geoip_country_code",
    "$geoip_country_name",
];
const SET_ONCE: &[&str] = &[
    "$initial_referrer",
    "$initial_referring_domain",
    "$initial_utm_source",
    "$initial_utm_medium",
    "$initial_utm_campaign",
    "$initial_utm_content",
    "$initial_utm_term",
];
/// PostHog's importer's distinct_id: (distinct_id, $distinct_id_before_identity, $user_id,
/// $device_id) -> the event's distinct_id (None: no event).
#[allow(clippy::type_complexity)]
const DISTINCT_IDS: &[(Option<&str>, Option<&str>, Option<&str>, Option<&str>, Option<&str>)] = &[
    (Some("u1"), None, None, None, Some("u1")),
    (Some("$device:abc"), Some("before"), None, None, Some("before")),
    (Some("1A2B-3C4D"), Some("stable"), None, None, Some("stable")),
    (Some("12345"), Some("DEVICE-UUID"), None, None, Some("12345")),
    (Some("mixed-Case"), Some("before"), None, None, Some("mixed-Case")),
    (None, Some("before"), None, None, Some("before")),
    (None, None, Some("user-42"), Some("DEVICE-ABC"), Some("user-42")),
    (None, None, None, Some("DEVICE-ABC"), Some("DEVICE-ABC")),
    (None, None, None, None, None),
];
/// PostHog's importer's time: (`time`, the second it gives).
const TIMES: &[(i64, &str)] = &[(1_697_379_000, "2023-10-15T14:10:00"), (1_697_379_000_123, "2023-10-15T14:10:00")];

fn run(lines: &[Value]) -> (Vec<Value>, String) {
    let dir = TempDir::new("mixpanel-mapping");
    let file = dir.0.join("2023-10-15.json");
    std::fs::write(&file, lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")).unwrap();
    let capture = Capture::start();
    let output = cli()
        .args(words(&format!(
            "--state {} mixpanel --files {} --host {} --project-api-key phc_destination --retry-scale 0.001",
            dir.0.join("s.sqlite").display(),
            file.display(),
            capture.server.url
        )))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let events = capture.accepted.lock().unwrap().iter().filter(|e| e["event"] != "$create_alias").cloned().collect();
    (events, text(&output))
}

#[test]
fn every_rule_of_posthogs_importer_holds_field_by_field() {
    let mut properties = json!({
        "time": 1_697_379_000, "distinct_id": "u1", "$user_id": "u1", "$device_id": "d1", "$insert_id": "ins-1",
        "$geo_source": "reverse_geocoding", "$mp_api_endpoint": "api.mixpanel.com", "mp_processing_time_ms": 1,
        "$mp_api_timestamp_ms": 2, "$city": "Lisbon", "$region": "Lisbon", "mp_country_code": "US", "custom": [1, 2],
    });
    for key in SET.iter().chain(SET_ONCE).filter(|k| !k.starts_with("$geoip")) {
        properties[*key] = json!(format!("value of {key}"));
    }
    let mut lines: Vec<Value> =
        EVENT_NAMES.iter().map(|(name, _)| json!({"event": name, "properties": properties})).collect();
    lines[1]["properties"]["$insert_id"] = json!("ins-2");
    let (events, _) = run(&lines);
    assert_eq!(events.len(), EVENT_NAMES.len());
    for ((from, to), event) in EVENT_NAMES.iter().zip(&events) {
        assert_eq!(event["event"], *to, "{from}");
        let p = &event["properties"];
        for (mixpanel, posthog) in RENAMES {
            assert_eq!(p[*posthog], properties[*mixpanel], "{mixpanel} -> {posthog}");
            assert!(p.get(*mixpanel).is_none(), "{mixpanel} left");
        }
        assert_eq!(p["$geoip_country_name"], "United States", "PostHog maps the long name to GeoIP's");
        for removed in REMOVED {
            assert!(p.get(*removed).is_none(), "{removed} kept");
        }
        assert_eq!((&p["historical_migration"], &p["analytics_source"]), (&json!(true), &json!("mixpanel")));
        assert_eq!((&p["$mixpanel_user_id"], &p["$mixpanel_device_id"]), (&json!("u1"), &json!("d1")));
        assert_eq!(p["custom"], json!([1, 2]), "other properties as they are");
        for key in SET {
            assert_eq!(event["$set"][*key], p[*key], "$set {key}");
        }
        for key in SET_ONCE {
            assert_eq!(event["$set_once"][*key], p[*key], "$set_once {key}");
        }
    }
    assert_eq!(events[0]["uuid"], posthog_uuid("ins-1").as_str(), "the uuid PostHog's importer gives the line");
    assert_eq!(events[1]["uuid"], posthog_uuid("ins-2").as_str());
}

#[test]
fn distinct_ids_and_times_as_posthogs_importer_resolves_them() {
    let lines: Vec<Value> = DISTINCT_IDS
        .iter()
        .enumerate()
        .map(|(n, (id, before, user, device, _))| {
            let mut p = json!({"time": 1_697_379_000, "$insert_id": format!("case-{n}")});
            for (key, value) in [
                ("distinct_id", id),
                ("$distinct_id_before_identity", before),
                ("$user_id", user),
                ("$device_id", device),
            ] {
                if let Some(value) = value {
                    p[key] = json!(value);
                }
            }
            json!({"event": "e", "properties": p})
        })
        .collect();
    let (events, said) = run(&lines);
    for (n, case) in DISTINCT_IDS.iter().enumerate() {
        let event = events.iter().find(|e| e["uuid"] == posthog_uuid(&format!("case-{n}")).as_str());
        match case.4 {
            Some(expected) => assert_eq!(event.unwrap()["distinct_id"], expected, "case {n}: {case:?}"),
            // PostHog's importer drops it silently; we reject it with its line.
            None => {
                assert!(event.is_none(), "case {n}");
                assert!(said.contains(&format!("line {}: no distinct_id", n + 1)), "{said}");
            }
        }
    }
    let lines: Vec<Value> = TIMES
        .iter()
        .map(|(time, _)| json!({"event": "t", "properties": {"time": time, "distinct_id": "u", "$insert_id": format!("t{time}")}}))
        .collect();
    let (events, _) = run(&lines);
    for (time, second) in TIMES {
        let event = events.iter().find(|e| e["uuid"] == posthog_uuid(&format!("t{time}")).as_str()).unwrap();
        let ours = event["timestamp"].as_str().unwrap();
        assert!(ours.starts_with(second), "{time}: {ours}");
        // We keep the milliseconds PostHog's importer cuts off.
        let millis = if *time > 10_000_000_000 { time % 1000 } else { 0 };
        assert_eq!(&ours[20..23], format!("{millis:03}"), "{time}: {ours}");
    }
}

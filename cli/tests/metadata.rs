//! `migrator3000 metadata` against PostHog-shaped instances on loopback: each instance a
//! process of `posthog_api/server.py` (PostHog's field names, validation, error bodies,
//! pagination, both URL forms, auth and rate limit, as `posthog_api/API.md` writes them
//! down, backed by SQLite), the source seeded with a project of tens of actions, cohorts
//! (dynamic, nested, behavioural, static with members, soft-deleted) and flags.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::posthog_api::{by, metadata as migrate, metadata_command as command, row, Instance};
use support::{text, TempDir};

/// Every id a filter tree's properties name, rewritten by `map` (kind, id) -> id.
fn remap(tree: &Value, map: &dyn Fn(&str, &Value) -> Value) -> Value {
    match tree {
        Value::Array(items) => Value::Array(items.iter().map(|i| remap(i, map)).collect()),
        Value::Object(o) => {
            let mut o = o.clone();
            match o.get("type").and_then(Value::as_str) {
                Some("cohort") => {
                    let v = map("cohorts", &o["value"]);
                    o.insert("value".into(), v);
                }
                Some("flag") => {
                    let v = map("feature_flags", &o["key"]);
                    o.insert("key".into(), v);
                }
                Some("behavioral") if o.get("event_type") == Some(&json!("actions")) => {
                    let v = map("actions", &o["key"]);
                    o.insert("key".into(), v);
                }
                _ => {
                    for value in o.values_mut() {
                        *value = remap(value, map);
                    }
                }
            }
            Value::Object(o)
        }
        other => other.clone(),
    }
}

fn members(instance: &Instance, cohort: &Value) -> BTreeSet<String> {
    instance
        .list(&format!("cohorts/{}/persons/", cohort["id"]))
        .iter()
        .flat_map(|p| {
            p["distinct_ids"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_whole_project_is_copied_with_every_reference_remapped_and_reruns_copy_only_changes() {
    let source = Instance::source(&[]);
    let destination = Instance::destination(&[]);
    let dir = TempDir::new("metadata-state");
    let state = dir.0.join("state.sqlite");

    // A dry run first: it says what it would do and sends nothing.
    let (code, out) = migrate(&state, &source, &destination, &["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Dry run: nothing was sent"), "{out}");
    assert_eq!(destination.requests("POST"), 0);

    let report = dir.0.join("report.html");
    let (code, out) = migrate(&state, &source, &destination, &["--report", report.to_str().unwrap()]);
    // Two objects cannot be copied as they are at the source: exit 6, both named.
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("\"Lapsed (refers to a deleted cohort)\": skipped: refers to cohort"), "{out}");
    assert!(out.contains("\"old-behavioural-flag\": skipped: a condition uses cohort"), "{out}");
    assert!(out.contains("Not complete: 2 of the source's"), "{out}");
    // at source, created, updated, matched, in step, changed there, skipped, failed
    assert_eq!(row(&out, "actions"), vec![27, 26, 0, 1, 0, 0, 0, 0], "{out}");
    assert_eq!(row(&out, "cohorts"), vec![23, 22, 0, 0, 0, 0, 1, 0], "{out}");
    assert_eq!(row(&out, "feature_flags"), vec![39, 37, 0, 1, 0, 0, 1, 0], "{out}");
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(page.contains(&format!("{}/project/12/feature_flags/", destination.url)), "links to the destination");

    // Field by field, each reference the destination's copy of what it named.
    let (s_actions, d_actions) = (source.list("actions/"), destination.list("actions/"));
    let (s_cohorts, d_cohorts) = (source.list("cohorts/"), destination.list("cohorts/"));
    let (s_flags, d_flags) = (source.list("feature_flags/"), destination.list("feature_flags/"));
    let mut ids: HashMap<(&str, String), Value> = HashMap::new();
    let (d_action_names, d_cohort_names, d_flag_keys) =
        (by(&d_actions, "name"), by(&d_cohorts, "name"), by(&d_flags, "key"));
    for a in &s_actions {
        ids.insert(("actions", a["id"].to_string()), d_action_names[a["name"].as_str().unwrap()]["id"].clone());
    }
    for c in s_cohorts.iter().filter(|c| d_cohort_names.contains_key(c["name"].as_str().unwrap())) {
        ids.insert(("cohorts", c["id"].to_string()), d_cohort_names[c["name"].as_str().unwrap()]["id"].clone());
    }
    for f in s_flags.iter().filter(|f| d_flag_keys.contains_key(f["key"].as_str().unwrap())) {
        ids.insert(("feature_flags", f["id"].to_string()), d_flag_keys[f["key"].as_str().unwrap()]["id"].clone());
    }
    let map = |kind: &str, id: &Value| -> Value {
        let found = ids
            .get(&(kind, id.to_string().trim_matches('"').to_string()))
            .unwrap_or_else(|| panic!("{kind} {id} has no copy"));
        if id.is_string() {
            json!(found.to_string())
        } else {
            found.clone()
        }
    };
    for a in s_actions.iter().filter(|a| a["name"] != "Viewed pricing 2") {
        let copy = &d_action_names[a["name"].as_str().unwrap()];
        for field in ["description", "post_to_slack", "slack_message_format", "steps"] {
            assert_eq!(copy[field], remap(&a[field], &map), "action {} {field}", a["name"]);
        }
    }
    assert_eq!(d_action_names["Viewed pricing 2"]["description"], "made here", "a matched object is left as it is");
    let mut statics = 0;
    for c in s_cohorts.iter().filter(|c| !c["name"].as_str().unwrap().starts_with("Lapsed")) {
        let copy = &d_cohort_names[c["name"].as_str().unwrap()];
        for field in ["description", "is_static", "filters"] {
            assert_eq!(copy[field], remap(&c[field], &map), "cohort {} {field}", c["name"]);
        }
        if c["is_static"] == true {
            statics += 1;
            let want = members(&source, c);
            assert!(!want.is_empty());
            assert_eq!(members(&destination, copy), want, "the members of {}", c["name"]);
        }
    }
    assert_eq!(statics, 5);
    for f in s_flags.iter().filter(|f| f["key"] != "old-behavioural-flag" && f["key"] != "flag-5") {
        let copy = &d_flag_keys[f["key"].as_str().unwrap()];
        for field in ["name", "active", "ensure_experience_continuity", "filters"] {
            assert_eq!(copy[field], remap(&f[field], &map), "flag {} {field}", f["key"]);
        }
    }
    assert!(destination.list("dashboards/").is_empty(), "no usage dashboard made for a copied flag");
    assert!(!d_cohort_names.contains_key("Customers 99"), "a soft-deleted cohort is not copied");

    // A rerun creates nothing.
    let posts = destination.requests("POST");
    let (code, out) = migrate(&state, &source, &destination, &[]);
    assert_eq!(code, 6, "{out}");
    assert_eq!(destination.requests("POST"), posts, "{out}");
    assert_eq!(row(&out, "feature_flags"), vec![39, 0, 0, 0, 38, 0, 1, 0], "{out}");

    // A change at the source updates exactly it; one at the destination is reported.
    let flag = s_flags.iter().find(|f| f["key"] == "flag-3").unwrap();
    source.patch(&format!("feature_flags/{}/", flag["id"]), json!({"name": "Flag 3, renamed at the source"}));
    let action = &d_action_names["Viewed pricing 1"];
    destination.patch(&format!("actions/{}/", action["id"]), json!({"description": "edited at the destination"}));
    let patches = destination.requests("PATCH");
    let (_, out) = migrate(&state, &source, &destination, &[]);
    assert_eq!(destination.requests("PATCH"), patches + 1, "{out}");
    assert_eq!(row(&out, "feature_flags")[2], 1, "{out}");
    assert_eq!(by(&destination.list("feature_flags/"), "key")["flag-3"]["name"], "Flag 3, renamed at the source");
    assert!(out.contains("\"Viewed pricing 1\": changed there: changed at the destination"), "{out}");
    assert!(out.contains("(description)"), "the field changed is named: {out}");
    assert_eq!(
        by(&destination.list("actions/"), "name")["Viewed pricing 1"]["description"],
        "edited at the destination"
    );
}

#[test]
fn a_refusal_of_one_object_is_reported_with_its_field_and_the_rest_goes_on() {
    let source = Instance::source(&[]);
    let destination = Instance::destination(&[]);
    let dir = TempDir::new("metadata-state");
    let state = dir.0.join("state.sqlite");
    destination.faults(json!([{"method": "POST", "status": 400, "body": {"type": "validation_error",
        "code": "max_length", "detail": "Ensure this field has no more than 400 characters.", "attr": "name"}}]));
    let (code, out) = migrate(&state, &source, &destination, &["--only", "actions"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("failed: HTTP 400 max_length on `name`: Ensure this field has no more than 400 characters."),
        "{out}"
    );
    assert_eq!(row(&out, "actions"), vec![27, 25, 0, 1, 0, 0, 0, 1], "{out}");
    let (code, out) = migrate(&state, &source, &destination, &["--only", "actions"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(row(&out, "actions"), vec![27, 1, 0, 0, 26, 0, 0, 0], "{out}");
    assert!(out.contains("Complete: each of the source's 27 objects"), "{out}");
}

#[test]
fn rate_limits_and_html_5xx_are_waited_out_under_either_url_form() {
    let source = Instance::source(&[]);
    // 25 requests a second at most, as PostHog's throttle answers beyond (429, Retry-After).
    let destination = Instance::destination(&["--burst", "25", "--window", "1"]);
    let dir = TempDir::new("metadata-state");
    let state = dir.0.join("state.sqlite");
    source.faults(json!([{"status": 502, "html": true}, {"status": 429, "retry_after": 1}]));
    destination.faults(json!([{"method": "POST", "status": 503, "html": true}]));
    let output =
        command(&state, &source, &destination, &["--only", "actions,cohorts", "--retry-scale", "1"]).output().unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(6), "{out}");
    assert!(out.contains("HTTP 502: an HTML page"), "{out}");
    assert!(out.contains("rate limited (HTTP 429"), "{out}");
    assert_eq!(row(&out, "actions")[1], 26, "{out}");
    assert_eq!(row(&out, "cohorts")[1], 22, "{out}");
    assert_eq!(destination.list("actions/").len(), 28, "no create sent twice after a 503");
}

#[test]
fn a_refused_key_names_the_variable_to_fix() {
    let source = Instance::source(&[]);
    let destination = Instance::destination(&[]);
    let dir = TempDir::new("metadata-state");
    let output = command(&dir.0.join("state.sqlite"), &source, &destination, &[])
        .env("POSTHOG_DESTINATION_PERSONAL_API_KEY", "phx_wrong")
        .output()
        .unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(4), "{out}");
    assert!(out.contains("refused the personal API key (HTTP 401"), "{out}");
    assert!(out.contains("check POSTHOG_DESTINATION_PERSONAL_API_KEY"), "{out}");
    assert_eq!(destination.requests("POST"), 0);
}

#[test]
fn a_run_killed_part_way_resumes_and_creates_nothing_twice() {
    let source = Instance::source(&[]);
    let destination = Instance::destination(&["--write-delay", "0.05"]);
    let dir = TempDir::new("metadata-state");
    let state = dir.0.join("state.sqlite");
    let mut child =
        command(&state, &source, &destination, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while destination.requests("POST") < 30 {
        assert!(started.elapsed() < Duration::from_secs(60), "the run did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, out) = migrate(&state, &source, &destination, &[]);
    assert_eq!(code, 6, "{out}");
    for (rel, field, want) in [("actions/", "name", 28), ("cohorts/", "name", 23), ("feature_flags/", "key", 38)] {
        let objects = destination.list(rel);
        let names: BTreeSet<&str> = objects.iter().map(|o| o[field].as_str().unwrap()).collect();
        assert_eq!(names.len(), objects.len(), "{rel}: something created twice");
        assert_eq!(objects.len(), want, "{rel}");
    }
}

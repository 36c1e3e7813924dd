//! `migrator3000 metadata` for the kinds beyond actions, cohorts and flags: insights,
//! dashboards (their tiles: insight and text, layouts, filters), annotations,
//! experiments and surveys, against the PostHog-shaped API on loopback (`posthog_api/
//! server.py --seed-kinds`: the source project of `metadata.rs` and tens of these, with
//! references across kinds and to deleted objects).

mod support;

use std::collections::HashMap;

use serde_json::{json, Value};
use support::posthog_api::{by, metadata, row, Instance, DESTINATION_KEY};
use support::TempDir;

/// Source id -> destination id, per kind, by the natural key both ends share.
type Ids = HashMap<(&'static str, String), Value>;

fn pair(ids: &mut Ids, kind: &'static str, source: &[Value], destination: &[Value], field: &str) {
    let there = by(destination, field);
    for object in source {
        if let Some(copy) = there.get(object[field].as_str().unwrap()) {
            ids.insert((kind, object["id"].to_string()), copy["id"].clone());
        }
    }
}

fn mapped(ids: &Ids, kind: &str, id: &Value) -> Value {
    let found = ids
        .iter()
        .find(|((k, i), _)| *k == kind && *i == id.to_string().trim_matches('"'))
        .map(|(_, d)| d.clone())
        .unwrap_or_else(|| panic!("{kind} {id} has no copy"));
    if id.is_string() {
        json!(found.to_string())
    } else {
        found
    }
}

/// A query or legacy filters tree with every action and cohort id remapped (as the test
/// reads PostHog's shapes, independently of the command's code).
fn remap(tree: &Value, ids: &Ids) -> Value {
    match tree {
        Value::Array(items) => Value::Array(items.iter().map(|i| remap(i, ids)).collect()),
        Value::Object(o) => {
            let mut o: serde_json::Map<String, Value> = o.iter().map(|(k, v)| (k.clone(), remap(v, ids))).collect();
            if o.get("kind") == Some(&json!("ActionsNode")) || o.get("type") == Some(&json!("actions")) {
                let v = mapped(ids, "actions", &o["id"]);
                o.insert("id".into(), v);
            }
            if o.get("type") == Some(&json!("cohort")) {
                let v = mapped(ids, "cohorts", &o["value"]);
                o.insert("value".into(), v);
            }
            if o.get("breakdown_type") == Some(&json!("cohort")) {
                let b: Vec<Value> = o["breakdown"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| if v == "all" { v.clone() } else { mapped(ids, "cohorts", v) })
                    .collect();
                o.insert("breakdown".into(), Value::Array(b));
            }
            Value::Object(o)
        }
        other => other.clone(),
    }
}

#[test]
fn insights_dashboards_annotations_experiments_and_surveys_are_copied_with_every_reference_remapped() {
    let source = Instance::source(&["--seed-kinds"]);
    let destination = Instance::start("destination", 12, DESTINATION_KEY, &["--id-start", "5000"]);
    let dir = TempDir::new("metadata-state");
    let state = dir.0.join("state.sqlite");
    let d_flags_before = destination.list("feature_flags/").len();

    let (code, out) = metadata(&state, &source, &destination, &[]);
    assert_eq!(code, 6, "{out}");
    // at source, created, updated, matched, in step, changed there, skipped, failed
    assert_eq!(row(&out, "dashboards"), vec![6, 6, 0, 0, 0, 0, 0, 0], "{out}");
    assert_eq!(row(&out, "insights"), vec![24, 23, 0, 0, 0, 0, 1, 0], "{out}");
    assert_eq!(row(&out, "annotations"), vec![30, 29, 0, 0, 0, 0, 1, 0], "{out}");
    assert_eq!(row(&out, "experiments"), vec![6, 5, 0, 0, 0, 0, 1, 0], "{out}");
    assert_eq!(row(&out, "surveys"), vec![7, 6, 0, 0, 0, 0, 1, 0], "{out}");
    // What refers to a deleted object is reported, not copied.
    assert!(out.contains("\"Uses a deleted action\": skipped: refers to action"), "{out}");
    assert!(out.contains("\"On a deleted insight (2024-05-05T00:00:00Z)\": skipped: refers to insight"), "{out}");
    assert!(out.contains("\"Pricing test 5\": skipped: refers to feature flag"), "{out}");
    assert!(out.contains("\"On a deleted flag\": skipped: refers to feature flag"), "{out}");

    let mut ids = Ids::new();
    for (kind, rel, field) in [
        ("actions", "actions/", "name"),
        ("cohorts", "cohorts/", "name"),
        ("feature_flags", "feature_flags/", "key"),
        ("dashboards", "dashboards/", "name"),
        ("insights", "insights/", "name"),
    ] {
        pair(&mut ids, kind, &source.list(rel), &destination.list(rel), field);
    }

    // Insights: query and legacy filters, every action and cohort id the copy's.
    let (s_insights, d_insights) = (source.list("insights/"), by(&destination.list("insights/"), "name"));
    for insight in s_insights.iter().filter(|i| i["name"] != "Uses a deleted action") {
        let copy = &d_insights[insight["name"].as_str().unwrap()];
        for field in ["description", "favorited"] {
            assert_eq!(copy[field], insight[field], "insight {} {field}", insight["name"]);
        }
        assert_eq!(copy["query"], remap(&insight["query"], &ids), "insight {} query", insight["name"]);
        assert_eq!(copy["filters"], remap(&insight["filters"], &ids), "insight {} filters", insight["name"]);
        let on: Vec<Value> =
            insight["dashboards"].as_array().unwrap().iter().map(|d| mapped(&ids, "dashboards", d)).collect();
        assert_eq!(copy["dashboards"], json!(on), "insight {} is on the dashboards' copies", insight["name"]);
    }

    // Dashboards: filters, and every tile (insight tiles with their layouts and colour,
    // text tiles) as at the source, on the copies.
    for board in source.list("dashboards/") {
        let s = source.get(&format!("dashboards/{}/", board["id"]));
        let d = destination.get(&format!("dashboards/{}/", mapped(&ids, "dashboards", &board["id"])));
        assert_eq!(d["filters"], s["filters"], "{}", board["name"]);
        let shown = |detail: &Value| {
            let mut tiles: Vec<Value> = detail["tiles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| json!([t["insight"]["name"], t["text"]["body"], t["layouts"], t["color"]]))
                .collect();
            tiles.sort_by_key(|t| t.to_string());
            tiles
        };
        assert!(!shown(&s).is_empty());
        assert_eq!(shown(&d), shown(&s), "the tiles of {}", board["name"]);
    }

    // Annotations: the insight and dashboard they are on, the copies.
    let d_annotations = by(&destination.list("annotations/"), "content");
    for a in source.list("annotations/").iter().filter(|a| a["content"] != "On a deleted insight") {
        let copy = &d_annotations[a["content"].as_str().unwrap()];
        for field in ["date_marker", "scope", "creation_type"] {
            assert_eq!(copy[field], a[field], "annotation {} {field}", a["content"]);
        }
        for (field, kind) in [("dashboard_item", "insights"), ("dashboard_id", "dashboards")] {
            let want = if a[field].is_null() { Value::Null } else { mapped(&ids, kind, &a[field]) };
            assert_eq!(copy[field], want, "annotation {} {field}", a["content"]);
        }
    }
    assert!(d_annotations.values().any(|a| a["scope"] == "dashboard_item"));

    // Experiments, the archived ones too, each on the copy of its flag: no flag made for them.
    let all = |i: &Instance| [i.list("experiments/"), i.list("experiments/?archived=true")].concat();
    let d_experiments = by(&all(&destination), "name");
    let d_flag_keys = by(&destination.list("feature_flags/"), "key");
    for e in all(&source).iter().filter(|e| e["name"] != "Pricing test 5") {
        let copy = &d_experiments[e["name"].as_str().unwrap()];
        for field in ["parameters", "archived", "start_date", "metrics", "type"] {
            assert_eq!(copy[field], e[field], "experiment {} {field}", e["name"]);
        }
        let key = e["feature_flag"]["key"].as_str().unwrap();
        assert_eq!(copy["feature_flag"]["id"], d_flag_keys[key]["id"], "experiment {} on the flag's copy", e["name"]);
    }
    assert_eq!(d_experiments.values().filter(|e| e["archived"] == true).count(), 2, "archived ones copied");
    assert_eq!(d_flag_keys.len(), d_flags_before + 37, "the experiments made no flag of their own");

    // Surveys: each question keeps its id (responses refer to it); linked flag and insight remapped.
    let d_surveys = by(&destination.list("surveys/"), "name");
    for s in source.list("surveys/").iter().filter(|s| s["name"] != "On a deleted flag") {
        let copy = &d_surveys[s["name"].as_str().unwrap()];
        for field in ["questions", "appearance", "conditions", "archived", "type"] {
            assert_eq!(copy[field], s[field], "survey {} {field}", s["name"]);
        }
        for (field, kind) in [("linked_flag_id", "feature_flags"), ("linked_insight_id", "insights")] {
            let want = if s[field].is_null() { Value::Null } else { mapped(&ids, kind, &s[field]) };
            assert_eq!(copy[field], want, "survey {} {field}", s["name"]);
        }
    }

    // A rerun creates and changes nothing.
    let (posts, patches) = (destination.requests("POST"), destination.requests("PATCH"));
    let (code, out) = metadata(&state, &source, &destination, &[]);
    assert_eq!(code, 6, "{out}");
    assert_eq!((destination.requests("POST"), destination.requests("PATCH")), (posts, patches), "{out}");
    for (kind, in_step) in
        [("dashboards", 6), ("insights", 23), ("annotations", 29), ("experiments", 5), ("surveys", 6)]
    {
        assert_eq!(row(&out, kind)[1..6], [0, 0, 0, in_step, 0], "{kind}: {out}");
    }
}

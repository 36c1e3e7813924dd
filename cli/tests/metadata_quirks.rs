//! PostHog's API as it is (issue 22, item 6), each quirk in a test of its own, and the
//! reruns of the newer kinds (item 4): against the PostHog-shaped API on loopback
//! (`posthog_api/server.py`, its facts in `posthog_api/API.md`). What
//! `metadata.rs` and `metadata_kinds.rs` already check is named where it is checked.

mod support;

use serde_json::{json, Value};
use support::posthog_api::{by, metadata as migrate, row, Instance, DESTINATION_KEY, SOURCE_KEY};
use support::TempDir;

const NEWER: [&str; 5] = ["insights/", "dashboards/", "annotations/", "experiments/", "surveys/"];

/// Each kind under the one form an instance has: the source only under
/// `/api/environments/`, the destination only under `/api/projects/` (the other way
/// round from `metadata.rs`), every kind found at both.
#[test]
fn each_kind_is_found_under_the_one_url_form_an_instance_has() {
    let source = Instance::start("source", 7, SOURCE_KEY, &["--forms", "environments", "--seed-kinds"]);
    let destination = Instance::start("none", 12, DESTINATION_KEY, &["--forms", "projects", "--id-start", "5000"]);
    assert_eq!(source.form(), "environments");
    let dir = TempDir::new("metadata-forms");
    let (code, out) = migrate(&dir.0.join("s.sqlite"), &source, &destination, &[]);
    assert_eq!(code, 6, "{out}");
    for (kind, at_source) in
        [("dashboards", 6), ("insights", 24), ("annotations", 30), ("experiments", 6), ("surveys", 7)]
    {
        assert_eq!(row(&out, kind)[0], at_source, "{kind}: {out}");
    }
    assert!(!destination.list("insights/").is_empty() && !destination.list("surveys/").is_empty(), "{out}");
}

/// Some kinds only under `/api/projects/` on an instance whose other kinds are only under
/// `/api/environments/`: the form that answers is found for each kind, not once for the
/// instance.
#[test]
fn kinds_under_different_url_forms_on_one_instance_are_each_found() {
    let forms = ["--forms", "environments", "--projects-only=surveys,experiments"];
    let source = Instance::start("source", 7, SOURCE_KEY, &[&forms[..], &["--seed-kinds"]].concat());
    let destination = Instance::start("none", 12, DESTINATION_KEY, &[&forms[..], &["--id-start", "5000"]].concat());
    let dir = TempDir::new("metadata-projects-only");
    let (code, out) = migrate(&dir.0.join("s.sqlite"), &source, &destination, &[]);
    assert_eq!(code, 6, "the seed's dangling references, nothing else: {out}");
    assert_eq!(row(&out, "experiments")[0], 6, "{out}");
    assert_eq!(row(&out, "surveys")[0], 7, "{out}");
    assert_eq!(row(&out, "insights")[0], 24, "{out}");
    let under = |form: &str, kind: &str| {
        let url = format!("{}/api/{form}/{}/{kind}/", destination.url, destination.project);
        let body = ureq::get(&url)
            .set("Authorization", &format!("Bearer {}", destination.key))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let page: Value = serde_json::from_str(&body).unwrap();
        page["results"].as_array().map_or(0, Vec::len)
    };
    assert!(under("projects", "surveys") > 0 && under("projects", "experiments") > 0, "{out}");
    assert!(under("environments", "insights") > 0, "{out}");
}

/// List pages differ by kind (`PAGE` in server.py, from each viewset's pagination):
/// actions in one unpaged list, annotations by 1,000, the rest by 100; the command reads
/// every object of each whatever its page (`metadata.rs` reads the source in pages of 7).
#[test]
fn list_pages_differ_by_kind_and_every_object_is_read() {
    let source = Instance::start("source", 7, SOURCE_KEY, &["--seed-kinds"]);
    for _ in 0..105 {
        source.post(
            "annotations/",
            json!({"content": "bulk", "date_marker": "2024-06-01T00:00:00Z", "scope": "project"}),
        );
    }
    let actions = source.pages("actions/");
    assert_eq!(actions.len(), 1);
    let annotations = source.pages("annotations/");
    assert_eq!(annotations.len(), 1, "135 annotations fit one page of 1,000");
    assert!(annotations[0]["results"].as_array().unwrap().len() > 100);
    let destination = Instance::start("none", 12, DESTINATION_KEY, &["--id-start", "5000"]);
    let dir = TempDir::new("metadata-pages");
    let (_, out) = migrate(&dir.0.join("s.sqlite"), &source, &destination, &["--only", "actions,annotations"]);
    assert_eq!(row(&out, "annotations")[0], 135, "{out}");
    assert_eq!(row(&out, "actions")[0], actions[0]["results"].as_array().unwrap().len() as u64, "{out}");
}

/// Creating a flag makes a usage dashboard (with insights) unless the request says
/// `_should_create_usage_dashboard: false`: the copies of the flags make none.
#[test]
fn copying_flags_makes_no_usage_dashboard_at_the_destination() {
    let source = Instance::source(&[]);
    let destination = Instance::destination(&[]);
    assert!(destination.list("dashboards/").is_empty());
    let dir = TempDir::new("metadata-usage");
    let (_, out) = migrate(&dir.0.join("s.sqlite"), &source, &destination, &[]);
    assert!(row(&out, "feature_flags")[1] > 10, "{out}");
    assert!(destination.list("dashboards/").is_empty(), "a usage dashboard was made: {out}");
    assert!(destination.list("insights/").is_empty(), "usage insights were made: {out}");
}

/// Archived experiments are listed only when asked (`?archived=true`); they are copied.
#[test]
fn archived_experiments_are_hidden_from_the_list_and_copied_anyway() {
    let source = Instance::source(&["--seed-kinds"]);
    let listed = source.list("experiments/");
    let archived = source.list("experiments/?archived=true");
    assert!(listed.iter().all(|e| e["archived"] == false) && archived.len() == 2);
    let destination = Instance::destination(&[]);
    let dir = TempDir::new("metadata-archived");
    migrate(&dir.0.join("s.sqlite"), &source, &destination, &[]);
    let copied = by(&destination.list("experiments/?archived=true"), "name");
    for e in &archived {
        assert_eq!(copied[e["name"].as_str().unwrap()]["archived"], true);
    }
}

// Checked elsewhere, each in its own assertions: a flag on a behavioural cohort skipped
// and named (metadata.rs: "old-behavioural-flag"); tiles made not by the dashboard's
// POST but by the insights' `dashboards` and a PATCH of `tiles`, compared tile by tile,
// a survey's question ids kept, and what refers to a deleted object skipped and named
// (metadata_kinds.rs).

/// A dry run of the newer kinds reads and sends nothing; a run, then a change at the
/// source to an insight and a dashboard updates exactly them; a change at the
/// destination to one is reported and left.
#[test]
fn newer_kinds_dry_run_sends_nothing_and_reruns_update_only_what_changed_at_the_source() {
    let source = Instance::source(&["--seed-kinds"]);
    let destination = Instance::destination(&[]);
    let dir = TempDir::new("metadata-newer-reruns");
    let state = dir.0.join("s.sqlite");

    let (_, out) = migrate(&state, &source, &destination, &["--dry-run"]);
    assert_eq!(row(&out, "insights")[1], 23, "{out}");
    assert_eq!((destination.requests("POST"), destination.requests("PATCH")), (0, 0), "{out}");
    assert!(NEWER.iter().all(|rel| destination.list(rel).is_empty()), "{out}");

    migrate(&state, &source, &destination, &[]);
    let s_insights = by(&source.list("insights/"), "name");
    let s_boards = by(&source.list("dashboards/"), "name");
    let (insight, board) = (&s_insights["Pricing trend 1"], s_boards.values().next().unwrap());
    source.patch(&format!("insights/{}/", insight["id"]), json!({"description": "changed at the source"}));
    source.patch(&format!("dashboards/{}/", board["id"]), json!({"description": "changed at the source"}));
    let d_insights = by(&destination.list("insights/"), "name");
    let other = "Pricing trend 2".to_string();
    destination.patch(&format!("insights/{}/", d_insights[&other]["id"]), json!({"description": "edited there"}));

    let (posts, patches) = (destination.requests("POST"), destination.requests("PATCH"));
    let (_, out) = migrate(&state, &source, &destination, &[]);
    assert_eq!(row(&out, "insights")[1..6], [0, 1, 0, 21, 1], "{out}");
    assert_eq!(row(&out, "dashboards")[1..6], [0, 1, 0, 5, 0], "{out}");
    assert_eq!(destination.requests("POST"), posts, "{out}");
    // Only they are sent (a dashboard's update may PATCH its tiles too): nothing else updated.
    assert!(destination.requests("PATCH") >= patches + 2, "{out}");
    for kind in ["actions", "cohorts", "feature_flags", "annotations", "experiments", "surveys"] {
        assert_eq!(row(&out, kind)[2], 0, "{kind}: {out}");
    }
    let d_insights = by(&destination.list("insights/"), "name");
    assert_eq!(d_insights[insight["name"].as_str().unwrap()]["description"], "changed at the source");
    assert_eq!(
        by(&destination.list("dashboards/"), "name")[board["name"].as_str().unwrap()]["description"],
        "changed at the source"
    );
    assert_eq!(d_insights[&other]["description"], "edited there", "not overwritten");
    assert!(out.contains(&format!("\"{other}\": changed there")), "{out}");
}

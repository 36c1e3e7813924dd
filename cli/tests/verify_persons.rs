//! `migrator3000 verify --persons` against real parts: the source PostHog's person
//! tables in a real ClickHouse engine (or behind a loopback Query API answering from
//! one), the persons copied by the real `posthog --persons only`, and the destination a
//! loopback PostHog that applies PostHog's person rules to what capture takes and
//! answers HogQL's `persons` and `person_distinct_ids` from its own engine.

mod support;

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use support::persons::{insert_distinct_ids, insert_persons};
use support::posthog::{PostHog, PERSONAL_KEY, PROJECT};
use support::*;

const ALICE: &str = "0179a1ce-0000-4000-8000-00000000a11c";
const BOB: &str = "0179b0b0-0000-4000-8000-000000000b0b";
const CAROL: &str = "0179ca70-0000-4000-8000-0000000ca701";

fn alice() -> Value {
    json!({"email": "alice@example.com", "name": "Ålice 名前 🚀", "address": {"city": "Porto", "zip": null},
           "nothing": null, "score": 12.5, "$creator_event_uuid": "0179e000-0000-4000-8000-000000000001"})
}

/// Team `team`'s persons in `engine`: Alice (three distinct ids, an older version not
/// merged away), Bob (two), Carol (one, made by an import: no event).
fn persons_in(engine: &ClickHouse, team: u64) {
    insert_persons(
        engine,
        &[
            (ALICE, team, json!({"email": "alice@old.example"}), true, false, 0),
            (ALICE, team, alice(), true, false, 2),
            (BOB, team, json!({"email": "bob@example.com", "plan": "pro"}), true, false, 1),
            (CAROL, team, json!({"imported": true}), false, false, 0),
        ],
    );
    insert_distinct_ids(
        engine,
        &[
            ("alice", ALICE, team, false, 0),
            ("anon-a1", ALICE, team, false, 0),
            ("anon-a2", ALICE, team, false, 0),
            ("bob", BOB, team, false, 0),
            ("anon-b1", BOB, team, false, 0),
            ("carol-7", CAROL, team, false, 0),
        ],
    );
}

fn source() -> ClickHouse {
    let engine = ClickHouse::start();
    persons_in(&engine, 2);
    engine
}

fn copy_persons(engine: &ClickHouse, destination: &PostHog, state: &Path) {
    let line = format!(
        "--state {} posthog --from clickhouse --persons only --clickhouse-url {} --clickhouse-user {USER} \
         --clickhouse-password {PASSWORD} --team-id 2 --host {} --project-api-key phc_destination --retry-scale 0.001",
        state.display(),
        engine.url,
        destination.server.url
    );
    let output = cli().args(words(&line)).output().unwrap();
    assert!(output.status.success(), "the persons step: {}", text(&output));
}

fn verify(engine: &ClickHouse, destination: &PostHog, state: &Path, more: &str) -> Output {
    let line = format!(
        "--state {} verify --persons --from clickhouse --clickhouse-url {} --clickhouse-user {USER} \
         --clickhouse-password {PASSWORD} --team-id 2 --destination-query-api-host {} --destination-project-id \
         {PROJECT} --destination-personal-api-key {PERSONAL_KEY} --retry-scale 0.01 {more}",
        state.display(),
        engine.url,
        destination.server.url
    );
    cli().args(words(&line)).output().unwrap()
}

fn resend(destination: &PostHog) -> String {
    format!(
        "--resend --wait 0.05 --settle-minutes 0 --host {} --project-api-key phc_destination",
        destination.server.url
    )
}

fn last_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default().to_string()
}

/// The value of a count row of the table (`what` then the count), the last shown.
fn count(said: &str, what: &str) -> String {
    said.lines()
        .rev()
        .find_map(|l| l.strip_prefix(what))
        .unwrap_or_else(|| panic!("no {what:?} row: {said}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// An event straight to the destination's capture, as another client would send it.
fn capture(destination: &PostHog, event: Value) {
    let body = json!({"api_key": "phc_destination", "batch": [event]});
    ureq::post(&format!("{}/batch/", destination.server.url)).send_string(&body.to_string()).unwrap();
}

#[test]
fn a_property_changed_at_the_destination_and_a_missing_distinct_id_are_found_reported_and_mended() {
    let engine = source();
    let destination = PostHog::start();
    // The destination answers 200 to the $identify that links anon-a2 and drops it.
    let over_quota = Arc::new(AtomicBool::new(true));
    let flag = over_quota.clone();
    destination.set_drop(move |e| {
        flag.load(Ordering::SeqCst) && e["event"] == "$identify" && e["properties"]["$anon_distinct_id"] == "anon-a2"
    });
    let dir = TempDir::new("verify-persons");
    let state = dir.0.join("s.sqlite");
    copy_persons(&engine, &destination, &state);
    over_quota.store(false, Ordering::SeqCst);
    // Later, something at the destination sets Bob's plan back to free.
    capture(
        &destination,
        json!({"event": "$set", "distinct_id": "bob", "uuid": "0190f000-0000-7000-8000-000000000001",
               "timestamp": "2021-07-01T00:00:00Z", "properties": {"$set": {"plan": "free"}}}),
    );

    let report = dir.0.join("persons.html");
    let output = verify(&engine, &destination, &state, &format!("--report {}", report.display()));
    let said = text(&output);
    assert_eq!(output.status.code(), Some(5), "{said}");
    assert_eq!(count(&said, "persons at the source"), "3", "{said}");
    assert_eq!(count(&said, "persons missing"), "0", "{said}");
    assert_eq!(count(&said, "distinct ids missing"), "1", "{said}");
    assert_eq!(count(&said, "persons whose properties differ"), "1", "{said}");
    assert!(said.contains(&format!("person {ALICE} (alice): distinct id anon-a2 missing")), "{said}");
    assert!(
        said.contains(&format!("person {BOB} (anon-b1): plan: \"pro\" at the source, \"free\" at the destination")),
        "{said}"
    );
    assert_eq!(
        last_line(&output),
        "Not every person arrived whole: 1 distinct id missing, properties that differ on 1 person (1 property). Run \
         again with --resend to set the source's values and link the missing distinct ids."
    );
    // Alice's $creator_event_uuid was made by the persons step at the destination: not compared.
    assert!(!said.contains("$creator_event_uuid:"), "{said}");
    // The report lists both, with the values of each side.
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(page.contains("<p class=\"verdict bad\" id=\"verdict\">Not every person arrived whole"), "{page}");
    let section = |id: &str| -> String {
        let from = page.find(&format!("<table id=\"{id}\">")).unwrap_or_else(|| panic!("no {id} table: {page}"));
        page[from..from + page[from..].find("</table>").unwrap()].to_string()
    };
    let ids = section("missing-ids");
    assert!(ids.contains(ALICE) && ids.contains("anon-a2"), "{ids}");
    let properties = section("properties");
    assert!(properties.contains(BOB), "{properties}");
    assert!(
        properties.contains(
            "<td style=\"text-align:left\">plan</td><td style=\"text-align:left\">&quot;pro&quot;</td><td \
             style=\"text-align:left\">&quot;free&quot;</td>"
        ),
        "{properties}"
    );
    assert!(!page.contains("id=\"missing-persons\"") && !page.contains("id=\"held-elsewhere\""));

    // --resend sets Bob's plan and links anon-a2, then compares them again.
    let before = destination.accepted.load(Ordering::SeqCst);
    let output = verify(&engine, &destination, &state, &resend(&destination));
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("Sent again: 2 of 2 persons."), "{said}");
    // Alice: her $set and the link of anon-a2 alone; Bob: his $set.
    assert_eq!(destination.accepted.load(Ordering::SeqCst) - before, 3, "{said}");
    assert!(said.contains("The persons sent again, compared again:"), "{said}");
    assert_eq!(
        last_line(&output),
        "Every person arrived: the 3 persons of the source, with their 6 distinct ids and properties, are at the \
         destination."
    );
    {
        let model = destination.persons.lock().unwrap();
        assert!(model.of("anon-a2").unwrap().distinct_ids.contains("alice"));
        assert_eq!(model.of("bob").unwrap().properties["plan"], "pro");
        assert!(model.merges.is_empty(), "{:?}", model.merges);
    }
    let again = verify(&engine, &destination, &state, "");
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}

#[test]
fn equal_persons_give_0_from_the_query_api_too() {
    let source = PostHog::start();
    persons_in(&source.engine, PROJECT);
    let destination = PostHog::start();
    let dir = TempDir::new("verify-persons");
    let state = dir.0.join("s.sqlite");
    let api = format!(
        "--from query-api --query-api-host {} --project-id {PROJECT} --personal-api-key {PERSONAL_KEY}",
        source.server.url
    );
    let line = format!(
        "--state {} posthog {api} --persons only --host {} --project-api-key phc_destination --retry-scale 0.001",
        state.display(),
        destination.server.url
    );
    let output = cli().args(words(&line)).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    // The destination's own person (its live traffic) is not a difference.
    capture(
        &destination,
        json!({"event": "$pageview", "distinct_id": "someone-else", "uuid": "0190f000-0000-7000-8000-000000000002",
               "timestamp": "2021-07-01T00:00:00Z", "properties": {}}),
    );
    let report = dir.0.join("persons.html");
    let line = format!(
        "--state {} verify --persons {api} --destination-query-api-host {} --destination-project-id {PROJECT} \
         --destination-personal-api-key {PERSONAL_KEY} --retry-scale 0.01 --report {}",
        state.display(),
        destination.server.url,
        report.display()
    );
    let output = cli().args(words(&line)).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert_eq!(count(&said, "persons at the destination"), "4", "{said}");
    assert_eq!(
        last_line(&output),
        "Every person arrived: the 3 persons of the source, with their 6 distinct ids and properties, are at the \
         destination."
    );
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(page.contains("<p class=\"verdict ok\" id=\"verdict\">Every person arrived"), "{page}");
    // Each side read its persons and their distinct ids: two queries each.
    assert_eq!(destination.hogql.lock().unwrap().len(), 2, "{:?}", destination.hogql.lock().unwrap());
}

#[test]
fn a_distinct_id_the_destination_holds_for_another_person_is_reported_and_never_forced() {
    let engine = source();
    let destination = PostHog::start();
    // Before the migration, the destination's live app gave "bob" (Bob's second distinct
    // id) to an identified person of its own, and "carol-7" (Carol's only one) to another.
    for (uuid, sender, anon) in [
        ("0179f000-0000-4000-8000-000000000001", "zed", "bob"),
        ("0179f000-0000-4000-8000-000000000002", "carl", "carol-7"),
    ] {
        capture(
            &destination,
            json!({"event": "$identify", "distinct_id": sender, "uuid": uuid, "timestamp": "2021-06-01T00:00:00Z",
                   "properties": {"$anon_distinct_id": anon, "$set": {"email": format!("{sender}@example.com")}}}),
        );
    }
    let dir = TempDir::new("verify-persons");
    let state = dir.0.join("s.sqlite");
    copy_persons(&engine, &destination, &state);
    // Bob's plan changes at the destination: --resend has something to send for him.
    capture(
        &destination,
        json!({"event": "$set", "distinct_id": "anon-b1", "uuid": "0190f000-0000-7000-8000-000000000003",
               "timestamp": "2021-07-01T00:00:00Z", "properties": {"$set": {"plan": "free"}}}),
    );
    let (zed, carl) = {
        let model = destination.persons.lock().unwrap();
        (model.of("zed").unwrap().uuid.clone(), model.of("carl").unwrap().uuid.clone())
    };

    let report = dir.0.join("persons.html");
    let output = verify(&engine, &destination, &state, &format!("--report {}", report.display()));
    let said = text(&output);
    assert_eq!(output.status.code(), Some(5), "{said}");
    assert!(
        said.contains(&format!(
            "person {BOB} (anon-b1): distinct id bob held by another person at the destination ({zed})"
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("person {CAROL} (carol-7): its person at the destination ({carl}) also holds carl")),
        "{said}"
    );
    assert_eq!(count(&said, "distinct ids held by another person"), "1", "{said}");
    assert_eq!(count(&said, "persons held with other distinct ids"), "1", "{said}");
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(page.contains("<table id=\"held-elsewhere\">") && page.contains(&zed), "{page}");
    assert!(page.contains("<table id=\"other-ids\">") && page.contains(&carl), "{page}");

    let before = destination.accepted.load(Ordering::SeqCst);
    let output = verify(&engine, &destination, &state, &resend(&destination));
    let said = text(&output);
    // The plan is mended; "bob" stays with zed: still a difference, never forced.
    assert_eq!(output.status.code(), Some(5), "{said}");
    assert!(said.contains("Sent again: 1 of 1 person."), "{said}");
    assert_eq!(count(&said, "persons whose properties differ"), "0", "{said}");
    assert_eq!(count(&said, "distinct ids held by another person"), "1", "{said}");
    assert!(
        last_line(&output)
            .ends_with("Distinct ids held by another person are not linked by --resend: that would merge two persons."),
        "{said}"
    );
    let model = destination.persons.lock().unwrap();
    assert_eq!(destination.accepted.load(Ordering::SeqCst) - before, 1, "Bob's $set alone, no link: {said}");
    assert_eq!(model.of("bob").unwrap().uuid, zed);
    assert_eq!(model.of("anon-b1").unwrap().properties["plan"], "pro");
    assert!(model.merges.is_empty(), "{:?}", model.merges);
}

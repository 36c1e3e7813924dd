//! The persons step of `migrator3000 posthog`: the source a real ClickHouse engine with
//! PostHog's person tables (unmerged versions, deleted persons, another team, a distinct
//! id moved between persons, persons without events), the destination a loopback
//! PostHog that applies PostHog's person rules to what capture accepts, in order.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use support::persons::{insert_distinct_ids as distinct_ids, insert_persons as persons};
use support::posthog::{PostHog, PERSONAL_KEY, PROJECT};
use support::*;

/// Writes events: (uuid, event, distinct id, properties).
fn events(engine: &ClickHouse, team: u64, rows: &[(&str, &str, &str, Value)]) {
    let lines: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (uuid, event, distinct_id, properties))| {
            json!({"uuid": uuid, "event": event, "properties": properties.to_string(),
                   "timestamp": format!("2021-06-10 10:00:{i:02}.000000"), "team_id": team, "distinct_id": distinct_id,
                   "elements_chain": "", "created_at": "2021-06-10 10:00:00.000000", "_timestamp": "2021-06-10 10:00:00",
                   "_offset": i})
            .to_string()
        })
        .collect();
    engine.query(&format!(
        "INSERT INTO default.sharded_events (uuid, event, properties, timestamp, team_id, distinct_id, elements_chain, \
         created_at, _timestamp, _offset) FORMAT JSONEachRow\n{}",
        lines.join("\n")
    ));
}

const ALICE: &str = "0179a1ce-0000-4000-8000-00000000a11c";
const BOB: &str = "0179b0b0-0000-4000-8000-000000000b0b";
const CAROL: &str = "0179ca70-0000-4000-8000-0000000ca701";
const DAVE: &str = "0179da7e-0000-4000-8000-0000000da7e0";
const ERIN: &str = "0179e710-0000-4000-8000-0000000e7110";
const ZOE: &str = "01792010-0000-4000-8000-000000002010";

fn alice_now() -> Value {
    json!({"email": "alice@new.example", "name": "Ålice 名前 🚀", "address": {"city": "Porto", "zip": null,
           "lines": ["Rua 1", "2º"]}, "nothing": null, "score": 12.5, "$initial_referrer": "https://ex.com/ü"})
}

/// The source: team 2's persons and a few events of June 2021, team 3 beside it.
fn source() -> ClickHouse {
    let engine = ClickHouse::start();
    persons(
        &engine,
        &[
            // Alice: an older version not merged away yet, then her current one.
            (ALICE, 2, json!({"email": "alice@old.example"}), true, false, 0),
            (ALICE, 2, alice_now(), true, false, 3),
            // Bob: the history set his plan to free; it is pro now (changed in the UI).
            (BOB, 2, json!({"email": "bob@example.com", "plan": "pro"}), true, false, 2),
            // Carol: no event at all (made by an import).
            (CAROL, 2, json!({"imported": true, "plan": "enterprise"}), false, false, 0),
            // Dave: deleted.
            (DAVE, 2, json!({"email": "dave@example.com"}), true, false, 0),
            (DAVE, 2, json!({"email": "dave@example.com"}), true, true, 1),
            // Erin: another team's.
            (ERIN, 3, json!({"email": "erin@example.com"}), true, false, 0),
            // Zoe: anonymous, once held anon-moved.
            (ZOE, 2, json!({"$browser": "Firefox"}), false, false, 0),
        ],
    );
    distinct_ids(
        &engine,
        &[
            ("alice@example.com", ALICE, 2, false, 0),
            ("anon-a1", ALICE, 2, false, 0),
            ("anon-a2", ALICE, 2, false, 0),
            // Moved from Zoe to Alice by a merge: a row of a higher version.
            ("anon-moved", ZOE, 2, false, 0),
            ("anon-moved", ALICE, 2, false, 1),
            ("bob", BOB, 2, false, 0),
            ("anon-b1", BOB, 2, false, 0),
            ("anon-b2", BOB, 2, false, 0),
            ("carol-7", CAROL, 2, false, 0),
            ("dave", DAVE, 2, false, 0),
            ("dave", DAVE, 2, true, 1),
            ("erin", ERIN, 3, false, 0),
            ("zoe-device", ZOE, 2, false, 0),
        ],
    );
    events(
        &engine,
        2,
        &[
            (
                "0179e000-0000-4000-8000-000000000001",
                "$pageview",
                "anon-a1",
                json!({"$current_url": "https://ex.com/"}),
            ),
            ("0179e000-0000-4000-8000-000000000002", "$pageview", "alice@example.com", json!({})),
            (
                "0179e000-0000-4000-8000-000000000003",
                "$identify",
                "bob",
                json!({"$anon_distinct_id": "anon-b1", "$set": {"plan": "free", "email": "bob@old.example"}}),
            ),
            ("0179e000-0000-4000-8000-000000000004", "$pageview", "zoe-device", json!({})),
            ("0179e000-0000-4000-8000-000000000005", "$pageview", "dave", json!({})),
        ],
    );
    events(&engine, 3, &[("0179e000-0000-4000-8000-000000000006", "$pageview", "erin", json!({}))]);
    engine
}

/// The source's persons of team 2 as the test wrote them: uuid -> (ids, properties).
fn expected() -> HashMap<&'static str, (BTreeSet<String>, Value)> {
    let ids = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    HashMap::from([
        (ALICE, (ids(&["alice@example.com", "anon-a1", "anon-a2", "anon-moved"]), alice_now())),
        (BOB, (ids(&["bob", "anon-b1", "anon-b2"]), json!({"email": "bob@example.com", "plan": "pro"}))),
        (CAROL, (ids(&["carol-7"]), json!({"imported": true, "plan": "enterprise"}))),
        (ZOE, (ids(&["zoe-device"]), json!({"$browser": "Firefox"}))),
    ])
}

fn migrate(engine: &ClickHouse, destination: &PostHog, state: &std::path::Path, more: &str) -> std::process::Output {
    let line = format!(
        "--state {} posthog --from clickhouse --clickhouse-url {} --clickhouse-user {USER} --clickhouse-password \
         {PASSWORD} --team-id 2 --start 2021-06-01 --end 2021-07-01 --host {} --project-api-key phc_destination \
         --retry-scale 0.001 {more}",
        state.display(),
        engine.url,
        destination.server.url
    );
    cli().args(words(&line)).output().unwrap()
}

/// Every destination person's distinct ids belong to one source person: no two source
/// persons were merged.
fn assert_no_wrong_merge(destination: &PostHog, except: &[&str]) {
    let expected = expected();
    let owner: HashMap<String, &str> =
        expected.iter().flat_map(|(uuid, (ids, _))| ids.iter().map(move |id| (id.clone(), *uuid))).collect();
    for person in destination.persons.lock().unwrap().live() {
        let sources: HashSet<&str> = person
            .distinct_ids
            .iter()
            .filter(|id| !except.contains(&id.as_str()))
            .filter_map(|id| owner.get(id).copied())
            .collect();
        assert!(sources.len() <= 1, "source persons {sources:?} merged into one: {person:?}");
    }
}

#[test]
fn every_person_arrives_whole_with_its_ids_and_current_properties_and_nothing_else() {
    let engine = source();
    let destination = PostHog::start();
    // Before the migration, the destination already gave anon-b2 (one of Bob's at the
    // source, in none of the events) to an identified person of its own (a live app): it
    // must stay there, never merged with Bob.
    let before = json!({"api_key": "phc_destination", "batch": [{"event": "$identify", "distinct_id": "zed",
        "uuid": "0179f000-0000-4000-8000-000000000001", "timestamp": "2021-06-01T00:00:00Z",
        "properties": {"$anon_distinct_id": "anon-b2", "$set": {"email": "zed@example.com"}}}]});
    ureq::post(&format!("{}/batch/", destination.server.url)).send_string(&before.to_string()).unwrap();

    let dir = TempDir::new("persons");
    let state = dir.0.join("s.sqlite");
    let output = migrate(&engine, &destination, &state, "");
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("4 persons read, 4 sent (5 further distinct ids linked)"), "{said}");

    let model = destination.persons.lock().unwrap();
    for (uuid, (ids, properties)) in expected() {
        let first = model.of(ids.iter().next().unwrap()).unwrap_or_else(|| panic!("{uuid} did not arrive"));
        let want: BTreeSet<String> = ids.iter().filter(|id| *id != "anon-b2").cloned().collect();
        assert!(want.is_subset(&first.distinct_ids), "{uuid}: {want:?} not all on {:?}", first.distinct_ids);
        assert_eq!(Value::Object(first.properties.clone()), properties, "{uuid}'s properties");
    }
    // The distinct id the destination held for an identified person stayed there.
    assert_eq!(model.of("anon-b2").unwrap().distinct_ids, BTreeSet::from(["anon-b2".to_string(), "zed".to_string()]));
    assert!(model.warnings.iter().any(|(kind, other, into)| kind == "cannot_merge_already_identified"
        && other == "anon-b2"
        && into == "anon-b1"));
    // Deleted and other teams' persons are not created beyond what their events made, and
    // get none of their properties.
    assert!(model.of("erin").is_none(), "another team's person");
    assert!(model.of("dave").is_some_and(|p| p.properties.is_empty()), "a deleted person got properties");
    drop(model);
    assert_no_wrong_merge(&destination, &["zed", "anon-b2"]);
    // The same persons through the destination's HogQL, from its engine.
    let answer = support::posthog::engine_query(
        &destination.engine.url,
        &support::persons::hogql_tables(
            "SELECT count() FROM persons WHERE JSONExtractString(properties, 'plan') = 'pro' FORMAT TSV",
            PROJECT,
        ),
    )
    .unwrap();
    assert_eq!(answer.trim(), "1", "Bob's current plan, not the history's");

    // A rerun sends no person again.
    let accepted = destination.accepted.load(std::sync::atomic::Ordering::SeqCst);
    let again = migrate(&engine, &destination, &state, "");
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("4 persons read, 0 sent (0 further distinct ids linked), 4 unchanged"),
        "{}",
        text(&again)
    );
    assert_eq!(destination.accepted.load(std::sync::atomic::Ordering::SeqCst), accepted);

    // Carol changes at the source (a higher version): a rerun sends her alone.
    persons(&engine, &[(CAROL, 2, json!({"imported": true, "plan": "pro", "seats": 3}), false, false, 1)]);
    let again = migrate(&engine, &destination, &state, "--persons only");
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("4 persons read, 1 sent (0 further distinct ids linked), 3 unchanged"),
        "{}",
        text(&again)
    );
    assert_eq!(destination.accepted.load(std::sync::atomic::Ordering::SeqCst), accepted + 1, "one $set event");
    let carol = destination.persons.lock().unwrap().of("carol-7").unwrap().properties.clone();
    assert_eq!(Value::Object(carol), json!({"imported": true, "plan": "pro", "seats": 3}));
}

#[test]
fn persons_skip_leaves_them_out() {
    let engine = source();
    let destination = PostHog::start();
    let dir = TempDir::new("persons");
    let output = migrate(&engine, &destination, &dir.0.join("s.sqlite"), "--persons skip");
    assert!(output.status.success(), "{}", text(&output));
    assert!(!text(&output).contains("persons read"), "{}", text(&output));
    let model = destination.persons.lock().unwrap();
    assert!(model.of("carol-7").is_none(), "a person without events came without the persons step");
    assert_eq!(
        Value::Object(model.of("bob").unwrap().properties.clone()),
        json!({"plan": "free", "email": "bob@old.example"})
    );
}

#[test]
fn a_kill_during_the_persons_step_resumes_and_sends_every_person() {
    let engine = ClickHouse::start();
    // 3,000 persons of 1-2 KB of properties, two distinct ids each.
    engine.query(
        "INSERT INTO default.person (id, created_at, team_id, properties, is_identified, is_deleted, version, \
         _timestamp, _offset) SELECT generateUUIDv4(number), now(), 2, concat('{\"email\": \"p', toString(number), \
         '@example.com\", \"bio\": \"', repeat('ü', 600), '\", \"n\": ', toString(number), '}'), 1, 0, 1, now(), 0 \
         FROM numbers(3000)",
    );
    engine.query(
        "INSERT INTO default.person_distinct_id2 (team_id, distinct_id, person_id, is_deleted, version, _timestamp, \
         _offset, _partition) SELECT 2, concat(prefix, toString(number)), id, 0, 0, now(), 0, 0 FROM (SELECT JSONExtractUInt(properties, 'n') AS number, \
         id FROM default.person) ARRAY JOIN ['user-', 'device-'] AS prefix",
    );
    let capture = Capture::start();
    capture.set_fault(|_| {
        std::thread::sleep(Duration::from_millis(40));
        None
    });
    let dir = TempDir::new("persons");
    let state = dir.0.join("s.sqlite");
    let line = format!(
        "--state {} posthog --from clickhouse --persons only --clickhouse-url {} --clickhouse-user {USER} \
         --clickhouse-password {PASSWORD} --team-id 2 --host {} --project-api-key phc_destination --retry-scale \
         0.001 --page-size 200 --batch-size 50",
        state.display(),
        engine.url,
        capture.server.url
    );
    let sets = |capture: &Capture| -> Vec<String> {
        let accepted = capture.accepted.lock().unwrap();
        accepted
            .iter()
            .filter(|e| e["event"] == "$set")
            .map(|e| e["distinct_id"].as_str().unwrap().to_string())
            .collect()
    };
    let mut child = cli().args(words(&line)).spawn().unwrap();
    let started = Instant::now();
    while sets(&capture).len() < 700 && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = sets(&capture).len();
    assert!((700..3000).contains(&before), "{before} persons sent before the kill");
    let output = cli().args(words(&line)).output().unwrap();
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    let all = sets(&capture);
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), 3000, "{said}");
    // Sent again only the page in flight at the kill (its events with the same uuids).
    assert!(all.len() - 3000 <= 200, "{} persons sent twice", all.len() - 3000);
    let resent: usize = said
        .lines()
        .find_map(|l| l.strip_prefix("3000 persons read, ").and_then(|r| r.split(' ').next()?.parse().ok()))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(resent <= 3000 - before + 200, "{resent} sent by the rerun: {said}");
    // Each person's $set carries its source properties and links its second id.
    let accepted = capture.accepted.lock().unwrap();
    let set = accepted.iter().find(|e| e["event"] == "$set" && e["distinct_id"] == "device-7").unwrap();
    assert_eq!(set["properties"]["$set"]["email"], "p7@example.com");
    assert_eq!(set["properties"]["$geoip_disable"], true);
    let link = accepted.iter().find(|e| e["event"] == "$identify" && e["distinct_id"] == "device-7").unwrap();
    assert_eq!(link["properties"]["$anon_distinct_id"], "user-7");
}

#[test]
fn persons_from_the_query_api_arrive_within_the_query_budget() {
    let source = PostHog::start();
    persons(
        &source.engine,
        &[
            (CAROL, PROJECT, json!({"imported": true, "nested": {"a": [1, null]}}), false, false, 0),
            (BOB, PROJECT, json!({"plan": "free"}), true, false, 0),
            (BOB, PROJECT, json!({"plan": "pro"}), true, false, 1),
            (DAVE, PROJECT, json!({}), true, true, 1),
        ],
    );
    distinct_ids(
        &source.engine,
        &[
            ("carol-7", CAROL, PROJECT, false, 0),
            ("bob", BOB, PROJECT, false, 0),
            ("anon-b1", BOB, PROJECT, false, 0),
            ("dave", DAVE, PROJECT, false, 0),
        ],
    );
    let destination = PostHog::start();
    let dir = TempDir::new("persons");
    let line = format!(
        "--state {} posthog --from query-api --persons only --query-api-host {} --project-id {PROJECT} \
         --personal-api-key {PERSONAL_KEY} --host {} --project-api-key phc_destination --retry-scale 0.001",
        dir.0.join("s.sqlite").display(),
        source.server.url,
        destination.server.url
    );
    let output = cli().args(words(&line)).output().unwrap();
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("2 persons read, 2 sent (1 further distinct ids linked)"), "{said}");
    let model = destination.persons.lock().unwrap();
    let bob = model.of("bob").unwrap();
    assert!(bob.distinct_ids.contains("anon-b1"));
    assert_eq!(Value::Object(bob.properties.clone()), json!({"plan": "pro"}));
    let carol: Map<String, Value> = model.of("carol-7").unwrap().properties.clone();
    assert_eq!(Value::Object(carol), json!({"imported": true, "nested": {"a": [1, null]}}));
    assert!(model.of("dave").is_none());
    // One page of persons and one of their distinct ids.
    assert_eq!(source.hogql.lock().unwrap().len(), 2, "{:?}", source.hogql.lock().unwrap());
}

#[test]
fn a_database_without_person_tables_is_named_with_the_way_to_leave_persons_out() {
    let engine = source();
    engine.query("CREATE DATABASE events_only");
    engine.query("CREATE TABLE events_only.sharded_events AS default.sharded_events");
    engine.query("INSERT INTO events_only.sharded_events SELECT * FROM default.sharded_events");
    let destination = PostHog::start();
    let dir = TempDir::new("persons");
    let output = migrate(
        &engine,
        &destination,
        &dir.0.join("s.sqlite"),
        "--clickhouse-database events_only --clickhouse-table sharded_events",
    );
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("The migration is complete."), "the events went first: {said}");
    assert!(
        said.contains("no person tables events_only.person and events_only.person_distinct_id2")
            && said.contains("--persons skip"),
        "{said}"
    );
    let output = migrate(
        &engine,
        &destination,
        &dir.0.join("s.sqlite"),
        "--clickhouse-database events_only --clickhouse-table sharded_events --persons skip",
    );
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn persons_go_several_requests_at_once_each_person_set_before_its_links_a_retry_included() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let engine = ClickHouse::start();
    // 400 persons of three distinct ids each: 1,200 events, batches of 50 (a person's
    // events straddle two batches now and then).
    engine.query(
        "INSERT INTO default.person (id, created_at, team_id, properties, is_identified, is_deleted, version, \
         _timestamp, _offset) SELECT generateUUIDv4(number), now(), 2, concat('{\"n\": ', toString(number), '}'), 1, \
         0, 0, now(), 0 FROM numbers(400)",
    );
    engine.query(
        "INSERT INTO default.person_distinct_id2 (team_id, distinct_id, person_id, is_deleted, version, _timestamp, \
         _offset, _partition) SELECT 2, concat(prefix, toString(number)), id, 0, 0, now(), 0, 0 FROM (SELECT \
         JSONExtractUInt(properties, 'n') AS number, id FROM default.person) ARRAY JOIN ['a-', 'b-', 'c-'] AS prefix",
    );
    // The destination takes a request a while, and refuses the first for a while (503):
    // what it takes is kept in the order taken.
    let (open, most, requests) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let taken: Arc<Mutex<Vec<Value>>> = Arc::default();
    let (o, m, r, t) = (open.clone(), most.clone(), requests.clone(), taken.clone());
    let server = Server::start(Arc::new(move |request: &Request| {
        let now = o.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(30));
        let reply = if r.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::new(503, "{\"error\":\"busy\"}")
        } else {
            let batch = body_json(request).and_then(|b| b["batch"].as_array().cloned()).unwrap_or_default();
            t.lock().unwrap().extend(batch);
            Reply::new(200, "{\"status\":1}")
        };
        o.fetch_sub(1, Ordering::SeqCst);
        reply
    }));
    let dir = TempDir::new("persons");
    let line = format!(
        "--state {} posthog --from clickhouse --persons only --clickhouse-url {} --clickhouse-user {USER} \
         --clickhouse-password {PASSWORD} --team-id 2 --host {} --project-api-key phc_destination --retry-scale \
         0.001 --batch-size 50 --concurrency 4",
        dir.0.join("s.sqlite").display(),
        engine.url,
        server.url
    );
    let output = cli().args(words(&line)).output().unwrap();
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("400 persons read, 400 sent (800 further distinct ids linked)"), "{said}");
    assert!(most.load(Ordering::SeqCst) >= 2, "one request at a time: {said}");
    let taken = taken.lock().unwrap();
    assert_eq!(taken.len(), 1200, "every event once");
    // Each person's $set (from its first id, a-N) was taken before each of its links.
    let mut set: HashSet<String> = HashSet::new();
    for event in taken.iter() {
        let name = event["distinct_id"].as_str().unwrap().to_string();
        if event["event"] == "$set" {
            set.insert(name);
        } else {
            assert!(set.contains(&name), "{name}'s link was taken before its $set");
        }
    }
}

//! The wasm boundary as JavaScript sees it: run by `wasm-pack test --node` and
//! `wasm-pack test --headless --chrome`.
#![cfg(target_arch = "wasm32")]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use js_sys::{Array, Error, Object, Reflect};
use migrator3000::boundary::Migrator;
use serde_json::{json, Value};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

const NOW: f64 = 1_795_435_200_000.0; // 2026-11-23T12:00:00Z

fn config(changes: Value) -> JsValue {
    let mut base = json!({"host": "http://127.0.0.1:8000", "projectApiKey": "phc_dest", "startDate": "2021-06-01",
                          "posthogVersion": "1.30.0+", "debug": "OFF"});
    for (k, v) in changes.as_object().unwrap() {
        base[k] = v.clone();
    }
    js_sys::JSON::parse(&base.to_string()).unwrap()
}

fn get(target: &JsValue, key: &str) -> JsValue {
    Reflect::get(target, &key.into()).unwrap()
}

fn text(target: &JsValue, key: &str) -> String {
    get(target, key).as_string().unwrap_or_else(|| panic!("{key} is not a string"))
}

/// Asserts the value is a real JS `Error` of this kind and returns its message.
fn error_of_kind(error: JsValue, kind: &str) -> String {
    assert!(error.is_instance_of::<Error>(), "not an Error: {error:?}");
    assert_eq!(text(&error, "kind"), kind);
    error.unchecked_into::<Error>().message().into()
}

fn historical(n: u32) -> Value {
    json!({"event": "$pageview", "distinct_id": format!("user-{n}"), "timestamp": "2021-07-01T10:00:00Z",
           "uuid": format!("00000000-0000-4000-8000-{n:012}"),
           "properties": {"$$is_historical_export_event": true, "n": n, "token": "phc_source"}})
}

/// Bodies cross as strings: JSON text, or base64 of the gzip.
fn body_json(request: &JsValue) -> Value {
    let body = text(request, "body");
    let json = match text(request, "encoding").as_str() {
        "json" => body,
        "gzip-base64" => {
            let bytes = BASE64.decode(body).unwrap();
            assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
            String::from_utf8(migrator3000::gzip::decompress(&bytes).unwrap()).unwrap()
        }
        other => panic!("unknown encoding {other}"),
    };
    let parsed: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(get(request, "jsonBytes").as_f64(), Some(json.len() as f64));
    parsed
}

#[wasm_bindgen_test]
fn good_settings_are_reported_back_normalised() {
    let m =
        Migrator::new(config(json!({"host": "HTTP://127.0.0.1:8000/", "eventsToIgnore": "a, b"})), NOW, None).unwrap();
    let s = m.settings();
    assert_eq!(text(&s, "destination"), "http://127.0.0.1:8000");
    assert_eq!(text(&s, "batchUrl"), "http://127.0.0.1:8000/batch/?compression=gzip-js");
    assert_eq!(text(&s, "startDate"), "2021-06-01T00:00:00.000Z");
    assert_eq!(get(&s, "batchSize").as_f64(), Some(500.0));
    assert_eq!(Array::from(&get(&s, "eventsToIgnore")).length(), 2);
    assert_eq!(text(&s, "cutover"), "2026-11-23T12:00:00.000Z");
    assert!(Object::keys(s.unchecked_ref::<Object>()).iter().all(|k| k.as_string().unwrap() != "projectApiKey"));
}

#[wasm_bindgen_test]
fn bad_settings_throw_an_error_naming_each_field() {
    let error =
        Migrator::new(config(json!({"host": "ftp://x", "projectApiKey": "phx_personal"})), NOW, None).err().unwrap();
    let fields: Vec<String> = Array::from(&get(&error, "fields")).iter().map(|f| f.as_string().unwrap()).collect();
    let message = error_of_kind(error, "bad_setting");
    assert_eq!(fields, ["host", "projectApiKey"]);
    assert!(message.contains("Destination host (host): \"ftp://x\""), "{message}");
    assert!(message.contains("personal API key"), "{message}");
    assert!(!message.contains("phx_personal"), "{message}");
}

#[wasm_bindgen_test]
fn settings_that_are_not_an_object_are_a_setting_error() {
    for value in [JsValue::from_str("host=x"), JsValue::NULL, JsValue::UNDEFINED, JsValue::from(5)] {
        let message = error_of_kind(Migrator::new(value, NOW, None).err().unwrap(), "bad_setting");
        assert!(message.contains("settings"), "{message}");
    }
}

#[wasm_bindgen_test]
fn a_clock_that_is_not_a_time_is_bad_input() {
    for now in [f64::NAN, f64::INFINITY, 1e300] {
        error_of_kind(Migrator::new(config(json!({})), now, None).err().unwrap(), "bad_input");
    }
    let m = Migrator::new(config(json!({})), NOW, None).unwrap();
    error_of_kind(m.export_historical("[]", f64::NAN, None).err().unwrap(), "bad_input");
}

#[wasm_bindgen_test]
fn historical_events_become_gzipped_batch_requests() {
    let m = Migrator::new(config(json!({"batchSize": "2"})), NOW, None).unwrap();
    let live = json!({"event": "$pageview", "distinct_id": "x", "uuid": "00000000-0000-4000-8000-000000000099"});
    let nameless = json!({"distinct_id": "y", "properties": {"$$is_historical_export_event": true}});
    let events = json!([historical(1), live, historical(2), nameless, historical(3)]);
    let outcome = m.export_historical(&events.to_string(), NOW, None).unwrap();

    let requests = Array::from(&get(&outcome, "requests"));
    assert_eq!(requests.length(), 2);
    let first = requests.get(0);
    assert_eq!(text(&first, "url"), "http://127.0.0.1:8000/batch/?compression=gzip-js");
    let body = body_json(&first);
    assert_eq!(body["api_key"], "phc_dest");
    assert_eq!(body["historical_migration"], true);
    assert_eq!(body["batch"][0]["uuid"], "00000000-0000-4000-8000-000000000001");
    assert_eq!(body["batch"][0]["properties"]["$geoip_disable"], true);
    assert!(body["batch"][0]["properties"].get("token").is_none());
    let uuids: Vec<String> = Array::from(&get(&first, "uuids")).iter().map(|u| u.as_string().unwrap()).collect();
    assert_eq!(uuids, ["00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"]);
    assert_eq!(body_json(&requests.get(1))["batch"][0]["properties"]["n"], 3);

    let rejected = Array::from(&get(&outcome, "rejected"));
    assert_eq!(rejected.length(), 1);
    assert_eq!(text(&rejected.get(0), "code"), "missing_event_name");
    assert!(text(&rejected.get(0), "reason").contains("no name"));
    assert_eq!(get(&outcome, "otherPath").as_f64(), Some(1.0));
}

#[wasm_bindgen_test]
fn live_events_are_held_until_full_or_flushed() {
    let mut m = Migrator::new(config(json!({"batchSize": "2", "gzip": "OFF"})), NOW, None).unwrap();
    let live = |n: u32| json!({"event": "e", "distinct_id": "d", "uuid": format!("00000000-0000-4000-8000-{n:012}")});
    let outcome = m.add_live(&json!([live(1)]).to_string(), NOW).unwrap();
    assert_eq!(Array::from(&get(&outcome, "requests")).length(), 0);
    assert_eq!(m.live_waiting(), 1);
    let outcome = m.add_live(&json!([live(2), live(3)]).to_string(), NOW).unwrap();
    let requests = Array::from(&get(&outcome, "requests"));
    assert_eq!(requests.length(), 1);
    assert_eq!(text(&requests.get(0), "url"), "http://127.0.0.1:8000/batch/");
    assert_eq!(body_json(&requests.get(0))["historical_migration"], false);
    let rest = m.flush_live();
    assert_eq!(body_json(&rest)["batch"][0]["uuid"], "00000000-0000-4000-8000-000000000003");
    assert!(m.flush_live().is_undefined());
}

#[wasm_bindgen_test]
fn the_export_plan_names_the_job_and_window() {
    let cutover = NOW - 3_600_000.0;
    let m = Migrator::new(config(json!({"posthogVersion": "1.29.0"})), NOW, Some(cutover)).unwrap();
    let plan = m.export_plan();
    assert_eq!(text(&plan, "job"), "Export historical events");
    let payload = get(&plan, "payload");
    assert_eq!(text(&payload, "dateFrom"), "2021-06-01T00:00:00.000Z");
    assert_eq!(text(&payload, "dateTo"), "2026-11-23T11:00:00.000Z");
    let m = Migrator::new(config(json!({"startDate": "", "posthogVersion": "Latest"})), NOW, None).unwrap();
    let plan = m.export_plan();
    assert_eq!(text(&plan, "job"), "Export historical events V2");
    assert!(!Reflect::has(&get(&plan, "payload"), &"dateFrom".into()).unwrap());
}

#[wasm_bindgen_test]
fn answers_become_decisions_for_the_shim() {
    let m = Migrator::new(config(json!({})), NOW, None).unwrap();
    let events = json!([historical(1), historical(2), historical(3)]);
    let request = Array::from(&get(&m.export_historical(&events.to_string(), NOW, None).unwrap(), "requests")).get(0);

    let delivered = m.answer(request.clone(), 200, None, None, 1, NOW).unwrap();
    assert_eq!((text(&delivered, "action"), get(&delivered, "count").as_f64()), ("delivered".into(), Some(3.0)));

    let split = m.answer(request.clone(), 400, None, Some("bad".into()), 1, NOW).unwrap();
    assert_eq!(text(&split, "action"), "split");
    let halves = Array::from(&get(&split, "requests"));
    assert_eq!(halves.length(), 2);
    assert_eq!(body_json(&halves.get(0))["batch"][0]["uuid"], "00000000-0000-4000-8000-000000000001");
    let single = m.answer(halves.get(0), 400, None, Some("{\"type\":\"validation_error\"}".into()), 1, NOW).unwrap();
    assert_eq!(text(&single, "action"), "rejected");
    assert_eq!(text(&get(&single, "rejected"), "uuid"), "00000000-0000-4000-8000-000000000001");

    let retry = m.answer(request.clone(), 429, Some("90".into()), None, 1, NOW).unwrap();
    assert_eq!(
        (text(&retry, "action"), get(&retry, "delaySeconds").as_f64(), get(&retry, "attempt").as_f64()),
        ("retry".into(), Some(90.0), Some(2.0))
    );
    assert_eq!(text(&m.answer(request.clone(), 503, None, None, 12, NOW).unwrap(), "action"), "park");
    let stop = m.answer(request.clone(), 401, None, None, 1, NOW).unwrap();
    assert!(text(&stop, "message").contains("Destination project API key"));

    error_of_kind(m.answer(JsValue::from_str("x"), 400, None, None, 1, NOW).err().unwrap(), "bad_input");
    let garbled = js_sys::JSON::parse("{\"body\": \"!!\", \"encoding\": \"gzip-base64\"}").unwrap();
    error_of_kind(m.answer(garbled, 400, None, None, 1, NOW).err().unwrap(), "bad_input");
}

#[wasm_bindgen_test]
fn the_export_moves_through_ticks_with_state_kept_by_the_shim() {
    let m = Migrator::new(config(json!({"posthogVersion": "1.30.0"})), NOW, None).unwrap();
    let quiet = js_sys::JSON::parse("{}").unwrap();
    let first = m.export_tick(None, quiet.clone(), NOW).unwrap();
    let start = get(&first, "start");
    assert_eq!(text(&start, "job"), "Export historical events");
    assert_eq!(text(&get(&start, "payload"), "dateFrom"), "2021-06-01T00:00:00.000Z");
    assert_eq!(text(&get(&start, "payload"), "dateTo"), "2021-06-02T00:00:00.000Z");
    let state = text(&first, "state");
    let running = js_sys::JSON::parse("{\"hostRunning\": true, \"delivered\": 5}").unwrap();
    let second = m.export_tick(Some(state.clone()), running, NOW + 60_000.0).unwrap();
    assert!(get(&second, "start").is_null());
    assert!(Array::from(&get(&second, "log")).get(0).as_string().unwrap().starts_with("History: 0%"));
    let restart = m.export_restart(Some(state), NOW).unwrap();
    assert_eq!(get(&restart, "resetHost").as_bool(), Some(true));
    error_of_kind(m.export_tick(Some("{".into()), quiet.clone(), NOW).err().unwrap(), "bad_input");
    error_of_kind(m.export_tick(None, JsValue::from_str("x"), NOW).err().unwrap(), "bad_input");
}

#[wasm_bindgen_test]
fn pacing_follows_the_setting() {
    let unpaced = Migrator::new(config(json!({})), NOW, None).unwrap();
    assert_eq!(unpaced.pace_delay(1e9, 0.0), None);
    let paced = Migrator::new(config(json!({"eventsPerMinute": "1000"})), NOW, None).unwrap();
    assert_eq!(paced.pace_delay(1000.0, 0.0), None);
    assert_eq!(paced.pace_delay(1500.0, 0.0), Some(30.0));
    assert_eq!(paced.pace_delay(f64::NAN, f64::NAN), None);
}

#[wasm_bindgen_test]
fn a_bad_event_is_a_bad_event_error_with_a_reason_code() {
    let m = Migrator::new(config(json!({})), NOW, None).unwrap();
    let error = m.transform_event(&json!({"event": "e"}).to_string(), NOW).err().unwrap();
    assert_eq!(text(&error, "reason"), "missing_distinct_id");
    let message = error_of_kind(error, "bad_event");
    assert!(message.contains("no distinct_id"), "{message}");
    let good: Value =
        serde_json::from_str(&m.transform_event(&json!({"event": "e", "distinct_id": 7}).to_string(), NOW).unwrap())
            .unwrap();
    assert_eq!(good["distinct_id"], "7");
}

/// A panic would trap and poison the instance: every one of these must come back as a
/// value or an Error, and the instance must keep working afterwards.
#[wasm_bindgen_test]
fn no_input_panics() {
    let mut m = Migrator::new(config(json!({"batchSize": "1"})), NOW, None).unwrap();
    let deep = format!("[{}{}]", "[".repeat(5000), "]".repeat(5000));
    let inputs = [
        String::new(),
        "{".into(),
        "[".into(),
        "null".into(),
        "[null, 1, \"x\", [], {}]".into(),
        "[{\"event\": \"e\", \"distinct_id\": \"d\", \"timestamp\": 1e400}]".into(),
        "[{\"event\": \"e\", \"distinct_id\": \"d\", \"timestamp\": -99999999999999999999999}]".into(),
        "[{\"event\": \"e\", \"distinct_id\": \"d\", \"offset\": 9223372036854775807, \"now\": \"2021-01-01T00:00:00Z\"}]".into(),
        "[{\"event\": \"e\", \"distinct_id\": \"d\", \"properties\": {\"$elements\": [null, 1, {\"attributes\": 5}]}}]".into(),
        "[{\"event\": \"\\ud800\", \"distinct_id\": \"\\udfff\"}]".into(),
        deep,
    ];
    for input in &inputs {
        let _ = m.export_historical(input, NOW, None);
        let _ = m.add_live(input, NOW);
        let _ = m.transform_event(input, NOW);
    }
    let _ = m.flush_live();
    let outcome = m.export_historical(&json!([historical(7)]).to_string(), NOW, None).unwrap();
    assert_eq!(Array::from(&get(&outcome, "requests")).length(), 1);
}

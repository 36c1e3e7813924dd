//! The wasm boundary as JavaScript sees it: run by `wasm-pack test --node` and
//! `wasm-pack test --headless --chrome`.
#![cfg(target_arch = "wasm32")]

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use js_sys::{Array, Error, Object, Reflect};
use migrator3000::boundary::{Dispatch, Migrator};
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
    serde_json::from_str(&json).unwrap()
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
    error_of_kind(m.export_historical(b"[]", f64::NAN, None, None).err().unwrap(), "bad_input");
}

/// Sends every request of `dispatch` to a destination that answers `status`; the
/// requests as they would go out, and the summary.
fn send_all(mut dispatch: Dispatch, status: u16, text: &str) -> (Vec<JsValue>, JsValue) {
    let mut sent = Vec::new();
    loop {
        let request = dispatch.next_request();
        if request.is_undefined() {
            break;
        }
        sent.push(request);
        dispatch.answer(status, None, Some(text.into()), None, NOW).unwrap();
    }
    (sent, dispatch.finish(NOW).unwrap())
}

fn bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

#[wasm_bindgen_test]
fn historical_events_become_gzipped_batch_requests() {
    let m = Migrator::new(config(json!({"batchSize": "2"})), NOW, None).unwrap();
    let live = json!({"event": "$pageview", "distinct_id": "x", "uuid": "00000000-0000-4000-8000-000000000099"});
    let nameless = json!({"distinct_id": "y", "properties": {"$$is_historical_export_event": true}});
    let events = json!([historical(1), live, historical(2), nameless, historical(3)]);
    let page = m.export_historical(&bytes(&events), NOW, None, None).unwrap();
    let info = page.info();
    assert_eq!(get(&info, "requests").as_f64(), Some(2.0));
    assert_eq!(get(&info, "events").as_f64(), Some(3.0));
    assert_eq!(get(&info, "otherPath").as_f64(), Some(1.0));
    assert_eq!(get(&info, "flushLive").as_bool(), Some(true), "live events in the host's buffer");
    assert!(text(&info, "pageKey").starts_with("migrator_page_0_"));
    assert_eq!(get(&info, "fromExport").as_bool(), Some(true));
    // Its record in flight: where its export window begins at the latest, and its key.
    let record = page.record(NOW).unwrap();
    assert_eq!((text(&record, "kind"), text(&record, "key")), ("page".into(), text(&info, "pageKey")));
    assert_eq!(get(&record, "from").as_f64(), Some(1_625_133_600_000.0), "2021-07-01T10:00:00Z");
    let back = m.page_record(record.clone(), true, NOW + 1.0).unwrap();
    assert_eq!(get(&back, "handedBackAt").as_f64(), Some(NOW + 1.0));
    let again = m.page_record(back, false, NOW + 2.0).unwrap();
    assert_eq!((get(&again, "attempts").as_f64(), get(&again, "handedBackAt").is_null()), (Some(2.0), true));
    error_of_kind(m.page_record(JsValue::from_str("x"), true, NOW).err().unwrap(), "bad_input");
    let rejected = Array::from(&get(&info, "rejected"));
    assert_eq!(rejected.length(), 1);
    assert_eq!(text(&rejected.get(0), "code"), "missing_event_name");
    assert!(text(&rejected.get(0), "reason").contains("no name"));

    let (sent, summary) = send_all(page.dispatch(None), 200, "{\"status\": 1}");
    assert_eq!(sent.len(), 2);
    assert_eq!(text(&sent[0], "url"), "http://127.0.0.1:8000/batch/?compression=gzip-js");
    let body = body_json(&sent[0]);
    assert_eq!(body["api_key"], "phc_dest");
    assert_eq!(body["historical_migration"], true);
    assert_eq!(body["batch"][0]["uuid"], "00000000-0000-4000-8000-000000000001");
    assert_eq!(body["batch"][0]["properties"]["$geoip_disable"], true);
    assert!(body["batch"][0]["properties"].get("token").is_none());
    assert_eq!(body_json(&sent[1])["batch"][0]["properties"]["n"], 3);
    assert_eq!(get(&summary, "delivered").as_f64(), Some(3.0));
    assert_eq!(Array::from(&get(&summary, "keep")).length(), 0);
}

#[wasm_bindgen_test]
fn empty_input_of_every_kind_works() {
    // What the Apps page saves for cleared fields.
    let cleared = json!({"startDate": "", "eventsToIgnore": "", "eventsPerMinute": "", "batchSize": "",
                         "batchMaxKilobytes": "", "gzip": "", "debug": "", "posthogVersion": ""});
    let mut m = Migrator::new(config(cleared), NOW, None).unwrap();
    for input in [&b"[]"[..], b"[{}]", b"[{\"event\": \"\", \"distinct_id\": \"\", \"properties\": {\"\": \"\"}}]"] {
        let page = m.export_historical(input, NOW, Some(String::new()), Some(String::new())).unwrap();
        let (sent, _) = send_all(page.dispatch(None), 200, "");
        assert!(sent.is_empty());
        let (sent, _) = send_all(m.add_live(input, NOW, JsValue::UNDEFINED).unwrap().dispatch(None), 200, "");
        assert!(sent.is_empty());
    }
    let page = m.export_historical(&bytes(&json!([historical(1)])), NOW, None, None).unwrap();
    let (_, summary) = send_all(page.dispatch(None), 503, "");
    assert_eq!(Array::from(&get(&summary, "keep")).length(), 1);
    assert!(m.pace(JsValue::NULL, 0.0, NOW).unwrap().is_undefined());
}

#[wasm_bindgen_test]
fn live_events_are_held_until_full_or_flushed() {
    let mut m = Migrator::new(config(json!({"batchSize": "2", "gzip": "OFF"})), NOW, None).unwrap();
    let live = |n: u32| json!({"event": "e", "distinct_id": "d", "uuid": format!("00000000-0000-4000-8000-{n:012}")});
    let (sent, _) =
        send_all(m.add_live(&bytes(&json!([live(1)])), NOW, JsValue::UNDEFINED).unwrap().dispatch(None), 200, "");
    assert!(sent.is_empty());
    assert_eq!(m.live_waiting(), 1);
    let (sent, _) = send_all(
        m.add_live(&bytes(&json!([live(2), live(3)])), NOW, JsValue::UNDEFINED).unwrap().dispatch(None),
        200,
        "",
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(text(&sent[0], "url"), "http://127.0.0.1:8000/batch/");
    assert_eq!(body_json(&sent[0])["historical_migration"], false);
    let (sent, _) = send_all(m.flush_live().dispatch(None), 200, "");
    assert_eq!(body_json(&sent[0])["batch"][0]["uuid"], "00000000-0000-4000-8000-000000000003");
    assert_eq!(m.live_waiting(), 0);
}

#[wasm_bindgen_test]
fn answers_become_kept_requests_for_the_shim() {
    let mut m = Migrator::new(config(json!({})), NOW, None).unwrap();
    let events = json!([historical(1), historical(2)]);
    let page = || m.export_historical(&bytes(&events), NOW, None, None).unwrap();
    let (_, summary) = send_all(page().dispatch(None), 429, "slow down");
    let keep = Array::from(&get(&summary, "keep")).get(0);
    assert_eq!(get(&keep, "delaySeconds").as_f64(), Some(15.0));
    let parcel = get(&keep, "parcel");
    assert_eq!((text(&parcel, "state"), get(&parcel, "attempt").as_f64()), ("waiting".into(), Some(2.0)));
    assert_eq!(body_json(&get(&parcel, "request"))["batch"].as_array().unwrap().len(), 2);
    // The kept request goes again as it was, as attempt 2.
    let (sent, summary) = send_all(m.resend(parcel.clone()).unwrap().unwrap(), 200, "");
    assert_eq!(body_json(&sent[0]), body_json(&get(&parcel, "request")));
    assert_eq!(get(&summary, "delivered").as_f64(), Some(2.0));

    let (_, summary) = send_all(page().dispatch(None), 401, "");
    let stop = text(&summary, "stop");
    assert!(stop.contains("Destination project API key"), "{stop}");
    let held = get(&Array::from(&get(&summary, "keep")).get(0), "parcel");
    assert_eq!(text(&held, "state"), "held");
    assert!(m.resend(held).unwrap().is_none(), "held requests wait for the settings");
    m.hold(stop);
    let (sent, summary) = send_all(m.flush_live().dispatch(None), 200, "");
    assert!(sent.is_empty());
    assert!(get(&summary, "stop").as_string().is_some());
    error_of_kind(m.resend(JsValue::from_str("x")).err().unwrap(), "bad_input");
}

#[wasm_bindgen_test]
fn kept_requests_are_looked_at_in_windows() {
    let m = Migrator::new(config(json!({})), NOW, None).unwrap();
    let range: Vec<f64> = m.parcels_to_look_at(1.0, None, 3.0);
    assert_eq!(range, [1.0, 3.0]);
    let parcel = json!({"request": {"body": "{}", "encoding": "json", "jsonBytes": 2, "uuids": ["u"]},
                        "historical": true, "attempt": 2, "state": "waiting", "dueAt": 0, "reason": "HTTP 503"});
    let read = json!([[1, null], [2, parcel], [3, {"broken": true}]]).to_string();
    let looked = m.look_at_parcels(1.0, 1.0, 3.0, &read, "minute", NOW).unwrap();
    assert_eq!(get(&looked, "floor").as_f64(), Some(2.0));
    assert_eq!(get(&looked, "open").as_f64(), Some(2.0), "an unreadable parcel holds the history too");
    assert_eq!(Array::from(&get(&looked, "send")).length(), 1, "its resend job was lost");
    assert_eq!(Array::from(&get(&looked, "unreadable")).to_vec(), [JsValue::from(3.0)]);
    error_of_kind(m.look_at_parcels(1.0, 1.0, 3.0, "{", "minute", NOW).err().unwrap(), "bad_input");
}

#[wasm_bindgen_test]
fn the_export_moves_through_ticks_with_state_kept_by_the_shim() {
    let m = Migrator::new(config(json!({"posthogVersion": "1.30.0"})), NOW, None).unwrap();
    let quiet = js_sys::JSON::parse("{}").unwrap();
    assert_eq!(m.history_records_to_read(1.0, 0.0), [1.0, 0.0]);
    let first = m.export_tick(None, quiet.clone(), 1.0, 0.0, "[]", NOW).unwrap();
    let start = get(&first, "start");
    assert_eq!(text(&start, "job"), "Export historical events");
    assert_eq!(text(&get(&start, "payload"), "dateFrom"), "2021-06-01T00:00:00.000Z");
    assert_eq!(text(&get(&start, "payload"), "dateTo"), "2026-11-23T12:00:00.000Z");
    assert!(Array::from(&get(&first, "resetKeys")).to_vec().contains(&JsValue::from("is_export_running")));
    let state = text(&first, "state");
    let running = js_sys::JSON::parse("{\"hostRunning\": true, \"delivered\": 5}").unwrap();
    // A late instant and a page of an earlier run among the records.
    let records = json!([[1, {"kind": "late", "at": 1_625_133_600_000i64}],
                         [2, {"kind": "page", "epoch": 0, "from": 5, "key": "migrator_page_0_x", "at": NOW as i64, "attempts": 1}],
                         [3, null]])
    .to_string();
    let second = m.export_tick(Some(state.clone()), running, 1.0, 3.0, &records, NOW + 30_000.0).unwrap();
    assert!(get(&second, "start").is_null());
    assert_eq!(Array::from(&get(&second, "resetKeys")).length(), 0);
    assert!(Array::from(&get(&second, "log")).get(0).as_string().unwrap().starts_with("History: 0%"));
    assert_eq!(get(&second, "floor").as_f64(), Some(4.0));
    let forget = Array::from(&get(&second, "forget"));
    assert_eq!(forget.length(), 2);
    assert_eq!(js_sys::JSON::stringify(&forget).unwrap().as_string().unwrap(), "[[1,null],[2,\"migrator_page_0_x\"]]");
    assert_eq!(Array::from(&get(&second, "warn")).length(), 0, "every record was readable");
    assert!(text(&second, "state").contains("\"late\":[1625133600000]"));
    let restart = m.export_restart(Some(state), NOW).unwrap();
    assert_eq!(get(&restart, "epoch").as_f64(), Some(2.0));
    error_of_kind(m.export_tick(Some("{".into()), quiet.clone(), 1.0, 0.0, "[]", NOW).err().unwrap(), "bad_input");
    error_of_kind(m.export_tick(None, JsValue::from_str("x"), 1.0, 0.0, "[]", NOW).err().unwrap(), "bad_input");
    error_of_kind(m.export_tick(None, quiet.clone(), 1.0, 0.0, "{", NOW).err().unwrap(), "bad_input");
    let v2 = Migrator::new(config(json!({"posthogVersion": "Latest", "startDate": ""})), NOW, None).unwrap();
    let payload = get(&get(&v2.export_tick(None, quiet, 1.0, 0.0, "[]", NOW).unwrap(), "start"), "payload");
    assert_eq!(text(&payload, "dateFrom"), "2020-01-01T00:00:00.000Z", "V2 refuses an export without dateFrom");
}

#[wasm_bindgen_test]
fn live_events_before_the_cutover_need_the_historys_view() {
    let mut m = Migrator::new(config(json!({"posthogVersion": "1.29.0", "gzip": "OFF"})), NOW, None).unwrap();
    let held_back = json!([{"event": "e", "distinct_id": "d", "uuid": "00000000-0000-4000-8000-000000000001",
                            "timestamp": "2026-11-23T11:59:57.000Z"}]);
    assert_eq!(m.live_needs_history(&bytes(&held_back)), Ok(true));
    error_of_kind(m.add_live(&bytes(&held_back), NOW, JsValue::UNDEFINED).err().unwrap(), "bad_input");
    // Before the first minute task: the export will read it.
    let view = js_sys::JSON::parse("{\"exportState\": null}").unwrap();
    let page = m.add_live(&bytes(&held_back), NOW, view).unwrap();
    assert_eq!(get(&page.info(), "leftToHistory").as_f64(), Some(1.0));
    let (sent, _) = send_all(m.flush_live().dispatch(None), 200, "");
    assert!(sent.is_empty());
    error_of_kind(m.add_live(&bytes(&held_back), NOW, JsValue::from_str("x")).err().unwrap(), "bad_input");
}

#[wasm_bindgen_test]
fn pacing_follows_the_setting() {
    let unpaced = Migrator::new(config(json!({})), NOW, None).unwrap();
    assert!(unpaced.pace(JsValue::NULL, 1e9, NOW).unwrap().is_undefined());
    let paced = Migrator::new(config(json!({"eventsPerMinute": "1000"})), NOW, None).unwrap();
    let first = paced.pace(JsValue::NULL, 1000.0, NOW).unwrap();
    assert_eq!(get(&first, "allowed").as_bool(), Some(true));
    let second = paced.pace(get(&first, "bucket"), 500.0, NOW).unwrap();
    assert_eq!((get(&second, "allowed").as_bool(), get(&second, "waitSeconds").as_f64()), (Some(false), Some(30.0)));
    assert_eq!(get(&paced.pace(get(&second, "bucket"), f64::NAN, NOW).unwrap(), "allowed").as_bool(), Some(true));
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
        let _ = m.export_historical(input.as_bytes(), NOW, None, None).map(|p| send_all(p.dispatch(None), 400, ""));
        let _ = m.add_live(input.as_bytes(), NOW, JsValue::UNDEFINED).map(|p| send_all(p.dispatch(None), 413, ""));
        let _ = m.transform_event(input, NOW);
    }
    let _ = m.export_historical(&[0xff, 0xfe], NOW, None, None).err().unwrap();
    let _ = send_all(m.flush_live().dispatch(None), 500, "<html>");
    let page = m.export_historical(&bytes(&json!([historical(7)])), NOW, None, None).unwrap();
    assert_eq!(get(&page.info(), "requests").as_f64(), Some(1.0));
}

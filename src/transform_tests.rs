use super::*;
use proptest::prelude::*;
use serde_json::json;

/// Routes an event given as a JSON value, as the migrator does with raw input.
fn route_of(event: &Value, shape: ExportShape, ignored: &BTreeSet<String>) -> Route {
    let text = event.to_string();
    route(&SourceEvent::read(&text), shape, ignored)
}

fn now() -> DateTime<Utc> {
    timestamp::parse_iso("2026-11-23T12:00:00Z").unwrap()
}

fn out(event: Value) -> Value {
    serde_json::from_str(&transform(event, now()).expect("accepted").json).unwrap()
}

fn rejection(event: Value) -> Rejection {
    transform(event, now()).expect_err("rejected").reason
}

const UUID: &str = "0180bd2b-0a4a-7b66-a79d-4bbe5ec8d4c8";

fn pageview() -> Value {
    json!({
        "event": "$pageview", "distinct_id": "user-1", "uuid": UUID, "timestamp": "2021-05-01T12:00:00.123Z",
        "properties": {"$current_url": "https://example.com/", "$ip": "203.0.113.9"}
    })
}

#[test]
fn fields_capture_would_drop_or_misuse_are_gone() {
    let mut event = pageview();
    for (key, value) in [
        ("team_id", json!(2)),
        ("now", json!("2021-05-01T12:00:01Z")),
        ("offset", json!(5)),
        ("sent_at", json!("2021-05-01T12:00:00Z")),
        ("$token", json!("phc_source")),
        ("token", json!("phc_source")),
        ("project_id", json!(2)),
        ("api_key", json!("phc_source")),
        ("site_url", json!("https://source")),
        ("person", json!({"id": 1})),
    ] {
        event[key] = value;
    }
    event["properties"]["token"] = json!("phc_source");
    event["properties"]["$token"] = json!("phc_source");
    let e = out(event);
    let mut keys: Vec<&String> = e.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["distinct_id", "event", "properties", "timestamp", "uuid"]);
    assert!(e["properties"].get("token").is_none() && e["properties"].get("$token").is_none());
    assert_eq!(e["properties"]["$current_url"], "https://example.com/");
}

#[test]
fn set_and_set_once_are_kept_when_objects() {
    let mut event = pageview();
    event["event"] = json!("$identify");
    event["$set"] = json!({"email": "a@example.com"});
    event["$set_once"] = json!(null);
    event["properties"]["$set"] = json!({"plan": "pro"});
    let e = out(event);
    assert_eq!(e["$set"], json!({"email": "a@example.com"}));
    assert!(e.get("$set_once").is_none());
    assert_eq!(e["properties"]["$set"], json!({"plan": "pro"}));
}

#[test]
fn export_markers_are_not_forwarded() {
    let mut event = pageview();
    event["properties"]["$$is_historical_export_event"] = json!(true);
    event["properties"]["$$historical_export_timestamp"] = json!("2026-11-23T00:00:00Z");
    event["properties"]["$$historical_export_source_db"] = json!("clickhouse");
    let props = out(event)["properties"].clone();
    assert!(props.as_object().unwrap().keys().all(|k| !k.starts_with("$$")), "{props}");
}

#[test]
fn geoip_is_disabled_and_source_location_kept() {
    let mut event = pageview();
    event["properties"]["$geoip_city_name"] = json!("Lisbon");
    event["properties"]["$geoip_disable"] = json!(false);
    let e = out(event);
    assert_eq!(e["properties"]["$geoip_disable"], true);
    assert_eq!(e["properties"]["$geoip_city_name"], "Lisbon");
    assert_eq!(e["properties"]["$ip"], "203.0.113.9");
}

#[test]
fn top_level_data_capture_would_drop_moves_into_properties() {
    let mut event = pageview();
    event["ip"] = json!("198.51.100.1");
    event["elements"] = json!([{"tag_name": "a", "text": "Go", "attributes": {"attr__href": "/go"}}]);
    event["elements_chain"] = json!("a:text=\"Go\"");
    event["properties"].as_object_mut().unwrap().remove("$ip");
    let e = out(event);
    assert_eq!(e["properties"]["$ip"], "198.51.100.1");
    assert_eq!(e["properties"]["$elements"], json!([{"tag_name": "a", "$el_text": "Go", "attr__href": "/go"}]));
    assert_eq!(e["properties"]["$elements_chain"], "a:text=\"Go\"");
    assert!(e.get("elements").is_none() && e.get("ip").is_none());

    // The event's own properties win; empty top-level lists add nothing.
    let mut event = pageview();
    event["ip"] = json!("198.51.100.1");
    event["elements"] = json!([]);
    let e = out(event);
    assert_eq!(e["properties"]["$ip"], "203.0.113.9");
    assert!(e["properties"].get("$elements").is_none());
}

#[test]
fn autocapture_elements_are_rewritten() {
    let mut event = pageview();
    event["event"] = json!("$autocapture");
    event["properties"]["$elements"] = json!([{"text": "Buy", "attr_class": ["b"], "attr_id": "x", "href": "/buy",
        "tag_name": "a", "attributes": {"attr__href": "/ignored", "attr__data-x": "1"}}]);
    assert_eq!(
        out(event)["properties"]["$elements"],
        json!([{"$el_text": "Buy", "attr__class": "b", "classes": ["b"], "attr__id": "x", "attr__href": "/buy", "tag_name": "a", "attr__data-x": "1"}])
    );
}

#[test]
fn timestamp_comes_from_the_event_before_the_clock() {
    let base = || {
        let mut e = pageview();
        e.as_object_mut().unwrap().remove("timestamp");
        e
    };
    let cases: Vec<(Value, &str, bool)> = vec![
        (pageview(), "2021-05-01T12:00:00.123Z", false),
        (
            {
                let mut e = base();
                e["timestamp"] = json!("2021-05-01 14:00:00+02:00");
                e
            },
            "2021-05-01T12:00:00.000Z",
            false,
        ),
        (
            {
                let mut e = base();
                e["now"] = json!("2021-05-01T12:00:10Z");
                e["offset"] = json!(2500);
                e
            },
            "2021-05-01T12:00:07.500Z",
            false,
        ),
        (
            {
                let mut e = base();
                e["now"] = json!("2021-05-01T12:00:10Z");
                e["properties"]["$time"] = json!(1619870400.5);
                e
            },
            "2021-05-01T12:00:00.500Z",
            false,
        ),
        (
            {
                let mut e = base();
                e["properties"]["$time"] = json!(1619870400.5);
                e
            },
            "2021-05-01T12:00:00.500Z",
            false,
        ),
        (
            {
                let mut e = base();
                e["now"] = json!("2021-05-01T12:00:10Z");
                e
            },
            "2021-05-01T12:00:10.000Z",
            false,
        ),
        (
            {
                let mut e = base();
                e["timestamp"] = json!("garbage");
                e["now"] = json!("2021-05-01T12:00:10Z");
                e
            },
            "2021-05-01T12:00:10.000Z",
            false,
        ),
        (
            {
                let mut e = base();
                e["offset"] = json!(2500);
                e
            },
            "2026-11-23T12:00:00.000Z",
            true,
        ),
        (base(), "2026-11-23T12:00:00.000Z", true),
    ];
    for (event, expected, clock) in cases {
        let prepared = transform(event.clone(), now()).unwrap();
        let e: Value = serde_json::from_str(&prepared.json).unwrap();
        assert_eq!(e["timestamp"], expected, "{event}");
        assert_eq!(prepared.used_current_time, clock, "{event}");
    }
}

#[test]
fn valid_source_uuid_is_kept() {
    let prepared = transform(pageview(), now()).unwrap();
    assert_eq!((prepared.uuid.as_str(), prepared.derived_uuid), (UUID, false));
    assert_eq!(serde_json::from_str::<Value>(&prepared.json).unwrap()["uuid"], UUID);
}

#[test]
fn missing_or_invalid_uuid_is_derived_the_same_on_every_run() {
    let mut without = pageview();
    without.as_object_mut().unwrap().remove("uuid");
    let first = transform(without.clone(), now()).unwrap();
    assert!(first.derived_uuid);
    assert!(uuid::Uuid::try_parse(&first.uuid).is_ok());

    // Another run, another moment, another export marker: the same uuid.
    let mut again = without.clone();
    again["properties"]["$$historical_export_timestamp"] = json!("2030-01-01T00:00:00Z");
    again["sent_at"] = json!("2030-01-01T00:00:00Z");
    let later = now() + Duration::days(3);
    assert_eq!(transform(again, later).unwrap().uuid, first.uuid);

    let mut invalid = without.clone();
    invalid["uuid"] = json!("not-a-uuid");
    assert_eq!(transform(invalid, now()).unwrap().uuid, first.uuid);

    // Any change of content is another event.
    for (path, value) in [
        ("event", json!("$pageleave")),
        ("distinct_id", json!("user-2")),
        ("timestamp", json!("2021-05-01T12:00:00.124Z")),
    ] {
        let mut other = without.clone();
        other[path] = value;
        assert_ne!(transform(other, now()).unwrap().uuid, first.uuid, "{path}");
    }
    let mut other = without.clone();
    other["properties"]["$current_url"] = json!("https://example.com/other");
    assert_ne!(transform(other, now()).unwrap().uuid, first.uuid);
}

#[test]
fn an_event_stamped_with_the_clock_still_gets_a_stable_uuid() {
    let mut event = pageview();
    event.as_object_mut().unwrap().remove("timestamp");
    event.as_object_mut().unwrap().remove("uuid");
    let a = transform(event.clone(), now()).unwrap();
    let b = transform(event, now() + Duration::hours(1)).unwrap();
    assert!(a.used_current_time);
    assert_eq!(a.uuid, b.uuid);
}

#[test]
fn distinct_id_comes_from_the_top_then_properties() {
    let mut e = pageview();
    e["properties"]["distinct_id"] = json!("from-props");
    assert_eq!(out(e.clone())["distinct_id"], "user-1");
    e.as_object_mut().unwrap().remove("distinct_id");
    assert_eq!(out(e.clone())["distinct_id"], "from-props");
    e["distinct_id"] = json!("");
    assert_eq!(out(e.clone())["distinct_id"], "from-props");
    e["distinct_id"] = json!(12345);
    assert_eq!(out(e)["distinct_id"], "12345");
}

#[test]
fn events_capture_would_refuse_are_rejected_with_a_reason() {
    let without = |key: &str| {
        let mut e = pageview();
        e.as_object_mut().unwrap().remove(key);
        e
    };
    let with = |key: &str, value: Value| {
        let mut e = pageview();
        e[key] = value;
        e
    };
    let cases = [
        (json!("$pageview"), Rejection::NotAnObject, "not a JSON object"),
        (json!([1]), Rejection::NotAnObject, "not a JSON object"),
        (without("event"), Rejection::MissingEventName, "no name"),
        (with("event", json!("")), Rejection::MissingEventName, "no name"),
        (with("event", json!(5)), Rejection::MissingEventName, "no name"),
        (without("distinct_id"), Rejection::MissingDistinctId, "no distinct_id"),
        (with("distinct_id", json!(null)), Rejection::MissingDistinctId, "no distinct_id"),
        (with("distinct_id", json!("   ")), Rejection::MissingDistinctId, "no distinct_id"),
        (with("distinct_id", json!({"id": 1})), Rejection::BadDistinctId, "neither text nor a number"),
        (with("properties", json!("x")), Rejection::PropertiesNotAnObject, "not a JSON object"),
        (with("properties", json!([])), Rejection::PropertiesNotAnObject, "not a JSON object"),
    ];
    for (event, expected, words) in cases {
        let got = rejection(event.clone());
        assert_eq!(got, expected, "{event}");
        assert!(got.to_string().contains(words), "{got}");
    }
    let rejected = transform(without("distinct_id"), now()).unwrap_err();
    assert_eq!((rejected.event_name.as_deref(), rejected.uuid.as_deref()), (Some("$pageview"), Some(UUID)));
}

#[test]
fn events_over_the_size_limit_are_rejected_not_sent() {
    let sized = |bytes: usize| {
        let mut e = pageview();
        e["properties"]["blob"] = json!("");
        let overhead = transform(e.clone(), now()).unwrap().json.len();
        e["properties"]["blob"] = json!("x".repeat(bytes - overhead));
        e
    };
    let at_limit = transform(sized(MAX_EVENT_BYTES), now()).unwrap();
    assert_eq!(at_limit.json.len(), MAX_EVENT_BYTES);
    let over = transform(sized(MAX_EVENT_BYTES + 1), now()).unwrap_err();
    assert_eq!(over.reason, Rejection::TooLarge { bytes: MAX_EVENT_BYTES + 1 });
    assert!(over.reason.to_string().contains("921601 bytes"));
    assert_eq!(over.uuid.as_deref(), Some(UUID));
    assert_eq!(over.reason.code(), "too_large");
}

#[test]
fn historical_or_live_follows_the_version_rules() {
    let ignored = BTreeSet::from(["$feature_flag_called".to_string()]);
    let mut marked = pageview();
    marked["properties"]["$$is_historical_export_event"] = json!(true);
    let mut no_uuid = pageview();
    no_uuid.as_object_mut().unwrap().remove("uuid");
    let mut empty_uuid = pageview();
    empty_uuid["uuid"] = json!("");
    let mut flag = pageview();
    flag["event"] = json!("$feature_flag_called");
    let cases = [
        (&pageview(), ExportShape::WithoutUuid, Route::Live),
        (&no_uuid, ExportShape::WithoutUuid, Route::Historical),
        (&empty_uuid, ExportShape::WithoutUuid, Route::Historical),
        (&marked, ExportShape::WithoutUuid, Route::Live),
        (&pageview(), ExportShape::Marked, Route::Live),
        (&no_uuid, ExportShape::Marked, Route::Live),
        (&marked, ExportShape::Marked, Route::Historical),
        (&flag, ExportShape::Marked, Route::Ignored),
        (&flag, ExportShape::WithoutUuid, Route::Ignored),
    ];
    for (event, shape, expected) in cases {
        assert_eq!(route_of(event, shape, &ignored), expected, "{event} {shape:?}");
    }
}

#[test]
fn unicode_survives_untouched() {
    let mut e = pageview();
    e["properties"]["title"] = json!("Zürich — 東京 🚀 \u{0000}\"quoted\"");
    e["distinct_id"] = json!("ユーザー");
    let prepared = transform(e, now()).unwrap();
    assert!(prepared.json.is_ascii(), "{}", prepared.json);
    assert!(prepared.json.contains(r"Z\u00fcrich") && prepared.json.contains(r"\ud83d\ude80"), "{}", prepared.json);
    let got: Value = serde_json::from_str(&prepared.json).unwrap();
    assert_eq!(got["properties"]["title"], "Zürich — 東京 🚀 \u{0000}\"quoted\"");
    assert_eq!(got["distinct_id"], "ユーザー");
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        Just(json!(UUID)),
        Just(json!("2021-05-01T12:00:00Z")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("event".to_string()),
                    Just("distinct_id".to_string()),
                    Just("uuid".to_string()),
                    Just("timestamp".to_string()),
                    Just("properties".to_string()),
                    Just("$elements".to_string()),
                    Just("attributes".to_string()),
                    Just("text".to_string()),
                    Just("offset".to_string()),
                    Just("now".to_string()),
                    Just("$time".to_string()),
                    "[a-z$_]{1,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever arrives, the transform answers without panicking, and what it accepts
    /// is an event capture takes: a name, a distinct_id, a valid uuid, an RFC 3339
    /// timestamp, object properties with geoip off, and nothing else at the top.
    #[test]
    fn any_input_gives_a_capture_ready_event_or_a_reason(event in any_json(), shape in prop_oneof![Just(ExportShape::Marked), Just(ExportShape::WithoutUuid)]) {
        let _ = route_of(&event, shape, &BTreeSet::new());
        match transform(event.clone(), now()) {
            Ok(prepared) => {
                let e: Value = serde_json::from_str(&prepared.json).unwrap();
                prop_assert!(e["event"].as_str().is_some_and(|s| !s.is_empty()));
                prop_assert!(e["distinct_id"].as_str().is_some_and(|s| !s.trim().is_empty()));
                prop_assert_eq!(e["uuid"].as_str(), Some(prepared.uuid.as_str()));
                prop_assert!(uuid::Uuid::try_parse(&prepared.uuid).is_ok());
                let ts = e["timestamp"].as_str().unwrap();
                let reparsed = timestamp::parse_iso(ts).map(timestamp::format);
                prop_assert_eq!(reparsed.as_deref(), Some(ts));
                prop_assert_eq!(&e["properties"]["$geoip_disable"], &json!(true));
                for key in e.as_object().unwrap().keys() {
                    prop_assert!(["event", "distinct_id", "uuid", "timestamp", "properties", "$set", "$set_once"].contains(&key.as_str()));
                }
                // The same event transformed again is the same request.
                prop_assert_eq!(transform(event, now()).unwrap(), prepared);
            }
            Err(rejected) => prop_assert!(!rejected.reason.to_string().is_empty()),
        }
    }

    /// A source uuid survives; without one, the derived uuid depends only on content.
    #[test]
    fn uuids_are_kept_or_reproducible(name in "[a-z$]{1,10}", id in "[a-z0-9]{1,10}", props in prop::collection::btree_map("[a-z]{1,5}", "\\PC{0,8}", 0..5)) {
        let event = json!({"event": name, "distinct_id": id, "properties": props, "timestamp": "2021-01-01T00:00:00Z"});
        let a = transform(event.clone(), now()).unwrap();
        let b = transform(event.clone(), now() + Duration::days(1)).unwrap();
        prop_assert_eq!(&a.uuid, &b.uuid);
        let mut with_uuid = event;
        with_uuid["uuid"] = json!(UUID);
        prop_assert_eq!(transform(with_uuid, now()).unwrap().uuid, UUID);
    }
}

#[test]
fn property_names_with_escapes_and_raw_values_pass_through_exactly() {
    let text = r#"{"event":"e","distinct_id":"d","uuid":"0180bd2b-0a4a-7b66-a79d-4bbe5ec8d4c8","timestamp":"2021-05-01T12:00:00Z",
        "properties":{"quo\"te":1,"tab\tkey":"\u00e9","big":12345678901234567890,"float":0.1,"exp":1e300,"nested":{"b":[1,{"c":null}],"a":true},"dup":1,"dup":2}}"#;
    let prepared = transform_raw(&SourceEvent::read(text), now()).unwrap();
    let out: Value = serde_json::from_str(&prepared.json).unwrap();
    let p = &out["properties"];
    assert_eq!(p["quo\"te"], 1);
    assert_eq!(p["tab\tkey"], "é");
    assert_eq!(p["big"].to_string(), "12345678901234567890");
    assert_eq!(p["float"].as_f64(), Some(0.1));
    assert_eq!(p["exp"].as_f64(), Some(1e300));
    assert_eq!(p["nested"], json!({"b": [1, {"c": null}], "a": true}));
    // A repeated name: the last one counts, as for any JSON reader.
    assert_eq!(p["dup"], 2);
    // Values are copied as written, not re-printed.
    assert!(prepared.json.contains(r#""big":12345678901234567890"#) && prepared.json.contains(r#""exp":1e300"#));
}

#[test]
fn events_exported_from_postgres_keep_one_uuid_across_exports() {
    // PostHog >= 1.30 gives a Postgres event a new uuid on every export; its row id stays.
    let exported = |fresh_uuid: &str, row: u64| {
        let mut e = pageview();
        e["uuid"] = json!(fresh_uuid);
        e["properties"]["$$historical_export_source_db"] = json!("postgres");
        e["properties"]["$$postgres_event_id"] = json!(row);
        e["properties"]["$$is_historical_export_event"] = json!(true);
        out(e)
    };
    let first = exported("0180bd2b-0a4a-7b66-a79d-4bbe5ec8d4c8", 42);
    let second = exported("11111111-2222-4333-8444-555555555555", 42);
    assert_eq!(first["uuid"], second["uuid"]);
    assert_ne!(first["uuid"], json!(UUID));
    assert_ne!(exported(UUID, 43)["uuid"], first["uuid"]);
    assert!(first["properties"].as_object().unwrap().keys().all(|k| !k.starts_with("$$")), "{first}");
    // From ClickHouse the event's own uuid is stable and kept.
    let mut clickhouse = pageview();
    clickhouse["properties"]["$$historical_export_source_db"] = json!("clickhouse");
    clickhouse["properties"]["$$postgres_event_id"] = json!(42);
    assert_eq!(out(clickhouse)["uuid"], json!(UUID));
}

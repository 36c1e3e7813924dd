//! One line of an Amplitude export into a PostHog event, as PostHog's importer maps it
//! (rust/batch-import-worker in PostHog's repository) where it maps a field, and as
//! PostHog's SDKs would have sent the event where it does not: the event's name kept
//! (page views and element interactions become `$pageview` and `$autocapture`),
//! user_id else device_id as the distinct_id, `user_properties` as `$set` (the
//! `initial_` ones as `$set_once`, under PostHog's names where it has them), Amplitude's
//! placeholders dropped, and the device, location, page and session fields under
//! PostHog's names (README, "What each Amplitude field becomes", says field by field).
//! The fields are those of the Export API's response schema.

use migrator3000::event_id;
use serde_json::{json, Map, Value};

use super::device;
use super::fields::{present, text};
use super::groups::{self, Group};

/// What a line becomes.
#[derive(Debug, PartialEq)]
pub enum Converted {
    Event(Event),
    /// Amplitude's `session_start` marker: not carried over (PostHog's importer drops it
    /// too; PostHog starts sessions from `$session_id`).
    Skipped,
    /// Amplitude's record of a Group Identify call: the groups it set, and no event.
    Groups {
        groups: Vec<Group>,
        distinct_id: Option<String>,
        timestamp: String,
    },
}

#[derive(Debug, PartialEq)]
pub struct Event {
    /// The PostHog event, as a captured event's JSON.
    pub json: Value,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    /// RFC 3339 UTC with microseconds.
    pub timestamp: String,
    pub timed_by: Time,
    /// The groups the line names, with their properties.
    pub groups: Vec<Group>,
}

/// Why a line is not an event: reported with the line and counted as rejected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("the line is not a JSON object")]
    NotAnObject,
    #[error("the event has no event_type")]
    NoEventType,
    #[error("the event has neither user_id nor device_id")]
    NoDistinctId,
    #[error("the event has no event_time, client_event_time or server_received_time")]
    NoTime,
    #[error("{field} \"{text}\" is not a time")]
    NotATime { field: &'static str, text: String },
}

/// The field an event's time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Time {
    Event,
    Client,
    Server,
}

/// Amplitude's location fields under the names PostHog's GeoIP gives them.
const GEO: [(&str, &str); 5] = [
    ("country", "$geoip_country_name"),
    ("region", "$geoip_subdivision_1_name"),
    ("city", "$geoip_city_name"),
    ("location_lat", "$geoip_latitude"),
    ("location_lng", "$geoip_longitude"),
];

/// Amplitude's identifiers, under the names PostHog's importer gives them.
const IDS: [(&str, &str); 6] = [
    ("user_id", "$amplitude_user_id"),
    ("device_id", "$amplitude_device_id"),
    ("event_id", "$amplitude_event_id"),
    ("$insert_id", "$amplitude_insert_id"),
    ("amplitude_id", "$amplitude_id"),
    ("platform", "$amplitude_platform"),
];

/// Page and attribution properties of the browser SDK under posthog-js's names.
const PAGE: [(&str, &str); 10] = [
    ("[Amplitude] Page URL", "$current_url"),
    ("[Amplitude] Page Location", "$current_url"),
    ("[Amplitude] Page Domain", "$host"),
    ("[Amplitude] Page Path", "$pathname"),
    ("[Amplitude] Page Title", "title"),
    ("[Amplitude] Page Referrer", "$referrer"),
    ("referrer", "$referrer"),
    ("referring_domain", "$referring_domain"),
    ("[Amplitude] Viewport Height", "$viewport_height"),
    ("[Amplitude] Viewport Width", "$viewport_width"),
];

/// Event properties PostHog also keeps on the person, as its SDKs and ingestion do.
const ON_PERSON: [&str; 15] = [
    "$browser",
    "$browser_version",
    "$os",
    "$os_version",
    "$device_type",
    "$app_version",
    "$current_url",
    "$pathname",
    "$referrer",
    "$referring_domain",
    "$geoip_country_name",
    "$geoip_subdivision_1_name",
    "$geoip_city_name",
    "$geoip_latitude",
    "$geoip_longitude",
];

/// Attribution parameters whose first value PostHog keeps as `$initial_<name>`.
const CAMPAIGN: [&str; 21] = [
    "referrer",
    "referring_domain",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "gclid",
    "gad_source",
    "gclsrc",
    "dclid",
    "gbraid",
    "wbraid",
    "fbclid",
    "msclkid",
    "twclid",
    "li_fat_id",
    "mc_cid",
    "igshid",
    "ttclid",
    "rdt_cid",
];

/// `2024-03-01 12:00:00.123456` (Amplitude's UTC) as `2024-03-01T12:00:00.123456Z`.
fn rfc3339(time: &str) -> Option<String> {
    let at = migrator3000::timestamp::parse_iso(time)?;
    Some(migrator3000::timestamp::format(at))
}

/// The event's time: `event_time`, else `client_event_time`, else `server_received_time`.
fn time_of(line: &Map<String, Value>) -> Result<(String, Time), LineError> {
    for (field, kind) in
        [("event_time", Time::Event), ("client_event_time", Time::Client), ("server_received_time", Time::Server)]
    {
        if let Some(time) = text(line.get(field)) {
            let at = rfc3339(&time).ok_or_else(|| LineError::NotATime { field, text: time.clone() })?;
            return Ok((at, kind));
        }
    }
    Err(LineError::NoTime)
}

/// A session: Amplitude's id (its start, in ms since 1970; -1 or 0 for none) and the
/// UUID v7 PostHog's sessions are made of (their start time in its first 48 bits, the
/// rest from the device, so two devices' sessions of the same millisecond differ).
fn session(line: &Map<String, Value>, device: &str) -> Option<(i64, String)> {
    let id = match present(line.get("session_id"))? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    if id <= 0 {
        return None;
    }
    let start = format!("{:012x}", id as u64 & 0xffff_ffff_ffff);
    let rest = event_id::derive(&json!(["amplitude session", device, id]));
    // `rest` is a version 5 uuid: its variant bits stay, its version becomes 7.
    Some((id, format!("{}-{}-7{}", &start[..8], &start[8..], &rest[15..])))
}

/// `amplitude-ts/2.4.1` as `$lib` and `$lib_version`.
fn library(name: &str) -> Vec<(&'static str, Value)> {
    match name.split_once('/') {
        Some((lib, version)) => vec![("$lib", json!(lib)), ("$lib_version", json!(version))],
        None => vec![("$lib", json!(name))],
    }
}

fn person(user_properties: Option<&Value>) -> (Map<String, Value>, Map<String, Value>) {
    let (mut set, mut set_once) = (Map::new(), Map::new());
    let Some(Value::Object(user_properties)) = user_properties else { return (set, set_once) };
    for (key, value) in user_properties {
        let initial = key.strip_prefix("initial_");
        if initial.is_none() && !key.starts_with("[Amplitude] Initial") {
            set.insert(key.clone(), value.clone());
            continue;
        }
        // Amplitude writes EMPTY where the first visit had no value.
        let Some(value) = present(Some(value)) else { continue };
        let name = match initial {
            Some(param) if CAMPAIGN.contains(&param) => format!("$initial_{param}"),
            _ => key.clone(),
        };
        set_once.insert(name, value.clone());
    }
    (set, set_once)
}

pub fn convert(line: &str) -> Result<Converted, LineError> {
    let Ok(Value::Object(source)) = serde_json::from_str::<Value>(line) else {
        return Err(LineError::NotAnObject);
    };
    let name = text(source.get("event_type")).ok_or(LineError::NoEventType)?;
    let name = match name.as_str() {
        "session_start" => return Ok(Converted::Skipped),
        "[Amplitude] Page Viewed" => "$pageview".to_string(),
        "[Amplitude] Element Clicked" | "[Amplitude] Element Changed" => "$autocapture".to_string(),
        _ => name,
    };
    let user_id = text(source.get("user_id"));
    let device_id = text(source.get("device_id"));
    let (timestamp, timed_by) = time_of(&source)?;
    if name == "$groupidentify" {
        let distinct_id = user_id.or(device_id);
        return Ok(Converted::Groups { groups: groups::of_line(&source), distinct_id, timestamp });
    }
    let distinct_id = user_id.clone().or_else(|| device_id.clone()).ok_or(LineError::NoDistinctId)?;

    let mut properties = match source.get("event_properties") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    let mut derived: Vec<(&str, Value)> = Vec::new();
    for (from, to) in PAGE {
        if let Some(value) = present(properties.get(from)) {
            derived.push((to, value.clone()));
        }
    }
    derived.extend(device::properties(&source));
    for (from, to) in GEO.iter().chain(IDS.iter()) {
        if let Some(value) = present(source.get(*from)) {
            derived.push((to, value.clone()));
        }
    }
    let fields = [("ip_address", "$ip"), ("version_name", "$app_version")];
    for (from, to) in fields {
        if let Some(value) = present(source.get(from)) {
            derived.push((to, value.clone()));
        }
    }
    if let Some(language) = text(source.get("language")) {
        derived.push((if device::is_web(&source) { "$browser_language" } else { "$locale" }, Value::String(language)));
    }
    if let Some(name) = text(source.get("library")) {
        derived.extend(library(&name));
    }
    if let Some(device) = &device_id {
        derived.push(("$device_id", Value::String(device.clone())));
    }
    if let Some((id, uuid)) = session(&source, device_id.as_deref().unwrap_or(&distinct_id)) {
        derived.push(("$session_id", Value::String(uuid)));
        derived.push(("$amplitude_session_id", Value::from(id)));
    }
    if let Some(groups) = groups::of_event(&source) {
        derived.push(("$groups", groups));
    }
    derived.push(("analytics_source", json!("amplitude")));
    // The event's own properties win over what is derived from Amplitude's fields.
    for (key, value) in derived {
        properties.entry(key).or_insert(value);
    }

    let (mut set, mut set_once) = person(source.get("user_properties"));
    for key in ON_PERSON {
        if let Some(value) = properties.get(key) {
            set.entry(key).or_insert(value.clone());
            if key.starts_with("$geoip_") {
                set_once.entry(key.replacen('$', "$initial_", 1)).or_insert(value.clone());
            }
        }
    }
    let uuid = event_id::from_source(source.get("uuid")).unwrap_or_else(|| match text(source.get("$insert_id")) {
        Some(insert_id) => event_id::derive(&json!(["amplitude $insert_id", insert_id])),
        None => event_id::derive(&json!(["amplitude", name, distinct_id, timestamp, properties, set, set_once])),
    });
    let mut event = json!({"uuid": uuid, "event": name, "distinct_id": distinct_id, "timestamp": timestamp, "properties": properties});
    if !set.is_empty() {
        event["$set"] = Value::Object(set);
    }
    if !set_once.is_empty() {
        event["$set_once"] = Value::Object(set_once);
    }
    let groups = groups::of_line(&source);
    Ok(Converted::Event(Event { json: event, user_id, device_id, timestamp, timed_by, groups }))
}

/// The event that links a device to its user, sent before the user's first event on it:
/// `$create_alias` as posthog-node's `alias()` sends it, with a uuid of the pair alone.
pub fn alias(user_id: &str, device_id: &str, timestamp: &str) -> Value {
    json!({
        "uuid": event_id::derive(&json!(["amplitude alias", user_id, device_id])),
        "event": "$create_alias",
        "distinct_id": user_id,
        "timestamp": timestamp,
        "properties": {"alias": device_id, "distinct_id": user_id},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(line: Value) -> Event {
        match convert(&line.to_string()).unwrap() {
            Converted::Event(e) => e,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn an_exported_event_becomes_a_posthog_event_field_by_field() {
        let e = event(json!({
            "event_type": "[Amplitude] Page Viewed", "user_id": "u-1", "device_id": "dev-1",
            "event_time": "2024-03-01 12:00:00.123456", "uuid": "0180BD2B-0A4A-7B66-A79D-4BBE5EC8D4C8",
            "$insert_id": "ins-1", "event_id": 7, "session_id": 1709294400000i64, "amplitude_id": 123,
            "event_properties": {"[Amplitude] Page URL": "https://ex.com/ü?x=1", "[Amplitude] Page Path": "/ü", "plan": "pro"},
            "user_properties": {"email": "u@ex.com", "initial_referrer": "google", "initial_utm_term": "EMPTY", "[Amplitude] Initial UTM Source": "ad"},
            "country": "Portugal", "city": "Lisboa", "region": null, "ip_address": "203.0.113.1", "os_name": "Chrome", "os_version": "120",
            "device_type": "Mac", "device_family": "Mac", "library": "amplitude-ts/2.0.0", "platform": "Web", "groups": {"company": ["acme"]},
            "language": "English", "dma": null, "idfa": null
        }));
        assert_eq!(e.json["event"], "$pageview");
        assert_eq!(e.json["distinct_id"], "u-1");
        assert_eq!(e.json["uuid"], "0180bd2b-0a4a-7b66-a79d-4bbe5ec8d4c8");
        assert_eq!(e.json["timestamp"], "2024-03-01T12:00:00.123456Z");
        let p = &e.json["properties"];
        assert_eq!(
            (&p["$current_url"], &p["$pathname"], &p["plan"]),
            (&json!("https://ex.com/ü?x=1"), &json!("/ü"), &json!("pro"))
        );
        assert_eq!(
            (&p["$geoip_country_name"], &p["$geoip_city_name"], &p["$ip"]),
            (&json!("Portugal"), &json!("Lisboa"), &json!("203.0.113.1"))
        );
        assert!(p.get("$geoip_subdivision_1_name").is_none(), "a null is no value");
        assert_eq!(
            (&p["$browser"], &p["$os"], &p["$device_type"]),
            (&json!("Chrome"), &json!("Mac OS X"), &json!("Desktop"))
        );
        assert_eq!(
            (&p["$lib"], &p["$lib_version"], &p["$browser_language"]),
            (&json!("amplitude-ts"), &json!("2.0.0"), &json!("English"))
        );
        assert_eq!((&p["$device_id"], &p["$amplitude_session_id"]), (&json!("dev-1"), &json!(1709294400000i64)));
        assert_eq!(p["$session_id"].as_str().map(|s| &s[..15]), Some("018df9e2-b200-7"));
        assert_eq!(
            (&p["$amplitude_event_id"], &p["$amplitude_insert_id"], &p["$amplitude_id"], &p["$amplitude_user_id"]),
            (&json!(7), &json!("ins-1"), &json!(123), &json!("u-1"))
        );
        assert_eq!((&p["$groups"], &p["analytics_source"]), (&json!({"company": "acme"}), &json!("amplitude")));
        assert_eq!(e.json["$set"]["email"], "u@ex.com");
        assert_eq!(
            (&e.json["$set"]["$browser"], &e.json["$set"]["$geoip_city_name"]),
            (&json!("Chrome"), &json!("Lisboa"))
        );
        assert_eq!(
            e.json["$set_once"],
            json!({"$initial_referrer": "google", "[Amplitude] Initial UTM Source": "ad", "$initial_geoip_country_name": "Portugal", "$initial_geoip_city_name": "Lisboa"})
        );
        assert_eq!(
            (e.user_id.as_deref(), e.device_id.as_deref(), e.timed_by),
            (Some("u-1"), Some("dev-1"), Time::Event)
        );
        assert_eq!(e.groups.len(), 1);
    }

    #[test]
    fn names_ids_sessions_and_uuids_follow_the_rules() {
        let anonymous = event(
            json!({"event_type": "[Amplitude] Element Clicked", "device_id": "dev-9", "event_time": "2024-03-01 12:00:00", "$insert_id": "i-9", "session_id": -1}),
        );
        assert_eq!(
            (&anonymous.json["event"], &anonymous.json["distinct_id"]),
            (&json!("$autocapture"), &json!("dev-9"))
        );
        assert!(anonymous.json["properties"].get("$session_id").is_none());
        // Without Amplitude's uuid, the same insert id gives the same uuid on every run.
        let again = event(
            json!({"event_type": "x", "device_id": "other", "event_time": "2024-03-02 00:00:00", "$insert_id": "i-9"}),
        );
        assert_eq!(anonymous.json["uuid"], again.json["uuid"]);
        let plain = json!({"event_type": "x", "user_id": "u", "event_time": "2024-03-01 00:00:00", "event_properties": {"a": 1}});
        assert_eq!(event(plain.clone()).json["uuid"], event(plain).json["uuid"]);
        assert_eq!(
            convert(&json!({"event_type": "session_start", "user_id": "u"}).to_string()),
            Ok(Converted::Skipped)
        );
        assert_eq!(
            event(json!({"event_type": "session_end", "user_id": "u", "event_time": "2024-03-01 00:00:00"})).json
                ["event"],
            "session_end"
        );
        // An event's own property wins over one made of Amplitude's fields.
        let own = event(
            json!({"event_type": "x", "user_id": "u", "event_time": "2024-03-01 00:00:00", "os_name": "ios", "event_properties": {"$os": "visionOS"}}),
        );
        assert_eq!(own.json["properties"]["$os"], "visionOS");
    }

    #[test]
    fn a_line_without_event_time_takes_the_client_then_the_server_time() {
        let e = event(
            json!({"event_type": "x", "user_id": "u", "event_time": null, "client_event_time": "2024-03-01 01:00:00.5"}),
        );
        assert_eq!((e.timestamp.as_str(), e.timed_by), ("2024-03-01T01:00:00.500Z", Time::Client));
        let e = event(json!({"event_type": "x", "user_id": "u", "server_received_time": "2024-03-01 02:00:00"}));
        assert_eq!(e.timed_by, Time::Server);
    }

    #[test]
    fn amplitudes_groupidentify_lines_are_group_updates() {
        let line = json!({"event_type": "$groupidentify", "user_id": null, "device_id": null, "event_time": "2024-03-01 00:00:00",
            "groups": {"company": "acme"}, "group_properties": {"company": {"acme": {"plan": "pro"}}}});
        let Ok(Converted::Groups { groups, distinct_id, timestamp }) = convert(&line.to_string()) else { panic!() };
        assert_eq!((groups.len(), distinct_id, timestamp.as_str()), (1, None, "2024-03-01T00:00:00.000Z"));
    }

    #[test]
    fn lines_that_cannot_be_events_say_why() {
        let cases = [
            ("{\"event_type\": ", "not a JSON object"),
            ("[1]", "not a JSON object"),
            ("{\"user_id\": \"u\", \"event_time\": \"2024-03-01 00:00:00\"}", "no event_type"),
            ("{\"event_type\": \"x\", \"event_time\": \"2024-03-01 00:00:00\"}", "neither user_id nor device_id"),
            ("{\"event_type\": \"x\", \"user_id\": \"u\"}", "no event_time, client_event_time or server_received_time"),
            (
                "{\"event_type\": \"x\", \"user_id\": \"u\", \"event_time\": \"yesterday\"}",
                "event_time \"yesterday\" is not a time",
            ),
        ];
        for (line, why) in cases {
            let error = convert(line).unwrap_err().to_string();
            assert!(error.contains(why), "{line}: {error}");
        }
    }

    #[test]
    fn an_alias_links_a_device_to_its_user_with_a_uuid_of_the_pair() {
        let a = alias("u-1", "dev-1", "2024-03-01T12:00:00.123455Z");
        assert_eq!(
            (&a["event"], &a["distinct_id"], &a["properties"]["alias"]),
            (&json!("$create_alias"), &json!("u-1"), &json!("dev-1"))
        );
        assert_eq!(a["uuid"], alias("u-1", "dev-1", "2030-01-01T00:00:00Z")["uuid"]);
        assert_ne!(a["uuid"], alias("u-1", "dev-2", "2024-03-01T12:00:00Z")["uuid"]);
    }
}

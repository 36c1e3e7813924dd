//! One line of an Amplitude export into a PostHog event, as PostHog's guide to moving
//! from Amplitude does it: the event's name kept (Amplitude's page views and element
//! interactions become `$pageview` and `$autocapture`), user_id else device_id as the
//! distinct_id, `user_properties` as `$set` (the `initial_` ones as `$set_once`), and
//! Amplitude's device, location and library fields under PostHog's property names.
//! The fields of an exported event are those Amplitude's Export API documents
//! (`event_type`, `event_time`, `user_id`, `device_id`, `event_properties`,
//! `user_properties`, `uuid`, `$insert_id`, `session_id`, `os_name`, `country`, ...).

use migrator3000::event_id;
use serde_json::{json, Map, Value};

/// What a line becomes.
#[derive(Debug, PartialEq)]
pub enum Converted {
    Event(Event),
    /// Amplitude's own session markers: nothing of them goes to PostHog.
    Skipped,
}

#[derive(Debug, PartialEq)]
pub struct Event {
    /// The PostHog event, as a captured event's JSON.
    pub json: Value,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    /// `event_time` as RFC 3339 UTC with microseconds.
    pub timestamp: String,
}

/// Amplitude fields carried under PostHog's names (top level of the export).
const RENAMED: [(&str, &str); 14] = [
    ("ip_address", "$ip"),
    ("country", "$geoip_country_name"),
    ("region", "$geoip_subdivision_1_name"),
    ("city", "$geoip_city_name"),
    ("location_lat", "$geoip_latitude"),
    ("location_lng", "$geoip_longitude"),
    ("os_name", "$os"),
    ("os_version", "$os_version"),
    ("device_type", "$device_type"),
    ("device_model", "$device_model"),
    ("device_manufacturer", "$device_manufacturer"),
    ("library", "$lib"),
    ("version_name", "$app_version"),
    ("language", "$locale"),
];

/// Amplitude's identifiers, kept under names that say where they came from.
const KEPT: [(&str, &str); 7] = [
    ("device_id", "$device_id"),
    ("session_id", "$session_id"),
    ("event_id", "amplitude_event_id"),
    ("$insert_id", "amplitude_insert_id"),
    ("user_id", "amplitude_user_id"),
    ("amplitude_id", "amplitude_id"),
    ("platform", "amplitude_platform"),
];

/// Amplitude's page properties (Browser SDK) under PostHog's names.
const PAGE: [(&str, &str); 6] = [
    ("[Amplitude] Page URL", "$current_url"),
    ("[Amplitude] Page Location", "$current_url"),
    ("[Amplitude] Page Path", "$pathname"),
    ("[Amplitude] Page Domain", "$host"),
    ("[Amplitude] Page Title", "$title"),
    ("[Amplitude] Page Referrer", "$referrer"),
];

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `2024-03-01 12:00:00.123456` (Amplitude's UTC) as `2024-03-01T12:00:00.123456Z`.
fn rfc3339(event_time: &str) -> Option<String> {
    let at = migrator3000::timestamp::parse_iso(event_time)?;
    Some(migrator3000::timestamp::format(at))
}

pub fn convert(line: &str) -> Result<Converted, String> {
    let Ok(Value::Object(source)) = serde_json::from_str::<Value>(line) else {
        return Err("the line is not a JSON object".into());
    };
    let name = text(source.get("event_type")).ok_or("the event has no event_type")?;
    let name = match name.as_str() {
        "session_start" | "session_end" => return Ok(Converted::Skipped),
        "[Amplitude] Page Viewed" => "$pageview".to_string(),
        "[Amplitude] Element Clicked" | "[Amplitude] Element Changed" => "$autocapture".to_string(),
        _ => name,
    };
    let user_id = text(source.get("user_id"));
    let device_id = text(source.get("device_id"));
    let distinct_id =
        user_id.clone().or_else(|| device_id.clone()).ok_or("the event has neither user_id nor device_id")?;
    let event_time = text(source.get("event_time")).ok_or("the event has no event_time")?;
    let timestamp = rfc3339(&event_time).ok_or_else(|| format!("event_time \"{event_time}\" is not a time"))?;

    let mut properties = match source.get("event_properties") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    for (from, to) in PAGE {
        if let Some(value) = properties.get(from).cloned() {
            properties.entry(to).or_insert(value);
        }
    }
    for (from, to) in RENAMED.iter().chain(KEPT.iter()) {
        if let Some(value) = source.get(*from).filter(|v| !v.is_null() && *v != "") {
            let value =
                if *to == "$session_id" { Value::String(text(Some(value)).unwrap_or_default()) } else { value.clone() };
            properties.entry(*to).or_insert(value);
        }
    }
    // Amplitude's groups (`{"company": ["acme"]}` or `{"company": "acme"}`): the first key of each.
    if let Some(Value::Object(groups)) = source.get("groups") {
        let groups: Map<String, Value> = groups
            .iter()
            .filter_map(|(kind, keys)| {
                let key = match keys {
                    Value::Array(keys) => keys.first().and_then(|k| text(Some(k))),
                    other => text(Some(other)),
                }?;
                Some((kind.clone(), Value::String(key)))
            })
            .collect();
        if !groups.is_empty() {
            properties.insert("$groups".into(), Value::Object(groups));
        }
    }
    let (mut set, mut set_once) = (Map::new(), Map::new());
    if let Some(Value::Object(user_properties)) = source.get("user_properties") {
        for (key, value) in user_properties {
            let initial = key.starts_with("initial_") || key.starts_with("[Amplitude] Initial");
            if initial { &mut set_once } else { &mut set }.insert(key.clone(), value.clone());
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
    Ok(Converted::Event(Event { json: event, user_id, device_id, timestamp }))
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
            Converted::Skipped => panic!("skipped"),
        }
    }

    #[test]
    fn an_exported_event_becomes_a_posthog_event_field_by_field() {
        let e = event(json!({
            "event_type": "[Amplitude] Page Viewed", "user_id": "u-1", "device_id": "dev-1",
            "event_time": "2024-03-01 12:00:00.123456", "uuid": "0180BD2B-0A4A-7B66-A79D-4BBE5EC8D4C8",
            "$insert_id": "ins-1", "event_id": 7, "session_id": 1709294400000i64, "amplitude_id": 123,
            "event_properties": {"[Amplitude] Page URL": "https://ex.com/ü?x=1", "[Amplitude] Page Path": "/ü", "plan": "pro"},
            "user_properties": {"email": "u@ex.com", "initial_referrer": "google", "[Amplitude] Initial UTM Source": "ad"},
            "country": "Portugal", "city": "Lisboa", "ip_address": "203.0.113.1", "os_name": "Chrome", "os_version": "120",
            "device_type": "Mac", "library": "amplitude-ts/2.0.0", "platform": "Web", "groups": {"company": ["acme"]}
        }));
        assert_eq!(e.json["event"], "$pageview");
        assert_eq!(e.json["distinct_id"], "u-1");
        assert_eq!(e.json["uuid"], "0180bd2b-0a4a-7b66-a79d-4bbe5ec8d4c8");
        assert_eq!(e.json["timestamp"], "2024-03-01T12:00:00.123456Z");
        let p = &e.json["properties"];
        assert_eq!(
            (p["$current_url"].as_str(), p["$pathname"].as_str(), p["plan"].as_str()),
            (Some("https://ex.com/ü?x=1"), Some("/ü"), Some("pro"))
        );
        assert_eq!(
            (p["$geoip_country_name"].as_str(), p["$geoip_city_name"].as_str(), p["$ip"].as_str()),
            (Some("Portugal"), Some("Lisboa"), Some("203.0.113.1"))
        );
        assert_eq!(
            (p["$os"].as_str(), p["$device_type"].as_str(), p["$lib"].as_str()),
            (Some("Chrome"), Some("Mac"), Some("amplitude-ts/2.0.0"))
        );
        assert_eq!((p["$device_id"].as_str(), p["$session_id"].as_str()), (Some("dev-1"), Some("1709294400000")));
        assert_eq!(
            (p["amplitude_event_id"].as_i64(), p["amplitude_insert_id"].as_str(), p["amplitude_id"].as_i64()),
            (Some(7), Some("ins-1"), Some(123))
        );
        assert_eq!(p["$groups"], json!({"company": "acme"}));
        assert_eq!(e.json["$set"], json!({"email": "u@ex.com"}));
        assert_eq!(e.json["$set_once"], json!({"initial_referrer": "google", "[Amplitude] Initial UTM Source": "ad"}));
        assert_eq!((e.user_id.as_deref(), e.device_id.as_deref()), (Some("u-1"), Some("dev-1")));
    }

    #[test]
    fn names_ids_and_uuids_follow_the_rules() {
        let anonymous = event(
            json!({"event_type": "[Amplitude] Element Clicked", "device_id": "dev-9", "event_time": "2024-03-01 12:00:00", "$insert_id": "i-9"}),
        );
        assert_eq!(
            (anonymous.json["event"].as_str(), anonymous.json["distinct_id"].as_str()),
            (Some("$autocapture"), Some("dev-9"))
        );
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
    }

    #[test]
    fn lines_that_cannot_be_events_say_why() {
        let cases = [
            ("{\"event_type\": ", "not a JSON object"),
            ("[1]", "not a JSON object"),
            ("{\"user_id\": \"u\", \"event_time\": \"2024-03-01 00:00:00\"}", "no event_type"),
            ("{\"event_type\": \"x\", \"event_time\": \"2024-03-01 00:00:00\"}", "neither user_id nor device_id"),
            ("{\"event_type\": \"x\", \"user_id\": \"u\"}", "no event_time"),
            ("{\"event_type\": \"x\", \"user_id\": \"u\", \"event_time\": \"yesterday\"}", "is not a time"),
        ];
        for (line, why) in cases {
            let error = convert(line).unwrap_err();
            assert!(error.contains(why), "{line}: {error}");
        }
    }

    #[test]
    fn an_alias_links_a_device_to_its_user_with_a_uuid_of_the_pair() {
        let a = alias("u-1", "dev-1", "2024-03-01T12:00:00.123455Z");
        assert_eq!(
            (a["event"].as_str(), a["distinct_id"].as_str(), a["properties"]["alias"].as_str()),
            (Some("$create_alias"), Some("u-1"), Some("dev-1"))
        );
        assert_eq!(a["uuid"], alias("u-1", "dev-1", "2030-01-01T00:00:00Z")["uuid"]);
        assert_ne!(a["uuid"], alias("u-1", "dev-2", "2024-03-01T12:00:00Z")["uuid"]);
    }
}

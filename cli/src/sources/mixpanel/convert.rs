//! One line of Mixpanel's raw event export (`{"event": ..., "properties": {"time": ...,
//! "distinct_id": ..., "$insert_id": ..., ...}}`) as a PostHog event, and one line of an
//! Engage (people) export (`{"$distinct_id": ..., "$properties": {...}}`) as a `$set`.
//! README "What each Mixpanel field becomes" says why each rule is what it is.

use migrator3000::{event_id, timestamp};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::countries;

/// The namespace PostHog's importer derives an event's uuid from its `$insert_id` in
/// (the 16 bytes of `posthog_mixpanel`): the same line gets the same uuid whichever of
/// the two imported it, so the destination keeps one.
pub const INSERT_ID_NAMESPACE: Uuid = Uuid::from_bytes(*b"posthog_mixpanel");

/// A `time` above this is in milliseconds (PostHog's importer's cut-off).
const MILLIS_ABOVE: f64 = 10_000_000_000.0;

/// Mixpanel's names with a PostHog equivalent: renamed.
pub const RENAMED: &[(&str, &str)] = &[
    ("$city", "$geoip_city_name"),
    ("$region", "$geoip_subdivision_1_name"),
    ("mp_country_code", "$geoip_country_code"),
    ("mp_lib", "$lib"),
    ("$manufacturer", "$device_manufacturer"),
    ("$model", "$device_model"),
    ("$carrier", "$network_carrier"),
    ("$wifi", "$network_wifi"),
    ("$app_version_string", "$app_version"),
    ("$app_build_number", "$app_build"),
    ("current_page_title", "title"),
    ("current_domain", "$host"),
    ("current_url_path", "$pathname"),
];

/// Mixpanel's own bookkeeping, not carried over (besides every `mp_` and `$mp_` name).
pub const DROPPED: &[&str] = &["$geo_source", "time", "distinct_id", "$user_id", "$insert_id"];

/// Properties that also describe the person now: copied into `$set`.
pub const PERSON_SET: &[&str] = &[
    "$browser",
    "$browser_version",
    "$os",
    "$os_version",
    "$device",
    "$device_type",
    "$device_model",
    "$device_manufacturer",
    "$app_version",
    "$current_url",
    "$referrer",
    "$referring_domain",
    "$geoip_city_name",
    "$geoip_subdivision_1_name",
    "$geoip_country_code",
    "$geoip_country_name",
];

/// First-touch properties: copied into `$set_once`.
pub const PERSON_SET_ONCE: &[&str] = &[
    "$initial_referrer",
    "$initial_referring_domain",
    "$initial_utm_source",
    "$initial_utm_medium",
    "$initial_utm_campaign",
    "$initial_utm_content",
    "$initial_utm_term",
];

/// Mixpanel's event names with a PostHog meaning.
pub fn event_name(name: &str) -> &str {
    match name {
        "$mp_web_page_view" => "$pageview",
        "$mp_page_leave" => "$pageleave",
        other => other,
    }
}

/// A converted line.
#[derive(Debug)]
pub enum Converted {
    Event(Event),
    /// Mixpanel's own record of an identity (`$identify`, `$create_alias`, `$merge`): no
    /// event, only the link it states, if any.
    Identity {
        link: Option<(String, String)>,
        timestamp: String,
    },
}

#[derive(Debug)]
pub struct Event {
    pub json: Value,
    /// (user, device) the line says are one person.
    pub link: Option<(String, String)>,
    pub timestamp: String,
}

/// A non-empty id: a string, or a number as its text.
fn id(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Mixpanel's anonymous ids: `$device:...`, or an uppercase UUID as its SDKs make them
/// (digits alone are a user's id, not a device's).
pub fn looks_anonymous(id: &str) -> bool {
    id.starts_with("$device:")
        || (id.chars().any(|c| c.is_ascii_uppercase())
            && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-'))
}

/// The event's person: `distinct_id`, except that an anonymous one gives way to
/// `$distinct_id_before_identity`; without either, `$user_id`, then `$device_id`.
pub fn distinct_id(properties: &Map<String, Value>) -> Option<String> {
    let given = id(properties.get("distinct_id"));
    let before = id(properties.get("$distinct_id_before_identity"));
    let resolved = match (given, before) {
        (Some(given), Some(before)) if looks_anonymous(&given) => Some(before),
        (Some(given), _) => Some(given),
        (None, before) => before,
    };
    resolved.or_else(|| id(properties.get("$user_id"))).or_else(|| id(properties.get("$device_id")))
}

/// The time of `properties.time`: seconds, or milliseconds (kept to the millisecond).
pub fn time(properties: &Map<String, Value>) -> Option<String> {
    let number = properties.get("time")?.as_f64()?;
    let millis = if number.abs() > MILLIS_ABOVE { number } else { number * 1000.0 };
    timestamp::from_millis(millis).map(timestamp::format)
}

/// The uuid of a line: from its `$insert_id` as PostHog's importer derives it, else from
/// its content.
pub fn uuid(line: &Value) -> String {
    match line["properties"].get("$insert_id").and_then(Value::as_str) {
        Some(insert_id) => Uuid::new_v5(&INSERT_ID_NAMESPACE, insert_id.as_bytes()).hyphenated().to_string(),
        None => event_id::derive(&json!(["mixpanel", line])),
    }
}

/// The link a line states between a user and a device, under either ID merge.
fn link(properties: &Map<String, Value>) -> Option<(String, String)> {
    // Simplified ID merge: the SDK sends both on every event after login.
    if let (Some(user), Some(device)) = (id(properties.get("$user_id")), id(properties.get("$device_id"))) {
        return (user != device).then_some((user, device));
    }
    // Original ID merge: an id rewritten by identity resolution names the same person
    // as the one it was sent with; the anonymous-looking one is the device.
    let (given, before) = (id(properties.get("distinct_id"))?, id(properties.get("$distinct_id_before_identity"))?);
    if given == before {
        return None;
    }
    Some(if looks_anonymous(&given) { (before, given) } else { (given, before) })
}

/// Why a line of an export is no event (or no profile): it is skipped, named with its
/// file and number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("the line is not a JSON object")]
    NotAnObject,
    #[error("no event name (`event`)")]
    NoEventName,
    #[error("no `properties` object")]
    NoProperties,
    #[error("no usable `properties.time`")]
    NoTime,
    #[error("no distinct_id, $distinct_id_before_identity, $user_id or $device_id")]
    NoDistinctId,
    /// A profile line without its person's id.
    #[error("no $distinct_id")]
    NoProfileId,
}

pub fn convert(text: &str) -> Result<Converted, LineError> {
    let line: Value = serde_json::from_str(text).map_err(|_| LineError::NotAnObject)?;
    let Some(name) = line.get("event").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
        return Err(LineError::NoEventName);
    };
    let Some(source) = line.get("properties").and_then(Value::as_object) else {
        return Err(LineError::NoProperties);
    };
    let Some(timestamp) = time(source) else {
        return Err(LineError::NoTime);
    };
    match name {
        "$identify" => {
            let pair = (id(source.get("$identified_id")), id(source.get("$anon_distinct_id")));
            let link = match pair {
                (Some(user), Some(device)) if user != device => Some((user, device)),
                _ => None,
            };
            return Ok(Converted::Identity { link, timestamp });
        }
        "$create_alias" => {
            let pair = (id(source.get("alias")), id(source.get("distinct_id")));
            let link = match pair {
                (Some(user), Some(device)) if user != device => Some((user, device)),
                _ => None,
            };
            return Ok(Converted::Identity { link, timestamp });
        }
        "$merge" => return Ok(Converted::Identity { link: None, timestamp }),
        _ => {}
    }
    let Some(distinct_id) = distinct_id(source) else {
        return Err(LineError::NoDistinctId);
    };
    let mut properties = Map::new();
    for (key, value) in source {
        if DROPPED.contains(&key.as_str()) || value.is_null() {
            continue;
        }
        let key = RENAMED.iter().find(|(from, _)| *from == key).map_or(key.as_str(), |(_, to)| *to);
        if key.starts_with("mp_") || key.starts_with("$mp_") {
            continue;
        }
        properties.insert(key.to_string(), value.clone());
    }
    if let Some(name) = properties.get("$geoip_country_code").and_then(Value::as_str).and_then(countries::name) {
        properties.insert("$geoip_country_name".into(), json!(name));
    }
    for (from, to) in [("$user_id", "$mixpanel_user_id"), ("$device_id", "$mixpanel_device_id")] {
        if let Some(value) = id(source.get(from)) {
            properties.insert(to.into(), json!(value));
        }
    }
    if let Some(insert_id) = id(source.get("$insert_id")) {
        properties.insert("$mixpanel_insert_id".into(), json!(insert_id));
    }
    let pick = |keys: &[&str]| -> Map<String, Value> {
        keys.iter().filter_map(|k| properties.get(*k).map(|v| (k.to_string(), v.clone()))).collect()
    };
    let (set, set_once) = (pick(PERSON_SET), pick(PERSON_SET_ONCE));
    properties.insert("analytics_source".into(), json!("mixpanel"));
    properties.insert("historical_migration".into(), json!(true));
    // The location is the export's: the destination must not replace it with the
    // location of the machine the migration runs on.
    properties.insert("$geoip_disable".into(), json!(true));
    let mut event = json!({
        "uuid": uuid(&line),
        "event": event_name(name),
        "distinct_id": distinct_id,
        "timestamp": timestamp,
        "properties": properties,
    });
    if !set.is_empty() {
        event["$set"] = Value::Object(set);
    }
    if !set_once.is_empty() {
        event["$set_once"] = Value::Object(set_once);
    }
    Ok(Converted::Event(Event { json: event, link: link(source), timestamp }))
}

/// The link event of a device to its user, before the user's first event on it; its
/// uuid derived from the pair, so a resend is the same event.
pub fn alias(user: &str, device: &str, timestamp: &str) -> Value {
    json!({
        "uuid": event_id::derive(&json!(["mixpanel alias", user, device])),
        "event": "$create_alias",
        "distinct_id": user,
        "timestamp": timestamp,
        "properties": {"alias": device, "distinct_id": user, "analytics_source": "mixpanel"},
    })
}

/// Mixpanel's reserved profile properties with a PostHog name.
pub const PROFILE_RENAMED: &[(&str, &str)] = &[
    ("$email", "email"),
    ("$name", "name"),
    ("$first_name", "first_name"),
    ("$last_name", "last_name"),
    ("$phone", "phone"),
    ("$avatar", "avatar"),
    ("$created", "created_at"),
    ("$city", "$geoip_city_name"),
    ("$region", "$geoip_subdivision_1_name"),
    ("$country_code", "$geoip_country_code"),
    ("$timezone", "$geoip_time_zone"),
    ("$last_seen", "mixpanel_last_seen"),
];

/// Profile properties that are Mixpanel's bookkeeping (besides every `$mp_` name).
pub const PROFILE_DROPPED: &[&str] = &["$predict_grade", "$predict_score", "$bucket", "$distinct_id"];

/// One profile line as a `$set` event creating (or updating) its person; timed at its
/// `$last_seen`, else `$created`, else `now`.
pub fn profile(text: &str, now: &str) -> Result<Value, LineError> {
    let line: Value = serde_json::from_str(text).map_err(|_| LineError::NotAnObject)?;
    let Some(distinct_id) = id(line.get("$distinct_id")) else {
        return Err(LineError::NoProfileId);
    };
    let empty = Map::new();
    let source = line.get("$properties").and_then(Value::as_object).unwrap_or(&empty);
    let mut set = Map::new();
    for (key, value) in source {
        if PROFILE_DROPPED.contains(&key.as_str()) || key.starts_with("$mp_") || value.is_null() {
            continue;
        }
        let key = PROFILE_RENAMED.iter().find(|(from, _)| *from == key).map_or(key.as_str(), |(_, to)| *to);
        set.insert(key.to_string(), value.clone());
    }
    if let Some(name) = set.get("$geoip_country_code").and_then(Value::as_str).and_then(countries::name) {
        set.insert("$geoip_country_name".into(), json!(name));
    }
    let at = ["$last_seen", "$created"]
        .iter()
        .find_map(|k| source.get(*k).and_then(Value::as_str).and_then(timestamp::parse_iso))
        .map_or_else(|| now.to_string(), timestamp::format);
    Ok(json!({
        "uuid": event_id::derive(&json!(["mixpanel profile", distinct_id, source])),
        "event": "$set",
        "distinct_id": distinct_id,
        "timestamp": at,
        "properties": {"$set": set.clone(), "analytics_source": "mixpanel", "historical_migration": true, "$geoip_disable": true},
        "$set": set,
    }))
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
    fn ids_times_and_uuids() {
        let seconds =
            event(json!({"event": "a", "properties": {"time": 1_709_294_400, "distinct_id": "u", "$insert_id": "i1"}}));
        let millis = event(
            json!({"event": "a", "properties": {"time": 1_709_294_400_123i64, "distinct_id": "u", "$insert_id": "i1"}}),
        );
        assert_eq!(seconds.timestamp, "2024-03-01T12:00:00.000Z");
        assert_eq!(millis.timestamp, "2024-03-01T12:00:00.123Z");
        assert_eq!(seconds.json["uuid"], millis.json["uuid"], "the uuid is the $insert_id's");
        let plain = json!({"event": "a", "properties": {"time": 1, "distinct_id": "u"}});
        assert_eq!(event(plain.clone()).json["uuid"], event(plain).json["uuid"]);
        assert!(convert("{\"event\":\"a\",\"properties\":{\"time\":1}}")
            .unwrap_err()
            .to_string()
            .contains("no distinct_id"));
        assert!(convert("[1]").is_err());
        let anon = json!({"event": "a", "properties": {"time": 1, "distinct_id": "$device:abc", "$distinct_id_before_identity": "x"}});
        assert_eq!(event(anon).json["distinct_id"], "x");
    }

    #[test]
    fn identity_events_state_links_and_send_nothing() {
        let identify = json!({"event": "$identify", "properties": {"time": 1, "distinct_id": "u", "$identified_id": "u", "$anon_distinct_id": "D-1"}});
        match convert(&identify.to_string()).unwrap() {
            Converted::Identity { link, .. } => assert_eq!(link, Some(("u".into(), "D-1".into()))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_profile_is_a_set_with_posthog_names() {
        let p = profile(
            &json!({"$distinct_id": 42, "$properties": {"$email": "a@b.c", "$created": "2023-01-02T03:04:05", "$country_code": "PT", "$mp_x": 1, "plan": "pro"}}).to_string(),
            "2024-01-01T00:00:00.000Z",
        )
        .unwrap();
        assert_eq!(p["distinct_id"], "42");
        assert_eq!(p["timestamp"], "2023-01-02T03:04:05.000Z");
        assert_eq!(
            p["$set"],
            json!({"email": "a@b.c", "created_at": "2023-01-02T03:04:05", "$geoip_country_code": "PT", "$geoip_country_name": "Portugal", "plan": "pro"})
        );
    }
}

//! One line of a file into a PostHog-shaped event, or why not. Two shapes are read:
//! PostHog's "captured" events (`event`, `distinct_id`, `properties`, `timestamp`,
//! optional `uuid`, `$set`, `$set_once`), and the lines of PostHog's S3 batch export in
//! JSON lines (`uuid`, `event`, `properties`, `distinct_id`, `timestamp`,
//! `elements_chain`, `set`, `set_once`, and `person_properties`, `person_id`, `team_id`,
//! `_inserted_at`, `created_at`, which are left out: the destination derives persons
//! from the events). Properties (and `set`, `set_once`) may be an object or a JSON
//! text of one, as a warehouse dump often writes them.

use migrator3000::timestamp;
use migrator3000::transform::MAX_EVENT_BYTES;
use serde_json::{Map, Value};

/// An event ready for the core's transform (which keeps a valid `uuid`, and derives one
/// from the content otherwise), and its time as written in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub json: String,
    pub timestamp: String,
}

/// Why a line is no event: it is skipped, named with its file and number, and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("the line is {bytes} bytes, over the {} KiB capture takes for an event", MAX_EVENT_BYTES / 1024)]
    TooLarge { bytes: usize },
    #[error("the line is not a JSON object")]
    NotAnObject,
    #[error("no event name (\"event\")")]
    NoEventName,
    #[error("\"properties\" is not an object")]
    PropertiesNotAnObject,
    #[error("no distinct_id")]
    NoDistinctId,
    #[error("no timestamp it can read (\"timestamp\", ISO 8601)")]
    NoTimestamp,
}

/// An object, or a JSON text of one; `None` for null, empty or anything else.
fn object(value: Option<&Value>) -> Result<Option<Map<String, Value>>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map.clone())),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            Ok(Value::Null) => Ok(None),
            _ => Err(()),
        },
        Some(_) => Err(()),
    }
}

fn distinct_id(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(text)) if !text.trim().is_empty() => Some(text.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// The line as an event, or why it cannot be one.
pub fn convert(line: &str) -> Result<Event, LineError> {
    if line.len() > MAX_EVENT_BYTES {
        return Err(LineError::TooLarge { bytes: line.len() });
    }
    let Ok(Value::Object(source)) = serde_json::from_str::<Value>(line) else {
        return Err(LineError::NotAnObject);
    };
    let Some(name) = source.get("event").and_then(Value::as_str).filter(|n| !n.trim().is_empty()) else {
        return Err(LineError::NoEventName);
    };
    let mut properties =
        object(source.get("properties")).map_err(|_| LineError::PropertiesNotAnObject)?.unwrap_or_default();
    let Some(distinct_id) =
        distinct_id(source.get("distinct_id")).or_else(|| distinct_id(properties.get("distinct_id")))
    else {
        return Err(LineError::NoDistinctId);
    };
    let at = match source.get("timestamp") {
        Some(Value::String(text)) => timestamp::parse_iso(text.trim()),
        _ => None,
    };
    let Some(at) = at else {
        return Err(LineError::NoTimestamp);
    };
    let mut event = Map::new();
    event.insert("event".into(), Value::String(name.to_string()));
    event.insert("distinct_id".into(), Value::String(distinct_id));
    event.insert("timestamp".into(), Value::String(timestamp::format(at)));
    if let Some(uuid) = source.get("uuid").filter(|u| u.is_string()) {
        event.insert("uuid".into(), uuid.clone());
    }
    for (key, column) in [("$set", "set"), ("$set_once", "set_once")] {
        let value = match object(source.get(key)) {
            Ok(Some(map)) => Some(map),
            _ => object(source.get(column)).ok().flatten(),
        };
        if let Some(map) = value.filter(|m| !m.is_empty()) {
            event.insert(key.into(), Value::Object(map));
        }
    }
    if let Some(chain) = source.get("elements_chain").and_then(Value::as_str).filter(|c| !c.is_empty()) {
        properties.entry("$elements_chain").or_insert_with(|| Value::String(chain.to_string()));
    }
    event.insert("properties".into(), Value::Object(properties));
    Ok(Event { json: Value::Object(event).to_string(), timestamp: timestamp::format(at) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn converted(line: Value) -> Value {
        serde_json::from_str(&convert(&line.to_string()).unwrap().json).unwrap()
    }

    #[test]
    fn a_captured_event_keeps_its_fields() {
        let event = converted(json!({
            "event": "$pageview", "distinct_id": "u1", "timestamp": "2024-03-01T10:00:00.123456Z",
            "uuid": "0190a0b1-0000-7000-8000-000000000001",
            "properties": {"$current_url": "https://example.com/"}, "$set": {"email": "a@example.com"},
            "$set_once": {"$initial_referrer": "$direct"}, "sent_at": "2024-03-01T10:00:01Z",
        }));
        assert_eq!(event["uuid"], "0190a0b1-0000-7000-8000-000000000001");
        assert_eq!(event["properties"]["$current_url"], "https://example.com/");
        assert_eq!(event["$set"]["email"], "a@example.com");
        assert_eq!(event["$set_once"]["$initial_referrer"], "$direct");
        assert!(event["timestamp"].as_str().unwrap().starts_with("2024-03-01"));
        assert!(event.get("sent_at").is_none());
    }

    #[test]
    fn a_batch_export_line_gives_its_set_columns_and_elements_and_drops_the_person() {
        let event = converted(json!({
            "uuid": "0190a0b1-0000-7000-8000-000000000002", "event": "$autocapture",
            "properties": "{\"$browser\":\"Chrome\"}", "distinct_id": "u2", "team_id": 2,
            "timestamp": "2024-03-01 10:00:00.5+00:00", "_inserted_at": "2024-03-01T10:00:03Z",
            "created_at": "2024-03-01T10:00:02Z", "elements_chain": "button:text=\"Buy\"",
            "set": {"plan": "pro"}, "set_once": null, "person_properties": {"email": "x"}, "person_id": "p",
        }));
        assert_eq!(event["properties"]["$browser"], "Chrome");
        assert_eq!(event["properties"]["$elements_chain"], "button:text=\"Buy\"");
        assert_eq!(event["$set"], json!({"plan": "pro"}));
        for gone in ["$set_once", "person_properties", "person_id", "team_id", "_inserted_at", "created_at"] {
            assert!(event.get(gone).is_none(), "{gone}");
        }
    }

    #[test]
    fn lines_that_cannot_be_events_say_why() {
        let cases = [
            ("{not json".to_string(), "not a JSON object"),
            ("[1]".into(), "not a JSON object"),
            (json!({"event": "x", "timestamp": "2024-03-01T00:00:00Z"}).to_string(), "no distinct_id"),
            (json!({"event": "x", "distinct_id": " ", "timestamp": "2024-03-01T00:00:00Z"}).to_string(), "no distinct_id"),
            (json!({"distinct_id": "u", "timestamp": "2024-03-01T00:00:00Z"}).to_string(), "no event name"),
            (json!({"event": "x", "distinct_id": "u"}).to_string(), "no timestamp"),
            (json!({"event": "x", "distinct_id": "u", "timestamp": "2024-03-01T00:00:00Z", "properties": 3}).to_string(), "not an object"),
            (
                json!({"event": "x", "distinct_id": "u", "timestamp": "2024-03-01T00:00:00Z", "properties": {"big": "a".repeat(MAX_EVENT_BYTES)}}).to_string(),
                "bytes, over the 900 KiB",
            ),
        ];
        for (line, why) in cases {
            let said = convert(&line).unwrap_err().to_string();
            assert!(said.contains(why), "{said} for {}", &line[..line.len().min(80)]);
        }
        let in_properties =
            json!({"event": "x", "timestamp": "2024-03-01T00:00:00Z", "properties": {"distinct_id": 7}});
        assert_eq!(converted(in_properties)["distinct_id"], "7");
    }
}

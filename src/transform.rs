//! One source event in, one event capture will accept out, or a reason why not.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use crate::version::ExportShape;
use crate::{elements, event_id, timestamp};

/// Capture refuses events over about 1 MB (its Kafka message limit, which also holds
/// the event a second time, escaped); the official SDKs keep under 900 KiB.
pub const MAX_EVENT_BYTES: usize = 900 * 1024;

/// Top-level fields capture reads. Everything else (`team_id`, `now`, `sent_at`,
/// `offset`, `$token`, `api_key`, `project_id`, `ip`, `site_url`, ...) is dropped:
/// capture would shift the timestamp by `sent_at`/`offset` or take a token from them.
const KEPT_FIELDS: [&str; 5] = ["event", "properties", "timestamp", "$set", "$set_once"];

/// Properties that would make capture see a second token (the source project's,
/// which posthog-js puts in every event), or that only mark the source's export.
const DROPPED_PROPERTIES: [&str; 5] = [
    "token",
    "$token",
    "$$is_historical_export_event",
    "$$historical_export_timestamp",
    "$$historical_export_source_db",
];

const HISTORICAL_MARKER: &str = "$$is_historical_export_event";

/// Which path an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Replayed by the source's historical export.
    Historical,
    /// Ingested by the source just now.
    Live,
    /// Named in the "events to ignore" setting.
    Ignored,
}

pub fn route(event: &Value, shape: ExportShape, ignored: &BTreeSet<String>) -> Route {
    if let Some(Value::String(name)) = event.get("event") {
        if ignored.contains(name) {
            return Route::Ignored;
        }
    }
    let historical = match shape {
        ExportShape::WithoutUuid => {
            matches!(event.get("uuid"), None | Some(Value::Null))
                || event.get("uuid").and_then(Value::as_str).is_some_and(|u| u.trim().is_empty())
        }
        ExportShape::Marked => {
            event.get("properties").and_then(|p| p.get(HISTORICAL_MARKER)) == Some(&Value::Bool(true))
        }
    };
    if historical {
        Route::Historical
    } else {
        Route::Live
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    NotAnObject,
    MissingEventName,
    MissingDistinctId,
    BadDistinctId,
    PropertiesNotAnObject,
    TooLarge {
        bytes: usize,
    },
    /// The destination refused the event, alone in its request.
    Refused(String),
}

impl Rejection {
    /// Machine-readable, for counters and the shim.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotAnObject => "not_an_object",
            Rejection::MissingEventName => "missing_event_name",
            Rejection::MissingDistinctId => "missing_distinct_id",
            Rejection::BadDistinctId => "bad_distinct_id",
            Rejection::PropertiesNotAnObject => "properties_not_an_object",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Refused(_) => "refused_by_destination",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NotAnObject => f.write_str("the event is not a JSON object"),
            Rejection::MissingEventName => f.write_str("the event has no name (`event` is missing or empty)"),
            Rejection::MissingDistinctId => {
                f.write_str("the event has no distinct_id (neither at the top nor in properties), so it belongs to nobody")
            }
            Rejection::BadDistinctId => f.write_str("the event's distinct_id is neither text nor a number"),
            Rejection::PropertiesNotAnObject => f.write_str("the event's properties are not a JSON object"),
            Rejection::TooLarge { bytes } => write!(
                f,
                "the event is {bytes} bytes once serialised, over the {MAX_EVENT_BYTES} bytes capture accepts for one event"
            ),
            Rejection::Refused(what) => f.write_str(what),
        }
    }
}

/// An event that could not be sent, with what identifies it in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub reason: Rejection,
    pub event_name: Option<String>,
    pub uuid: Option<String>,
}

/// An event ready for capture, serialised once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub uuid: String,
    pub json: String,
    /// The timestamp the event was sent with.
    pub at: DateTime<Utc>,
    /// No timestamp anywhere in the event: it was stamped with the current time.
    pub used_current_time: bool,
    /// The source had no valid uuid: it was derived from the content.
    pub derived_uuid: bool,
}

pub fn transform(event: Value, now: DateTime<Utc>) -> Result<Prepared, Rejected> {
    let Value::Object(mut source) = event else {
        return Err(Rejected { reason: Rejection::NotAnObject, event_name: None, uuid: None });
    };
    let source_uuid = event_id::from_source(source.get("uuid"));
    let event_name = match source.get("event") {
        Some(Value::String(name)) if !name.is_empty() => Some(name.clone()),
        _ => None,
    };
    let reject = |reason| Rejected { reason, event_name: event_name.clone(), uuid: source_uuid.clone() };
    if event_name.is_none() {
        return Err(reject(Rejection::MissingEventName));
    }
    let mut properties = match source.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err(reject(Rejection::PropertiesNotAnObject)),
    };
    let distinct_id = distinct_id(&source, &properties).map_err(reject)?;
    let (when, used_current_time) = match event_time(&source, &properties) {
        Some(t) => (t, false),
        None => (now, true),
    };

    let (uuid, derived_uuid) = match source_uuid {
        Some(uuid) => (uuid, false),
        None => (derive_uuid(&source, &properties, &distinct_id, (!used_current_time).then_some(when)), true),
    };

    // Data capture would drop from the top level moves where it survives.
    move_into(&mut source, "elements", &mut properties, "$elements");
    move_into(&mut source, "elements_chain", &mut properties, "$elements_chain");
    move_into(&mut source, "ip", &mut properties, "$ip");

    for key in DROPPED_PROPERTIES {
        properties.remove(key);
    }
    if let Some(list) = properties.get_mut("$elements") {
        elements::to_posthog_js_shape(list);
    }
    // Location was resolved at the source; the destination would resolve the plugin
    // server's address instead.
    properties.insert("$geoip_disable".into(), Value::Bool(true));

    let mut out = Map::new();
    for key in KEPT_FIELDS {
        if let Some(value) = source.remove(key) {
            out.insert(key.into(), value);
        }
    }
    for key in ["$set", "$set_once"] {
        if !matches!(out.get(key), Some(Value::Object(_))) {
            out.remove(key);
        }
    }
    out.insert("distinct_id".into(), Value::String(distinct_id));
    out.insert("properties".into(), Value::Object(properties));
    out.insert("timestamp".into(), Value::String(timestamp::format(when)));
    out.insert("uuid".into(), Value::String(uuid.clone()));

    let json = Value::Object(out).to_string();
    if json.len() > MAX_EVENT_BYTES {
        return Err(Rejected { reason: Rejection::TooLarge { bytes: json.len() }, event_name, uuid: Some(uuid) });
    }
    Ok(Prepared { uuid, json, at: when, used_current_time, derived_uuid })
}

fn distinct_id(source: &Map<String, Value>, properties: &Map<String, Value>) -> Result<String, Rejection> {
    let candidate = match source.get("distinct_id") {
        None | Some(Value::Null) => properties.get("distinct_id"),
        Some(Value::String(s)) if s.trim().is_empty() => properties.get("distinct_id"),
        found => found,
    };
    match candidate {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(Rejection::MissingDistinctId),
        Some(_) => Err(Rejection::BadDistinctId),
    }
}

/// When the event happened, by what the event itself says: `timestamp`, else the
/// server's receipt time less the client's `offset` (what capture computed at the
/// source), else the client's `$time`, else the receipt time `now`.
fn event_time(source: &Map<String, Value>, properties: &Map<String, Value>) -> Option<DateTime<Utc>> {
    let received = source.get("now").and_then(timestamp::from_value);
    source
        .get("timestamp")
        .and_then(timestamp::from_value)
        .or_else(|| {
            let offset = source.get("offset").and_then(Value::as_i64)?;
            received?.checked_sub_signed(Duration::try_milliseconds(offset)?)
        })
        .or_else(|| properties.get("$time").and_then(timestamp::from_value))
        .or(received)
}

/// What identifies an event across exports: never the export's own markers, the
/// receipt time or the current time.
fn derive_uuid(
    source: &Map<String, Value>,
    properties: &Map<String, Value>,
    distinct_id: &str,
    when: Option<DateTime<Utc>>,
) -> String {
    let stable: Map<String, Value> =
        properties.iter().filter(|(k, _)| !k.starts_with("$$")).map(|(k, v)| (k.clone(), v.clone())).collect();
    let fingerprint = Value::Array(vec![
        source.get("event").cloned().unwrap_or(Value::Null),
        Value::String(distinct_id.to_string()),
        when.map(|t| Value::String(timestamp::format(t))).unwrap_or(Value::Null),
        Value::Object(stable),
        source.get("$set").cloned().unwrap_or(Value::Null),
        source.get("$set_once").cloned().unwrap_or(Value::Null),
    ]);
    event_id::derive(&fingerprint)
}

fn move_into(source: &mut Map<String, Value>, from: &str, properties: &mut Map<String, Value>, to: &str) {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if let Some(value) = source.remove(from).filter(|v| !empty(v)) {
        properties.entry(to).or_insert(value);
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "transform_tests.rs"]
mod tests;

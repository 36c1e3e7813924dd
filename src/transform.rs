//! One source event in, one event capture will accept out, or a reason why not.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};

use crate::raw::{self, Fields};
use crate::scan::{self, EventFields};
use crate::version::ExportShape;
use crate::{elements, event_id, timestamp};

/// Capture refuses events over about 1 MB (its Kafka message limit, which also holds
/// the event a second time, escaped); the official SDKs keep under 900 KiB.
pub const MAX_EVENT_BYTES: usize = 900 * 1024;

// Top-level fields written: event, distinct_id, properties, $set, $set_once,
// timestamp, uuid. Everything else (`team_id`, `now`, `sent_at`, `offset`, `$token`,
// `api_key`, `project_id`, `ip`, `site_url`, ...) is dropped: capture would shift the
// timestamp by `sent_at`/`offset` or take a token from them.

/// Properties that would make capture see a second token (the source project's,
/// which posthog-js puts in every event), or that only mark the source's export.
const DROPPED_PROPERTIES: [&str; 6] = [
    "token",
    "$token",
    "$$is_historical_export_event",
    "$$historical_export_timestamp",
    "$$historical_export_source_db",
    POSTGRES_EVENT_ID,
];

/// The row id of an event the export of PostHog >= 1.30 read from Postgres: that
/// export gives such an event a new uuid on every run, so the uuid sent is derived
/// from this id instead, the same on every run.
const POSTGRES_EVENT_ID: &str = "$$postgres_event_id";

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

pub fn route(event: &SourceEvent<'_>, shape: ExportShape, ignored: &BTreeSet<String>) -> Route {
    if event.name.as_ref().is_some_and(|name| ignored.contains(name)) {
        return Route::Ignored;
    }
    path(event, shape)
}

/// The path an event not ignored takes, by the export's shape: historical or live.
pub fn path(event: &SourceEvent<'_>, shape: ExportShape) -> Route {
    let historical = match shape {
        // Not an object: no uuid either (it is then rejected, with a reason, on this path).
        ExportShape::WithoutUuid => event.fields.as_ref().is_none_or(|f| {
            f.get("uuid").is_none_or(|u| {
                let u = u.trim();
                u == "null" || raw::value_str(u).is_some_and(|s| s.trim().is_empty())
            })
        }),
        ExportShape::Marked => {
            event.properties().and_then(|p| p.get(HISTORICAL_MARKER)).is_some_and(|marker| marker.trim() == "true")
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

/// A source event, read once: its fields as raw JSON, and its name.
pub struct SourceEvent<'a> {
    /// `None`: the event is not a JSON object.
    pub fields: Option<Fields<'a>>,
    properties: Option<Option<Fields<'a>>>,
    pub name: Option<String>,
}

impl<'a> SourceEvent<'a> {
    /// `raw` must be one JSON value (an event that is not an object is refused by the
    /// transform, with a reason).
    pub fn read(raw: &'a str) -> SourceEvent<'a> {
        Self::from_scan(scan::event(raw).ok().flatten())
    }

    /// An event whose fields were read already (`None`: not an object), its properties'
    /// fields with them.
    pub fn from_scan(event: Option<EventFields<'a>>) -> SourceEvent<'a> {
        let Some(EventFields { fields, properties: read }) = event else {
            return SourceEvent { fields: None, properties: None, name: None };
        };
        let fields = Fields(fields);
        let name =
            fields.get("event").and_then(|e| serde_json::from_str::<String>(e).ok()).filter(|name| !name.is_empty());
        let properties = match fields.get("properties") {
            Some(p) if p != "null" => read.map(Fields),
            _ => Some(Fields(Vec::new())),
        };
        SourceEvent { fields: Some(fields), properties: Some(properties), name }
    }

    /// The properties; `None` when they are not an object.
    fn properties(&self) -> Option<&Fields<'a>> {
        self.properties.as_ref().and_then(Option::as_ref)
    }
}

/// Transforms an event given as a JSON value (tests, and single events).
pub fn transform(event: Value, now: DateTime<Utc>) -> Result<Prepared, Rejected> {
    let text = event.to_string();
    transform_raw(&SourceEvent::read(&text), now)
}

pub fn transform_raw(event: &SourceEvent<'_>, now: DateTime<Utc>) -> Result<Prepared, Rejected> {
    let Some(source) = &event.fields else {
        return Err(Rejected { reason: Rejection::NotAnObject, event_name: None, uuid: None });
    };
    let source_uuid = match postgres_row_id(event) {
        Some(row) => Some(event_id::derive(&Value::Array(vec![Value::String(POSTGRES_EVENT_ID.into()), row]))),
        None => event_id::from_source(source.get("uuid").map(raw::value).as_ref()),
    };
    let event_name = event.name.clone();
    let reject = |reason| Rejected { reason, event_name: event_name.clone(), uuid: source_uuid.clone() };
    let Some(name_raw) = source.get("event").filter(|_| event_name.is_some()) else {
        return Err(reject(Rejection::MissingEventName));
    };
    let Some(properties) = event.properties() else {
        return Err(reject(Rejection::PropertiesNotAnObject));
    };
    let distinct_id = distinct_id(source, properties).map_err(reject)?;
    let (when, used_current_time) = match event_time(source, properties) {
        Some(t) => (t, false),
        None => (now, true),
    };
    let (uuid, derived_uuid) = match source_uuid {
        Some(uuid) => (uuid, false),
        None => (derive_uuid(source, properties, &distinct_id, (!used_current_time).then_some(when)), true),
    };

    let mut json = String::with_capacity(256 + source.0.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>());
    json.push_str("{\"event\":");
    json.push_str(name_raw.trim());
    json.push_str(",\"distinct_id\":");
    raw::write_string(&mut json, &distinct_id);
    json.push_str(",\"properties\":{");
    let mut first = true;
    let mut field = |json: &mut String, key: &Cow<'_, str>, value: &str| {
        if !std::mem::replace(&mut first, false) {
            json.push(',');
        }
        raw::write_key(json, key);
        json.push_str(value);
    };
    for (key, value) in &properties.0 {
        if DROPPED_PROPERTIES.contains(&key.as_ref()) || key == "$geoip_disable" {
            continue;
        }
        if key == "$elements" {
            field(&mut json, key, &elements_json(value));
        } else {
            // Raw values have no whitespace around them.
            field(&mut json, key, value);
        }
    }
    // Data capture would drop from the top level moves where it survives.
    for (from, to) in [("elements", "$elements"), ("elements_chain", "$elements_chain"), ("ip", "$ip")] {
        if let Some(value) = source.get(from).filter(|v| !raw::is_empty(v) && !properties.has(to)) {
            let to = Cow::Borrowed(to);
            if to == "$elements" {
                field(&mut json, &to, &elements_json(value));
            } else {
                field(&mut json, &to, value.trim());
            }
        }
    }
    // Location was resolved at the source; the destination would resolve the plugin
    // server's address instead.
    field(&mut json, &Cow::Borrowed("$geoip_disable"), "true");
    json.push('}');
    for key in ["$set", "$set_once"] {
        if let Some(value) = source.get(key).filter(|v| v.trim_start().starts_with('{')) {
            json.push(',');
            raw::write_key(&mut json, &Cow::Borrowed(key));
            json.push_str(value.trim());
        }
    }
    json.push_str(",\"timestamp\":\"");
    json.push_str(&timestamp::format(when));
    json.push_str("\",\"uuid\":\"");
    json.push_str(&uuid);
    json.push_str("\"}");
    let json = raw::to_ascii_json(json);

    if json.len() > MAX_EVENT_BYTES {
        return Err(Rejected { reason: Rejection::TooLarge { bytes: json.len() }, event_name, uuid: Some(uuid) });
    }
    Ok(Prepared { uuid, json, at: when, used_current_time, derived_uuid })
}

/// The database a historical event was read from, as PostHog >= 1.30 marks it
/// (`clickhouse` or `postgres`).
pub fn source_db(event: &SourceEvent<'_>) -> Option<String> {
    event.properties()?.get("$$historical_export_source_db").and_then(raw::value_str)
}

/// The Postgres row id of an event exported from Postgres by PostHog >= 1.30.
fn postgres_row_id(event: &SourceEvent<'_>) -> Option<Value> {
    let properties = event.properties()?;
    let from_postgres =
        properties.get("$$historical_export_source_db").and_then(raw::value_str).is_some_and(|db| db == "postgres");
    let id = properties.get(POSTGRES_EVENT_ID).map(raw::value)?;
    (from_postgres && !id.is_null()).then_some(id)
}

/// Autocapture elements in posthog-js shape, as JSON.
fn elements_json(value: &str) -> String {
    let mut elements = raw::value(value);
    elements::to_posthog_js_shape(&mut elements);
    elements.to_string()
}

fn distinct_id(source: &Fields<'_>, properties: &Fields<'_>) -> Result<String, Rejection> {
    let top = source.get("distinct_id").map(raw::value);
    let candidate = match top {
        None | Some(Value::Null) => properties.get("distinct_id").map(raw::value),
        Some(Value::String(s)) if s.trim().is_empty() => properties.get("distinct_id").map(raw::value),
        found => found,
    };
    match candidate {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::Number(n)) => Ok(n.to_string()),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(Rejection::MissingDistinctId),
        Some(_) => Err(Rejection::BadDistinctId),
    }
}

/// When the event happened (see `event_time`), if it says.
pub fn event_at(event: &SourceEvent<'_>) -> Option<DateTime<Utc>> {
    event_time(event.fields.as_ref()?, event.properties()?)
}

/// When the event happened, by what the event itself says: `timestamp`, else the
/// server's receipt time less the client's `offset` (what capture computed at the
/// source), else the client's `$time`, else the receipt time `now`.
fn event_time(source: &Fields<'_>, properties: &Fields<'_>) -> Option<DateTime<Utc>> {
    let at = |fields: &Fields<'_>, key| fields.get(key).and_then(|v| timestamp::from_value(&raw::value(v)));
    let received = at(source, "now");
    at(source, "timestamp")
        .or_else(|| {
            let offset = source.get("offset").and_then(|v| raw::value(v).as_i64())?;
            received?.checked_sub_signed(Duration::try_milliseconds(offset)?)
        })
        .or_else(|| at(properties, "$time"))
        .or(received)
}

/// When the source stored a live event, which is the timestamp its historical copy
/// carries: PostHog's ingestion takes `now + (timestamp - sent_at)` (correcting the
/// client's clock), else `timestamp`, else `now` less `offset`, else `now`.
pub fn stored_at(event: &SourceEvent<'_>) -> Option<DateTime<Utc>> {
    let source = event.fields.as_ref()?;
    let at = |key| source.get(key).and_then(|v| timestamp::from_value(&raw::value(v)));
    let received = at("now");
    match (at("timestamp"), at("sent_at"), received) {
        (Some(timestamp), Some(sent_at), Some(now)) => now.checked_add_signed(timestamp - sent_at),
        (Some(timestamp), _, _) => Some(timestamp),
        _ => {
            let offset = source.get("offset").and_then(|v| raw::value(v).as_i64());
            match (offset, received) {
                (Some(offset), Some(now)) => now.checked_sub_signed(Duration::try_milliseconds(offset)?),
                _ => received,
            }
        }
    }
}

/// What identifies an event across exports: never the export's own markers, the
/// receipt time or the current time.
fn derive_uuid(source: &Fields<'_>, properties: &Fields<'_>, distinct_id: &str, when: Option<DateTime<Utc>>) -> String {
    let stable: Map<String, Value> = properties
        .0
        .iter()
        .filter(|(k, _)| !k.starts_with("$$"))
        .map(|(k, v)| (k.to_string(), raw::value(v)))
        .collect();
    let field = |key| source.get(key).map(raw::value).unwrap_or(Value::Null);
    let fingerprint = Value::Array(vec![
        field("event"),
        Value::String(distinct_id.to_string()),
        when.map(|t| Value::String(timestamp::format(t))).unwrap_or(Value::Null),
        Value::Object(stable),
        field("$set"),
        field("$set_once"),
    ]);
    event_id::derive(&fingerprint)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "transform_tests.rs"]
mod tests;

//! The core's front: settings plus the two paths events take, historical and live.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::batch::{Batch, Batcher};
use crate::settings::Settings;
use crate::transform::{self, Rejected, Route};

/// What became of a list of events handed to the core.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Request bodies ready to send, in event order.
    pub batches: Vec<Batch>,
    pub rejected: Vec<Rejected>,
    /// Events that belong to the other path (live on the historical one, and back).
    pub other_path: usize,
    /// Events named in the "events to ignore" setting.
    pub ignored: usize,
    pub used_current_time: usize,
    pub derived_uuid: usize,
}

/// The shim handed over something that is not a list of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expected a JSON array of events: {}", self.0)
    }
}

#[derive(Debug)]
pub struct Migrator {
    pub settings: Settings,
    live: Batcher,
}

impl Migrator {
    pub fn new(settings: Settings) -> Migrator {
        let live = Batcher::new(&settings.project_api_key, false, settings.limits, settings.gzip);
        Migrator { settings, live }
    }

    /// Historical events of one export page, as whole batches; live events are skipped.
    pub fn export_historical(&self, events_json: &str, now: DateTime<Utc>) -> Result<Outcome, InputError> {
        let events = parse_events(events_json)?;
        let mut batcher = Batcher::new(&self.settings.project_api_key, true, self.settings.limits, self.settings.gzip);
        let mut outcome = run(&self.settings, events, Route::Historical, now, &mut batcher);
        outcome.batches.extend(batcher.flush());
        Ok(outcome)
    }

    /// Live events join those already waiting; full batches come back at once, the
    /// rest wait for more events or `flush_live`.
    pub fn add_live(&mut self, events_json: &str, now: DateTime<Utc>) -> Result<Outcome, InputError> {
        let events = parse_events(events_json)?;
        Ok(run(&self.settings, events, Route::Live, now, &mut self.live))
    }

    pub fn flush_live(&mut self) -> Option<Batch> {
        self.live.flush()
    }

    pub fn live_waiting(&self) -> usize {
        self.live.len()
    }
}

/// Routes each event; those on `path` are transformed and packed into `batcher`.
fn run(settings: &Settings, events: Vec<Value>, path: Route, now: DateTime<Utc>, batcher: &mut Batcher) -> Outcome {
    let mut outcome = Outcome::default();
    for event in events {
        match transform::route(&event, settings.version.shape, &settings.events_to_ignore) {
            Route::Ignored => outcome.ignored += 1,
            route if route != path => outcome.other_path += 1,
            _ => match transform::transform(event, now) {
                Ok(prepared) => {
                    outcome.used_current_time += usize::from(prepared.used_current_time);
                    outcome.derived_uuid += usize::from(prepared.derived_uuid);
                    outcome.batches.extend(batcher.push(&prepared));
                }
                Err(rejected) => outcome.rejected.push(rejected),
            },
        }
    }
    outcome
}

fn parse_events(events_json: &str) -> Result<Vec<Value>, InputError> {
    match serde_json::from_str::<Value>(events_json) {
        Ok(Value::Array(events)) => Ok(events),
        Ok(_) => Err(InputError("the JSON is not an array".into())),
        Err(e) => Err(InputError(format!("the JSON does not parse ({e})"))),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::timestamp;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        timestamp::parse_iso("2026-11-23T12:00:00Z").unwrap()
    }

    fn migrator(version: &str, batch_size: usize) -> Migrator {
        let config = json!({"host": "http://127.0.0.1:9", "projectApiKey": "phc_dest", "posthogVersion": version,
                            "batchSize": batch_size.to_string(), "gzip": "OFF", "eventsToIgnore": "$feature_flag_called"});
        Migrator::new(Settings::parse(config.as_object().unwrap(), now()).unwrap())
    }

    fn body(batch: &Batch) -> Value {
        serde_json::from_slice(&batch.body).unwrap()
    }

    fn event(n: usize, historical: bool) -> Value {
        json!({"event": "custom", "distinct_id": format!("u{n}"), "uuid": format!("00000000-0000-4000-8000-{n:012}"),
               "timestamp": "2021-05-01T00:00:00Z",
               "properties": {"n": n, "$$is_historical_export_event": historical}})
    }

    #[test]
    fn historical_path_sends_only_historical_events_as_a_migration() {
        let m = migrator("1.30.0", 2);
        let events = json!([event(1, true), event(2, false), event(3, true), {"event": "x"}, event(4, true),
                            {"event": "$feature_flag_called", "distinct_id": "u", "properties": {"$$is_historical_export_event": true}}]);
        let outcome = m.export_historical(&events.to_string(), now()).unwrap();
        assert_eq!(outcome.batches.len(), 2);
        let first = body(&outcome.batches[0]);
        assert_eq!(
            (first["api_key"].as_str(), first["historical_migration"].as_bool()),
            (Some("phc_dest"), Some(true))
        );
        let sent: Vec<u64> = outcome
            .batches
            .iter()
            .flat_map(|b| body(b)["batch"].as_array().unwrap().clone())
            .map(|e| e["properties"]["n"].as_u64().unwrap())
            .collect();
        assert_eq!(sent, [1, 3, 4]);
        assert_eq!((outcome.other_path, outcome.ignored), (2, 1));
        assert!(outcome.rejected.is_empty());
    }

    #[test]
    fn version_1_29_exports_are_the_events_without_uuid() {
        let m = migrator("1.29.0", 10);
        let mut old = event(1, false);
        old.as_object_mut().unwrap().remove("uuid");
        let events = json!([old, event(2, false), {"event": "nameless-distinct"}]);
        let outcome = m.export_historical(&events.to_string(), now()).unwrap();
        assert_eq!(outcome.batches.len(), 1);
        assert_eq!(outcome.batches[0].uuids.len(), 1);
        assert_eq!(outcome.derived_uuid, 1);
        assert_eq!(outcome.other_path, 1);
        assert_eq!(outcome.rejected.len(), 1);
        assert_eq!(outcome.rejected[0].reason.code(), "missing_distinct_id");
    }

    #[test]
    fn live_events_wait_for_a_full_batch_or_a_flush() {
        let mut m = migrator("Latest", 3);
        let first = m.add_live(&json!([event(1, false), event(2, false), event(9, true)]).to_string(), now()).unwrap();
        assert!(first.batches.is_empty());
        assert_eq!((m.live_waiting(), first.other_path), (2, 1));
        let second = m.add_live(&json!([event(3, false), event(4, false)]).to_string(), now()).unwrap();
        assert_eq!(second.batches.len(), 1);
        let closed = body(&second.batches[0]);
        assert_eq!(closed["historical_migration"], false);
        assert_eq!(closed["batch"].as_array().unwrap().len(), 3);
        assert_eq!(m.live_waiting(), 1);
        let rest = m.flush_live().unwrap();
        assert_eq!(body(&rest)["batch"][0]["properties"]["n"], 4);
        assert_eq!(m.flush_live(), None);
    }

    #[test]
    fn input_that_is_not_a_list_of_events_is_an_input_error() {
        let mut m = migrator("Latest", 3);
        for bad in ["", "{", "{\"event\": \"x\"}", "null"] {
            let err = m.export_historical(bad, now()).unwrap_err();
            assert!(err.to_string().starts_with("expected a JSON array of events"), "{err}");
            assert!(m.add_live(bad, now()).is_err());
        }
        assert_eq!(m.live_waiting(), 0);
    }
}

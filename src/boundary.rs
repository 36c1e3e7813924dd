//! The one module that touches JavaScript: host values become core types here, once,
//! and core errors become JS `Error`s here, once, each with a machine-readable `kind`
//! (`bad_setting`, `bad_event`, `bad_input`) so the shim never parses messages.

use chrono::{DateTime, Utc};
use js_sys::{Array, Error, Reflect};
use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;
use wasm_bindgen::prelude::*;

use crate::batch::{Batch, Body};
use crate::delivery::{self, Decision};
use crate::export::{Actions, ExportState, Observations};
use crate::migrator::{self, ExportPlan, InputError, Outcome};
use crate::settings::{Settings, SettingsError};
use crate::timestamp;
use crate::transform::{self, Rejected};
use crate::version::ExportShape;

type JsResult<T> = Result<T, JsValue>;

/// An `Error` with `kind` and any further fields set on it.
fn js_error(kind: &str, message: &str, fields: &[(&str, JsValue)]) -> JsValue {
    let error = Error::new(message);
    let _ = Reflect::set(&error, &"kind".into(), &kind.into());
    for (key, value) in fields {
        let _ = Reflect::set(&error, &(*key).into(), value);
    }
    error.into()
}

fn bad_input(message: &str) -> JsValue {
    js_error("bad_input", message, &[])
}

impl From<InputError> for JsValue {
    fn from(error: InputError) -> JsValue {
        bad_input(&error.to_string())
    }
}

impl From<SettingsError> for JsValue {
    fn from(error: SettingsError) -> JsValue {
        let fields: Array = error.0.iter().map(|p| JsValue::from(p.field.key)).collect();
        let problems: Array = error.0.iter().map(|p| JsValue::from(p.to_string())).collect();
        js_error("bad_setting", &error.to_string(), &[("fields", fields.into()), ("problems", problems.into())])
    }
}

fn time(now_ms: f64) -> JsResult<DateTime<Utc>> {
    timestamp::from_millis(now_ms)
        .ok_or_else(|| bad_input(&format!("the current time {now_ms} is not a time in milliseconds")))
}

fn to_js<T: Serialize>(value: &T) -> JsValue {
    // Plain objects (not Maps) and `null` for `None`; our types always serialise.
    let serializer =
        serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true).serialize_missing_as_null(true);
    value.serialize(&serializer).unwrap_or(JsValue::UNDEFINED)
}

#[wasm_bindgen]
pub struct Migrator {
    core: migrator::Migrator,
}

#[wasm_bindgen]
impl Migrator {
    /// `config` is `meta.config`; throws a `bad_setting` Error naming every bad field.
    /// `cutover_ms`: when the app was first installed (kept in storage); `undefined`
    /// or `null` for now.
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue, now_ms: f64, cutover_ms: Option<f64>) -> JsResult<Migrator> {
        let now = time(now_ms)?;
        let cutover = cutover_ms.map(time).transpose()?.unwrap_or(now);
        let config: Value = serde_wasm_bindgen::from_value(config)
            .map_err(|e| js_error("bad_setting", &format!("the settings could not be read: {e}"), &[]))?;
        let Value::Object(config) = config else {
            return Err(js_error("bad_setting", "the settings must be an object of the form's fields", &[]));
        };
        Ok(Migrator { core: migrator::Migrator::new(Settings::parse(&config, now)?, cutover) })
    }

    /// The settings as understood, for the log and for the shim's scheduling.
    #[wasm_bindgen(getter)]
    pub fn settings(&self) -> JsValue {
        let s = &self.core.settings;
        to_js(&SettingsOut {
            destination: &s.destination.base_url,
            batch_url: s.destination.batch_url(s.gzip),
            start_date: s.start.map(timestamp::format),
            posthog_version: &s.version.label,
            historical_events: match s.version.shape {
                ExportShape::WithoutUuid => "have no uuid (PostHog 1.29 and older)",
                ExportShape::Marked => "carry $$is_historical_export_event (PostHog 1.30 and newer)",
            },
            debug: s.debug,
            batch_size: s.limits.max_events,
            batch_max_bytes: s.limits.max_bytes,
            gzip: s.gzip,
            events_to_ignore: s.events_to_ignore.iter().collect(),
            events_per_minute: s.events_per_minute,
            cutover: timestamp::format(self.core.cutover()),
        })
    }

    /// The host job that replays the history, and its payload.
    #[wasm_bindgen(js_name = exportPlan)]
    pub fn export_plan(&self) -> JsValue {
        plan_to_js(self.core.export_plan())
    }

    /// Takes a JSON array of events from `exportEvents` and the export state as
    /// stored; returns the requests for the historical ones of the day being exported.
    #[wasm_bindgen(js_name = exportHistorical)]
    pub fn export_historical(&self, events_json: &str, now_ms: f64, state: Option<String>) -> JsResult<JsValue> {
        // A state that cannot be read limits nothing: the cut-over still holds.
        let window = state.and_then(|json| serde_json::from_str::<ExportState>(&json).ok()).and_then(|s| s.window());
        let outcome = self.core.export_historical(events_json, time(now_ms)?, window)?;
        Ok(self.outcome(&outcome))
    }

    /// Takes a JSON array of live events; returns the requests of the batches they
    /// filled, and of the waiting events once they have waited long enough.
    #[wasm_bindgen(js_name = addLive)]
    pub fn add_live(&mut self, events_json: &str, now_ms: f64) -> JsResult<JsValue> {
        let outcome = self.core.add_live(events_json, time(now_ms)?)?;
        Ok(self.outcome(&outcome))
    }

    /// The request for the live events still waiting, or `undefined`.
    #[wasm_bindgen(js_name = flushLive)]
    pub fn flush_live(&mut self) -> JsValue {
        match self.core.flush_live() {
            Some(batch) => to_js(&self.request(&batch)),
            None => JsValue::UNDEFINED,
        }
    }

    /// The request for the waiting live events if they have waited long enough, or `undefined`.
    #[wasm_bindgen(js_name = flushLiveIfDue)]
    pub fn flush_live_if_due(&mut self, now_ms: f64) -> JsResult<JsValue> {
        Ok(match self.core.flush_live_if_due(time(now_ms)?) {
            Some(batch) => to_js(&self.request(&batch)),
            None => JsValue::UNDEFINED,
        })
    }

    /// What follows the answer to a sent request (`{body, encoding}`), given its status,
    /// `Retry-After` header and text: `delivered`,
    /// `split` (send `requests` instead), `rejected`, `retry` (after `delaySeconds`,
    /// as `attempt`), `park` or `stop` (with a `message` for the user).
    pub fn answer(
        &self,
        request: JsValue,
        status: u16,
        retry_after: Option<String>,
        response_text: Option<String>,
        attempt: u32,
        now_ms: f64,
    ) -> JsResult<JsValue> {
        let now = time(now_ms)?;
        if delivery::classify(status) == delivery::Answer::Delivered {
            // The request's own list of uuids counts its events: no need to read the body.
            let uuids = Reflect::get(&request, &"uuids".into()).map(|u| Array::from(&u).length()).unwrap_or(0);
            return Ok(to_js(&DecisionOut {
                action: "delivered",
                count: Some(uuids as usize),
                ..DecisionOut::default()
            }));
        }
        let field = |key: &str| Reflect::get(&request, &key.into()).ok().and_then(|v| v.as_string());
        let (Some(body), Some(encoding)) = (field("body"), field("encoding")) else {
            return Err(bad_input("the request to answer for has no body and encoding"));
        };
        let s = &self.core.settings;
        let retry_after = retry_after.and_then(|header| delivery::retry_after_seconds(&header, now));
        let sent = delivery::Sent { body: &body, encoding: &encoding, attempt: attempt.max(1) };
        let decision =
            delivery::decide(sent, status, retry_after, response_text.as_deref().unwrap_or(""), s.limits, s.gzip)
                .map_err(|e| bad_input(&e.to_string()))?;
        Ok(match decision {
            Decision::Delivered { count } => {
                to_js(&DecisionOut { action: "delivered", count: Some(count), ..DecisionOut::default() })
            }
            Decision::Split(batches) => to_js(&DecisionOut {
                action: "split",
                requests: Some(batches.iter().map(|b| self.request(b)).collect()),
                ..DecisionOut::default()
            }),
            Decision::Rejected(rejected) => to_js(&DecisionOut {
                action: "rejected",
                rejected: Some(RejectedOut::from(&rejected)),
                ..DecisionOut::default()
            }),
            Decision::Retry { delay_seconds, attempt } => to_js(&DecisionOut {
                action: "retry",
                delay_seconds: Some(delay_seconds),
                attempt: Some(attempt),
                ..DecisionOut::default()
            }),
            Decision::Park => to_js(&DecisionOut { action: "park", ..DecisionOut::default() }),
            Decision::Stop { message } => {
                to_js(&DecisionOut { action: "stop", message: Some(message), ..DecisionOut::default() })
            }
        })
    }

    /// Seconds to hold historical events back to keep to the rate set, or `undefined`.
    #[wasm_bindgen(js_name = paceDelay)]
    pub fn pace_delay(&self, sent_including_these: f64, elapsed_seconds: f64) -> Option<f64> {
        let whole = |n: f64| if n.is_finite() && n > 0.0 { n as u64 } else { 0 };
        delivery::pace_delay_seconds(
            self.core.settings.events_per_minute,
            whole(sent_including_these),
            whole(elapsed_seconds),
        )
        .map(|s| s as f64)
    }

    /// One minute's look at the history: `state` as stored (or `null` to begin),
    /// `observations` as read from storage. Returns the state to store and what to do.
    #[wasm_bindgen(js_name = exportTick)]
    pub fn export_tick(&self, state: Option<String>, observations: JsValue, now_ms: f64) -> JsResult<JsValue> {
        let now = time(now_ms)?;
        let seen: Observations = serde_wasm_bindgen::from_value(observations)
            .map_err(|e| bad_input(&format!("the export observations cannot be read: {e}")))?;
        let mut state = self.stored_state(state, now)?;
        let actions = state.tick(&seen, now);
        Ok(export_step(&state, actions))
    }

    /// `[ADVANCED] Force restart`: the current chunk again, from the acknowledged position.
    #[wasm_bindgen(js_name = exportRestart)]
    pub fn export_restart(&self, state: Option<String>, now_ms: f64) -> JsResult<JsValue> {
        let now = time(now_ms)?;
        let mut state = self.stored_state(state, now)?;
        let actions = state.restart(now);
        Ok(export_step(&state, actions))
    }

    fn stored_state(&self, state: Option<String>, now: DateTime<Utc>) -> JsResult<ExportState> {
        match state {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| bad_input(&format!("the stored export state cannot be read: {e}"))),
            None => Ok(ExportState::new(&self.core.export_plan(), now)),
        }
    }

    #[wasm_bindgen(getter, js_name = liveWaiting)]
    pub fn live_waiting(&self) -> usize {
        self.core.live_waiting()
    }

    /// One event, as capture will receive it (JSON); throws a `bad_event` Error.
    #[wasm_bindgen(js_name = transformEvent)]
    pub fn transform_event(&self, event_json: &str, now_ms: f64) -> JsResult<String> {
        let now = time(now_ms)?;
        let event: Value =
            serde_json::from_str(event_json).map_err(|e| bad_input(&format!("the event is not JSON ({e})")))?;
        transform::transform(event, now).map(|p| p.json).map_err(|rejected| {
            js_error(
                "bad_event",
                &format!("event not sent: {}", rejected.reason),
                &[("reason", rejected.reason.code().into())],
            )
        })
    }

    fn request<'a>(&'a self, batch: &'a Batch) -> RequestOut<'a> {
        let s = &self.core.settings;
        // TRICKY: bodies cross as strings. A Uint8Array made in the sandbox reaches the
        // host's fetch as a vm2 proxy, which node-fetch does not recognise as bytes and
        // sends as "31,139,8,...". Gzip goes as base64 for the host's Buffer to decode.
        let (body, encoding) = match &batch.body {
            Body::Json(text) => (Cow::Borrowed(text.as_str()), "json"),
            Body::Gzip(bytes) => (Cow::Owned(BASE64.encode(bytes)), "gzip-base64"),
        };
        RequestOut {
            url: s.destination.batch_url(batch.body.is_gzip()),
            body,
            encoding,
            json_bytes: batch.json_bytes,
            uuids: &batch.uuids,
        }
    }

    fn outcome(&self, outcome: &Outcome) -> JsValue {
        to_js(&OutcomeOut {
            requests: outcome.batches.iter().map(|b| self.request(b)).collect(),
            rejected: outcome.rejected.iter().map(RejectedOut::from).collect(),
            other_path: outcome.other_path,
            after_cutover: outcome.after_cutover,
            outside_window: outcome.outside_window,
            ignored: outcome.ignored,
            used_current_time: outcome.used_current_time,
            derived_uuid: outcome.derived_uuid,
            latest: outcome.latest.map(timestamp::format),
        })
    }
}

fn plan_out(plan: &ExportPlan) -> ExportPlanOut {
    ExportPlanOut {
        job: plan.job.name(),
        payload: ExportPayload {
            date_from: plan.date_from.map(timestamp::format),
            date_to: timestamp::format(plan.date_to),
        },
    }
}

fn plan_to_js(plan: ExportPlan) -> JsValue {
    to_js(&plan_out(&plan))
}

fn export_step(state: &ExportState, actions: Actions) -> JsValue {
    to_js(&ExportStepOut {
        // Serialising our own state cannot fail.
        state: serde_json::to_string(state).unwrap_or_default(),
        done: state.done,
        share_done: state.share_done(),
        reset_host: actions.reset_host,
        start: actions.start.as_ref().map(plan_out),
        log: actions.log,
        warn: actions.warn,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportStepOut {
    state: String,
    done: bool,
    share_done: f64,
    reset_host: bool,
    start: Option<ExportPlanOut>,
    log: Vec<String>,
    warn: Vec<String>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct DecisionOut<'a> {
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<Vec<RequestOut<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<RejectedOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SettingsOut<'a> {
    destination: &'a str,
    batch_url: String,
    start_date: Option<String>,
    posthog_version: &'a str,
    historical_events: &'a str,
    debug: bool,
    batch_size: usize,
    batch_max_bytes: usize,
    gzip: bool,
    events_to_ignore: Vec<&'a String>,
    events_per_minute: Option<u64>,
    cutover: String,
}

#[derive(Serialize)]
struct ExportPlanOut {
    job: &'static str,
    payload: ExportPayload,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    date_from: Option<String>,
    date_to: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestOut<'a> {
    url: String,
    /// JSON text, or base64 of the gzip (see `encoding`).
    body: Cow<'a, str>,
    encoding: &'static str,
    json_bytes: usize,
    uuids: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RejectedOut<'a> {
    reason: String,
    code: &'static str,
    event: Option<&'a str>,
    uuid: Option<&'a str>,
}

impl<'a> From<&'a Rejected> for RejectedOut<'a> {
    fn from(r: &'a Rejected) -> Self {
        RejectedOut {
            reason: r.reason.to_string(),
            code: r.reason.code(),
            event: r.event_name.as_deref(),
            uuid: r.uuid.as_deref(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutcomeOut<'a> {
    requests: Vec<RequestOut<'a>>,
    rejected: Vec<RejectedOut<'a>>,
    other_path: usize,
    after_cutover: usize,
    outside_window: usize,
    ignored: usize,
    used_current_time: usize,
    derived_uuid: usize,
    latest: Option<String>,
}

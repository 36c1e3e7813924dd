//! The one module that touches JavaScript: host values become core types here, once,
//! and core errors become JS `Error`s here, once, each with a machine-readable `kind`
//! (`bad_setting`, `bad_event`, `bad_input`) so the shim never parses messages.
//!
//! Events cross as UTF-8 bytes: wasm-bindgen copies a string in one loop step per
//! character, and the host puts a clock check into every loop of the plugin.

use chrono::{DateTime, Utc};
use js_sys::{Array, Error, Reflect};

use serde::Serialize;
use serde_json::Value;
use wasm_bindgen::prelude::*;

use crate::batch::{Batch, BatchLimits};
use crate::dispatch::{self, KeepState, Summary};
use crate::export::{Actions, ExportState, Observations, HOST_EXPORT_KEYS};
use crate::export_plan::ExportPlan;
use crate::handover::HistoryView;
use crate::inflight::{self, LateRecord, PageRecord, Record, Seen};
use crate::migrator::{self, InputError, Outcome};
use crate::pace::{self, Bucket};
use crate::parcels::{self, Look, Parcel, StoredRequest};
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

fn utf8(bytes: &[u8]) -> JsResult<&str> {
    std::str::from_utf8(bytes).map_err(|_| bad_input("the events are not UTF-8 text"))
}

fn to_js<T: Serialize>(value: &T) -> JsValue {
    // Plain objects (not Maps) and `null` for `None`; our types always serialise.
    let serializer =
        serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true).serialize_missing_as_null(true);
    value.serialize(&serializer).unwrap_or(JsValue::UNDEFINED)
}

fn from_json<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> JsResult<T> {
    serde_json::from_str(json).map_err(|e| bad_input(&format!("{what} cannot be read: {e}")))
}

/// Where and how requests go: what a dispatch needs of the settings.
#[derive(Clone)]
struct Route {
    limits: BatchLimits,
    gzip: bool,
    json_url: String,
    gzip_url: String,
}

impl Route {
    fn of(settings: &Settings) -> Route {
        Route {
            limits: settings.limits,
            gzip: settings.gzip,
            json_url: settings.destination.batch_url(false),
            gzip_url: settings.destination.batch_url(true),
        }
    }
}

#[wasm_bindgen]
pub struct Migrator {
    core: migrator::Migrator,
    route: Route,
    /// A setting this thread found wrong: live events are kept, not sent, until the
    /// settings are saved (which makes a new Migrator).
    held: Option<String>,
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
        let settings = Settings::parse(&config, now)?;
        let route = Route::of(&settings);
        Ok(Migrator { core: migrator::Migrator::new(settings, cutover), route, held: None })
    }

    /// The settings as understood, for the log.
    #[wasm_bindgen(getter)]
    pub fn settings(&self) -> JsValue {
        let s = &self.core.settings;
        to_js(&SettingsOut {
            destination: &s.destination.base_url,
            batch_url: s.destination.batch_url(s.gzip),
            batch_size: s.limits.max_events,
            batch_max_bytes: s.limits.max_bytes,
            gzip: s.gzip,
            events_to_ignore: s.events_to_ignore.iter().collect(),
            events_per_minute: s.events_per_minute,
            start_date: s.start.map(timestamp::format),
            posthog_version: &s.version.label,
            historical_events: match s.version.shape {
                ExportShape::WithoutUuid => "have no uuid (PostHog 1.29 and older)",
                ExportShape::Marked => "carry $$is_historical_export_event (PostHog 1.30 and newer)",
            },
            debug: s.debug,
            cutover: timestamp::format(self.core.cutover()),
        })
    }

    /// Takes the JSON array of events `exportEvents` received (UTF-8) and the export
    /// state as stored; the page of the historical ones of the export being run.
    #[wasm_bindgen(js_name = exportHistorical)]
    pub fn export_historical(
        &self,
        events_json: &[u8],
        now_ms: f64,
        state: Option<String>,
        held: Option<String>,
    ) -> JsResult<Page> {
        // A state that cannot be read limits nothing: the cut-over still holds.
        let state = state.and_then(|json| serde_json::from_str::<ExportState>(&json).ok());
        let window = state.as_ref().and_then(ExportState::window);
        let outcome = self.core.export_historical(utf8(events_json)?, time(now_ms)?, window)?;
        let epoch = state.map_or(0, |s| s.epoch);
        Ok(Page::new(outcome, true, self.route.clone(), held, Some(epoch)))
    }

    /// Whether some of these live events (a JSON array, UTF-8) are stamped before the
    /// cut-over: then `addLive` needs the history's view.
    #[wasm_bindgen(js_name = liveNeedsHistory)]
    pub fn live_needs_history(&self, events_json: &[u8]) -> JsResult<bool> {
        Ok(self.core.live_needs_history(utf8(events_json)?)?)
    }

    /// Takes a JSON array of live events (UTF-8) and, when `liveNeedsHistory` says so,
    /// the history's view (`{exportState, hostCursor, hostMin, v2Chunks, sourceDb}`, as
    /// read from storage); the page of the batches they filled, and of the waiting events once
    /// they have waited long enough. Its info lists the `late` instants to record.
    #[wasm_bindgen(js_name = addLive)]
    pub fn add_live(&mut self, events_json: &[u8], now_ms: f64, history: JsValue) -> JsResult<Page> {
        let history: Option<HistoryView> = if history.is_undefined() || history.is_null() {
            None
        } else {
            Some(
                serde_wasm_bindgen::from_value(history)
                    .map_err(|e| bad_input(&format!("the history's view cannot be read: {e}")))?,
            )
        };
        let outcome = self.core.add_live(utf8(events_json)?, time(now_ms)?, history.as_ref())?;
        Ok(Page::new(outcome, false, self.route.clone(), self.held.clone(), None))
    }

    /// The live events still waiting, as a page (empty when none wait).
    #[wasm_bindgen(js_name = flushLive)]
    pub fn flush_live(&mut self) -> Page {
        let batches = self.core.flush_live().into_iter().collect();
        self.live_page(batches)
    }

    /// The waiting live events if they have waited long enough, as a page.
    #[wasm_bindgen(js_name = flushLiveIfDue)]
    pub fn flush_live_if_due(&mut self, now_ms: f64) -> JsResult<Page> {
        let batches = self.core.flush_live_if_due(time(now_ms)?).into_iter().collect();
        Ok(self.live_page(batches))
    }

    fn live_page(&self, batches: Vec<Batch>) -> Page {
        let outcome = Outcome { batches, ..Outcome::default() };
        Page::new(outcome, false, self.route.clone(), self.held.clone(), None)
    }

    /// A setting is wrong (a dispatch said `stop`): keep live events from now on.
    pub fn hold(&mut self, message: String) {
        self.held = Some(message);
    }

    /// A kept request (`parcel`, as stored), as a dispatch if it is waiting to be sent.
    pub fn resend(&self, parcel: JsValue) -> JsResult<Option<Dispatch>> {
        let parcel: Parcel = serde_wasm_bindgen::from_value(parcel)
            .map_err(|e| bad_input(&format!("a kept request cannot be read: {e}")))?;
        if parcel.state != KeepState::Waiting.name() {
            return Ok(None);
        }
        let batch = parcel.request.to_batch().map_err(|e| bad_input(&e))?;
        let dispatch = dispatch::Dispatch::new(
            vec![batch],
            parcel.attempt,
            parcel.historical,
            self.route.limits,
            self.route.gzip,
            None,
        );
        Ok(Some(Dispatch { inner: Some(dispatch), route: self.route.clone(), historical: parcel.historical }))
    }

    /// The ids of kept requests to read now: `[first, last]` (none when first > last).
    #[wasm_bindgen(js_name = parcelsToLookAt)]
    pub fn parcels_to_look_at(&self, floor: f64, from: Option<f64>, last: f64) -> Vec<f64> {
        let whole = |n: f64| if n.is_finite() && n > 0.0 { n as u64 } else { 0 };
        let range = parcels::to_look_at(whole(floor), from.map(whole), whole(last));
        vec![*range.start() as f64, *range.end() as f64]
    }

    /// What the kept requests read (`[[id, parcel or null], ...]`) call for: `why` is
    /// `minute`, `settings-saved` or `resend-parked`.
    #[wasm_bindgen(js_name = lookAtParcels)]
    pub fn look_at_parcels(
        &self,
        floor: f64,
        from: f64,
        last: f64,
        parcels_json: &str,
        why: &str,
        now_ms: f64,
    ) -> JsResult<JsValue> {
        let now = time(now_ms)?;
        let read: Vec<(u64, Option<Value>)> = from_json(parcels_json, "the kept requests")?;
        // A parcel that cannot be read is left alone (and keeps the history from
        // advancing): it is reported, never dropped.
        let mut unreadable = Vec::new();
        let parcels: Vec<(u64, Option<Parcel>)> = read
            .into_iter()
            .map(|(id, value)| match value.map(serde_json::from_value::<Parcel>) {
                Some(Ok(parcel)) => (id, Some(parcel)),
                Some(Err(_)) => {
                    unreadable.push(id);
                    (id, Some(unreadable_parcel()))
                }
                None => (id, None),
            })
            .collect();
        let why = match why {
            "settings-saved" => Look::SettingsSaved,
            "resend-parked" => Look::ResendParked,
            _ => Look::Minute,
        };
        let looked = parcels::look(floor as u64, from as u64, last as u64, &parcels, why, now.timestamp_millis());
        Ok(to_js(&LookedOut {
            floor: looked.floor,
            next_from: looked.next_from,
            open: looked.open,
            parked: looked.parked,
            send: looked.send.into_iter().filter(|(id, _)| !unreadable.contains(id)).collect(),
            events: looked.events,
            unreadable,
        }))
    }

    /// Pacing of `count` historical events: `undefined` when no rate is set, else
    /// `{allowed, bucket, waitSeconds}` (store `bucket` either way).
    pub fn pace(&self, bucket: JsValue, count: f64, now_ms: f64) -> JsResult<JsValue> {
        let Some(per_minute) = self.core.settings.events_per_minute else { return Ok(JsValue::UNDEFINED) };
        let stored: Option<Bucket> = serde_wasm_bindgen::from_value(bucket).ok().flatten();
        let take = pace::take(stored, per_minute, count.max(0.0) as u64, time(now_ms)?.timestamp_millis());
        Ok(to_js(&PaceOut { allowed: take.allowed, bucket: take.bucket, wait_seconds: take.wait_seconds }))
    }

    /// The ids of the history's records to read now: `[first, last]` (none when
    /// first > last).
    #[wasm_bindgen(js_name = historyRecordsToRead)]
    pub fn history_records_to_read(&self, floor: f64, last: f64) -> Vec<f64> {
        let whole = |n: f64| if n.is_finite() && n > 0.0 { n as u64 } else { 0 };
        let (first, end) = inflight::to_read(whole(floor), whole(last));
        vec![first as f64, end as f64]
    }

    /// One minute's look at the history: `state` as stored (or `null` to begin),
    /// `observations` as read from storage, and the history's records from `floor` to
    /// the newest id `last` (`[[id, record or null], ...]`, JSON). Returns the state to
    /// store, what to do, the records' new floor and the records to forget.
    #[wasm_bindgen(js_name = exportTick)]
    pub fn export_tick(
        &self,
        state: Option<String>,
        observations: JsValue,
        floor: f64,
        last: f64,
        records_json: &str,
        now_ms: f64,
    ) -> JsResult<JsValue> {
        let now = time(now_ms)?;
        let mut seen: Observations = serde_wasm_bindgen::from_value(observations)
            .map_err(|e| bad_input(&format!("the export observations cannot be read: {e}")))?;
        let read: Vec<(u64, Option<Value>)> = from_json(records_json, "the history's records")?;
        let read = read
            .into_iter()
            .map(|(id, value)| (id, value.map(|v| serde_json::from_value::<Record>(v).map_err(|e| e.to_string()))))
            .collect();
        let whole = |n: f64| if n.is_finite() && n > 0.0 { n as u64 } else { 0 };
        seen.records = Seen { floor: whole(floor), last: whole(last), read };
        let mut state = self.stored_state(state, now)?;
        let actions = state.tick(&seen, now);
        Ok(export_step(&state, actions))
    }

    /// The record of a page reaching the app again (`record` as stored), or handed
    /// back to the host with RetryError (`handedBack`).
    #[wasm_bindgen(js_name = pageRecord)]
    pub fn page_record(&self, record: JsValue, handed_back: bool, now_ms: f64) -> JsResult<JsValue> {
        let now = time(now_ms)?.timestamp_millis();
        let record: PageRecord = serde_wasm_bindgen::from_value::<Record>(record)
            .ok()
            .and_then(|r| match r {
                Record::Page(page) => Some(page),
                Record::Late(_) => None,
            })
            .ok_or_else(|| bad_input("a page's record cannot be read"))?;
        let record = if handed_back { record.handed_back(now) } else { record.again(now) };
        Ok(to_js(&Record::Page(record)))
    }

    /// `[ADVANCED] Force restart`: the export again, from the acknowledged position.
    #[wasm_bindgen(js_name = exportRestart)]
    pub fn export_restart(&self, state: Option<String>, now_ms: f64) -> JsResult<JsValue> {
        let now = time(now_ms)?;
        let mut state = self.stored_state(state, now)?;
        let actions = state.restart(now);
        Ok(export_step(&state, actions))
    }

    fn stored_state(&self, state: Option<String>, now: DateTime<Utc>) -> JsResult<ExportState> {
        match state {
            Some(json) => from_json(&json, "the stored export state"),
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
}

/// Stands in for a kept request that cannot be read: counted as open, never sent.
fn unreadable_parcel() -> Parcel {
    Parcel {
        request: StoredRequest { body: String::new(), encoding: String::new(), json_bytes: 0, uuids: Vec::new() },
        historical: true,
        attempt: 1,
        state: "unreadable".into(),
        due_at: i64::MAX / 2,
        reason: String::new(),
    }
}

/// Events handed to the core, transformed and batched, before any is sent.
#[wasm_bindgen]
pub struct Page {
    outcome: Outcome,
    historical: bool,
    route: Route,
    held: Option<String>,
    epoch: Option<u32>,
}

impl Page {
    fn new(outcome: Outcome, historical: bool, route: Route, held: Option<String>, epoch: Option<u32>) -> Page {
        Page { outcome, historical, route, held, epoch }
    }

    /// For a historical page with something of the history in it: the storage key that
    /// knows the page again when the host offers it again (the same events).
    fn page_key(&self) -> Option<String> {
        let o = &self.outcome;
        let events = o.batches.iter().map(|b| b.uuids.len()).sum::<usize>();
        let counted = !o.batches.is_empty() || !o.rejected.is_empty();
        match self.epoch {
            Some(epoch) if counted => {
                Some(format!("migrator_page_{epoch}_{:08x}_{}_{}", o.fingerprint, events, o.rejected.len()))
            }
            _ => None,
        }
    }
}

#[wasm_bindgen]
impl Page {
    /// What became of the events: counts, rejections, the late instants of a live page,
    /// and for a historical page the storage key that finds its record in flight.
    #[wasm_bindgen(getter)]
    pub fn info(&self) -> JsValue {
        let o = &self.outcome;
        let events = o.batches.iter().map(|b| b.uuids.len()).sum::<usize>();
        to_js(&PageOut {
            requests: o.batches.len(),
            events,
            rejected: o.rejected.iter().map(RejectedOut::from).collect(),
            other_path: o.other_path,
            after_cutover: o.after_cutover,
            outside_window: o.outside_window,
            ignored: o.ignored,
            left_to_history: o.left_to_history,
            late: o.late.iter().map(|at| Record::Late(LateRecord { at: *at })).collect(),
            // An empty page, or one with history in it: the host's export is reading (its
            // live buffer never hands over an empty batch).
            from_export: self.historical && (o.read == 0 || o.on_path > 0),
            source_db: o.source_db.as_deref(),
            page_key: self.page_key(),
            // Live events on the historical path: the host's own export buffer, flushed
            // by its timer on this thread, so live events waiting here are due too.
            flush_live: self.historical && o.other_path > 0,
        })
    }

    /// The record of this page in flight, to store under a new id (`None` when the
    /// page holds nothing of the history).
    pub fn record(&self, now_ms: f64) -> JsResult<JsValue> {
        let now = time(now_ms)?.timestamp_millis();
        let record = match (self.epoch, self.outcome.earliest, self.page_key()) {
            (Some(epoch), Some(from), Some(key)) => Some(Record::Page(PageRecord::new(epoch, from, key, now))),
            _ => None,
        };
        Ok(to_js(&record))
    }

    /// The dispatch that sends this page's requests; `held`: a setting is known to be
    /// wrong (its message), so everything is kept without sending.
    pub fn dispatch(self, held: Option<String>) -> Dispatch {
        let held = held.or(self.held);
        let inner =
            dispatch::Dispatch::new(self.outcome.batches, 1, self.historical, self.route.limits, self.route.gzip, held);
        Dispatch { inner: Some(inner), route: self.route, historical: self.historical }
    }
}

/// Requests being sent: `nextRequest()` gives one, `answer(...)` takes what came back,
/// `finish()` says what became of everything.
#[wasm_bindgen]
pub struct Dispatch {
    inner: Option<dispatch::Dispatch>,
    route: Route,
    historical: bool,
}

#[wasm_bindgen]
impl Dispatch {
    /// The next request to send, `{url, body, encoding}`, or `undefined`. `body` is
    /// JSON text, or base64 of the gzip for the host's `Buffer` (see `encoding`).
    #[wasm_bindgen(js_name = nextRequest)]
    pub fn next_request(&mut self) -> JsValue {
        let Some(batch) = self.inner.as_mut().and_then(|d| d.next_request()) else { return JsValue::UNDEFINED };
        // TRICKY: bodies cross as strings. A Uint8Array made in the sandbox reaches the
        // host's fetch as a vm2 proxy, which node-fetch does not recognise as bytes and
        // sends as "31,139,8,...". Gzip goes as base64 for the host's Buffer to decode.
        let stored = StoredRequest::of(batch);
        let url = if batch.body.is_gzip() { &self.route.gzip_url } else { &self.route.json_url };
        to_js(&SendOut { url, body: stored.body, encoding: stored.encoding })
    }

    /// The answer to the request `nextRequest()` gave: its status (0 when none came), its
    /// `Retry-After`, its text, and the error code when none came (e.g. `EPIPE`).
    pub fn answer(
        &mut self,
        status: u16,
        retry_after: Option<String>,
        text: Option<String>,
        error: Option<String>,
        now_ms: f64,
    ) -> JsResult<()> {
        let now = time(now_ms)?;
        let retry_after = retry_after.and_then(|header| crate::delivery::retry_after_seconds(&header, now));
        if let Some(inner) = self.inner.as_mut() {
            inner.answer(status, retry_after, text.as_deref().unwrap_or(""), error.as_deref());
        }
        Ok(())
    }

    /// What became of every event: `{delivered, rejected, keep: [{parcel, delaySeconds}],
    /// retries, parked, stop, warn, error}`. Store each `parcel`; for a waiting one,
    /// run the resend job after `delaySeconds`.
    pub fn finish(mut self, now_ms: f64) -> JsResult<JsValue> {
        let now = time(now_ms)?;
        let summary = self.inner.take().map(|d| d.finish(now)).unwrap_or_default();
        Ok(summary_out(summary, self.historical, now))
    }
}

fn summary_out(summary: Summary, historical: bool, now: DateTime<Utc>) -> JsValue {
    let keep: Vec<KeepOut> = summary
        .keep
        .iter()
        .map(|k| KeepOut {
            parcel: Parcel {
                request: StoredRequest::of(&k.batch),
                historical,
                attempt: k.attempt,
                state: k.state.name().into(),
                due_at: now.timestamp_millis() + (k.delay_seconds as i64) * 1000,
                reason: k.reason.clone(),
            },
            delay_seconds: (k.state == KeepState::Waiting).then_some(k.delay_seconds.max(1)),
            parked: k.state == KeepState::Parked,
            events: k.batch.uuids.len(),
        })
        .collect();
    to_js(&SummaryOut {
        delivered: summary.delivered,
        rejected: summary.rejected.iter().map(RejectedOut::from).collect(),
        parked: keep.iter().filter(|k| k.parked).map(|k| k.events).sum(),
        keep,
        retries: summary.retries,
        stop: summary.stop.map(|stop| stop.app_words()),
        warn: summary.warn,
        error: summary.error,
    })
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

fn export_step(state: &ExportState, actions: Actions) -> JsValue {
    to_js(&ExportStepOut {
        // Serialising our own state cannot fail.
        state: serde_json::to_string(state).unwrap_or_default(),
        done: state.done,
        share_done: state.share_done(),
        epoch: state.epoch,
        reset_keys: if actions.reset_host { HOST_EXPORT_KEYS.to_vec() } else { Vec::new() },
        start: actions.start.as_ref().map(plan_out),
        log: actions.log,
        warn: actions.warn,
        floor: actions.floor,
        forget: actions.forget.into_iter().map(|f| (f.id, f.key)).collect(),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportStepOut {
    state: String,
    done: bool,
    share_done: f64,
    epoch: u32,
    reset_keys: Vec<&'static str>,
    start: Option<ExportPlanOut>,
    log: Vec<String>,
    warn: Vec<String>,
    /// The history records' floor to store, and `[id, pageKey or null]` to delete.
    floor: Option<u64>,
    forget: Vec<(u64, Option<String>)>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SettingsOut<'a> {
    destination: &'a str,
    batch_url: String,
    batch_size: usize,
    batch_max_bytes: usize,
    gzip: bool,
    events_to_ignore: Vec<&'a String>,
    events_per_minute: Option<u64>,
    start_date: Option<String>,
    posthog_version: &'a str,
    historical_events: &'a str,
    debug: bool,
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
struct SendOut<'a> {
    url: &'a str,
    body: String,
    encoding: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeepOut {
    parcel: Parcel,
    delay_seconds: Option<u64>,
    #[serde(skip)]
    parked: bool,
    #[serde(skip)]
    events: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryOut<'a> {
    delivered: usize,
    rejected: Vec<RejectedOut<'a>>,
    keep: Vec<KeepOut>,
    retries: usize,
    /// Events parked by this dispatch.
    parked: usize,
    stop: Option<String>,
    warn: Vec<String>,
    error: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LookedOut {
    floor: u64,
    next_from: Option<u64>,
    open: u64,
    parked: u64,
    send: Vec<(u64, Parcel)>,
    events: usize,
    unreadable: Vec<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaceOut {
    allowed: bool,
    bucket: Bucket,
    wait_seconds: u64,
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
struct PageOut<'a> {
    requests: usize,
    events: usize,
    rejected: Vec<RejectedOut<'a>>,
    other_path: usize,
    after_cutover: usize,
    outside_window: usize,
    ignored: usize,
    left_to_history: usize,
    /// Records to keep for the live events left to an export that may have read past them.
    late: Vec<Record>,
    from_export: bool,
    source_db: Option<&'a str>,
    page_key: Option<String>,
    flush_live: bool,
}

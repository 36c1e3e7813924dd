//! The core's front: settings plus the two paths events take, historical and live.
//!
//! The two paths never overlap: the moment the app was installed (the cut-over) ends
//! the historical window; a live event stamped before it goes by the rule of
//! `handover`.

use crate::scan::{self, EventFields};
use chrono::{DateTime, Duration, Utc};

use crate::batch::{Batch, Batcher};
use crate::export::ExportState;
use crate::export_plan::{ExportPlan, Window};
use crate::handover::{self, HistoryView, LiveRoute};
use crate::page::{self, Lanes, PageHooks, PageOptions};
use crate::settings::Settings;
use crate::transform::{self, Prepared, Rejected, Route, SourceEvent};
use crate::version::ExportShape;

/// The plugin server's own metrics, which it captures into the project: they describe
/// the source's apps, not the user's product, and are skipped unless the settings
/// keep them. Other `$$` events (posthog-js's `$$heatmap`, ...) are the user's.
pub const HOST_METRICS_EVENT: &str = "$$plugin_metrics";

/// Live events wait at most this long for a full batch, checked on every later call
/// (the sandbox has no timer). The host's own export buffer waits as long.
pub const LIVE_MAX_WAIT: Duration = Duration::seconds(10);

/// What became of a list of events handed to the core.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Request bodies ready to send, in event order.
    pub batches: Vec<Batch>,
    pub rejected: Vec<Rejected>,
    /// Events that belong to the other path (live on the historical one, and back).
    pub other_path: usize,
    /// Historical events at or after the cut-over: the live path has them.
    pub after_cutover: usize,
    /// Historical events outside the day being exported (the host's last window
    /// runs past its end): that day's own export sends them.
    pub outside_window: usize,
    /// Events named in the "events to ignore" setting (and the host's own metrics).
    pub ignored: usize,
    /// Live events stamped before the cut-over that the export will read.
    pub left_to_history: usize,
    /// The instants (ms) of live events left to an export that may have read past them.
    pub late: Vec<i64>,
    /// The earliest historical event sent or rejected (ms): where the page's export
    /// window begins, at the latest.
    pub earliest: Option<i64>,
    pub used_current_time: usize,
    pub derived_uuid: usize,
    /// Events read, and those of them on the path asked for (before any bound).
    pub read: usize,
    pub on_path: usize,
    /// The database the history was read from, as its events say (PostHog >= 1.30).
    pub source_db: Option<String>,
    /// Identifies the events of this path in the input (a checksum of their uuids and
    /// their number), so a page offered again is known as the same page.
    pub fingerprint: u32,
}

impl Outcome {
    fn note_earliest(&mut self, at: Option<DateTime<Utc>>) {
        if let Some(at) = at.map(|t| t.timestamp_millis()) {
            self.earliest = Some(self.earliest.map_or(at, |e| e.min(at)));
        }
    }
}

/// The shim handed over something that is not a list of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expected a JSON array of events: {}", self.0)
    }
}

/// Live events stamped before the cut-over need the history's view, which the shim
/// did not give.
pub const NEEDS_HISTORY: &str = "live events older than the cut-over need the history's state to be routed";

#[derive(Debug)]
pub struct Migrator {
    pub settings: Settings,
    cutover: DateTime<Utc>,
    live: Batcher,
    /// When the oldest live event still waiting arrived.
    live_since: Option<DateTime<Utc>>,
}

impl Migrator {
    pub fn new(settings: Settings, cutover: DateTime<Utc>) -> Migrator {
        let live = Batcher::new(&settings.project_api_key, false, settings.limits, settings.gzip);
        Migrator { settings, cutover, live, live_since: None }
    }

    pub fn cutover(&self) -> DateTime<Utc> {
        self.cutover
    }

    /// History runs from the start date (or the first event) up to the cut-over.
    pub fn export_plan(&self) -> ExportPlan {
        ExportPlan { job: self.settings.version.export_job, date_from: self.settings.start, date_to: self.cutover }
    }

    /// Historical events of one export page, as whole batches; live events, those the
    /// live path covers, and those outside `window` (the chunk being exported, when
    /// known) are skipped.
    pub fn export_historical(
        &self,
        events_json: &str,
        now: DateTime<Utc>,
        window: Option<Window>,
    ) -> Result<Outcome, InputError> {
        let events = parse_events(events_json)?;
        let mut batcher = Batcher::new(&self.settings.project_api_key, true, self.settings.limits, self.settings.gzip);
        let bounds = Bounds { cutover: Some(self.cutover), window: window.as_ref(), handover: None };
        let mut outcome = run(&self.settings, events, Route::Historical, bounds, now, &mut batcher);
        outcome.batches.extend(batcher.flush());
        Ok(outcome)
    }

    /// Whether some of these live events are stamped before the cut-over, so that
    /// `add_live` needs the history's view.
    pub fn live_needs_history(&self, events_json: &str) -> Result<bool, InputError> {
        let events = parse_events(events_json)?;
        Ok(events.into_iter().any(|event| {
            let event = SourceEvent::from_scan(event);
            route(&self.settings, &event) == Route::Live
                && transform::stored_at(&event).is_some_and(|at| at < self.cutover)
        }))
    }

    /// Live events join those already waiting; batches that filled up, or waited
    /// longer than `LIVE_MAX_WAIT`, come back at once. `history`: the history's view,
    /// needed when some are stamped before the cut-over (`live_needs_history`).
    pub fn add_live(
        &mut self,
        events_json: &str,
        now: DateTime<Utc>,
        history: Option<&HistoryView>,
    ) -> Result<Outcome, InputError> {
        let handover = match history {
            Some(view) => Some((self.history_state(view, now), view)),
            None if self.live_needs_history(events_json)? => return Err(InputError(NEEDS_HISTORY.into())),
            None => None,
        };
        let events = parse_events(events_json)?;
        let bounds = Bounds { handover: handover.as_ref().map(|(state, view)| (state, *view)), ..Bounds::default() };
        let mut outcome = run(&self.settings, events, Route::Live, bounds, now, &mut self.live);
        if !outcome.batches.is_empty() {
            // A batch closed: what still waits arrived in this call.
            self.live_since = None;
        }
        self.live_since = if self.live.is_empty() { None } else { self.live_since.or(Some(now)) };
        outcome.batches.extend(self.flush_live_if_due(now));
        Ok(outcome)
    }

    /// The waiting live events, if they have waited long enough.
    pub fn flush_live_if_due(&mut self, now: DateTime<Utc>) -> Option<Batch> {
        let due = self.live_since.is_some_and(|since| now - since >= LIVE_MAX_WAIT);
        if due {
            self.flush_live()
        } else {
            None
        }
    }

    pub fn flush_live(&mut self) -> Option<Batch> {
        self.live_since = None;
        self.live.flush()
    }

    pub fn live_waiting(&self) -> usize {
        self.live.len()
    }

    /// The export state a view holds (before the first minute task: the one it will make).
    /// One that cannot be read counts as a history that is through: every live event is
    /// then sent (at worst twice), none left to an export that may not read it.
    fn history_state(&self, view: &HistoryView, now: DateTime<Utc>) -> ExportState {
        let mut state = ExportState::new(&self.export_plan(), now);
        match view.export_state.as_deref().map(serde_json::from_str::<ExportState>) {
            None => state,
            Some(Ok(stored)) => stored,
            Some(Err(_)) => {
                state.done = true;
                state
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bounds<'a> {
    cutover: Option<DateTime<Utc>>,
    window: Option<&'a Window>,
    /// Live events before the cut-over: the export's state and the host's progress.
    handover: Option<(&'a ExportState, &'a HistoryView)>,
}

/// The app's side of the page step: the path asked for, the handover, the cut-over and
/// window bounds, and what its outcome counts (fingerprint, earliest, source db).
struct AppHooks<'a> {
    shape: ExportShape,
    path: Route,
    bounds: Bounds<'a>,
    now: DateTime<Utc>,
    outcome: Outcome,
    fingerprint: crc32fast::Hasher,
}

impl PageHooks for AppHooks<'_> {
    /// The host's list is parsed whole before the step: nothing in it is unreadable.
    type Unreadable = std::convert::Infallible;

    fn on_path(&mut self, event: &SourceEvent<'_>) -> bool {
        transform::path(event, self.shape) == self.path
    }

    fn before_transform(&mut self, event: &SourceEvent<'_>) -> bool {
        let Some((state, view)) = self.bounds.handover else { return true };
        let at = transform::stored_at(event).unwrap_or(self.now);
        match handover::route(state, view, at) {
            LiveRoute::Send => true,
            LiveRoute::History => {
                self.outcome.left_to_history += 1;
                false
            }
            LiveRoute::Late => {
                self.outcome.left_to_history += 1;
                self.outcome.late.push(at.timestamp_millis());
                false
            }
        }
    }

    fn prepared(&mut self, event: &SourceEvent<'_>, prepared: &Prepared) -> bool {
        let outcome = &mut self.outcome;
        if self.bounds.cutover.is_some_and(|until| prepared.at >= until) {
            outcome.after_cutover += 1;
            return false;
        }
        if self.bounds.window.is_some_and(|w| !w.holds(prepared.at)) {
            outcome.outside_window += 1;
            return false;
        }
        if self.path == Route::Historical && outcome.source_db.is_none() {
            outcome.source_db = transform::source_db(event);
        }
        outcome.used_current_time += usize::from(prepared.used_current_time);
        outcome.derived_uuid += usize::from(prepared.derived_uuid);
        self.fingerprint.update(prepared.uuid.as_bytes());
        outcome.note_earliest(Some(prepared.at));
        true
    }

    fn rejected(&mut self, event: &SourceEvent<'_>, rejected: Rejected) {
        self.fingerprint.update(rejected.uuid.as_deref().unwrap_or("-").as_bytes());
        self.outcome.note_earliest(transform::event_at(event));
        self.outcome.rejected.push(rejected)
    }
}

/// Routes each event through the core's page step; those on `path` (and within
/// `bounds`) are transformed and packed into `batcher`.
fn run(
    settings: &Settings,
    events: Vec<Option<EventFields<'_>>>,
    path: Route,
    bounds: Bounds<'_>,
    now: DateTime<Utc>,
    batcher: &mut Batcher,
) -> Outcome {
    let options = PageOptions {
        events_to_ignore: &settings.events_to_ignore,
        also_ignore: (!settings.copy_plugin_metrics).then_some(HOST_METRICS_EVENT),
        now,
    };
    let mut hooks = AppHooks {
        shape: settings.version.shape,
        path,
        bounds,
        now,
        outcome: Outcome::default(),
        fingerprint: crc32fast::Hasher::new(),
    };
    let mut batches = Vec::new();
    let lanes = Lanes { batcher, young: None };
    let tally = page::batches(&options, events.into_iter().map(Ok), &mut hooks, lanes, &mut batches);
    let mut outcome = hooks.outcome;
    outcome.batches = batches;
    outcome.read = tally.read;
    outcome.ignored = tally.ignored;
    outcome.other_path = tally.other_path;
    outcome.on_path = tally.on_path;
    outcome.fingerprint = hooks.fingerprint.finalize();
    outcome
}

/// Which path an event belongs to, by the settings.
fn route(settings: &Settings, event: &SourceEvent<'_>) -> Route {
    if !settings.copy_plugin_metrics && event.name.as_deref() == Some(HOST_METRICS_EVENT) {
        return Route::Ignored;
    }
    transform::route(event, settings.version.shape, &settings.events_to_ignore)
}

/// The events of a JSON array, read in one pass as their fields (`None` for an item
/// that is not an object).
fn parse_events(events_json: &str) -> Result<Vec<Option<EventFields<'_>>>, InputError> {
    match scan::array_of_events(events_json) {
        Ok(Some(events)) => Ok(events),
        Ok(None) => Err(InputError("the JSON is not an array".into())),
        Err(_) if !events_json.trim_start().starts_with('[') => Err(InputError("the JSON is not an array".into())),
        Err(at) => Err(InputError(format!("the JSON does not parse (at byte {})", at.at))),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::timestamp;
    use crate::version::ExportJob;
    use serde_json::{json, Value};

    fn now() -> DateTime<Utc> {
        timestamp::parse_iso("2026-11-23T12:00:00Z").unwrap()
    }

    fn migrator(version: &str, batch_size: usize) -> Migrator {
        let config = json!({"host": "http://127.0.0.1:9", "projectApiKey": "phc_dest", "posthogVersion": version,
                            "batchSize": batch_size.to_string(), "gzip": "OFF", "eventsToIgnore": "$feature_flag_called"});
        Migrator::new(Settings::parse(config.as_object().unwrap(), now()).unwrap(), now())
    }

    /// The history's view once it is complete: every live event goes live.
    fn through(m: &Migrator) -> HistoryView {
        let mut state = ExportState::new(&m.export_plan(), now());
        state.done = true;
        HistoryView { export_state: Some(serde_json::to_string(&state).unwrap()), ..HistoryView::default() }
    }

    fn body(batch: &Batch) -> Value {
        serde_json::from_slice(batch.body.bytes()).unwrap()
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
        let outcome = m.export_historical(&events.to_string(), now(), None).unwrap();
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
    fn the_hosts_own_metrics_are_skipped_unless_kept_and_other_dollar_events_go() {
        let mut m = migrator("Latest", 10);
        let view = through(&m);
        let named = |name: &str, n: usize| {
            let mut e = event(n, false);
            e["event"] = json!(name);
            e
        };
        let events = json!([named("$$plugin_metrics", 1), named("$$heatmap", 2)]).to_string();
        let outcome = m.add_live(&events, now(), Some(&view)).unwrap();
        assert_eq!((outcome.ignored, m.live_waiting()), (1, 1));
        let config = json!({"host": "http://127.0.0.1:9", "projectApiKey": "phc_dest", "copyPluginMetrics": "ON"});
        let mut keep = Migrator::new(Settings::parse(config.as_object().unwrap(), now()).unwrap(), now());
        let outcome = keep.add_live(&events, now(), Some(&view)).unwrap();
        assert_eq!((outcome.ignored, keep.live_waiting()), (0, 2));
        let mut old = named("$$plugin_metrics", 3);
        old["properties"]["$$is_historical_export_event"] = json!(true);
        let history = m.export_historical(&json!([old]).to_string(), now(), None).unwrap();
        assert_eq!((history.ignored, history.batches.len()), (1, 0), "not from the history either");
        // The host's live buffer, with its metrics in it, is no page of the history.
        let buffer = m.export_historical(&events, now(), None).unwrap();
        assert_eq!((buffer.read, buffer.on_path), (2, 0));
    }

    #[test]
    fn a_page_says_which_database_the_history_comes_from() {
        let m = migrator("1.30.0", 10);
        let mut from_clickhouse = event(1, true);
        from_clickhouse["properties"]["$$historical_export_source_db"] = json!("clickhouse");
        let outcome = m.export_historical(&json!([event(2, true), from_clickhouse]).to_string(), now(), None).unwrap();
        assert_eq!(outcome.source_db.as_deref(), Some("clickhouse"));
        assert_eq!(m.export_historical(&json!([event(3, true)]).to_string(), now(), None).unwrap().source_db, None);
    }

    #[test]
    fn version_1_29_exports_are_the_events_without_uuid() {
        let m = migrator("1.29.0", 10);
        let mut old = event(1, false);
        old.as_object_mut().unwrap().remove("uuid");
        let events = json!([old, event(2, false), {"event": "nameless-distinct"}]);
        let outcome = m.export_historical(&events.to_string(), now(), None).unwrap();
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
        let view = through(&m);
        let first = m
            .add_live(&json!([event(1, false), event(2, false), event(9, true)]).to_string(), now(), Some(&view))
            .unwrap();
        assert!(first.batches.is_empty());
        assert_eq!((m.live_waiting(), first.other_path), (2, 1));
        let second = m.add_live(&json!([event(3, false), event(4, false)]).to_string(), now(), Some(&view)).unwrap();
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
    fn live_events_that_waited_long_enough_go_on_a_later_call() {
        let mut m = migrator("Latest", 100);
        let view = through(&m);
        let t0 = now();
        assert!(m.add_live(&json!([event(1, false)]).to_string(), t0, Some(&view)).unwrap().batches.is_empty());
        let early = t0 + LIVE_MAX_WAIT - Duration::milliseconds(1);
        assert!(m.add_live(&json!([event(2, false)]).to_string(), early, Some(&view)).unwrap().batches.is_empty());
        assert_eq!(m.flush_live_if_due(early), None);
        // The age counts from the oldest waiting event, not the newest.
        let due = m.add_live(&json!([event(3, false)]).to_string(), t0 + LIVE_MAX_WAIT, Some(&view)).unwrap();
        assert_eq!(due.batches.len(), 1);
        assert_eq!(due.batches[0].uuids.len(), 3);
        assert_eq!(m.live_waiting(), 0);
        // After a flush the clock starts again with the next event.
        let later = t0 + Duration::minutes(5);
        assert!(m.add_live(&json!([event(4, false)]).to_string(), later, Some(&view)).unwrap().batches.is_empty());
        assert_eq!(m.flush_live_if_due(later + LIVE_MAX_WAIT - Duration::milliseconds(1)), None);
        assert_eq!(m.flush_live_if_due(later + LIVE_MAX_WAIT).map(|b| b.uuids.len()), Some(1));
        assert_eq!(m.flush_live_if_due(later + Duration::hours(1)), None);
    }

    #[test]
    fn history_stops_at_the_cutover_which_the_live_path_takes_over() {
        let m = migrator("1.30.0", 100);
        let at = |n: usize, ts: &str| {
            let mut e = event(n, true);
            e["timestamp"] = json!(ts);
            e
        };
        let events = json!([
            at(1, "2026-11-23T11:59:59.999Z"),
            at(2, "2026-11-23T12:00:00.000Z"),
            at(3, "2026-11-23T12:09:00Z")
        ]);
        let outcome = m.export_historical(&events.to_string(), now(), None).unwrap();
        assert_eq!(outcome.batches[0].uuids, ["00000000-0000-4000-8000-000000000001"]);
        assert_eq!(outcome.after_cutover, 2);
    }

    #[test]
    fn history_outside_the_day_being_exported_is_left_to_that_day() {
        let m = migrator("1.30.0", 100);
        let at = |n: usize, ts: &str| {
            let mut e = event(n, true);
            e["timestamp"] = json!(ts);
            e
        };
        let t = |s: &str| timestamp::parse_iso(s).unwrap();
        let events = json!([
            at(1, "2021-05-01T23:59:59.999Z"),
            at(2, "2021-05-02T00:00:00Z"),
            at(3, "2021-05-02T23:59:59Z"),
            at(4, "2021-05-03T00:00:00Z")
        ]);
        let window = Window { from: Some(t("2021-05-02T00:00:00Z")), to: t("2021-05-03T00:00:00Z"), only: None };
        let outcome = m.export_historical(&events.to_string(), now(), Some(window)).unwrap();
        assert_eq!(outcome.batches[0].uuids.len(), 2);
        assert_eq!(outcome.outside_window, 2);
        assert_eq!(outcome.earliest, Some(t("2021-05-02T00:00:00Z").timestamp_millis()));
        let open = Window { from: None, to: t("2021-05-03T00:00:00Z"), only: None };
        assert_eq!(m.export_historical(&events.to_string(), now(), Some(open)).unwrap().outside_window, 1);
        // A catch-up sends only the events at its instants.
        let instant = t("2021-05-02T23:59:59Z").timestamp_millis();
        let only =
            Window { from: Some(t("2021-05-02T00:00:00Z")), to: t("2021-05-03T00:00:00Z"), only: Some(vec![instant]) };
        let outcome = m.export_historical(&events.to_string(), now(), Some(only)).unwrap();
        assert_eq!((outcome.batches[0].uuids.len(), outcome.outside_window), (1, 3));
        assert_eq!(outcome.earliest, Some(instant));
    }

    #[test]
    fn live_events_before_the_cutover_follow_the_handover_rule() {
        let mut m = migrator("1.29.0", 100);
        let live = |n: usize, ts: &str| {
            let mut e = event(n, false);
            e["timestamp"] = json!(ts);
            e
        };
        let new = json!([live(1, "2026-11-23T12:00:01Z")]).to_string();
        assert!(!m.live_needs_history(&new).unwrap());
        assert_eq!(m.add_live(&new, now(), None).unwrap().left_to_history, 0);
        let old = json!([live(2, "2026-11-23T11:59:57Z"), live(3, "2026-11-23T12:00:02Z")]).to_string();
        assert!(m.live_needs_history(&old).unwrap());
        assert_eq!(m.add_live(&old, now(), None).unwrap_err().0, NEEDS_HISTORY);
        // Before the export starts, an event held back while the app loaded is the history's.
        let outcome = m.add_live(&old, now(), Some(&HistoryView::default())).unwrap();
        assert_eq!((outcome.left_to_history, outcome.late.len()), (1, 0));
        assert_eq!(m.live_waiting(), 2, "the events after the cut-over wait for their batch");
        // The export running, its cursor past the event's window: its instant is late.
        let mut state = ExportState::new(&m.export_plan(), now());
        state.tick(&crate::export::Observations::default(), now());
        let view = HistoryView {
            export_state: Some(serde_json::to_string(&state).unwrap()),
            host_cursor: Some(now().timestamp_millis()),
            host_min: Some(0),
            ..HistoryView::default()
        };
        let outcome = m.add_live(&old, now(), Some(&view)).unwrap();
        assert_eq!(outcome.late, [timestamp::parse_iso("2026-11-23T11:59:57Z").unwrap().timestamp_millis()]);
        // Its clock 1 h slow, a client sent it 3 s after the event: stored 3 s before now.
        let mut skewed = live(4, "2026-11-23T10:59:57Z");
        skewed["sent_at"] = json!("2026-11-23T11:00:00Z");
        skewed["now"] = json!("2026-11-23T12:00:00Z");
        let outcome = m.add_live(&json!([skewed]).to_string(), now(), Some(&view)).unwrap();
        assert_eq!(outcome.late, [timestamp::parse_iso("2026-11-23T11:59:57Z").unwrap().timestamp_millis()]);
        // A state that cannot be read sends everything rather than risk leaving it.
        let bad = HistoryView { export_state: Some("{".into()), ..HistoryView::default() };
        assert_eq!(m.add_live(&old, now(), Some(&bad)).unwrap().left_to_history, 0);
    }

    #[test]
    fn the_export_plan_covers_start_date_to_cutover_with_the_sources_job() {
        let config = json!({"host": "h.example.com", "projectApiKey": "k", "startDate": "2021-06-01", "posthogVersion": "1.29.0"});
        let settings = Settings::parse(config.as_object().unwrap(), now()).unwrap();
        let cutover = now() - Duration::hours(1);
        let plan = Migrator::new(settings, cutover).export_plan();
        assert_eq!(plan.job, ExportJob::V1);
        assert_eq!(plan.date_from.map(timestamp::format).as_deref(), Some("2021-06-01T00:00:00.000Z"));
        assert_eq!(plan.date_to, cutover);
        assert_eq!(migrator("Latest", 1).export_plan().job, ExportJob::V2);
        assert_eq!(migrator("Latest", 1).export_plan().date_from, None);
    }

    #[test]
    fn input_that_is_not_a_list_of_events_is_an_input_error() {
        let mut m = migrator("Latest", 3);
        for bad in ["", "{", "{\"event\": \"x\"}", "null"] {
            let err = m.export_historical(bad, now(), None).unwrap_err();
            assert!(err.to_string().starts_with("expected a JSON array of events"), "{err}");
            assert!(m.add_live(bad, now(), None).is_err());
        }
        assert_eq!(m.live_waiting(), 0);
    }
}

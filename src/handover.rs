//! Which path sends a live event stamped before the cut-over: every event must reach
//! the destination once, and a source older than PostHog 1.30 gives the historical
//! copy of an event a uuid of its own (derived from the stored row), so the
//! destination cannot merge the two copies.
//!
//! TRICKY: an event reaches `onEvent` after the source has stored it, so an export
//! that has not yet read the window of its timestamp will find it. Events the host
//! held back while the app loaded, and events batching or offline clients send late,
//! arrive live with timestamps before the cut-over. The rule, per event, by the time
//! the source stored it:
//! - at or after the cut-over: live (the history stops at the cut-over);
//! - behind the position, or with the history through: live (no run reads it again);
//! - in a window the export has not begun (V1: after the window at the host's cursor,
//!   which plugin server 1.10.5 hands out with an atomic increment, so no export chain
//!   has read a later one; V2: after the day chunks begun): the history's;
//! - between the position and that window: the export may have read its window before
//!   the event was stored, or not yet. It is left to the history and its instant is
//!   recorded ("late"); once the history is through, a short run reads those instants
//!   again and sends what it finds there, which the live path never sends.
//!
//! A history read from ClickHouse (PostHog 1.30 and later mark it so) keeps the source's
//! uuids, so two copies of an event merge at the destination; and there the V1 export
//! walks the time events were ingested, not their timestamps, which the rule cannot
//! follow: once a page says so, every live event goes live.
//! What remains: two different events stored at the same millisecond, one sent live
//! while the other's late instant waits to be taken up by the minute task, can reach
//! the destination twice.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde::Deserialize;

use crate::export::{ExportState, V1_WINDOW_MS};
use crate::version::ExportJob;

/// What the shim read of the history for the live path: the export state as stored
/// and the host's own progress keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HistoryView {
    /// `migrator_export`, as stored (`None` before the first minute task).
    pub export_state: Option<String>,
    /// V1: `timestamp_cursor` and `min_timestamp` (ms).
    pub host_cursor: Option<i64>,
    pub host_min: Option<i64>,
    /// V2: the starts of the day chunks its coordinator has begun (done or running).
    pub v2_chunks: Vec<String>,
    /// The database the history's pages said they came from, once one arrived.
    pub source_db: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveRoute {
    /// The live path sends it.
    Send,
    /// The export will read it.
    History,
    /// The export may have read past it: a catch-up reads its instant again.
    Late,
}

/// Where a live event the source stored at `at` goes, given the export's state.
pub fn route(state: &ExportState, view: &HistoryView, at: DateTime<Utc>) -> LiveRoute {
    if at >= state.to || view.source_db.as_deref() == Some("clickhouse") {
        return LiveRoute::Send;
    }
    let instant = at.timestamp_millis();
    if state.late.binary_search(&instant).is_ok() {
        return LiveRoute::History;
    }
    if state.done {
        return LiveRoute::Send;
    }
    let behind_position = state.position.is_some_and(|p| at < p);
    let Some(run) = &state.run else {
        // The next run starts at the position (or takes up the late instants).
        return if state.history_through() || behind_position { LiveRoute::Send } else { LiveRoute::History };
    };
    if let Some(only) = &run.only {
        // A catch-up reads its instants only.
        return if only.contains(&instant) { LiveRoute::Late } else { LiveRoute::Send };
    }
    if behind_position || run.from.is_some_and(|from| at < from) {
        return LiveRoute::Send;
    }
    let export = reading(state, view);
    if export.began_at.is_some_and(|first| at < first) {
        LiveRoute::Send
    } else if at >= export.unread_from {
        LiveRoute::History
    } else {
        LiveRoute::Late
    }
}

/// How far the running export has got, as far as anyone can tell.
struct Reading {
    /// Where it began, when the host chose that itself (V1 without a start date).
    began_at: Option<DateTime<Utc>>,
    /// No part of the export has read anything from here on.
    unread_from: DateTime<Utc>,
}

fn reading(state: &ExportState, view: &HistoryView) -> Reading {
    let from = state.run.as_ref().and_then(|run| run.from);
    let not_begun = Reading { began_at: None, unread_from: from.unwrap_or(DateTime::<Utc>::MIN_UTC) };
    let ms = |t: i64| DateTime::from_timestamp_millis(t);
    match state.export_job() {
        ExportJob::V1 => {
            // The host's keys are this run's once its `min_timestamp` is the run's start
            // (they are cleared before every start).
            let Some(min) = view.host_min.filter(|min| from.is_none_or(|from| *min == from.timestamp_millis())) else {
                return not_begun;
            };
            let began_at = if from.is_none() { ms(min) } else { None };
            match view.host_cursor.and_then(|cursor| ms(cursor.saturating_add(V1_WINDOW_MS))) {
                Some(unread_from) => Reading { began_at, unread_from },
                None => Reading { began_at, unread_from: ms(min).unwrap_or(not_begun.unread_from) },
            }
        }
        ExportJob::V2 => {
            let latest = view.v2_chunks.iter().filter_map(|d| crate::timestamp::parse_iso(d)).max();
            match latest {
                Some(day) => {
                    let next_midnight = (day.date_naive() + chrono::Days::new(1)).and_time(NaiveTime::MIN).and_utc();
                    Reading { began_at: None, unread_from: next_midnight.max(day + Duration::milliseconds(1)) }
                }
                None => not_begun,
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::export::Run;
    use crate::export_plan::ExportPlan;
    use crate::timestamp;

    fn t(text: &str) -> DateTime<Utc> {
        timestamp::parse_iso(text).unwrap()
    }

    fn state(job: ExportJob, from: Option<&str>) -> ExportState {
        let plan = ExportPlan { job, date_from: from.map(t), date_to: t("2021-06-03T12:00:00Z") };
        ExportState::new(&plan, t("2021-06-03T12:00:00Z"))
    }

    fn running(mut state: ExportState, from: Option<&str>, position: Option<&str>) -> ExportState {
        let now = t("2021-06-03T12:00:00Z");
        state.position = position.map(t);
        state.run = Some(Run {
            from: from.map(t),
            started_at: now,
            seen_running: true,
            restarts: 0,
            cursor: None,
            moved_at: now,
            looked_at: None,
            only: None,
        });
        state
    }

    fn v1_view(min: &str, cursor: &str) -> HistoryView {
        HistoryView {
            host_min: Some(t(min).timestamp_millis()),
            host_cursor: Some(t(cursor).timestamp_millis()),
            ..HistoryView::default()
        }
    }

    #[test]
    fn before_the_export_starts_every_event_since_the_start_date_is_the_historys() {
        let s = state(ExportJob::V1, Some("2021-06-01T00:00:00Z"));
        let none = HistoryView::default();
        assert_eq!(route(&s, &none, t("2021-06-03T11:59:57Z")), LiveRoute::History, "held back while the app loaded");
        assert_eq!(route(&s, &none, t("2021-06-03T12:00:00Z")), LiveRoute::Send, "the cut-over itself is live");
        assert_eq!(route(&s, &none, t("2021-05-31T23:59:59Z")), LiveRoute::Send, "before the start date");
        let all = state(ExportJob::V1, None);
        assert_eq!(route(&all, &none, t("2019-01-01T00:00:00Z")), LiveRoute::History);
        // A history from ClickHouse has the source's uuids: copies merge, all go live.
        let clickhouse = HistoryView { source_db: Some("clickhouse".into()), ..HistoryView::default() };
        assert_eq!(route(&s, &clickhouse, t("2021-06-03T11:59:57Z")), LiveRoute::Send);
    }

    #[test]
    fn while_v1_runs_the_window_at_the_hosts_cursor_divides_history_from_late() {
        let s = running(
            state(ExportJob::V1, Some("2021-06-01T00:00:00Z")),
            Some("2021-06-01T00:00:00Z"),
            Some("2021-06-02T00:00:00Z"),
        );
        let view = v1_view("2021-06-01T00:00:00Z", "2021-06-02T06:00:00Z");
        assert_eq!(route(&s, &view, t("2021-06-01T12:00:00Z")), LiveRoute::Send, "behind the position");
        assert_eq!(route(&s, &view, t("2021-06-02T03:00:00Z")), LiveRoute::Late, "read or not: unknown");
        assert_eq!(route(&s, &view, t("2021-06-02T06:09:59Z")), LiveRoute::Late, "the window being read");
        assert_eq!(route(&s, &view, t("2021-06-02T06:10:00Z")), LiveRoute::History, "a window not begun");
        // The host's keys of another run tell nothing: all of this run is still to read.
        let other = v1_view("2021-05-01T00:00:00Z", "2021-06-02T06:00:00Z");
        assert_eq!(route(&s, &other, t("2021-06-02T03:00:00Z")), LiveRoute::History);
    }

    #[test]
    fn v1_from_the_first_event_sends_what_is_older_than_it() {
        let s = running(state(ExportJob::V1, None), None, None);
        let view = v1_view("2021-05-20T00:00:00Z", "2021-05-21T00:00:00Z");
        assert_eq!(route(&s, &view, t("2021-05-19T00:00:00Z")), LiveRoute::Send);
        assert_eq!(route(&s, &view, t("2021-05-20T10:00:00Z")), LiveRoute::Late);
        assert_eq!(route(&s, &view, t("2021-05-22T00:00:00Z")), LiveRoute::History);
    }

    #[test]
    fn v2_is_divided_by_the_day_chunks_begun() {
        let s = running(
            state(ExportJob::V2, Some("2021-06-01T06:00:00Z")),
            Some("2021-06-01T06:00:00Z"),
            Some("2021-06-01T06:00:00Z"),
        );
        let none = HistoryView::default();
        assert_eq!(route(&s, &none, t("2021-06-01T07:00:00Z")), LiveRoute::History);
        let view = HistoryView { v2_chunks: vec!["2021-06-01T06:00:00.000Z".into()], ..HistoryView::default() };
        assert_eq!(route(&s, &view, t("2021-06-01T23:00:00Z")), LiveRoute::Late);
        assert_eq!(route(&s, &view, t("2021-06-02T00:00:00Z")), LiveRoute::History);
    }

    #[test]
    fn once_the_history_is_through_only_the_late_instants_are_read_again() {
        let mut s = state(ExportJob::V1, Some("2021-06-01T00:00:00Z"));
        s.position = Some(s.to);
        s.late = vec![t("2021-06-02T03:00:00Z").timestamp_millis()];
        let view = HistoryView::default();
        assert_eq!(route(&s, &view, t("2021-06-02T03:00:00Z")), LiveRoute::History, "a catch-up will read it");
        assert_eq!(route(&s, &view, t("2021-06-02T03:00:00.001Z")), LiveRoute::Send);
        // The catch-up running: its own instants may be read past again.
        let only = std::mem::take(&mut s.late);
        s = running(s, Some("2021-06-02T03:00:00Z"), Some("2021-06-03T12:00:00Z"));
        s.run.as_mut().unwrap().only = Some(only);
        assert_eq!(route(&s, &view, t("2021-06-02T03:00:00Z")), LiveRoute::Late);
        assert_eq!(route(&s, &view, t("2021-06-02T04:00:00Z")), LiveRoute::Send);
        s.run = None;
        s.done = true;
        assert_eq!(route(&s, &view, t("2021-06-02T03:00:00Z")), LiveRoute::Send);
    }
}

use super::*;

fn t(text: &str) -> DateTime<Utc> {
    timestamp::parse_iso(text)
        .or_else(|| timestamp::parse_date(text).and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| d.and_utc()))
        .unwrap()
}

const CUTOVER: &str = "2021-06-03T12:00:00Z";

fn plan(job: ExportJob, from: Option<&str>) -> ExportPlan {
    ExportPlan { job, date_from: from.map(t), date_to: t(CUTOVER) }
}

fn ms_of(text: &str) -> Option<i64> {
    Some(t(text).timestamp_millis())
}

/// The V1 host exporting the run that began at `from`, its cursor at `cursor`.
fn v1(from: &str, cursor: &str) -> Observations {
    Observations { host_running: true, host_min: ms_of(from), host_cursor: ms_of(cursor), ..Observations::default() }
}

fn minutes(n: i64) -> Duration {
    Duration::minutes(n)
}

#[test]
fn v1_runs_once_to_the_cutover_and_the_position_follows_the_cursor_when_settled() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    let first = state.tick(&Observations::default(), now);
    assert_eq!(first.start, Some(plan(ExportJob::V1, Some("2021-06-01"))));
    assert!(first.reset_host, "a stale flag or cursor of an earlier export would stop or mislead this one");
    assert_eq!(
        first.log,
        ["Exporting history from 2021-06-01T00:00:00.000Z to 2021-06-03T12:00:00.000Z (\"Export historical events\")."]
    );
    let epoch = state.epoch;

    // The cursor seen a minute ago is acknowledged once nothing is in flight.
    state.tick(&v1("2021-06-01", "2021-06-01T10:00:00Z"), now + minutes(1));
    assert_eq!(state.position, Some(t("2021-06-01")));
    let busy = Observations { pages_in_flight: 1, ..v1("2021-06-01", "2021-06-02T00:00:00Z") };
    state.tick(&busy, now + minutes(2));
    assert_eq!(state.position, Some(t("2021-06-01")), "a page in flight holds the position");
    let waiting = Observations { open_parcels: 1, ..v1("2021-06-01", "2021-06-02T06:00:00Z") };
    state.tick(&waiting, now + minutes(3));
    assert_eq!(state.position, Some(t("2021-06-01")), "a request waiting to be resent holds the position");
    state.tick(&v1("2021-06-01", "2021-06-03T00:00:00Z"), now + minutes(4));
    assert_eq!(state.position, Some(t("2021-06-02T06:00:00Z")));
    assert!((state.share_done() - 30.0 / 60.0).abs() < 1e-9);

    // The host is past the cut-over and says it is done: the history is complete.
    let past = Observations { host_running: false, ..v1("2021-06-01", "2021-06-03T12:10:00Z") };
    let end = state.tick(&past, now + minutes(5));
    assert!(state.done);
    assert_eq!(end.start, None);
    assert_eq!(end.log[0], "The history is complete: everything up to 2021-06-03T12:00:00.000Z is acknowledged.");
    assert!(end.log[1].starts_with("History: 100% of"), "{:?}", end.log);
    assert_eq!(state.epoch, epoch, "one run did it all");
    assert_eq!(state.tick(&v1("2021-06-01", "2021-06-01"), now + minutes(6)), Actions::default());
}

#[test]
fn v1_stopping_before_the_cutover_is_a_stall_and_starts_again_from_the_position() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    state.tick(&v1("2021-06-01", "2021-06-02T00:00:00Z"), now + minutes(1));
    state.tick(&v1("2021-06-01", "2021-06-02T01:00:00Z"), now + minutes(2));
    // A page on a thread with an old end said "Done exporting all events" mid-way.
    let stopped = Observations { host_running: false, ..v1("2021-06-01", "2021-06-02T01:10:00Z") };
    let epoch = state.epoch;
    let actions = state.tick(&stopped, now + minutes(3));
    assert!(!state.done);
    assert!(actions.reset_host);
    assert_eq!(actions.start.map(|p| (p.date_from, p.date_to)), Some((Some(t("2021-06-02T01:00:00Z")), t(CUTOVER))));
    assert_eq!(
        actions.warn,
        ["The historical export stopped before the cut-over: starting it again from 2021-06-02T01:00:00.000Z."]
    );
    assert_eq!(state.epoch, epoch + 1);
}

#[test]
fn a_cursor_of_another_run_is_not_taken_for_this_ones() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    // The host has not begun this run yet: its keys still say another start.
    state.tick(&v1("2021-05-01", "2021-06-03T00:00:00Z"), now + minutes(1));
    state.tick(&v1("2021-05-01", "2021-06-03T00:00:00Z"), now + minutes(2));
    assert_eq!(state.position, Some(t("2021-06-01")));
    let stray = Observations { host_min: None, ..v1("2021-06-01", "2021-06-03T00:00:00Z") };
    state.tick(&stray, now + minutes(3));
    state.tick(&stray, now + minutes(4));
    assert_eq!(state.position, Some(t("2021-06-01")));
}

#[test]
fn a_stalled_export_starts_again_from_the_position() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    let stuck = Observations { pages_in_flight: 1, ..v1("2021-06-01", "2021-06-01T06:00:00Z") };
    state.tick(&stuck, now + minutes(1));
    assert_eq!(state.tick(&stuck, now + minutes(10)).start, None);
    let restarted = state.tick(&stuck, now + minutes(11));
    assert!(restarted.reset_host);
    assert_eq!(restarted.start.map(|p| p.date_from), Some(Some(t("2021-06-01T00:00:00Z"))));
    assert_eq!(
        restarted.warn,
        ["The historical export made no progress for 10 minutes: starting it again from 2021-06-01T00:00:00.000Z."]
    );
    // While requests wait to be resent, a quiet export is not a stalled one.
    let waiting = Observations { open_parcels: 3, ..stuck };
    assert_eq!(state.tick(&waiting, now + Duration::hours(2)).start, None);
}

#[test]
fn pages_alone_keep_an_export_alive() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    for minute in 1..60 {
        // The cursor stays in one busy window, but pages keep arriving.
        let seen = Observations {
            last_page_at: Some((now + minutes(minute)).timestamp_millis()),
            ..v1("2021-06-01", "2021-06-01T06:00:00Z")
        };
        assert_eq!(state.tick(&seen, now + minutes(minute)).start, None, "minute {minute}");
    }
}

#[test]
fn an_export_that_never_starts_is_tried_again_then_reported_once() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    let mut restarts = 0;
    let mut warnings = Vec::new();
    for minute in 1..=60 {
        let actions = state.tick(&Observations::default(), now + minutes(minute));
        restarts += usize::from(actions.start.is_some());
        warnings.extend(actions.warn.into_iter().filter(|w| w.starts_with("No historical events")));
    }
    assert_eq!(restarts, 2);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("\"PostHog version\""));
}

#[test]
fn force_restart_starts_from_the_position() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    state.tick(&v1("2021-06-01", "2021-06-02T00:00:00Z"), now + minutes(1));
    state.tick(&v1("2021-06-01", "2021-06-02T10:00:00Z"), now + minutes(2));
    let actions = state.restart(now + minutes(3));
    assert!(actions.reset_host);
    assert_eq!(actions.start.map(|p| p.date_from), Some(Some(t("2021-06-02T00:00:00Z"))));
    state.done = true;
    let actions = state.restart(now);
    assert_eq!((actions.start, actions.reset_host), (None, false));
    assert_eq!(actions.log, ["The history is already complete: nothing to restart."]);
}

#[test]
fn without_a_start_date_v1_begins_at_the_first_event() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, None), now);
    let actions = state.tick(&Observations::default(), now);
    assert_eq!(actions.start.map(|p| (p.date_from, p.date_to)), Some((None, t(CUTOVER))));
    assert_eq!(
        actions.log,
        ["Exporting history from the first event to 2021-06-03T12:00:00.000Z (\"Export historical events\")."]
    );
    // The host found the first event itself; the position follows from there.
    state.tick(&v1("2021-05-20T08:00:00Z", "2021-05-20T08:00:00Z"), now + minutes(1));
    state.tick(&v1("2021-05-20T08:00:00Z", "2021-05-21T08:00:00Z"), now + minutes(2));
    assert_eq!(state.position, Some(t("2021-05-20T08:00:00Z")));
}

#[test]
fn v2_always_gets_both_dates_and_its_done_days_are_the_position() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V2, None), now);
    let start = state.tick(&Observations::default(), now).start.unwrap();
    assert_eq!((start.job, start.date_from, start.date_to), (ExportJob::V2, Some(t(EARLIEST_V2_START)), t(CUTOVER)));

    let mut state = ExportState::new(&plan(ExportJob::V2, Some("2021-06-01T06:00:00Z")), now);
    state.tick(&Observations::default(), now);
    let days = |done: &[&str]| Observations {
        v2_running: true,
        v2_done: done.iter().map(|d| d.to_string()).collect(),
        ..Observations::default()
    };
    // The second day done before the first moves nothing.
    state.tick(&days(&["2021-06-02T00:00:00.000Z"]), now + minutes(1));
    assert_eq!(state.position, Some(t("2021-06-01T06:00:00Z")));
    state.tick(&days(&["2021-06-01T06:00:00.000Z", "2021-06-02T00:00:00.000Z"]), now + minutes(2));
    assert_eq!(state.position, Some(t("2021-06-03T00:00:00Z")));

    // V2 stopped (its parameters gone) before the last day: again from the position.
    let stopped = Observations { v2_running: false, ..days(&["2021-06-01T06:00:00.000Z", "2021-06-02T00:00:00.000Z"]) };
    let again = state.tick(&stopped, now + minutes(3));
    assert_eq!(again.start.map(|p| p.date_from), Some(Some(t("2021-06-03T00:00:00Z"))));
    assert!(again.reset_host);
    state.tick(&days(&[]), now + minutes(4));
    let finished = Observations { v2_running: false, ..days(&["2021-06-03T00:00:00.000Z"]) };
    state.tick(&finished, now + minutes(5));
    assert!(state.done);
    assert_eq!(state.position, Some(t(CUTOVER)));
}

#[test]
fn progress_says_share_counts_rate_and_time_left() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.position = Some(t("2021-06-02T00:00:00Z"));
    let seen = Observations { delivered: 6000, rejected: 2, retried: 5, parked: 1, ..Observations::default() };
    assert_eq!(
        state.progress_line(&seen, now + minutes(60)),
        "History: 40% of 2021-06-01T00:00:00.000Z to 2021-06-03T12:00:00.000Z acknowledged; 6000 delivered, \
         2 rejected, 5 retries, 1 parked; 100 events/min; about 1 h 30 min left."
    );
    // Reports come every ten minutes, not every minute.
    let mut count = 0;
    state.tick(&Observations::default(), now);
    for minute in 0..30 {
        let seen = Observations {
            last_page_at: Some((now + minutes(minute)).timestamp_millis()),
            ..v1("2021-06-02", "2021-06-02T01:00:00Z")
        };
        count += state.tick(&seen, now + minutes(minute)).log.iter().filter(|l| l.starts_with("History:")).count();
    }
    assert_eq!(count, 3);
}

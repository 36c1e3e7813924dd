use super::*;

fn t(text: &str) -> DateTime<Utc> {
    timestamp::parse_iso(text)
        .or_else(|| timestamp::parse_date(text).and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| d.and_utc()))
        .unwrap()
}

fn plan(job: ExportJob, from: Option<&str>) -> ExportPlan {
    ExportPlan { job, date_from: from.map(t), date_to: t("2021-06-03T12:00:00Z") }
}

fn running() -> Observations {
    Observations { host_running: true, ..Observations::default() }
}

fn started(state: &ExportState) -> Option<(Option<DateTime<Utc>>, DateTime<Utc>)> {
    state.chunk.as_ref().map(|c| (c.from, c.to))
}

#[test]
fn history_moves_a_day_at_a_time_and_only_when_settled() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    let first = state.tick(&Observations::default(), now);
    assert_eq!(first.start, Some(plan(ExportJob::V1, Some("2021-06-01")).with_to(t("2021-06-02T00:00:00Z"))));
    assert!(!first.reset_host);
    assert_eq!(
        first.log,
        ["Exporting history from 2021-06-01T00:00:00.000Z to 2021-06-02T00:00:00.000Z (\"Export historical events\")."]
    );

    // Running: nothing new, a progress line.
    let tick = state.tick(&running(), now + Duration::minutes(1));
    assert_eq!(tick.start, None);
    assert!(
        tick.log[0].starts_with("History: 0% of 2021-06-01T00:00:00.000Z to 2021-06-03T12:00:00.000Z"),
        "{:?}",
        tick.log
    );

    // The host is done but a request waits to be resent: the position holds.
    let waiting = Observations { open_parcels: 1, ..Observations::default() };
    assert_eq!(state.tick(&waiting, now + Duration::minutes(2)).start, None);
    let in_flight = Observations {
        pages_in_flight: 1,
        last_page_at: Some((now + Duration::minutes(2)).timestamp_millis()),
        ..Observations::default()
    };
    assert_eq!(state.tick(&in_flight, now + Duration::minutes(3)).start, None);
    assert_eq!(state.position, Some(t("2021-06-01T00:00:00Z")));

    // Settled: the position moves to the chunk's end and the next day starts.
    let next = state.tick(&Observations::default(), now + Duration::minutes(4));
    assert_eq!(state.position, Some(t("2021-06-02T00:00:00Z")));
    assert_eq!(
        next.start.map(|p| (p.date_from, p.date_to)),
        Some((Some(t("2021-06-02T00:00:00Z")), t("2021-06-03T00:00:00Z")))
    );
    assert!((state.share_done() - 1.0 / 2.5).abs() < 1e-9);

    // The host finished between two looks (its cursor is past its last window).
    let past = Observations { host_cursor: Some(2), host_last: Some(1), ..Observations::default() };
    state.tick(&past, now + Duration::minutes(5));
    assert_eq!(started(&state), Some((Some(t("2021-06-03T00:00:00Z")), t("2021-06-03T12:00:00Z"))));
    state.tick(&running(), now + Duration::minutes(6));
    let end = state.tick(&Observations::default(), now + Duration::minutes(7));
    assert!(state.done);
    assert_eq!(end.start, None);
    assert_eq!(end.log[0], "The history is complete: everything up to 2021-06-03T12:00:00.000Z is acknowledged.");
    assert!(end.log[1].starts_with("History: 100% of"), "{:?}", end.log);
    assert_eq!(state.share_done(), 1.0);
    assert_eq!(state.tick(&running(), now + Duration::minutes(8)), Actions::default());
}

#[test]
fn a_stalled_chunk_starts_again_from_its_beginning() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    let page = Some((now + Duration::minutes(1)).timestamp_millis());
    let busy = Observations { host_running: true, pages_in_flight: 1, last_page_at: page, ..Observations::default() };
    assert_eq!(state.tick(&busy, now + Duration::minutes(10)).start, None);
    let stalled = state.tick(&busy, now + Duration::minutes(11));
    assert!(stalled.reset_host);
    assert_eq!(stalled.start.map(|p| p.date_from), Some(Some(t("2021-06-01T00:00:00Z"))));
    assert_eq!(
        stalled.warn,
        ["The historical export made no progress for 10 minutes: starting it again from 2021-06-01T00:00:00.000Z."]
    );
    assert_eq!(state.position, Some(t("2021-06-01T00:00:00Z")));
    // While requests wait to be resent, a quiet export is not a stalled one.
    let waiting = Observations { open_parcels: 3, ..busy };
    assert_eq!(state.tick(&waiting, now + Duration::hours(2)).start, None);
}

#[test]
fn an_export_that_never_starts_is_tried_again_then_reported_once() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    let quiet = Observations::default();
    let mut restarts = 0;
    let mut warnings = Vec::new();
    for minute in 1..=60 {
        let actions = state.tick(&quiet, now + Duration::minutes(minute));
        restarts += usize::from(actions.start.is_some());
        warnings.extend(actions.warn.into_iter().filter(|w| w.starts_with("No historical events")));
    }
    assert_eq!(restarts, 2);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("\"PostHog version\""));
}

#[test]
fn force_restart_resumes_the_current_chunk_from_the_position() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    state.tick(&running(), now);
    state.tick(&Observations::default(), now); // day 1 done
    let actions = state.restart(now + Duration::minutes(1));
    assert!(actions.reset_host);
    assert_eq!(actions.start.map(|p| p.date_from), Some(Some(t("2021-06-02T00:00:00Z"))));
    state.done = true;
    let actions = state.restart(now);
    assert_eq!((actions.start, actions.reset_host), (None, false));
    assert_eq!(actions.log, ["The history is already complete: nothing to restart."]);
}

#[test]
fn without_a_start_date_or_with_v2_the_window_is_one_chunk() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, None), now);
    let actions = state.tick(&Observations::default(), now);
    assert_eq!(actions.start.map(|p| (p.date_from, p.date_to)), Some((None, t("2021-06-03T12:00:00Z"))));
    assert_eq!(
        actions.log,
        ["Exporting history from the first event to 2021-06-03T12:00:00.000Z (\"Export historical events\")."]
    );

    let mut v2 = ExportState::new(&plan(ExportJob::V2, Some("2021-06-01")), now);
    let actions = v2.tick(&Observations::default(), now);
    assert_eq!(actions.start.map(|p| (p.job, p.date_to)), Some((ExportJob::V2, t("2021-06-03T12:00:00Z"))));
    // V2 keeps no flag we know: its end is half an hour without a page.
    let page = Observations { last_page_at: Some(now.timestamp_millis()), ..Observations::default() };
    v2.tick(&page, now + Duration::minutes(29));
    assert!(!v2.done);
    v2.tick(&page, now + Duration::minutes(30));
    assert!(v2.done);
}

#[test]
fn progress_says_share_counts_rate_and_time_left() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.position = Some(t("2021-06-02T00:00:00Z"));
    let seen = Observations { delivered: 6000, rejected: 2, retried: 5, parked: 1, ..Observations::default() };
    assert_eq!(
        state.progress_line(&seen, now + Duration::minutes(60)),
        "History: 40% of 2021-06-01T00:00:00.000Z to 2021-06-03T12:00:00.000Z acknowledged; 6000 delivered, \
         2 rejected, 5 retries, 1 parked; 100 events/min; about 1 h 30 min left."
    );
    // Reports come every ten minutes, not every minute.
    let mut count = 0;
    state.tick(&Observations::default(), now);
    for minute in 0..30 {
        count += state
            .tick(&running(), now + Duration::minutes(minute))
            .log
            .iter()
            .filter(|l| l.starts_with("History:"))
            .count();
    }
    assert_eq!(count, 3);
}

impl ExportPlan {
    fn with_to(self, to: DateTime<Utc>) -> ExportPlan {
        ExportPlan { date_to: to, ..self }
    }
}

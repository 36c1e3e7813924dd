use super::*;
use crate::inflight::{LateRecord, PageRecord, Record};
use proptest::prelude::*;

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

/// `seen` with these pages of run `epoch` in flight (their earliest events), numbered from 1.
fn with_pages(seen: Observations, epoch: u32, froms: &[&str], now: DateTime<Utc>) -> Observations {
    let read: Vec<_> = froms
        .iter()
        .enumerate()
        .map(|(i, from)| {
            let page = PageRecord::new(epoch, t(from).timestamp_millis(), format!("k{i}"), now.timestamp_millis());
            (i as u64 + 1, Some(Ok(Record::Page(page))))
        })
        .collect();
    Observations { records: Seen { floor: 1, last: read.len() as u64, read }, ..seen }
}

fn minutes(n: i64) -> Duration {
    Duration::minutes(n)
}

/// Ticks as the export finishes: past the cut-over, seen twice, nothing more arriving.
fn finish_v1(state: &mut ExportState, from: &str, now: DateTime<Utc>) -> Actions {
    let past = Observations { host_running: false, ..v1(from, "2021-06-03T12:10:00Z") };
    let first = state.tick(&past, now);
    assert!(!state.done, "the end is seen twice before the history is complete: {first:?}");
    state.tick(&past, now + minutes(1))
}

#[test]
fn v1_runs_once_to_the_cutover_and_the_position_follows_the_cursor_seen_a_minute_before() {
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

    // The cursor seen a minute ago is acknowledged.
    state.tick(&v1("2021-06-01", "2021-06-01T10:00:00Z"), now + minutes(1));
    assert_eq!(state.position, Some(t("2021-06-01")));
    state.tick(&v1("2021-06-01", "2021-06-02T00:00:00Z"), now + minutes(2));
    assert_eq!(state.position, Some(t("2021-06-01T10:00:00Z")));
    // Pages in flight: the position moves, but not past the window of the earliest.
    let busy = with_pages(v1("2021-06-01", "2021-06-02T06:00:00Z"), epoch, &["2021-06-01T23:55:00Z"], now);
    state.tick(&busy, now + minutes(3));
    assert_eq!(state.position, Some(t("2021-06-01T23:50:00Z")), "the page's window began at 23:50");
    let busy = with_pages(v1("2021-06-01", "2021-06-02T12:00:00Z"), epoch, &["2021-06-02T07:00:00Z"], now);
    state.tick(&busy, now + minutes(4));
    assert_eq!(state.position, Some(t("2021-06-02T06:00:00Z")), "the cursor of a minute ago is lower");
    // Requests waiting to be resent are in storage: they do not hold the position.
    let waiting = Observations { open_parcels: 1, ..v1("2021-06-01", "2021-06-03T00:00:00Z") };
    state.tick(&waiting, now + minutes(5));
    assert_eq!(state.position, Some(t("2021-06-02T12:00:00Z")));
    assert!((state.share_done() - 36.0 / 60.0).abs() < 1e-9);

    // The host is past the cut-over and says it is done: the history is complete.
    let end = finish_v1(&mut state, "2021-06-01", now + minutes(6));
    assert!(state.done);
    assert_eq!(end.start, None);
    assert_eq!(end.log[0], "The history is complete: everything up to 2021-06-03T12:00:00.000Z is acknowledged.");
    assert!(end.log[1].starts_with("History: 100% of"), "{:?}", end.log);
    assert_eq!(state.epoch, epoch, "one run did it all");
    let after = state.tick(&v1("2021-06-01", "2021-06-01"), now + minutes(9));
    assert_eq!((after.start, after.log), (None, Vec::<String>::new()));
}

#[test]
fn the_history_is_not_complete_while_something_of_it_is_open() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    let past = Observations { host_running: false, ..v1("2021-06-01", "2021-06-03T12:10:00Z") };
    state.tick(&past, now + minutes(1));
    let page_in_flight = with_pages(past.clone(), state.epoch, &["2021-06-03T11:00:00Z"], now);
    state.tick(&page_in_flight, now + minutes(2));
    let waiting = Observations { open_parcels: 1, ..past.clone() };
    state.tick(&waiting, now + minutes(3));
    // A page arrived since the last look: a chain of the host's is still reading.
    let arriving = Observations {
        last_page_at: Some((now + minutes(3) + Duration::seconds(30)).timestamp_millis()),
        ..past.clone()
    };
    state.tick(&arriving, now + minutes(4));
    let unread =
        Observations { records: Seen { floor: 1, last: inflight::LOOK_AT_MOST + 1, read: Vec::new() }, ..past.clone() };
    state.tick(&unread, now + minutes(5));
    assert!(!state.done);
    state.tick(&past, now + minutes(6));
    assert!(state.done);
}

#[test]
fn v1_stopping_before_the_cutover_starts_again_from_the_position() {
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
fn a_stop_the_minute_task_never_saw_running_is_still_a_stop() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    // Between two looks the host began this run and stopped half way.
    let stopped = Observations { host_running: false, ..v1("2021-06-01", "2021-06-02T01:10:00Z") };
    let actions = state.tick(&stopped, now + minutes(1));
    assert!(actions.start.is_some(), "{actions:?}");
}

#[test]
fn a_cursor_of_another_run_is_not_taken_for_this_ones() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    // The host has not begun this run yet: its keys still say another start.
    let other =
        Observations { last_page_at: Some(now.timestamp_millis() + 1), ..v1("2021-05-01", "2021-06-03T00:00:00Z") };
    state.tick(&other, now + minutes(1));
    state.tick(&other, now + minutes(2));
    assert_eq!(state.position, Some(t("2021-06-01")));
    let stray = Observations { host_min: None, ..v1("2021-06-01", "2021-06-03T00:00:00Z") };
    state.tick(&stray, now + minutes(3));
    state.tick(&stray, now + minutes(4));
    assert_eq!(state.position, Some(t("2021-06-01")));
}

#[test]
fn a_v1_export_the_host_says_is_running_that_stops_moving_is_started_again_within_two_minutes() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    state.tick(&v1("2021-06-01", "2021-06-01T10:00:00Z"), now + minutes(1));
    state.tick(&v1("2021-06-01", "2021-06-02T00:00:00Z"), now + minutes(2));
    // The plugin server restarts: its running flag stays, its cursor stops, no page comes.
    let dead = v1("2021-06-01", "2021-06-02T00:00:00Z");
    assert_eq!(state.tick(&dead, now + minutes(2) + Duration::seconds(59)).start, None);
    let restarted = state.tick(&dead, now + minutes(3));
    assert_eq!(restarted.start.map(|p| p.date_from), Some(Some(t("2021-06-02T00:00:00Z"))));
    assert!(restarted.reset_host);
    assert_eq!(
        restarted.warn,
        ["The historical export has not moved for 1 minute(s) although this PostHog says it is running (a \
          restart of the plugin server ends it): starting it again from 2021-06-02T00:00:00.000Z."]
    );
    // A dense window: the cursor stays, new pages keep coming; that export is alive.
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    for minute in 1..30 {
        let seen = Observations {
            last_page_at: Some((now + minutes(minute)).timestamp_millis() - 500),
            ..v1("2021-06-01", "2021-06-01T06:00:00Z")
        };
        assert_eq!(state.tick(&seen, now + minutes(minute)).start, None, "minute {minute}");
    }
}

#[test]
fn a_page_nobody_will_finish_starts_the_export_again_from_the_position() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    let epoch = state.epoch;
    let handed_back =
        PageRecord::new(epoch, ms_of("2021-06-01T12:00:00Z").unwrap(), "k".into(), now.timestamp_millis())
            .handed_back(now.timestamp_millis());
    let seen = |cursor: &str, minute: i64| Observations {
        records: Seen { floor: 1, last: 1, read: vec![(1, Some(Ok(Record::Page(handed_back.clone()))))] },
        last_page_at: Some((now + minutes(minute)).timestamp_millis() - 1),
        ..v1("2021-06-01", cursor)
    };
    state.tick(&seen("2021-06-01T10:00:00Z", 1), now + minutes(1));
    assert_eq!(state.tick(&seen("2021-06-02T00:00:00Z", 2), now + minutes(2)).start, None);
    assert_eq!(state.position, Some(t("2021-06-01T10:00:00Z")));
    // Its retry was due 3 s after it was handed back; two minutes later it is lost.
    let lost = state.tick(&seen("2021-06-02T10:00:00Z", 3), now + minutes(3));
    assert_eq!(lost.start.map(|p| p.date_from), Some(Some(t("2021-06-01T12:00:00Z"))));
    assert!(lost.warn[0].starts_with("1 page(s) of history were never finished"), "{:?}", lost.warn);
    // The next run forgets it, with its key.
    let next = state.tick(&seen("2021-06-02T10:00:00Z", 4), now + minutes(4));
    assert_eq!(next.forget, [Forget { id: 1, key: Some("k".into()) }]);
    assert_eq!(next.floor, Some(2));
}

#[test]
fn a_stalled_export_starts_again_from_the_position() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    // Not running (its flag gone) but a page still in flight: no word from the host.
    let stuck = with_pages(
        Observations { host_running: false, ..v1("2021-06-01", "2021-06-03T12:10:00Z") },
        state.epoch,
        &["2021-06-01T06:00:00Z"],
        now + minutes(9),
    );
    state.tick(&stuck, now + minutes(1));
    assert_eq!(state.tick(&stuck, now + minutes(10)).start, None);
    let restarted = state.tick(&stuck, now + minutes(11));
    assert!(restarted.reset_host);
    // The position went up to the window of the page in flight.
    assert_eq!(restarted.start.map(|p| p.date_from), Some(Some(t("2021-06-01T06:00:00Z"))));
    assert_eq!(
        restarted.warn,
        ["The historical export made no progress for 10 minutes: starting it again from 2021-06-01T06:00:00.000Z."]
    );
    // While requests wait to be resent, a quiet export is not a stalled one.
    let waiting = Observations { open_parcels: 3, host_running: false, ..Observations::default() };
    let mut state = ExportState::new(&plan(ExportJob::V2, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    assert_eq!(state.tick(&waiting, now + Duration::hours(2)).start, None);
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
fn late_instants_are_read_again_once_the_history_is_through() {
    let now = t("2021-06-10T00:00:00Z");
    let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
    state.tick(&Observations::default(), now);
    let late = |at: &str| (9, Some(Ok(Record::Late(LateRecord { at: ms_of(at).unwrap() }))));
    let with_late = Observations {
        records: Seen { floor: 9, last: 9, read: vec![late("2021-06-02T03:00:00Z")] },
        ..v1("2021-06-01", "2021-06-02T06:00:00Z")
    };
    let taken = state.tick(&with_late, now + minutes(1));
    assert_eq!(taken.forget, [Forget { id: 9, key: None }], "kept in the state, then forgotten");
    assert_eq!((taken.floor, state.late.clone()), (Some(10), vec![ms_of("2021-06-02T03:00:00Z").unwrap()]));
    let past = Observations { host_running: false, ..v1("2021-06-01", "2021-06-03T12:10:00Z") };
    state.tick(&past, now + minutes(2));
    let through = state.tick(&past, now + minutes(3));
    assert!(!state.done);
    assert_eq!(state.position, Some(t(CUTOVER)));
    assert_eq!(
        through.log[0],
        "The history is copied up to the cut-over; 1 moment(s) when live events arrived behind the export are read again."
    );
    let start = through.start.unwrap();
    assert_eq!((start.date_from, start.date_to), (Some(t("2021-06-02T03:00:00Z")), t("2021-06-02T03:00:00Z")));
    assert!(through.reset_host);
    let window = state.window().unwrap();
    assert_eq!(window.only, Some(vec![ms_of("2021-06-02T03:00:00Z").unwrap()]));
    assert!(state.late.is_empty());
    // Another arrives behind the catch-up itself: it waits for the next one.
    let catch_up =
        |cursor: &str, running: bool| Observations { host_running: running, ..v1("2021-06-02T03:00:00Z", cursor) };
    let again = Observations {
        records: Seen { floor: 10, last: 10, read: vec![(10, late("2021-06-02T03:00:00Z").1)] },
        ..catch_up("2021-06-02T03:00:00Z", true)
    };
    state.tick(&again, now + minutes(4));
    state.tick(&catch_up("2021-06-02T03:10:00Z", false), now + minutes(5));
    let next = state.tick(&catch_up("2021-06-02T03:10:00Z", false), now + minutes(6));
    assert!(next.start.is_some() && !state.done, "{next:?}");
    state.tick(&catch_up("2021-06-02T03:10:00Z", false), now + minutes(7));
    let end = state.tick(&catch_up("2021-06-02T03:10:00Z", false), now + minutes(8));
    assert!(state.done, "{end:?}");
    assert_eq!(end.log[0], "The history is complete: everything up to 2021-06-03T12:00:00.000Z is acknowledged.");
    // A late instant found after the end is read again too.
    let after = Observations {
        records: Seen { floor: 11, last: 11, read: vec![(11, late("2021-06-01T01:00:00Z").1)] },
        ..Observations::default()
    };
    assert!(state.tick(&after, now + minutes(9)).start.is_some());
    assert!(!state.done);
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

/// One step of a V1 export as the app sees it: the host moves its cursor to the next
/// window, a page of the current window reaches the app, the app finishes a page, or
/// the minute task looks.
#[derive(Debug, Clone)]
enum Step {
    NextWindow,
    Page(u8),
    Finish(u8),
    Look,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::NextWindow),
        3 => any::<u8>().prop_map(Step::Page),
        3 => any::<u8>().prop_map(Step::Finish),
        2 => Just(Step::Look),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The position never passes a page that is not finished (in flight, or still to
    /// come from a window at or after the cursor), and when the minute task finds
    /// nothing in flight it reaches the cursor it saw a minute before.
    #[test]
    fn the_position_never_passes_an_unfinished_page_and_follows_the_export(steps in prop::collection::vec(step(), 1..200)) {
        let from = t("2021-06-01");
        let window = |k: i64| from + Duration::milliseconds(k * V1_WINDOW_MS);
        let mut now = t("2021-06-10T00:00:00Z");
        let mut state = ExportState::new(&plan(ExportJob::V1, Some("2021-06-01")), now);
        state.tick(&Observations::default(), now);
        let epoch = state.epoch;
        let mut cursor = 0i64; // the window being read
        let mut in_flight: Vec<(u64, i64)> = Vec::new(); // (id, earliest event ms)
        let mut next_id = 1u64;
        let mut seen_before: Option<i64> = None;
        for step in steps {
            now += Duration::seconds(20);
            match step {
                Step::NextWindow => cursor = (cursor + 1).min(200),
                Step::Page(offset) => {
                    let at = window(cursor).timestamp_millis() + i64::from(offset) * 2_000;
                    in_flight.push((next_id, at));
                    next_id += 1;
                }
                Step::Finish(which) if !in_flight.is_empty() => {
                    in_flight.remove(usize::from(which) % in_flight.len());
                }
                Step::Finish(_) => {}
                Step::Look => {
                    let read = (1..next_id)
                        .map(|id| {
                            let record = in_flight.iter().find(|(i, _)| *i == id).map(|(_, at)| {
                                Ok(Record::Page(PageRecord::new(epoch, *at, format!("k{id}"), now.timestamp_millis())))
                            });
                            (id, record)
                        })
                        .collect();
                    let seen = Observations {
                        records: Seen { floor: 1, last: next_id - 1, read },
                        last_page_at: Some(now.timestamp_millis()),
                        ..v1("2021-06-01", &timestamp::format(window(cursor)))
                    };
                    let previous = state.position.unwrap();
                    state.tick(&seen, now);
                    let position = state.position.unwrap();
                    prop_assert!(position >= previous, "the position went back");
                    for (_, at) in &in_flight {
                        prop_assert!(position <= DateTime::from_timestamp_millis(*at).unwrap());
                    }
                    prop_assert!(position <= window(cursor), "past pages still to come");
                    if let Some(before) = seen_before {
                        // It moves while pages are in flight: up to the cursor seen a minute
                        // before, or the window of the earliest page in flight if lower.
                        let earliest = in_flight.iter().map(|(_, at)| (at - from.timestamp_millis()) / V1_WINDOW_MS).min();
                        let reach = earliest.map_or(before, |k| k.min(before));
                        prop_assert_eq!(position, window(reach).max(previous));
                    }
                    seen_before = Some(cursor);
                }
            }
        }
    }
}

//! The history, replayed by the source's own export job up to the cut-over, and the
//! acknowledged position: the point before which every event is delivered, rejected
//! with a reason, or kept in storage to be sent again (never lost). A stall, a lost
//! page or a Force restart starts the export again from the position (resends keep
//! their uuids).
//!
//! The position moves while pages are in flight: to the host's cursor as seen a minute
//! before (every page of a window before it had reached the app by then, and a page
//! is recorded as in flight the moment it arrives), but never past the earliest page
//! still in flight (`inflight`). A live event that arrived behind the export is read
//! again by a short run over its instant once the history is through (`handover`).
//!
//! Every run of the export ends at the cut-over. TRICKY: plugin server 1.10.x keeps
//! the end of the running export in each worker thread's memory and refreshes it only
//! on the thread that started that export; with a different end for each day, a page
//! landing on another thread compared its cursor with an old end and stopped the
//! export early. One end for every run leaves nothing stale to compare with.
//!
//! Pure: the shim reads the observations from storage and carries out the actions.

use chrono::{DateTime, Duration, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::export_plan::{ExportPlan, Window};
use crate::inflight::{self, Forget, Seen};
use crate::timestamp;
use crate::version::ExportJob;

/// Without any sign of progress for this long, the export chain is taken as lost.
pub const STALL: Duration = Duration::minutes(10);
/// A V1 export the host says is running whose cursor has not moved, and from which no
/// new page came, for this long has died with the plugin server: plugin server 1.10.5
/// queues the next page before it hands the current one to the app, so a living
/// export never waits for the app, and a restart loses the pages it had taken up.
pub const RESUME_AFTER: Duration = Duration::minutes(1);
/// How often progress goes to the log.
pub const REPORT_EVERY: Duration = Duration::minutes(10);
/// Restarts of an export that never produced a page before saying so plainly.
const QUIET_RESTARTS: u32 = 2;
/// The V2 export needs a start; without a start date it begins at PostHog's first
/// release, before which no PostHog captured anything.
pub const EARLIEST_V2_START: &str = "2020-01-01T00:00:00Z";

/// The host's keys for its exports, cleared before every start: the host refuses to
/// start an export while one is said to be running, and a cursor left from an earlier
/// run must not be taken for this one's.
pub const HOST_EXPORT_KEYS: [&str; 6] = [
    "is_export_running",
    "timestamp_cursor",
    "min_timestamp",
    "max_timestamp",
    "EXPORT_PARAMETERS",
    "EXPORT_COORDINATION",
];
/// V1 exports in windows of this size; its cursor is the start of the window being read.
pub const V1_WINDOW_MS: i64 = 10 * 60 * 1000;

/// One run of the host's export: from `from` to the cut-over, or a catch-up over the
/// instants in `only`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// `None`: from the source's first event (V1 only).
    #[serde(with = "timestamp::iso::option")]
    pub from: Option<DateTime<Utc>>,
    #[serde(with = "timestamp::iso")]
    pub started_at: DateTime<Utc>,
    /// The host was seen exporting for this run.
    pub seen_running: bool,
    pub restarts: u32,
    /// The host's cursor (V1, ms) at the last look, and when it last moved.
    pub cursor: Option<i64>,
    #[serde(with = "timestamp::iso")]
    pub moved_at: DateTime<Utc>,
    /// When the minute task last looked at this run.
    #[serde(default, with = "timestamp::iso::option")]
    pub looked_at: Option<DateTime<Utc>>,
    /// A catch-up: the instants (ms) of live events that arrived behind the export; only
    /// events at these instants are sent. `None`: the history up to the cut-over.
    #[serde(default)]
    pub only: Option<Vec<i64>>,
}

impl Run {
    pub fn is_catch_up(&self) -> bool {
        self.only.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportState {
    pub job: String,
    #[serde(with = "timestamp::iso::option")]
    pub from: Option<DateTime<Utc>>,
    /// The cut-over: the history ends here, live events begin.
    #[serde(with = "timestamp::iso")]
    pub to: DateTime<Utc>,
    /// Everything before this is delivered, rejected or kept to be sent again.
    #[serde(with = "timestamp::iso::option")]
    pub position: Option<DateTime<Utc>>,
    pub run: Option<Run>,
    /// Counts the runs: pages are recorded in flight per run, so a page of an
    /// abandoned run holds nothing back.
    #[serde(default)]
    pub epoch: u32,
    pub done: bool,
    #[serde(with = "timestamp::iso")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "timestamp::iso::option")]
    pub reported_at: Option<DateTime<Utc>>,
    pub warned_quiet: bool,
    /// Instants (ms, sorted) of live events left to an export that may have read past
    /// them: a catch-up reads them again once no run is going.
    #[serde(default)]
    pub late: Vec<i64>,
}

/// What the shim read just now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Observations {
    /// V1: the host's `is_export_running`.
    pub host_running: bool,
    /// V1: the host's `timestamp_cursor` (ms): the start of the window being exported.
    pub host_cursor: Option<i64>,
    /// V1: the host's `min_timestamp` (ms): where the running export began.
    pub host_min: Option<i64>,
    /// V2: its `EXPORT_PARAMETERS` are stored (an export is running).
    pub v2_running: bool,
    /// V2: the starts of the day chunks its coordinator lists as done.
    pub v2_done: Vec<String>,
    /// Requests waiting to be resent (not parked).
    pub open_parcels: u64,
    /// When exportEvents last received a page of history for the first time (ms).
    pub last_page_at: Option<i64>,
    pub delivered: u64,
    pub rejected: u64,
    pub retried: u64,
    pub parked: u64,
    /// The history's records (pages in flight, late instants), as read.
    #[serde(skip)]
    pub records: Seen,
}

/// What the shim must do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Clear `HOST_EXPORT_KEYS` before starting `start`.
    pub reset_host: bool,
    pub start: Option<ExportPlan>,
    pub log: Vec<String>,
    pub warn: Vec<String>,
    /// The records' new floor, and the records to delete (after storing the state).
    pub floor: Option<u64>,
    pub forget: Vec<Forget>,
}

fn ms(t: Option<i64>) -> Option<DateTime<Utc>> {
    t.and_then(DateTime::from_timestamp_millis)
}

impl ExportState {
    pub fn new(plan: &ExportPlan, now: DateTime<Utc>) -> ExportState {
        ExportState {
            job: plan.job.name().to_string(),
            from: plan.date_from,
            to: plan.date_to,
            position: plan.date_from,
            run: None,
            epoch: 0,
            done: false,
            started_at: now,
            reported_at: None,
            warned_quiet: false,
            late: Vec::new(),
        }
    }

    pub fn export_job(&self) -> ExportJob {
        if self.job == ExportJob::V2.name() {
            ExportJob::V2
        } else {
            ExportJob::V1
        }
    }

    /// The history up to the cut-over is behind the position (catch-ups may remain).
    pub fn history_through(&self) -> bool {
        self.done || self.position.is_some_and(|p| p >= self.to)
    }

    /// The export's start for a run from the position (V2 always needs one).
    fn run_from(&self) -> Option<DateTime<Utc>> {
        match self.export_job() {
            ExportJob::V1 => self.position,
            ExportJob::V2 => self.position.or_else(|| timestamp::parse_iso(EARLIEST_V2_START)),
        }
    }

    /// Where a run ends: the cut-over, or a catch-up's last instant.
    pub fn run_end(&self, run: &Run) -> DateTime<Utc> {
        run.only.as_ref().and_then(|only| only.last().copied()).and_then(|last| ms(Some(last))).unwrap_or(self.to)
    }

    /// The stretch of history being exported now, if any.
    pub fn window(&self) -> Option<Window> {
        self.run.as_ref().map(|r| match &r.only {
            None => Window { from: r.from, to: self.to, only: None },
            Some(only) => {
                Window { from: r.from, to: self.run_end(r) + Duration::milliseconds(1), only: Some(only.clone()) }
            }
        })
    }

    /// Share of the window that is behind the position, 0 to 1.
    pub fn share_done(&self) -> f64 {
        if self.done {
            return 1.0;
        }
        match (self.from.or(self.run.as_ref().and_then(|r| r.from)), self.position) {
            (Some(from), Some(position)) if self.to > from => ((position - from).num_milliseconds() as f64
                / (self.to - from).num_milliseconds() as f64)
                .clamp(0.0, 1.0),
            _ => 0.0,
        }
    }

    fn acknowledge(&mut self, upto: DateTime<Utc>) {
        let upto = upto.min(self.to);
        if self.position.is_none_or(|p| upto > p) {
            self.position = Some(upto);
        }
    }

    fn add_late(&mut self, instants: &[i64]) {
        self.late.extend_from_slice(instants);
        self.late.sort_unstable();
        self.late.dedup();
    }

    /// One minute's look: start, follow, finish or restart the export, and report.
    pub fn tick(&mut self, seen: &Observations, now: DateTime<Utc>) -> Actions {
        let looked = inflight::look(&seen.records, self.epoch, now.timestamp_millis());
        let mut actions = Actions { floor: Some(looked.floor), forget: looked.forget.clone(), ..Actions::default() };
        if !looked.unreadable.is_empty() {
            actions.warn.push(format!(
                "Storage held {} record(s) of the history that this version cannot read ({}); they are dropped.",
                looked.unreadable.len(),
                looked.unreadable.iter().map(|id| format!("migrator_history_{id}")).collect::<Vec<_>>().join(", ")
            ));
        }
        self.add_late(&looked.late);
        if self.done {
            if self.late.is_empty() {
                return actions;
            }
            // Live events arrived behind the export as it finished: read them again.
            self.done = false;
        }
        let Some(mut run) = self.run.clone() else {
            return self.start(now, actions);
        };
        let job = self.export_job();
        let running = match job {
            ExportJob::V1 => seen.host_running,
            ExportJob::V2 => seen.v2_running,
        };
        run.seen_running |= running;
        let settled = looked.complete && looked.in_flight == 0;
        // A cursor counts once the host began this run (its start is this run's).
        let cursor = seen.host_cursor.filter(|c| {
            seen.host_min.is_some_and(|min| {
                run.from.is_none_or(|from| min == from.timestamp_millis()) && *c >= min - V1_WINDOW_MS
            })
        });
        let new_page = ms(seen.last_page_at).is_some_and(|t| t > run.moved_at);
        if cursor != run.cursor || new_page {
            run.moved_at = now;
        }

        // How far the host has certainly gone: V1's cursor as seen a minute ago (a page
        // read before then has reached the app and is recorded by now), V2's chunks done
        // in a row; never past the earliest page still in flight.
        if !run.is_catch_up() && looked.complete {
            let exported = match job {
                ExportJob::V1 => ms(run.cursor),
                ExportJob::V2 => Some(v2_done_until(run.from, self.to, &seen.v2_done)),
            };
            let held = looked
                .lowest
                .map(|from| window_start(job, from, seen.host_min.or(run.from.map(|f| f.timestamp_millis()))));
            let upto = match (exported, ms(held)) {
                (Some(e), Some(h)) => Some(e.min(h)),
                (e, _) => e,
            };
            if let Some(upto) = upto.filter(|t| run.from.is_none_or(|from| *t >= from)) {
                self.acknowledge(upto);
            }
        }
        let export_to = self.export_to(&run);
        let (past_end_before, past_end_now) = match job {
            ExportJob::V1 => (ms(run.cursor).is_some_and(|c| c > export_to), ms(cursor).is_some_and(|c| c > export_to)),
            ExportJob::V2 => {
                let done = v2_done_until(run.from, export_to, &seen.v2_done) >= export_to;
                (done, done)
            }
        };
        // No first arrival of a page since the last look: no chain of the host's is still
        // reading (each queues its next page at once).
        let no_new_page =
            job == ExportJob::V2 || ms(seen.last_page_at).is_none_or(|t| run.looked_at.is_some_and(|at| t <= at));
        let finished = !running && past_end_before && past_end_now && settled && seen.open_parcels == 0 && no_new_page;
        run.cursor = cursor;
        run.looked_at = Some(now);
        if finished {
            self.run = None;
            return self.end_of_run(run, seen, now, actions);
        }

        let quiet_for = now - run.moved_at;
        let quiet = quiet_for >= STALL * if job == ExportJob::V2 { 3 } else { 1 };
        // The host began this run: it was seen running, or its cursor is this run's.
        let began = run.seen_running || run.cursor.is_some();
        let stopped_early = !running && began && !past_end_now;
        let paged = ms(seen.last_page_at).is_some_and(|t| t >= run.started_at);
        let stalled = quiet && seen.open_parcels == 0 && (running || looked.in_flight > 0);
        let never_started = quiet && seen.open_parcels == 0 && !running && !run.seen_running && !paged;
        let died = job == ExportJob::V1 && running && quiet_for >= RESUME_AFTER;
        let lost = looked.lost > 0;
        self.run = Some(run.clone());
        if never_started && run.restarts >= QUIET_RESTARTS {
            if !self.warned_quiet {
                self.warned_quiet = true;
                actions.warn.push(format!(
                    "No historical events have arrived since \"{}\" was started. This PostHog may not offer \
                     that export; check the \"PostHog version\" setting. New events are still forwarded.",
                    self.job
                ));
            }
        } else if stopped_early || stalled || never_started || died || lost {
            let why = if lost {
                format!(
                    "{} page(s) of history were never finished (the plugin server restarted while handling them, \
                     or gave up retrying them)",
                    looked.lost
                )
            } else if stopped_early && run.is_catch_up() {
                "The historical export stopped before the last of those moments".to_string()
            } else if stopped_early {
                "The historical export stopped before the cut-over".to_string()
            } else if died && !stalled {
                format!(
                    "The historical export has not moved for {} minute(s) although this PostHog says it is running \
                     (a restart of the plugin server ends it)",
                    quiet_for.num_minutes()
                )
            } else {
                format!("The historical export made no progress for {} minutes", quiet_for.num_minutes())
            };
            let again = match &run.only {
                // A catch-up starts again over the same instants.
                Some(only) => {
                    self.add_late(only);
                    "reading those moments again".to_string()
                }
                None => format!("starting it again from {}", describe(self.run_from())),
            };
            self.run = None;
            actions.warn.push(format!("{why}: {again}."));
            actions = self.start(now, actions);
            if let Some(new_run) = self.run.as_mut() {
                new_run.restarts = run.restarts + 1;
            }
            return actions;
        }
        self.report(seen, now, &mut actions);
        actions
    }

    /// A run ended with everything it read handled: the history is through, or the next
    /// catch-up starts.
    fn end_of_run(&mut self, run: Run, seen: &Observations, now: DateTime<Utc>, mut actions: Actions) -> Actions {
        if !run.is_catch_up() {
            self.position = Some(self.to);
        }
        if self.late.is_empty() {
            return self.finish(seen, now, actions);
        }
        if !run.is_catch_up() {
            actions.log.push(format!(
                "The history is copied up to the cut-over; {} moment(s) when live events arrived behind the export \
                 are read again.",
                self.late.len()
            ));
        }
        self.start(now, actions)
    }

    /// Force restart: the export again, from the last acknowledged position.
    pub fn restart(&mut self, now: DateTime<Utc>) -> Actions {
        let mut actions = Actions::default();
        if self.done {
            actions.log.push("The history is already complete: nothing to restart.".into());
            return actions;
        }
        if let Some(only) = self.run.take().and_then(|r| r.only) {
            self.add_late(&only);
        }
        self.start(now, actions)
    }

    /// Starts the next run: the history from the position, or once it is through, a
    /// catch-up over the late instants.
    fn start(&mut self, now: DateTime<Utc>, mut actions: Actions) -> Actions {
        let only = if self.history_through() {
            if self.late.is_empty() {
                self.run = None;
                return self.finish(&Observations::default(), now, actions);
            }
            Some(std::mem::take(&mut self.late))
        } else {
            None
        };
        // Late instants are at or after the start date, and before the cut-over.
        let from = match &only {
            None => self.run_from(),
            Some(only) => ms(only.first().copied()),
        };
        self.epoch += 1;
        let run = Run {
            from,
            started_at: now,
            seen_running: false,
            restarts: 0,
            cursor: None,
            moved_at: now,
            looked_at: None,
            only,
        };
        actions.reset_host = true;
        match &run.only {
            None => actions.log.push(format!(
                "Exporting history from {} to {} (\"{}\").",
                describe(from),
                timestamp::format(self.to),
                self.job
            )),
            Some(only) => actions.log.push(format!(
                "Exporting history again at {} moment(s) from {} to {} (\"{}\"): live events that arrived behind \
                 the export are sent from there, once.",
                only.len(),
                describe(from),
                timestamp::format(self.run_end(&run)),
                self.job
            )),
        }
        actions.start = Some(ExportPlan { job: self.export_job(), date_from: from, date_to: self.export_to(&run) });
        self.run = Some(run);
        actions
    }

    /// The end the host is given for a run: the cut-over, or a catch-up's last instant
    /// (V2 cuts `[from, to)` into chunks, so it gets a millisecond more).
    fn export_to(&self, run: &Run) -> DateTime<Utc> {
        match (&run.only, self.export_job()) {
            (None, _) => self.to,
            (Some(_), ExportJob::V1) => self.run_end(run),
            (Some(_), ExportJob::V2) => self.run_end(run) + Duration::milliseconds(1),
        }
    }

    fn finish(&mut self, seen: &Observations, now: DateTime<Utc>, mut actions: Actions) -> Actions {
        self.done = true;
        self.position = Some(self.to);
        actions
            .log
            .push(format!("The history is complete: everything up to {} is acknowledged.", timestamp::format(self.to)));
        actions.log.push(self.progress_line(seen, now));
        actions
    }

    fn report(&mut self, seen: &Observations, now: DateTime<Utc>, actions: &mut Actions) {
        if self.reported_at.is_some_and(|at| now - at < REPORT_EVERY) {
            return;
        }
        self.reported_at = Some(now);
        actions.log.push(self.progress_line(seen, now));
    }

    pub fn progress_line(&self, seen: &Observations, now: DateTime<Utc>) -> String {
        let share = self.share_done();
        let minutes = (now - self.started_at).num_seconds().max(1) as f64 / 60.0;
        let rate = seen.delivered as f64 / minutes;
        let left = if share > 0.0 && share < 1.0 {
            format!("; about {} left", human_minutes(minutes * (1.0 - share) / share))
        } else {
            String::new()
        };
        let window = match self.from {
            Some(from) => format!("{} to {}", timestamp::format(from), timestamp::format(self.to)),
            None => format!("the first event to {}", timestamp::format(self.to)),
        };
        // Whole numbers: formatting floats would pull core's float printing into the module.
        format!(
            "History: {}% of {window} acknowledged; {} delivered, {} rejected, {} retries, {} parked; {} events/min{left}.",
            (share * 100.0).round() as i64,
            seen.delivered,
            seen.rejected,
            seen.retried,
            seen.parked,
            rate.round() as i64
        )
    }
}

/// The start of the export window holding an event at `at` (ms): V1 reads windows of
/// ten minutes from where its run began (`origin`), V2 chunks by day from there.
fn window_start(job: ExportJob, at: i64, origin: Option<i64>) -> i64 {
    let origin = origin.unwrap_or(at).min(at);
    match job {
        ExportJob::V1 => origin + (at - origin).div_euclid(V1_WINDOW_MS) * V1_WINDOW_MS,
        ExportJob::V2 => (at - at.rem_euclid(24 * 3600 * 1000)).max(origin),
    }
}

/// The end of the V2 day chunks done in a row from `from` (V2 cuts its range at every
/// midnight UTC and lists each chunk done by its start).
fn v2_done_until(from: Option<DateTime<Utc>>, to: DateTime<Utc>, done: &[String]) -> DateTime<Utc> {
    let Some(mut at) = from else { return DateTime::UNIX_EPOCH };
    let done: Vec<DateTime<Utc>> = done.iter().filter_map(|d| timestamp::parse_iso(d)).collect();
    while at < to && done.contains(&at) {
        let next_midnight = (at.date_naive() + chrono::Days::new(1)).and_time(NaiveTime::MIN).and_utc();
        at = next_midnight.min(to);
    }
    at
}

fn describe(t: Option<DateTime<Utc>>) -> String {
    t.map(timestamp::format).unwrap_or_else(|| "the first event".into())
}

fn human_minutes(minutes: f64) -> String {
    let minutes = minutes.round() as i64;
    match minutes {
        m if m < 60 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{} days", m / (24 * 60)),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "export_tests.rs"]
mod tests;

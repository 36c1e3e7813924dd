//! The history, replayed by the source's own export job up to the cut-over, and the
//! acknowledged position: the point before which every event is delivered, rejected
//! with a reason, or parked (never lost). A reload, a stall or a Force restart starts
//! the export again from the position (resends keep their uuids).
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

use crate::migrator::ExportPlan;
use crate::timestamp;
use crate::version::ExportJob;

/// Without any sign of progress for this long, the export chain is taken as lost.
pub const STALL: Duration = Duration::minutes(10);
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
const V1_WINDOW_MS: i64 = 10 * 60 * 1000;

/// One run of the host's export, from `from` to the cut-over.
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportState {
    pub job: String,
    #[serde(with = "timestamp::iso::option")]
    pub from: Option<DateTime<Utc>>,
    /// The cut-over: the history ends here, live events begin.
    #[serde(with = "timestamp::iso")]
    pub to: DateTime<Utc>,
    /// Everything before this is delivered, rejected or parked (never lost).
    #[serde(with = "timestamp::iso::option")]
    pub position: Option<DateTime<Utc>>,
    pub run: Option<Run>,
    /// Counts the runs: pages are counted in flight per run, so a page of an
    /// abandoned run that finishes late counts for nothing.
    #[serde(default)]
    pub epoch: u32,
    pub done: bool,
    #[serde(with = "timestamp::iso")]
    pub started_at: DateTime<Utc>,
    #[serde(with = "timestamp::iso::option")]
    pub reported_at: Option<DateTime<Utc>>,
    pub warned_quiet: bool,
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
    /// Requests waiting to be resent (not parked), and export pages of this run not
    /// yet handled to the end.
    pub open_parcels: u64,
    pub pages_in_flight: u64,
    /// When exportEvents last received a page (ms).
    pub last_page_at: Option<i64>,
    pub delivered: u64,
    pub rejected: u64,
    pub retried: u64,
    pub parked: u64,
}

/// What the shim must do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Clear `HOST_EXPORT_KEYS` before starting `start`.
    pub reset_host: bool,
    pub start: Option<ExportPlan>,
    pub log: Vec<String>,
    pub warn: Vec<String>,
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
        }
    }

    fn export_job(&self) -> ExportJob {
        if self.job == ExportJob::V2.name() {
            ExportJob::V2
        } else {
            ExportJob::V1
        }
    }

    /// The export's start for a run from the position (V2 always needs one).
    fn run_from(&self) -> Option<DateTime<Utc>> {
        match self.export_job() {
            ExportJob::V1 => self.position,
            ExportJob::V2 => self.position.or_else(|| timestamp::parse_iso(EARLIEST_V2_START)),
        }
    }

    fn plan(&self, from: Option<DateTime<Utc>>) -> ExportPlan {
        ExportPlan { job: self.export_job(), date_from: from, date_to: self.to }
    }

    /// The stretch of history being exported now, if any.
    pub fn window(&self) -> Option<crate::migrator::Window> {
        self.run.as_ref().map(|r| crate::migrator::Window { from: r.from, to: self.to })
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

    /// One minute's look: start, follow, finish or restart the export, and report.
    pub fn tick(&mut self, seen: &Observations, now: DateTime<Utc>) -> Actions {
        let mut actions = Actions::default();
        if self.done {
            return actions;
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
        let settled = seen.open_parcels == 0 && seen.pages_in_flight == 0;
        // A cursor counts once the host began this run (its start is this run's).
        let cursor = seen.host_cursor.filter(|c| {
            seen.host_min.is_some_and(|min| {
                run.from.is_none_or(|from| min == from.timestamp_millis()) && *c >= min - V1_WINDOW_MS
            })
        });
        if cursor != run.cursor || ms(seen.last_page_at).is_some_and(|t| t > run.moved_at) {
            run.moved_at = now;
        }

        // How far the host has certainly gone: V1's cursor as seen a minute ago (a page
        // read before then is counted in flight by now), V2's chunks done in a row.
        let exported = match job {
            ExportJob::V1 => ms(run.cursor),
            ExportJob::V2 => Some(v2_done_until(run.from, self.to, &seen.v2_done)),
        };
        if settled {
            if let Some(upto) = exported.filter(|t| run.from.is_none_or(|from| *t >= from)) {
                self.acknowledge(upto);
            }
        }
        let reached_end = match job {
            ExportJob::V1 => ms(cursor).is_some_and(|c| c > self.to),
            ExportJob::V2 => exported.is_some_and(|t| t >= self.to),
        };
        run.cursor = cursor;

        if !running && reached_end && settled {
            self.position = Some(self.to);
            self.run = None;
            return self.finish(seen, now, actions);
        }
        let quiet = now - run.moved_at >= STALL * if job == ExportJob::V2 { 3 } else { 1 };
        let stopped_early = !running && run.seen_running && !reached_end;
        let paged = ms(seen.last_page_at).is_some_and(|t| t >= run.started_at);
        let stalled = quiet && seen.open_parcels == 0 && (running || seen.pages_in_flight > 0);
        let never_started = quiet && seen.open_parcels == 0 && !running && !run.seen_running && !paged;
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
        } else if stopped_early || stalled || never_started {
            let why = if stopped_early {
                "The historical export stopped before the cut-over".to_string()
            } else {
                format!("The historical export made no progress for {} minutes", (now - run.moved_at).num_minutes())
            };
            let from = self.run_from();
            actions.warn.push(format!("{why}: starting it again from {}.", describe(from)));
            actions = self.start(now, actions);
            if let Some(new_run) = self.run.as_mut() {
                new_run.restarts = run.restarts + 1;
            }
            return actions;
        }
        self.report(seen, now, &mut actions);
        actions
    }

    /// Force restart: the export again, from the last acknowledged position.
    pub fn restart(&mut self, now: DateTime<Utc>) -> Actions {
        let mut actions = Actions::default();
        if self.done {
            actions.log.push("The history is already complete: nothing to restart.".into());
            return actions;
        }
        self.start(now, actions)
    }

    fn start(&mut self, now: DateTime<Utc>, mut actions: Actions) -> Actions {
        if self.position.is_some_and(|p| p >= self.to) {
            self.run = None;
            return self.finish(&Observations::default(), now, actions);
        }
        let from = self.run_from();
        self.epoch += 1;
        self.run = Some(Run { from, started_at: now, seen_running: false, restarts: 0, cursor: None, moved_at: now });
        actions.reset_host = true;
        actions.log.push(format!(
            "Exporting history from {} to {} (\"{}\").",
            describe(from),
            timestamp::format(self.to),
            self.job
        ));
        actions.start = Some(self.plan(from));
        actions
    }

    fn finish(&mut self, seen: &Observations, now: DateTime<Utc>, mut actions: Actions) -> Actions {
        self.done = true;
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

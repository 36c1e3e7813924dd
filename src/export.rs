//! The history, moved in chunks whose end is the durable position: a chunk counts as
//! done only when the host has replayed all of it and nothing of it is still in
//! flight or waiting to be resent. A reload, a stall or a Force restart starts the
//! current chunk again from its beginning (resends keep their uuids).
//!
//! Pure: the shim reads the observations from storage and carries out the actions.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::migrator::ExportPlan;
use crate::timestamp;
use crate::version::ExportJob;

/// One day, as the host's own V2 export chunks it.
pub const CHUNK: Duration = Duration::days(1);
/// No page for this long while the host says it is exporting: the chain broke.
pub const STALL: Duration = Duration::minutes(10);
/// How often progress goes to the log.
pub const REPORT_EVERY: Duration = Duration::minutes(10);
/// Restarts of a chunk that never produced a page before saying so plainly.
const QUIET_RESTARTS: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// `None`: from the source's first event.
    #[serde(with = "timestamp::iso::option")]
    pub from: Option<DateTime<Utc>>,
    #[serde(with = "timestamp::iso")]
    pub to: DateTime<Utc>,
    #[serde(with = "timestamp::iso")]
    pub started_at: DateTime<Utc>,
    /// The host's flag was seen up for this chunk.
    pub seen_running: bool,
    pub restarts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportState {
    pub job: String,
    #[serde(with = "timestamp::iso::option")]
    pub from: Option<DateTime<Utc>>,
    #[serde(with = "timestamp::iso")]
    pub to: DateTime<Utc>,
    /// Everything before this is delivered, rejected or parked (never lost).
    #[serde(with = "timestamp::iso::option")]
    pub position: Option<DateTime<Utc>>,
    pub chunk: Option<Chunk>,
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
    /// The host's `is_export_running`.
    pub host_running: bool,
    /// The host's `timestamp_cursor` and `max_timestamp` (ms), if any.
    pub host_cursor: Option<i64>,
    pub host_last: Option<i64>,
    /// Requests waiting to be resent (not parked), and export pages being handled.
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
    /// Clear the host's flag (and our in-flight count) before starting `start`.
    pub reset_host: bool,
    pub start: Option<ExportPlan>,
    pub log: Vec<String>,
    pub warn: Vec<String>,
}

fn ms(t: Option<i64>) -> Option<DateTime<Utc>> {
    t.and_then(DateTime::from_timestamp_millis)
}

impl ExportState {
    /// A new export of `plan`'s window. Day chunks need a start date; without one
    /// (and with the V2 job, which chunks by itself) the window is one chunk.
    pub fn new(plan: &ExportPlan, now: DateTime<Utc>) -> ExportState {
        ExportState {
            job: plan.job.name().to_string(),
            from: plan.date_from,
            to: plan.date_to,
            position: plan.date_from,
            chunk: None,
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

    fn next_chunk(&self, now: DateTime<Utc>) -> Option<Chunk> {
        if self.done || self.position.is_some_and(|p| p >= self.to) {
            return None;
        }
        let to = match (self.position, self.export_job()) {
            (Some(position), ExportJob::V1) => (position + CHUNK).min(self.to),
            _ => self.to,
        };
        Some(Chunk { from: self.position, to, started_at: now, seen_running: false, restarts: 0 })
    }

    fn plan(&self, chunk: &Chunk) -> ExportPlan {
        ExportPlan { job: self.export_job(), date_from: chunk.from, date_to: chunk.to }
    }

    /// The stretch of history being exported now, if any.
    pub fn window(&self) -> Option<crate::migrator::Window> {
        self.chunk.as_ref().map(|c| crate::migrator::Window { from: c.from, to: c.to })
    }

    /// Share of the window that is behind the position, 0 to 1.
    pub fn share_done(&self) -> f64 {
        if self.done {
            return 1.0;
        }
        match (self.from, self.position) {
            (Some(from), Some(position)) if self.to > from => ((position - from).num_milliseconds() as f64
                / (self.to - from).num_milliseconds() as f64)
                .clamp(0.0, 1.0),
            _ => 0.0,
        }
    }

    /// One minute's look: start, finish or restart a chunk, and report.
    pub fn tick(&mut self, seen: &Observations, now: DateTime<Utc>) -> Actions {
        let mut actions = Actions::default();
        if self.done {
            return actions;
        }
        let Some(mut chunk) = self.chunk.clone() else {
            return self.start_next(now, actions);
        };
        chunk.seen_running |= seen.host_running;
        let host_finished = !seen.host_running
            && (chunk.seen_running || matches!((seen.host_cursor, seen.host_last), (Some(c), Some(l)) if c > l));
        let settled = seen.open_parcels == 0 && seen.pages_in_flight == 0;
        let last_activity = ms(seen.last_page_at).map_or(chunk.started_at, |t| t.max(chunk.started_at));
        let quiet = now - last_activity >= STALL;

        let finished = match self.export_job() {
            ExportJob::V1 => host_finished && settled,
            // V2 keeps its state under keys of its own: the end is a long silence.
            ExportJob::V2 => seen.last_page_at.is_some() && settled && now - last_activity >= STALL * 3,
        };
        if finished {
            self.position = Some(chunk.to);
            self.chunk = None;
            let mut actions = self.start_next(now, actions);
            if self.done {
                actions.log.push(self.progress_line(seen, now));
            }
            return actions;
        }
        let paged = ms(seen.last_page_at).is_some_and(|t| t >= chunk.started_at);
        let stalled = quiet && seen.open_parcels == 0 && (seen.host_running || seen.pages_in_flight > 0);
        let never_started = quiet && seen.open_parcels == 0 && !seen.host_running && !chunk.seen_running && !paged;
        if never_started && chunk.restarts >= QUIET_RESTARTS {
            if !self.warned_quiet {
                self.warned_quiet = true;
                actions.warn.push(format!(
                    "No historical events have arrived since \"{}\" was started. This PostHog may not offer \
                     that export; check the \"PostHog version\" setting. New events are still forwarded.",
                    self.job
                ));
            }
        } else if stalled || never_started {
            chunk.restarts += 1;
            chunk.started_at = now;
            chunk.seen_running = false;
            actions.reset_host = true;
            actions.start = Some(self.plan(&chunk));
            actions.warn.push(format!(
                "The historical export made no progress for {} minutes: starting it again from {}.",
                STALL.num_minutes(),
                describe(chunk.from)
            ));
        }
        self.chunk = Some(chunk);
        self.report(seen, now, &mut actions);
        actions
    }

    /// Force restart: the current chunk again, from the last acknowledged position.
    pub fn restart(&mut self, now: DateTime<Utc>) -> Actions {
        let mut actions = Actions::default();
        self.chunk = None;
        if self.done {
            actions.log.push("The history is already complete: nothing to restart.".into());
            return actions;
        }
        actions.reset_host = true;
        self.start_next(now, actions)
    }

    fn start_next(&mut self, now: DateTime<Utc>, mut actions: Actions) -> Actions {
        match self.next_chunk(now) {
            Some(chunk) => {
                let plan = self.plan(&chunk);
                actions.log.push(format!(
                    "Exporting history from {} to {} (\"{}\").",
                    describe(chunk.from),
                    timestamp::format(chunk.to),
                    self.job
                ));
                actions.start = Some(plan);
                self.chunk = Some(chunk);
            }
            None => {
                self.done = true;
                actions.log.push(format!(
                    "The history is complete: everything up to {} is acknowledged.",
                    timestamp::format(self.to)
                ));
            }
        }
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

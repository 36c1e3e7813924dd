//! A migration from start to end: which of its ranges to read now (what earlier runs of
//! the same source into the same project settled is not sent again), each range a run of
//! its own, read page by page and resumable.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use migrator3000::settings::Settings;
use migrator3000::timestamp;
use serde_json::json;

use super::error::PipelineError;
use super::page_loop::{self, Ended};
use super::plan::{self, Earlier, Part};
use super::progress::Progress;
use super::run_options::Options;
use super::shortfall::Shortfall;
use crate::shared::defaults::YOUNG_HOURS;
use crate::shared::reporter::{note, say};
use crate::shared::retry::RetryPolicy;
use crate::sink::delivery::Capture;
use crate::sources::Source;
use crate::store::runs::Run;
use crate::store::state_file::StateFile;

/// Events younger than this go without `historical_migration`, as PostHog asks.
pub const YOUNG: Duration = Duration::hours(YOUNG_HOURS);

/// How the runs of a migration came out.
pub enum Finished {
    /// Earlier runs settled all of it: nothing was read.
    AlreadyComplete,
    /// These runs read their ranges, over `seconds`, and ended so.
    Ran { runs: Vec<String>, seconds: f64, ended: Ended },
}

/// Where a migration goes: the destination and its project, named by its key.
pub struct Target {
    pub url: String,
    pub api_key: String,
}

impl Target {
    pub fn of(settings: &Settings) -> Target {
        Target { url: settings.destination.base_url.clone(), api_key: settings.project_api_key.clone() }
    }

    /// A project key as it is shown: its start, and a digest of the whole that tells
    /// keys with the same start apart (the output never shows a key whole).
    pub fn label(api_key: &str) -> String {
        let start: String = api_key.chars().take(8).collect();
        let digest = migrator3000::event_id::derive(&json!(["project api key", api_key]));
        format!("{start}… #{}", &digest[..8])
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (project {})", self.url, Target::label(&self.api_key))
    }
}

/// The settings every run of a migration shares.
pub struct Migration {
    base: Options,
    destination: String,
    target: String,
}

impl Migration {
    pub fn new(
        settings: &Settings,
        target: &Target,
        page_size: usize,
        concurrency: usize,
        retry: RetryPolicy,
        now: DateTime<Utc>,
    ) -> Migration {
        Migration {
            base: Options {
                run: String::new(),
                api_key: settings.project_api_key.clone(),
                capture: Capture {
                    json_url: settings.destination.batch_url(false),
                    gzip_url: settings.destination.batch_url(true),
                    limits: settings.limits,
                    gzip: settings.gzip,
                    events_per_minute: settings.events_per_minute,
                    retry,
                },
                events_to_ignore: settings.events_to_ignore.clone(),
                page_size,
                concurrency,
                young_after: now - YOUNG,
                record_days: false,
            },
            destination: target.url.clone(),
            target: target.to_string(),
        }
    }

    /// Records the (UTC day, uuid) of every event a page hands over, for `verify`.
    pub fn recording_days(mut self) -> Migration {
        self.base.record_days = true;
        self
    }

    pub fn options(&self, run: String) -> Arc<Options> {
        Arc::new(Options { run, ..self.base.clone() })
    }

    /// Copies what earlier runs of this migration did not settle of `range` (`None`: a
    /// source read whole, as one run), of which the source has just counted `counted`
    /// (its selection stands for a run over the whole range).
    pub fn run(
        &self,
        state_path: &Path,
        state: &mut StateFile,
        source: &mut dyn Source,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
        counted: Option<u64>,
    ) -> Result<Finished, PipelineError> {
        let migration = format!("{} into {}", source.identity(), self.target);
        let earlier = state.runs_of(&migration)?;
        if earlier.is_empty() {
            say_other_projects(state, source, &self.target)?;
            if let Some(line) = source.starting_note() {
                note!("{line}");
            }
        }
        let parts = match range {
            Some((from, to)) => {
                let spans: Vec<Earlier> = earlier
                    .iter()
                    .map(|run| Earlier {
                        from: timestamp::parse_iso(&run.from).unwrap_or(from),
                        to: timestamp::parse_iso(&run.to).unwrap_or(from),
                        done: run.done,
                    })
                    .collect();
                for (run, span) in earlier.iter().zip(&spans) {
                    if run.done && span.from < to && span.to > from {
                        note!(
                            "{} to {} was copied before ({} delivered, {} rejected): not sent again.",
                            run.from,
                            run.to,
                            run.delivered,
                            run.rejected
                        );
                    }
                }
                plan::plan(&spans, from, to)
            }
            None => match earlier.first() {
                Some(run) if run.done => Vec::new(),
                Some(_) => vec![Part::Continue(0)],
                // A run of its own with no range (the times are not used).
                None => vec![Part::New(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MIN_UTC)],
            },
        };
        if parts.is_empty() {
            let (delivered, rejected) =
                earlier.iter().fold((0, 0), |(d, r), run| (d + run.delivered, r + run.rejected));
            say!(
                "This migration is already complete: {delivered} delivered, {rejected} rejected. (State: {})",
                state_path.display()
            );
            return Ok(Finished::AlreadyComplete);
        }
        let mut runs = Vec::new();
        let mut ended = Ended::Complete;
        let mut unread = Vec::new();
        let started = std::time::Instant::now();
        for part in parts {
            let mut run = match part {
                Part::Continue(index) => earlier[index].clone(),
                Part::New(from, to) => self.new_run(&migration, source, range.map(|_| (from, to))),
            };
            if let Some((from, to)) = range {
                // The run's own range: what the source holds there, and where it reads.
                let own = (timestamp::parse_iso(&run.from), timestamp::parse_iso(&run.to));
                if own == (Some(from), Some(to)) && counted.is_some() {
                    run.total = counted;
                } else {
                    let bounds = self.base.capture.retry.read(|| source.select(own.0, own.1))?;
                    run.total = bounds.map(|b| b.count).or(run.total);
                }
            }
            state.start(&run)?;
            let stored = state.run(&run.id)?.unwrap_or(run);
            let what = if range.is_some() { format!("{} to {}", stored.from, stored.to) } else { "all of it".into() };
            note!(
                "Copying {what}{}",
                stored.cursor.as_ref().map_or(String::new(), |c| format!(", resuming after {}", c.timestamp))
            );
            let options = self.options(stored.id.clone());
            let progress = Progress::new(&stored);
            let this = page_loop::run_pages(state, source, &options, &progress);
            progress.finish();
            runs.push(stored.id.clone());
            match this? {
                Ended::Complete => {}
                // The other parts are read all the same: the summary says what is left.
                Ended::Short(short) => unread.extend(short.windows),
                stopped => {
                    ended = stopped;
                    break;
                }
            }
        }
        if ended == Ended::Complete && !unread.is_empty() {
            ended = Ended::Short(Shortfall { windows: unread });
        }
        Ok(Finished::Ran { runs, seconds: started.elapsed().as_secs_f64(), ended })
    }

    fn new_run(&self, migration: &str, source: &dyn Source, range: Option<(DateTime<Utc>, DateTime<Utc>)>) -> Run {
        let (from, to) =
            range.map_or((String::new(), String::new()), |(f, t)| (timestamp::format(f), timestamp::format(t)));
        Run {
            id: if from.is_empty() { migration.to_string() } else { format!("{migration}, from {from} to {to}") },
            migration: migration.to_string(),
            source: source.describe(),
            destination: self.destination.clone(),
            api_key: self.base.api_key.clone(),
            gzip: self.base.capture.gzip,
            from,
            to,
            cursor: None,
            total: None,
            read: 0,
            delivered: 0,
            rejected: 0,
            live: 0,
            duplicates: 0,
            done: false,
        }
    }
}

/// When this source went elsewhere before, say that this project is a migration of its
/// own (copied from the start).
fn say_other_projects(state: &StateFile, source: &dyn Source, target: &str) -> Result<(), PipelineError> {
    let described = source.describe();
    let others: BTreeSet<String> = state
        .runs()?
        .into_iter()
        .filter(|run| run.source == described)
        .map(|run| format!("{} (project {})", run.destination, Target::label(&run.api_key)))
        .filter(|other| other != target)
        .collect();
    if !others.is_empty() {
        note!(
            "This state file copied this source into {} before, not into {target}: this is a migration of its own, \
             from the start.",
            others.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

//! A migration from start to end as the command runs it: which of its ranges to copy
//! now (what earlier runs of the same source into the same project settled is not sent
//! again), each range copied and resumable, and what to say about how it ended, in the
//! command's own words (its flags; never the app's settings form).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use migrator3000::delivery::Refusal;
use migrator3000::dispatch::KeepState;
use migrator3000::settings::Settings;
use migrator3000::timestamp;
use serde_json::json;

use crate::migrate::{self, Ended, Options};
use crate::plan::{self, Earlier, Part};
use crate::progress::Progress;
use crate::source::Source;
use crate::state::{Run, Settled, State};

/// Bad or missing flags (clap's own code for them too).
pub const USAGE: u8 = 2;
/// Complete, but some requests are parked.
pub const PARKED: u8 = 3;
/// The destination refused the key, or is not PostHog's capture.
pub const REFUSED: u8 = 4;

/// Events younger than this go without `historical_migration`, as PostHog asks.
const YOUNG: Duration = Duration::hours(48);

pub enum Failure {
    /// A flag is wrong or missing: exit code 2.
    Usage(String),
    /// Anything else: exit code 1.
    Error(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Error(message)
    }
}

pub type Outcome = Result<ExitCode, Failure>;

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

/// The flags and settings every run of this command shares.
pub struct Copy {
    base: Options,
    destination: String,
    target: String,
}

impl Copy {
    pub fn new(
        args: &crate::Destination,
        settings: &Settings,
        target: &Target,
        page_size: usize,
        now: DateTime<Utc>,
    ) -> Copy {
        Copy {
            base: Options {
                run: String::new(),
                api_key: settings.project_api_key.clone(),
                json_url: settings.destination.batch_url(false),
                gzip_url: settings.destination.batch_url(true),
                limits: settings.limits,
                gzip: settings.gzip,
                events_to_ignore: settings.events_to_ignore.clone(),
                events_per_minute: settings.events_per_minute,
                page_size,
                concurrency: args.concurrency,
                retry_scale: args.retry_scale.max(0.0),
                young_after: now - YOUNG,
                record_days: false,
            },
            destination: target.url.clone(),
            target: target.to_string(),
        }
    }

    /// Records the (UTC day, uuid) of every event a page hands over, for `verify`.
    pub fn recording_days(mut self) -> Copy {
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
        state: &mut State,
        source: &mut dyn Source,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
        counted: Option<u64>,
    ) -> Outcome {
        let migration = format!("{} into {}", source.identity(), self.target);
        let earlier = state.runs_of(&migration)?;
        if earlier.is_empty() {
            say_other_projects(state, source, &self.target)?;
            if let Some(note) = source.starting_note() {
                eprintln!("{note}");
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
                        eprintln!(
                            "{} to {} was copied before ({} delivered, {} rejected): not sent again.",
                            run.from, run.to, run.delivered, run.rejected
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
            println!(
                "This migration is already complete: {delivered} delivered, {rejected} rejected. (State: {})",
                state_path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let mut runs = Vec::new();
        let mut ended = Ended::Complete;
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
                    let select = || source.select(own.0, own.1);
                    let bounds = migrate::patiently(select, self.base.retry_scale, |note| eprintln!("{note}"))?;
                    run.total = bounds.map(|b| b.count).or(run.total);
                }
            }
            state.start(&run)?;
            let stored = state.run(&run.id)?.unwrap_or(run);
            let what = if range.is_some() { format!("{} to {}", stored.from, stored.to) } else { "all of it".into() };
            eprintln!(
                "Copying {what}{}",
                stored.cursor.as_ref().map_or(String::new(), |c| format!(", resuming after {}", c.timestamp))
            );
            let options = self.options(stored.id.clone());
            let progress = Progress::new(&stored);
            let this = migrate::migrate(state, source, &options, &progress);
            progress.finish();
            runs.push(stored.id.clone());
            ended = this?;
            if ended != Ended::Complete {
                break;
            }
        }
        summary(state, &runs, started.elapsed().as_secs_f64(), ended, &self.destination, &source.remarks())
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
            gzip: self.base.gzip,
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
fn say_other_projects(state: &State, source: &dyn Source, target: &str) -> Result<(), String> {
    let described = source.describe();
    let others: BTreeSet<String> = state
        .runs()?
        .into_iter()
        .filter(|run| run.source == described)
        .map(|run| format!("{} (project {})", run.destination, Target::label(&run.api_key)))
        .filter(|other| other != target)
        .collect();
    if !others.is_empty() {
        eprintln!(
            "This state file copied this source into {} before, not into {target}: this is a migration of its own, \
             from the start.",
            others.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// The destination's refusal in the command's words.
pub fn refusal_words(refusal: &Refusal) -> String {
    match refusal {
        Refusal::Key { status } => format!(
            "the destination refused the project API key (HTTP {status}). Check --project-api-key (the destination \
             project's API key, phc_...) and --host (a key belongs to one PostHog: us.i.posthog.com and \
             eu.i.posthog.com are apart)."
        ),
        Refusal::NotCapture { status } => {
            format!("the destination answered HTTP {status}: it does not look like PostHog's capture. Check --host.")
        }
        Refusal::Endpoint { status, said } => format!(
            "the destination refuses every event alone with the answer it gave the whole request (HTTP {status} \
             {said}): that is about where the events go (a redirect, e.g. from http:// to https://, turns POST into \
             GET). Check --host."
        ),
    }
}

/// What the runs of this command did, and its exit code.
fn summary(
    state: &State,
    runs: &[String],
    seconds: f64,
    ended: Ended,
    destination: &str,
    remarks: &[String],
) -> Outcome {
    let mut total = Settled::default();
    let (mut rejected, mut parked) = (0, 0);
    let mut samples = Vec::new();
    for id in runs {
        let Some(run) = state.run(id)? else { continue };
        total.read += run.read;
        total.delivered += run.delivered;
        total.live += run.live;
        total.duplicates += run.duplicates;
        rejected += run.rejected;
        parked += state.count_events(id, KeepState::Parked.name())?;
        samples.extend(state.rejected_sample(id, 10)?);
    }
    println!(
        "{} events read, {} delivered, {rejected} rejected, {parked} parked, in {seconds:.1} s.",
        total.read, total.delivered
    );
    for (uuid, event, reason) in samples.into_iter().take(10) {
        if uuid.is_empty() {
            println!("  rejected: {reason}");
        } else {
            println!("  rejected {event:?} (uuid {uuid}): {reason}");
        }
    }
    if total.live > 0 {
        println!(
            "{} events younger than 48 hours were sent without historical_migration, as PostHog asks (it counts \
             them as ordinary ingestion).",
            total.live
        );
    }
    if total.duplicates > 0 {
        println!(
            "{} rows at the source were duplicates of an event (the same uuid: rows its ReplacingMergeTree had not \
             merged yet): each event was sent once.",
            total.duplicates
        );
    }
    for remark in remarks {
        println!("{remark}");
    }
    match ended {
        Ended::Complete if parked > 0 => {
            println!(
                "Some requests were parked after their attempts: run `migrator3000 resend-parked` to send them again."
            );
            Ok(ExitCode::from(PARKED))
        }
        Ended::Complete => {
            println!("The migration is complete.");
            Ok(ExitCode::SUCCESS)
        }
        Ended::Stopped(refusal) => {
            eprintln!(
                "Stopped: {}\nNothing past the last acknowledged page moved; fix it and run the command again.",
                refusal_words(&refusal)
            );
            Ok(ExitCode::from(REFUSED))
        }
        Ended::Unreachable(cause) => Err(Failure::Error(format!(
            "the destination {destination} cannot be reached: {cause}. Check --host, and that this machine reaches \
             it. Nothing past the last acknowledged page moved: run the same command again once it answers."
        ))),
    }
}

/// Reads and transforms the whole range, sends and stores nothing.
pub fn dry_run(source: &mut dyn Source, options: &Options) -> Outcome {
    let mut cursor = None;
    let mut settled = Settled::default();
    let mut events = 0usize;
    let mut requests = 0usize;
    loop {
        let page = source.next_page(cursor.as_ref(), options.page_size).map_err(|e| e.to_string())?;
        if page.next.is_none() {
            break;
        }
        settled.read += page.skipped.len() as u64;
        settled.rejected.extend(page.skipped.into_iter().map(|why| (None, None, why)));
        let batches = migrate::batches_of(&page.events, options, &mut settled);
        events += batches.iter().map(|b| b.uuids.len()).sum::<usize>();
        requests += batches.len();
        cursor = page.next;
    }
    println!(
        "Dry run: {} events read; {events} would be sent in {requests} requests, {} would be rejected. Nothing was sent.",
        settled.read,
        settled.rejected.len()
    );
    for (uuid, event, reason) in settled.rejected.iter().take(10) {
        match uuid {
            None => println!("  would reject: {reason}"),
            Some(uuid) => println!("  would reject {:?} (uuid {uuid}): {reason}", event.clone().unwrap_or_default()),
        }
    }
    for remark in source.remarks() {
        println!("{remark}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends every run's waiting requests again; says what is still parked after.
pub fn resend(state: &mut State, retry_scale: f64) -> Outcome {
    for run in state.runs()? {
        if state.count_events(&run.id, KeepState::Waiting.name())? == 0 {
            continue;
        }
        let destination = migrator3000::host::parse(&run.destination).map_err(|e| e.to_string())?;
        let options = Options {
            run: run.id.clone(),
            api_key: run.api_key.clone(),
            json_url: destination.batch_url(false),
            gzip_url: destination.batch_url(true),
            limits: migrator3000::batch::BatchLimits { max_events: 500, max_bytes: 1_800_000 },
            gzip: run.gzip,
            events_to_ignore: BTreeSet::new(),
            events_per_minute: None,
            page_size: 1,
            concurrency: 1,
            retry_scale,
            young_after: Utc::now() - YOUNG,
            record_days: false,
        };
        let progress = Progress::new(&run);
        let ended = migrate::resend_waiting(state, &options, &progress)?;
        progress.finish();
        match ended {
            Ended::Complete => {}
            Ended::Stopped(refusal) => {
                state.park_waiting(&run.id)?;
                eprintln!("Stopped: {}", refusal_words(&refusal));
                return Ok(ExitCode::from(REFUSED));
            }
            Ended::Unreachable(cause) => {
                state.park_waiting(&run.id)?;
                eprintln!("The destination {} still cannot be reached: {cause}.", run.destination);
            }
        }
    }
    let parked: u64 =
        state.runs()?.iter().map(|run| state.count_events(&run.id, KeepState::Parked.name())).sum::<Result<_, _>>()?;
    if parked > 0 {
        println!(
            "{parked} events are still parked: the destination did not take them. Run `migrator3000 resend-parked` \
             again once it does (`migrator3000 status` shows them)."
        );
        return Ok(ExitCode::from(PARKED));
    }
    println!("No event is parked any more: see `migrator3000 status`.");
    Ok(ExitCode::SUCCESS)
}

//! `migrator3000`: copies a PostHog's events to another PostHog by reading them itself,
//! from its ClickHouse or its Query API, with the same transform, uuids, batches and
//! answer decisions as the app, and its state in one SQLite file so that a killed run
//! resumes where it was.

mod amplitude;
mod demo;
mod migrate;
mod progress;
mod send;
mod source;
mod state;
mod verify;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use migrator3000::dispatch::KeepState;
use migrator3000::settings::Settings;
use migrator3000::timestamp;
use serde_json::{json, Map, Value};

use crate::amplitude::export_api::{self, ExportApi};
use crate::amplitude::files::LocalExport;
use crate::amplitude::Amplitude;
use crate::migrate::{Ended, Options};
use crate::progress::Progress;
use crate::source::clickhouse::ClickHouse;
use crate::source::query_api::QueryApi;
use crate::source::Source;
use crate::state::{Run, Settled, State};

#[derive(Parser)]
#[command(name = "migrator3000", version, about = "Copies a PostHog's events to another PostHog, resumably.")]
struct Cli {
    /// The state file: where a run resumes from.
    #[arg(long, global = true, default_value = "migrator3000.sqlite")]
    state: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copies the events of a PostHog (its ClickHouse, or its Query API) to the destination.
    Posthog(Box<PosthogArgs>),
    /// Copies an Amplitude project's events (a local export, or its Export API), each
    /// device linked once to its user.
    Amplitude(Box<AmplitudeArgs>),
    /// Progress of every migration in the state file.
    Status,
    /// Checks at the destination, UTC day by UTC day, that every event of the source
    /// arrived; finds the missing ones (and with --resend sends them again).
    Verify(Box<verify::VerifyArgs>),
    /// Shows the command end to end on generated data: an Amplitude export migrated to a
    /// destination on loopback, killed part way and resumed, then checked.
    Demo {
        /// Events in the generated export.
        #[arg(long, default_value_t = 5000)]
        events: usize,
        /// Keep the generated export and the state file (their folder is printed).
        #[arg(long)]
        keep: bool,
    },
    /// Sends again the requests parked after their attempts (or held for a setting).
    ResendParked {
        /// Multiplies every wait before a resend.
        #[arg(long, default_value_t = 1.0, hide = true)]
        retry_scale: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum From {
    Clickhouse,
    QueryApi,
}

#[derive(clap::Args)]
struct PosthogArgs {
    /// Where to read: the source's ClickHouse (fastest), or its Query API (when no
    /// ClickHouse port is reachable).
    #[arg(long, value_enum)]
    from: From,
    #[command(flatten)]
    source: PosthogSource,
    #[command(flatten)]
    to: Destination,
}

/// Where a PostHog's events are read: the flags of `posthog` and of `verify`.
#[derive(clap::Args)]
struct PosthogSource {
    /// ClickHouse's HTTP interface, e.g. http://localhost:8123.
    #[arg(long, required_if_eq("from", "clickhouse"))]
    clickhouse_url: Option<String>,
    #[arg(long, default_value = "default")]
    clickhouse_user: String,
    #[arg(long, env = "CLICKHOUSE_PASSWORD", default_value = "", hide_env_values = true)]
    clickhouse_password: String,
    #[arg(long, default_value = "default")]
    clickhouse_database: String,
    /// `events`, or `sharded_events` on a sharded cluster's node.
    #[arg(long, default_value = "events")]
    clickhouse_table: String,
    /// The team (project) id of the events in ClickHouse.
    #[arg(long, required_if_eq("from", "clickhouse"))]
    team_id: Option<u64>,
    /// The source PostHog, e.g. https://posthog.example.com.
    #[arg(long, required_if_eq("from", "query-api"))]
    query_api_host: Option<String>,
    #[arg(long, required_if_eq("from", "query-api"))]
    project_id: Option<u64>,
    /// A personal API key of the source with the Query Read permission.
    #[arg(long, env = "POSTHOG_PERSONAL_API_KEY", hide_env_values = true)]
    personal_api_key: Option<String>,
}

impl PosthogSource {
    fn clickhouse(&self, from: &str, to: &str) -> ClickHouse {
        ClickHouse::new(
            self.clickhouse_url.as_deref().unwrap_or_default(),
            &self.clickhouse_user,
            &self.clickhouse_password,
            &self.clickhouse_database,
            &self.clickhouse_table,
            self.team_id.unwrap_or_default(),
            from,
            to,
        )
    }

    fn personal_api_key(&self) -> Result<&str, String> {
        self.personal_api_key.as_deref().filter(|k| !k.trim().is_empty()).ok_or(
            "--personal-api-key (or POSTHOG_PERSONAL_API_KEY) is required with --from query-api: a personal API \
             key of the source with the Query Read permission"
                .into(),
        )
    }

    /// The source's events from `from` to `to` (ClickHouse datetimes, UTC).
    fn open(&self, read: From, from: &str, to: &str) -> Result<Box<dyn Source>, String> {
        Ok(match read {
            From::Clickhouse => Box::new(self.clickhouse(from, to)),
            From::QueryApi => Box::new(QueryApi::new(
                self.query_api_host.as_deref().unwrap_or_default(),
                self.project_id.unwrap_or_default(),
                self.personal_api_key()?,
                from,
                to,
            )),
        })
    }
}

#[derive(clap::Args)]
struct AmplitudeArgs {
    /// A local export: the zip Amplitude's Export API returns, or a folder of its
    /// `.json.gz` files (or of such zips). All of it is imported: --start and --end
    /// choose the days of the Export API only.
    #[arg(long, conflicts_with_all = ["api_key", "secret_key"])]
    files: Option<PathBuf>,
    /// Amplitude's project API key, to read its Export API directly.
    #[arg(long, env = "AMPLITUDE_API_KEY", hide_env_values = true, requires = "secret_key")]
    api_key: Option<String>,
    /// Amplitude's project secret key, with --api-key.
    #[arg(long, env = "AMPLITUDE_SECRET_KEY", hide_env_values = true, requires = "api_key")]
    secret_key: Option<String>,
    /// The project is in Amplitude's EU region.
    #[arg(long)]
    eu: bool,
    /// Amplitude's Export API at another address (tests).
    #[arg(long, hide = true)]
    amplitude_url: Option<String>,
    #[command(flatten)]
    to: Destination,
}

#[derive(clap::Args)]
struct Destination {
    /// First day to copy (YYYY-MM-DD or a timestamp); default 2020-01-01, before
    /// PostHog's first release.
    #[arg(long)]
    start: Option<String>,
    /// Copy events before this (YYYY-MM-DD or a timestamp); default now.
    #[arg(long)]
    end: Option<String>,
    /// The destination, e.g. us.i.posthog.com or https://posthog.example.com.
    #[arg(long)]
    host: String,
    /// The destination project's API key (phc_...).
    #[arg(long, env = "POSTHOG_PROJECT_API_KEY", hide_env_values = true)]
    project_api_key: String,
    #[arg(long, default_value = "500")]
    batch_size: String,
    #[arg(long, default_value = "1800")]
    batch_max_kilobytes: String,
    #[arg(long, default_value = "on")]
    gzip: String,
    /// Paces the migration, as PostHog asks for large ones (e.g. 10000).
    #[arg(long, default_value = "")]
    events_per_minute: String,
    /// Event names not to copy, separated by commas.
    #[arg(long, default_value = "")]
    events_to_ignore: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Events read from the source per query.
    #[arg(long, default_value_t = 10_000)]
    page_size: usize,
    /// Read and transform, send nothing, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Multiplies every wait before a resend.
    #[arg(long, default_value_t = 1.0, hide = true)]
    retry_scale: f64,
}

/// The flag each of the core's settings comes from, for error messages.
const FLAGS: [(&str, &str); 8] = [
    ("host", "--host"),
    ("projectApiKey", "--project-api-key"),
    ("startDate", "--start"),
    ("batchSize", "--batch-size"),
    ("batchMaxKilobytes", "--batch-max-kilobytes"),
    ("gzip", "--gzip"),
    ("eventsPerMinute", "--events-per-minute"),
    ("eventsToIgnore", "--events-to-ignore"),
];

/// The destination settings, checked by the core exactly as the app checks its form.
fn settings(args: &Destination, now: DateTime<Utc>) -> Result<Settings, String> {
    let form: Map<String, Value> = json!({
        "host": args.host, "projectApiKey": args.project_api_key, "startDate": args.start.clone().unwrap_or_default(),
        "batchSize": args.batch_size, "batchMaxKilobytes": args.batch_max_kilobytes, "gzip": args.gzip,
        "eventsPerMinute": args.events_per_minute, "eventsToIgnore": args.events_to_ignore,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    Settings::parse(&form, now).map_err(|error| {
        let lines: Vec<String> = error
            .0
            .iter()
            .map(|p| {
                let flag = FLAGS.iter().find(|(key, _)| *key == p.field.key).map_or(p.field.key, |(_, flag)| flag);
                format!("{flag}: \"{}\" is not accepted: {}.", p.value, p.problem)
            })
            .collect();
        lines.join("\n")
    })
}

fn time_flag(flag: &str, text: &str) -> Result<DateTime<Utc>, String> {
    timestamp::parse_date(text.trim())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .or_else(|| timestamp::parse_iso(text))
        .ok_or_else(|| format!("{flag}: \"{text}\" is not a date; write it as YYYY-MM-DD, e.g. 2021-06-01"))
}

fn clickhouse_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// The run's range, checked: from the start date (default 2020-01-01) to the end (now).
fn range(
    args: &Destination,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let from = settings.start.unwrap_or_else(|| timestamp::parse_iso("2020-01-01T00:00:00Z").unwrap_or(now));
    let to = match &args.end {
        Some(end) => time_flag("--end", end)?,
        None => now,
    };
    if to <= from {
        return Err(format!("--end ({}) must come after --start ({})", timestamp::format(to), timestamp::format(from)));
    }
    if args.concurrency == 0 || args.page_size == 0 {
        return Err("--concurrency and --page-size must be at least 1".into());
    }
    Ok((from, to))
}

fn options(args: &Destination, settings: &Settings, run: String) -> Arc<Options> {
    Arc::new(Options {
        run,
        api_key: settings.project_api_key.clone(),
        json_url: settings.destination.batch_url(false),
        gzip_url: settings.destination.batch_url(true),
        limits: settings.limits,
        gzip: settings.gzip,
        events_to_ignore: settings.events_to_ignore.clone(),
        events_per_minute: settings.events_per_minute,
        page_size: args.page_size,
        concurrency: args.concurrency,
        retry_scale: args.retry_scale.max(0.0),
        record_days: false,
    })
}

fn posthog(cli: &Cli, args: &PosthogArgs) -> Result<ExitCode, String> {
    let now = Utc::now();
    let settings = settings(&args.to, now)?;
    let (from, to) = range(&args.to, &settings, now)?;
    let (from_ch, to_ch) = (clickhouse_time(from), clickhouse_time(to));
    let mut source = args.source.open(args.from, &from_ch, &to_ch)?;
    let options = options(
        &args.to,
        &settings,
        format!("{} from {from_ch} to {to_ch} into {}", source.describe(), settings.destination.base_url),
    );
    if args.to.dry_run {
        return dry_run(source.as_mut(), &options);
    }
    let mut state = State::open(&cli.state)?;
    // One count for the progress bar; never one per page.
    let total = match args.from {
        From::Clickhouse => Some(args.source.clickhouse(&from_ch, &to_ch).count().map_err(|e| e.to_string())?),
        From::QueryApi => None,
    };
    migrate_run(cli, &mut state, source.as_mut(), &options, &settings, Some((from, to)), total)
}

fn amplitude(cli: &Cli, args: &AmplitudeArgs) -> Result<ExitCode, String> {
    let now = Utc::now();
    let settings = settings(&args.to, now)?;
    let (from, to) = range(&args.to, &settings, now)?;
    let mut state = if args.to.dry_run { None } else { Some(State::open(&cli.state)?) };
    let linked = match &state {
        Some(state) => state.aliases()?,
        None => Default::default(),
    };
    let mut source: Box<dyn Source> = match (&args.files, &args.api_key, &args.secret_key) {
        (Some(path), _, _) => Box::new(Amplitude::new(LocalExport::open(path)?, &linked)),
        (None, Some(key), Some(secret)) => {
            let base = args.amplitude_url.as_deref().unwrap_or(if args.eu { export_api::EU } else { export_api::US });
            Box::new(Amplitude::new(ExportApi::new(base, key, secret, from, to), &linked))
        }
        _ => return Err("give --files (a local export) or --api-key and --secret-key (Amplitude's Export API)".into()),
    };
    let range_text = match &args.files {
        Some(_) => String::new(),
        None => format!(" from {} to {}", timestamp::format(from), timestamp::format(to)),
    };
    let mut options = options(
        &args.to,
        &settings,
        format!("{}{range_text} into {}", source.describe(), settings.destination.base_url),
    );
    if let Some(options) = Arc::get_mut(&mut options) {
        // What the import hands over, recorded per day for `verify --from amplitude`.
        options.record_days = true;
    }
    match state.as_mut() {
        None => dry_run(source.as_mut(), &options),
        // A local export is imported whole: its run has no range.
        Some(state) => {
            let range = args.files.is_none().then_some((from, to));
            migrate_run(cli, state, source.as_mut(), &options, &settings, range, None)
        }
    }
}

/// Runs (or resumes) a migration and says how it ended.
fn migrate_run(
    cli: &Cli,
    state: &mut State,
    source: &mut dyn Source,
    options: &Arc<Options>,
    settings: &Settings,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    total: Option<u64>,
) -> Result<ExitCode, String> {
    let (from, to) =
        range.map_or((String::new(), String::new()), |(f, t)| (timestamp::format(f), timestamp::format(t)));
    let run = Run {
        id: options.run.clone(),
        source: source.describe(),
        destination: settings.destination.base_url.clone(),
        api_key: settings.project_api_key.clone(),
        gzip: settings.gzip,
        from,
        to,
        cursor: None,
        total,
        read: 0,
        delivered: 0,
        rejected: 0,
        done: false,
    };
    state.start(&run)?;
    let stored = state.run(&run.id)?.unwrap_or(run);
    if stored.done {
        println!(
            "This migration is already complete: {} delivered, {} rejected. (State: {})",
            stored.delivered,
            stored.rejected,
            cli.state.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "Migrating {} into {}{}",
        stored.source,
        stored.destination,
        stored.cursor.as_ref().map_or(String::new(), |c| format!(", resuming after {}", c.timestamp))
    );
    let progress = Progress::new(&stored);
    let ended = migrate::migrate(state, source, options, &progress);
    progress.finish();
    let ended = ended?;
    let done = state.run(&options.run)?.unwrap_or(stored);
    let parked = state.count_events(&done.id, KeepState::Parked.name())?;
    println!(
        "{} events read, {} delivered, {} rejected, {} parked, in {:.1} s.",
        done.read,
        done.delivered,
        done.rejected,
        parked,
        progress.seconds()
    );
    for (uuid, event, reason) in state.rejected_sample(&done.id, 10)? {
        if uuid.is_empty() {
            println!("  rejected: {reason}");
        } else {
            println!("  rejected {event:?} (uuid {uuid}): {reason}");
        }
    }
    match ended {
        Ended::Complete if parked > 0 => {
            println!(
                "Some requests were parked after their attempts: run `migrator3000 resend-parked` to send them again."
            );
            Ok(ExitCode::from(3))
        }
        Ended::Complete => {
            println!("The migration is complete.");
            Ok(ExitCode::SUCCESS)
        }
        Ended::Stopped(message) => {
            eprintln!("Stopped: {message}\nNothing past the last acknowledged page moved; fix it and run the same command again.");
            Ok(ExitCode::from(2))
        }
    }
}

fn dry_run(source: &mut dyn Source, options: &Options) -> Result<ExitCode, String> {
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
    Ok(ExitCode::SUCCESS)
}

fn status(cli: &Cli) -> Result<ExitCode, String> {
    if !cli.state.exists() {
        return Err(format!("there is no state file at {}: no migration has run from here", cli.state.display()));
    }
    let state = State::open(&cli.state)?;
    let runs = state.runs()?;
    if runs.is_empty() {
        println!("No migration in {}.", cli.state.display());
    }
    for run in runs {
        let waiting = state.count_events(&run.id, KeepState::Waiting.name())?;
        let parked = state.count_events(&run.id, KeepState::Parked.name())?;
        let position = run.cursor.as_ref().map_or("not started".to_string(), |c| format!("up to {}", c.timestamp));
        let share = run
            .total
            .filter(|t| *t > 0)
            .map_or(String::new(), |t| format!(" ({:.0}% of {t})", 100.0 * run.read as f64 / t as f64));
        println!("{}", run.source);
        if run.from.is_empty() {
            println!("  into {}, the whole export", run.destination);
        } else {
            println!("  into {}, {} to {}", run.destination, run.from, run.to);
        }
        println!(
            "  {}: {position}; {} read{share}, {} delivered, {} rejected, {waiting} waiting, {parked} parked",
            if run.done { "complete" } else { "in progress" },
            run.read,
            run.delivered,
            run.rejected
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn resend_parked(cli: &Cli, retry_scale: f64) -> Result<ExitCode, String> {
    let mut state = State::open(&cli.state)?;
    let released = state.unpark()?;
    println!("{released} parked requests wait to be sent again.");
    for run in state.runs()? {
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
            record_days: false,
        };
        let progress = Progress::new(&run);
        let ended = migrate::resend_waiting(&mut state, &options, &progress)?;
        progress.finish();
        if let Ended::Stopped(message) = ended {
            eprintln!("Stopped: {message}");
            return Ok(ExitCode::from(2));
        }
    }
    println!("Done: see `migrator3000 status`.");
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Posthog(args) => posthog(&cli, args),
        Command::Amplitude(args) => amplitude(&cli, args),
        Command::Status => status(&cli),
        Command::Verify(args) => verify::run(&cli.state, args),
        Command::Demo { events, keep } => demo::run(*events, *keep),
        Command::ResendParked { retry_scale } => resend_parked(&cli, *retry_scale),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("migrator3000: {message}");
            ExitCode::FAILURE
        }
    }
}

//! `migrator3000`: copies a PostHog's events to another PostHog by reading them itself,
//! from its ClickHouse or its Query API, with the same transform, uuids, batches and
//! answer decisions as the app, and its state in one SQLite file so that a killed run
//! resumes where it was.

mod amplitude;
mod copy;
mod demo;
mod migrate;
mod plan;
mod progress;
mod send;
mod source;
mod state;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use migrator3000::settings::Settings;
use migrator3000::timestamp;
use serde_json::{json, Map, Value};

use crate::amplitude::export_api::{self, ExportApi};
use crate::amplitude::files::LocalExport;
use crate::amplitude::Amplitude;
use crate::copy::{Failure, Outcome, Target};
use crate::source::clickhouse::ClickHouse;
use crate::source::query_api::QueryApi;
use crate::source::{Bounds, Source};
use crate::state::State;

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
    /// `events`: PostHog's Distributed table over every shard. Only on a single-node
    /// install, where no Distributed table may exist, name its `sharded_events`.
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
    fn clickhouse(&self) -> ClickHouse {
        ClickHouse::new(
            self.clickhouse_url.as_deref().unwrap_or_default(),
            &self.clickhouse_user,
            &self.clickhouse_password,
            &self.clickhouse_database,
            &self.clickhouse_table,
            self.team_id.unwrap_or_default(),
        )
    }

    fn personal_api_key(&self) -> Result<&str, Failure> {
        self.personal_api_key.as_deref().filter(|k| !k.trim().is_empty()).ok_or_else(|| {
            Failure::Usage(
                "--personal-api-key (or POSTHOG_PERSONAL_API_KEY) is required with --from query-api: a personal API \
                 key of the source with the Query Read permission"
                    .into(),
            )
        })
    }

    fn query_api(&self) -> Result<QueryApi, Failure> {
        Ok(QueryApi::new(
            self.query_api_host.as_deref().unwrap_or_default(),
            self.project_id.unwrap_or_default(),
            self.personal_api_key()?,
        ))
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
    /// Sets Amplitude's group properties on PostHog's groups: a `$groupidentify` for each
    /// group when its properties change (off by default, as in PostHog's own importer).
    #[arg(long)]
    group_identify: bool,
    /// Skips an export file that cannot be read (cut short, damaged) instead of stopping
    /// at it; the summary names it.
    #[arg(long)]
    skip_unreadable: bool,
    #[command(flatten)]
    to: Destination,
}

#[derive(clap::Args)]
struct Destination {
    /// First day to copy (YYYY-MM-DD or a timestamp); default: the source's first event
    /// (Amplitude's Export API: 2020-01-01).
    #[arg(long)]
    start: Option<String>,
    /// Copy events before this (YYYY-MM-DD or a timestamp); default: up to the source's
    /// last event (Amplitude's Export API: now).
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
    /// Events handed from the source to the senders at a time (default 10,000; from the
    /// Query API, a page a query: 50,000, PostHog's most).
    #[arg(long)]
    page_size: Option<usize>,
    /// Read and transform, send nothing, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also say what each query read (ClickHouse's own count of the rows it read).
    #[arg(long)]
    debug: bool,
    /// Multiplies every wait before a resend.
    #[arg(long, default_value_t = 1.0, hide = true)]
    retry_scale: f64,
    /// HogQL queries an hour at most (PostHog's limit per personal API key).
    #[arg(long, default_value_t = source::query_api::QUERIES_PER_HOUR, hide = true)]
    queries_per_hour: usize,
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
fn settings(args: &Destination, now: DateTime<Utc>) -> Result<Settings, Failure> {
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
        Failure::Usage(lines.join("\n"))
    })
}

fn time_flag(flag: &str, text: &str) -> Result<DateTime<Utc>, Failure> {
    timestamp::parse_date(text.trim())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .or_else(|| timestamp::parse_iso(text))
        .ok_or_else(|| {
            Failure::Usage(format!("{flag}: \"{text}\" is not a date; write it as YYYY-MM-DD, e.g. 2021-06-01"))
        })
}

/// Either end of a range: `None`, as far as the source goes.
type Ends = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The range asked for, checked.
fn asked(args: &Destination, settings: &Settings) -> Result<Ends, Failure> {
    let end = args.end.as_deref().map(|end| time_flag("--end", end)).transpose()?;
    if let (Some(from), Some(to)) = (settings.start, end) {
        if to <= from {
            return Err(Failure::Usage(format!(
                "--end ({}) must come after --start ({})",
                timestamp::format(to),
                timestamp::format(from)
            )));
        }
    }
    if args.concurrency == 0 || args.page_size == Some(0) || args.queries_per_hour == 0 {
        return Err(Failure::Usage("--concurrency and --page-size must be at least 1".into()));
    }
    Ok((settings.start, end))
}

/// The range of `[start, end)` as asked, what the source holds otherwise: from its first
/// event, to just after its last.
fn range_of(
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    bounds: &Bounds,
) -> Option<(DateTime<Utc>, DateTime<Utc>, &'static str)> {
    let from = start.or(bounds.first)?;
    let to = end.or(bounds.last.map(|last| last + chrono::Duration::microseconds(1)))?;
    let said = match (start, end) {
        (None, None) => "the source's first and last events",
        (Some(_), None) => "from --start to the source's last event",
        (None, Some(_)) => "from the source's first event to --end",
        (Some(_), Some(_)) => "from --start to --end",
    };
    Some((from, to, said))
}

fn posthog(cli: &Cli, args: &PosthogArgs) -> Outcome {
    let now = Utc::now();
    let settings = settings(&args.to, now)?;
    let (start, end) = asked(&args.to, &settings)?;
    let mut source: Box<dyn Source> = match args.from {
        From::Clickhouse => {
            let mut source = args.source.clickhouse();
            source.debug = args.to.debug;
            Box::new(source)
        }
        From::QueryApi => {
            let mut api = args.source.query_api()?;
            api.per_hour = args.to.queries_per_hour;
            Box::new(api)
        }
    };
    let page_size = args.to.page_size.unwrap_or(match args.from {
        From::Clickhouse => 10_000,
        From::QueryApi => source::query_api::MOST_ROWS,
    });
    // One query: what the source holds in the range asked for.
    let bounds = migrate::patiently(|| source.select(start, end), args.to.retry_scale, |note| eprintln!("{note}"))?
        .unwrap_or(Bounds { first: None, last: None, count: 0 });
    let between = match (start, end) {
        (None, None) => String::new(),
        (from, to) => format!(
            " between {} and {}",
            from.map_or("its first event".into(), timestamp::format),
            to.map_or("its last".into(), timestamp::format)
        ),
    };
    let Some((from, to, said)) = range_of(start, end, &bounds).filter(|_| bounds.count > 0) else {
        return Err(Failure::Error(match args.from {
            From::Clickhouse => {
                let mut every_team = args.source.clickhouse();
                every_team.team_id = 0;
                let teams = every_team.teams().unwrap_or_default();
                let teams: Vec<String> = teams.iter().map(|(team, rows)| format!("{team} ({rows} events)")).collect();
                format!(
                    "{} has no events of team {}{between}; check --team-id{}",
                    source.describe(),
                    args.source.team_id.unwrap_or_default(),
                    if teams.is_empty() {
                        String::new()
                    } else {
                        format!(" (teams with events: {})", teams.join(", "))
                    }
                )
            }
            From::QueryApi => {
                format!("{} has no events{between}; check --project-id, --start and --end", source.describe())
            }
        }));
    };
    let target = Target::of(&settings);
    eprintln!(
        "Migrating {} into {target}: {} events from {} to {} ({said}).",
        source.describe(),
        bounds.count,
        timestamp::format(from),
        timestamp::format(to)
    );
    if let From::QueryApi = args.from {
        let queries = bounds.count.div_ceil(page_size as u64);
        let hours = queries as f64 / args.to.queries_per_hour as f64;
        if hours >= 0.5 {
            eprintln!(
                "The Query API answers {} HogQL queries an hour per key: {queries} pages of {page_size} take at least \
                 {hours:.1} h.",
                args.to.queries_per_hour
            );
        }
    }
    let copy = copy::Copy::new(&args.to, &settings, &target, page_size, now);
    if args.to.dry_run {
        return copy::dry_run(source.as_mut(), &copy.options(String::new()));
    }
    let mut state = State::open(&cli.state)?;
    copy.run(&cli.state, &mut state, source.as_mut(), Some((from, to)), Some(bounds.count))
}

fn amplitude(cli: &Cli, args: &AmplitudeArgs) -> Outcome {
    let now = Utc::now();
    let settings = settings(&args.to, now)?;
    let (start, end) = asked(&args.to, &settings)?;
    let from = start.unwrap_or_else(|| timestamp::parse_iso("2020-01-01T00:00:00Z").unwrap_or(now));
    let to = end.unwrap_or(now);
    if to <= from {
        return Err(Failure::Usage(format!("--end ({}) must come after --start", timestamp::format(to))));
    }
    let mut state = if args.to.dry_run { None } else { Some(State::open(&cli.state)?) };
    // Links, group properties and files are kept for each destination apart.
    let destination = format!("{} {}", settings.destination.base_url, settings.project_api_key);
    let known = match &state {
        Some(state) => state.amplitude_known(&destination)?,
        None => Default::default(),
    };
    let import =
        amplitude::Options { destination, group_identify: args.group_identify, skip_unreadable: args.skip_unreadable };
    let mut source: Box<dyn Source> = match (&args.files, &args.api_key, &args.secret_key) {
        (Some(path), _, _) => {
            let mut local = Amplitude::new(LocalExport::open(path)?, import, known);
            // What the export holds is part of which migration this is.
            local.take_stock().map_err(|e| e.to_string())?;
            Box::new(local)
        }
        (None, Some(key), Some(secret)) => {
            let base = args.amplitude_url.as_deref().unwrap_or(if args.eu { export_api::EU } else { export_api::US });
            Box::new(Amplitude::new(ExportApi::new(base, key, secret, from, to), import, known))
        }
        _ => {
            return Err(Failure::Usage(
                "give --files (a local export) or --api-key and --secret-key (Amplitude's Export API)".into(),
            ))
        }
    };
    let target = Target::of(&settings);
    // A local export is imported whole: its run has no range.
    let range = args.files.is_none().then_some((from, to));
    match range {
        Some((from, to)) => eprintln!(
            "Migrating {} into {target}: from {} to {}.",
            source.describe(),
            timestamp::format(from),
            timestamp::format(to)
        ),
        None => eprintln!("Migrating {} into {target}: the whole export.", source.describe()),
    }
    // What the import hands over is recorded per day, for `verify --from amplitude`.
    let copy = copy::Copy::new(&args.to, &settings, &target, args.to.page_size.unwrap_or(10_000), now).recording_days();
    match state.as_mut() {
        None => copy::dry_run(source.as_mut(), &copy.options(String::new())),
        Some(state) => copy.run(&cli.state, state, source.as_mut(), range, None),
    }
}

fn status(cli: &Cli) -> Outcome {
    if !cli.state.exists() {
        return Err(Failure::Error(format!(
            "there is no state file at {}: no migration has run from here",
            cli.state.display()
        )));
    }
    let state = State::open(&cli.state)?;
    let runs = state.runs()?;
    if runs.is_empty() {
        println!("No migration in {}.", cli.state.display());
    }
    for run in runs {
        let waiting = state.count_events(&run.id, migrator3000::dispatch::KeepState::Waiting.name())?;
        let parked = state.count_events(&run.id, migrator3000::dispatch::KeepState::Parked.name())?;
        let position = run.cursor.as_ref().map_or("not started".to_string(), |c| format!("up to {}", c.timestamp));
        let share = run
            .total
            .filter(|t| *t > 0)
            .map_or(String::new(), |t| format!(" ({:.0}% of {t})", 100.0 * run.read as f64 / t as f64));
        println!("{}", run.source);
        let project = Target::label(&run.api_key);
        if run.from.is_empty() {
            println!("  into {} (project {project}), the whole export", run.destination);
        } else {
            println!("  into {} (project {project}), {} to {}", run.destination, run.from, run.to);
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

fn resend_parked(cli: &Cli, retry_scale: f64) -> Outcome {
    let mut state = State::open(&cli.state)?;
    let released = state.unpark()?;
    println!("{released} parked requests wait to be sent again.");
    copy::resend(&mut state, retry_scale)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Posthog(args) => posthog(&cli, args),
        Command::Amplitude(args) => amplitude(&cli, args),
        Command::Status => status(&cli),
        Command::Verify(args) => verify::run(&cli.state, args),
        Command::Demo { events, keep } => demo::run(*events, *keep).map_err(Failure::Error),
        Command::ResendParked { retry_scale } => resend_parked(&cli, *retry_scale),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            let (message, code) = match failure {
                Failure::Usage(message) => (message, copy::USAGE),
                Failure::Error(message) => (message, 1),
            };
            eprintln!("migrator3000: {message}");
            ExitCode::from(code)
        }
    }
}

//! The top of the command: its flags, as clap parses them, and each command's flags
//! turned into the plain options of `commands` (nothing below this module knows clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::commands::amplitude::AmplitudeOptions;
use crate::commands::destination::DestinationOptions;
use crate::commands::files::{FilesFrom, FilesOptions};
use crate::commands::metadata::MetadataOptions;
use crate::commands::mixpanel::MixpanelOptions;
use crate::commands::posthog::{PersonsMode, PosthogOptions, PosthogSourceOptions, ReadFrom as Reader};
use crate::commands::verify::{VerifyFrom, VerifyOptions};
use crate::shared::defaults;
use crate::sources::files::s3::Credentials;

#[derive(Parser)]
#[command(name = "migrator3000", version, about = "Copies a PostHog's events to another PostHog, resumably.")]
pub struct Cli {
    /// The state file: where a run resumes from.
    #[arg(long, global = true, default_value = defaults::STATE_FILE)]
    pub state: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Copies the events of a PostHog (its ClickHouse, or its Query API) to the destination.
    Posthog(Box<PosthogArgs>),
    /// Copies an Amplitude project's events (a local export, or its Export API), each
    /// device linked once to its user.
    Amplitude(Box<AmplitudeArgs>),
    /// Copies a Mixpanel project's events (raw export files, or its export API) and, with
    /// --profiles, its people, each device linked once to its user.
    Mixpanel(Box<MixpanelArgs>),
    /// Copies files of PostHog-shaped events (JSON lines, plain, gzip or zstd: PostHog's
    /// captured events, or its S3 batch export's lines) from a folder or an S3-compatible
    /// bucket; each file known by its content, so a rerun sends nothing twice.
    Files(Box<FilesArgs>),
    /// Progress of every migration in the state file.
    Status,
    /// Checks at the destination, UTC day by UTC day, that every event of the source
    /// arrived; finds the missing ones (and with --resend sends them again).
    Verify(Box<VerifyArgs>),
    /// Copies a project's actions, cohorts (static ones with their members) and feature
    /// flags to another project through PostHog's API, every reference rewritten;
    /// resumable, and a rerun copies only what changed.
    Metadata(Box<MetadataArgs>),
    /// Shows the command end to end on generated data: an Amplitude export migrated to a
    /// destination on loopback, killed part way and resumed, then checked.
    Demo {
        /// Events in the generated export.
        #[arg(long, default_value_t = defaults::DEMO_EVENTS)]
        events: usize,
        /// Keep the generated export and the state file (their folder is printed).
        #[arg(long)]
        keep: bool,
    },
    /// Sends again the requests parked after their attempts (or held for a setting).
    ResendParked {
        /// Multiplies every wait before a resend.
        #[arg(long, default_value_t = defaults::RETRY_SCALE, hide = true)]
        retry_scale: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadFrom {
    Clickhouse,
    QueryApi,
}

#[derive(clap::Args)]
pub struct PosthogArgs {
    /// Where to read: the source's ClickHouse (fastest), or its Query API (when no
    /// ClickHouse port is reachable).
    #[arg(long, value_enum)]
    pub from: ReadFrom,
    /// The persons (every person not deleted, its distinct ids and current properties):
    /// after the events (default), skip them, or only them.
    #[arg(long, value_enum, default_value = "after")]
    pub persons: PersonsArg,
    #[command(flatten)]
    pub source: PosthogSourceArgs,
    #[command(flatten)]
    pub to: DestinationArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PersonsArg {
    After,
    Skip,
    Only,
}

/// Where a PostHog's events are read: the flags of `posthog` and of `verify`.
#[derive(clap::Args)]
pub struct PosthogSourceArgs {
    /// ClickHouse's HTTP interface, e.g. http://localhost:8123.
    #[arg(long, required_if_eq("from", "clickhouse"))]
    pub clickhouse_url: Option<String>,
    #[arg(long, default_value = "default")]
    pub clickhouse_user: String,
    #[arg(long, env = "CLICKHOUSE_PASSWORD", default_value = "", hide_env_values = true)]
    pub clickhouse_password: String,
    #[arg(long, default_value = "default")]
    pub clickhouse_database: String,
    /// `events`: PostHog's Distributed table over every shard. Only on a single-node
    /// install, where no Distributed table may exist, name its `sharded_events`.
    #[arg(long, default_value = "events")]
    pub clickhouse_table: String,
    /// The team (project) id of the events in ClickHouse.
    #[arg(long, required_if_eq("from", "clickhouse"))]
    pub team_id: Option<u64>,
    /// The source PostHog, e.g. https://posthog.example.com.
    #[arg(long, required_if_eq("from", "query-api"))]
    pub query_api_host: Option<String>,
    #[arg(long, required_if_eq("from", "query-api"))]
    pub project_id: Option<u64>,
    /// A personal API key of the source with the Query Read permission.
    #[arg(long, env = "POSTHOG_PERSONAL_API_KEY", hide_env_values = true)]
    pub personal_api_key: Option<String>,
}

#[derive(clap::Args)]
pub struct AmplitudeArgs {
    /// A local export: the zip Amplitude's Export API returns, or a folder of its
    /// `.json.gz` files (or of such zips). All of it is imported: --start and --end
    /// choose the days of the Export API only.
    #[arg(long, conflicts_with_all = ["api_key", "secret_key"])]
    pub files: Option<PathBuf>,
    /// Amplitude's project API key, to read its Export API directly.
    #[arg(long, env = "AMPLITUDE_API_KEY", hide_env_values = true, requires = "secret_key")]
    pub api_key: Option<String>,
    /// Amplitude's project secret key, with --api-key.
    #[arg(long, env = "AMPLITUDE_SECRET_KEY", hide_env_values = true, requires = "api_key")]
    pub secret_key: Option<String>,
    /// The project is in Amplitude's EU region.
    #[arg(long)]
    pub eu: bool,
    /// Amplitude's Export API at another address (tests).
    #[arg(long, hide = true)]
    pub amplitude_url: Option<String>,
    /// Sets Amplitude's group properties on PostHog's groups: a `$groupidentify` for each
    /// group when its properties change (off by default, as in PostHog's own importer).
    #[arg(long)]
    pub group_identify: bool,
    /// Skips an export file that cannot be read (cut short, damaged) instead of stopping
    /// at it; the summary names it, and the import ends not complete (exit code 6).
    #[arg(long)]
    pub skip_unreadable: bool,
    #[command(flatten)]
    pub to: DestinationArgs,
}

/// Where files of events are: the flags of `files` and of `verify --from files`.
#[derive(clap::Args)]
pub struct FilesFromArgs {
    /// A file, or a folder (its sub-folders too) of JSON-lines files: .jsonl, .ndjson or
    /// .json, each plain, .gz or .zst.
    #[arg(long, conflicts_with = "s3")]
    pub files: Option<PathBuf>,
    /// An S3-compatible bucket and prefix, e.g. s3://my-exports/posthog/. Credentials come
    /// from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN); the region
    /// from AWS_REGION or AWS_DEFAULT_REGION (default us-east-1).
    #[arg(long)]
    pub s3: Option<String>,
    /// The S3-compatible service's URL when it is not AWS S3 (MinIO, Cloudflare R2,
    /// Google Cloud Storage), e.g. http://localhost:9000; the bucket goes in the path.
    #[arg(long, requires = "s3")]
    pub s3_endpoint: Option<String>,
}

#[derive(clap::Args)]
pub struct FilesArgs {
    #[command(flatten)]
    pub from: FilesFromArgs,
    /// Skips a file that cannot be read (a damaged gzip or zstd file) instead of stopping
    /// at it; the summary names it.
    #[arg(long)]
    pub skip_unreadable: bool,
    #[command(flatten)]
    pub to: DestinationArgs,
}

#[derive(clap::Args)]
pub struct MixpanelArgs {
    /// Raw export files (JSON lines, plain or gzip) or folders of them; all of them are
    /// imported (--start and --end choose the export API's days only).
    #[arg(long, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Engage (people) exports: JSON lines of `$distinct_id` and `$properties`; or `api`:
    /// every profile from Mixpanel's Engage API (with --project-id and the service
    /// account; a file named api is ./api). Each profile becomes its person at the
    /// destination, with or without events.
    #[arg(long, num_args = 1..)]
    pub profiles: Vec<PathBuf>,
    /// The Mixpanel project, to read its export API directly (or, with --files, only its
    /// Engage API for --profiles api).
    #[arg(long)]
    pub project_id: Option<u64>,
    /// The service account's user name, with --project-id.
    #[arg(long, env = "MIXPANEL_SERVICE_ACCOUNT_USER", hide_env_values = true)]
    pub service_account_user: Option<String>,
    /// The service account's secret, with --project-id.
    #[arg(long, env = "MIXPANEL_SERVICE_ACCOUNT_SECRET", hide_env_values = true)]
    pub service_account_secret: Option<String>,
    /// Mixpanel's data residency: us, eu or in.
    #[arg(long, default_value = "us")]
    pub region: String,
    /// Mixpanel's export and Engage APIs at another address (tests).
    #[arg(long, hide = true)]
    pub mixpanel_url: Option<String>,
    /// Export API queries an hour at most, and Engage API queries (Mixpanel allows 60
    /// of each).
    #[arg(long, default_value_t = 60, hide = true)]
    pub mixpanel_queries_per_hour: usize,
    #[command(flatten)]
    pub to: DestinationArgs,
}

#[derive(clap::Args)]
pub struct DestinationArgs {
    /// First day to copy (YYYY-MM-DD or a timestamp); default: the source's first event
    /// (Amplitude's Export API: 2020-01-01).
    #[arg(long)]
    pub start: Option<String>,
    /// Copy events before this (YYYY-MM-DD or a timestamp); default: up to the source's
    /// last event (Amplitude's Export API: now).
    #[arg(long)]
    pub end: Option<String>,
    /// The destination, e.g. us.i.posthog.com or https://posthog.example.com.
    #[arg(long)]
    pub host: String,
    /// The destination project's API key (phc_...).
    #[arg(long, env = "POSTHOG_PROJECT_API_KEY", hide_env_values = true)]
    pub project_api_key: String,
    #[arg(long, default_value = defaults::BATCH_SIZE)]
    pub batch_size: String,
    #[arg(long, default_value = defaults::BATCH_MAX_KILOBYTES)]
    pub batch_max_kilobytes: String,
    #[arg(long, default_value = defaults::GZIP)]
    pub gzip: String,
    /// Paces the migration, as PostHog asks for large ones (e.g. 10000).
    #[arg(long, default_value = "")]
    pub events_per_minute: String,
    /// Event names not to copy, separated by commas.
    #[arg(long, default_value = "")]
    pub events_to_ignore: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = defaults::CONCURRENCY)]
    pub concurrency: usize,
    /// Events handed from the source to the senders at a time (default 10,000; from the
    /// Query API, a page a query: 50,000, PostHog's most).
    #[arg(long)]
    pub page_size: Option<usize>,
    /// Read and transform, send nothing, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also say what each query read (ClickHouse's own count of the rows it read).
    #[arg(long)]
    pub debug: bool,
    /// Multiplies every wait before a resend.
    #[arg(long, default_value_t = defaults::RETRY_SCALE, hide = true)]
    pub retry_scale: f64,
    /// HogQL queries an hour at most (PostHog's limit per personal API key).
    #[arg(long, default_value_t = defaults::QUERIES_PER_HOUR, hide = true)]
    pub queries_per_hour: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VerifyFromArg {
    /// The source PostHog's ClickHouse (the flags of `posthog --from clickhouse`).
    Clickhouse,
    /// The source PostHog's Query API (the flags of `posthog --from query-api`).
    QueryApi,
    /// What the Amplitude imports recorded in the state file handed over.
    Amplitude,
    /// What the Mixpanel imports recorded in the state file handed over.
    Mixpanel,
    /// What the imports of files (`migrator3000 files`) recorded in the state file handed
    /// over.
    Files,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// What the destination must hold: a PostHog's ClickHouse or Query API, or the
    /// Amplitude imports recorded in the state file.
    #[arg(long, value_enum)]
    pub from: VerifyFromArg,
    #[command(flatten)]
    pub source: PosthogSourceArgs,
    /// With --resend and --from amplitude or mixpanel: the export the import read (zip,
    /// folder or files); with --from files: the file or folder of events.
    #[arg(long, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// With --resend and --from mixpanel: the Engage exports the import read.
    #[arg(long, num_args = 1..)]
    pub profiles: Vec<PathBuf>,
    /// With --resend and --from files: the bucket the files are in (s3://bucket/prefix).
    #[arg(long, conflicts_with = "files")]
    pub s3: Option<String>,
    /// With --s3: the S3-compatible service's URL when it is not AWS S3.
    #[arg(long, requires = "s3")]
    pub s3_endpoint: Option<String>,
    /// The destination PostHog's app (not its capture host), e.g. https://us.posthog.com.
    #[arg(long)]
    pub destination_query_api_host: String,
    /// The destination project's id (in its URL: /project/<id>).
    #[arg(long)]
    pub destination_project_id: u64,
    /// A personal API key of the destination with the Query Read permission.
    #[arg(long, env = "POSTHOG_DESTINATION_PERSONAL_API_KEY", hide_env_values = true)]
    pub destination_personal_api_key: String,
    /// First UTC day to compare (YYYY-MM-DD); default the source's first day.
    #[arg(long)]
    pub start: Option<String>,
    /// Compare the days before this one (YYYY-MM-DD); default the day after the source's last.
    #[arg(long)]
    pub end: Option<String>,
    /// Compare the persons instead of the events: every person of the source, matched at
    /// the destination by distinct id (missing persons and distinct ids, properties that
    /// differ); with --resend, the differing persons sent again.
    #[arg(long)]
    pub persons: bool,
    /// Read the missing events again from the source and send them (needs --host and
    /// --project-api-key), then compare their days again. With --persons: set the
    /// source's values on the differing persons and link their missing distinct ids.
    #[arg(long)]
    pub resend: bool,
    /// With --resend: the destination's capture host, e.g. us.i.posthog.com.
    #[arg(long, required_if_eq("resend", "true"))]
    pub host: Option<String>,
    /// With --resend: the destination project's API key (phc_...).
    #[arg(long, env = "POSTHOG_PROJECT_API_KEY", hide_env_values = true)]
    pub project_api_key: Option<String>,
    /// Compare the days still arriving again every little while until they settle, at
    /// most this many minutes (default 30).
    #[arg(long, value_name = "MINUTES", num_args = 0..=1, default_missing_value = defaults::WAIT_MINUTES)]
    pub wait: Option<f64>,
    /// A day that differs and took events in the last this many minutes is still arriving.
    #[arg(long, value_name = "MINUTES", default_value_t = defaults::SETTLE_MINUTES)]
    pub settle_minutes: f64,
    /// Also write a self-contained HTML page: a chart per day, the table, the missing uuids.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Rows a page of uuids asks for (PostHog gives at most 50,000).
    #[arg(long, default_value_t = defaults::QUERY_API_MOST_ROWS, hide = true)]
    pub page_rows: usize,
    /// Multiplies every wait (tests).
    #[arg(long, default_value_t = defaults::RETRY_SCALE, hide = true)]
    pub retry_scale: f64,
}

#[derive(clap::Args)]
pub struct MetadataArgs {
    /// The source PostHog's app, e.g. https://eu.posthog.com or https://posthog.example.com.
    #[arg(long)]
    pub source_host: String,
    /// The source project's id (in its URL: /project/<id>).
    #[arg(long)]
    pub source_project_id: u64,
    /// A personal API key of the source that may read its actions, cohorts and flags.
    #[arg(long, env = "POSTHOG_PERSONAL_API_KEY", hide_env_values = true, hide = true)]
    pub source_personal_api_key: Option<String>,
    /// The destination PostHog's app, e.g. https://us.posthog.com.
    #[arg(long)]
    pub destination_host: String,
    /// The destination project's id.
    #[arg(long)]
    pub destination_project_id: u64,
    /// A personal API key of the destination that may write actions, cohorts and flags.
    #[arg(long, env = "POSTHOG_DESTINATION_PERSONAL_API_KEY", hide_env_values = true, hide = true)]
    pub destination_personal_api_key: Option<String>,
    /// Only these kinds, a comma list: actions, cohorts, feature_flags (default all).
    #[arg(long, default_value = "")]
    pub only: String,
    /// Say what would be created, updated, matched and skipped, and why; send and
    /// record nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write an HTML page of every object, with links to both instances.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Multiplies every wait (tests).
    #[arg(long, default_value_t = defaults::RETRY_SCALE, hide = true)]
    pub retry_scale: f64,
}

impl From<&MetadataArgs> for MetadataOptions {
    fn from(a: &MetadataArgs) -> MetadataOptions {
        MetadataOptions {
            source_host: a.source_host.clone(),
            source_project_id: a.source_project_id,
            source_key: a.source_personal_api_key.clone(),
            destination_host: a.destination_host.clone(),
            destination_project_id: a.destination_project_id,
            destination_key: a.destination_personal_api_key.clone(),
            only: a.only.clone(),
            dry_run: a.dry_run,
            report: a.report.clone(),
            retry_scale: a.retry_scale,
        }
    }
}

impl From<&DestinationArgs> for DestinationOptions {
    fn from(a: &DestinationArgs) -> DestinationOptions {
        DestinationOptions {
            start: a.start.clone(),
            end: a.end.clone(),
            host: a.host.clone(),
            project_api_key: a.project_api_key.clone(),
            batch_size: a.batch_size.clone(),
            batch_max_kilobytes: a.batch_max_kilobytes.clone(),
            gzip: a.gzip.clone(),
            events_per_minute: a.events_per_minute.clone(),
            events_to_ignore: a.events_to_ignore.clone(),
            concurrency: a.concurrency,
            page_size: a.page_size,
            dry_run: a.dry_run,
            debug: a.debug,
            retry_scale: a.retry_scale,
            queries_per_hour: a.queries_per_hour,
        }
    }
}

impl From<&PosthogSourceArgs> for PosthogSourceOptions {
    fn from(a: &PosthogSourceArgs) -> PosthogSourceOptions {
        PosthogSourceOptions {
            clickhouse_url: a.clickhouse_url.clone(),
            clickhouse_user: a.clickhouse_user.clone(),
            clickhouse_password: a.clickhouse_password.clone(),
            clickhouse_database: a.clickhouse_database.clone(),
            clickhouse_table: a.clickhouse_table.clone(),
            team_id: a.team_id,
            query_api_host: a.query_api_host.clone(),
            project_id: a.project_id,
            personal_api_key: a.personal_api_key.clone(),
        }
    }
}

impl From<&PosthogArgs> for PosthogOptions {
    fn from(a: &PosthogArgs) -> PosthogOptions {
        let from = match a.from {
            ReadFrom::Clickhouse => Reader::Clickhouse,
            ReadFrom::QueryApi => Reader::QueryApi,
        };
        let persons = match a.persons {
            PersonsArg::After => PersonsMode::After,
            PersonsArg::Skip => PersonsMode::Skip,
            PersonsArg::Only => PersonsMode::Only,
        };
        PosthogOptions { from, persons, source: (&a.source).into(), to: (&a.to).into() }
    }
}

impl From<&AmplitudeArgs> for AmplitudeOptions {
    fn from(a: &AmplitudeArgs) -> AmplitudeOptions {
        AmplitudeOptions {
            files: a.files.clone(),
            api_key: a.api_key.clone(),
            secret_key: a.secret_key.clone(),
            eu: a.eu,
            amplitude_url: a.amplitude_url.clone(),
            group_identify: a.group_identify,
            skip_unreadable: a.skip_unreadable,
            to: (&a.to).into(),
        }
    }
}

impl From<&MixpanelArgs> for MixpanelOptions {
    fn from(a: &MixpanelArgs) -> MixpanelOptions {
        MixpanelOptions {
            files: a.files.clone(),
            profiles: a.profiles.clone(),
            project_id: a.project_id,
            user: a.service_account_user.clone(),
            secret: a.service_account_secret.clone(),
            region: a.region.clone(),
            mixpanel_url: a.mixpanel_url.clone(),
            queries_per_hour: a.mixpanel_queries_per_hour,
            to: (&a.to).into(),
        }
    }
}

impl From<&VerifyArgs> for VerifyOptions {
    fn from(a: &VerifyArgs) -> VerifyOptions {
        let from = match a.from {
            VerifyFromArg::Clickhouse => VerifyFrom::Clickhouse,
            VerifyFromArg::QueryApi => VerifyFrom::QueryApi,
            VerifyFromArg::Amplitude => VerifyFrom::Amplitude,
            VerifyFromArg::Mixpanel => VerifyFrom::Mixpanel,
            VerifyFromArg::Files => VerifyFrom::Files,
        };
        VerifyOptions {
            from,
            source: (&a.source).into(),
            files: a.files.clone(),
            profiles: a.profiles.clone(),
            files_from: files_from(a.files.first().cloned(), a.s3.clone(), a.s3_endpoint.clone()),
            destination_query_api_host: a.destination_query_api_host.clone(),
            destination_project_id: a.destination_project_id,
            destination_personal_api_key: a.destination_personal_api_key.clone(),
            start: a.start.clone(),
            end: a.end.clone(),
            resend: a.resend,
            host: a.host.clone(),
            project_api_key: a.project_api_key.clone(),
            wait: a.wait,
            settle_minutes: a.settle_minutes,
            report: a.report.clone(),
            page_rows: a.page_rows,
            retry_scale: a.retry_scale,
            persons: a.persons,
        }
    }
}

/// The AWS environment variables an S3 client reads, when the keys are there.
fn aws_credentials() -> Option<Credentials> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    Some(Credentials {
        access_key: var("AWS_ACCESS_KEY_ID")?,
        secret_key: var("AWS_SECRET_ACCESS_KEY")?,
        session_token: var("AWS_SESSION_TOKEN"),
        region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into()),
    })
}

fn files_from(files: Option<PathBuf>, s3: Option<String>, s3_endpoint: Option<String>) -> FilesFrom {
    let credentials = s3.as_ref().and_then(|_| aws_credentials());
    FilesFrom { files, s3, s3_endpoint, credentials }
}

impl From<&FilesArgs> for FilesOptions {
    fn from(a: &FilesArgs) -> FilesOptions {
        let f = &a.from;
        FilesOptions {
            from: files_from(f.files.clone(), f.s3.clone(), f.s3_endpoint.clone()),
            skip_unreadable: a.skip_unreadable,
            to: (&a.to).into(),
        }
    }
}

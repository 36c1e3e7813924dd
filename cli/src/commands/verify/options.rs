//! What `verify` is given (its flags as plain options) and what both of its
//! comparisons, the events' (`mod.rs`) and the persons' (`persons.rs`), open with them:
//! the Query API hosts, the destination's client, and where `--resend` sends.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use migrator3000::settings::Settings;

use crate::commands::destination::{settings, DestinationOptions};
use crate::commands::exit::CommandError;
use crate::commands::files::FilesFrom;
use crate::commands::posthog::PosthogSourceOptions;
use crate::pipeline::migration::{Migration, Target};
use crate::pipeline::run_options::Options;
use crate::posthog_api::client::{QueryApiClient, DESTINATION_FLAGS};
use crate::shared::retry::RetryPolicy;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyFrom {
    Clickhouse,
    QueryApi,
    Amplitude,
    Mixpanel,
    Files,
}

/// The flags of `verify`.
pub struct VerifyOptions {
    pub from: VerifyFrom,
    pub source: PosthogSourceOptions,
    pub files: Vec<PathBuf>,
    pub profiles: Vec<PathBuf>,
    /// With --from files: where the files are (for --resend).
    pub files_from: FilesFrom,
    pub destination_query_api_host: String,
    pub destination_project_id: u64,
    pub destination_personal_api_key: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub resend: bool,
    pub host: Option<String>,
    pub project_api_key: Option<String>,
    pub wait: Option<f64>,
    pub settle_minutes: f64,
    pub report: Option<PathBuf>,
    pub page_rows: usize,
    pub retry_scale: f64,
    /// Compare the persons instead of the events.
    pub persons: bool,
}

/// A Query API host as given, with https:// when it names no scheme.
pub fn host(text: &str) -> String {
    let text = text.trim().trim_end_matches('/');
    if text.contains("://") {
        text.to_string()
    } else {
        format!("https://{text}")
    }
}

/// Where and how `--resend` sends: the destination's capture (--host,
/// --project-api-key) with the defaults of a migration, one request at a time.
pub fn resend_options(args: &VerifyOptions, page_size: usize) -> Result<(Arc<Options>, Settings), CommandError> {
    let project_api_key = args.project_api_key.clone().ok_or_else(|| {
        CommandError::Failed(
            "--resend needs --project-api-key (or POSTHOG_PROJECT_API_KEY): the destination project's API key".into(),
        )
    })?;
    let destination =
        DestinationOptions::with_defaults(args.host.clone().unwrap_or_default(), project_api_key, args.retry_scale);
    // A wrong flag here is a failure of the resend, as it always was (exit code 1).
    let settings = settings(&destination, Utc::now()).map_err(|e| CommandError::Failed(e.to_string()))?;
    let target = Target::of(&settings);
    let retry = RetryPolicy::new(args.retry_scale);
    let options = Migration::new(&settings, &target, page_size, 1, retry, Utc::now())
        .options(format!("verify --resend into {target}"));
    Ok((options, settings))
}

/// The destination's Query API client (--destination-query-api-host and its flags).
pub fn destination_client(args: &VerifyOptions) -> QueryApiClient {
    let mut client = QueryApiClient::new(
        &host(&args.destination_query_api_host),
        args.destination_project_id,
        &args.destination_personal_api_key,
    );
    client.flags = &DESTINATION_FLAGS;
    client
}

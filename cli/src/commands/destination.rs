//! The destination's flags, shared by `posthog` and `amplitude` (and `verify --resend`):
//! checked by the core exactly as the app checks its form, and worded with the flags; and
//! an import migrated with them (`migrate_import`, for `amplitude` and `files`).

use std::path::Path;

use chrono::{DateTime, Utc};
use migrator3000::settings::Settings;
use migrator3000::timestamp;
use serde_json::{json, Map, Value};

use super::exit::{CommandError, Outcome};
use super::summary;
use crate::pipeline::dry_run::dry_run;
use crate::pipeline::migration::{Migration, Target};
use crate::shared::defaults;
use crate::shared::retry::RetryPolicy;
use crate::sources::{Bounds, Source};
use crate::store::state_file::StateFile;

/// The destination's flags, as given.
pub struct DestinationOptions {
    pub start: Option<String>,
    pub end: Option<String>,
    pub host: String,
    pub project_api_key: String,
    pub batch_size: String,
    pub batch_max_kilobytes: String,
    pub gzip: String,
    pub events_per_minute: String,
    pub events_to_ignore: String,
    pub concurrency: usize,
    pub page_size: Option<usize>,
    pub dry_run: bool,
    pub debug: bool,
    pub retry_scale: f64,
    pub queries_per_hour: usize,
}

impl DestinationOptions {
    /// A destination with every other flag at its default (`verify --resend`).
    pub fn with_defaults(host: String, project_api_key: String, retry_scale: f64) -> DestinationOptions {
        DestinationOptions {
            start: None,
            end: None,
            host,
            project_api_key,
            batch_size: defaults::BATCH_SIZE.into(),
            batch_max_kilobytes: defaults::BATCH_MAX_KILOBYTES.into(),
            gzip: defaults::GZIP.into(),
            events_per_minute: String::new(),
            events_to_ignore: String::new(),
            concurrency: 1,
            page_size: None,
            dry_run: false,
            debug: false,
            retry_scale,
            queries_per_hour: defaults::QUERIES_PER_HOUR,
        }
    }
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
pub fn settings(args: &DestinationOptions, now: DateTime<Utc>) -> Result<Settings, CommandError> {
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
        CommandError::Usage(lines.join("\n"))
    })
}

pub fn time_flag(flag: &str, text: &str) -> Result<DateTime<Utc>, CommandError> {
    timestamp::parse_date(text.trim())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .or_else(|| timestamp::parse_iso(text))
        .ok_or_else(|| {
            CommandError::Usage(format!("{flag}: \"{text}\" is not a date; write it as YYYY-MM-DD, e.g. 2021-06-01"))
        })
}

/// A count flag from 1 to `most` (`usual`: its default).
fn within(flag: &str, value: usize, most: usize, usual: usize, what: &str) -> Result<(), CommandError> {
    if (1..=most).contains(&value) {
        return Ok(());
    }
    Err(CommandError::Usage(format!(
        "{flag}: \"{value}\" is not accepted: it is the {what}, from 1 to {most}; leave it out for {usual}."
    )))
}

/// Either end of a range: `None`, as far as the source goes.
pub type Ends = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The range asked for, checked.
pub fn asked(args: &DestinationOptions, settings: &Settings) -> Result<Ends, CommandError> {
    let end = args.end.as_deref().map(|end| time_flag("--end", end)).transpose()?;
    if let (Some(from), Some(to)) = (settings.start, end) {
        if to <= from {
            return Err(CommandError::Usage(format!(
                "--end ({}) must come after --start ({})",
                timestamp::format(to),
                timestamp::format(from)
            )));
        }
    }
    let what = "number of requests in flight at once";
    within("--concurrency", args.concurrency, defaults::MOST_CONCURRENCY, defaults::CONCURRENCY, what)?;
    if let Some(page_size) = args.page_size {
        let what = "number of events handed to the senders at a time";
        within("--page-size", page_size, defaults::MOST_PAGE_SIZE, defaults::PAGE_SIZE, what)?;
    }
    if args.queries_per_hour == 0 {
        return Err(CommandError::Usage("--queries-per-hour must be at least 1".into()));
    }
    Ok((settings.start, end))
}

/// The range of `[start, end)` as asked, what the source holds otherwise: from its first
/// event, to just after its last.
pub fn range_of(
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

/// An import (`amplitude`, `files`) migrated to the destination, `range` (`None`: read
/// whole) as one migration, what it hands over recorded per day for `verify --from`;
/// without a state file (`--dry-run`), read through and summed up only.
pub fn migrate_import(
    state_path: &Path,
    state: Option<&mut StateFile>,
    source: &mut dyn Source,
    to: &DestinationOptions,
    settings: &Settings,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Outcome {
    let target = Target::of(settings);
    let page_size = to.page_size.unwrap_or(defaults::PAGE_SIZE);
    let retry = RetryPolicy::new(to.retry_scale);
    let migration = Migration::new(settings, &target, page_size, to.concurrency, retry, now).recording_days();
    let Some(state) = state else {
        let ended = dry_run(source, &migration.options(String::new()))?;
        return summary::after_dry_run(ended);
    };
    let finished = migration.run(state_path, state, source, range, None)?;
    summary::after_migration(state, finished, &target.url, &source.remarks())
}

/// Whom an import's ledgers (links sent, files read) are kept for: the destination's
/// host and project key, written the same way by the imports and by `verify --resend`.
pub fn ledger_key(settings: &Settings) -> String {
    format!("{} {}", settings.destination.base_url, settings.project_api_key)
}

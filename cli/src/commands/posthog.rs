//! `migrator3000 posthog`: a PostHog's events, read from its ClickHouse or its Query
//! API, migrated to the destination.

use std::path::Path;

use chrono::{DateTime, Utc};
use migrator3000::settings::Settings;
use migrator3000::timestamp;

use super::destination::{asked, range_of, settings, DestinationOptions};
use super::exit::{CommandError, Exit, Outcome};
use super::summary;
use crate::pipeline::dry_run::dry_run;
use crate::pipeline::error::PipelineError;
use crate::pipeline::migration::{Migration, Target};
use crate::pipeline::persons::{copy_persons, PERSONS_PAGE};
use crate::posthog_api::client::QueryApiClient;
use crate::shared::defaults;
use crate::shared::reporter::note;
use crate::shared::retry::RetryPolicy;
use crate::sources::posthog::clickhouse::ClickHouse;
use crate::sources::posthog::persons::{ClickHousePersons, PersonSource, QueryApiPersons};
use crate::sources::posthog::query_api::QueryApiSource;
use crate::sources::{Bounds, Source};
use crate::store::state_file::{self, StateFile, Use};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    Clickhouse,
    QueryApi,
}

/// Whether a migration copies the persons, after its events (`--persons`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersonsMode {
    /// The events, then the persons (the default).
    After,
    /// The events alone.
    Skip,
    /// The persons alone (the events were copied by the app or another tool).
    Only,
}

pub struct PosthogOptions {
    pub from: ReadFrom,
    pub persons: PersonsMode,
    pub source: PosthogSourceOptions,
    pub to: DestinationOptions,
}

/// Where a PostHog's events are read: the flags of `posthog` and of `verify`.
pub struct PosthogSourceOptions {
    pub clickhouse_url: Option<String>,
    pub clickhouse_user: String,
    pub clickhouse_password: String,
    pub clickhouse_database: String,
    pub clickhouse_table: String,
    pub team_id: Option<u64>,
    pub query_api_host: Option<String>,
    pub project_id: Option<u64>,
    pub personal_api_key: Option<String>,
}

impl PosthogSourceOptions {
    pub fn clickhouse(&self) -> ClickHouse {
        ClickHouse::new(
            self.clickhouse_url.as_deref().unwrap_or_default(),
            &self.clickhouse_user,
            &self.clickhouse_password,
            &self.clickhouse_database,
            &self.clickhouse_table,
            self.team_id.unwrap_or_default(),
        )
    }

    fn personal_api_key(&self) -> Result<&str, CommandError> {
        self.personal_api_key.as_deref().filter(|k| !k.trim().is_empty()).ok_or_else(|| {
            CommandError::Usage(
                "--personal-api-key (or POSTHOG_PERSONAL_API_KEY) is required with --from query-api: a personal API \
                 key of the source with the Query Read permission"
                    .into(),
            )
        })
    }

    pub fn query_api(&self) -> Result<QueryApiClient, CommandError> {
        Ok(QueryApiClient::new(
            self.query_api_host.as_deref().unwrap_or_default(),
            self.project_id.unwrap_or_default(),
            self.personal_api_key()?,
        ))
    }
}

/// When the source holds events, but none in the range of --start and --end: the range
/// in words, with where the source's events are.
fn empty_range(
    source: &mut dyn Source,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    retry: RetryPolicy,
) -> Result<Option<String>, CommandError> {
    if start.is_none() && end.is_none() {
        return Ok(None);
    }
    let all = retry.read(|| source.select(None, None)).map_err(PipelineError::from)?;
    let Some(Bounds { first: Some(first), last: Some(last), count }) = all.filter(|b| b.count > 0) else {
        return Ok(None);
    };
    let (flags, range) = match (start, end) {
        (Some(from), Some(to)) => (
            "--start and --end",
            format!("from --start {} to --end {}", timestamp::format(from), timestamp::format(to)),
        ),
        (Some(from), None) => ("--start", format!("from --start {} on", timestamp::format(from))),
        (None, Some(to)) => ("--end", format!("before --end {}", timestamp::format(to))),
        (None, None) => return Ok(None),
    };
    Ok(Some(format!(
        "{} holds {count} events, from {} to {}, but none {range}: the range is empty. Check {flags}.",
        source.describe(),
        timestamp::format(first),
        timestamp::format(last)
    )))
}

pub fn run(state_path: &Path, args: &PosthogOptions) -> Outcome {
    let now = Utc::now();
    let settings = settings(&args.to, now)?;
    let events = match args.persons {
        PersonsMode::Only => Exit::Done,
        PersonsMode::After | PersonsMode::Skip => events(state_path, args, &settings, now)?,
    };
    if args.persons == PersonsMode::Skip || args.to.dry_run || !matches!(events, Exit::Done | Exit::Parked) {
        return Ok(events);
    }
    let persons = persons(state_path, args, &settings, now)?;
    Ok(match (events, persons) {
        (_, Exit::Done) => events,
        (Exit::Done, worse) => worse,
        (Exit::Parked, Exit::Parked) => Exit::Parked,
        (_, worse) => worse,
    })
}

/// The persons step: every person of the source not deleted, sent after the events.
fn persons(state_path: &Path, args: &PosthogOptions, settings: &Settings, now: DateTime<Utc>) -> Outcome {
    let mut source: Box<dyn PersonSource> = match args.from {
        ReadFrom::Clickhouse => Box::new(ClickHousePersons { clickhouse: args.source.clickhouse() }),
        ReadFrom::QueryApi => {
            let mut client = args.source.query_api()?;
            client.per_hour = args.to.queries_per_hour;
            Box::new(QueryApiPersons { client })
        }
    };
    let target = Target::of(settings);
    let retry = RetryPolicy::new(args.to.retry_scale);
    let migration = Migration::new(settings, &target, PERSONS_PAGE, args.to.concurrency, retry, now);
    let name = format!("persons of {} into {target}", source.describe());
    note!("Copying the persons of {} into {target}.", source.describe());
    let mut state = StateFile::open(state_path, Use::Run)?;
    let page = args.to.page_size.unwrap_or(PERSONS_PAGE).min(PERSONS_PAGE);
    let copied = copy_persons(&mut state, source.as_mut(), &name, &migration.options(name.clone()), page, now)?;
    summary::after_persons(&copied, &target.url)
}

/// The events step: the source's events of the range.
fn events(state_path: &Path, args: &PosthogOptions, settings: &Settings, now: DateTime<Utc>) -> Outcome {
    let (start, end) = asked(&args.to, settings)?;
    // The state file first: a file this run cannot use (or that another run holds) is
    // said before the source is asked anything; a new one is made only once it is read.
    let early = match args.to.dry_run {
        true => None,
        false if state_path.exists() => Some(StateFile::open(state_path, Use::Run)?),
        false => {
            state_file::check_new(state_path)?;
            None
        }
    };
    let mut source: Box<dyn Source> = match args.from {
        ReadFrom::Clickhouse => {
            let mut source = args.source.clickhouse();
            source.debug = args.to.debug;
            Box::new(source)
        }
        ReadFrom::QueryApi => {
            let mut client = args.source.query_api()?;
            client.per_hour = args.to.queries_per_hour;
            client.retry = RetryPolicy::new(args.to.retry_scale);
            Box::new(QueryApiSource::new(client))
        }
    };
    let page_size = args.to.page_size.unwrap_or(match args.from {
        ReadFrom::Clickhouse => defaults::PAGE_SIZE,
        ReadFrom::QueryApi => defaults::QUERY_API_MOST_ROWS,
    });
    // One query: what the source holds in the range asked for.
    let retry = RetryPolicy::new(args.to.retry_scale);
    let bounds = retry.read(|| source.select(start, end)).map_err(PipelineError::from)?.unwrap_or(Bounds {
        first: None,
        last: None,
        count: 0,
    });
    let between = match (start, end) {
        (None, None) => String::new(),
        (from, to) => format!(
            " between {} and {}",
            from.map_or("its first event".into(), timestamp::format),
            to.map_or("its last".into(), timestamp::format)
        ),
    };
    let Some((from, to, said)) = range_of(start, end, &bounds).filter(|_| bounds.count > 0) else {
        if let Some(empty) = empty_range(source.as_mut(), start, end, retry)? {
            return Err(CommandError::Usage(empty));
        }
        return Err(CommandError::Failed(match args.from {
            ReadFrom::Clickhouse => {
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
            ReadFrom::QueryApi => {
                format!("{} has no events{between}; check --project-id, --start and --end", source.describe())
            }
        }));
    };
    let target = Target::of(settings);
    note!(
        "Migrating {} into {target}: {} events from {} to {} ({said}).",
        source.describe(),
        bounds.count,
        timestamp::format(from),
        timestamp::format(to)
    );
    if let ReadFrom::QueryApi = args.from {
        let queries = bounds.count.div_ceil(page_size as u64);
        let hours = queries as f64 / args.to.queries_per_hour as f64;
        if hours >= 0.5 {
            note!(
                "The Query API answers {} HogQL queries an hour per key: {queries} pages of {page_size} take at least \
                 {hours:.1} h.",
                args.to.queries_per_hour
            );
        }
    }
    let migration = Migration::new(settings, &target, page_size, args.to.concurrency, retry, now);
    if args.to.dry_run {
        let ended = dry_run(source.as_mut(), &migration.options(String::new()))?;
        return summary::after_dry_run(ended);
    }
    let mut state = match early {
        Some(state) => state,
        None => StateFile::open(state_path, Use::Run)?,
    };
    let finished = migration.run(state_path, &mut state, source.as_mut(), Some((from, to)), Some(bounds.count))?;
    summary::after_migration(&state, finished, &target.url, &source.remarks())
}

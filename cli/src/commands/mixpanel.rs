//! `migrator3000 mixpanel`: a Mixpanel project's events (local raw export files, or its
//! export API a day at a time) and optionally its people (an Engage export, or the
//! Engage API with `--profiles api`) migrated to the destination, each device linked
//! once to its user, each line sent once.

use std::path::{Path, PathBuf};

use chrono::Utc;
use migrator3000::timestamp;

use super::destination::{asked, ledger_key, migrate_import, settings, DestinationOptions};
use super::exit::{CommandError, Outcome};
use crate::pipeline::error::PipelineError;
use crate::pipeline::migration::Target;
use crate::shared::reporter::note;
use crate::sources::mixpanel::engage_api::{self, EngageApi, WithPeople};
use crate::sources::mixpanel::export_api::{self, ExportApi, Limits};
use crate::sources::mixpanel::files::LocalFiles;
use crate::sources::mixpanel::{Mixpanel, Options as ImportOptions};
use crate::sources::Source;
use crate::store::state_file::{StateFile, Use};

/// `--profiles api`: the people from Mixpanel's Engage API rather than a file.
pub const PROFILES_API: &str = "api";

/// The runs of Mixpanel imports, by their source's name (SQL LIKE; as the files, the
/// export API and the Engage API describe themselves).
pub const SOURCES: [&str; 3] = ["the Mixpanel export %", "Mixpanel's export API %", "Mixpanel's Engage API %"];

pub struct MixpanelOptions {
    pub files: Vec<PathBuf>,
    pub profiles: Vec<PathBuf>,
    pub project_id: Option<u64>,
    pub user: Option<String>,
    pub secret: Option<String>,
    pub region: String,
    pub mixpanel_url: Option<String>,
    pub queries_per_hour: usize,
    pub to: DestinationOptions,
}

pub fn run(state_path: &Path, args: &MixpanelOptions) -> Outcome {
    let now = Utc::now();
    let settings = settings(&args.to, now)?;
    let (start, end) = asked(&args.to, &settings)?;
    let mut state = if args.to.dry_run { None } else { Some(StateFile::open(state_path, Use::Run)?) };
    let destination = ledger_key(&settings);
    let (known, handed) = match &state {
        Some(state) => (
            state.mixpanel_known(&destination)?,
            state.handed_over(&SOURCES, &settings.destination.base_url, &settings.project_api_key)?,
        ),
        None => Default::default(),
    };
    let import = ImportOptions { destination, now: timestamp::format(now) };
    let credentials = match (args.project_id, &args.user, &args.secret) {
        (Some(project), Some(user), Some(secret)) => Some((project, user.as_str(), secret.as_str())),
        _ => None,
    };
    let people_api = args.profiles.iter().any(|p| p.as_os_str() == PROFILES_API);
    let profile_files: Vec<PathBuf> = args.profiles.iter().filter(|p| p.as_os_str() != PROFILES_API).cloned().collect();
    let region = |host: fn(&str) -> Option<&'static str>| match &args.mixpanel_url {
        Some(url) => Ok(url.clone()),
        None => host(&args.region)
            .map(String::from)
            .ok_or_else(|| CommandError::Usage(format!("--region {}: give us, eu or in", args.region))),
    };
    let people = match (people_api, credentials) {
        (false, _) => None,
        (true, None) => {
            return Err(CommandError::Usage(
                "--profiles api reads Mixpanel's Engage API: give --project-id, and the service account in \
                 MIXPANEL_SERVICE_ACCOUNT_USER and MIXPANEL_SERVICE_ACCOUNT_SECRET"
                    .into(),
            ))
        }
        (true, Some((project, user, secret))) => {
            let limits = Limits { per_hour: args.queries_per_hour.max(1), per_second: engage_api::LIMITS.per_second };
            Some(EngageApi::new(&region(engage_api::host)?, project, user, secret).with_limits(limits))
        }
    };
    let mut range = None;
    let mut source: Box<dyn Source> =
        if !args.files.is_empty() || (!profile_files.is_empty() && args.project_id.is_none()) {
            if args.project_id.is_some() && people.is_none() {
                return Err(CommandError::Usage(
                    "--files and --project-id: give one source of events (with --files, --project-id is for \
                 --profiles api only)"
                        .into(),
                ));
            }
            let files = LocalFiles::open(&args.files, &profile_files)?;
            match people {
                Some(people) => {
                    let mut local = Mixpanel::new(WithPeople { events: files, people }, import, known, handed);
                    local.take_stock().map_err(PipelineError::from)?;
                    Box::new(local)
                }
                None => {
                    let mut local = Mixpanel::new(files, import, known, handed);
                    local.take_stock().map_err(PipelineError::from)?;
                    Box::new(local)
                }
            }
        } else if let Some((project, user, secret)) = credentials {
            if !profile_files.is_empty() {
                return Err(CommandError::Usage(
                    "--profiles FILE goes with --files; with the export API, --profiles api reads the people from \
                 Mixpanel"
                        .into(),
                ));
            }
            match (start, people) {
                (None, Some(people)) => Box::new(Mixpanel::new(people, import, known, handed)),
                (None, None) => {
                    return Err(CommandError::Usage("the export API needs --start (its first day)".into()));
                }
                (Some(start), people) => {
                    let end = end.unwrap_or(now);
                    if end <= start {
                        return Err(CommandError::Usage("--end must come after --start".into()));
                    }
                    let (from, to) = (
                        start.date_naive(),
                        end.date_naive() + chrono::Duration::days(i64::from(end.time() != chrono::NaiveTime::MIN)),
                    );
                    range = Some((start, end));
                    let limits =
                        Limits { per_hour: args.queries_per_hour.max(1), per_second: export_api::LIMITS.per_second };
                    let events =
                        ExportApi::new(&region(export_api::host)?, project, user, secret, from, to).with_limits(limits);
                    match people {
                        Some(people) => Box::new(Mixpanel::new(WithPeople { events, people }, import, known, handed)),
                        None => Box::new(Mixpanel::new(events, import, known, handed)),
                    }
                }
            }
        } else {
            return Err(CommandError::Usage(
                "give --files (a raw export: files or folders) or --project-id with MIXPANEL_SERVICE_ACCOUNT_USER and \
             MIXPANEL_SERVICE_ACCOUNT_SECRET (the export API; --profiles api for the people)"
                    .into(),
            ));
        };
    note!("Migrating {} into {}.", source.describe(), Target::of(&settings));
    // Ended as `amplitude` and `files` end: a dry run's own ending (incomplete when the
    // source could not account for what it read), a run's summary.
    migrate_import(state_path, state.as_mut(), source.as_mut(), &args.to, &settings, range, now)
}

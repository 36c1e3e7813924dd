//! `migrator3000 amplitude`: an Amplitude project's events (a local export, or its
//! Export API) migrated to the destination, each device linked once to its user.

use std::path::{Path, PathBuf};

use chrono::Utc;
use migrator3000::timestamp;

use super::destination::{asked, ledger_key, migrate_import, settings, DestinationOptions};
use super::exit::{CommandError, Outcome};
use crate::pipeline::error::PipelineError;
use crate::pipeline::migration::Target;
use crate::shared::reporter::note;
use crate::sources::amplitude::export_api::{self, ExportApi};
use crate::sources::amplitude::files::LocalExport;
use crate::sources::amplitude::{Amplitude, Options as ImportOptions};
use crate::sources::Source;
use crate::store::state_file::{StateFile, Use};

pub struct AmplitudeOptions {
    pub files: Option<PathBuf>,
    pub api_key: Option<String>,
    pub secret_key: Option<String>,
    pub eu: bool,
    pub amplitude_url: Option<String>,
    pub group_identify: bool,
    pub skip_unreadable: bool,
    pub to: DestinationOptions,
}

pub fn run(state_path: &Path, args: &AmplitudeOptions) -> Outcome {
    let now = Utc::now();
    let settings = settings(&args.to, now)?;
    let (start, end) = asked(&args.to, &settings)?;
    let from = start.unwrap_or_else(|| timestamp::parse_iso("2020-01-01T00:00:00Z").unwrap_or(now));
    let to = end.unwrap_or(now);
    if to <= from {
        return Err(CommandError::Usage(format!("--end ({}) must come after --start", timestamp::format(to))));
    }
    if let Some(path) = &args.files {
        // An export with nothing to import is said before anything is stored.
        LocalExport::open(path)?.check().map_err(PipelineError::from)?;
    }
    let mut state = if args.to.dry_run { None } else { Some(StateFile::open(state_path, Use::Run)?) };
    // Links, group properties and files are kept for each destination apart.
    let destination = ledger_key(&settings);
    let known = match &state {
        Some(state) => state.amplitude_known(&destination)?,
        None => Default::default(),
    };
    let import =
        ImportOptions { destination, group_identify: args.group_identify, skip_unreadable: args.skip_unreadable };
    let mut source: Box<dyn Source> = match (&args.files, &args.api_key, &args.secret_key) {
        (Some(path), _, _) => {
            let mut local = Amplitude::new(LocalExport::open(path)?, import, known);
            // What the export holds is part of which migration this is.
            local.take_stock().map_err(PipelineError::from)?;
            Box::new(local)
        }
        (None, Some(key), Some(secret)) => {
            let base = args.amplitude_url.as_deref().unwrap_or(if args.eu { export_api::EU } else { export_api::US });
            Box::new(Amplitude::new(ExportApi::new(base, key, secret, from, to), import, known))
        }
        _ => {
            return Err(CommandError::Usage(
                "give --files (a local export) or --api-key and --secret-key (Amplitude's Export API)".into(),
            ))
        }
    };
    let target = Target::of(&settings);
    // A local export is imported whole: its run has no range.
    let range = args.files.is_none().then_some((from, to));
    match range {
        Some((from, to)) => note!(
            "Migrating {} into {target}: from {} to {}.",
            source.describe(),
            timestamp::format(from),
            timestamp::format(to)
        ),
        None => note!("Migrating {} into {target}: the whole export.", source.describe()),
    }
    // What the import hands over is recorded per day, for `verify --from amplitude`.
    migrate_import(state_path, state.as_mut(), source.as_mut(), &args.to, &settings, range, now)
}

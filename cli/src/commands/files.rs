//! `migrator3000 files`: files of PostHog-shaped events (JSON lines, plain, gzip or
//! zstd; PostHog's own "captured" events or its S3 batch export's lines), from a folder
//! or an S3-compatible bucket, migrated to the destination; each file known by its
//! content, so a rerun sends nothing it sent whole.

use std::path::{Path, PathBuf};

use chrono::Utc;

use super::destination::{ledger_key, migrate_import, settings, DestinationOptions};
use super::exit::{CommandError, Outcome};
use crate::pipeline::error::PipelineError;
use crate::pipeline::migration::Target;
use crate::shared::reporter::note;
use crate::shared::retry::RetryPolicy;
use crate::sources::files::local::Local;
use crate::sources::files::s3::{Credentials, S3};
use crate::sources::files::{Files, Options as ReadOptions};
use crate::sources::Source;
use crate::store::state_file::{StateFile, Use};

/// The runs of imports of files, by their source's name (SQL LIKE; as a folder and a
/// bucket describe themselves).
pub const SOURCES: [&str; 1] = ["the files at %"];

/// Where the files are.
#[derive(Debug, Clone, Default)]
pub struct FilesFrom {
    pub files: Option<PathBuf>,
    pub s3: Option<String>,
    pub s3_endpoint: Option<String>,
    /// From the AWS environment variables (read by `args`).
    pub credentials: Option<Credentials>,
}

pub struct FilesOptions {
    pub from: FilesFrom,
    pub skip_unreadable: bool,
    pub to: DestinationOptions,
}

/// The files as a source, for `destination`, skipping the files in `known`.
pub fn open(
    from: &FilesFrom,
    destination: String,
    skip_unreadable: bool,
    known: std::collections::HashSet<String>,
) -> Result<Box<dyn Source>, CommandError> {
    let options = ReadOptions { destination, skip_unreadable };
    Ok(match (&from.files, &from.s3) {
        (Some(path), None) => {
            let mut files = Files::new(Local::open(path)?, options, known);
            files.take_stock().map_err(PipelineError::from)?;
            Box::new(files)
        }
        (None, Some(url)) => {
            let credentials = from.credentials.clone().ok_or_else(|| {
                CommandError::Usage(
                    "--s3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment (and AWS_REGION, or \
                     AWS_DEFAULT_REGION, when the bucket is not in us-east-1)"
                        .into(),
                )
            })?;
            let bucket = S3::new(url, from.s3_endpoint.as_deref(), credentials)?;
            let mut files = Files::new(bucket, options, known);
            let retry = RetryPolicy::new(1.0);
            retry.read(|| files.take_stock()).map_err(PipelineError::from)?;
            Box::new(files)
        }
        _ => return Err(CommandError::Usage("give --files PATH or --s3 s3://bucket/prefix".into())),
    })
}

pub fn run(state_path: &Path, args: &FilesOptions) -> Outcome {
    let now = Utc::now();
    let settings = settings(&args.to, now)?;
    if args.to.start.is_some() || args.to.end.is_some() {
        return Err(CommandError::Usage("files are imported whole: --start and --end do not apply".into()));
    }
    let mut state = if args.to.dry_run { None } else { Some(StateFile::open(state_path, Use::Run)?) };
    // Files are recorded for each destination apart.
    let destination = ledger_key(&settings);
    let known = match &state {
        Some(state) => state.files_read(&destination)?,
        None => Default::default(),
    };
    let mut source = open(&args.from, destination, args.skip_unreadable, known)?;
    let target = Target::of(&settings);
    note!("Migrating {} into {target}: all of them.", source.describe());
    // What the import hands over is recorded per day, for `verify --from files`.
    migrate_import(state_path, state.as_mut(), source.as_mut(), &args.to, &settings, None, now)
}

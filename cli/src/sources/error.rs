//! The sources layer's error: a source that cannot be opened, in the words of the flag
//! that named it. (A line a source cannot turn into an event is no error of the run:
//! it is reported and counted, e.g. `amplitude::convert::LineError`.) Also why one file
//! cannot be read: an Amplitude export's (`Unreadable`), a file of lines'
//! (`Undecodable`).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use ruzstd::decoding::errors::FrameDecoderError;
use zip::result::ZipError;

use crate::shared::retry::ReadError;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A path given to `flag` (`--files`, `--profiles`) that is not there.
    #[error("{flag}: {} does not exist", path.display())]
    NotThere { flag: &'static str, path: PathBuf },
    /// A file or folder given to `flag` that cannot be read (its metadata, its first
    /// bytes, a folder's listing).
    #[error("{flag}: {}: {source}", path.display())]
    CannotRead { flag: &'static str, path: PathBuf, source: io::Error },
    /// Mixpanel's `--files` and `--profiles` hold no file.
    #[error("--files: no file found")]
    NoFiles,
    #[error("--s3 {0}: give s3://bucket or s3://bucket/prefix")]
    NotAnS3Url(String),
    #[error("--s3 {0}: no bucket")]
    NoBucket(String),
    #[error("--s3-endpoint {0}: give its URL, e.g. http://localhost:9000")]
    NotAnEndpoint(String),
    #[error(
        "--files: {} is neither a zip nor a .json.gz of an Amplitude export; give the zip Amplitude's Export API \
         returned, the folder it was unzipped to, or one of its .json.gz files",
        .0.display()
    )]
    NotAnExport(PathBuf),
}

/// Why one file of an export cannot be read (a file cut short, a damaged zip): the
/// import names it and stops, or skips it with `--skip-unreadable`. Kept with a zip that
/// cannot be opened and given for each of its files, so it clones (its causes shared).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unreadable {
    #[error("{0}")]
    Io(Arc<io::Error>),
    #[error("{0}")]
    Zip(Arc<ZipError>),
    /// A zip found when the export's files are listed.
    #[error("it is not a whole zip ({0})")]
    NotAWholeZip(Arc<ZipError>),
    /// A zip opened again to read one of its files.
    #[error("not a whole zip ({0})")]
    ZipCutShort(Arc<ZipError>),
    #[error("it is not a whole gzip of text ({0})")]
    NotAWholeGzip(Arc<io::Error>),
    /// A file listed that the listing since read does not hold.
    #[error("it is no longer there")]
    Gone,
    #[error("no zip")]
    NoZip,
}

impl From<io::Error> for Unreadable {
    fn from(error: io::Error) -> Unreadable {
        Unreadable::Io(Arc::new(error))
    }
}

impl From<ZipError> for Unreadable {
    fn from(error: ZipError) -> Unreadable {
        Unreadable::Zip(Arc::new(error))
    }
}

/// Why a file of lines (`sources::lines`) cannot be decompressed: it is cut short or
/// damaged. Its cause is kept in its words, as the file is skipped or named with it.
#[derive(Debug, thiserror::Error)]
pub enum Undecodable {
    #[error("it is not a whole gzip file ({0})")]
    Gzip(io::Error),
    /// A zstd frame whose header cannot be read.
    #[error("it is not a whole zstd file ({0})")]
    ZstdFrame(FrameDecoderError),
    #[error("it is not a whole zstd file ({0})")]
    Zstd(io::Error),
}

/// Met while reading (listing an export's files), a source's error stops the read.
impl From<SourceError> for ReadError {
    fn from(error: SourceError) -> ReadError {
        ReadError::Fatal(error.to_string())
    }
}

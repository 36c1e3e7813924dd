//! The sources layer's error: a source that cannot be opened, in the words of the flag
//! that named it. (A line a source cannot turn into an event is no error of the run:
//! it is reported and counted, e.g. `amplitude::convert::LineError`.)

use std::io;
use std::path::PathBuf;

use crate::shared::retry::ReadError;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("--files: {} does not exist", .0.display())]
    NotThere(PathBuf),
    /// A file or folder of `--files` that cannot be read (its metadata, its first bytes,
    /// a folder's listing).
    #[error("--files: {}: {source}", path.display())]
    CannotRead { path: PathBuf, source: io::Error },
    #[error(
        "--files: {} is neither a zip nor a .json.gz of an Amplitude export; give the zip Amplitude's Export API \
         returned, the folder it was unzipped to, or one of its .json.gz files",
        .0.display()
    )]
    NotAnExport(PathBuf),
}

/// Met while reading (listing an export's files), a source's error stops the read.
impl From<SourceError> for ReadError {
    fn from(error: SourceError) -> ReadError {
        ReadError::Fatal(error.to_string())
    }
}

//! Why the demo stopped: its size, the program it runs, the export it writes, the
//! destination it starts, the state file it reads back.

use std::io;
use std::path::PathBuf;

use crate::shared::words;
use crate::store::error::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("--events: give at least {}, so that there is a middle to kill the run in", .least)]
    FewEvents { least: usize },
    #[error(
        "--events: give at most {}: the demo runs on this machine, against a destination of its own",
        words::thousands(*.most as u64)
    )]
    ManyEvents { most: usize },
    #[error("cannot find this program to run it: {0}")]
    NoProgram(#[source] io::Error),
    #[error("cannot run the command: {0}")]
    CannotRun(#[source] io::Error),
    #[error("cannot kill the command: {0}")]
    CannotKill(#[source] io::Error),
    /// Waiting for a run of the command, or running one to its end.
    #[error("{0}")]
    Run(#[source] io::Error),
    #[error("the first run took over 5 minutes without reaching its middle")]
    FirstRunTooLong,
    /// A file or folder of the generated export.
    #[error("{}: {source}", path.display())]
    Export { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Gzip(#[source] io::Error),
    #[error("no loopback server: {0}")]
    NoServer(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("no loopback port")]
    NoPort,
    #[error(transparent)]
    Store(#[from] StoreError),
}

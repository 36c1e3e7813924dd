//! How a command ends, and its exit code: every way is a value here, and `exit_code` is
//! the one `match` that gives each its code (the README's table follows it).

use super::demo::error::DemoError;
use crate::pipeline::error::PipelineError;
use crate::sources::error::SourceError;
use crate::store::error::StoreError;

/// A command that ran to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything done (a migration complete, everything verified, nothing parked).
    Done,
    /// Ran to its end without proving its point: `verify` could not compare some days
    /// yet (still arriving, not counted), or `demo` found something wrong.
    NotVerified,
    /// `metadata`: some objects were refused by the destination (named).
    Failed,
    /// Complete, but some requests are parked.
    Parked,
    /// The destination refused the key, or is not PostHog's capture.
    Refused,
    /// `verify`: events are missing or extra at the destination; `metadata`: objects
    /// changed at the destination since they were copied, left as they are there.
    Differences,
    /// Not complete: some of the source was not read (a migration handed over fewer
    /// events than the source counted, the windows left read by the next run; or an
    /// import's file skipped as unreadable, or its lines not all accounted for; or
    /// `metadata`'s objects skipped: a dangling reference, a cycle, a flag on a
    /// behavioural cohort).
    Incomplete,
    /// Stopped by Ctrl-C: what was settled is recorded, the same command resumes.
    Interrupted,
}

/// A command that stopped: its message is printed after `migrator3000: `.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A flag is wrong or missing.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A source that cannot be opened (`--files` that is no export or not there, an
    /// `--s3` address that is not one).
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Demo(#[from] DemoError),
    /// Anything else that stops a command (a source with no events, a destination out
    /// of reach, a file that cannot be read), in the command's words.
    #[error("{0}")]
    Failed(String),
}

pub type Outcome = Result<Exit, CommandError>;

/// The exit code of every way a command ends. Clap's own errors exit with 2 too.
pub fn exit_code(outcome: &Outcome) -> u8 {
    match outcome {
        Ok(Exit::Done) => 0,
        Ok(Exit::NotVerified | Exit::Failed) => 1,
        // `--state` names a folder or another program's file: the flag is wrong.
        Err(CommandError::Store(StoreError::NotAStateFile(_))) => 2,
        // sysexits' EX_TEMPFAIL: another run holds the state file; the same command
        // succeeds once it has ended.
        Err(CommandError::Store(StoreError::InUse { .. })) => 75,
        // `--s3` or `--s3-endpoint` is not an address of the kind it takes.
        Err(CommandError::Source(
            SourceError::NotAnS3Url(_) | SourceError::NoBucket(_) | SourceError::NotAnEndpoint(_),
        )) => 2,
        Err(
            CommandError::Store(_)
            | CommandError::Pipeline(_)
            | CommandError::Source(_)
            | CommandError::Demo(_)
            | CommandError::Failed(_),
        ) => 1,
        Err(CommandError::Usage(_)) => 2,
        Ok(Exit::Parked) => 3,
        Ok(Exit::Refused) => 4,
        Ok(Exit::Differences) => 5,
        Ok(Exit::Incomplete) => 6,
        // 128 + SIGINT, as shells report a command stopped by Ctrl-C.
        Ok(Exit::Interrupted) => 130,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_address_that_is_none_is_a_wrong_flag_and_a_missing_file_a_failure() {
        for wrong in [
            SourceError::NotAnS3Url("b".into()),
            SourceError::NoBucket("s3://".into()),
            SourceError::NotAnEndpoint("localhost".into()),
        ] {
            assert_eq!(exit_code(&Err(CommandError::Source(wrong))), 2);
        }
        let missing = SourceError::NotThere { flag: "--files", path: "x".into() };
        assert_eq!(exit_code(&Err(CommandError::Source(missing))), 1);
    }
}

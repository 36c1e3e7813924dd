//! `migrator3000 resend-parked`: the requests parked after their attempts (or held for
//! a setting) sent again.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::Utc;
use migrator3000::batch::BatchLimits;
use migrator3000::dispatch::KeepState;

use super::exit::{CommandError, Exit, Outcome};
use super::summary::{interrupted_words, refusal_words};
use crate::pipeline::migration::YOUNG;
use crate::pipeline::page_loop::{self, Ended};
use crate::pipeline::progress::Progress;
use crate::pipeline::run_options::Options;
use crate::shared::reporter::{note, say};
use crate::shared::retry::RetryPolicy;
use crate::sink::delivery::Capture;
use crate::store::state_file::{StateFile, Use};

pub fn run(state_path: &Path, retry_scale: f64) -> Outcome {
    let mut state = StateFile::open(state_path, Use::Resume)?;
    let released = state.unpark()?;
    say!("{released} parked requests wait to be sent again.");
    resend_waiting(&mut state, RetryPolicy::new(retry_scale))
}

/// Sends every run's waiting requests again; says what is still parked after.
fn resend_waiting(state: &mut StateFile, retry: RetryPolicy) -> Outcome {
    for run in state.runs()? {
        if state.count_events(&run.id, KeepState::Waiting.name())? == 0 {
            continue;
        }
        let destination =
            migrator3000::host::parse(&run.destination).map_err(|e| CommandError::Failed(e.to_string()))?;
        let options = Options {
            run: run.id.clone(),
            api_key: run.api_key.clone(),
            capture: Capture {
                json_url: destination.batch_url(false),
                gzip_url: destination.batch_url(true),
                limits: BatchLimits { max_events: 500, max_bytes: 1_800_000 },
                gzip: run.gzip,
                events_per_minute: None,
                retry,
            },
            events_to_ignore: BTreeSet::new(),
            page_size: 1,
            concurrency: 1,
            young_after: Utc::now() - YOUNG,
            record_days: false,
        };
        let progress = Progress::new(&run);
        let ended = page_loop::resend_waiting(state, &options, &progress)?;
        progress.finish();
        match ended {
            Ended::Complete | Ended::Short(_) | Ended::Unaccounted(_) => {}
            Ended::Stopped(refusal) => {
                state.park_waiting(&run.id)?;
                note!("Stopped: {}", refusal_words(&refusal, &run.destination));
                return Ok(Exit::Refused);
            }
            Ended::Unreachable(cause) => {
                state.park_waiting(&run.id)?;
                note!("The destination {} still cannot be reached: {cause}.", run.destination);
            }
            Ended::Interrupted => {
                note!("{}", interrupted_words(state.path()));
                return Ok(Exit::Interrupted);
            }
        }
    }
    let parked: u64 =
        state.runs()?.iter().map(|run| state.count_events(&run.id, KeepState::Parked.name())).sum::<Result<_, _>>()?;
    if parked > 0 {
        say!(
            "{parked} events are still parked: the destination did not take them. Run `migrator3000 resend-parked` \
             again once it does (`migrator3000 status` shows them)."
        );
        return Ok(Exit::Parked);
    }
    say!("No event is parked any more: see `migrator3000 status`.");
    Ok(Exit::Done)
}

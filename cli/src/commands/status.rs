//! `migrator3000 status`: the progress of every migration in the state file.

use std::path::Path;

use migrator3000::dispatch::KeepState;

use super::exit::{Exit, Outcome};
use crate::pipeline::migration::Target;
use crate::shared::reporter::say;
use crate::store::state_file::{StateFile, Use};

pub fn run(state_path: &Path) -> Outcome {
    // Read only while a run holds the file; a file that does not exist is not made.
    let state = StateFile::open(state_path, Use::Look)?;
    let runs = state.runs()?;
    if runs.is_empty() {
        say!("No migration in {}.", state_path.display());
    }
    for run in runs {
        let waiting = state.count_events(&run.id, KeepState::Waiting.name())?;
        let parked = state.count_events(&run.id, KeepState::Parked.name())?;
        let position = run.cursor.as_ref().map_or("not started".to_string(), |c| format!("up to {}", c.timestamp));
        let share = run
            .total
            .filter(|t| *t > 0)
            .map_or(String::new(), |t| format!(" ({:.0}% of {t})", 100.0 * run.read as f64 / t as f64));
        say!("{}", run.source);
        let project = Target::label(&run.api_key);
        if run.from.is_empty() {
            say!("  into {} (project {project}), the whole export", run.destination);
        } else {
            say!("  into {} (project {project}), {} to {}", run.destination, run.from, run.to);
        }
        say!(
            "  {}: {position}; {} read{share}, {} delivered, {} rejected, {waiting} waiting, {parked} parked",
            if run.done { "complete" } else { "in progress" },
            run.read,
            run.delivered,
            run.rejected
        );
    }
    Ok(Exit::Done)
}

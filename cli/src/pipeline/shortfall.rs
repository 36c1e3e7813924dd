//! A run that read fewer rows than its source counted for its range is not complete: the
//! windows that hold more rows than were read of them are found, and left for the next
//! run of the same command to read again.

use migrator3000::timestamp;

use super::error::PipelineError;
use crate::shared::retry::RetryPolicy;
use crate::sources::{Source, Unread};
use crate::store::runs::Run;
use crate::store::state_file::StateFile;

/// What a run left unread: the windows, each with the rows the source holds there and
/// the rows read of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub windows: Vec<Unread>,
}

impl Shortfall {
    /// The rows the source holds and no run read.
    pub fn missing(&self) -> u64 {
        self.windows.iter().map(|w| w.counted.saturating_sub(w.read)).sum()
    }

    /// The windows in words, e.g. `2021-06-01T00:00:00.000Z to 2021-06-02T00:00:00.000Z
    /// (500 there, 100 read)`, the first few of them.
    pub fn windows_in_words(&self) -> String {
        let mut words: Vec<String> = self
            .windows
            .iter()
            .take(5)
            .map(|w| {
                format!(
                    "{} to {} ({} there, {} read)",
                    timestamp::format(w.from),
                    timestamp::format(w.to),
                    w.counted,
                    w.read
                )
            })
            .collect();
        if self.windows.len() > 5 {
            words.push(format!("and {} more windows", self.windows.len() - 5));
        }
        words.join(", ")
    }
}

/// After run `id` read its whole range: `None` when it read every row the source counted
/// for it (or the source holds no more than was read now: rows merged or deleted since).
/// Otherwise the windows it left unread, each made a run of its own to be read again (the
/// run itself, from its start, when the window is its whole range); the run is done
/// with the rest.
pub fn check(
    state: &mut StateFile,
    source: &mut dyn Source,
    id: &str,
    retry: RetryPolicy,
) -> Result<Option<Shortfall>, PipelineError> {
    let Some(run) = state.run(id)? else { return Ok(None) };
    let read = run.read + run.duplicates;
    if run.total.is_none_or(|total| read >= total) {
        return Ok(None);
    }
    let own = (timestamp::parse_iso(&run.from), timestamp::parse_iso(&run.to));
    let mut windows = retry.read(|| source.unread())?;
    if windows.is_empty() {
        // Read in an earlier process (this one resumed after them): the range as a whole.
        let (Some(from), Some(to)) = own else { return Ok(None) };
        match retry.read(|| source.count(from, to))? {
            Some(counted) if counted > read => windows.push(Unread { from, to, counted, read }),
            _ => return Ok(None),
        }
    }
    let mut again = false;
    for window in &windows {
        if own == (Some(window.from), Some(window.to)) {
            state.reopen(&run)?;
            again = true;
            continue;
        }
        let (from, to) = (timestamp::format(window.from), timestamp::format(window.to));
        state.reopen(&Run {
            id: format!("{}, from {from} to {to}", run.migration),
            from,
            to,
            cursor: None,
            total: Some(window.counted),
            read: 0,
            delivered: 0,
            rejected: 0,
            live: 0,
            duplicates: 0,
            done: false,
            ..run.clone()
        })?;
    }
    if !again {
        state.finish(id)?;
    }
    Ok(Some(Shortfall { windows }))
}

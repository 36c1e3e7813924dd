//! A dry run: the whole range read and transformed, nothing sent, nothing stored.

use super::batches::batches_of;
use super::error::PipelineError;
use super::page_loop::Ended;
use super::run_options::Options;
use crate::shared::reporter::say;
use crate::sources::Source;
use crate::store::settle::Settled;

/// Reads and transforms the whole range, sends and stores nothing; incomplete when the
/// source could not account for some of what it read.
pub fn dry_run(source: &mut dyn Source, options: &Options) -> Result<Ended, PipelineError> {
    let mut cursor = None;
    let mut settled = Settled::default();
    let mut events = 0usize;
    let mut requests = 0usize;
    loop {
        let page = source.next_page(cursor.as_ref(), options.page_size)?;
        if page.next.is_none() {
            break;
        }
        settled.read += page.skipped.len() as u64;
        settled.rejected.extend(page.skipped.into_iter().map(|why| (None, None, why)));
        let batches = batches_of(&page.events, options, &mut settled);
        events += batches.iter().map(|b| b.uuids.len()).sum::<usize>();
        requests += batches.len();
        cursor = page.next;
    }
    say!(
        "Dry run: {} events read; {events} would be sent in {requests} requests, {} would be rejected. Nothing was sent.",
        settled.read,
        settled.rejected.len()
    );
    for (uuid, event, reason) in settled.rejected.iter().take(10) {
        match uuid {
            None => say!("  would reject: {reason}"),
            Some(uuid) => say!("  would reject {:?} (uuid {uuid}): {reason}", event.clone().unwrap_or_default()),
        }
    }
    for remark in source.remarks() {
        say!("{remark}");
    }
    if let Some(why) = source.unaccounted() {
        say!("The migration would not be complete: {why}.");
        return Ok(Ended::Unaccounted(why));
    }
    Ok(Ended::Complete)
}

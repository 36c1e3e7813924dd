//! `verify --resend`: exactly the missing events read again from the source (a PostHog:
//! the days they belong to; an Amplitude import: its export; files: the files), transformed and batched
//! by the core as in a migration, and sent with their own uuids as
//! `historical_migration` batches through the migration's delivery.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use serde_json::Value;

use crate::pipeline::batches::batches_of;
use crate::pipeline::error::PipelineError;
use crate::pipeline::run_options::Options;
use crate::sink::delivery::{self, SentNow};
use crate::sources::{Page, Source};
use crate::store::runs::Cursor;
use crate::store::settle::Settled;

/// Opens a PostHog source.
pub type OpenDay<'a> = Box<dyn FnMut() -> Result<Box<dyn Source>, PipelineError> + 'a>;

/// Where the missing events are read again.
pub enum Reread<'a> {
    /// A PostHog, read one day at a time.
    Posthog(OpenDay<'a>),
    /// A source read whole: an Amplitude export, or files of events.
    Whole(Box<dyn Source + 'a>),
}

pub struct Resent {
    pub sent: SentNow,
    /// Missing events found at the source and handed to the destination.
    pub found: u64,
    /// Missing uuids the source no longer holds.
    pub not_found: u64,
}

/// The source's pages, a source that fails for a while waited out.
fn each_page(source: &mut dyn Source, options: &Options, mut take: impl FnMut(Page)) -> Result<(), PipelineError> {
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = options.capture.retry.read(|| source.next_page(cursor.as_ref(), options.page_size))?;
        let Some(next) = page.next.clone() else { return Ok(()) };
        take(page);
        cursor = Some(next);
    }
}

/// The page's events whose uuid is one of `wanted`, taken out of it.
fn wanted_events(page: Page, wanted: &mut HashSet<String>) -> Vec<String> {
    page.events
        .into_iter()
        .filter(|text| {
            let uuid = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|event| migrator3000::event_id::from_source(event.get("uuid")));
            uuid.is_some_and(|u| wanted.remove(&u))
        })
        .collect()
}

pub fn resend(
    missing: &BTreeMap<NaiveDate, Vec<String>>,
    reread: Reread<'_>,
    options: &Options,
) -> Result<Resent, PipelineError> {
    let total: usize = missing.values().map(Vec::len).sum();
    let mut events = Vec::new();
    match reread {
        Reread::Posthog(mut open) => {
            for (day, uuids) in missing.iter().filter(|(_, u)| !u.is_empty()) {
                let mut wanted: HashSet<String> = uuids.iter().cloned().collect();
                let from = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
                let mut source = open()?;
                let to = from + chrono::Duration::days(1);
                options.capture.retry.read(|| source.select(Some(from), Some(to)))?;
                each_page(source.as_mut(), options, |page| events.extend(wanted_events(page, &mut wanted)))?;
            }
        }
        Reread::Whole(mut source) => {
            let mut wanted: HashSet<String> = missing.values().flatten().cloned().collect();
            each_page(source.as_mut(), options, |page| events.extend(wanted_events(page, &mut wanted)))?;
        }
    }
    let found = events.len() as u64;
    let mut settled = Settled::default();
    let batches = batches_of(&events, options, &mut settled);
    let mut sent = delivery::send_now(&options.capture, batches);
    sent.rejected.extend(settled.rejected.into_iter().map(|(uuid, _, why)| (uuid.unwrap_or_default(), why)));
    Ok(Resent { sent, found, not_found: (total as u64).saturating_sub(found) })
}

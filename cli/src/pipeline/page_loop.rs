//! The migration: pages from the source, the core's transform and batches, requests
//! in flight on a few threads, every answer followed by the core's dispatch, and the
//! cursor moved in the state file only when every page before it is settled.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use chrono::Utc;
use migrator3000::batch::Batch;
use migrator3000::delivery::Refusal;
use migrator3000::dispatch::{KeepState, Stop, Summary};

use super::batches::batches_of;
use super::error::PipelineError;
use super::progress::Progress;
use super::run_options::Options;
use crate::shared::reporter::note;
use crate::sink::delivery::{self, Contact, Heard};
use crate::sources::Source;
use crate::store::requests::Kept;
use crate::store::runs::Cursor;
use crate::store::settle::Settled;
use crate::store::state_file::StateFile;

/// How a migration ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Everything read, and every request delivered, rejected or parked.
    Complete,
    /// The destination refused the key or is not capture: nothing after the last
    /// settled page moved.
    Stopped(Refusal),
    /// No request got an answer at all (the cause): nothing after the last settled page
    /// moved.
    Unreachable(String),
}

struct Job {
    page: u64,
    batch: Batch,
}

struct Done {
    page: u64,
    summary: Summary,
    contact: Contact,
}

#[derive(Default)]
struct Pending {
    left: usize,
    settled: Settled,
    cursor: Option<Cursor>,
    stopped: Option<Refusal>,
}

fn settle_summary(summary: Summary, settled: &mut Settled, now_ms: i64, retry_scale: f64) {
    settled.delivered += summary.delivered as u64;
    settled.rejected.extend(summary.rejected.into_iter().map(|r| (r.uuid, r.event_name, r.reason.to_string())));
    for keep in summary.keep {
        let wait_ms = (keep.delay_seconds as f64 * 1000.0 * retry_scale) as i64;
        settled.keep.push((keep.batch, keep.attempt, keep.state.name().to_string(), now_ms + wait_ms, keep.reason));
    }
}

/// Reads the run's range from `source` page by page and sends it to the destination;
/// resumable at any moment.
pub fn run_pages(
    state: &mut StateFile,
    source: &mut dyn Source,
    options: &Arc<Options>,
    progress: &Progress,
) -> Result<Ended, PipelineError> {
    let mut cursor = state.run(&options.run)?.and_then(|r| r.cursor);
    let bucket = Arc::new(Mutex::new(None));
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(options.concurrency * 2);
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let mut heard = Heard::default();
    let workers: Vec<_> = (0..options.concurrency.max(1))
        .map(|_| {
            let (jobs, done, options, bucket) = (jobs_rx.clone(), done_tx.clone(), options.clone(), bucket.clone());
            let answered = heard.answered.clone();
            thread::spawn(move || {
                let agent = delivery::agent();
                loop {
                    let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(Job { page, batch }) = job else { break };
                    let (summary, contact) = delivery::deliver(&options.capture, &agent, &bucket, &answered, batch, 1);
                    if done.send(Done { page, summary, contact }).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    drop(done_tx);

    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let (mut next_page, mut next_commit) = (0u64, 0u64);
    let mut exhausted = false;
    let mut stopped: Option<Ended> = None;
    let mut failure: Option<PipelineError> = None;
    let max_pending = (options.concurrency * 4).max(4) as u64;
    loop {
        // What came back meanwhile, then the pages whose requests all came back, in order.
        while let Ok(done) = done_rx.try_recv() {
            if let Some(cause) = took(&mut pending, done, &mut heard, options.capture.retry.scale) {
                stopped.get_or_insert(Ended::Unreachable(cause));
            }
        }
        while pending.get(&next_commit).is_some_and(|p| p.left == 0) {
            let page = pending.remove(&next_commit).unwrap_or_default();
            if let Some(refusal) = page.stopped {
                stopped.get_or_insert(Ended::Stopped(refusal));
            }
            if stopped.is_some() {
                // Nothing after a refused request moves: the next run reads it again.
                break;
            }
            state.settle(&options.run, &page.settled, page.cursor.as_ref())?;
            progress.settled(&page.settled, page.cursor.as_ref(), page.cursor.as_ref().and_then(|c| source.share(c)));
            next_commit += 1;
        }
        let reading = !exhausted && stopped.is_none() && failure.is_none();
        if reading && next_page - next_commit < max_pending {
            let read = || source.next_page(cursor.as_ref(), options.page_size);
            let page = match options.capture.retry.read(read) {
                Ok(page) => page,
                Err(gave_up) => {
                    failure = Some(gave_up.into());
                    continue;
                }
            };
            for line in &page.notes {
                note!("{line}");
            }
            if page.next.is_none() {
                exhausted = true;
                continue;
            }
            let mut track = Pending { cursor: page.next.clone(), ..Pending::default() };
            track.settled.duplicates = page.duplicates;
            track.settled.read += page.skipped.len() as u64;
            track.settled.rejected.extend(page.skipped.into_iter().map(|why| (None, None, why)));
            track.settled.ledger = page.ledger;
            track.settled.files = page.files;
            let batches = batches_of(&page.events, options, &mut track.settled);
            track.left = batches.len();
            cursor = page.next;
            pending.insert(next_page, track);
            for batch in batches {
                jobs_tx.send(Job { page: next_page, batch }).map_err(|_| PipelineError::SendersStopped)?;
            }
            next_page += 1;
            continue;
        }
        if pending.values().all(|p| p.left == 0) && (pending.is_empty() || stopped.is_some()) {
            break;
        }
        let Ok(done) = done_rx.recv() else { break };
        if let Some(cause) = took(&mut pending, done, &mut heard, options.capture.retry.scale) {
            stopped.get_or_insert(Ended::Unreachable(cause));
        }
    }
    drop(jobs_tx);
    for worker in workers {
        let _ = worker.join();
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    if let Some(ended) = stopped {
        return Ok(ended);
    }
    match resend_waiting(state, options, progress)? {
        Ended::Complete => {
            state.finish(&options.run)?;
            Ok(Ended::Complete)
        }
        stopped => Ok(stopped),
    }
}

/// A request of a page came back; the cause, when the destination is out of reach.
fn took(
    pending: &mut BTreeMap<u64, Pending>,
    Done { page, summary, contact }: Done,
    heard: &mut Heard,
    retry_scale: f64,
) -> Option<String> {
    let unreachable = heard.took(&contact, &summary);
    if let Some(track) = pending.get_mut(&page) {
        track.left -= 1;
        if let Some(Stop::Refused(refusal)) = &summary.stop {
            track.stopped.get_or_insert(refusal.clone());
        }
        settle_summary(summary, &mut track.settled, Utc::now().timestamp_millis(), retry_scale);
    }
    unreachable
}

/// Sends the run's waiting requests again as they come due, until none waits (each
/// ends delivered, rejected, or parked after its attempts).
pub fn resend_waiting(state: &mut StateFile, options: &Options, progress: &Progress) -> Result<Ended, PipelineError> {
    let agent = delivery::agent();
    let bucket = Mutex::new(None);
    let mut heard = Heard::default();
    loop {
        let waiting: Vec<Kept> = state.kept(Some(&options.run), KeepState::Waiting.name())?;
        let Some(kept) = waiting.into_iter().next() else { return Ok(Ended::Complete) };
        let wait_ms = kept.due_at - Utc::now().timestamp_millis();
        if wait_ms > 0 {
            note!("{} events wait to be sent again, in {} s", kept.batch.uuids.len(), (wait_ms + 999) / 1000);
            thread::sleep(Duration::from_millis(wait_ms as u64));
        }
        let (summary, contact) =
            delivery::deliver(&options.capture, &agent, &bucket, &heard.answered, kept.batch.clone(), kept.attempt);
        if let Some(cause) = heard.took(&contact, &summary) {
            return Ok(Ended::Unreachable(cause));
        }
        let stop = summary.stop.clone();
        let mut settled = Settled::default();
        settle_summary(summary, &mut settled, Utc::now().timestamp_millis(), options.capture.retry.scale);
        if let Some(Stop::Refused(refusal)) = stop {
            return Ok(Ended::Stopped(refusal));
        }
        state.resent(&kept, &settled)?;
        progress.resent(kept.batch.uuids.len() as u64, &settled);
    }
}

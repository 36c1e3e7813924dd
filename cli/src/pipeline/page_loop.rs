//! The migration: pages from the source (read on a thread of their own), the core's
//! transform and batches, requests in flight on a few threads, every answer followed by
//! the core's dispatch, and the cursor moved in the state file as soon as a page and
//! every page before it are settled; Ctrl-C ends it cleanly.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chrono::Utc;
use migrator3000::batch::Batch;
use migrator3000::delivery::Refusal;
use migrator3000::dispatch::{KeepState, Stop, Summary};

use super::batches::batches_under;
use super::error::PipelineError;
use super::progress::Progress;
use super::run_options::Options;
use super::shortfall::{self, Shortfall};
use crate::shared::interrupt;
use crate::shared::reporter::note;
use crate::shared::retry::GaveUp;
use crate::sink::delivery::{self, Contact, Heard, Shared};
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
    /// Everything read was delivered, rejected or parked, but the source holds more rows
    /// than were read: those windows are left for the next run.
    Short(Shortfall),
    /// Everything read was settled, but the source could not account for some of what
    /// it read (what and why: an import's lines not read): the run stays open, and its
    /// next run reads the source again from the start.
    Unaccounted(String),
    /// Stopped by Ctrl-C: every page whose requests were all answered is recorded.
    Interrupted,
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
    /// How far through the source the cursor is, as the source measures it.
    share: Option<f64>,
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

/// How long the requests in flight get to be answered after Ctrl-C.
const GRACE: Duration = Duration::from_secs(10);

/// What comes to the loop: a page read (from the reader), the end of the source or its
/// failure, or a request's outcome (from a sender).
enum Message {
    Page(Box<Pending>, Vec<Batch>),
    End,
    Failed(GaveUp),
    Done(Done),
}

/// After Ctrl-C, senders take only the requests of pages already begun (a page sent in
/// part is finished, so that its answered requests are recorded); the rest are not sent.
#[derive(Default)]
struct Frontier {
    stopping: bool,
    /// The last page a sender began (pages are begun in order).
    begun: Option<u64>,
}

/// Reads pages from `cursor` on, one for each permit, each turned into its batches.
fn read_pages(
    source: &mut dyn Source,
    options: &Options,
    mut cursor: Option<Cursor>,
    permits: mpsc::Receiver<()>,
    out: mpsc::Sender<Message>,
    shared: Arc<Shared>,
) {
    while permits.recv().is_ok() {
        let page = match options.capture.retry.read(|| source.next_page(cursor.as_ref(), options.page_size)) {
            Ok(page) => page,
            Err(gave_up) => {
                let _ = out.send(Message::Failed(gave_up));
                return;
            }
        };
        for line in &page.notes {
            note!("{line}");
        }
        if page.next.is_none() {
            let _ = out.send(Message::End);
            return;
        }
        let share = page.next.as_ref().and_then(|c| source.share(c));
        let mut track = Pending { cursor: page.next.clone(), share, ..Pending::default() };
        track.settled.duplicates = page.duplicates;
        track.settled.read += page.skipped.len() as u64;
        track.settled.rejected.extend(page.skipped.into_iter().map(|why| (None, None, why)));
        track.settled.ledger = page.ledger;
        track.settled.mixpanel = page.mixpanel;
        track.settled.files = page.files;
        // Made under the size the destination showed it takes.
        let batches = batches_under(&page.events, options, shared.limits(&options.capture), &mut track.settled);
        track.left = batches.len();
        cursor = page.next;
        if out.send(Message::Page(Box::new(track), batches)).is_err() {
            return;
        }
    }
}

/// Reads the run's range from `source` page by page and sends it to the destination;
/// resumable at any moment. A page is recorded (what it settled, and the cursor after
/// it) as soon as its last request is answered and every page before it is recorded:
/// pages are read on a thread of their own, so no read holds that back. Ctrl-C stops
/// the reading; the pages already begun get up to `GRACE` to be answered.
pub fn run_pages(
    state: &mut StateFile,
    source: &mut dyn Source,
    options: &Arc<Options>,
    progress: &Progress,
) -> Result<Ended, PipelineError> {
    interrupt::watch();
    let cursor = state.run(&options.run)?.and_then(|r| r.cursor);
    let bucket = Arc::new(Mutex::new(None));
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let (out_tx, out_rx) = mpsc::channel::<Message>();
    let frontier = Arc::new(Mutex::new(Frontier::default()));
    let mut heard = Heard::new(&options.capture);
    let workers: Vec<_> = (0..options.concurrency.max(1))
        .map(|_| {
            let (jobs, out, options, bucket) = (jobs_rx.clone(), out_tx.clone(), options.clone(), bucket.clone());
            let (shared, frontier) = (heard.shared.clone(), frontier.clone());
            thread::spawn(move || {
                let agent = delivery::agent();
                loop {
                    let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(Job { page, batch }) = job else { break };
                    {
                        let mut frontier = frontier.lock().unwrap_or_else(|e| e.into_inner());
                        if frontier.stopping && frontier.begun.is_none_or(|begun| page > begun) {
                            continue;
                        }
                        frontier.begun = frontier.begun.max(Some(page));
                    }
                    let (summary, contact) = delivery::deliver(&options.capture, &agent, &bucket, &shared, batch, 1);
                    if out.send(Message::Done(Done { page, summary, contact })).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();

    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let (mut next_page, mut next_commit) = (0u64, 0u64);
    let mut stopped: Option<Ended> = None;
    let mut failure: Option<PipelineError> = None;
    // After Ctrl-C: until when the requests in flight are waited for, and the last page
    // whose requests were begun.
    let mut interrupted: Option<(Instant, Option<u64>)> = None;
    let max_pending = (options.concurrency * 4).max(4);
    let looped = thread::scope(|scope| -> Result<(), PipelineError> {
        let (permits_tx, permits_rx) = mpsc::channel::<()>();
        for _ in 0..max_pending {
            let _ = permits_tx.send(());
        }
        let mut permits = Some(permits_tx);
        let reader_out = out_tx.clone();
        let options_ref: &Options = options;
        // Lent to the reader for the loop only: the shortfall and the source's own account
        // are asked once it has ended.
        let reader: &mut dyn Source = &mut *source;
        let shared = heard.shared.clone();
        scope.spawn(move || read_pages(reader, options_ref, cursor, permits_rx, reader_out, shared));
        let mut reading = true;
        loop {
            if interrupted.is_none() && interrupt::asked() {
                let begun = {
                    let mut frontier = frontier.lock().unwrap_or_else(|e| e.into_inner());
                    frontier.stopping = true;
                    frontier.begun
                };
                note!(
                    "Ctrl-C: no new page is read; the requests in flight get up to {} s to be answered, then what is \
                     settled is recorded (Ctrl-C again stops at once).",
                    GRACE.as_secs()
                );
                interrupted = Some((Instant::now() + GRACE, begun));
            }
            if stopped.is_some() || failure.is_some() || interrupted.is_some() {
                // No page more is read: the reader ends after the page it is reading.
                permits = None;
            }
            // The pages whose requests all came back, in order.
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
                progress.settled(&page.settled, page.cursor.as_ref(), page.share);
                next_commit += 1;
                if let Some(permits) = &permits {
                    let _ = permits.send(());
                }
            }
            let in_flight = pending.values().any(|p| p.left > 0);
            if let Some((until, begun)) = interrupted {
                let waited_for = |page: &u64| begun.is_some_and(|begun| *page <= begun);
                let answered = pending.iter().filter(|(page, _)| waited_for(page)).all(|(_, p)| p.left == 0);
                if answered || Instant::now() >= until {
                    return Ok(());
                }
            } else if !in_flight && (stopped.is_some() || failure.is_some() || (!reading && pending.is_empty())) {
                return Ok(());
            }
            let message = match out_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(message) => message,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            };
            match message {
                Message::Page(track, batches) => {
                    if stopped.is_some() || failure.is_some() || interrupted.is_some() {
                        // Read after the run stopped: not sent, its cursor not recorded.
                        continue;
                    }
                    pending.insert(next_page, *track);
                    for batch in batches {
                        jobs_tx.send(Job { page: next_page, batch }).map_err(|_| PipelineError::SendersStopped)?;
                    }
                    next_page += 1;
                }
                Message::End => reading = false,
                Message::Failed(gave_up) => {
                    reading = false;
                    // A read given up because of Ctrl-C is the interruption, not a failure.
                    if interrupted.is_none() && !interrupt::asked() {
                        failure = Some(gave_up.into());
                    }
                }
                Message::Done(done) => {
                    if let Some(cause) = took(&mut pending, done, &mut heard, options.capture.retry.scale) {
                        stopped.get_or_insert(Ended::Unreachable(cause));
                    }
                }
            }
        }
    });
    drop(jobs_tx);
    looped?;
    if interrupted.is_some() {
        // Senders still waiting for an answer are left: their pages are not recorded.
        return Ok(Ended::Interrupted);
    }
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
            if let Some(short) = shortfall::check(state, source, &options.run, options.capture.retry)? {
                return Ok(Ended::Short(short));
            }
            if let Some(why) = source.unaccounted() {
                state.rewind(&options.run)?;
                return Ok(Ended::Unaccounted(why));
            }
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
    let mut heard = Heard::new(&options.capture);
    interrupt::watch();
    loop {
        if interrupt::asked() {
            return Ok(Ended::Interrupted);
        }
        let waiting: Vec<Kept> = state.kept(Some(&options.run), KeepState::Waiting.name())?;
        let Some(kept) = waiting.into_iter().next() else { return Ok(Ended::Complete) };
        let wait_ms = kept.due_at - Utc::now().timestamp_millis();
        if wait_ms > 0 {
            note!("{} events wait to be sent again, in {} s", kept.batch.uuids.len(), (wait_ms + 999) / 1000);
            if interrupt::sleep(Duration::from_millis(wait_ms as u64)) {
                return Ok(Ended::Interrupted);
            }
        }
        let (summary, contact) =
            delivery::deliver(&options.capture, &agent, &bucket, &heard.shared, kept.batch.clone(), kept.attempt);
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

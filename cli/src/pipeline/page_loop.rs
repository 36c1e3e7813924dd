//! The migration: pages from the source, the core's transform and batches, requests
//! in flight on a few threads, every answer followed by the core's dispatch, and the
//! cursor moved in the state file only when every page before it is settled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use chrono::{DateTime, Utc};
use migrator3000::batch::{Batch, BatchLimits, Batcher};
use migrator3000::delivery::Refusal;
use migrator3000::dispatch::{Dispatch, KeepState, Stop, Summary};
use migrator3000::pace::{self, Bucket};
use migrator3000::scan;
use migrator3000::transform::{self, SourceEvent};

use crate::progress::Progress;
use crate::send;
use crate::source::{Cursor, Source, SourceError};
use crate::state::{Kept, Settled, State};

#[derive(Clone)]
pub struct Options {
    pub run: String,
    pub api_key: String,
    pub json_url: String,
    pub gzip_url: String,
    pub limits: BatchLimits,
    pub gzip: bool,
    pub events_to_ignore: BTreeSet<String>,
    pub events_per_minute: Option<u64>,
    pub page_size: usize,
    pub concurrency: usize,
    /// Multiplies every wait before a resend (tests make them short).
    pub retry_scale: f64,
    /// Events after this go without `historical_migration`: PostHog asks that migrated
    /// events be older than 48 hours.
    pub young_after: DateTime<Utc>,
    /// Record the (day, uuid) of every event handed over, for `verify --from amplitude`.
    pub record_days: bool,
}

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

/// Tries of a request without any answer, a second more apart each, while no request
/// ever got one, before the destination is taken to be out of reach (a wrong host, DNS,
/// a firewall) rather than down a while.
const FIRST_CONTACT_TRIES: u32 = 3;

/// Source reads that fail for a while (429, 5xx) are tried this often before giving up
/// (a rerun resumes).
const SOURCE_ATTEMPTS: u32 = 8;

struct Job {
    page: u64,
    batch: Batch,
}

struct Done {
    page: u64,
    summary: Summary,
    contact: Contact,
}

/// Whether the destination answered a dispatch's requests at all.
#[derive(Debug, Default)]
struct Contact {
    answered: bool,
    /// Why the last request without an answer got none.
    cause: Option<String>,
}

/// What the destination's answers show so far: whether it answered ever (shared by the
/// senders), and the reasons already said.
#[derive(Default)]
struct Heard {
    answered: Arc<AtomicBool>,
    said: BTreeSet<String>,
}

impl Heard {
    /// Takes a dispatch's contact and what it kept; says each new reason for keeping
    /// at once; the cause when the destination is out of reach.
    fn took(&mut self, contact: &Contact, summary: &Summary, progress: &Progress) -> Option<String> {
        if !contact.answered && !self.answered.load(Ordering::SeqCst) {
            return Some(contact.cause.clone().unwrap_or_default());
        }
        for keep in summary.keep.iter().filter(|k| k.state == KeepState::Waiting) {
            if self.said.insert(keep.reason.clone()) {
                progress.note(&format!(
                    "The destination did not take {} events ({}): they are kept and sent again with back-off.",
                    keep.batch.uuids.len(),
                    keep.reason
                ));
            }
        }
        None
    }
}

#[derive(Default)]
struct Pending {
    left: usize,
    settled: Settled,
    cursor: Option<Cursor>,
    stopped: Option<Refusal>,
}

/// Transforms a page's events into batches (those younger than `young_after` in batches
/// of their own, without `historical_migration`); rejections, ignored and young events
/// are counted.
pub fn batches_of(events: &[String], options: &Options, settled: &mut Settled) -> Vec<Batch> {
    let now = Utc::now();
    let mut batcher = Batcher::new(&options.api_key, true, options.limits, options.gzip);
    let mut young = Batcher::new(&options.api_key, false, options.limits, options.gzip);
    let mut batches = Vec::new();
    for text in events {
        settled.read += 1;
        // Read once, its properties with it: its fields, or None when it is JSON but not an
        // object.
        let fields = match scan::event(text) {
            Ok(fields) => fields,
            Err(at) => {
                let why = format!("the source gave an event that is not JSON (at byte {} of {})", at.at, text.len());
                settled.rejected.push((None, None, why));
                continue;
            }
        };
        let event = SourceEvent::from_scan(fields);
        if event.name.as_ref().is_some_and(|name| options.events_to_ignore.contains(name)) {
            continue;
        }
        match transform::transform_raw(&event, now) {
            Ok(prepared) => {
                if options.record_days {
                    settled.converted.push((prepared.at.date_naive().to_string(), prepared.uuid.clone()));
                }
                if prepared.at > options.young_after {
                    settled.live += 1;
                    batches.extend(young.push(&prepared));
                } else {
                    batches.extend(batcher.push(&prepared));
                }
            }
            Err(r) => settled.rejected.push((r.uuid, r.event_name, r.reason.to_string())),
        }
    }
    batches.extend(batcher.flush());
    batches.extend(young.flush());
    batches
}

fn settle_summary(summary: Summary, settled: &mut Settled, now_ms: i64, retry_scale: f64) {
    settled.delivered += summary.delivered as u64;
    settled.rejected.extend(summary.rejected.into_iter().map(|r| (r.uuid, r.event_name, r.reason.to_string())));
    for keep in summary.keep {
        let wait_ms = (keep.delay_seconds as f64 * 1000.0 * retry_scale) as i64;
        settled.keep.push((keep.batch, keep.attempt, keep.state.name().to_string(), now_ms + wait_ms, keep.reason));
    }
}

/// Sends one batch (a resend's `attempt`), following every answer to its end.
fn dispatch(
    options: &Options,
    agent: &ureq::Agent,
    bucket: &Mutex<Option<Bucket>>,
    answered: &AtomicBool,
    batch: Batch,
    attempt: u32,
) -> (Summary, Contact) {
    if let Some(rate) = options.events_per_minute {
        let count = batch.uuids.len() as u64;
        loop {
            let taken = {
                let mut stored = bucket.lock().unwrap_or_else(|e| e.into_inner());
                let taken = pace::take(*stored, rate, count, Utc::now().timestamp_millis());
                *stored = Some(taken.bucket);
                taken
            };
            if taken.allowed {
                break;
            }
            thread::sleep(Duration::from_secs(taken.wait_seconds.max(1)));
        }
    }
    let mut dispatch = Dispatch::new(vec![batch], attempt, true, options.limits, options.gzip, None);
    let mut contact = Contact::default();
    while let Some(request) = dispatch.next_request() {
        let url = if request.body.is_gzip() { &options.gzip_url } else { &options.json_url };
        let mut reply = send::post(agent, url, request);
        let mut tries = 1;
        while reply.status == 0 && tries < FIRST_CONTACT_TRIES && !answered.load(Ordering::SeqCst) {
            // Not in contact yet: tried again at once, to tell a blip from a wrong host.
            thread::sleep(Duration::from_secs_f64(tries as f64 * options.retry_scale.min(1.0)));
            reply = send::post(agent, url, request);
            tries += 1;
        }
        if reply.status == 0 {
            contact.cause = Some(reply.text.clone());
        } else {
            contact.answered = true;
            answered.store(true, Ordering::SeqCst);
        }
        dispatch.answer(reply.status, reply.retry_after, &reply.text, reply.error.as_deref());
    }
    (dispatch.finish(Utc::now()), contact)
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build()
}

/// Asks the source (`ask`), waiting out a source that fails for a while; `note` says
/// each wait.
pub fn patiently<T>(
    mut ask: impl FnMut() -> Result<T, SourceError>,
    retry_scale: f64,
    note: impl Fn(&str),
) -> Result<T, String> {
    let mut attempt = 0;
    loop {
        match ask() {
            Ok(answer) => return Ok(answer),
            Err(SourceError::Fatal(message)) => return Err(message),
            Err(SourceError::Transient { message, retry_after_seconds }) => {
                attempt += 1;
                if attempt >= SOURCE_ATTEMPTS {
                    return Err(format!("{message}; tried {attempt} times. Run the same command again to resume."));
                }
                let wait = retry_after_seconds.unwrap_or(1 << attempt.min(6)).min(600) as f64 * retry_scale;
                note(&format!("{message}: asking again in {wait:.0} s"));
                thread::sleep(Duration::from_secs_f64(wait));
            }
        }
    }
}

/// Copies the run's range from `source` to the destination; resumable at any moment.
pub fn migrate(
    state: &mut State,
    source: &mut dyn Source,
    options: &Arc<Options>,
    progress: &Progress,
) -> Result<Ended, String> {
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
                let agent = agent();
                loop {
                    let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(Job { page, batch }) = job else { break };
                    let (summary, contact) = dispatch(&options, &agent, &bucket, &answered, batch, 1);
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
    let mut failure: Option<String> = None;
    let max_pending = (options.concurrency * 4).max(4) as u64;
    loop {
        // What came back meanwhile, then the pages whose requests all came back, in order.
        while let Ok(done) = done_rx.try_recv() {
            if let Some(cause) = took(&mut pending, done, &mut heard, options.retry_scale, progress) {
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
            let page = match patiently(read, options.retry_scale, |note| progress.note(note)) {
                Ok(page) => page,
                Err(message) => {
                    failure = Some(message);
                    continue;
                }
            };
            for note in &page.notes {
                progress.note(note);
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
            let batches = batches_of(&page.events, options, &mut track.settled);
            track.left = batches.len();
            cursor = page.next;
            pending.insert(next_page, track);
            for batch in batches {
                jobs_tx.send(Job { page: next_page, batch }).map_err(|_| "the senders stopped".to_string())?;
            }
            next_page += 1;
            continue;
        }
        if pending.values().all(|p| p.left == 0) && (pending.is_empty() || stopped.is_some()) {
            break;
        }
        let Ok(done) = done_rx.recv() else { break };
        if let Some(cause) = took(&mut pending, done, &mut heard, options.retry_scale, progress) {
            stopped.get_or_insert(Ended::Unreachable(cause));
        }
    }
    drop(jobs_tx);
    for worker in workers {
        let _ = worker.join();
    }
    if let Some(message) = failure {
        return Err(message);
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
    progress: &Progress,
) -> Option<String> {
    let unreachable = heard.took(&contact, &summary, progress);
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
pub fn resend_waiting(state: &mut State, options: &Options, progress: &Progress) -> Result<Ended, String> {
    let agent = agent();
    let bucket = Mutex::new(None);
    let mut heard = Heard::default();
    loop {
        let waiting: Vec<Kept> = state.kept(Some(&options.run), KeepState::Waiting.name())?;
        let Some(kept) = waiting.into_iter().next() else { return Ok(Ended::Complete) };
        let wait_ms = kept.due_at - Utc::now().timestamp_millis();
        if wait_ms > 0 {
            progress.note(&format!(
                "{} events wait to be sent again, in {} s",
                kept.batch.uuids.len(),
                (wait_ms + 999) / 1000
            ));
            thread::sleep(Duration::from_millis(wait_ms as u64));
        }
        let (summary, contact) = dispatch(options, &agent, &bucket, &heard.answered, kept.batch.clone(), kept.attempt);
        if let Some(cause) = heard.took(&contact, &summary, progress) {
            return Ok(Ended::Unreachable(cause));
        }
        let stop = summary.stop.clone();
        let mut settled = Settled::default();
        settle_summary(summary, &mut settled, Utc::now().timestamp_millis(), options.retry_scale);
        if let Some(Stop::Refused(refusal)) = stop {
            return Ok(Ended::Stopped(refusal));
        }
        state.resent(&kept, &settled)?;
        progress.resent(kept.batch.uuids.len() as u64, &settled);
    }
}

/// What sending outside a run came to (`verify --resend`).
#[derive(Debug, Default)]
pub struct SentNow {
    pub delivered: u64,
    /// (uuid, reason) of events the destination refused.
    pub rejected: Vec<(String, String)>,
    /// Events still refused for a while after all their attempts, with the last reason.
    pub undelivered: Vec<(usize, String)>,
    /// The destination refused the key or the host (in the command's words): nothing
    /// more was sent.
    pub stopped: Option<String>,
}

/// Sends batches with the run's delivery, outside any run: every answer followed by the
/// core's dispatch, a request the destination refuses for a while sent again after its
/// wait until its attempts run out. Nothing is kept in the state file.
pub fn send_now(options: &Options, batches: Vec<Batch>) -> SentNow {
    let agent = agent();
    let bucket = Mutex::new(None);
    let answered = AtomicBool::new(false);
    let mut sent = SentNow::default();
    let mut queue: std::collections::VecDeque<(Batch, u32, u64)> = batches.into_iter().map(|b| (b, 1, 0)).collect();
    while let Some((batch, attempt, delay_seconds)) = queue.pop_front() {
        if sent.stopped.is_some() {
            break;
        }
        thread::sleep(Duration::from_secs_f64(delay_seconds as f64 * options.retry_scale));
        let (summary, _) = dispatch(options, &agent, &bucket, &answered, batch, attempt);
        sent.delivered += summary.delivered as u64;
        sent.rejected.extend(summary.rejected.into_iter().map(|r| (r.uuid.unwrap_or_default(), r.reason.to_string())));
        sent.stopped = summary.stop.map(|stop| match stop {
            Stop::Refused(refusal) => crate::copy::refusal_words(&refusal),
            Stop::Held(message) => message,
        });
        for keep in summary.keep {
            match keep.state {
                KeepState::Waiting => queue.push_back((keep.batch, keep.attempt, keep.delay_seconds)),
                _ => sent.undelivered.push((keep.batch.uuids.len(), keep.reason)),
            }
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            run: "r".into(),
            api_key: "phc_k".into(),
            json_url: "http://x/batch/".into(),
            gzip_url: "http://x/batch/?compression=gzip-js".into(),
            limits: BatchLimits { max_events: 2, max_bytes: 1_000_000 },
            gzip: false,
            events_to_ignore: ["$feature_flag_called".to_string()].into(),
            events_per_minute: None,
            page_size: 10,
            concurrency: 1,
            retry_scale: 1.0,
            record_days: true,
            young_after: Utc::now() - chrono::Duration::hours(48),
        }
    }

    #[test]
    fn a_page_becomes_batches_with_rejections_and_ignored_events_counted() {
        let events: Vec<String> = vec![
            r#"{"uuid":"00000000-0000-4000-8000-000000000001","event":"a","distinct_id":"d","timestamp":"2021-06-01T00:00:00.000001Z","properties":{}}"#.into(),
            r#"{"uuid":"00000000-0000-4000-8000-000000000002","event":"$feature_flag_called","distinct_id":"d","properties":{}}"#.into(),
            r#"{"uuid":"00000000-0000-4000-8000-000000000003","event":"b","distinct_id":"","properties":{}}"#.into(),
            "{not json".into(),
            r#"{"uuid":"00000000-0000-4000-8000-000000000004","event":"c","distinct_id":"d","timestamp":"2021-06-01T00:00:01Z","properties":{}}"#.into(),
            r#"{"uuid":"00000000-0000-4000-8000-000000000005","event":"d","distinct_id":"d","timestamp":"2021-06-01T00:00:02Z","properties":{}}"#.into(),
        ];
        let mut settled = Settled::default();
        let batches = batches_of(&events, &options(), &mut settled);
        assert_eq!(batches.iter().map(|b| b.uuids.len()).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(settled.read, 6);
        assert_eq!(settled.rejected.len(), 2);
        assert_eq!(
            settled.converted[0],
            ("2021-06-01".to_string(), "00000000-0000-4000-8000-000000000001".to_string())
        );
        assert_eq!(settled.converted.len(), 3);
        let body = migrator3000::delivery::batch_json(&batches[0]).unwrap();
        assert!(body.contains("\"historical_migration\":true"));
        assert!(body.contains("2021-06-01T00:00:00.000001Z"), "{body}");
    }
}

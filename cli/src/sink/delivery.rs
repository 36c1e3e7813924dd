//! A batch delivered to capture: every answer followed by the core's dispatch, the
//! destination's first silence told from a wrong host, the pace of `--events-per-minute`
//! shared by every sender. Nothing is decided here that the core decides.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use chrono::Utc;
use migrator3000::batch::{Batch, BatchLimits};
use migrator3000::dispatch::{Dispatch, KeepState, Stop, Summary};
use migrator3000::pace::{self, Bucket};

use super::capture;
use crate::shared::defaults::FIRST_CONTACT_TRIES;
use crate::shared::reporter::note;
use crate::shared::retry::RetryPolicy;

/// Where and how batches are sent.
#[derive(Clone)]
pub struct Capture {
    pub json_url: String,
    pub gzip_url: String,
    pub limits: BatchLimits,
    pub gzip: bool,
    pub events_per_minute: Option<u64>,
    /// Every wait before a resend follows its scale.
    pub retry: RetryPolicy,
}

/// Whether the destination answered a dispatch's requests at all.
#[derive(Debug, Default)]
pub struct Contact {
    pub answered: bool,
    /// Why the last request without an answer got none.
    pub cause: Option<String>,
}

/// What the destination's answers show so far: whether it answered ever (shared by the
/// senders), and the reasons already said.
#[derive(Default)]
pub struct Heard {
    pub answered: Arc<AtomicBool>,
    said: BTreeSet<String>,
}

impl Heard {
    /// Takes a dispatch's contact and what it kept; says each new reason for keeping
    /// at once; the cause when the destination is out of reach.
    pub fn took(&mut self, contact: &Contact, summary: &Summary) -> Option<String> {
        if !contact.answered && !self.answered.load(Ordering::SeqCst) {
            return Some(contact.cause.clone().unwrap_or_default());
        }
        for keep in summary.keep.iter().filter(|k| k.state == KeepState::Waiting) {
            if self.said.insert(keep.reason.clone()) {
                note!(
                    "The destination did not take {} events ({}): they are kept and sent again with back-off.",
                    keep.batch.uuids.len(),
                    keep.reason
                );
            }
        }
        None
    }
}

/// The pace every sender of a run shares.
pub type Pace = Mutex<Option<Bucket>>;

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build()
}

/// Sends one batch (a resend's `attempt`), following every answer to its end.
pub fn deliver(
    capture_to: &Capture,
    agent: &ureq::Agent,
    pace: &Pace,
    answered: &AtomicBool,
    batch: Batch,
    attempt: u32,
) -> (Summary, Contact) {
    if let Some(rate) = capture_to.events_per_minute {
        let count = batch.uuids.len() as u64;
        loop {
            let taken = {
                let mut stored = pace.lock().unwrap_or_else(|e| e.into_inner());
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
    let mut dispatch = Dispatch::new(vec![batch], attempt, true, capture_to.limits, capture_to.gzip, None);
    let mut contact = Contact::default();
    while let Some(request) = dispatch.next_request() {
        let url = if request.body.is_gzip() { &capture_to.gzip_url } else { &capture_to.json_url };
        let mut reply = capture::post(agent, url, request);
        let mut tries = 1;
        while reply.status == 0 && tries < FIRST_CONTACT_TRIES && !answered.load(Ordering::SeqCst) {
            // Not in contact yet: tried again at once, to tell a blip from a wrong host.
            thread::sleep(Duration::from_secs_f64(tries as f64 * capture_to.retry.scale.min(1.0)));
            reply = capture::post(agent, url, request);
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

/// What sending outside a run came to (`verify --resend`).
#[derive(Debug, Default)]
pub struct SentNow {
    pub delivered: u64,
    /// (uuid, reason) of events the destination refused.
    pub rejected: Vec<(String, String)>,
    /// Events still refused for a while after all their attempts, with the last reason.
    pub undelivered: Vec<(usize, String)>,
    /// The destination refused the key or the host, or a setting holds the requests:
    /// nothing more was sent.
    pub stopped: Option<Stop>,
}

/// Sends batches outside any run: every answer followed by the core's dispatch, a
/// request the destination refuses for a while sent again after its wait until its
/// attempts run out. Nothing is kept in the state file.
pub fn send_now(capture_to: &Capture, batches: Vec<Batch>) -> SentNow {
    let agent = agent();
    let pace = Mutex::new(None);
    let answered = AtomicBool::new(false);
    let mut sent = SentNow::default();
    let mut queue: VecDeque<(Batch, u32, u64)> = batches.into_iter().map(|b| (b, 1, 0)).collect();
    while let Some((batch, attempt, delay_seconds)) = queue.pop_front() {
        if sent.stopped.is_some() {
            break;
        }
        thread::sleep(capture_to.retry.wait(delay_seconds as f64));
        let (summary, _) = deliver(capture_to, &agent, &pace, &answered, batch, attempt);
        sent.delivered += summary.delivered as u64;
        sent.rejected.extend(summary.rejected.into_iter().map(|r| (r.uuid.unwrap_or_default(), r.reason.to_string())));
        sent.stopped = summary.stop;
        for keep in summary.keep {
            match keep.state {
                KeepState::Waiting => queue.push_back((keep.batch, keep.attempt, keep.delay_seconds)),
                _ => sent.undelivered.push((keep.batch.uuids.len(), keep.reason)),
            }
        }
    }
    sent
}

//! A batch delivered to capture: every answer followed by the core's dispatch, the
//! destination's first silence told from a wrong host, the pace of `--events-per-minute`
//! shared by every sender, and so is what the destination showed: the largest request
//! it takes (a proxy's 413), and a refusal that halts every sender. Nothing is decided
//! here that the core decides.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use chrono::Utc;
use migrator3000::batch::{Batch, BatchLimits};
use migrator3000::delivery::{self, Answer, Refusal};
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

/// What the senders of a run learn of the destination, shared between them.
pub struct Shared {
    /// It answered a request, ever.
    answered: AtomicBool,
    /// The largest request's JSON it takes.
    fit: AtomicUsize,
    /// It refused what was sent until the user fixes something (why): send nothing more.
    halted: Mutex<Option<Refusal>>,
}

impl Shared {
    pub fn new(capture_to: &Capture) -> Shared {
        Shared {
            answered: AtomicBool::new(false),
            fit: AtomicUsize::new(capture_to.limits.max_bytes),
            halted: Mutex::new(None),
        }
    }

    /// The limits requests are made under: `capture_to`'s, lowered to what the
    /// destination showed it takes.
    pub fn limits(&self, capture_to: &Capture) -> BatchLimits {
        BatchLimits { max_bytes: capture_to.limits.max_bytes.min(self.fit.load(Ordering::SeqCst)), ..capture_to.limits }
    }
}

/// What the destination's answers show so far (shared by the senders), and what was
/// already said.
pub struct Heard {
    pub shared: Arc<Shared>,
    said: BTreeSet<String>,
    /// The limit last said to be the destination's.
    said_fit: Option<usize>,
}

impl Heard {
    pub fn new(capture_to: &Capture) -> Heard {
        Heard { shared: Arc::new(Shared::new(capture_to)), said: BTreeSet::new(), said_fit: None }
    }

    /// Takes a dispatch's contact and what it kept; says each new reason for keeping
    /// at once, and a lower limit of the destination; the cause when the destination is
    /// out of reach.
    pub fn took(&mut self, contact: &Contact, summary: &Summary) -> Option<String> {
        if !contact.answered && !self.shared.answered.load(Ordering::SeqCst) && summary.stop.is_none() {
            return Some(contact.cause.clone().unwrap_or_default());
        }
        // A limit is learned only while requests get through (not when a lone event was
        // refused: that stops the run).
        let learned = summary.too_large.filter(|_| summary.stop.is_none());
        if let Some(seen) = learned.filter(|seen| self.said_fit.is_none_or(|said| seen.max_bytes / 1024 < said / 1024))
        {
            let (json, sent, under) = (seen.json_bytes / 1024, seen.sent_bytes / 1024, seen.max_bytes / 1024);
            if self.said_fit.is_none() {
                note!(
                    "The destination refuses requests of {json} KB ({sent} KB as sent) as too large (HTTP 413), though \
                     capture takes 20 MB a request: a proxy in front of it has a lower limit (nginx's \
                     client_max_body_size is 1 MB by default). Raise that limit, or lower --batch-max-kilobytes; \
                     meanwhile requests go under {under} KB."
                );
            } else {
                note!("Requests of {json} KB are refused as too large too (HTTP 413): requests go under {under} KB.");
            }
            self.said_fit = Some(seen.max_bytes);
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

/// Redirects are not followed: a POST followed through one becomes a GET (its events
/// lost), and the core says where it leads.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).redirects(0).build()
}

/// Sends one batch (a resend's `attempt`), following every answer to its end; what
/// `shared` knows of the destination holds, and what this batch shows of it is added.
pub fn deliver(
    capture_to: &Capture,
    agent: &ureq::Agent,
    pace: &Pace,
    shared: &Shared,
    batch: Batch,
    attempt: u32,
) -> (Summary, Contact) {
    let Shared { answered, fit, halted } = shared;
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
    // Once the destination refused what was sent, the rest is kept unsent, for the same
    // reason (its page does not settle either).
    let refused = halted.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(refusal) = refused {
        let held = Dispatch::new(vec![batch], attempt, true, capture_to.limits, capture_to.gzip, Some(String::new()));
        let summary = Summary { stop: Some(Stop::Refused(refusal)), ..held.finish(Utc::now()) };
        return (summary, Contact::default());
    }
    let limits = shared.limits(capture_to);
    let mut dispatch = Dispatch::new(vec![batch], attempt, true, limits, capture_to.gzip, None);
    let mut contact = Contact::default();
    loop {
        // What another sender learned of the destination's limit holds here too.
        dispatch.lower_max_bytes(fit.load(Ordering::SeqCst));
        let Some(request) = dispatch.next_request() else { break };
        let url = if request.body.is_gzip() { &capture_to.gzip_url } else { &capture_to.json_url };
        let mut reply = capture::post(agent, url, request);
        let mut tries = 1;
        // An answer that will not change (TLS to plain http) is not asked again.
        let lasting = |reply: &capture::Reply| {
            delivery::classify_reply(reply.status, &reply.text, reply.error.as_deref()) != Answer::Retry
        };
        while reply.status == 0 && tries < FIRST_CONTACT_TRIES && !answered.load(Ordering::SeqCst) && !lasting(&reply) {
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
        if let Some(seen) = dispatch.too_large() {
            fit.fetch_min(seen.max_bytes, Ordering::SeqCst);
        }
    }
    let summary = dispatch.finish(Utc::now());
    if let Some(Stop::Refused(refusal)) = &summary.stop {
        halted.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| refusal.clone());
    }
    (summary, contact)
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
    send_lanes(capture_to, vec![batches])
}

/// `send_now` for several lanes at once, a thread each, sharing what the destination
/// showed (a refusal halts every lane) and the pace. Within a lane the batches go one
/// after another in their order, and a batch the destination refuses for a while is
/// sent again before the lane's next one: the events of one distinct id that a lane
/// holds reach the destination in their order (PostHog ingests them in the order it
/// takes them), a retry included.
pub fn send_lanes(capture_to: &Capture, lanes: Vec<Vec<Batch>>) -> SentNow {
    let pace = Mutex::new(None);
    let shared = Shared::new(capture_to);
    let each: Vec<SentNow> = thread::scope(|scope| {
        let senders: Vec<_> =
            lanes.into_iter().map(|lane| scope.spawn(|| send_lane(capture_to, &pace, &shared, lane))).collect();
        senders
            .into_iter()
            .map(|sender| sender.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    let mut sent = SentNow::default();
    for lane in each {
        sent.delivered += lane.delivered;
        sent.rejected.extend(lane.rejected);
        sent.undelivered.extend(lane.undelivered);
        sent.stopped = sent.stopped.or(lane.stopped);
    }
    sent
}

/// One lane of `send_lanes`, in order.
fn send_lane(capture_to: &Capture, pace: &Pace, shared: &Shared, batches: Vec<Batch>) -> SentNow {
    let agent = agent();
    let mut sent = SentNow::default();
    let mut queue: VecDeque<(Batch, u32, u64)> = batches.into_iter().map(|b| (b, 1, 0)).collect();
    while let Some((batch, attempt, delay_seconds)) = queue.pop_front() {
        if sent.stopped.is_some() {
            break;
        }
        thread::sleep(capture_to.retry.wait(delay_seconds as f64));
        let (summary, _) = deliver(capture_to, &agent, pace, shared, batch, attempt);
        sent.delivered += summary.delivered as u64;
        sent.rejected.extend(summary.rejected.into_iter().map(|r| (r.uuid.unwrap_or_default(), r.reason.to_string())));
        sent.stopped = summary.stop;
        let mut waiting = Vec::new();
        for keep in summary.keep {
            match keep.state {
                KeepState::Waiting => waiting.push((keep.batch, keep.attempt, keep.delay_seconds)),
                _ => sent.undelivered.push((keep.batch.uuids.len(), keep.reason)),
            }
        }
        // What waits goes first again, in its order.
        for again in waiting.into_iter().rev() {
            queue.push_front(again);
        }
    }
    sent
}

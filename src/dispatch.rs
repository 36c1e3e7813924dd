//! Sending a set of requests and following every answer to its end: each event is
//! delivered, rejected with a reason, or kept in a request to send again (waiting,
//! parked, or held until a setting is fixed). The shim only carries the requests to
//! the destination and back; every decision, and every line for the log, is here.

use chrono::{DateTime, Utc};

use crate::batch::{Batch, BatchLimits};
use crate::delivery::{self, Answer, Decision, Refusal, MAX_ATTEMPTS};
use crate::transform::Rejected;

/// A request that did not get through, with what to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep {
    pub batch: Batch,
    pub state: KeepState,
    /// The attempt its next sending will be.
    pub attempt: u32,
    /// Send it again no sooner than this (waiting only).
    pub delay_seconds: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepState {
    /// A job sends it again after `delay_seconds`.
    Waiting,
    /// Tried `MAX_ATTEMPTS` times: kept until the user resends it.
    Parked,
    /// Kept until the settings are saved again.
    Held,
}

impl KeepState {
    pub fn name(self) -> &'static str {
        match self {
            KeepState::Waiting => "waiting",
            KeepState::Parked => "parked",
            KeepState::Held => "held",
        }
    }
}

/// Why a dispatch kept everything without sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The destination refused what this dispatch sent.
    Refused(Refusal),
    /// The app knew a setting to be wrong before (its message): nothing was sent.
    Held(String),
}

impl Stop {
    /// In the app's words.
    pub fn app_words(&self) -> String {
        match self {
            Stop::Refused(refusal) => refusal.app_words(),
            Stop::Held(message) => message.clone(),
        }
    }
}

/// The end of a dispatch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub delivered: usize,
    pub rejected: Vec<Rejected>,
    pub keep: Vec<Keep>,
    /// Requests that will be sent again (a retry each).
    pub retries: usize,
    /// Nothing gets through until the user fixes the host or the key: stop sending.
    pub stop: Option<Stop>,
    pub warn: Vec<String>,
    pub error: Vec<String>,
    /// The destination found requests too large (413) that capture would take: what it
    /// refused, and the smaller limit the dispatch sent under from then on.
    pub too_large: Option<TooLarge>,
}

/// Requests refused as too large, and the limit learned from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The smallest request refused: its JSON, and its body as sent (gzip or not).
    pub json_bytes: usize,
    pub sent_bytes: usize,
    /// The limit on a request's JSON the dispatch lowered to.
    pub max_bytes: usize,
}

/// Single events refused alone, each with the very answer their whole request got and
/// none of its events delivered, before the answer is taken to be about the request
/// (an endpoint that turns POST into GET after a redirect refuses every event alike).
const ALIKE_REFUSALS: usize = 3;

/// A connection cut while sending this much: capture closes the socket of a request
/// over its size limit while the client still uploads (EPIPE or a reset).
pub const CUT_WHILE_LARGE_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
struct Item {
    batch: Batch,
    attempt: u32,
    root: usize,
}

#[derive(Debug, Default)]
struct Root {
    /// What the destination answered to the whole request, when it refused it (400).
    refusal: Option<String>,
    delivered: usize,
    alike: usize,
    /// Events refused alone, rejected at the end unless the request is held.
    pending: Vec<(Rejected, Batch)>,
    held: bool,
}

pub struct Dispatch {
    limits: BatchLimits,
    gzip: bool,
    path: &'static str,
    queue: std::collections::VecDeque<Item>,
    roots: Vec<Root>,
    current: Option<Item>,
    summary: Summary,
}

impl Dispatch {
    /// `attempt`: that of the requests (a resend's); halves start afresh. `held`: a
    /// setting is known to be wrong, so keep everything without sending.
    pub fn new(
        batches: Vec<Batch>,
        attempt: u32,
        historical: bool,
        limits: BatchLimits,
        gzip: bool,
        held: Option<String>,
    ) -> Dispatch {
        let roots = batches.iter().map(|_| Root::default()).collect();
        let queue = batches.into_iter().enumerate().map(|(root, batch)| Item { batch, attempt, root }).collect();
        let mut dispatch = Dispatch {
            limits,
            gzip,
            path: if historical { "historical" } else { "live" },
            queue,
            roots,
            current: None,
            summary: Summary::default(),
        };
        if let Some(message) = held {
            // Said when it happened: kept quietly now.
            dispatch.hold_all(Stop::Held(message), false);
        }
        dispatch
    }

    /// The next request to send, if any: one made larger than what the destination
    /// showed it takes goes in smaller requests.
    pub fn next_request(&mut self) -> Option<&Batch> {
        while self.current.is_none() {
            let item = self.queue.pop_front()?;
            if item.batch.json_bytes <= self.limits.max_bytes || item.batch.uuids.len() < 2 {
                self.current = Some(item);
                break;
            }
            match delivery::rebatch(&item.batch, self.limits, self.gzip) {
                Ok(parts) => {
                    for part in parts.into_iter().rev() {
                        self.queue.push_front(Item { batch: part, attempt: item.attempt, root: item.root });
                    }
                }
                Err(_) => self.current = Some(item),
            }
        }
        self.current.as_ref().map(|item| &item.batch)
    }

    /// What the destination refused as too large so far, and the limit learned from it.
    pub fn too_large(&self) -> Option<TooLarge> {
        self.summary.too_large
    }

    /// Makes the requests not sent yet under `max_bytes` of JSON (a limit another
    /// dispatch learned of the same destination).
    pub fn lower_max_bytes(&mut self, max_bytes: usize) {
        self.limits.max_bytes = self.limits.max_bytes.min(max_bytes.max(1));
    }

    /// A request of more than one event was refused as too large: send the rest under
    /// half its size.
    fn learn_too_large(&mut self, batch: &Batch) {
        let max_bytes = (batch.json_bytes / 2).max(1).min(self.limits.max_bytes);
        self.limits.max_bytes = max_bytes;
        let (json_bytes, sent_bytes) = (batch.json_bytes, batch.body.bytes().len());
        let smaller = self.summary.too_large.is_none_or(|seen| json_bytes < seen.json_bytes);
        if smaller {
            self.summary.too_large = Some(TooLarge { json_bytes, sent_bytes, max_bytes });
        }
    }

    /// The answer to the request `next` gave: `status` 0 when none came (`error` then
    /// says why, e.g. `EPIPE`).
    pub fn answer(&mut self, status: u16, retry_after: Option<u64>, text: &str, error: Option<&str>) {
        let Some(item) = self.current.take() else { return };
        let cut_while_large = status == 0
            && error.is_some_and(|code| matches!(code, "EPIPE" | "ECONNRESET"))
            && item.batch.body.bytes().len() >= CUT_WHILE_LARGE_BYTES;
        let answer = if cut_while_large { Answer::TooLarge } else { delivery::classify_reply(status, text, error) };
        let reply = delivery::Reply { answer, status, retry_after, text };
        let decision = delivery::decide_batch(&item.batch, item.attempt, reply, self.limits, self.gzip);
        let what = match (status, error) {
            (0, Some(code)) if delivery::said(text).is_empty() => format!("no answer ({code})"),
            (0, Some(code)) => format!("no answer ({code}: {})", delivery::said(text)),
            (0, None) => format!("no answer ({})", delivery::said(text)),
            (status, _) => format!("HTTP {status}"),
        };
        let n = item.batch.uuids.len();
        match decision {
            Err(unreadable) => {
                // Our own request cannot be read back: keep it for a person to look at.
                self.summary.error.push(format!("{n} {} events are parked: {unreadable}.", self.path));
                self.keep(item, KeepState::Parked, 0, unreadable.to_string());
            }
            Ok(Decision::Delivered { count }) => {
                self.summary.delivered += count;
                self.roots[item.root].delivered += count;
            }
            Ok(Decision::Split(halves)) => {
                if answer == Answer::TooLarge {
                    self.learn_too_large(&item.batch);
                }
                let root = &mut self.roots[item.root];
                if answer == Answer::Invalid && root.refusal.is_none() {
                    root.refusal = Some(text.to_string());
                }
                for half in halves.into_iter().rev() {
                    self.queue.push_front(Item { batch: half, attempt: 1, root: item.root });
                }
            }
            Ok(Decision::Rejected(rejected)) => self.refused_alone(item, rejected, answer, status, text),
            Ok(Decision::Retry { delay_seconds, attempt }) => {
                self.summary.retries += 1;
                self.summary.warn.push(format!(
                    "{n} {} events not delivered yet ({what}): sending them again in {delay_seconds} s (attempt {attempt}).",
                    self.path
                ));
                self.keep(item, KeepState::Waiting, delay_seconds, what);
            }
            Ok(Decision::Park) => {
                self.summary.error.push(format!(
                    "{n} {} events are parked after {MAX_ATTEMPTS} attempts (last answer: {what}). They are kept; \
                     run the job \"Resend parked events\" to send them again.",
                    self.path
                ));
                self.keep(item, KeepState::Parked, 0, what);
            }
            Ok(Decision::Stop(refusal)) => {
                self.keep(item, KeepState::Held, 0, refusal.app_words());
                self.hold_all(Stop::Refused(refusal), true);
            }
        }
    }

    /// A single event the destination refused: rejected, unless its whole request got
    /// the same refusal for every event tried alone, which is about the request.
    fn refused_alone(&mut self, item: Item, rejected: Rejected, answer: Answer, status: u16, text: &str) {
        let root = &mut self.roots[item.root];
        let alike = answer == Answer::Invalid
            && root.delivered == 0
            && root.refusal.as_deref().is_some_and(|whole| whole.trim() == text.trim());
        if !alike {
            root.pending.push((rejected, item.batch));
            return;
        }
        root.alike += 1;
        if root.alike < ALIKE_REFUSALS {
            root.pending.push((rejected, item.batch));
            return;
        }
        let refusal = Refusal::Endpoint { status, said: delivery::said(text) };
        let message = refusal.app_words();
        // Every event of the request is kept, those refused alone included.
        let root_index = item.root;
        for (_, batch) in std::mem::take(&mut self.roots[root_index].pending) {
            self.keep(Item { batch, attempt: 1, root: root_index }, KeepState::Held, 0, message.clone());
        }
        self.keep(item, KeepState::Held, 0, message.clone());
        let (same, rest): (Vec<Item>, Vec<Item>) = self.queue.drain(..).partition(|i| i.root == root_index);
        self.queue = rest.into();
        for other in same {
            self.keep(other, KeepState::Held, 0, message.clone());
        }
        self.hold_all(Stop::Refused(refusal), true);
    }

    /// Keeps every request not sent yet, held, and says why once (if `announce`).
    fn hold_all(&mut self, stop: Stop, announce: bool) {
        let message = stop.app_words();
        let waiting: Vec<Item> = self.queue.drain(..).collect();
        for item in waiting {
            self.keep(item, KeepState::Held, 0, message.clone());
        }
        if self.summary.stop.is_none() && announce {
            let kept: usize =
                self.summary.keep.iter().filter(|k| k.state == KeepState::Held).map(|k| k.batch.uuids.len()).sum();
            self.summary.error.push(format!("{message} ({kept} {} events are kept until then.)", self.path));
        }
        self.summary.stop.get_or_insert(stop);
    }

    fn keep(&mut self, item: Item, state: KeepState, delay_seconds: u64, reason: String) {
        if state == KeepState::Held {
            self.roots[item.root].held = true;
        }
        let attempt = match state {
            KeepState::Waiting => item.attempt + 1,
            _ => 1,
        };
        self.summary.keep.push(Keep { batch: item.batch, state, attempt, delay_seconds, reason });
    }

    /// Everything decided: the rejections confirmed (those of requests held are not
    /// rejections), the requests to keep, the counts and the lines for the log.
    pub fn finish(mut self, _now: DateTime<Utc>) -> Summary {
        for root in &mut self.roots {
            if !root.held {
                self.summary.rejected.extend(root.pending.drain(..).map(|(rejected, _)| rejected));
            }
        }
        if let Some(item) = self.current.take() {
            // Taken by `next` but never answered: keep it for a later attempt.
            self.keep(item, KeepState::Waiting, 0, "not sent".into());
        }
        if let Some(seen) = self.summary.too_large {
            self.summary.warn.push(format!(
                "The destination refused a request of {} KB ({} KB as sent) as too large (HTTP 413): the {} events \
                 after it went in requests under {} KB. Set \"Largest request, in kilobytes\" below that, or raise \
                 the destination's limit (a proxy's body size limit, e.g. nginx's client_max_body_size).",
                seen.json_bytes / 1024,
                seen.sent_bytes / 1024,
                self.path,
                seen.max_bytes / 1024
            ));
        }
        self.summary
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "dispatch_tests.rs"]
mod tests;

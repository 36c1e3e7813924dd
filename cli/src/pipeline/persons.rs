//! The persons step of a migration: every person of the source that is not deleted,
//! after the events, sent through capture as PostHog's own SDKs make and link persons,
//! so that the destination holds persons without events, every distinct id, and the
//! source's current properties rather than what replaying the history leaves.
//!
//! For each person, with its distinct ids sorted and the first as its name at the
//! destination:
//! - one `$set` event from the name with the person's current properties in `$set`
//!   (unicode, nested values and nulls as they are), after every event of the run, so
//!   the destination ends with the source's values and not the history's. Sent first,
//!   it makes the person at the destination (when no person holds the name yet)
//!   before any link: so the links below always join two known persons or add an id no
//!   one holds, and never hand the name over to a person the destination already holds
//!   for one of the further ids (an `$identify` whose sender is unknown adds the sender
//!   to the `$anon_distinct_id`'s person, identified or not).
//! - then one `$identify` per further distinct id, sent by the name with
//!   `$anon_distinct_id` set to the further one. PostHog's ingestion links a distinct id
//!   no person holds to the sender's person, and merges two existing persons only when
//!   the one being merged in (the `$anon_distinct_id`'s) is not identified: a distinct
//!   id that the destination already holds for an identified person is left there (an
//!   ingestion warning, `cannot_merge_already_identified`), so two persons the source
//!   keeps apart are never merged by it. A merge keeps the sender's properties over
//!   the merged person's, so the source's values stay. `$create_alias` is not used:
//!   PostHog releases before 2023 merged identified persons on it without that check
//!   (`$merge_dangerously` still does), and a merge cannot be undone. Capture's answer
//!   does not say whether a link was refused: `verify --persons` finds the distinct ids
//!   the destination holds for another person. Every event of a person has the same
//!   `distinct_id`, so PostHog ingests them in this order (it partitions by it).
//!
//! Every event carries a uuid derived from the person's uuid and content, so a resend
//! after a kill is the same event; `$geoip_disable` (set by the core's transform) keeps
//! the destination from resolving this machine's address onto the persons. The state
//! file records each person delivered with its version and digest: a rerun sends only
//! the persons changed since.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use migrator3000::dispatch::Stop;
use migrator3000::timestamp;
use serde_json::{json, Value};

use super::batches::batches_of;
use super::error::PipelineError;
use super::run_options::Options;
use crate::shared::reporter::note;
use crate::sink::delivery;
use crate::sources::posthog::persons::{Person, PersonSource};
use crate::store::persons::SentPerson;
use crate::store::settle::Settled;
use crate::store::state_file::StateFile;

/// Persons read from the source at a time.
pub const PERSONS_PAGE: usize = 10_000;

/// What the persons step came to.
#[derive(Debug, Default)]
pub struct PersonsCopied {
    /// Persons of the source read (not deleted, with or without distinct ids).
    pub read: u64,
    /// Persons sent and taken by the destination in this run.
    pub sent: u64,
    /// Persons already sent as they are now (by an earlier run): not sent again.
    pub unchanged: u64,
    /// Persons no distinct id names: nothing can name them at the destination.
    pub without_ids: u64,
    /// Distinct ids linked (beyond each person's first).
    pub links: u64,
    /// Persons whose events the destination or the transform refused, with why.
    pub rejected: Vec<(String, String)>,
    /// The destination refused the key or host: nothing more was sent.
    pub stopped: Option<Stop>,
    /// Events of persons still not taken after all their attempts (the persons are not
    /// recorded: a rerun sends them).
    pub undelivered: u64,
    pub seconds: f64,
}

/// A person to send, with its digest (taken once: it serializes every property).
/// `salt` is empty for the persons step (so a resend after a kill is the same event);
/// `verify --resend` gives one of its own, so that its events are new ones and not
/// taken for those of the persons step.
pub struct PersonToSend<'a> {
    pub person: &'a Person,
    pub digest: String,
    pub salt: &'a str,
}

impl<'a> PersonToSend<'a> {
    pub fn new(person: &'a Person, salt: &'a str) -> PersonToSend<'a> {
        PersonToSend { person, digest: person.digest(), salt }
    }
}

/// The events that make a person at the destination, each with its uuid: its
/// properties, then its links.
fn person_events(sending: &PersonToSend<'_>, at: DateTime<Utc>) -> Vec<(String, String)> {
    let PersonToSend { person, digest, salt } = sending;
    let Some(name) = person.distinct_ids.first() else { return Vec::new() };
    let when = timestamp::format(at);
    let id = |what: &str, other: &str| {
        let fingerprint = if salt.is_empty() {
            json!([what, person.id, digest, other])
        } else {
            json!([what, person.id, digest, other, salt])
        };
        migrator3000::event_id::derive(&fingerprint)
    };
    let set = id("person set", "");
    let mut events = vec![(
        set.clone(),
        json!({
            "event": "$set",
            "distinct_id": name,
            "uuid": set,
            "timestamp": when,
            "properties": {"$set": Value::Object(person.properties.clone()), "$lib": "migrator3000"},
        })
        .to_string(),
    )];
    events.extend(person.distinct_ids[1..].iter().map(|other| {
        let link = id("person link", other);
        let event = json!({
            "event": "$identify",
            "distinct_id": name,
            "uuid": link,
            "timestamp": when,
            "properties": {"$anon_distinct_id": other, "$lib": "migrator3000"},
        })
        .to_string();
        (link, event)
    }));
    events
}

/// What came of sending some persons' events.
#[derive(Debug, Default)]
pub struct PersonsSent {
    /// The persons (source uuids) whose every event the destination took.
    pub delivered: Vec<String>,
    /// Persons whose events the destination or the transform refused, with why.
    pub rejected: Vec<(String, String)>,
    /// The destination refused the key or host: nothing more was sent.
    pub stopped: Option<Stop>,
    /// Events still not taken after all their attempts, and the first reason.
    pub undelivered: u64,
    pub undelivered_reason: Option<String>,
}

/// Sends the events of `persons` (see `PersonToSend`), and follows
/// every answer. The persons are split into `--concurrency` lanes of consecutive persons,
/// sent at once; a person's events all go in one lane, in their order (its `$set` taken
/// before its links, a retry included: see `delivery::send_lanes`).
pub fn send_persons(persons: &[PersonToSend<'_>], options: &Options, at: DateTime<Utc>) -> PersonsSent {
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut settled = Settled::default();
    let per_lane = persons.len().div_ceil(options.concurrency.max(1)).max(1);
    let mut lanes = Vec::new();
    for lane in persons.chunks(per_lane) {
        let mut events = Vec::new();
        for sending in lane {
            for (uuid, event) in person_events(sending, at) {
                owner.insert(uuid, sending.person.id.clone());
                events.push(event);
            }
        }
        lanes.push(batches_of(&events, options, &mut settled));
    }
    let sent = delivery::send_lanes(&options.capture, lanes);
    let mut outcome = PersonsSent::default();
    if let Some(stop) = sent.stopped {
        outcome.stopped = Some(stop);
        return outcome;
    }
    if !sent.undelivered.is_empty() {
        outcome.undelivered = sent.undelivered.iter().map(|(n, _)| *n as u64).sum::<u64>();
        outcome.undelivered_reason = Some(sent.undelivered[0].1.clone());
        return outcome;
    }
    let mut refused: HashSet<String> = HashSet::new();
    let reasons =
        settled.rejected.into_iter().map(|(uuid, _, why)| (uuid.unwrap_or_default(), why)).chain(sent.rejected);
    for (uuid, why) in reasons {
        if let Some(person) = owner.get(&uuid) {
            if refused.insert(person.clone()) {
                outcome.rejected.push((person.clone(), why));
            }
        }
    }
    outcome.delivered =
        persons.iter().filter(|s| !refused.contains(&s.person.id)).map(|s| s.person.id.clone()).collect();
    outcome
}

/// Copies the persons of `source` that `migration` has not sent as they are now.
pub fn copy_persons(
    state: &mut StateFile,
    source: &mut dyn PersonSource,
    migration: &str,
    options: &Options,
    page_size: usize,
    now: DateTime<Utc>,
) -> Result<PersonsCopied, PipelineError> {
    let started = std::time::Instant::now();
    let mut copied = PersonsCopied::default();
    let mut after: Option<String> = None;
    loop {
        let page = options.capture.retry.read(|| source.persons_after(after.as_deref(), page_size))?;
        if page.read == 0 {
            break;
        }
        copied.read += page.read as u64;
        copied.without_ids += page.without_ids;
        let ids: Vec<&str> = page.persons.iter().map(|p| p.id.as_str()).collect();
        let sent_before = state.persons_sent(migration, &ids)?;
        let changed: Vec<PersonToSend> = page
            .persons
            .iter()
            .map(|p| PersonToSend::new(p, ""))
            .filter(|s| sent_before.get(&s.person.id) != Some(&s.digest))
            .collect();
        copied.unchanged += (page.persons.len() - changed.len()) as u64;
        if !changed.is_empty() {
            copied.links += changed.iter().map(|s| s.person.distinct_ids.len().saturating_sub(1) as u64).sum::<u64>();
            let sent = send_persons(&changed, options, now);
            if let Some(stop) = sent.stopped {
                copied.stopped = Some(stop);
                break;
            }
            if sent.undelivered > 0 {
                copied.undelivered += sent.undelivered;
                let reason = sent.undelivered_reason.unwrap_or_default();
                note!("The destination did not take the persons of a page ({reason}): a rerun sends them again.");
                break;
            }
            copied.rejected.extend(sent.rejected);
            let delivered: HashSet<&str> = sent.delivered.iter().map(String::as_str).collect();
            let delivered: Vec<SentPerson> = changed
                .iter()
                .filter(|s| delivered.contains(s.person.id.as_str()))
                .map(|s| SentPerson { id: s.person.id.clone(), version: s.person.version, digest: s.digest.clone() })
                .collect();
            copied.sent += delivered.len() as u64;
            state.record_persons_sent(migration, &delivered)?;
        }
        note!(
            "Persons: {} read, {} sent, {} unchanged since an earlier run.",
            copied.read,
            copied.sent,
            copied.unchanged
        );
        match page.last {
            Some(last) if page.read >= page_size => after = Some(last),
            _ => break,
        }
    }
    copied.seconds = started.elapsed().as_secs_f64();
    Ok(copied)
}

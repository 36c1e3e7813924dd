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

/// The events that make `person` at the destination: its properties, then its links.
/// `salt` is empty for the persons step (so a resend after a kill is the same event);
/// `verify --resend` gives one of its own, so that its events are new ones and not
/// taken for those of the persons step.
pub fn person_events(person: &Person, salt: &str, at: DateTime<Utc>) -> Vec<String> {
    let Some(name) = person.distinct_ids.first() else { return Vec::new() };
    let digest = person.digest();
    let when = timestamp::format(at);
    let id = |what: &str, other: &str| {
        let fingerprint = if salt.is_empty() {
            json!([what, person.id, digest, other])
        } else {
            json!([what, person.id, digest, other, salt])
        };
        migrator3000::event_id::derive(&fingerprint)
    };
    let mut events = vec![json!({
        "event": "$set",
        "distinct_id": name,
        "uuid": id("person set", ""),
        "timestamp": when,
        "properties": {"$set": Value::Object(person.properties.clone()), "$lib": "migrator3000"},
    })
    .to_string()];
    events.extend(person.distinct_ids[1..].iter().map(|other| {
        json!({
            "event": "$identify",
            "distinct_id": name,
            "uuid": id("person link", other),
            "timestamp": when,
            "properties": {"$anon_distinct_id": other, "$lib": "migrator3000"},
        })
        .to_string()
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

/// Sends the events of `persons`, each with its salt (see `person_events`), and follows
/// every answer. The persons are split into `--concurrency` lanes of consecutive persons,
/// sent at once; a person's events all go in one lane, in their order (its `$set` taken
/// before its links, a retry included: see `delivery::send_lanes`).
pub fn send_persons(persons: &[(&Person, &str)], options: &Options, at: DateTime<Utc>) -> PersonsSent {
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut settled = Settled::default();
    let per_lane = persons.len().div_ceil(options.concurrency.max(1)).max(1);
    let mut lanes = Vec::new();
    for lane in persons.chunks(per_lane) {
        let mut events = Vec::new();
        for (person, salt) in lane {
            for event in person_events(person, salt, at) {
                if let Some(uuid) =
                    serde_json::from_str::<Value>(&event).ok().and_then(|e| e["uuid"].as_str().map(str::to_string))
                {
                    owner.insert(uuid, person.id.clone());
                }
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
    outcome.delivered = persons.iter().filter(|(p, _)| !refused.contains(&p.id)).map(|(p, _)| p.id.clone()).collect();
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
        let changed: Vec<&Person> =
            page.persons.iter().filter(|p| sent_before.get(&p.id) != Some(&p.digest())).collect();
        copied.unchanged += (page.persons.len() - changed.len()) as u64;
        if !changed.is_empty() {
            copied.links += changed.iter().map(|p| p.distinct_ids.len().saturating_sub(1) as u64).sum::<u64>();
            let unsalted: Vec<(&Person, &str)> = changed.iter().map(|p| (*p, "")).collect();
            let sent = send_persons(&unsalted, options, now);
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
                .filter(|p| delivered.contains(p.id.as_str()))
                .map(|p| SentPerson { id: p.id.clone(), version: p.version, digest: p.digest() })
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

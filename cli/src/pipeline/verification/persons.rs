//! `verify --persons`: the persons of the source against those of the destination (its
//! Query API: HogQL's `persons` and `person_distinct_ids`). Person uuids differ between
//! two PostHogs, so persons are matched by distinct id: a source person's match is the
//! destination person that holds its first distinct id (the one the persons step names
//! it by), else the one holding any other. Then, for each source person: missing (no
//! distinct id of it at the destination), its distinct ids missing, its distinct ids
//! held by another destination person, and each property whose value differs.
//!
//! Which properties are compared: the source person's, each by its JSON value. A
//! property only the destination holds is not a difference (the persons step `$set`s
//! the source's properties and leaves the others, as the README says): so the
//! `$initial_*` and `$geoip_*` properties that the destination's ingestion derives
//! from the events it replays, where the source's person has none, are never reported.
//! Where the source holds them they are compared: the persons step copied the source's
//! values over the destination's (`$set` after every event; every event the command and
//! the app send carries `$geoip_disable`, so the destination resolves no location of
//! its own), so a difference there is one. One property is left out: `IGNORED`.

use std::collections::HashMap;

use serde_json::Value;

use crate::pipeline::error::PipelineError;
use crate::shared::retry::RetryPolicy;
use crate::sources::posthog::persons::{Person, PersonSource, QueryApiPersons};

/// Properties not compared. `$creator_event_uuid` names the event that created the
/// person at each PostHog: bookkeeping of the instance, not data about the person. It
/// differs wherever the destination made the person from another event than the
/// source did (the history copied from a later `--start`, a migration by the app or by
/// another tool, a person made by the persons step's own `$identify`), and setting the
/// source's value there would name an event the destination may not hold.
pub const IGNORED: &[&str] = &["$creator_event_uuid"];

/// A property whose value differs: the source's, and the destination's (`None`: it has
/// none).
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyDiff {
    pub key: String,
    pub source: Value,
    pub destination: Option<Value>,
}

/// A source person that is not at the destination as it is at the source.
#[derive(Debug, Clone)]
pub struct PersonDiff {
    /// The person as the source holds it now.
    pub source: Person,
    /// The destination's person matched to it (`None`: missing).
    pub destination: Option<String>,
    /// Its distinct ids no destination person holds.
    pub missing_ids: Vec<String>,
    /// Its distinct ids the destination holds for another person: (distinct id, that
    /// person's uuid). Reported, never forced: linking them would merge two persons.
    pub held_elsewhere: Vec<(String, String)>,
    /// Distinct ids its match at the destination holds that the source's person does
    /// not: the destination held one of the source's ids for a person of its own (its
    /// live traffic, another import) before the persons step named the person by it.
    /// Reported, not mended: which person they belong to is for the user to judge.
    pub other_ids: Vec<String>,
    pub properties: Vec<PropertyDiff>,
}

impl PersonDiff {
    /// What `--resend` can mend: the source's values set and the missing ids linked.
    pub fn mendable(&self) -> bool {
        self.destination.is_none() || !self.missing_ids.is_empty() || !self.properties.is_empty()
    }

    /// The person as `--resend` sends it: named by a distinct id its match holds (so
    /// that its `$set` reaches that person), then its missing distinct ids (each linked
    /// by an `$identify`); the ids its match holds already are not linked again, those
    /// held by another person are left out.
    pub fn to_send(&self) -> Person {
        let elsewhere: Vec<&String> = self.held_elsewhere.iter().map(|(id, _)| id).collect();
        let name = self
            .source
            .distinct_ids
            .iter()
            .find(|id| !elsewhere.contains(id) && !self.missing_ids.contains(id))
            .cloned();
        let ids = name.into_iter().chain(self.missing_ids.iter().cloned()).collect();
        Person { distinct_ids: ids, ..self.source.clone() }
    }

    /// What the destination held of this person when it was compared: the salt of the
    /// events `--resend` sends, so that they are new events (not the persons step's,
    /// which the destination may hold), and the same ones for the same difference.
    pub fn salt(&self) -> String {
        let properties: Vec<(&String, &Option<Value>)> =
            self.properties.iter().map(|p| (&p.key, &p.destination)).collect();
        migrator3000::event_id::derive(&serde_json::json!([
            "verify --persons --resend",
            self.destination,
            self.missing_ids,
            properties
        ]))
    }
}

/// The destination's persons, by distinct id.
#[derive(Debug, Default)]
pub struct Held {
    persons: Vec<Person>,
    owner: HashMap<String, usize>,
    /// Persons read (with or without distinct ids).
    pub read: u64,
}

impl Held {
    pub fn of(persons: Vec<Person>) -> Held {
        let mut held = Held { read: persons.len() as u64, ..Held::default() };
        for person in persons {
            held.add(person);
        }
        held
    }

    fn add(&mut self, person: Person) {
        let at = self.persons.len();
        for id in &person.distinct_ids {
            self.owner.insert(id.clone(), at);
        }
        self.persons.push(person);
    }

    /// Every person of `side`, a page at a time.
    pub fn read(side: &mut dyn PersonSource, retry: &RetryPolicy, page: usize) -> Result<Held, PipelineError> {
        let mut held = Held::default();
        let mut after: Option<String> = None;
        loop {
            let read = retry.read(|| side.persons_after(after.as_deref(), page))?;
            held.read += read.read as u64;
            for person in read.persons {
                held.add(person);
            }
            match read.last {
                Some(last) if read.read >= page => after = Some(last),
                _ => return Ok(held),
            }
        }
    }

    /// `person` compared with its match here; `None` when they are the same, with the
    /// index of its match (to find source persons merged into one).
    pub fn compare(&self, person: &Person) -> (Option<PersonDiff>, Option<usize>) {
        let owners: Vec<Option<usize>> = person.distinct_ids.iter().map(|id| self.owner.get(id).copied()).collect();
        let matched = owners.first().copied().flatten().or_else(|| owners.iter().flatten().next().copied());
        let mut diff = PersonDiff {
            source: person.clone(),
            destination: matched.map(|at| self.persons[at].id.clone()),
            missing_ids: Vec::new(),
            held_elsewhere: Vec::new(),
            other_ids: Vec::new(),
            properties: Vec::new(),
        };
        for (id, owner) in person.distinct_ids.iter().zip(&owners) {
            match owner {
                None => diff.missing_ids.push(id.clone()),
                Some(at) if Some(*at) != matched => {
                    diff.held_elsewhere.push((id.clone(), self.persons[*at].id.clone()))
                }
                Some(_) => {}
            }
        }
        let Some(at) = matched else {
            // Missing whole: every distinct id is missing, no property is there.
            return (Some(diff), None);
        };
        diff.other_ids =
            self.persons[at].distinct_ids.iter().filter(|id| !person.distinct_ids.contains(id)).cloned().collect();
        let theirs = &self.persons[at].properties;
        for (key, value) in person.properties.iter().filter(|(k, _)| !IGNORED.contains(&k.as_str())) {
            if theirs.get(key) != Some(value) {
                diff.properties.push(PropertyDiff {
                    key: key.clone(),
                    source: value.clone(),
                    destination: theirs.get(key).cloned(),
                });
            }
        }
        let same = diff.missing_ids.is_empty()
            && diff.held_elsewhere.is_empty()
            && diff.other_ids.is_empty()
            && diff.properties.is_empty();
        (if same { None } else { Some(diff) }, Some(at))
    }
}

/// What the comparison came to.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Persons of the source (not deleted) with at least one distinct id.
    pub at_source: u64,
    /// Persons of the source without any distinct id: nothing can name them.
    pub without_ids: u64,
    /// Distinct ids of the source's persons.
    pub source_ids: u64,
    /// Persons at the destination (its own included).
    pub at_destination: u64,
    /// Every source person that differs, in the source's order.
    pub differing: Vec<PersonDiff>,
    /// Destination persons that two or more source persons match: (its uuid, the source
    /// persons' uuids). A merge the source does not have.
    pub merged: Vec<(String, Vec<String>)>,
}

impl Comparison {
    pub fn missing(&self) -> impl Iterator<Item = &PersonDiff> {
        self.differing.iter().filter(|d| d.destination.is_none())
    }

    /// Distinct ids missing of persons that are there.
    pub fn missing_ids(&self) -> u64 {
        self.differing.iter().filter(|d| d.destination.is_some()).map(|d| d.missing_ids.len() as u64).sum()
    }

    pub fn with_properties(&self) -> impl Iterator<Item = &PersonDiff> {
        self.differing.iter().filter(|d| !d.properties.is_empty())
    }

    pub fn held_elsewhere(&self) -> u64 {
        self.differing.iter().map(|d| d.held_elsewhere.len() as u64).sum()
    }

    /// Persons whose match at the destination holds distinct ids the source's does not.
    pub fn with_other_ids(&self) -> impl Iterator<Item = &PersonDiff> {
        self.differing.iter().filter(|d| !d.other_ids.is_empty())
    }

    pub fn equal(&self) -> bool {
        self.differing.is_empty() && self.merged.is_empty()
    }
}

/// Every person of `source` against `destination` (read whole first, then the source a
/// page at a time).
pub fn compare(
    source: &mut dyn PersonSource,
    destination: &mut dyn PersonSource,
    retry: &RetryPolicy,
    page: usize,
) -> Result<Comparison, PipelineError> {
    let held = Held::read(destination, retry, page)?;
    let mut comparison = Comparison { at_destination: held.read, ..Comparison::default() };
    let mut matched: HashMap<usize, Vec<String>> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let read = retry.read(|| source.persons_after(after.as_deref(), page))?;
        comparison.without_ids += read.without_ids;
        for person in &read.persons {
            comparison.at_source += 1;
            comparison.source_ids += person.distinct_ids.len() as u64;
            let (diff, at) = held.compare(person);
            if let Some(at) = at {
                matched.entry(at).or_default().push(person.id.clone());
            }
            comparison.differing.extend(diff);
        }
        match read.last {
            Some(last) if read.read >= page => after = Some(last),
            _ => break,
        }
    }
    let mut merged: Vec<(String, Vec<String>)> = matched
        .into_iter()
        .filter(|(_, sources)| sources.len() > 1)
        .map(|(at, sources)| (held.persons[at].id.clone(), sources))
        .collect();
    merged.sort();
    comparison.merged = merged;
    Ok(comparison)
}

/// The persons of `diffs` compared again, reading at the destination only the persons
/// that hold their distinct ids now: each diff replaced by what it is now (dropped when
/// the person is equal).
pub fn compare_again(
    diffs: &[PersonDiff],
    destination: &mut QueryApiPersons,
    retry: &RetryPolicy,
) -> Result<Vec<PersonDiff>, PipelineError> {
    let ids: Vec<String> = diffs.iter().flat_map(|d| d.source.distinct_ids.iter().cloned()).collect();
    let held = Held::of(retry.read(|| destination.holding(&ids))?);
    Ok(diffs.iter().filter_map(|d| held.compare(&d.source).0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn person(id: &str, ids: &[&str], properties: Value) -> Person {
        Person {
            id: id.into(),
            version: 0,
            is_identified: true,
            properties: properties.as_object().cloned().unwrap_or_default(),
            distinct_ids: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn persons_match_by_distinct_id_and_every_kind_of_difference_is_named() {
        let held = Held::of(vec![
            person("d-1", &["a", "a2"], json!({"plan": "free", "$creator_event_uuid": "x", "$initial_os": "Mac"})),
            person("d-2", &["b", "z"], json!({"n": null})),
        ]);
        let alice = person("s-1", &["a", "a2", "a3", "z"], json!({"plan": "pro", "$creator_event_uuid": "y"}));
        let (diff, at) = held.compare(&alice);
        let diff = diff.unwrap();
        assert_eq!(at, Some(0));
        assert_eq!(diff.destination.as_deref(), Some("d-1"));
        assert_eq!(diff.missing_ids, ["a3"]);
        assert_eq!(diff.held_elsewhere, [("z".to_string(), "d-2".to_string())]);
        assert!(diff.other_ids.is_empty());
        // Matched by its first id to a person that holds one more: named.
        let (bob, _) = held.compare(&person("s-5", &["b"], json!({})));
        assert_eq!(bob.unwrap().other_ids, ["z"]);
        // $creator_event_uuid is not compared; $initial_os is the destination's alone.
        assert_eq!(
            diff.properties,
            [PropertyDiff { key: "plan".into(), source: json!("pro"), destination: Some(json!("free")) }]
        );
        // Sent again: named by an id its match holds, the missing one linked, "z" left.
        assert_eq!(diff.to_send().distinct_ids, ["a", "a3"]);
        // A null is a value: equal to a null, not to nothing.
        assert!(held.compare(&person("s-2", &["b", "z"], json!({"n": null}))).0.is_none());
        let absent = held.compare(&person("s-3", &["b", "z"], json!({"m": null}))).0.unwrap();
        assert_eq!(absent.properties[0].destination, None);
        // No id of it there: missing whole.
        let (gone, at) = held.compare(&person("s-4", &["q"], json!({"k": 1})));
        assert!(gone.unwrap().destination.is_none() && at.is_none());
    }
}

//! `metadata`: a project's objects (actions, cohorts, feature flags) copied to another
//! project through PostHog's REST API, every reference rewritten to the destination's
//! copy. A kind is a module implementing `Kind` (`kind.rs`), listed in `KINDS`; this
//! file does what is the same for every kind:
//!
//! 1. lists the source's objects of the kinds asked for and of those they refer to, and
//!    the destination's of the kinds asked for;
//! 2. orders them so that each comes after what it refers to (`order`); an object on a
//!    cycle, or referring to one the source does not have, is reported and not sent;
//! 3. for each object: without a copy yet, one with the same natural key at the
//!    destination is matched (the run killed after a create finds its own copy so),
//!    otherwise it is created, its row written before the request; with a copy, one
//!    changed at the destination since is reported and left as it is, else one changed
//!    at the source since is updated. A refusal of one object is reported and the rest
//!    goes on.

pub mod actions;
pub mod annotations;
pub mod cohorts;
pub mod dashboards;
pub mod experiments;
pub mod feature_flags;
pub mod insights;
pub mod kind;
pub mod order;
pub mod surveys;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use self::kind::{id_text, Kind, Objects, Ref};
use super::error::PipelineError;
use crate::posthog_api::client::QueryApiClient;
use crate::posthog_api::rest::{Refusal, RestError};
use crate::shared::reporter::note;
use crate::store::metadata::{Copy, How};
use crate::store::state_file::StateFile;

/// Every kind, in the order they are listed and shown (and, between kinds without
/// references, copied).
pub static KINDS: &[&dyn Kind] = &[
    &actions::Actions,
    &cohorts::Cohorts,
    &feature_flags::FeatureFlags,
    &dashboards::Dashboards,
    &insights::Insights,
    &annotations::Annotations,
    &experiments::Experiments,
    &surveys::Surveys,
];

/// A kind `--only` names that there is not.
#[derive(Debug, thiserror::Error)]
#[error("--only: no kind `{name}`; the kinds are {known}")]
pub struct UnknownKind {
    pub name: String,
    pub known: String,
}

/// The kinds named in a comma list, or which is not one.
pub fn kinds_named(list: &str) -> Result<Vec<&'static dyn Kind>, UnknownKind> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let name = name.replace('-', "_");
        match KINDS.iter().find(|k| k.name() == name) {
            Some(kind) => out.push(*kind),
            None => {
                let known: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
                return Err(UnknownKind { name, known: known.join(", ") });
            }
        }
    }
    Ok(if out.is_empty() {
        KINDS.to_vec()
    } else {
        KINDS.iter().filter(|k| out.iter().any(|o| o.name() == k.name())).copied().collect()
    })
}

/// Where the copy goes from and to (the state file keeps one mapping per pair).
pub struct Ends {
    pub source_host: String,
    pub source_project: u64,
    pub destination_host: String,
    pub destination_project: u64,
}

/// What became of one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    Created,
    Updated,
    Matched,
    Unchanged,
    /// Changed (or deleted) at the destination since the copy: left as it is.
    Conflict(String),
    Skipped(String),
    Failed(String),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub at_source: u64,
    pub created: u64,
    pub updated: u64,
    pub matched: u64,
    pub unchanged: u64,
    pub conflicts: u64,
    pub skipped: u64,
    pub failed: u64,
}

pub struct Line {
    pub kind: &'static str,
    pub source_id: String,
    pub label: String,
    pub destination_id: Option<String>,
    pub fate: Fate,
}

pub struct Report {
    pub tallies: Vec<(&'static dyn Kind, Tally)>,
    pub lines: Vec<Line>,
}

impl Report {
    pub fn total(&self) -> Tally {
        let mut t = Tally::default();
        for (_, k) in &self.tallies {
            t.at_source += k.at_source;
            t.created += k.created;
            t.updated += k.updated;
            t.matched += k.matched;
            t.unchanged += k.unchanged;
            t.conflicts += k.conflicts;
            t.skipped += k.skipped;
            t.failed += k.failed;
        }
        t
    }
}

fn kind_of(name: &str) -> &'static dyn Kind {
    *KINDS.iter().find(|k| k.name() == name).expect("a kind of KINDS")
}

fn numeric(id: &str) -> (u64, String) {
    (id.parse().unwrap_or(u64::MAX), id.to_string())
}

fn said(r: &Ref) -> String {
    format!("{} {}", r.kind.trim_end_matches('s').replace('_', " "), r.id)
}

/// The fields of two copies that differ.
fn differing(a: &Value, b: &Value) -> String {
    let keys: BTreeSet<&String> = a.as_object().into_iter().chain(b.as_object()).flat_map(|o| o.keys()).collect();
    let names: Vec<&str> =
        keys.into_iter().filter(|k| a.get(k.as_str()) != b.get(k.as_str())).map(|k| k.as_str()).collect();
    if names.is_empty() {
        "its fields".into()
    } else {
        names.join(", ")
    }
}

/// Copies the kinds asked for (`selected`); with `dry_run`, says what would be done and
/// sends and records nothing.
pub fn run(
    state: &StateFile,
    source: &mut QueryApiClient,
    destination: &mut QueryApiClient,
    ends: &Ends,
    selected: &[&'static dyn Kind],
    dry_run: bool,
) -> Result<Report, PipelineError> {
    // The kinds read at the source: those asked for, and what they refer to.
    let mut read: BTreeSet<&'static str> = selected.iter().map(|k| k.name()).collect();
    let mut more: Vec<&'static str> = read.iter().copied().collect();
    while let Some(name) = more.pop() {
        for refers in kind_of(name).refers_to() {
            if read.insert(refers) {
                more.push(refers);
            }
        }
    }
    let mut objects = Objects::new();
    let mut tallies: BTreeMap<&'static str, Tally> = BTreeMap::new();
    for kind in KINDS.iter().filter(|k| read.contains(k.name())) {
        let mut listed = Vec::new();
        for path in kind.list_paths() {
            listed.extend(source.list(&path).map_err(api)?);
        }
        let mut count = 0;
        for object in listed.into_iter().filter(|o| o["deleted"].as_bool() != Some(true)) {
            if let Some(id) = id_text(&object["id"]) {
                objects.insert((kind.name(), id), object);
                count += 1;
            }
        }
        if selected.iter().any(|s| s.name() == kind.name()) {
            tallies.entry(kind.name()).or_default().at_source = count;
        }
        note!("{}: {count} at the source", kind.name());
    }
    // The destination's objects of the kinds copied, by id and by natural key.
    let mut at_destination: HashMap<(&'static str, String), Value> = HashMap::new();
    let mut by_key: HashMap<(&'static str, String), Vec<String>> = HashMap::new();
    for kind in selected {
        let mut listed = Vec::new();
        for path in kind.list_paths() {
            listed.extend(destination.list(&path).map_err(api)?);
        }
        for object in listed {
            if object["deleted"].as_bool() == Some(true) {
                continue;
            }
            let Some(id) = id_text(&object["id"]) else { continue };
            if let Some(key) = kind.natural_key(&object) {
                by_key.entry((kind.name(), key)).or_default().push(id.clone());
            }
            at_destination.insert((kind.name(), id), object);
        }
    }
    // What earlier runs copied.
    let migration = if dry_run {
        state.metadata_migration_known(
            &ends.source_host,
            ends.source_project,
            &ends.destination_host,
            ends.destination_project,
        )?
    } else {
        Some(state.metadata_migration(
            &ends.source_host,
            ends.source_project,
            &ends.destination_host,
            ends.destination_project,
        )?)
    };
    let mut copies: HashMap<Ref, Copy> = HashMap::new();
    if let Some(migration) = migration {
        for name in &read {
            for (id, copy) in state.metadata_copies(migration, name)? {
                copies.insert(Ref { kind: name, id }, copy);
            }
        }
    }
    let mut mapped: HashMap<Ref, String> = copies
        .iter()
        .filter(|(_, c)| c.how != How::Creating)
        .filter_map(|(r, c)| Some((r.clone(), c.destination_id.clone()?)))
        .collect();
    let mut claimed: BTreeSet<(&'static str, String)> = mapped.iter().map(|(r, d)| (r.kind, d.clone())).collect();

    // The order: every object after those it refers to.
    let mut nodes: Vec<Ref> = objects
        .keys()
        .filter(|(kind, _)| selected.iter().any(|s| s.name() == *kind))
        .map(|(kind, id)| Ref { kind, id: id.clone() })
        .collect();
    let rank = |kind: &str| KINDS.iter().position(|k| k.name() == kind).unwrap_or(usize::MAX);
    nodes.sort_by_key(|r| (rank(r.kind), numeric(&r.id)));
    let edges: BTreeMap<Ref, Vec<Ref>> = nodes
        .iter()
        .map(|node| {
            let mut refs = kind_of(node.kind).references(&objects[&(node.kind, node.id.clone())]);
            refs.sort();
            refs.dedup();
            (node.clone(), refs)
        })
        .collect();
    let (ordered, cycles) = order::order(&nodes, &edges);

    let mut fates: HashMap<Ref, Fate> = HashMap::new();
    for (node, cycle) in &cycles {
        let path: Vec<String> = cycle.iter().map(said).collect();
        fates.insert(node.clone(), Fate::Skipped(format!("on a cycle of references: {}", path.join(" → "))));
    }
    for node in &ordered {
        let kind = kind_of(node.kind);
        let mut object = objects[&(node.kind, node.id.clone())].clone();
        let fate = (|| -> Result<Fate, PipelineError> {
            for r in &edges[node] {
                if !objects.contains_key(&(r.kind, r.id.clone())) {
                    return Ok(Fate::Skipped(format!(
                        "refers to {}, which the source does not have (deleted there)",
                        said(r)
                    )));
                }
                if mapped.contains_key(r) {
                    continue;
                }
                return Ok(Fate::Skipped(match fates.get(r) {
                    Some(Fate::Skipped(why) | Fate::Failed(why)) => format!("refers to {}, not copied: {why}", said(r)),
                    _ => format!("refers to {}, not copied yet: copy the {} too (--only)", said(r), r.kind),
                }));
            }
            if let Some(why) = kind.unfit(&object, &objects) {
                return Ok(Fate::Skipped(why));
            }
            if let Some(extra) = kind.extra(source, &object).map_err(api)? {
                object["_extra"] = extra;
            }
            let copied = kind.copied(&object, &|r| mapped.get(r).cloned().unwrap_or_else(|| "new".into()));
            let copy = copies.get(node);
            let write =
                |how: How, destination_id: Option<String>, answered: Option<String>| -> Result<(), PipelineError> {
                    if let Some(migration) = migration.filter(|_| !dry_run) {
                        let copy = Copy { destination_id, how, sent: copied.to_string(), answered };
                        state.metadata_record(migration, node.kind, &node.id, &copy)?;
                    }
                    Ok(())
                };
            if let Some(Copy { destination_id: Some(id), how: How::Created | How::Matched, sent, answered }) = copy {
                let Some(there) = at_destination.get(&(node.kind, id.clone())) else {
                    return Ok(Fate::Conflict(format!(
                        "deleted at the destination (id {id}) since the copy: not made again"
                    )));
                };
                let now = kind.compared(there);
                let before: Value =
                    answered.as_deref().and_then(|a| serde_json::from_str(a).ok()).unwrap_or(Value::Null);
                if now != before {
                    return Ok(Fate::Conflict(format!(
                        "changed at the destination (id {id}) since the copy ({}): kept as it is there",
                        differing(&before, &now)
                    )));
                }
                if serde_json::from_str::<Value>(sent).is_ok_and(|sent| sent == copied) {
                    return Ok(Fate::Unchanged);
                }
                if !dry_run {
                    let rel = format!("{}{id}/", kind.path());
                    match destination.update(&rel, &kind.update_body(&copied)) {
                        Ok(answer) => {
                            if let Err(refusal) = after(kind, destination, id, &copied)? {
                                return Ok(Fate::Failed(refusal.to_string()));
                            }
                            write(How::Created, Some(id.clone()), Some(kind.compared(&answer).to_string()))?
                        }
                        Err(RestError::Object(refusal)) => return Ok(Fate::Failed(refusal.to_string())),
                        Err(other) => return Err(api(other)),
                    }
                }
                return Ok(Fate::Updated);
            }
            // No copy yet (or a create whose answer was never recorded): the same
            // object at the destination, by natural key, not already another's copy.
            let creating = copy.is_some_and(|c| c.how == How::Creating);
            let found = kind.natural_key(&object).and_then(|key| {
                by_key.get(&(node.kind, key))?.iter().find(|id| !claimed.contains(&(node.kind, (*id).clone()))).cloned()
            });
            if let Some(id) = found {
                let there = kind.compared(&at_destination[&(node.kind, id.clone())]);
                let how = if creating { How::Created } else { How::Matched };
                write(how, Some(id.clone()), Some(there.to_string()))?;
                mapped.insert(node.clone(), id.clone());
                claimed.insert((node.kind, id));
                return Ok(if creating { Fate::Created } else { Fate::Matched });
            }
            if dry_run {
                mapped.insert(node.clone(), "new".into());
                return Ok(Fate::Created);
            }
            write(How::Creating, None, None)?;
            match destination.create(&kind.path(), &kind.create_body(&copied)) {
                Ok(answer) => {
                    let Some(id) = id_text(&answer["id"]) else {
                        return Ok(Fate::Failed(format!("the destination's answer has no id: {}", answer)));
                    };
                    let done = after(kind, destination, &id, &copied)?;
                    write(How::Created, Some(id.clone()), Some(kind.compared(&answer).to_string()))?;
                    mapped.insert(node.clone(), id.clone());
                    if let Err(refusal) = done {
                        claimed.insert((node.kind, id));
                        return Ok(Fate::Failed(format!("created, but {refusal}")));
                    }
                    claimed.insert((node.kind, id));
                    Ok(Fate::Created)
                }
                Err(RestError::Object(refusal)) => {
                    if let Some(migration) = migration {
                        state.metadata_forget(migration, node.kind, &node.id)?;
                    }
                    Ok(Fate::Failed(refusal.to_string()))
                }
                Err(other) => Err(api(other)),
            }
        })()?;
        fates.insert(node.clone(), fate);
    }

    let mut lines = Vec::new();
    for node in &nodes {
        let fate = fates.remove(node).unwrap_or(Fate::Skipped("not reached".into()));
        let tally = tallies.entry(node.kind).or_default();
        match &fate {
            Fate::Created => tally.created += 1,
            Fate::Updated => tally.updated += 1,
            Fate::Matched => tally.matched += 1,
            Fate::Unchanged => tally.unchanged += 1,
            Fate::Conflict(_) => tally.conflicts += 1,
            Fate::Skipped(_) => tally.skipped += 1,
            Fate::Failed(_) => tally.failed += 1,
        }
        let object = &objects[&(node.kind, node.id.clone())];
        lines.push(Line {
            kind: node.kind,
            source_id: node.id.clone(),
            label: kind_of(node.kind).label(object),
            destination_id: mapped.get(node).filter(|d| *d != "new").cloned(),
            fate,
        });
    }
    let tallies = selected.iter().map(|k| (*k, tallies.get(k.name()).copied().unwrap_or_default())).collect();
    Ok(Report { tallies, lines })
}

/// A kind's requests after a write: a refusal is the object's (`Err` inside).
fn after(
    kind: &dyn Kind,
    destination: &mut QueryApiClient,
    id: &str,
    copied: &Value,
) -> Result<Result<(), Refusal>, PipelineError> {
    match kind.after(destination, id, copied) {
        Ok(()) => Ok(Ok(())),
        Err(RestError::Object(refusal)) => Ok(Err(refusal)),
        Err(other) => Err(api(other)),
    }
}

fn api(error: RestError) -> PipelineError {
    PipelineError::Api(error)
}

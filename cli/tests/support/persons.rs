//! PostHog's person rules, as its ingestion applies them to each event in order, for
//! the loopback destination: a person per distinct id on first sight; `$identify` with
//! `$anon_distinct_id` and `$create_alias` / `$merge_dangerously` with `alias` link the
//! other distinct id to the sender's person (a new person for both when neither is
//! known; the other's person merged into the sender's when both are, its properties
//! under the sender's, unless it is identified and the event is not
//! `$merge_dangerously`: then refused, with the warning PostHog writes); the sender's
//! person becomes identified; then `$set`, `$set_once` and `$unset`. Illegal distinct
//! ids (PostHog's list) are never merged. Every change is written to the destination
//! engine's `person` and `person_distinct_id2` as a row of a higher version, so HogQL
//! reads it as PostHog's does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct Person {
    pub uuid: String,
    pub properties: Map<String, Value>,
    pub identified: bool,
    pub version: u64,
    pub deleted: bool,
    pub distinct_ids: BTreeSet<String>,
}

#[derive(Default)]
pub struct Persons {
    pub persons: BTreeMap<String, Person>,
    /// distinct id -> (person uuid, version of the link).
    pub owner: HashMap<String, (String, i64)>,
    /// Ingestion warnings: (kind, the other distinct id, the sender's).
    pub warnings: Vec<(String, String, String)>,
    /// Merges done: (merged in, into) person uuids.
    pub merges: Vec<(String, String)>,
    next: u64,
    /// Rows to write: persons and distinct ids changed since the last write.
    dirty_persons: BTreeSet<String>,
    dirty_ids: BTreeSet<String>,
}

fn illegal(id: &str) -> bool {
    let lower = id.trim().to_lowercase();
    let bare = lower.trim_matches(|c| c == '"' || c == '\'');
    id.trim().is_empty()
        || [
            "anonymous",
            "guest",
            "distinctid",
            "distinct_id",
            "id",
            "not_authenticated",
            "email",
            "undefined",
            "true",
            "false",
        ]
        .contains(&bare)
        || ["[object Object]", "NaN", "None", "none", "null", "0", "undefined"]
            .contains(&id.trim_matches(|c| c == '"' || c == '\''))
}

impl Persons {
    fn create(&mut self, ids: &[&str]) -> String {
        self.next += 1;
        let uuid = format!("0190d000-0000-7000-8000-{:012x}", self.next);
        let person = Person {
            uuid: uuid.clone(),
            properties: Map::new(),
            identified: false,
            version: 0,
            deleted: false,
            distinct_ids: ids.iter().map(|s| s.to_string()).collect(),
        };
        self.persons.insert(uuid.clone(), person);
        for id in ids {
            self.owner.insert(id.to_string(), (uuid.clone(), 0));
            self.dirty_ids.insert(id.to_string());
        }
        self.dirty_persons.insert(uuid.clone());
        uuid
    }

    fn owner_of(&self, id: &str) -> Option<String> {
        self.owner.get(id).map(|(p, _)| p.clone())
    }

    fn add_id(&mut self, person: &str, id: &str) {
        let version = self.owner.get(id).map_or(0, |(_, v)| v + 1);
        self.owner.insert(id.to_string(), (person.to_string(), version));
        self.persons.get_mut(person).unwrap().distinct_ids.insert(id.to_string());
        self.dirty_ids.insert(id.to_string());
    }

    fn touch(&mut self, person: &str) {
        let p = self.persons.get_mut(person).unwrap();
        p.version += 1;
        self.dirty_persons.insert(person.to_string());
    }

    /// Links `other` to the person of `into`, as PostHog's merge does.
    fn merge(&mut self, event: &str, other: &str, into: &str) -> String {
        if other == into || illegal(other) || illegal(into) {
            if other != into {
                self.warnings.push(("cannot_merge_with_illegal_distinct_id".into(), other.into(), into.into()));
            }
            return self.owner_of(into).unwrap_or_else(|| self.create(&[into]));
        }
        match (self.owner_of(other), self.owner_of(into)) {
            (None, None) => self.create(&[into, other]),
            (Some(existing), None) => {
                self.add_id(&existing, into);
                existing
            }
            (None, Some(existing)) => {
                self.add_id(&existing, other);
                existing
            }
            (Some(a), Some(b)) if a == b => b,
            (Some(source), Some(target)) => {
                if event != "$merge_dangerously" && self.persons[&source].identified {
                    self.warnings.push(("cannot_merge_already_identified".into(), other.into(), into.into()));
                    return target;
                }
                let merged_in = self.persons[&source].clone();
                let mut properties = merged_in.properties.clone();
                properties.extend(self.persons[&target].properties.clone());
                let version = merged_in.version.max(self.persons[&target].version);
                {
                    let t = self.persons.get_mut(&target).unwrap();
                    t.properties = properties;
                    t.version = version;
                }
                for id in &merged_in.distinct_ids {
                    self.add_id(&target, id);
                }
                let s = self.persons.get_mut(&source).unwrap();
                s.deleted = true;
                s.distinct_ids.clear();
                self.touch(&source);
                self.touch(&target);
                self.merges.push((source, target.clone()));
                target
            }
        }
    }

    /// Applies one event accepted by capture.
    pub fn apply(&mut self, event: &Value) {
        let name = event["event"].as_str().unwrap_or_default();
        let distinct_id = event["distinct_id"].as_str().unwrap_or_default();
        let properties = &event["properties"];
        let linked = match name {
            "$identify" => properties.get("$anon_distinct_id"),
            "$create_alias" | "$merge_dangerously" => properties.get("alias"),
            _ => None,
        };
        let person = match linked.and_then(Value::as_str) {
            Some(other) => {
                let person = self.merge(name, other, distinct_id);
                if !self.persons[&person].identified {
                    self.persons.get_mut(&person).unwrap().identified = true;
                    self.touch(&person);
                }
                person
            }
            None => self.owner_of(distinct_id).unwrap_or_else(|| self.create(&[distinct_id])),
        };
        let mut changed = false;
        let p = self.persons.get_mut(&person).unwrap();
        for set in [&properties["$set"], &event["$set"]] {
            for (k, v) in set.as_object().into_iter().flatten() {
                if p.properties.get(k) != Some(v) {
                    p.properties.insert(k.clone(), v.clone());
                    changed = true;
                }
            }
        }
        for once in [&properties["$set_once"], &event["$set_once"]] {
            for (k, v) in once.as_object().into_iter().flatten() {
                if !p.properties.contains_key(k) {
                    p.properties.insert(k.clone(), v.clone());
                    changed = true;
                }
            }
        }
        for key in properties["$unset"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            changed |= p.properties.remove(key).is_some();
        }
        if changed {
            self.touch(&person);
        }
    }

    /// The rows changed since the last call, as INSERTs for the engine (none: empty).
    pub fn rows(&mut self, team: u64) -> Vec<String> {
        let mut out = Vec::new();
        let persons: Vec<Value> = std::mem::take(&mut self.dirty_persons)
            .iter()
            .map(|id| {
                let p = &self.persons[id];
                json!({"id": p.uuid, "created_at": "2021-06-01 00:00:00", "team_id": team,
                       "properties": Value::Object(p.properties.clone()).to_string(),
                       "is_identified": p.identified as u8, "is_deleted": p.deleted as u8, "version": p.version,
                       "_timestamp": "2021-06-01 00:00:00", "_offset": 0})
            })
            .collect();
        if !persons.is_empty() {
            out.push(format!(
                "INSERT INTO default.person FORMAT JSONEachRow\n{}",
                persons.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
            ));
        }
        let ids: Vec<Value> = std::mem::take(&mut self.dirty_ids)
            .iter()
            .map(|id| {
                let (person, version) = &self.owner[id];
                json!({"team_id": team, "distinct_id": id, "person_id": person, "is_deleted": 0, "version": version,
                       "_timestamp": "2021-06-01 00:00:00", "_offset": 0, "_partition": 0})
            })
            .collect();
        if !ids.is_empty() {
            out.push(format!(
                "INSERT INTO default.person_distinct_id2 FORMAT JSONEachRow\n{}",
                ids.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }

    /// The persons not deleted.
    pub fn live(&self) -> Vec<&Person> {
        self.persons.values().filter(|p| !p.deleted).collect()
    }

    pub fn of(&self, distinct_id: &str) -> Option<&Person> {
        self.owner.get(distinct_id).map(|(p, _)| &self.persons[p])
    }
}

/// Writes person rows as PostHog's ingestion does (`person`, PostHog's real DDL):
/// (uuid, team, properties, identified, deleted, version).
pub fn insert_persons(engine: &super::ClickHouse, rows: &[(&str, u64, Value, bool, bool, u64)]) {
    let lines: Vec<String> = rows
        .iter()
        .map(|(id, team, properties, identified, deleted, version)| {
            json!({"id": id, "created_at": "2021-05-01 10:00:00", "team_id": team, "properties": properties.to_string(),
                   "is_identified": *identified as u8, "is_deleted": *deleted as u8, "version": version,
                   "_timestamp": "2021-05-01 10:00:00", "_offset": 0})
            .to_string()
        })
        .collect();
    engine.query(&format!("INSERT INTO default.person FORMAT JSONEachRow\n{}", lines.join("\n")));
}

/// Writes distinct id rows (`person_distinct_id2`): (distinct id, person uuid, team,
/// deleted, version).
pub fn insert_distinct_ids(engine: &super::ClickHouse, rows: &[(&str, &str, u64, bool, i64)]) {
    let lines: Vec<String> = rows
        .iter()
        .map(|(distinct_id, person, team, deleted, version)| {
            json!({"team_id": team, "distinct_id": distinct_id, "person_id": person, "is_deleted": *deleted as u8,
                   "version": version, "_timestamp": "2021-05-01 10:00:00", "_offset": 0, "_partition": 0})
            .to_string()
        })
        .collect();
    engine.query(&format!("INSERT INTO default.person_distinct_id2 FORMAT JSONEachRow\n{}", lines.join("\n")));
}

/// HogQL's `persons` and `person_distinct_ids` of project `team` as the engine's SQL:
/// each row at its highest version, the deleted left out (as PostHog resolves them).
pub fn hogql_tables(query: &str, team: u64) -> String {
    query
        .replace(
            " FROM persons ",
            &format!(
                " FROM (SELECT id, argMax(p.properties, p.version) AS properties, argMax(p.is_identified, p.version) \
                 AS is_identified, argMax(p.created_at, p.version) AS created_at FROM default.person AS p WHERE \
                 p.team_id = {team} GROUP BY id HAVING argMax(p.is_deleted, p.version) = 0) "
            ),
        )
        .replace(
            " FROM person_distinct_ids ",
            &format!(
                " FROM (SELECT distinct_id, argMax(d.person_id, d.version) AS person_id FROM \
                 default.person_distinct_id2 AS d WHERE d.team_id = {team} GROUP BY distinct_id HAVING \
                 argMax(d.is_deleted, d.version) = 0) "
            ),
        )
}

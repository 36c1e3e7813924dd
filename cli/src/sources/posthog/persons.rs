//! A PostHog's persons as a source: every person of the team that is not deleted, with
//! its current properties and every distinct id that belongs to it now, in pages
//! ordered by the person's uuid (compared by the engine, which orders uuids its own way).
//!
//! From ClickHouse: PostHog's `person` and `person_distinct_id2` tables are
//! ReplacingMergeTrees on `version` whose older rows stay until a background merge, so
//! each person is the row of its highest version (a deletion is a row of a higher
//! version with `is_deleted`), and each distinct id belongs to the person of its own
//! highest version (a merge moves it by writing a row of a higher version). From the
//! Query API: HogQL's `persons` and `person_distinct_ids`, which PostHog resolves so.

use std::collections::BTreeMap;

use serde_json::Value;

use super::clickhouse::{identifier, json_count, quoted, ClickHouse};
use crate::posthog_api::client::{QueryApiClient, Reply};
use crate::shared::retry::ReadError;

/// PostHog's cap on rows a Query API answer holds.
const MOST_ROWS: usize = 50_000;

/// One person as the source holds it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// The source's person uuid (the destination gives the person one of its own).
    pub id: String,
    /// The source's version of the person row (0 from the Query API, which hides it).
    pub version: u64,
    pub is_identified: bool,
    /// Its properties, a JSON object.
    pub properties: serde_json::Map<String, Value>,
    /// Every distinct id that belongs to it now, sorted.
    pub distinct_ids: Vec<String>,
}

impl Person {
    /// What a rerun compares to tell whether the person changed since it was sent:
    /// its version, properties and distinct ids (adding a distinct id does not raise a
    /// person's version in PostHog).
    pub fn digest(&self) -> String {
        let fingerprint = serde_json::json!(["person", self.id, self.version, self.properties, self.distinct_ids]);
        migrator3000::event_id::derive(&fingerprint)
    }
}

/// A source of persons.
pub trait PersonSource {
    /// Up to `limit` persons after the person `after` (from the first when `None`), in
    /// the source's order of person uuids; fewer only at the end.
    fn persons_after(&mut self, after: Option<&str>, limit: usize) -> Result<PersonPage, ReadError>;
    fn describe(&self) -> String;
}

/// A page of persons.
#[derive(Debug, Default)]
pub struct PersonPage {
    /// The persons with at least one distinct id.
    pub persons: Vec<Person>,
    /// The last person uuid read (the next page starts after it); `None`: the end.
    pub last: Option<String>,
    /// Persons read that no distinct id names (nothing can name them at the destination).
    pub without_ids: u64,
    /// Persons read, with or without distinct ids.
    pub read: usize,
}

impl PersonPage {
    fn of(persons: Vec<Person>, owners: Vec<(String, String)>) -> PersonPage {
        let read = persons.len();
        let last = persons.last().map(|p| p.id.clone());
        let persons = with_ids(persons, owners);
        PersonPage { without_ids: (read - persons.len()) as u64, persons, last, read }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A person's `properties` column: a JSON object as text ({} when it is not one).
fn properties_of(value: &Value) -> serde_json::Map<String, Value> {
    match value {
        Value::String(s) => serde_json::from_str::<Value>(s).ok(),
        other => Some(other.clone()),
    }
    .and_then(|v| match v {
        Value::Object(map) => Some(map),
        _ => None,
    })
    .unwrap_or_default()
}

fn unreadable(what: &str, text: &str) -> ReadError {
    ReadError::Transient {
        message: format!(
            "the source's answer for {what} is not what was asked: {}",
            text.chars().take(200).collect::<String>()
        ),
        retry_after_seconds: None,
    }
}

/// Each person of `persons` given its distinct ids out of `(distinct_id, owner)` rows
/// (rows of persons not in the page are left out); persons without any are dropped:
/// nothing can name them at the destination.
fn with_ids(persons: Vec<Person>, owners: impl IntoIterator<Item = (String, String)>) -> Vec<Person> {
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (distinct_id, owner) in owners {
        by_id.entry(owner).or_default().push(distinct_id);
    }
    persons
        .into_iter()
        .filter_map(|mut person| {
            let mut ids = by_id.remove(&person.id)?;
            ids.sort();
            ids.dedup();
            person.distinct_ids = ids;
            Some(person)
        })
        .collect()
}

/// The persons of a team in the source's ClickHouse.
pub struct ClickHousePersons {
    pub clickhouse: ClickHouse,
}

impl ClickHousePersons {
    /// A page of persons: for each person uuid the row of its highest version, the
    /// deleted left out, in the engine's order of uuids.
    pub fn persons_query(&self, after: Option<&str>, limit: usize) -> String {
        let c = &self.clickhouse;
        // `pid` and not `id`: an alias named as a column would stand for it in WHERE.
        format!(
            "SELECT toString(id) AS pid, argMax(properties, version) AS props, max(version) AS v, \
             argMax(is_identified, version) AS identified FROM {}.person WHERE team_id = {}{} GROUP BY id \
             HAVING argMax(is_deleted, version) = 0 ORDER BY id LIMIT {limit} FORMAT JSONEachRow",
            identifier(&c.database),
            c.team_id,
            after.map_or(String::new(), |a| format!(" AND id > toUUID({})", quoted(a)))
        )
    }

    /// Who owns, now, every distinct id that ever belonged to a person between `first`
    /// and `last` (the page's uuids, in the engine's order): a distinct id moved to a
    /// person of another page is read with its new owner, which the page then leaves out.
    pub fn distinct_ids_query(&self, first: &str, last: &str) -> String {
        let c = &self.clickhouse;
        format!(
            "SELECT distinct_id, toString(argMax(person_id, version)) AS owner FROM {db}.person_distinct_id2 \
             WHERE team_id = {team} AND distinct_id IN (SELECT distinct_id FROM {db}.person_distinct_id2 WHERE \
             team_id = {team} AND person_id >= toUUID({first}) AND person_id <= toUUID({last})) GROUP BY distinct_id \
             HAVING argMax(is_deleted, version) = 0 FORMAT JSONEachRow",
            db = identifier(&c.database),
            team = c.team_id,
            first = quoted(first),
            last = quoted(last)
        )
    }
}

impl ClickHousePersons {
    /// A missing table of the persons step is named as such, not as the events' table.
    fn about_tables(&self, error: ReadError) -> ReadError {
        match error {
            ReadError::Fatal(said) if said.starts_with("ClickHouse has no table") => ReadError::Fatal(format!(
                "ClickHouse has no person tables {db}.person and {db}.person_distinct_id2 for the persons step \
                 ({said}); check --clickhouse-database, or leave the persons out with --persons skip",
                db = self.clickhouse.database
            )),
            other => other,
        }
    }
}

impl PersonSource for ClickHousePersons {
    fn persons_after(&mut self, after: Option<&str>, limit: usize) -> Result<PersonPage, ReadError> {
        let answer = self.clickhouse.query(&self.persons_query(after, limit)).map_err(|e| self.about_tables(e))?;
        let mut persons = Vec::new();
        for line in answer.lines().filter(|l| !l.trim().is_empty()) {
            let row: Value = serde_json::from_str(line).map_err(|_| unreadable("persons", line))?;
            persons.push(Person {
                id: text(&row["pid"]),
                version: json_count(&row["v"]).ok_or_else(|| unreadable("persons", line))?,
                is_identified: json_count(&row["identified"]).unwrap_or(0) != 0,
                properties: properties_of(&row["props"]),
                distinct_ids: Vec::new(),
            });
        }
        let (Some(first), Some(last)) = (persons.first(), persons.last()) else { return Ok(PersonPage::default()) };
        let answer =
            self.clickhouse.query(&self.distinct_ids_query(&first.id, &last.id)).map_err(|e| self.about_tables(e))?;
        let mut owners = Vec::new();
        for line in answer.lines().filter(|l| !l.trim().is_empty()) {
            let row: Value = serde_json::from_str(line).map_err(|_| unreadable("distinct ids", line))?;
            owners.push((text(&row["distinct_id"]), text(&row["owner"])));
        }
        Ok(PersonPage::of(persons, owners))
    }

    fn describe(&self) -> String {
        format!(
            "ClickHouse at {} ({}.person, team {})",
            self.clickhouse.url, self.clickhouse.database, self.clickhouse.team_id
        )
    }
}

/// The persons of a project through its Query API (HogQL's `persons`, whose rows PostHog
/// has already resolved to their highest version, the deleted left out).
pub struct QueryApiPersons {
    pub client: QueryApiClient,
}

impl QueryApiPersons {
    pub fn persons_query(after: Option<&str>, limit: usize) -> String {
        format!(
            "SELECT toString(id), properties, is_identified FROM persons WHERE {} ORDER BY id LIMIT {}",
            after.map_or("true".to_string(), |a| format!("id > toUUID({})", quoted(a))),
            limit.clamp(1, MOST_ROWS)
        )
    }

    /// A page of the distinct ids of the persons between `first` and `last`, after the
    /// distinct id `after`.
    pub fn distinct_ids_query(first: &str, last: &str, after: Option<&str>) -> String {
        format!(
            "SELECT distinct_id, toString(person_id) FROM person_distinct_ids WHERE person_id >= toUUID({}) AND \
             person_id <= toUUID({}){} ORDER BY distinct_id LIMIT {MOST_ROWS}",
            quoted(first),
            quoted(last),
            after.map_or(String::new(), |a| format!(" AND distinct_id > {}", quoted(a)))
        )
    }

    fn rows(&mut self, hogql: &str) -> Result<Vec<Vec<Value>>, ReadError> {
        match self.client.run(hogql)? {
            Reply::Done(text) => QueryApiClient::rows(&text),
            Reply::TooMuch(status, said) => Err(ReadError::Transient {
                message: format!("the Query API gave up on a page of persons (HTTP {status} {said})"),
                retry_after_seconds: None,
            }),
        }
    }
}

impl PersonSource for QueryApiPersons {
    fn persons_after(&mut self, after: Option<&str>, limit: usize) -> Result<PersonPage, ReadError> {
        let persons: Vec<Person> = self
            .rows(&Self::persons_query(after, limit))?
            .iter()
            .map(|row| Person {
                id: row.first().map(text).unwrap_or_default(),
                version: 0,
                is_identified: row.get(2).is_some_and(|v| v.as_bool().unwrap_or(false) || v.as_u64() == Some(1)),
                properties: row.get(1).map(properties_of).unwrap_or_default(),
                distinct_ids: Vec::new(),
            })
            .collect();
        let (Some(first), Some(last)) = (persons.first(), persons.last()) else { return Ok(PersonPage::default()) };
        let (first, last) = (first.id.clone(), last.id.clone());
        let mut owners: Vec<(String, String)> = Vec::new();
        loop {
            let after = owners.last().map(|(id, _)| id.clone());
            let rows = self.rows(&Self::distinct_ids_query(&first, &last, after.as_deref()))?;
            let full = rows.len() >= MOST_ROWS;
            owners.extend(
                rows.iter().map(|r| (r.first().map(text).unwrap_or_default(), r.get(1).map(text).unwrap_or_default())),
            );
            if !full {
                break;
            }
        }
        Ok(PersonPage::of(persons, owners))
    }

    fn describe(&self) -> String {
        self.client.describe()
    }
}

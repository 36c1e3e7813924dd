//! Amplitude's groups: `groups` names an event's groups (`{"company": ["acme"]}`, or a
//! single key), `group_properties` holds their properties by type and key
//! (`{"company": {"acme": {"plan": "pro"}}}`; a line of one group may hold them flat under
//! the type). PostHog keeps group properties from `$groupidentify` events
//! (`$group_type`, `$group_key`, `$group_set`), sent once per group and change.

use std::collections::BTreeMap;

use migrator3000::event_id;
use serde_json::{json, Map, Value};

use super::fields::text;

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub kind: String,
    pub key: String,
    pub properties: Map<String, Value>,
}

impl Group {
    /// What stays the same while the group's properties do (their keys sorted).
    pub fn digest(&self) -> String {
        let sorted: BTreeMap<&String, &Value> = self.properties.iter().collect();
        event_id::derive(&json!(["amplitude group", self.kind, self.key, sorted]))
    }

    /// The `$groupidentify` that sets the group's properties, as PostHog's SDKs send it
    /// (a server SDK without a user sends it as `$<type>_<key>`).
    pub fn identify(&self, distinct_id: Option<&str>, timestamp: &str) -> Value {
        let distinct_id = distinct_id.map_or_else(|| format!("${}_{}", self.kind, self.key), str::to_string);
        json!({
            "uuid": event_id::derive(&json!(["amplitude $groupidentify", self.digest(), timestamp])),
            "event": "$groupidentify",
            "distinct_id": distinct_id,
            "timestamp": timestamp,
            "properties": {"$group_type": self.kind, "$group_key": self.key, "$group_set": self.properties},
        })
    }
}

fn keys(value: &Value) -> Vec<String> {
    match value {
        Value::Array(keys) => keys.iter().filter_map(|k| text(Some(k))).collect(),
        other => text(Some(other)).into_iter().collect(),
    }
}

/// The groups a line names, with the properties it carries for each.
pub fn of_line(line: &Map<String, Value>) -> Vec<Group> {
    let Some(Value::Object(groups)) = line.get("groups") else { return Vec::new() };
    let properties = match line.get("group_properties") {
        Some(Value::Object(p)) => p.clone(),
        _ => Map::new(),
    };
    let mut out = Vec::new();
    for (kind, value) in groups {
        let keys = keys(value);
        let of_kind = match properties.get(kind) {
            Some(Value::Object(p)) => p.clone(),
            _ => Map::new(),
        };
        let nested = keys.iter().any(|k| of_kind.get(k).is_some_and(Value::is_object));
        for key in &keys {
            let properties = match of_kind.get(key) {
                Some(Value::Object(p)) => p.clone(),
                _ if !nested && keys.len() == 1 => of_kind.clone(),
                _ => Map::new(),
            };
            out.push(Group { kind: kind.clone(), key: key.clone(), properties });
        }
    }
    out
}

/// `$groups` of an event: the first key of each of its group types.
pub fn of_event(line: &Map<String, Value>) -> Option<Value> {
    let Some(Value::Object(groups)) = line.get("groups") else { return None };
    let first: Map<String, Value> = groups
        .iter()
        .filter_map(|(kind, keys)| Some((kind.clone(), Value::String(self::keys(keys).first()?.clone()))))
        .collect();
    (!first.is_empty()).then_some(Value::Object(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn groups_and_their_properties_come_nested_flat_or_not_at_all() {
        let nested = line(json!({
            "groups": {"company": ["acme", "globex"], "team": "core"},
            "group_properties": {"company": {"acme": {"plan": "pro"}, "globex": {"plan": "free"}}},
        }));
        let found = of_line(&nested);
        assert_eq!(found.len(), 3);
        assert_eq!(found.iter().find(|g| g.key == "globex").unwrap().properties, line(json!({"plan": "free"})));
        assert!(found.iter().find(|g| g.key == "core").unwrap().properties.is_empty());
        let flat = line(json!({"groups": {"company": "acme"}, "group_properties": {"company": {"plan": "pro"}}}));
        assert_eq!(of_line(&flat)[0].properties, line(json!({"plan": "pro"})));
        assert!(of_line(&line(json!({"groups": null}))).is_empty());
        assert_eq!(of_event(&nested), Some(json!({"company": "acme", "team": "core"})));
    }

    #[test]
    fn a_groupidentify_has_a_uuid_of_the_group_its_properties_and_its_time() {
        let group = |plan: &str| Group {
            kind: "company".into(),
            key: "acme".into(),
            properties: line(json!({"plan": plan, "seats": 4})),
        };
        let event = group("pro").identify(None, "2024-03-01T00:00:00Z");
        assert_eq!(event["distinct_id"], "$company_acme");
        assert_eq!(event["properties"]["$group_set"], json!({"plan": "pro", "seats": 4}));
        assert_eq!(event["uuid"], group("pro").identify(Some("u1"), "2024-03-01T00:00:00Z")["uuid"]);
        assert_ne!(event["uuid"], group("pro").identify(None, "2030-01-01T00:00:00Z")["uuid"]);
        assert_ne!(event["uuid"], group("free").identify(None, "2024-03-01T00:00:00Z")["uuid"]);
        assert_eq!(group("pro").digest(), group("pro").digest());
    }
}

//! What a kind of object is to `metadata`: one implementation of `Kind` per kind, each in
//! a module of its own (`actions`, `cohorts`, `feature_flags`), listed in `mod.rs`'s
//! `KINDS`. The pipeline does the rest: order, mapping, creates, updates, conflicts.

use std::collections::HashMap;

use serde_json::Value;

use crate::posthog_api::client::QueryApiClient;
use crate::posthog_api::rest::{Body, RestError};

/// A reference from one object to another: `kind` (a `Kind::name`) and the id it has
/// where the referring object is (the source).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ref {
    pub kind: &'static str,
    pub id: String,
}

/// Every object listed at the source, by kind and id.
pub type Objects = HashMap<(&'static str, String), Value>;

pub trait Kind: Sync {
    /// Its name in `--only`, in the state file and in the table: `actions`.
    fn name(&self) -> &'static str;
    /// Its path in a project's API: `actions/`.
    fn path(&self) -> String {
        format!("{}/", self.name())
    }
    /// The lists that together hold every object of the kind (experiments: the archived
    /// ones are only listed when asked for).
    fn list_paths(&self) -> Vec<String> {
        vec![self.path()]
    }
    /// The kinds its objects may refer to (read at the source even when not copied).
    fn refers_to(&self) -> &'static [&'static str];
    /// Its page in PostHog's app, inside `/project/:id/`.
    fn app_path(&self, id: &str) -> String;
    /// How the report names an object.
    fn label(&self, object: &Value) -> String;
    /// What makes an object the same one at the destination (a flag's key, an action's
    /// name): an existing object with it is matched, not duplicated.
    fn natural_key(&self, object: &Value) -> Option<String>;
    /// The objects it refers to, with their source ids.
    fn references(&self, object: &Value) -> Vec<Ref>;
    /// Why an object whose references all resolve still cannot be copied.
    fn unfit(&self, _object: &Value, _source: &Objects) -> Option<String> {
        None
    }
    /// What the source holds beyond the list (a static cohort's members), kept in the
    /// object under `_extra` before `copied` reads it.
    fn extra(&self, _source: &mut QueryApiClient, _object: &Value) -> Result<Option<Value>, RestError> {
        Ok(None)
    }
    /// The fields copied, every reference rewritten by `map` (a source `Ref` to the
    /// destination's id).
    fn copied(&self, object: &Value, map: &dyn Fn(&Ref) -> String) -> Value;
    /// The copied fields of an object as the destination holds it (what a later run
    /// compares to tell a change made there).
    fn compared(&self, object: &Value) -> Value;
    /// The request that creates a copy.
    fn create_body(&self, copied: &Value) -> Body {
        Body::Json(copied.clone())
    }
    /// The request that brings a copy up to date.
    fn update_body(&self, copied: &Value) -> Body {
        Body::Json(copied.clone())
    }
    /// What is sent after a create or an update of the copy `id` (a dashboard's text
    /// tiles, an insight's tile layouts: PostHog takes them in other requests).
    fn after(&self, _destination: &mut QueryApiClient, _id: &str, _copied: &Value) -> Result<(), RestError> {
        Ok(())
    }
}

/// The fields `names` of an object, those it has (missing ones as null).
pub fn fields(object: &Value, names: &[&str]) -> serde_json::Map<String, Value> {
    names.iter().map(|n| (n.to_string(), object.get(*n).cloned().unwrap_or(Value::Null))).collect()
}

/// An id as PostHog writes it (a number, or a number in a string).
pub fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => Some(s.clone()),
        _ => None,
    }
}

/// The references an object holds in fields of its own: each `(field, kind)` of `refs`
/// whose field holds an id.
pub fn field_refs(object: &Value, refs: &[(&str, &'static str)]) -> Vec<Ref> {
    refs.iter().filter_map(|(field, kind)| Some(Ref { kind, id: id_text(&object[*field])? })).collect()
}

/// The fields `names` of an object, the ids in its reference fields `refs` (each one of
/// `names`) rewritten by `map`.
pub fn fields_mapped(
    object: &Value,
    names: &[&str],
    refs: &[(&str, &'static str)],
    map: &dyn Fn(&Ref) -> String,
) -> serde_json::Map<String, Value> {
    let mut out = fields(object, names);
    for (field, kind) in refs {
        if let Some(id) = id_text(&out[*field]) {
            set_id(out.get_mut(*field).expect("a field of FIELDS"), &map(&Ref { kind, id }));
        }
    }
    out
}

/// An id rewritten, in the type it had.
pub fn set_id(value: &mut Value, id: &str) {
    *value = match (&*value, id.parse::<u64>()) {
        (Value::Number(_), Ok(n)) => Value::from(n),
        _ => Value::String(id.to_string()),
    };
}

/// Every property filter of a filter tree: nested groups (`{"type": "AND" | "OR",
/// "values": [...]}`), lists, and the property objects (anything else with a `type`).
pub fn each_property(value: &mut Value, f: &mut dyn FnMut(&mut serde_json::Map<String, Value>)) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|item| each_property(item, f)),
        Value::Object(object) => {
            let group = matches!(object.get("type").and_then(Value::as_str), Some("AND" | "OR"))
                && object.get("values").is_some_and(Value::is_array);
            if group {
                if let Some(values) = object.get_mut("values") {
                    each_property(values, f);
                }
            } else if object.contains_key("type") {
                f(object);
            }
        }
        _ => {}
    }
}

/// How a kind finds (and rewrites) the references in one property.
pub type Rewrite = fn(&mut serde_json::Map<String, Value>, &mut dyn FnMut(&Ref, &mut Value));

/// The references of a filter tree's properties, as `rewrite` finds them.
pub fn property_refs(tree: &Value, rewrite: Rewrite) -> Vec<Ref> {
    let mut tree = tree.clone();
    let mut out = Vec::new();
    each_property(&mut tree, &mut |property| rewrite(property, &mut |r, _| out.push(r.clone())));
    out
}

/// A filter tree with its properties' references rewritten by `map`.
pub fn property_map(tree: &Value, rewrite: Rewrite, map: &dyn Fn(&Ref) -> String) -> Value {
    let mut tree = tree.clone();
    each_property(&mut tree, &mut |property| rewrite(property, &mut |r, at| set_id(at, &map(r))));
    tree
}

/// The references PostHog's properties hold: a cohort (`type: cohort`, its id in
/// `value`), an action in a behavioural filter (`event_type: actions`, its id in `key`;
/// `seq_event_type: actions`, in `seq_event`), a flag a flag depends on (`type: flag`,
/// its id in `key`). `visit` sees each reference and the value holding it.
pub fn property_references(property: &mut serde_json::Map<String, Value>, visit: &mut dyn FnMut(&Ref, &mut Value)) {
    let kind = property.get("type").and_then(Value::as_str).unwrap_or("").to_string();
    let mut at = |field: &str, to: &'static str, property: &mut serde_json::Map<String, Value>| {
        if let Some(value) = property.get_mut(field) {
            if let Some(id) = id_text(value) {
                visit(&Ref { kind: to, id }, value);
            }
        }
    };
    match kind.as_str() {
        "cohort" => at("value", "cohorts", property),
        "flag" => at("key", "feature_flags", property),
        "behavioral" => {
            if property.get("event_type").and_then(Value::as_str) == Some("actions") {
                at("key", "actions", property);
            }
            if property.get("seq_event_type").and_then(Value::as_str) == Some("actions") {
                at("seq_event", "actions", property);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_in_nested_groups_are_found_and_rewritten_in_their_type() {
        let tree = json!({"type": "OR", "values": [{"type": "AND", "values": [
            {"key": "id", "type": "cohort", "value": 3},
            {"key": 5, "type": "behavioral", "value": "performed_event", "event_type": "actions"},
            {"key": "$pageview", "type": "behavioral", "value": "performed_event_sequence", "event_type": "events",
             "seq_event": "9", "seq_event_type": "actions"},
            {"key": "email", "type": "person", "value": "3"}
        ]}]});
        let refs = property_refs(&tree, property_references);
        assert_eq!(
            refs,
            vec![
                Ref { kind: "cohorts", id: "3".into() },
                Ref { kind: "actions", id: "5".into() },
                Ref { kind: "actions", id: "9".into() }
            ]
        );
        let mapped = property_map(&tree, property_references, &|r| format!("{}0", r.id));
        let values = &mapped["values"][0]["values"];
        assert_eq!(
            (&values[0]["value"], &values[1]["key"], &values[2]["seq_event"]),
            (&json!(30), &json!(50), &json!("90"))
        );
        assert_eq!(values[3]["value"], json!("3"), "a person property's value is no reference");
    }
}

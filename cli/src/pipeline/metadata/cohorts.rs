//! Cohorts (`posthog/api/cohort.py`): dynamic ones by their `filters` (a tree of groups
//! whose properties may name another cohort, or an action in a behavioural filter; an
//! older cohort has only `groups`, with `action_id`s), static ones by their members. A
//! static cohort's members are read at the source by person
//! (`GET cohorts/:id/persons/`, paged) and uploaded at the destination as PostHog's
//! cohort upload takes them: a `csv` file of one distinct id a line in a multipart form,
//! which PostHog resolves to the destination's persons (those not there are left out).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::kind::{fields, id_text, property_map, property_references, property_refs, set_id, Kind, Objects, Ref};
use crate::posthog_api::client::QueryApiClient;
use crate::posthog_api::rest::{Body, RestError};

pub struct Cohorts;

/// Whether a cohort's filters hold an event-based (behavioural) condition, itself or
/// through a cohort it names: PostHog will not evaluate such a cohort in a flag.
pub fn behavioural(cohort: &Value, source: &Objects, seen: &mut BTreeSet<String>) -> bool {
    let mut found = false;
    let mut nested = Vec::new();
    let mut filters = cohort["filters"]["properties"].clone();
    super::kind::each_property(&mut filters, &mut |property| match property.get("type").and_then(Value::as_str) {
        Some("behavioral") => found = true,
        Some("cohort") => nested.extend(property.get("value").and_then(id_text)),
        _ => {}
    });
    found
        || nested.into_iter().any(|id| {
            seen.insert(id.clone())
                && source.get(&("cohorts", id)).is_some_and(|inner| behavioural(inner, source, seen))
        })
}

fn legacy_groups(object: &Value) -> bool {
    object["filters"].is_null() && object["groups"].as_array().is_some_and(|g| !g.is_empty())
}

/// An older cohort's `groups`: each an `action_id`, or `properties` naming cohorts.
fn groups_refs(object: &Value) -> Vec<Ref> {
    let mut out = Vec::new();
    for group in object["groups"].as_array().into_iter().flatten() {
        out.extend(group.get("action_id").and_then(id_text).map(|id| Ref { kind: "actions", id }));
        out.extend(property_refs(&group["properties"], property_references));
    }
    out
}

fn members_csv(members: &Value) -> Vec<u8> {
    let mut csv = String::new();
    for id in members.as_array().into_iter().flatten().filter_map(Value::as_str) {
        // One column: a distinct id a line (quoted when it holds a comma or a quote).
        if id.contains([',', '"', '\n', '\r']) {
            csv.push_str(&format!("\"{}\"\n", id.replace('"', "\"\"")));
        } else {
            csv.push_str(id);
            csv.push('\n');
        }
    }
    csv.into_bytes()
}

fn static_form(copied: &Value) -> Option<Body> {
    let members = copied.get("members")?;
    if members.as_array().is_none_or(Vec::is_empty) {
        return None;
    }
    Some(Body::Multipart {
        fields: vec![
            ("name".into(), copied["name"].as_str().unwrap_or("").into()),
            ("description".into(), copied["description"].as_str().unwrap_or("").into()),
            ("is_static".into(), "true".into()),
        ],
        file_field: "csv".into(),
        file_name: "members.csv".into(),
        file: members_csv(members),
    })
}

impl Kind for Cohorts {
    fn name(&self) -> &'static str {
        "cohorts"
    }

    fn refers_to(&self) -> &'static [&'static str] {
        &["actions", "cohorts"]
    }

    fn app_path(&self, id: &str) -> String {
        format!("cohorts/{id}")
    }

    fn label(&self, object: &Value) -> String {
        let name = object["name"].as_str().unwrap_or("(no name)");
        if object["is_static"].as_bool() == Some(true) {
            format!("{name} (static)")
        } else {
            name.to_string()
        }
    }

    fn natural_key(&self, object: &Value) -> Option<String> {
        object["name"].as_str().map(str::to_string)
    }

    fn references(&self, object: &Value) -> Vec<Ref> {
        if object["is_static"].as_bool() == Some(true) {
            return Vec::new();
        }
        let mut refs = property_refs(&object["filters"]["properties"], property_references);
        if legacy_groups(object) {
            refs.extend(groups_refs(object));
        }
        refs
    }

    fn extra(&self, source: &mut QueryApiClient, object: &Value) -> Result<Option<Value>, RestError> {
        if object["is_static"].as_bool() != Some(true) {
            return Ok(None);
        }
        let id = id_text(&object["id"]).unwrap_or_default();
        let persons = source.list(&format!("cohorts/{id}/persons/"))?;
        let members: BTreeSet<String> = persons
            .iter()
            .flat_map(|p| p["distinct_ids"].as_array().cloned().unwrap_or_default())
            .filter_map(|d| d.as_str().map(str::to_string))
            .collect();
        Ok(Some(json!(members)))
    }

    fn copied(&self, object: &Value, map: &dyn Fn(&Ref) -> String) -> Value {
        let is_static = object["is_static"].as_bool() == Some(true);
        let mut out = fields(object, &["name", "description"]);
        out.insert("is_static".into(), Value::Bool(is_static));
        if is_static {
            if let Some(members) = object.get("_extra") {
                out.insert("members".into(), members.clone());
            }
        } else if legacy_groups(object) {
            let mut groups = object["groups"].clone();
            for group in groups.as_array_mut().into_iter().flatten() {
                if let Some(action) = group.get("action_id").and_then(id_text) {
                    set_id(&mut group["action_id"], &map(&Ref { kind: "actions", id: action }));
                }
                if let Some(properties) = group.get("properties").cloned() {
                    group["properties"] = property_map(&properties, property_references, map);
                }
            }
            out.insert("groups".into(), groups);
        } else {
            let mut filters = object["filters"].clone();
            if let Some(tree) = filters.get("properties").cloned() {
                filters["properties"] = property_map(&tree, property_references, map);
            }
            out.insert("filters".into(), filters);
        }
        Value::Object(out)
    }

    fn compared(&self, object: &Value) -> Value {
        let mut object = object.clone();
        if let Some(o) = object.as_object_mut() {
            o.remove("_extra");
        }
        self.copied(&object, &|r| r.id.clone())
    }

    fn create_body(&self, copied: &Value) -> Body {
        static_form(copied).unwrap_or_else(|| Body::Json(without_members(copied)))
    }

    fn update_body(&self, copied: &Value) -> Body {
        self.create_body(copied)
    }
}

fn without_members(copied: &Value) -> Value {
    let mut body = copied.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("members");
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cohort_is_behavioural_through_the_cohorts_it_names() {
        let mut source = Objects::new();
        let events = json!({"id": 1, "filters": {"properties": {"type": "OR", "values": [
            {"key": "$pageview", "type": "behavioral", "value": "performed_event", "event_type": "events"}]}}});
        let people = json!({"id": 2, "filters": {"properties": {"type": "OR", "values": [
            {"key": "email", "type": "person", "value": "x"}]}}});
        let nesting = json!({"id": 3, "filters": {"properties": {"type": "AND", "values": [
            {"key": "id", "type": "cohort", "value": 1}]}}});
        source.insert(("cohorts", "1".into()), events.clone());
        source.insert(("cohorts", "2".into()), people.clone());
        assert!(behavioural(&events, &source, &mut BTreeSet::new()));
        assert!(!behavioural(&people, &source, &mut BTreeSet::new()));
        assert!(behavioural(&nesting, &source, &mut BTreeSet::new()));
    }

    #[test]
    fn a_static_cohort_is_uploaded_as_a_csv_of_distinct_ids() {
        let copied = json!({"name": "VIPs", "description": "", "is_static": true, "members": ["a", "b,c"]});
        let Body::Multipart { file, fields, .. } = Cohorts.create_body(&copied) else { panic!("not a form") };
        assert_eq!(String::from_utf8(file).unwrap(), "a\n\"b,c\"\n");
        assert!(fields.contains(&("is_static".into(), "true".into())));
        let empty = json!({"name": "None yet", "description": "", "is_static": true, "members": []});
        assert!(matches!(Cohorts.create_body(&empty), Body::Json(body) if body.get("members").is_none()));
    }
}

//! Insights (`posthog/api/insight.py`): a name, a description, the `query` (a tree of
//! query nodes: a series node `{"kind": "ActionsNode", "id": <action id>}`, property
//! filters anywhere in it) and, for older insights, the legacy `filters` (series in
//! `actions`/`events`/`exclusions`, `{"id": <action id>, "type": "actions"}`; property
//! filters `{"type": "cohort", "value": <cohort id>}`; a breakdown by cohort,
//! `breakdown_type: cohort` with the cohort ids in `breakdown`). Every such id is
//! remapped, wherever in the tree it is.
//!
//! An insight is put on a dashboard as PostHog's own frontend does it: its `dashboards`
//! field (the ids of the dashboards it is on) makes the tiles; a dashboard's create
//! does not take insight tiles, and its PATCH of `tiles` only changes existing ones. So
//! insights refer to dashboards (copied first), and once an insight is on its
//! dashboards its tiles' `layouts` and `color` (read in the source dashboards' detail,
//! no list has them) are set by a PATCH of each dashboard's `tiles` with the tile's id.

use serde_json::{json, Map, Value};

use super::kind::{fields, id_text, set_id, Kind, Ref};
use crate::posthog_api::client::QueryApiClient;
use crate::posthog_api::rest::{Body, RestError};

pub struct Insights;

const FIELDS: &[&str] = &["name", "description", "query", "filters", "favorited"];

/// Every reference in a query or legacy filters tree, each with the value holding it.
pub fn tree_references(value: &mut Value, visit: &mut dyn FnMut(&Ref, &mut Value)) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|item| tree_references(item, visit)),
        Value::Object(object) => {
            let kind = object.get("kind").and_then(Value::as_str) == Some("ActionsNode");
            let typed = object.get("type").and_then(Value::as_str).map(str::to_string);
            if kind || typed.as_deref() == Some("actions") {
                at(object, "id", "actions", visit);
            }
            if typed.as_deref() == Some("cohort") {
                at(object, "value", "cohorts", visit);
            }
            let by_cohort = object.get("breakdown_type").and_then(Value::as_str) == Some("cohort");
            if by_cohort {
                match object.get_mut("breakdown") {
                    Some(Value::Array(ids)) => ids.iter_mut().for_each(|v| cohort(v, visit)),
                    Some(v) => cohort(v, visit),
                    None => {}
                }
            }
            for (key, inner) in object.iter_mut() {
                if (inner.is_object() || inner.is_array()) && !(by_cohort && key == "breakdown") {
                    tree_references(inner, visit);
                }
            }
        }
        _ => {}
    }
}

fn at(object: &mut Map<String, Value>, field: &str, kind: &'static str, visit: &mut dyn FnMut(&Ref, &mut Value)) {
    if let Some(value) = object.get_mut(field) {
        if let Some(id) = id_text(value) {
            visit(&Ref { kind, id }, value);
        }
    }
}

fn cohort(value: &mut Value, visit: &mut dyn FnMut(&Ref, &mut Value)) {
    // `all` (everyone) is no cohort.
    if let Some(id) = id_text(value) {
        visit(&Ref { kind: "cohorts", id }, value);
    }
}

fn dashboards(object: &Value) -> Vec<String> {
    object["dashboards"].as_array().into_iter().flatten().filter_map(id_text).collect()
}

impl Kind for Insights {
    fn name(&self) -> &'static str {
        "insights"
    }

    fn refers_to(&self) -> &'static [&'static str] {
        &["actions", "cohorts", "dashboards"]
    }

    fn app_path(&self, id: &str) -> String {
        format!("insights/{id}")
    }

    fn label(&self, object: &Value) -> String {
        match object["name"].as_str().filter(|n| !n.is_empty()) {
            Some(name) => name.to_string(),
            None => format!("(unnamed insight {})", object["short_id"].as_str().unwrap_or("")),
        }
    }

    fn natural_key(&self, object: &Value) -> Option<String> {
        object["name"].as_str().filter(|n| !n.is_empty()).map(str::to_string)
    }

    fn references(&self, object: &Value) -> Vec<Ref> {
        let mut out = Vec::new();
        for field in ["query", "filters"] {
            let mut tree = object[field].clone();
            tree_references(&mut tree, &mut |r, _| out.push(r.clone()));
        }
        out.extend(dashboards(object).into_iter().map(|id| Ref { kind: "dashboards", id }));
        out
    }

    /// The layouts and colour of the insight's tile on each dashboard it is on.
    fn extra(&self, source: &mut QueryApiClient, object: &Value) -> Result<Option<Value>, RestError> {
        let id = object["id"].clone();
        let mut tiles = Map::new();
        for dashboard in dashboards(object) {
            let detail = source.get(&format!("dashboards/{dashboard}/"))?;
            let tile = detail["tiles"].as_array().into_iter().flatten().find(|t| t["insight"]["id"] == id);
            if let Some(tile) = tile {
                tiles.insert(dashboard, json!({"layouts": tile["layouts"], "color": tile["color"]}));
            }
        }
        Ok(Some(Value::Object(tiles)))
    }

    fn copied(&self, object: &Value, map: &dyn Fn(&Ref) -> String) -> Value {
        let mut out = fields(object, FIELDS);
        for field in ["query", "filters"] {
            if let Some(tree) = out.get_mut(field) {
                tree_references(tree, &mut |r, at| set_id(at, &map(r)));
            }
        }
        let on: Vec<Value> = dashboards(object)
            .into_iter()
            .map(|id| {
                let mut v = json!(id.parse::<u64>().unwrap_or_default());
                set_id(&mut v, &map(&Ref { kind: "dashboards", id }));
                v
            })
            .collect();
        out.insert("dashboards".into(), Value::Array(on));
        if let Some(Value::Object(tiles)) = object.get("_extra") {
            let tiles: Map<String, Value> =
                tiles.iter().map(|(d, t)| (map(&Ref { kind: "dashboards", id: d.clone() }), t.clone())).collect();
            out.insert("tiles".into(), Value::Object(tiles));
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
        let mut body = copied.clone();
        if let Some(o) = body.as_object_mut() {
            o.remove("tiles");
        }
        Body::Json(body)
    }

    fn update_body(&self, copied: &Value) -> Body {
        self.create_body(copied)
    }

    fn after(&self, destination: &mut QueryApiClient, id: &str, copied: &Value) -> Result<(), RestError> {
        let Some(Value::Object(tiles)) = copied.get("tiles") else { return Ok(()) };
        for (dashboard, want) in tiles {
            let rel = format!("dashboards/{dashboard}/");
            let detail = destination.get(&rel)?;
            let tile = detail["tiles"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| id_text(&t["insight"]["id"]).as_deref() == Some(id))
                .and_then(|t| t.get("id").cloned());
            if let Some(tile) = tile {
                let patch = json!({"tiles": [{"id": tile, "layouts": want["layouts"], "color": want["color"]}]});
                destination.update(&rel, &Body::Json(patch))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_cohorts_are_found_in_queries_and_legacy_filters() {
        let insight = json!({"id": 1, "dashboards": [4],
            "query": {"kind": "InsightVizNode", "source": {"kind": "TrendsQuery",
                "series": [{"kind": "ActionsNode", "id": 7}, {"kind": "EventsNode", "event": "$pageview"}],
                "properties": {"type": "AND", "values": [{"type": "AND", "values": [
                    {"key": "id", "type": "cohort", "value": 3}]}]},
                "breakdownFilter": {"breakdown_type": "cohort", "breakdown": [5, "all"]}}},
            "filters": {"actions": [{"id": "8", "type": "actions"}], "events": [{"id": "$pageview", "type": "events"}]}});
        let mut refs = Insights.references(&insight);
        refs.sort();
        let want = [("actions", "7"), ("actions", "8"), ("cohorts", "3"), ("cohorts", "5"), ("dashboards", "4")];
        assert_eq!(refs, want.iter().map(|(k, i)| Ref { kind: k, id: i.to_string() }).collect::<Vec<_>>());
        let copied = Insights.copied(&insight, &|r| format!("{}00", r.id));
        assert_eq!(copied["query"]["source"]["series"][0]["id"], json!(700));
        assert_eq!(copied["query"]["source"]["breakdownFilter"]["breakdown"], json!([500, "all"]));
        assert_eq!(copied["filters"]["actions"][0]["id"], json!("800"));
        assert_eq!(copied["filters"]["events"][0]["id"], json!("$pageview"), "an event's name is no reference");
        assert_eq!(copied["dashboards"], json!([400]));
    }
}

//! Dashboards (`posthog/api/dashboards/dashboard.py`): a name (their natural key here),
//! a description, `pinned`, `filters` (a dictionary, else 400) and tiles. The list
//! answers the basic serializer (no tiles, no filters): the tiles are read in each
//! dashboard's detail. A create takes no tiles: insight tiles come from the insights'
//! `dashboards` field (`insights.rs`); text tiles are made by a PATCH of `tiles` with
//! `{"text": {"body"}, "layouts", "color"}` (no tile id: a new one), after the create.

use serde_json::{json, Value};

use super::kind::{fields, id_text, Kind, Ref};
use crate::posthog_api::client::QueryApiClient;
use crate::posthog_api::rest::{Body, RestError};

pub struct Dashboards;

const FIELDS: &[&str] = &["name", "description", "pinned", "filters"];

fn text_tiles(tiles: &Value) -> Vec<Value> {
    tiles
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["text"].is_object() && t["deleted"].as_bool() != Some(true))
        .map(|t| json!({"body": t["text"]["body"], "layouts": t["layouts"], "color": t["color"]}))
        .collect()
}

impl Kind for Dashboards {
    fn name(&self) -> &'static str {
        "dashboards"
    }

    fn refers_to(&self) -> &'static [&'static str] {
        &[]
    }

    fn app_path(&self, id: &str) -> String {
        format!("dashboard/{id}")
    }

    fn label(&self, object: &Value) -> String {
        object["name"].as_str().unwrap_or("(no name)").to_string()
    }

    fn natural_key(&self, object: &Value) -> Option<String> {
        object["name"].as_str().map(str::to_string)
    }

    fn references(&self, _object: &Value) -> Vec<Ref> {
        Vec::new()
    }

    /// The detail: its filters and tiles.
    fn extra(&self, source: &mut QueryApiClient, object: &Value) -> Result<Option<Value>, RestError> {
        let id = id_text(&object["id"]).unwrap_or_default();
        Ok(Some(source.get(&format!("dashboards/{id}/"))?))
    }

    fn copied(&self, object: &Value, _map: &dyn Fn(&Ref) -> String) -> Value {
        let detail = object.get("_extra").unwrap_or(object);
        let mut out = fields(detail, FIELDS);
        if !out["filters"].is_object() {
            out.insert("filters".into(), json!({}));
        }
        out.insert("text_tiles".into(), Value::Array(text_tiles(&detail["tiles"])));
        Value::Object(out)
    }

    /// What the destination's list shows of a dashboard (neither filters nor tiles).
    fn compared(&self, object: &Value) -> Value {
        Value::Object(fields(object, &["name", "description", "pinned"]))
    }

    fn create_body(&self, copied: &Value) -> Body {
        let mut body = copied.clone();
        if let Some(o) = body.as_object_mut() {
            o.remove("text_tiles");
        }
        Body::Json(body)
    }

    fn update_body(&self, copied: &Value) -> Body {
        self.create_body(copied)
    }

    /// The text tiles: those the copy has (by body) get their layouts, the others are made.
    fn after(&self, destination: &mut QueryApiClient, id: &str, copied: &Value) -> Result<(), RestError> {
        let want = copied["text_tiles"].as_array().cloned().unwrap_or_default();
        if want.is_empty() {
            return Ok(());
        }
        let rel = format!("dashboards/{id}/");
        let there = destination.get(&rel)?;
        let tiles: Vec<Value> = want
            .iter()
            .map(|tile| {
                let same = there["tiles"].as_array().into_iter().flatten().find(|t| t["text"]["body"] == tile["body"]);
                let mut patch =
                    json!({"text": {"body": tile["body"]}, "layouts": tile["layouts"], "color": tile["color"]});
                if let Some(same) = same {
                    patch["id"] = same["id"].clone();
                    patch["text"]["id"] = same["text"]["id"].clone();
                }
                patch
            })
            .collect();
        destination.update(&rel, &Body::Json(json!({ "tiles": tiles })))?;
        Ok(())
    }
}

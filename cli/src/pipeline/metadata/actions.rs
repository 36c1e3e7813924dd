//! Actions (`posthog/api/action.py`): a name (unique in a project), a description and
//! steps, each step an event with its matching (url, selector, text, href) and
//! properties, which may name a cohort. Listed in one answer, not paged.

use serde_json::{Map, Value};

use super::kind::{fields, property_map, property_references, property_refs, Kind, Ref};

pub struct Actions;

const FIELDS: &[&str] = &["name", "description", "post_to_slack", "slack_message_format"];
const STEP_FIELDS: &[&str] = &[
    "event",
    "properties",
    "selector",
    "tag_name",
    "text",
    "text_matching",
    "href",
    "href_matching",
    "url",
    "url_matching",
];

fn steps(object: &Value) -> &[Value] {
    object["steps"].as_array().map_or(&[], Vec::as_slice)
}

impl Kind for Actions {
    fn name(&self) -> &'static str {
        "actions"
    }

    fn refers_to(&self) -> &'static [&'static str] {
        &["cohorts"]
    }

    fn app_path(&self, id: &str) -> String {
        format!("data-management/actions/{id}")
    }

    fn label(&self, object: &Value) -> String {
        object["name"].as_str().unwrap_or("(no name)").to_string()
    }

    fn natural_key(&self, object: &Value) -> Option<String> {
        object["name"].as_str().map(str::to_string)
    }

    fn references(&self, object: &Value) -> Vec<Ref> {
        steps(object).iter().flat_map(|step| property_refs(&step["properties"], property_references)).collect()
    }

    fn copied(&self, object: &Value, map: &dyn Fn(&Ref) -> String) -> Value {
        let mut out = fields(object, FIELDS);
        let steps: Vec<Value> = steps(object)
            .iter()
            .map(|step| {
                let mut step: Map<String, Value> = fields(step, STEP_FIELDS);
                let properties = property_map(&step["properties"], property_references, map);
                step.insert("properties".into(), properties);
                Value::Object(step)
            })
            .collect();
        out.insert("steps".into(), Value::Array(steps));
        Value::Object(out)
    }

    fn compared(&self, object: &Value) -> Value {
        self.copied(object, &|r| r.id.clone())
    }
}

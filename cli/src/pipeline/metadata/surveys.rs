//! Surveys (`posthog/api/survey.py`): a name (unique in a project: 400 `unique`), a
//! type, `questions`, `appearance`, `conditions`, dates, `archived`, and the flag and
//! insight they are linked to (`linked_flag_id`, `linked_insight_id`: remapped; PostHog
//! refuses a flag it does not have). A question's `id` is what the survey's response
//! events (`$survey_response_<id>`) refer to: PostHog gives a question without one a new
//! id, so each question is sent with its own, and keeps it.

use serde_json::Value;

use super::kind::{field_refs, fields_mapped, Kind, Ref};

pub struct Surveys;

const FIELDS: &[&str] = &[
    "name",
    "description",
    "type",
    "questions",
    "appearance",
    "conditions",
    "start_date",
    "end_date",
    "archived",
    "responses_limit",
    "linked_flag_id",
    "linked_insight_id",
];
const REFS: &[(&str, &str)] = &[("linked_flag_id", "feature_flags"), ("linked_insight_id", "insights")];

impl Kind for Surveys {
    fn name(&self) -> &'static str {
        "surveys"
    }

    fn refers_to(&self) -> &'static [&'static str] {
        &["feature_flags", "insights"]
    }

    fn app_path(&self, id: &str) -> String {
        format!("surveys/{id}")
    }

    fn label(&self, object: &Value) -> String {
        object["name"].as_str().unwrap_or("(no name)").to_string()
    }

    fn natural_key(&self, object: &Value) -> Option<String> {
        object["name"].as_str().map(str::to_string)
    }

    fn references(&self, object: &Value) -> Vec<Ref> {
        field_refs(object, REFS)
    }

    fn copied(&self, object: &Value, map: &dyn Fn(&Ref) -> String) -> Value {
        Value::Object(fields_mapped(object, FIELDS, REFS, map))
    }

    fn compared(&self, object: &Value) -> Value {
        self.copied(object, &|r| r.id.clone())
    }
}

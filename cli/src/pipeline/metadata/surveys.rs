//! Surveys (`posthog/api/survey.py`): a name (unique in a project: 400 `unique`), a
//! type, `questions`, `appearance`, `conditions`, dates, `archived`, and the flag and
//! insight they are linked to (`linked_flag_id`, `linked_insight_id`: remapped; PostHog
//! refuses a flag it does not have). A question's `id` is what the survey's response
//! events (`$survey_response_<id>`) refer to: PostHog gives a question without one a new
//! id, so each question is sent with its own, and keeps it.

use serde_json::Value;

use super::kind::{fields, id_text, set_id, Kind, Ref};

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
        REFS.iter().filter_map(|(field, kind)| Some(Ref { kind, id: id_text(&object[*field])? })).collect()
    }

    fn copied(&self, object: &Value, map: &dyn Fn(&Ref) -> String) -> Value {
        let mut out = fields(object, FIELDS);
        for (field, kind) in REFS {
            if let Some(id) = id_text(&out[*field]) {
                set_id(out.get_mut(*field).expect("a field of FIELDS"), &map(&Ref { kind, id }));
            }
        }
        Value::Object(out)
    }

    fn compared(&self, object: &Value) -> Value {
        self.copied(object, &|r| r.id.clone())
    }
}

//! Annotations (`posthog/api/annotation.py`): `content`, `date_marker`, `creation_type`
//! and `scope` (project, organization, dashboard_item, dashboard); one scoped to an
//! insight names it in `dashboard_item`, one scoped to a dashboard in `dashboard_id`
//! (both remapped; PostHog refuses an id it does not have, `does_not_exist`). Listed
//! 1,000 a page. An annotation has no unique field: its date and text are its natural key.

use serde_json::Value;

use super::kind::{field_refs, fields_mapped, Kind, Ref};

pub struct Annotations;

const FIELDS: &[&str] = &["content", "date_marker", "creation_type", "scope", "dashboard_item", "dashboard_id"];
const REFS: &[(&str, &str)] = &[("dashboard_item", "insights"), ("dashboard_id", "dashboards")];

impl Kind for Annotations {
    fn name(&self) -> &'static str {
        "annotations"
    }

    fn refers_to(&self) -> &'static [&'static str] {
        &["insights", "dashboards"]
    }

    fn app_path(&self, _id: &str) -> String {
        "data-management/annotations".into()
    }

    fn label(&self, object: &Value) -> String {
        format!("{} ({})", object["content"].as_str().unwrap_or(""), object["date_marker"].as_str().unwrap_or(""))
    }

    fn natural_key(&self, object: &Value) -> Option<String> {
        Some(format!("{}\u{1f}{}", object["date_marker"].as_str()?, object["content"].as_str().unwrap_or("")))
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

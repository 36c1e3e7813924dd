//! Feature flags (`posthog/api/feature_flag.py`): a key (unique among a project's flags
//! not deleted), a name, `filters` (release conditions in `groups`, each with
//! properties, a rollout percentage and perhaps a variant; `multivariate` variants;
//! `payloads`; `super_groups`, `holdout_groups`), `active`, and
//! `ensure_experience_continuity`. A condition may name a cohort (remapped), or another
//! flag it depends on (remapped); PostHog refuses a cohort with an event-based filter in
//! a flag (`behavioral_cohort_found`), so such a flag is reported, not sent. A create
//! says `_should_create_usage_dashboard: false`: otherwise PostHog makes a usage
//! dashboard with insights for each flag, which a copy would duplicate.

use std::collections::BTreeSet;

use serde_json::Value;

use super::cohorts::behavioural;
use super::kind::{fields, property_map, property_references, property_refs, Kind, Objects, Ref};
use crate::posthog_api::rest::Body;

pub struct FeatureFlags;

const FIELDS: &[&str] = &["key", "name", "filters", "active", "ensure_experience_continuity"];
/// The parts of `filters` that hold conditions.
const CONDITIONS: &[&str] = &["groups", "super_groups", "holdout_groups"];

impl Kind for FeatureFlags {
    fn name(&self) -> &'static str {
        "feature_flags"
    }

    fn refers_to(&self) -> &'static [&'static str] {
        &["cohorts", "feature_flags"]
    }

    fn app_path(&self, id: &str) -> String {
        format!("feature_flags/{id}")
    }

    fn label(&self, object: &Value) -> String {
        object["key"].as_str().unwrap_or("(no key)").to_string()
    }

    fn natural_key(&self, object: &Value) -> Option<String> {
        object["key"].as_str().map(str::to_string)
    }

    fn references(&self, object: &Value) -> Vec<Ref> {
        CONDITIONS
            .iter()
            .flat_map(|part| object["filters"][part].as_array().cloned().unwrap_or_default())
            .flat_map(|group| property_refs(&group["properties"], property_references))
            .collect()
    }

    fn unfit(&self, object: &Value, source: &Objects) -> Option<String> {
        self.references(object).into_iter().filter(|r| r.kind == "cohorts").find_map(|r| {
            let cohort = source.get(&("cohorts", r.id.clone()))?;
            behavioural(cohort, source, &mut BTreeSet::from([r.id.clone()])).then(|| {
                format!(
                    "a condition uses cohort {} ({}), which has an event-based (behavioural) filter: PostHog refuses \
                     it in a flag (behavioral_cohort_found)",
                    r.id,
                    cohort["name"].as_str().unwrap_or("")
                )
            })
        })
    }

    fn copied(&self, object: &Value, map: &dyn Fn(&Ref) -> String) -> Value {
        let mut out = fields(object, FIELDS);
        let mut filters = object["filters"].clone();
        for part in CONDITIONS {
            for group in filters.get_mut(*part).and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(properties) = group.get("properties").cloned() {
                    group["properties"] = property_map(&properties, property_references, map);
                }
            }
        }
        out.insert("filters".into(), filters);
        Value::Object(out)
    }

    fn compared(&self, object: &Value) -> Value {
        self.copied(object, &|r| r.id.clone())
    }

    fn create_body(&self, copied: &Value) -> Body {
        let mut body = copied.clone();
        body["_should_create_usage_dashboard"] = Value::Bool(false);
        Body::Json(body)
    }
}

//! Experiments (`ee/clickhouse/views/experiments.py`, later `products/experiments/`):
//! a name, a description, dates, `parameters` (the variants), `filters`, `metrics`,
//! `archived`, and the flag they run on: `feature_flag` in an answer, `feature_flag_key`
//! in a request. A create with the key of an existing flag (able to run an experiment:
//! multivariate, with a `control` variant) uses it; with another key it makes a flag. So
//! the flag is copied first (the reference), and the experiment sent with that flag's
//! key, bound at the destination to the flag's copy, not to a new one.
//!
//! The list leaves archived experiments out unless `archived=true` asks for them (and
//! then answers only them): both lists are read.

use serde_json::Value;

use super::kind::{fields, id_text, Kind, Ref};

pub struct Experiments;

const FIELDS: &[&str] = &[
    "name",
    "description",
    "start_date",
    "end_date",
    "parameters",
    "filters",
    "archived",
    "type",
    "metrics",
    "metrics_secondary",
    "feature_flag_key",
];

fn flag(object: &Value) -> Option<String> {
    id_text(&object["feature_flag"]["id"]).or_else(|| id_text(&object["feature_flag"]))
}

impl Kind for Experiments {
    fn name(&self) -> &'static str {
        "experiments"
    }

    fn list_paths(&self) -> Vec<String> {
        vec!["experiments/".into(), "experiments/?archived=true".into()]
    }

    fn refers_to(&self) -> &'static [&'static str] {
        &["feature_flags"]
    }

    fn app_path(&self, id: &str) -> String {
        format!("experiments/{id}")
    }

    fn label(&self, object: &Value) -> String {
        object["name"].as_str().unwrap_or("(no name)").to_string()
    }

    fn natural_key(&self, object: &Value) -> Option<String> {
        object["name"].as_str().map(str::to_string)
    }

    fn references(&self, object: &Value) -> Vec<Ref> {
        flag(object).map(|id| Ref { kind: "feature_flags", id }).into_iter().collect()
    }

    /// The flag's key is the same at both ends (flags are matched by key): the copy is
    /// bound to the flag's copy by it.
    fn copied(&self, object: &Value, _map: &dyn Fn(&Ref) -> String) -> Value {
        let mut out = fields(object, FIELDS);
        if out["feature_flag_key"].is_null() {
            out.insert("feature_flag_key".into(), object["feature_flag"]["key"].clone());
        }
        Value::Object(out)
    }

    fn compared(&self, object: &Value) -> Value {
        self.copied(object, &|r| r.id.clone())
    }
}

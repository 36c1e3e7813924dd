//! A field of an Amplitude export line, read as Amplitude writes "no value".

use serde_json::Value;

/// The field's value, unless it is no value: null, blank, or Amplitude's `EMPTY`.
pub fn present(value: Option<&Value>) -> Option<&Value> {
    match value? {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() || s == "EMPTY" => None,
        other => Some(other),
    }
}

pub fn text(value: Option<&Value>) -> Option<String> {
    match present(value)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

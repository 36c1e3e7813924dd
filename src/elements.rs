//! Autocapture elements: the historical export of PostHog >= 1.30 rebuilds
//! `properties.$elements` from its database in a shape capture does not read
//! (`text`, `attr_class` as a list, `href`, `attributes: {...}`); posthog-js sends
//! `$el_text`, `attr__class` as one string with `classes` beside it, `attr__href`, ...
//! at the top of each element, and no attribute it does not have.

use serde_json::{Map, Value};

const RENAMES: [(&str, &str); 4] =
    [("text", "$el_text"), ("attr_class", "attr__class"), ("attr_id", "attr__id"), ("href", "attr__href")];

/// Rewrites every element of `$elements` into posthog-js shape, in place. Elements
/// already in that shape have none of the database keys and pass through unchanged.
pub fn to_posthog_js_shape(elements: &mut Value) {
    let Value::Array(list) = elements else { return };
    for element in list {
        if let Value::Object(element) = element {
            reshape(element);
        }
    }
}

fn reshape(element: &mut Map<String, Value>) {
    for (from, to) in RENAMES {
        if let Some(value) = element.remove(from) {
            element.entry(to).or_insert(value);
        }
    }
    // The element's own keys win over those lifted from `attributes`.
    if let Some(Value::Object(attributes)) = element.remove("attributes") {
        for (key, value) in attributes {
            element.entry(key).or_insert(value);
        }
    }
    // posthog-js sends the class attribute as written, and the classes as a list.
    if let Some(Value::Array(classes)) = element.get("attr__class") {
        let names: Vec<&str> = classes.iter().filter_map(Value::as_str).collect();
        let joined = Value::String(names.join(" "));
        let list = Value::Array(names.into_iter().map(|n| Value::String(n.to_string())).collect());
        element.entry("classes").or_insert(list);
        element.insert("attr__class".into(), joined);
    }
    // An attribute the element did not have is absent, never null.
    element.retain(|key, value| !(key.starts_with("attr__") && value.is_null()));
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn database_shape_becomes_posthog_js_shape() {
        let mut elements = json!([{
            "text": "Sign up", "tag_name": "button", "attr_class": ["btn", "primary"], "attr_id": "signup",
            "href": "/join", "nth_child": 2, "nth_of_type": 1,
            "attributes": {"attr__class": "btn primary", "attr__data-attr": "cta", "attr__id": "other", "nth_child": 9}
        }, {
            "tag_name": "div", "text": null, "href": null, "attr_class": null, "attr_id": null, "attributes": null
        }]);
        to_posthog_js_shape(&mut elements);
        assert_eq!(
            elements,
            json!([{
                "$el_text": "Sign up", "tag_name": "button", "attr__class": "btn primary", "classes": ["btn", "primary"],
                "attr__id": "signup", "attr__href": "/join", "nth_child": 2, "nth_of_type": 1, "attr__data-attr": "cta"
            }, {
                "tag_name": "div", "$el_text": null
            }])
        );
    }

    #[test]
    fn posthog_js_shape_passes_through_unchanged() {
        let original = json!([{
            "tag_name": "a", "$el_text": "Docs", "attr__href": "/docs", "attr__class": "nav link",
            "classes": ["nav", "link"], "nth_child": 1, "nth_of_type": 1
        }]);
        let mut elements = original.clone();
        to_posthog_js_shape(&mut elements);
        assert_eq!(elements, original);
    }

    #[test]
    fn an_existing_posthog_js_key_is_not_overwritten_by_a_rename() {
        let mut elements = json!([{"text": "old", "$el_text": "kept", "attr_class": ["a"], "classes": ["b"]}]);
        to_posthog_js_shape(&mut elements);
        assert_eq!(elements, json!([{"$el_text": "kept", "attr__class": "a", "classes": ["b"]}]));
    }

    #[test]
    fn non_lists_and_non_objects_are_left_alone() {
        for value in [json!("a>b"), json!(null), json!({"text": "x"}), json!([1, "two", null])] {
            let mut v = value.clone();
            to_posthog_js_shape(&mut v);
            assert_eq!(v, value);
        }
    }
}

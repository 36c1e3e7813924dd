//! JSON objects read as their fields, each value kept as the raw text it was: the
//! transform inspects a handful of fields and passes the rest through untouched, so
//! it never builds (nor re-serialises) a tree for them.

use std::borrow::Cow;

use serde_json::Value;

use crate::scan;

/// The fields of a JSON object, in order, each value as its raw JSON text.
pub struct Fields<'a>(pub scan::FieldList<'a>);

impl<'a> Fields<'a> {
    /// The value of `key` (the last one, as JSON parsers keep when a key repeats).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

/// A raw value parsed as a tree, for the few fields that are looked into.
pub fn value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or(Value::Null)
}

/// A raw JSON string's text; `None` for other values.
pub fn value_str(raw: &str) -> Option<String> {
    serde_json::from_str::<String>(raw).ok()
}

/// `null`, `""` or `[]`.
pub fn is_empty(raw: &str) -> bool {
    matches!(raw.trim(), "null" | "\"\"" | "[]")
}

/// Appends `"key":`. A key borrowed from the input had no escapes there and needs
/// none here; another is escaped.
#[allow(clippy::ptr_arg)] // the variant is the point: it says whether the key had escapes
pub fn write_key(out: &mut String, key: &Cow<'_, str>) {
    match key {
        Cow::Borrowed(plain) => {
            out.push('"');
            out.push_str(plain);
            out.push('"');
        }
        Cow::Owned(text) => write_string(out, text),
    }
    out.push(':');
}

pub fn write_string(out: &mut String, text: &str) {
    // Serialising a str cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// Rewrites every non-ASCII character of a JSON text as a `\u` escape (surrogate pairs
/// above U+FFFF). The same JSON, but ASCII: JS turns ASCII bytes into a string several
/// times faster, in Node's TextDecoder and in the sandbox's fallback alike. Non-ASCII
/// can only stand inside JSON strings, so escaping it there is always right.
pub fn to_ascii_json(json: String) -> String {
    if json.is_ascii() {
        return json;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(json.len() + json.len() / 4);
    let mut rest = json.as_str();
    // Runs of ASCII are copied whole: events are mostly ASCII with a few other letters.
    while let Some(at) = first_non_ascii(rest.as_bytes()) {
        out.push_str(&rest[..at]);
        let Some(c) = rest[at..].chars().next() else { break };
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            out.push_str("\\u");
            for shift in [12, 8, 4, 0] {
                out.push(char::from(HEX[usize::from((*unit >> shift) & 0xf)]));
            }
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// Where the first byte over 0x7f is, looked for eight bytes at a time.
fn first_non_ascii(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    for word in bytes.chunks_exact(8) {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        if u64::from_ne_bytes(eight) & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        at += 8;
    }
    bytes[at..].iter().position(|b| !b.is_ascii()).map(|i| at + i)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn ascii_json_escapes_every_other_character_wherever_it_stands() {
        for before in 0..20 {
            for other in ["é", "—", "東京", "🚀", "é🚀x—"] {
                let json = format!("\"{}{other}{}\"", "a".repeat(before), "b".repeat(before % 7));
                let ascii = to_ascii_json(json.clone());
                assert!(ascii.is_ascii(), "{ascii}");
                assert_eq!(
                    serde_json::from_str::<String>(&ascii).unwrap(),
                    serde_json::from_str::<String>(&json).unwrap()
                );
            }
        }
        assert_eq!(to_ascii_json("\"Zü🚀\"".into()), r#""Z\u00fc\ud83d\ude80""#);
        assert_eq!(to_ascii_json("{\"plain\":1}".into()), "{\"plain\":1}");
    }
}

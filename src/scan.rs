//! A validating JSON reader that finds where values start and end without building
//! them: an object's fields as (name, raw text) pairs, an array's items.
//!
//! Hand-written rather than serde_json's `RawValue` through a visitor: serde_json paid
//! about 130 instructions for each short string it skipped (the visitor machinery
//! around its fast scan), and a realistic event has a hundred of them; reading the
//! properties was the costliest step of the transform. It accepts exactly what
//! serde_json accepts where it skips a value (RFC 8259; escapes checked, \u code
//! points not paired; no depth limit), and field names with escapes are decoded by
//! serde_json itself. The tests compare the two on generated and broken texts.

use std::borrow::Cow;

/// Where a text stops being JSON (a byte offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotJson {
    pub at: usize,
}

/// An object's fields in order (repeated names kept), values as their raw JSON text.
pub type FieldList<'a> = Vec<(Cow<'a, str>, &'a str)>;

/// `text` as one JSON value (whitespace around it allowed): its fields when it is an
/// object, `None` for any other value.
pub fn object(text: &str) -> Result<Option<FieldList<'_>>, NotJson> {
    let mut reader = Reader::new(text);
    let fields = reader.fields_or_skip(false)?;
    reader.end()?;
    Ok(fields.map(|event| event.fields))
}

/// An event object's fields, and those of its `properties` read in the same pass.
pub struct EventFields<'a> {
    pub fields: FieldList<'a>,
    /// The fields of the last field named `properties`, when that is an object.
    pub properties: Option<FieldList<'a>>,
}

/// `text` as one JSON value: an object's fields and its properties' fields in one pass
/// (an event's properties are nearly all of it), `None` for any other value.
pub fn event(text: &str) -> Result<Option<EventFields<'_>>, NotJson> {
    let mut reader = Reader::new(text);
    let event = reader.fields_or_skip(true)?;
    reader.end()?;
    Ok(event)
}

/// `text` as one JSON value: when it is an array, each item read as `event` reads a
/// value; `None` for any other value.
#[allow(clippy::type_complexity)]
pub fn array_of_events(text: &str) -> Result<Option<Vec<Option<EventFields<'_>>>>, NotJson> {
    let mut reader = Reader::new(text);
    reader.whitespace();
    if reader.peek() != Some(b'[') {
        reader.skip_value()?;
        reader.end()?;
        return Ok(None);
    }
    reader.at += 1;
    let mut items = Vec::new();
    reader.whitespace();
    if reader.peek() == Some(b']') {
        reader.at += 1;
    } else {
        loop {
            items.push(reader.fields_or_skip(true)?);
            reader.whitespace();
            match reader.peek() {
                Some(b',') => reader.at += 1,
                Some(b']') => {
                    reader.at += 1;
                    break;
                }
                _ => return reader.fail(),
            }
        }
    }
    reader.end()?;
    Ok(Some(items))
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// The containers open around the value being skipped: `true` for an object.
    open: Vec<bool>,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Of eight bytes (little-endian), a mask whose lowest set bit is in the first quote,
/// backslash or control character: the bytes a string's scan stops at. (Higher bits
/// may be set wrongly by borrows; the lowest one is exact.)
fn stops(word: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    (zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\'))) | below_space) & HIGHS
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Reader<'a> {
        Reader { text, bytes: text.as_bytes(), at: 0, open: Vec::new() }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn fail<T>(&self) -> Result<T, NotJson> {
        Err(NotJson { at: self.at })
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.at += 1;
        }
    }

    fn end(&mut self) -> Result<(), NotJson> {
        self.whitespace();
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            self.fail()
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), NotJson> {
        self.whitespace();
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            self.fail()
        }
    }

    /// The value here: its fields when it is an object, else skipped. With
    /// `properties`, the value of a field of that name is read as fields too.
    fn fields_or_skip(&mut self, properties: bool) -> Result<Option<EventFields<'a>>, NotJson> {
        self.whitespace();
        if self.peek() != Some(b'{') {
            self.skip_value()?;
            return Ok(None);
        }
        self.at += 1;
        let mut event = EventFields { fields: Vec::with_capacity(16), properties: None };
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Some(event));
        }
        loop {
            self.whitespace();
            let key = self.key()?;
            self.expect(b':')?;
            self.whitespace();
            let start = self.at;
            if properties && key == "properties" {
                event.properties = self.fields_or_skip(false)?.map(|inner| inner.fields);
            } else {
                self.skip_value()?;
            }
            event.fields.push((key, &self.text[start..self.at]));
            self.whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Some(event));
                }
                _ => return self.fail(),
            }
        }
    }

    /// A field name: borrowed when it has no escapes, else decoded by serde_json (which
    /// also refuses unpaired surrogates in names, as it did when it read them all).
    fn key(&mut self) -> Result<Cow<'a, str>, NotJson> {
        let start = self.at;
        if self.peek() != Some(b'"') {
            return self.fail();
        }
        let escaped = self.string()?;
        let quoted = &self.text[start..self.at];
        if !escaped {
            return Ok(Cow::Borrowed(&quoted[1..quoted.len() - 1]));
        }
        serde_json::from_str::<String>(quoted).map(Cow::Owned).map_err(|_| NotJson { at: start })
    }

    /// Skips the string whose opening quote is here; whether it had escapes.
    fn string(&mut self) -> Result<bool, NotJson> {
        self.at += 1;
        let mut escaped = false;
        loop {
            // Eight bytes at a time to the next byte that is not plain text.
            loop {
                match self.bytes.get(self.at..self.at + 8) {
                    Some(eight) => {
                        let mut word = [0u8; 8];
                        word.copy_from_slice(eight);
                        let stop = stops(u64::from_le_bytes(word));
                        if stop != 0 {
                            self.at += (stop.trailing_zeros() / 8) as usize;
                            break;
                        }
                        self.at += 8;
                    }
                    None => {
                        while self.peek().is_some_and(|b| b != b'"' && b != b'\\' && b >= 0x20) {
                            self.at += 1;
                        }
                        break;
                    }
                }
            }
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 1,
                        Some(b'u') => {
                            let hex = self.bytes.get(self.at + 1..self.at + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return self.fail();
                            }
                            self.at += 5;
                        }
                        _ => return self.fail(),
                    }
                }
                // A control character, or the end of the text.
                _ => return self.fail(),
            }
        }
    }

    fn digits(&mut self) -> Result<(), NotJson> {
        if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return self.fail();
        }
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        Ok(())
    }

    fn number(&mut self) -> Result<(), NotJson> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.at += 1;
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return self.fail();
                }
            }
            _ => self.digits()?,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    fn word(&mut self, word: &[u8]) -> Result<(), NotJson> {
        if self.bytes.get(self.at..self.at + word.len()) == Some(word) {
            self.at += word.len();
            Ok(())
        } else {
            self.fail()
        }
    }

    /// Skips one value (whitespace before it allowed), containers and all, without
    /// recursion.
    fn skip_value(&mut self) -> Result<(), NotJson> {
        self.open.clear();
        loop {
            self.whitespace();
            match self.peek() {
                Some(b'{') => {
                    self.at += 1;
                    self.whitespace();
                    if self.peek() == Some(b'}') {
                        self.at += 1;
                    } else {
                        self.open.push(true);
                        self.member_name()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.at += 1;
                    self.whitespace();
                    if self.peek() == Some(b']') {
                        self.at += 1;
                    } else {
                        self.open.push(false);
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.word(b"true")?,
                Some(b'f') => self.word(b"false")?,
                Some(b'n') => self.word(b"null")?,
                _ => return self.fail(),
            }
            // A value ended: close what it ended, or go on to the next item.
            loop {
                let Some(&in_object) = self.open.last() else { return Ok(()) };
                self.whitespace();
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        if in_object {
                            self.whitespace();
                            self.member_name()?;
                        }
                        break;
                    }
                    Some(b'}') if in_object => {
                        self.at += 1;
                        self.open.pop();
                    }
                    Some(b']') if !in_object => {
                        self.at += 1;
                        self.open.pop();
                    }
                    _ => return self.fail(),
                }
            }
        }
    }

    /// A nested object's member name and its colon (names inside skipped values are only
    /// checked, as serde_json checks them there).
    fn member_name(&mut self) -> Result<(), NotJson> {
        if self.peek() != Some(b'"') {
            return self.fail();
        }
        self.string()?;
        self.expect(b':')
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::value::RawValue;
    use serde_json::Value;

    /// What serde_json makes of the same text: checked as a `RawValue`, then read as
    /// (name, raw value) pairs in order.
    fn by_serde(text: &str) -> Result<Option<Vec<(String, String)>>, ()> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = Vec<(String, &'de RawValue)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(pair) = map.next_entry::<String, &'de RawValue>()? {
                    out.push(pair);
                }
                Ok(out)
            }
        }
        let raw: &RawValue = serde_json::from_str(text).map_err(|_| ())?;
        if !raw.get().starts_with('{') {
            return Ok(None);
        }
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let pairs = serde::Deserializer::deserialize_map(&mut de, Pairs).map_err(|_| ())?;
        Ok(Some(pairs.into_iter().map(|(k, v)| (k, v.get().to_string())).collect()))
    }

    fn ours(text: &str) -> Result<Option<Vec<(String, String)>>, ()> {
        object(text)
            .map(|fields| fields.map(|f| f.into_iter().map(|(k, v)| (k.into_owned(), v.to_string())).collect()))
            .map_err(|_| ())
    }

    #[test]
    fn fields_and_raw_values_are_found_as_serde_json_finds_them() {
        let text = r#" {"a": 1, "b\u00e9" : {"x": [1, -2.5e+3, "s\"q", true, null, {}]}, "a": "again", "": []} "#;
        let fields = object(text).unwrap().unwrap();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[1].0, "bé");
        assert!(matches!(fields[0].0, Cow::Borrowed("a")) && matches!(fields[1].0, Cow::Owned(_)));
        assert_eq!(fields[1].1, r#"{"x": [1, -2.5e+3, "s\"q", true, null, {}]}"#);
        assert_eq!(ours(text), by_serde(text));
        assert_eq!(object(" [1, 2] "), Ok(None));
        assert_eq!(object("\"text\""), Ok(None));
    }

    #[test]
    fn what_serde_json_refuses_is_refused_and_the_rest_accepted() {
        let cases = [
            "",
            " ",
            "{",
            "}",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{,}",
            "{\"a\":1 \"b\":2}",
            "{a:1}",
            "{\"a\":01}",
            "{\"a\":-}",
            "{\"a\":1.}",
            "{\"a\":1e}",
            "{\"a\":.5}",
            "{\"a\":+1}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\u12g4\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":\"tab\there\"}",
            "{\"\\ud800\":1}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":[1,]}",
            "{\"a\":[,1]}",
            "{\"a\":{\"b\":1,}}",
            "{\"a\":{\"b\"}}",
            "{\"a\":{1:2}}",
            "{\"a\":1}}",
            "{\"a\":1} x",
            "{\"a\":[1]]}",
            "{\"a\":[1}",
            "[",
            "[1,]",
            "nan",
            "{\"a\":0.5E-07}",
            "{\"a\":-0}",
            "{\"a\":[[[[[[]]]]]]}",
            "{\"a\":\"\u{7f}\u{80}é\"}",
            "{\"a\":\"\\/\\b\\f\\n\\r\\t\\\\\"}",
            "\t{\r\n}\n",
            "{\"a\":1e400}",
            "{\"a\":\"12345678\\\"12345678\"}",
        ];
        for text in cases {
            assert_eq!(ours(text), by_serde(text), "{text:?}");
        }
    }

    #[test]
    fn arrays_of_events_are_read_item_by_item() {
        let items = array_of_events(r#"[{"a":1}, 2, {"b":"x", "properties": {"p": [1]}}, []]"#).unwrap().unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].as_ref().unwrap().fields[0], (Cow::Borrowed("a"), "1"));
        assert!(items[0].as_ref().unwrap().properties.is_none());
        assert_eq!(items[2].as_ref().unwrap().properties.as_ref().unwrap()[0], (Cow::Borrowed("p"), "[1]"));
        assert!(items[1].is_none() && items[3].is_none());
        assert!(array_of_events("[]").unwrap().unwrap().is_empty());
        assert!(array_of_events("{}").unwrap().is_none());
        assert!(array_of_events("[{\"a\":1},]").is_err());
        assert!(array_of_events("[{\"a\":1}").is_err());
    }

    #[test]
    fn an_events_properties_are_read_in_the_same_pass_the_last_one_counting() {
        let text = r#"{"properties": {"a": 1}, "event": "e", "propert\u0069es": {"b": {"c": 2}}}"#;
        let event = event(text).unwrap().unwrap();
        assert_eq!(event.fields.len(), 3);
        assert_eq!(event.fields[2].1, r#"{"b": {"c": 2}}"#);
        assert_eq!(event.properties.unwrap(), vec![(Cow::Borrowed("b"), r#"{"c": 2}"#)]);
        let not_object = super::event(r#"{"properties": {"a": 1}, "properties": [1]}"#).unwrap().unwrap();
        assert!(not_object.properties.is_none());
        assert!(super::event(r#"{"properties": {"a": }}"#).is_err());
        assert!(super::event("[1]").unwrap().is_none());
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn generated_json_reads_the_same(value in any_json(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
            prop_assert_eq!(ours(&text), by_serde(&text));
        }

        #[test]
        fn damaged_json_is_judged_the_same(value in any_json(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = value.to_string().into_bytes();
            let at = cut.index(bytes.len() + 1);
            if byte.is_ascii() && at < bytes.len() { bytes[at] = byte } else { bytes.truncate(at) }
            if let Ok(text) = String::from_utf8(bytes) {
                prop_assert_eq!(ours(&text), by_serde(&text), "{:?}", text);
            }
        }
    }
}

//! Reading the many timestamp shapes events carry, and writing the one capture prefers.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value;

/// Epoch numbers below this are seconds, above it milliseconds (1e11 s is the year 5138).
const SECONDS_OR_MILLIS_CUTOFF: f64 = 1e11;

/// Parses an ISO 8601 / RFC 3339 timestamp. Without a zone (as ClickHouse writes
/// them, `2021-05-01 12:00:00.123`) it is read as UTC.
pub fn parse_iso(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // RFC 3339 allows a space for the `T`; chrono's parser does not.
    if let Some(t) = text
        .get(10..11)
        .filter(|sep| *sep == " ")
        .and_then(|_| DateTime::parse_from_rfc3339(&format!("{}T{}", &text[..10], &text[11..])).ok())
    {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    None
}

/// A calendar date `YYYY-MM-DD`, exactly four digits of year.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes.iter().enumerate().all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shaped {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// Seconds or milliseconds since the epoch (see `SECONDS_OR_MILLIS_CUTOFF`).
pub fn from_epoch(number: f64) -> Option<DateTime<Utc>> {
    if !number.is_finite() {
        return None;
    }
    let millis = if number.abs() < SECONDS_OR_MILLIS_CUTOFF { number * 1000.0 } else { number };
    // `as` saturates: an absurd number becomes an out-of-range one, refused below.
    DateTime::from_timestamp_millis(millis.round() as i64)
}

/// A JSON value holding a timestamp: an ISO string or an epoch number.
pub fn from_value(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(text) => parse_iso(text),
        Value::Number(number) => number.as_f64().and_then(from_epoch),
        _ => None,
    }
}

/// RFC 3339 in UTC with milliseconds: `2021-05-01T12:00:00.123Z`.
pub fn format(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn from_millis(millis: f64) -> Option<DateTime<Utc>> {
    if !millis.is_finite() {
        return None;
    }
    DateTime::from_timestamp_millis(millis.round() as i64)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use serde_json::json;

    fn iso(value: Value) -> Option<String> {
        from_value(&value).map(format)
    }

    #[test]
    fn reads_every_shape_events_carry() {
        let cases = [
            (json!("2021-05-01T12:34:56.789Z"), Some("2021-05-01T12:34:56.789Z")),
            (json!("2021-05-01T12:34:56Z"), Some("2021-05-01T12:34:56.000Z")),
            (json!("2021-05-01T14:34:56.789+02:00"), Some("2021-05-01T12:34:56.789Z")),
            (json!("2021-05-01 12:34:56.789+00:00"), Some("2021-05-01T12:34:56.789Z")),
            (json!("2021-05-01 12:34:56.789"), Some("2021-05-01T12:34:56.789Z")),
            (json!("2021-05-01T12:34:56.123456"), Some("2021-05-01T12:34:56.123Z")),
            (json!(" 2021-05-01T12:34:56Z "), Some("2021-05-01T12:34:56.000Z")),
            (json!(1619872496.789), Some("2021-05-01T12:34:56.789Z")),
            (json!(1619872496789u64), Some("2021-05-01T12:34:56.789Z")),
            (json!("yesterday"), None),
            (json!("2021-02-30T00:00:00Z"), None),
            (json!(""), None),
            (json!(null), None),
            (json!(true), None),
            (json!({"t": 1}), None),
            (json!(1e300), None),
            (json!(-1e300), None),
        ];
        for (input, expected) in cases {
            assert_eq!(iso(input.clone()).as_deref(), expected, "input {input}");
        }
    }

    #[test]
    fn dates_need_four_digit_years_and_real_days() {
        assert_eq!(parse_date("2021-02-28").map(|d| d.to_string()).as_deref(), Some("2021-02-28"));
        for bad in ["2021-02-30", "21-02-03", "2021-2-3", "2021/02/03", "02021-02-03", "", "2021-02-03x"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}

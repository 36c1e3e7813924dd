//! Reading the many timestamp shapes events carry, and writing the one capture prefers.
//!
//! Hand-written rather than chrono's parsers and formatters: those bring strftime
//! machinery that was a tenth of the module every plugin-server thread compiles, for
//! three fixed shapes. chrono still does the calendar.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use serde_json::Value;

/// Epoch numbers below this are seconds, above it milliseconds (1e11 s is the year 5138).
const SECONDS_OR_MILLIS_CUTOFF: f64 = 1e11;

fn digits(bytes: &[u8], at: usize, count: usize) -> Option<u32> {
    let slice = bytes.get(at..at + count)?;
    slice.iter().try_fold(0u32, |n, b| b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0')))
}

/// Only years capture and `format` can write back: 0001 to 9999.
fn in_range(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (1..=9999).contains(&t.year()).then_some(t)
}

/// `YYYY-MM-DD`, exactly four digits of year, a real day.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(b, 0, 4)? as i32, digits(b, 5, 2)?, digits(b, 8, 2)?)
}

/// Parses an ISO 8601 / RFC 3339 timestamp: `YYYY-MM-DD`, `T` or a space, `HH:MM:SS`,
/// an optional fraction, and `Z`, an offset (`+02:00`, `+0200`, `+02`) or nothing,
/// which is read as UTC (ClickHouse writes `2021-05-01 12:00:00.123`).
pub fn parse_iso(text: &str) -> Option<DateTime<Utc>> {
    let b = text.trim().as_bytes();
    let date = parse_date(std::str::from_utf8(b.get(..10)?).ok()?)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let (hour, minute, second) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    let mut at = 19;
    let mut nanos = 0u32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 9 {
                nanos = nanos * 10 + u32::from(b[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return None;
        }
        nanos *= 10u32.pow(9u32.saturating_sub((at - start) as u32));
    }
    let offset_seconds: i64 = match b.get(at) {
        None => 0,
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let hours = digits(b, at + 1, 2)?;
            let rest = &b[at + 3..];
            let minutes = match rest {
                [] => 0,
                [b':', ..] if rest.len() == 3 => digits(rest, 1, 2)?,
                _ if rest.len() == 2 => digits(rest, 0, 2)?,
                _ => return None,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let magnitude = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' {
                -magnitude
            } else {
                magnitude
            }
        }
        _ => return None,
    };
    let local = date.and_hms_nano_opt(hour, minute, second, nanos)?.and_utc();
    in_range(local - chrono::Duration::seconds(offset_seconds))
}

/// Seconds or milliseconds since the epoch (see `SECONDS_OR_MILLIS_CUTOFF`).
pub fn from_epoch(number: f64) -> Option<DateTime<Utc>> {
    if !number.is_finite() {
        return None;
    }
    let millis = if number.abs() < SECONDS_OR_MILLIS_CUTOFF { number * 1000.0 } else { number };
    from_millis(millis)
}

/// A JSON value holding a timestamp: an ISO string or an epoch number.
pub fn from_value(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(text) => parse_iso(text),
        Value::Number(number) => number.as_f64().and_then(from_epoch),
        _ => None,
    }
}

/// RFC 3339 in UTC with milliseconds, `2021-05-01T12:00:00.123Z`, or microseconds
/// when the time has them (ClickHouse keeps them): `2021-05-01T12:00:00.123456Z`.
pub fn format(t: DateTime<Utc>) -> String {
    let micros = t.timestamp_subsec_micros().min(999_999);
    let year = t.year();
    if !(0..=9999).contains(&year) {
        let date_time =
            format!("{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}", t.month(), t.day(), t.hour(), t.minute(), t.second());
        return if micros % 1000 == 0 {
            format!("{date_time}.{:03}Z", micros / 1000)
        } else {
            format!("{date_time}.{micros:06}Z")
        };
    }
    // Digit by digit: `format!` cost more than the rest of an event's timestamp handling,
    // and every event is stamped.
    let mut out = String::with_capacity(27);
    let mut digits = |n: u32, width: u32, after: char| {
        for place in (0..width).rev() {
            out.push(char::from(b'0' + ((n / 10u32.pow(place)) % 10) as u8));
        }
        out.push(after);
    };
    digits(year as u32, 4, '-');
    digits(t.month(), 2, '-');
    digits(t.day(), 2, 'T');
    digits(t.hour(), 2, ':');
    digits(t.minute(), 2, ':');
    digits(t.second(), 2, '.');
    if micros % 1000 == 0 {
        digits(micros / 1000, 3, 'Z');
    } else {
        digits(micros, 6, 'Z');
    }
    out
}

pub fn from_millis(millis: f64) -> Option<DateTime<Utc>> {
    if !millis.is_finite() {
        return None;
    }
    // `as` saturates: an absurd number becomes an out-of-range one, refused here.
    DateTime::from_timestamp_millis(millis.round() as i64).and_then(in_range)
}

/// An HTTP date, as in `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn parse_http_date(text: &str) -> Option<DateTime<Utc>> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let month = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let t = time.as_bytes();
    if t.len() != 8 || t[2] != b':' || t[5] != b':' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year.parse().ok()?, month, day.parse().ok()?)?;
    Some(date.and_hms_opt(digits(t, 0, 2)?, digits(t, 3, 2)?, digits(t, 6, 2)?)?.and_utc())
}

/// Timestamps in stored state, written as `format` writes them.
pub mod iso {
    use chrono::{DateTime, Utc};
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_iso(&text).ok_or_else(|| D::Error::custom(format!("not a timestamp: {text}")))
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&crate::timestamp::format(*t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(text) => crate::timestamp::parse_iso(&text)
                    .map(Some)
                    .ok_or_else(|| D::Error::custom(format!("not a timestamp: {text}"))),
                None => Ok(None),
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use serde_json::json;

    fn iso(value: Value) -> Option<String> {
        from_value(&value).map(format)
    }

    #[test]
    fn timestamps_are_written_with_milliseconds_or_microseconds() {
        for (text, written) in [
            ("2021-06-01T00:00:00Z", "2021-06-01T00:00:00.000Z"),
            ("2021-06-01T09:08:07.123Z", "2021-06-01T09:08:07.123Z"),
            ("1999-12-31T23:59:59.000001Z", "1999-12-31T23:59:59.000001Z"),
            ("2024-02-29T12:30:45.120450Z", "2024-02-29T12:30:45.120450Z"),
        ] {
            assert_eq!(format(parse_iso(text).unwrap()), written);
        }
    }

    #[test]
    fn reads_every_shape_events_carry() {
        let cases = [
            (json!("2021-05-01T12:34:56.789Z"), Some("2021-05-01T12:34:56.789Z")),
            (json!("2021-05-01T12:34:56Z"), Some("2021-05-01T12:34:56.000Z")),
            (json!("2021-05-01T14:34:56.789+02:00"), Some("2021-05-01T12:34:56.789Z")),
            (json!("2021-05-01 12:34:56.789+00:00"), Some("2021-05-01T12:34:56.789Z")),
            (json!("2021-05-01 12:34:56.789"), Some("2021-05-01T12:34:56.789Z")),
            (json!("2021-05-01T12:34:56.123456"), Some("2021-05-01T12:34:56.123456Z")),
            (json!("2021-05-01 12:34:56.123000"), Some("2021-05-01T12:34:56.123Z")),
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
            (json!("2021-05-01T12:34:56.789-0130"), Some("2021-05-01T14:04:56.789Z")),
            (json!("2021-05-01t12:34:56+02"), Some("2021-05-01T10:34:56.000Z")),
            (json!("2021-05-01T12:34:56.Z"), None),
            (json!("2021-05-01T12:34:56+2:00"), None),
            (json!("2021-05-01T12:34:56+24:00"), None),
            (json!("2021-05-01T12:34:56ZZ"), None),
            (json!("2021-05-01T24:00:00Z"), None),
            (json!("2021-05-01T12:34"), None),
            (json!("10000-05-01T12:34:56Z"), None),
            (json!(1e15), None),
            (json!("2021-05-01T12:34:56.123456789123Z"), Some("2021-05-01T12:34:56.123456Z")),
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

#[cfg(all(test, not(target_arch = "wasm32")))]
mod http_date_tests {
    use super::*;

    #[test]
    fn http_dates_are_read() {
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").map(format).as_deref(),
            Some("2015-10-21T07:28:00.000Z")
        );
        for bad in
            ["Wed, 21 Oct 2015 07:28:00", "Wed, 32 Oct 2015 07:28:00 GMT", "Wed, 21 Foo 2015 07:28:00 GMT", "tomorrow"]
        {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn what_is_written_reads_back() {
        for millis in [0i64, 1, 999, 1_619_872_496_789, 253_402_300_799_999] {
            let t = DateTime::from_timestamp_millis(millis).unwrap();
            assert_eq!(parse_iso(&format(t)), Some(t), "{millis}");
        }
    }
}

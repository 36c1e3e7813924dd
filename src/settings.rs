//! The settings form, parsed once and checked with messages that name the field and
//! the offending value and say how to fix it.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::batch::BatchLimits;
use crate::host::{self, Destination};
use crate::timestamp;
use crate::version::{self, SourceVersion};

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub destination: Destination,
    pub project_api_key: String,
    /// Export history from here on; `None`: from the first event the source has.
    pub start: Option<DateTime<Utc>>,
    pub version: SourceVersion,
    pub debug: bool,
    pub limits: BatchLimits,
    pub gzip: bool,
    pub events_to_ignore: BTreeSet<String>,
    /// Historical events sent per minute at most; `None`: as fast as the host goes.
    pub events_per_minute: Option<u64>,
    /// Copy the plugin server's own `$$plugin_metrics` events too (the app only).
    pub copy_plugin_metrics: bool,
}

/// One field of the form, as plugin.json names it and as the form labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub key: &'static str,
    pub label: &'static str,
}

pub const HOST: Field = Field { key: "host", label: "Destination host" };
pub const API_KEY: Field = Field { key: "projectApiKey", label: "Destination project API key" };
pub const START_DATE: Field = Field { key: "startDate", label: "Date to start exporting events from" };
pub const VERSION: Field = Field { key: "posthogVersion", label: "PostHog version" };
pub const DEBUG: Field = Field { key: "debug", label: "Debug" };
pub const BATCH_SIZE: Field = Field { key: "batchSize", label: "Events per request" };
pub const BATCH_KILOBYTES: Field = Field { key: "batchMaxKilobytes", label: "Largest request, in kilobytes" };
pub const GZIP: Field = Field { key: "gzip", label: "Compress requests (gzip)" };
pub const EVENTS_TO_IGNORE: Field = Field { key: "eventsToIgnore", label: "Events to ignore" };
pub const EVENTS_PER_MINUTE: Field = Field { key: "eventsPerMinute", label: "Historical events per minute at most" };
pub const COPY_PLUGIN_METRICS: Field =
    Field { key: "copyPluginMetrics", label: "Copy the plugin server's own $$plugin_metrics events" };

pub const BATCH_SIZE_RANGE: (usize, usize) = (1, 10_000);
/// Capture takes 20 MB per request; 1,000 kB still fits the largest event we send.
pub const BATCH_KILOBYTES_RANGE: (usize, usize) = (1_000, 19_000);
pub const EVENTS_PER_MINUTE_RANGE: (usize, usize) = (100, 10_000_000);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    pub field: Field,
    /// The value as typed, masked where it may be a secret.
    pub value: String,
    pub problem: String,
}

impl fmt::Display for SettingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): \"{}\" is not accepted: {}.", self.field.label, self.field.key, self.value, self.problem)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub Vec<SettingProblem>);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "Setting to fix: {one}"),
            many => {
                write!(f, "{} settings to fix:", many.len())?;
                for (n, p) in many.iter().enumerate() {
                    write!(f, " {}) {p}", n + 1)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SettingsError {}

impl Settings {
    /// `config` is `meta.config`: the strings the user typed, keyed as in plugin.json.
    pub fn parse(config: &Map<String, Value>, now: DateTime<Utc>) -> Result<Settings, SettingsError> {
        let mut form = Form { config, problems: Vec::new() };
        let destination = form.read(HOST, |t| host::parse(t).map_err(|p| p.to_string()));
        let project_api_key = form.read(API_KEY, api_key);
        let start = form.read(START_DATE, |t| start_date(t, now));
        let version = form.read(VERSION, |t| version::parse(t).map_err(|p| p.to_string()));
        let debug = form.read(DEBUG, |t| on_off(t, false));
        let max_events = form.read(BATCH_SIZE, |t| number(t, 500, BATCH_SIZE_RANGE));
        let max_kilobytes = form.read(BATCH_KILOBYTES, |t| number(t, 1_800, BATCH_KILOBYTES_RANGE));
        let gzip = form.read(GZIP, |t| on_off(t, true));
        let events_to_ignore = form.read(EVENTS_TO_IGNORE, |t| Ok(event_names(t)));
        let events_per_minute = form.read(EVENTS_PER_MINUTE, |t| {
            let unlimited = t.trim().is_empty() || t.trim() == "0";
            if unlimited {
                Ok(None)
            } else {
                number(t, 0, EVENTS_PER_MINUTE_RANGE).map(|n| Some(n as u64))
            }
        });
        let copy_plugin_metrics = form.read(COPY_PLUGIN_METRICS, |t| on_off(t, false));
        match (
            destination,
            project_api_key,
            start,
            version,
            debug,
            max_events,
            max_kilobytes,
            gzip,
            events_to_ignore,
            events_per_minute,
            copy_plugin_metrics,
        ) {
            (
                Some(destination),
                Some(project_api_key),
                Some(start),
                Some(version),
                Some(debug),
                Some(max_events),
                Some(max_kilobytes),
                Some(gzip),
                Some(events_to_ignore),
                Some(events_per_minute),
                Some(copy_plugin_metrics),
            ) => Ok(Settings {
                destination,
                project_api_key,
                start,
                version,
                debug,
                limits: BatchLimits { max_events, max_bytes: max_kilobytes * 1000 },
                gzip,
                events_to_ignore,
                events_per_minute,
                copy_plugin_metrics,
            }),
            _ => Err(SettingsError(form.problems)),
        }
    }
}

/// Reads fields one by one, keeping every problem so all are reported at once.
struct Form<'a> {
    config: &'a Map<String, Value>,
    problems: Vec<SettingProblem>,
}

impl Form<'_> {
    fn read<T>(&mut self, field: Field, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let result = text_of(self.config.get(field.key)).and_then(|text| parse(&text));
        result
            .map_err(|problem| {
                let raw = text_of(self.config.get(field.key)).unwrap_or_else(|_| "(not text)".into());
                // The key may be a personal API key pasted by mistake: never echo it whole.
                let value = if field == API_KEY { mask(&raw) } else { raw };
                self.problems.push(SettingProblem { field, value, problem });
            })
            .ok()
    }
}

/// The host hands settings over as strings; numbers and booleans are tolerated.
fn text_of(value: Option<&Value>) -> Result<String, String> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(if *b { "ON" } else { "OFF" }.to_string()),
        Some(_) => Err("it must be text".to_string()),
    }
}

/// Shows enough of a key to recognise it, never the whole of it.
fn mask(key: &str) -> String {
    let shown: String = key.chars().take(8).collect();
    if shown.chars().count() < key.chars().count() {
        format!("{shown}…")
    } else {
        shown
    }
}

fn api_key(input: &str) -> Result<String, String> {
    let key = input.trim();
    if key.is_empty() {
        return Err("it is required: copy the project API key from the destination's Project settings".into());
    }
    if key.starts_with("phx_") {
        return Err("this is a personal API key, which capture refuses; use the destination project's API key \
                    instead (Project settings, usually starting with phc_)"
            .into());
    }
    if !key.is_ascii() || key.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err("a project API key is plain ASCII letters and digits, without spaces".into());
    }
    if key.len() > 64 {
        return Err(format!("it is {} characters long; project API keys have at most 64", key.len()));
    }
    Ok(key.to_string())
}

fn start_date(input: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, String> {
    let text = input.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let start = match timestamp::parse_date(text) {
        Some(date) => date.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
        None => timestamp::parse_iso(text),
    };
    let Some(start) = start else {
        let looks_like_a_date = text.len() >= 10 && text.as_bytes()[..10].iter().filter(|b| **b == b'-').count() == 2;
        return Err(if looks_like_a_date {
            "it is not a real date (check the day and month), write it as YYYY-MM-DD, e.g. 2021-06-01".into()
        } else {
            "it is not a date; write it as YYYY-MM-DD, e.g. 2021-06-01, or leave it empty to export everything".into()
        });
    };
    if start > now {
        return Err(format!("it is in the future (now is {}); choose a day in the past", timestamp::format(now)));
    }
    Ok(Some(start))
}

fn on_off(input: &str, default: bool) -> Result<bool, String> {
    match input.trim().to_ascii_uppercase().as_str() {
        "" => Ok(default),
        "ON" | "TRUE" | "YES" => Ok(true),
        "OFF" | "FALSE" | "NO" => Ok(false),
        _ => Err("choose ON or OFF".into()),
    }
}

fn number(input: &str, default: usize, (min, max): (usize, usize)) -> Result<usize, String> {
    let text = input.trim();
    if text.is_empty() {
        return Ok(default);
    }
    match text.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("write a whole number from {min} to {max}, or leave it empty for {default}")),
    }
}

fn event_names(input: &str) -> BTreeSet<String> {
    input.split(',').map(str::trim).filter(|name| !name.is_empty()).map(str::to_string).collect()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::version::ExportShape;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        timestamp::parse_iso("2026-11-23T12:00:00Z").unwrap()
    }

    fn config(changes: Value) -> Map<String, Value> {
        let mut base = json!({
            "host": "posthog.example.com",
            "projectApiKey": "phc_destinationkey",
            "startDate": "2021-06-01",
            "posthogVersion": "1.30.0+",
            "debug": "OFF",
        });
        for (k, v) in changes.as_object().unwrap() {
            base[k] = v.clone();
        }
        base.as_object().unwrap().clone()
    }

    fn problems(changes: Value) -> Vec<SettingProblem> {
        Settings::parse(&config(changes), now()).expect_err("should be refused").0
    }

    #[test]
    fn a_typical_form_parses() {
        let s = Settings::parse(&config(json!({})), now()).unwrap();
        assert_eq!(s.destination.base_url, "https://posthog.example.com");
        assert_eq!(s.project_api_key, "phc_destinationkey");
        assert_eq!(s.start.map(timestamp::format).as_deref(), Some("2021-06-01T00:00:00.000Z"));
        assert_eq!(s.version.shape, ExportShape::Marked);
        assert!(!s.debug);
        assert_eq!(s.limits, BatchLimits { max_events: 500, max_bytes: 1_800_000 });
        assert!(s.gzip);
        assert!(s.events_to_ignore.is_empty());
        assert!(!s.copy_plugin_metrics, "the host's own metrics are left out unless asked for");
        let keep = Settings::parse(&config(json!({"copyPluginMetrics": "ON"})), now()).unwrap();
        assert!(keep.copy_plugin_metrics);
    }

    #[test]
    fn optional_fields_have_defaults() {
        let mut c = config(json!({}));
        for key in ["startDate", "posthogVersion", "debug"] {
            c.remove(key);
        }
        let s = Settings::parse(&c, now()).unwrap();
        assert_eq!(s.start, None);
        assert_eq!(s.version.label, "Latest");
        assert!(!s.debug);
    }

    #[test]
    fn further_settings_are_read() {
        let s = Settings::parse(
            &config(json!({"batchSize": "50", "batchMaxKilobytes": 5000, "gzip": "OFF", "debug": "on",
                           "eventsToIgnore": " $feature_flag_called, ,$pageleave ", "startDate": "2021-06-01T10:30:00+02:00"})),
            now(),
        )
        .unwrap();
        assert_eq!(s.limits, BatchLimits { max_events: 50, max_bytes: 5_000_000 });
        assert!(!s.gzip);
        assert!(s.debug);
        assert_eq!(s.events_to_ignore.iter().collect::<Vec<_>>(), ["$feature_flag_called", "$pageleave"]);
        assert_eq!(s.events_per_minute, None);
        for (typed, expected) in [("10000", Some(10_000)), ("0", None), (" ", None)] {
            let s = Settings::parse(&config(json!({"eventsPerMinute": typed})), now()).unwrap();
            assert_eq!(s.events_per_minute, expected, "{typed}");
        }
        assert_eq!(s.start.map(timestamp::format).as_deref(), Some("2021-06-01T08:30:00.000Z"));
    }

    #[test]
    fn every_bad_setting_names_its_field_and_value() {
        let cases = [
            (json!({"host": ""}), "host", "\"\"", "empty"),
            (json!({"host": "   "}), "host", "\"   \"", "empty"),
            (json!({"host": "ftp://x.com"}), "host", "ftp://x.com", "http"),
            (json!({"host": "what is this"}), "host", "what is this", "spaces"),
            (json!({"host": ["a"]}), "host", "(not text)", "must be text"),
            (json!({"projectApiKey": ""}), "projectApiKey", "\"\"", "required"),
            (json!({"projectApiKey": null}), "projectApiKey", "\"\"", "required"),
            (json!({"projectApiKey": "phx_personalsecretkey"}), "projectApiKey", "phx_pers…", "personal API key"),
            (json!({"projectApiKey": "phc_clé"}), "projectApiKey", "phc_clé", "ASCII"),
            (json!({"projectApiKey": "phc_a b"}), "projectApiKey", "phc_a b", "without spaces"),
            (json!({"projectApiKey": "k".repeat(65)}), "projectApiKey", "kkkkkkkk…", "65 characters"),
            (json!({"startDate": "2021-02-30"}), "startDate", "2021-02-30", "not a real date"),
            (json!({"startDate": "June 2021"}), "startDate", "June 2021", "not a date"),
            (json!({"startDate": "2027-01-01"}), "startDate", "2027-01-01", "future"),
            (json!({"startDate": "2026-11-23T12:00:01Z"}), "startDate", "2026-11-23T12:00:01Z", "future"),
            (json!({"posthogVersion": "1.29"}), "posthogVersion", "1.29", "not a PostHog version"),
            (json!({"debug": "maybe"}), "debug", "maybe", "ON or OFF"),
            (json!({"gzip": "zip"}), "gzip", "zip", "ON or OFF"),
            (json!({"batchSize": "0"}), "batchSize", "\"0\"", "1 to 10000"),
            (json!({"batchSize": "lots"}), "batchSize", "lots", "whole number"),
            (json!({"batchSize": "-5"}), "batchSize", "-5", "whole number"),
            (json!({"batchMaxKilobytes": "20000"}), "batchMaxKilobytes", "20000", "1000 to 19000"),
            (json!({"batchMaxKilobytes": "999"}), "batchMaxKilobytes", "999", "1000 to 19000"),
            (json!({"eventsPerMinute": "50"}), "eventsPerMinute", "50", "100 to 10000000"),
            (json!({"eventsPerMinute": "fast"}), "eventsPerMinute", "fast", "whole number"),
            (json!({"copyPluginMetrics": "sometimes"}), "copyPluginMetrics", "sometimes", "ON or OFF"),
        ];
        for (changes, key, value, needle) in cases {
            let found = problems(changes.clone());
            assert_eq!(found.len(), 1, "{changes}: {found:?}");
            let message = found[0].to_string();
            assert_eq!(found[0].field.key, key);
            assert!(message.contains(key), "{message}");
            assert!(message.contains(found[0].field.label), "{message}");
            assert!(message.contains(value.trim_matches('"')), "{message} lacks value {value}");
            assert!(message.contains(needle), "{message} lacks {needle}");
        }
    }

    #[test]
    fn a_personal_key_is_never_echoed_whole() {
        let message = SettingsError(problems(json!({"projectApiKey": "phx_0123456789abcdef"}))).to_string();
        assert!(!message.contains("0123456789abcdef"), "{message}");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let err = SettingsError(problems(json!({"host": "", "projectApiKey": "", "debug": "x"})));
        let message = err.to_string();
        assert_eq!(err.0.len(), 3);
        assert!(message.starts_with("3 settings to fix: 1) Destination host (host)"), "{message}");
        assert!(message.contains("2) Destination project API key (projectApiKey)"), "{message}");
        assert!(message.contains("3) Debug (debug)"), "{message}");
    }
}

//! The source PostHog version, and what it says about the shape of historical exports.

use std::fmt;

/// How the source's historical export marks the events it replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportShape {
    /// PostHog <= 1.29 (plugin server 1.10.x): exported events have no `uuid`;
    /// live events always have one.
    WithoutUuid,
    /// PostHog >= 1.30: exported events carry `properties.$$is_historical_export_event`.
    Marked,
}

/// The job the source's plugin server offers to replay history into `exportEvents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportJob {
    /// `Export historical events`, payload `{dateFrom, dateTo}` (PostHog 1.2x to 1.3x).
    V1,
    /// `Export historical events V2` (from mid-2022; chunks of a day, progress in the log).
    V2,
}

impl ExportJob {
    pub fn name(self) -> &'static str {
        match self {
            ExportJob::V1 => "Export historical events",
            ExportJob::V2 => "Export historical events V2",
        }
    }
}

/// First release taken to ship `Export historical events V2` (August-September 2022).
const FIRST_WITH_V2: (u32, u32) = (1, 40);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceVersion {
    /// As the user wrote it, for the log.
    pub label: String,
    pub shape: ExportShape,
    pub export_job: ExportJob,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionProblem;

impl fmt::Display for VersionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("it is not a PostHog version: choose 1.29.0, 1.30.0, 1.30.0+ or Latest, or write one like 1.28.1")
    }
}

/// `1.29.0`, `1.30.0`, `1.30.0+`, `Latest`, or any `x.y.z` (an optional leading `v`).
/// Empty means `Latest`, the form's default.
pub fn parse(input: &str) -> Result<SourceVersion, VersionProblem> {
    let text = input.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("latest") {
        return Ok(SourceVersion { label: "Latest".into(), shape: ExportShape::Marked, export_job: ExportJob::V2 });
    }
    let numbers = text.strip_prefix(['v', 'V']).unwrap_or(text);
    let numbers = numbers.strip_suffix('+').unwrap_or(numbers);
    let parts: Vec<&str> = numbers.split('.').collect();
    if parts.len() != 3 {
        return Err(VersionProblem);
    }
    let mut parsed = [0u32; 3];
    for (slot, part) in parsed.iter_mut().zip(&parts) {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VersionProblem);
        }
        *slot = part.parse().map_err(|_| VersionProblem)?;
    }
    let release = (parsed[0], parsed[1]);
    let shape = if release < (1, 30) { ExportShape::WithoutUuid } else { ExportShape::Marked };
    let export_job = if release < FIRST_WITH_V2 { ExportJob::V1 } else { ExportJob::V2 };
    Ok(SourceVersion { label: text.to_string(), shape, export_job })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use ExportShape::*;

    #[test]
    fn versions_map_to_export_shapes() {
        let cases = [
            ("1.29.0", WithoutUuid),
            ("1.29.1", WithoutUuid),
            ("1.0.0", WithoutUuid),
            ("v1.25.3", WithoutUuid),
            ("0.9.0", WithoutUuid),
            ("1.30.0", Marked),
            ("1.30.0+", Marked),
            ("1.43.0", Marked),
            ("2.0.0", Marked),
            ("Latest", Marked),
            ("latest", Marked),
            ("", Marked),
        ];
        for (input, shape) in cases {
            assert_eq!(parse(input).map(|v| v.shape), Ok(shape), "{input}");
        }
        assert_eq!(parse(" 1.30.0+ ").unwrap().label, "1.30.0+");
    }

    #[test]
    fn versions_map_to_the_export_job_they_offer() {
        for (input, job) in [
            ("1.29.0", ExportJob::V1),
            ("1.30.0", ExportJob::V1),
            ("1.30.0+", ExportJob::V1),
            ("1.39.2", ExportJob::V1),
            ("1.40.0", ExportJob::V2),
            ("1.43.0", ExportJob::V2),
            ("Latest", ExportJob::V2),
        ] {
            assert_eq!(parse(input).map(|v| v.export_job), Ok(job), "{input}");
        }
        assert_eq!(ExportJob::V2.name(), "Export historical events V2");
    }

    #[test]
    fn other_text_is_refused() {
        for bad in ["1.29", "1.29.0.1", "one.two.three", "1..0", "1.30.x", "newest", "1.30.0++", "99999999999.0.0"] {
            assert_eq!(parse(bad), Err(VersionProblem), "{bad}");
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceVersion {
    /// As the user wrote it, for the log.
    pub label: String,
    pub shape: ExportShape,
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
        return Ok(SourceVersion { label: "Latest".into(), shape: ExportShape::Marked });
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
    let shape = if (parsed[0], parsed[1]) < (1, 30) { ExportShape::WithoutUuid } else { ExportShape::Marked };
    Ok(SourceVersion { label: text.to_string(), shape })
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
    fn other_text_is_refused() {
        for bad in ["1.29", "1.29.0.1", "one.two.three", "1..0", "1.30.x", "newest", "1.30.0++", "99999999999.0.0"] {
            assert_eq!(parse(bad), Err(VersionProblem), "{bad}");
        }
    }
}

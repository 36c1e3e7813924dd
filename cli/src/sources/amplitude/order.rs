//! The order export files are read in: the hour each holds. Amplitude names them
//! `<project>_<YYYY-MM-DD>_<H>#<n>.json.gz` (the hour without a leading zero, `n` the
//! part of a large hour; events before 2014-11-12 come a day a file, without the hour),
//! so by name hour 10 comes before hour 9, and person properties, applied in the order
//! events arrive, would let an older `$set` overwrite a newer one.

use std::cmp::Ordering;

/// (day, hour, part) of an export file's name, whatever folder it is in.
pub fn hour_of(name: &str) -> Option<(String, u32, u32)> {
    let base = name.rsplit('/').next()?;
    let stem = base.strip_suffix(".json.gz").or_else(|| base.strip_suffix(".json"))?;
    let (head, part) = stem.rsplit_once('#')?;
    let part = part.parse().ok()?;
    let day = |text: &str| {
        let bytes = text.as_bytes();
        let shape = bytes.len() == 10 && bytes[4] == b'-' && bytes[7] == b'-';
        (shape && text.chars().filter(char::is_ascii_digit).count() == 8).then(|| text.to_string())
    };
    let (rest, last) = head.rsplit_once('_')?;
    if let Some(date) = day(last) {
        return Some((date, 0, part));
    }
    let hour: u32 = last.parse().ok().filter(|h| *h < 24)?;
    let (_, date) = rest.rsplit_once('_')?;
    Some((day(date)?, hour, part))
}

/// Files in the order of the hour they hold (then their part); files not named as
/// Amplitude names them come after, by name.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (hour_of(a), hour_of(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_files_hour_comes_from_its_name() {
        assert_eq!(hour_of("123/123_2024-03-01_9#0.json.gz"), Some(("2024-03-01".into(), 9, 0)));
        assert_eq!(hour_of("a/123/123_2024-03-01_23#12.json.gz"), Some(("2024-03-01".into(), 23, 12)));
        assert_eq!(hour_of("123_2014-11-01#0.json"), Some(("2014-11-01".into(), 0, 0)));
        for other in ["notes.txt", "123_2024-03-01_24#0.json.gz", "123_2024-3-1_9#0.json.gz", "x#y.json.gz"] {
            assert_eq!(hour_of(other), None, "{other}");
        }
    }

    #[test]
    fn hours_sort_as_numbers_then_parts_and_strangers_last() {
        let mut names = vec![
            "zzz.json",
            "p/p_2024-03-01_10#0.json.gz",
            "p/p_2024-03-02_0#0.json.gz",
            "p/p_2024-03-01_9#1.json.gz",
            "p/p_2024-03-01_9#0.json.gz",
            "b/p/p_2024-03-01_2#0.json.gz",
        ];
        names.sort_by(|a, b| compare(a, b));
        assert_eq!(
            names,
            [
                "b/p/p_2024-03-01_2#0.json.gz",
                "p/p_2024-03-01_9#0.json.gz",
                "p/p_2024-03-01_9#1.json.gz",
                "p/p_2024-03-01_10#0.json.gz",
                "p/p_2024-03-02_0#0.json.gz",
                "zzz.json",
            ]
        );
    }
}

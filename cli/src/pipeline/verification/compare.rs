//! The comparison: both sides counted per UTC day over the whole range in one query
//! each (a window the engine cannot answer in time is counted in halves, down to single
//! days), and for each day whose counts differ, the uuids of both sides walked side by
//! side in pages, which finds exactly the missing and the extra ones.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::NaiveDate;

use super::hogql::SideError;
use super::side::{DayCount, Side, Window};
use crate::pipeline::error::PipelineError;
use crate::shared::reporter::note;

/// What a day came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Equal,
    Differs,
    /// It differs, but the destination took events of it in the last minutes:
    /// ingestion may still be bringing the rest.
    StillArriving,
    /// A side could not be counted (why).
    Unknown(String),
}

impl Verdict {
    /// The verdict's name, in tables and in the state file.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Equal => "equal",
            Verdict::Differs => "differs",
            Verdict::StillArriving => "still arriving",
            Verdict::Unknown(_) => "not counted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub day: NaiveDate,
    pub source: DayCount,
    pub destination: DayCount,
    /// Uuids at the source and not at the destination, in text order.
    pub missing: Vec<String>,
    /// Uuids at the destination and not at the source.
    pub extra: Vec<String>,
    pub verdict: Verdict,
}

/// A side's counts, with the days it could not count and why.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub days: BTreeMap<NaiveDate, DayCount>,
    pub unknown: BTreeMap<NaiveDate, String>,
}

/// Counts `window` in one query; a window too big for the engine's time or memory is
/// counted in halves, and a single day that still fails is left unknown.
pub fn count(side: &mut dyn Side, window: Window, counts: &mut Counts) -> Result<(), PipelineError> {
    match side.days(window) {
        Ok(days) => {
            counts.days.extend(days);
            Ok(())
        }
        Err(SideError::TooBig(why)) if window.days() > 1 => {
            let middle = window.from + chrono::Duration::days(window.days() / 2);
            note!(
                "{}: {why} for {} to {}: counting it in two halves.",
                side.describe(),
                window.from,
                window.to.pred_opt().unwrap_or(window.to)
            );
            count(side, Window { from: window.from, to: middle }, counts)?;
            count(side, Window { from: middle, to: window.to }, counts)
        }
        Err(SideError::TooBig(why)) => {
            counts.unknown.insert(window.from, why);
            Ok(())
        }
        Err(fatal) => Err(fatal.into()),
    }
}

/// Older PostHogs cut every answer at 10,000 rows without a word: a page of exactly
/// that many may not be the last.
const SILENT_CAP: usize = 10_000;
/// Pages of uuids are halved on a timeout down to this.
const SMALLEST_PAGE: usize = 500;

/// One side's uuids of a day, a page at a time.
struct Pager {
    page: VecDeque<String>,
    after: Option<String>,
    done: bool,
    limit: usize,
}

impl Pager {
    fn new(limit: usize) -> Pager {
        Pager { page: VecDeque::new(), after: None, done: false, limit }
    }

    fn head(&mut self, side: &mut dyn Side, window: Window) -> Result<Option<&String>, SideError> {
        while self.page.is_empty() && !self.done {
            match side.uuids(window, self.after.as_deref(), self.limit) {
                Ok(page) => {
                    self.done = page.len() < self.limit && page.len() != SILENT_CAP;
                    self.after = page.last().cloned().or(self.after.take());
                    self.done |= page.is_empty();
                    self.page = page.into();
                }
                Err(SideError::TooBig(_)) if self.limit > SMALLEST_PAGE => self.limit /= 2,
                Err(failure) => return Err(failure),
            }
        }
        Ok(self.page.front())
    }
}

/// The uuids of `window` at the source and not at the destination, and the reverse.
pub fn walk(
    source: &mut dyn Side,
    destination: &mut dyn Side,
    window: Window,
    limit: usize,
) -> Result<(Vec<String>, Vec<String>), SideError> {
    let (mut at_source, mut at_destination) = (Pager::new(limit), Pager::new(limit));
    let (mut missing, mut extra) = (Vec::new(), Vec::new());
    loop {
        let a = at_source.head(source, window)?.cloned();
        let b = at_destination.head(destination, window)?.cloned();
        match (a, b) {
            (None, None) => return Ok((missing, extra)),
            (Some(a), None) => {
                missing.push(a);
                at_source.page.pop_front();
            }
            (None, Some(b)) => {
                extra.push(b);
                at_destination.page.pop_front();
            }
            (Some(a), Some(b)) if a == b => {
                at_source.page.pop_front();
                at_destination.page.pop_front();
            }
            (Some(a), Some(b)) if a < b => {
                missing.push(a);
                at_source.page.pop_front();
            }
            (Some(_), Some(b)) => {
                extra.push(b);
                at_destination.page.pop_front();
            }
        }
    }
}

/// The same events on both sides, by their counts: equal distinct uuids, and equal
/// checksums where both sides give one and neither holds unmerged duplicates.
pub fn same_counts(source: &DayCount, destination: &DayCount) -> bool {
    let checksums_apply = source.rows == source.events && destination.rows == destination.events;
    let checksums_agree = match (source.checksum, destination.checksum) {
        (Some(a), Some(b)) if checksums_apply => a == b,
        _ => true,
    };
    source.events == destination.events && checksums_agree
}

pub struct Verifier<'a> {
    pub source: &'a mut dyn Side,
    pub destination: &'a mut dyn Side,
    /// A day that differs and took events within this many seconds is still arriving.
    pub settle_seconds: i64,
    /// Rows a page of uuids asks for (PostHog's cap: 50,000).
    pub page_rows: usize,
    /// The source's counts, taken once: it does not change while the destination catches up.
    source_counts: Option<Counts>,
}

impl<'a> Verifier<'a> {
    pub fn new(source: &'a mut dyn Side, destination: &'a mut dyn Side, settle_seconds: i64, page_rows: usize) -> Self {
        Verifier { source, destination, settle_seconds, page_rows, source_counts: None }
    }

    /// The days the source holds in `window`, counted once and kept for the comparison.
    pub fn source_days(&mut self, window: Window) -> Result<Vec<NaiveDate>, PipelineError> {
        let mut counts = Counts::default();
        count(self.source, window, &mut counts)?;
        let days = counts.days.keys().chain(counts.unknown.keys()).copied().collect::<BTreeSet<_>>();
        self.source_counts = Some(counts);
        Ok(days.into_iter().collect())
    }

    /// Compares `window`, or only the days of it in `only`; `touched` gives the days
    /// this run sent events of, with the seconds since.
    pub fn check(
        &mut self,
        window: Window,
        only: Option<&BTreeSet<NaiveDate>>,
        touched: &BTreeMap<NaiveDate, i64>,
    ) -> Result<Vec<Day>, PipelineError> {
        if self.source_counts.is_none() {
            let mut counts = Counts::default();
            count(self.source, window, &mut counts)?;
            self.source_counts = Some(counts);
        }
        let mut at_destination = Counts::default();
        count(self.destination, window, &mut at_destination)?;
        let at_source = self.source_counts.clone().unwrap_or_default();
        let mut days: BTreeSet<NaiveDate> = at_source.days.keys().chain(at_destination.days.keys()).copied().collect();
        days.extend(at_source.unknown.keys().chain(at_destination.unknown.keys()));
        let mut out = Vec::new();
        let wanted = |d: &NaiveDate| *d >= window.from && *d < window.to && only.is_none_or(|o| o.contains(d));
        for day in days.into_iter().filter(wanted) {
            let source = at_source.days.get(&day).cloned().unwrap_or_default();
            let destination = at_destination.days.get(&day).cloned().unwrap_or_default();
            let mut row =
                Day { day, source, destination, missing: Vec::new(), extra: Vec::new(), verdict: Verdict::Equal };
            if let Some(why) = at_source.unknown.get(&day) {
                row.verdict = Verdict::Unknown(format!("the source could not count it: {why}"));
            } else if let Some(why) = at_destination.unknown.get(&day) {
                row.verdict = Verdict::Unknown(format!("the destination could not count it: {why}"));
            } else if !same_counts(&row.source, &row.destination) {
                let quiet = [row.destination.quiet_seconds, touched.get(&day).copied()].into_iter().flatten().min();
                if quiet.is_some_and(|s| s < self.settle_seconds) {
                    row.verdict = Verdict::StillArriving;
                } else {
                    match walk(self.source, self.destination, Window::day(day), self.page_rows) {
                        Ok((missing, extra)) => {
                            row.verdict =
                                if missing.is_empty() && extra.is_empty() { Verdict::Equal } else { Verdict::Differs };
                            (row.missing, row.extra) = (missing, extra);
                        }
                        Err(SideError::TooBig(why)) => {
                            row.verdict = Verdict::Unknown(format!("its uuids could not be listed: {why}"))
                        }
                        Err(fatal) => return Err(fatal.into()),
                    }
                }
            }
            out.push(row);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A side in memory: (day, uuid) rows, duplicates allowed; windows wider than
    /// `widest` days time out.
    struct Memory {
        rows: Vec<(NaiveDate, String)>,
        widest: i64,
        queries: usize,
    }

    impl Side for Memory {
        fn describe(&self) -> String {
            "memory".into()
        }
        fn days(&mut self, window: Window) -> Result<Vec<(NaiveDate, DayCount)>, SideError> {
            self.queries += 1;
            if window.days() > self.widest {
                return Err(SideError::TooBig("HTTP 504".into()));
            }
            let mut days: BTreeMap<NaiveDate, (u64, BTreeSet<&String>)> = BTreeMap::new();
            for (day, uuid) in self.rows.iter().filter(|(d, _)| *d >= window.from && *d < window.to) {
                let entry = days.entry(*day).or_default();
                entry.0 += 1;
                entry.1.insert(uuid);
            }
            Ok(days
                .into_iter()
                .map(|(d, (rows, set))| {
                    (d, DayCount { rows, events: set.len() as u64, checksum: None, quiet_seconds: Some(3600) })
                })
                .collect())
        }
        fn uuids(&mut self, window: Window, after: Option<&str>, limit: usize) -> Result<Vec<String>, SideError> {
            self.queries += 1;
            let set: BTreeSet<&String> = self
                .rows
                .iter()
                .filter(|(d, u)| *d >= window.from && *d < window.to && after.is_none_or(|a| u.as_str() > a))
                .map(|(_, u)| u)
                .collect();
            Ok(set.into_iter().take(limit).cloned().collect())
        }
    }

    fn day(n: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2021, 6, n).unwrap()
    }

    fn rows(days: std::ops::Range<u32>, per_day: usize) -> Vec<(NaiveDate, String)> {
        days.flat_map(|d| (0..per_day).map(move |i| (day(d), format!("{:08x}-{d:02}", i * 7919 % 100_003)))).collect()
    }

    #[test]
    fn a_window_that_times_out_is_counted_in_halves_down_to_days() {
        let mut side = Memory { rows: rows(1..11, 3), widest: 2, queries: 0 };
        let mut counts = Counts::default();
        count(&mut side, Window { from: day(1), to: day(11) }, &mut counts).unwrap();
        assert_eq!(counts.days.len(), 10);
        assert!(counts.unknown.is_empty());
        assert!(counts.days.values().all(|c| c.events == 3));
        let mut stubborn = Memory { rows: rows(1..3, 1), widest: 0, queries: 0 };
        let mut counts = Counts::default();
        count(&mut stubborn, Window { from: day(1), to: day(3) }, &mut counts).unwrap();
        assert_eq!(counts.unknown.keys().copied().collect::<Vec<_>>(), [day(1), day(2)]);
    }

    #[test]
    fn the_walk_finds_exactly_the_missing_and_extra_uuids_across_pages() {
        let all = rows(1..2, 1000);
        let mut destination_rows: Vec<_> = all.iter().skip(37).cloned().collect();
        destination_rows.push((day(1), "ffffffff-extra".into()));
        destination_rows.extend(all.iter().skip(500).take(20).cloned()); // unmerged duplicates
        let mut source = Memory { rows: all.clone(), widest: 99, queries: 0 };
        let mut destination = Memory { rows: destination_rows, widest: 99, queries: 0 };
        let (missing, extra) = walk(&mut source, &mut destination, Window::day(day(1)), 64).unwrap();
        let mut expected: Vec<String> = all.iter().take(37).map(|(_, u)| u.clone()).collect();
        expected.sort();
        assert_eq!(missing, expected);
        assert_eq!(extra, ["ffffffff-extra"]);
        assert!(destination.queries >= 1000 / 64, "pages of 64: {}", destination.queries);
    }

    #[test]
    fn duplicates_count_once_and_recent_differences_are_still_arriving() {
        let all = rows(1..4, 50);
        let mut at_destination: Vec<_> =
            all.iter().filter(|(d, u)| *d != day(2) || !u.ends_with("0-02")).cloned().collect();
        at_destination.extend(all.iter().filter(|(d, _)| *d == day(3)).cloned()); // day 3 twice
        let mut source = Memory { rows: all, widest: 99, queries: 0 };
        let mut destination = Memory { rows: at_destination, widest: 99, queries: 0 };
        let mut verifier = Verifier::new(&mut source, &mut destination, 60, 1000);
        let window = Window { from: day(1), to: day(4) };
        let days = verifier.check(window, None, &BTreeMap::new()).unwrap();
        let verdicts: Vec<_> = days.iter().map(|d| d.verdict.clone()).collect();
        assert_eq!(verdicts, [Verdict::Equal, Verdict::Differs, Verdict::Equal]);
        assert_eq!(days[2].destination.rows, 100);
        assert!(days[1].missing.iter().all(|u| u.ends_with("0-02")) && !days[1].missing.is_empty());
        // The same difference, touched by this run 5 s ago: still arriving, not walked.
        let touched = BTreeMap::from([(day(2), 5)]);
        let days = verifier.check(window, Some(&BTreeSet::from([day(2)])), &touched).unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!((days[0].verdict.clone(), days[0].missing.len()), (Verdict::StillArriving, 0));
    }

    #[test]
    fn equal_counts_of_different_events_do_not_pass_when_checksums_apply() {
        let a = DayCount { rows: 5, events: 5, checksum: Some(1), quiet_seconds: None };
        let b = DayCount { checksum: Some(2), ..a.clone() };
        assert!(!same_counts(&a, &b));
        let with_duplicates = DayCount { rows: 6, ..b.clone() };
        assert!(same_counts(&a, &with_duplicates), "a duplicate pair cancels out of the checksum");
        assert!(same_counts(&a, &DayCount { checksum: None, ..b }));
    }
}

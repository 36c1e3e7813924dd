//! Which ranges a run of a migration copies: what was asked for, less what earlier runs
//! of the same migration settled. A run left unfinished is continued over its own range
//! (fixed when it started, so a rerun of the same command resumes it); what no earlier
//! run covered becomes a run of its own.

use chrono::{DateTime, Utc};

/// An earlier run's range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The earlier run of this index, unfinished: continued.
    Continue(usize),
    /// A range no run has covered.
    New(DateTime<Utc>, DateTime<Utc>),
}

/// The parts of `[from, to)` to copy, in time order.
pub fn plan(earlier: &[Earlier], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Part> {
    let mut touching: Vec<(usize, &Earlier)> =
        earlier.iter().enumerate().filter(|(_, e)| e.from < to && e.to > from).collect();
    touching.sort_by_key(|(_, e)| e.from);
    let mut parts: Vec<(DateTime<Utc>, Part)> = Vec::new();
    let mut covered = from;
    for (index, run) in touching {
        if run.from > covered {
            parts.push((covered, Part::New(covered, run.from.min(to))));
        }
        if !run.done {
            parts.push((run.from, Part::Continue(index)));
        }
        covered = covered.max(run.to);
    }
    if covered < to {
        parts.push((covered, Part::New(covered, to)));
    }
    parts.sort_by_key(|(at, _)| *at);
    parts.into_iter().map(|(_, part)| part).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32) -> DateTime<Utc> {
        migrator3000::timestamp::parse_iso(&format!("2021-06-{day:02}T00:00:00Z")).unwrap()
    }

    fn run(from: u32, to: u32, done: bool) -> Earlier {
        Earlier { from: at(from), to: at(to), done }
    }

    #[test]
    fn nothing_before_means_the_whole_range() {
        assert_eq!(plan(&[], at(1), at(9)), [Part::New(at(1), at(9))]);
    }

    #[test]
    fn an_unfinished_run_is_continued_whole_and_only_the_rest_is_new() {
        // Killed, then run again later: the same start, a later end.
        assert_eq!(plan(&[run(1, 5, false)], at(1), at(9)), [Part::Continue(0), Part::New(at(5), at(9))]);
        // The same command again: the same range.
        assert_eq!(plan(&[run(1, 5, false)], at(1), at(5)), [Part::Continue(0)]);
    }

    #[test]
    fn a_wider_range_copies_only_around_what_was_settled() {
        let earlier = [run(3, 5, true), run(6, 7, true)];
        assert_eq!(
            plan(&earlier, at(1), at(9)),
            [Part::New(at(1), at(3)), Part::New(at(5), at(6)), Part::New(at(7), at(9))]
        );
        assert!(plan(&earlier, at(3), at(5)).is_empty(), "all of it settled before");
        assert!(plan(&earlier, at(4), at(5)).is_empty(), "a narrower range inside a settled one");
        assert_eq!(plan(&earlier, at(4), at(6)), [Part::New(at(5), at(6))]);
        // Runs that do not touch the range play no part.
        assert_eq!(plan(&[run(20, 25, false)], at(1), at(9)), [Part::New(at(1), at(9))]);
    }
}

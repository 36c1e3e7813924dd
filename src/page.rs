//! A page of events into batches: the one step the app (both its paths) and the
//! command take. Each event, read once, is left out by name (the events to ignore),
//! transformed, and pushed into its batcher, or rejected with a reason. What only one
//! of them does is an option of the step (events younger than an instant in a batcher
//! of their own) or a hook (`PageHooks`: the app's paths, handover, cut-over and window,
//! the command's days recorded and its lines that are not JSON).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::batch::{Batch, Batcher};
use crate::scan::EventFields;
use crate::transform::{self, Prepared, Rejected, SourceEvent};

/// What the step's user decides about an event, where only it knows. Every hook but
/// `rejected` has a default that leaves the step as it is.
pub trait PageHooks {
    /// Why an item of the page could not be read as an event (the command: a line that
    /// is not JSON).
    type Unreadable;

    /// An item that is not JSON at all.
    fn unreadable(&mut self, _why: Self::Unreadable) {}

    /// Whether an event not ignored belongs to this page's path (the app: historical or
    /// live, by the export's shape).
    fn on_path(&mut self, _event: &SourceEvent<'_>) -> bool {
        true
    }

    /// Whether an event on the path goes on to the transform (the app's handover of live
    /// events stamped before the cut-over).
    fn before_transform(&mut self, _event: &SourceEvent<'_>) -> bool {
        true
    }

    /// Whether a prepared event is sent (the app: not after the cut-over, not outside the
    /// window being exported); it is counted here.
    fn prepared(&mut self, _event: &SourceEvent<'_>, _prepared: &Prepared) -> bool {
        true
    }

    /// The transform refused the event.
    fn rejected(&mut self, event: &SourceEvent<'_>, rejected: Rejected);
}

/// What the step needs besides the events: the plain options.
#[derive(Debug, Clone, Copy)]
pub struct PageOptions<'a> {
    /// Events by these names are left out.
    pub events_to_ignore: &'a BTreeSet<String>,
    /// Also left out (the app: the host's own metrics, unless the settings keep them).
    pub also_ignore: Option<&'a str>,
    /// The transform's current time (for events with no timestamp).
    pub now: DateTime<Utc>,
}

/// Where prepared events go: one batcher, and optionally one of their own for events
/// stamped after an instant (the command: PostHog asks that migrated events be older
/// than 48 hours; the young go without `historical_migration`).
pub struct Lanes<'b> {
    pub batcher: &'b mut Batcher,
    pub young: Option<(DateTime<Utc>, &'b mut Batcher)>,
}

/// What the step counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Items read, unreadable ones too.
    pub read: usize,
    pub ignored: usize,
    /// Events the hooks said belong to another path.
    pub other_path: usize,
    pub on_path: usize,
    /// Events sent to the young lane.
    pub young: usize,
}

/// The page's events, in order, through the one per-event rule; the batches closed on the
/// way are added to `out` (the caller flushes its batchers when the page ends its batches).
pub fn batches<'e, H, I>(
    options: &PageOptions<'_>,
    items: I,
    hooks: &mut H,
    lanes: Lanes<'_>,
    out: &mut Vec<Batch>,
) -> Tally
where
    H: PageHooks,
    I: IntoIterator<Item = Result<Option<EventFields<'e>>, H::Unreadable>>,
{
    let Lanes { batcher, mut young } = lanes;
    let mut tally = Tally::default();
    for item in items {
        tally.read += 1;
        let fields = match item {
            Ok(fields) => fields,
            Err(why) => {
                hooks.unreadable(why);
                continue;
            }
        };
        let event = SourceEvent::from_scan(fields);
        if ignored(options, &event) {
            tally.ignored += 1;
            continue;
        }
        if !hooks.on_path(&event) {
            tally.other_path += 1;
            continue;
        }
        tally.on_path += 1;
        if !hooks.before_transform(&event) {
            continue;
        }
        match transform::transform_raw(&event, options.now) {
            Ok(prepared) => {
                if !hooks.prepared(&event, &prepared) {
                    continue;
                }
                match &mut young {
                    Some((after, lane)) if prepared.at > *after => {
                        tally.young += 1;
                        out.extend(lane.push(&prepared));
                    }
                    _ => out.extend(batcher.push(&prepared)),
                }
            }
            Err(rejected) => hooks.rejected(&event, rejected),
        }
    }
    tally
}

/// Left out by name.
fn ignored(options: &PageOptions<'_>, event: &SourceEvent<'_>) -> bool {
    event
        .name
        .as_deref()
        .is_some_and(|name| options.events_to_ignore.contains(name) || options.also_ignore == Some(name))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::batch::BatchLimits;
    use crate::scan;

    struct Counted {
        unreadable: Vec<usize>,
        rejected: usize,
    }

    impl PageHooks for Counted {
        type Unreadable = usize;

        fn unreadable(&mut self, at: usize) {
            self.unreadable.push(at);
        }

        fn rejected(&mut self, _event: &SourceEvent<'_>, _rejected: Rejected) {
            self.rejected += 1;
        }
    }

    #[test]
    fn a_page_is_ignored_by_name_prepared_or_rejected_and_the_young_go_apart() {
        let lines = [
            r#"{"uuid":"00000000-0000-4000-8000-000000000001","event":"a","distinct_id":"d","timestamp":"2021-06-01T00:00:00Z"}"#,
            r#"{"event":"skip","distinct_id":"d"}"#,
            r#"{"event":"$$plugin_metrics","distinct_id":"d"}"#,
            "{not json",
            r#"{"event":"b","distinct_id":""}"#,
            r#"{"uuid":"00000000-0000-4000-8000-000000000002","event":"c","distinct_id":"d","timestamp":"2026-06-01T00:00:00Z"}"#,
        ];
        let ignore = ["skip".to_string()].into();
        let now = crate::timestamp::parse_iso("2026-06-02T00:00:00Z").unwrap();
        let options = PageOptions { events_to_ignore: &ignore, also_ignore: Some("$$plugin_metrics"), now };
        let limits = BatchLimits { max_events: 10, max_bytes: 1_000_000 };
        let (mut old, mut young) = (Batcher::new("k", true, limits, false), Batcher::new("k", false, limits, false));
        let mut hooks = Counted { unreadable: Vec::new(), rejected: 0 };
        let items = lines.iter().map(|l| scan::event(l).map_err(|e| e.at));
        let lanes = Lanes { batcher: &mut old, young: Some((now - chrono::Duration::hours(48), &mut young)) };
        let mut out = Vec::new();
        let tally = batches(&options, items, &mut hooks, lanes, &mut out);
        assert_eq!(tally, Tally { read: 6, ignored: 2, other_path: 0, on_path: 3, young: 1 });
        assert_eq!((hooks.unreadable.len(), hooks.rejected), (1, 1));
        assert!(out.is_empty());
        assert_eq!((old.len(), young.len()), (1, 1));
    }
}

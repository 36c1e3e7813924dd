//! A page of events into batches: each event scanned once, the ignore list, the core's
//! transform and batcher; events younger than 48 hours in batches of their own, without
//! `historical_migration`; what is rejected, ignored or young is counted.

use chrono::Utc;
use migrator3000::batch::{Batch, BatchLimits, Batcher};
use migrator3000::page::{self, Lanes, PageHooks, PageOptions};
use migrator3000::scan::{self, NotJson};
use migrator3000::transform::{Prepared, Rejected, SourceEvent};

use super::run_options::Options;
use crate::store::settle::Settled;

/// Transforms a page's events into batches (those younger than `young_after` in batches
/// of their own, without `historical_migration`); rejections, ignored and young events
/// are counted.
pub fn batches_of(events: &[String], options: &Options, settled: &mut Settled) -> Vec<Batch> {
    batches_under(events, options, options.capture.limits, settled)
}

/// The command's side of the core's page step: lines that are not JSON and events the
/// transform refused are settled as rejected; the days of the events handed over are
/// recorded for `verify` when asked.
struct CommandHooks<'s> {
    settled: &'s mut Settled,
    record_days: bool,
}

impl PageHooks for CommandHooks<'_> {
    /// Where a line stops being JSON, and its length.
    type Unreadable = (NotJson, usize);

    fn unreadable(&mut self, (at, len): (NotJson, usize)) {
        let why = format!("the source gave an event that is not JSON (at byte {} of {len})", at.at);
        self.settled.rejected.push((None, None, why));
    }

    fn prepared(&mut self, _event: &SourceEvent<'_>, prepared: &Prepared) -> bool {
        if self.record_days {
            self.settled.converted.push((prepared.at.date_naive().to_string(), prepared.uuid.clone()));
        }
        true
    }

    fn rejected(&mut self, _event: &SourceEvent<'_>, r: Rejected) {
        self.settled.rejected.push((r.uuid, r.event_name, r.reason.to_string()));
    }
}

/// `batches_of`, the batches within `limits` (lower than the options' once the
/// destination showed it takes less).
pub fn batches_under(events: &[String], options: &Options, limits: BatchLimits, settled: &mut Settled) -> Vec<Batch> {
    let page_options = PageOptions { events_to_ignore: &options.events_to_ignore, also_ignore: None, now: Utc::now() };
    let mut batcher = Batcher::new(&options.api_key, true, limits, options.capture.gzip);
    let mut young = Batcher::new(&options.api_key, false, limits, options.capture.gzip);
    let mut batches = Vec::new();
    // Each line read once, its properties with it.
    let items = events.iter().map(|text| scan::event(text).map_err(|at| (at, text.len())));
    let mut hooks = CommandHooks { settled, record_days: options.record_days };
    let lanes = Lanes { batcher: &mut batcher, young: Some((options.young_after, &mut young)) };
    let tally = page::batches(&page_options, items, &mut hooks, lanes, &mut batches);
    settled.read += tally.read as u64;
    settled.live += tally.young as u64;
    batches.extend(batcher.flush());
    batches.extend(young.flush());
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::retry::RetryPolicy;
    use crate::sink::delivery::Capture;
    use migrator3000::batch::BatchLimits;

    fn options() -> Options {
        Options {
            run: "r".into(),
            api_key: "phc_k".into(),
            capture: Capture {
                json_url: "http://x/batch/".into(),
                gzip_url: "http://x/batch/?compression=gzip-js".into(),
                limits: BatchLimits { max_events: 2, max_bytes: 1_000_000 },
                gzip: false,
                events_per_minute: None,
                retry: RetryPolicy::new(1.0),
            },
            events_to_ignore: ["$feature_flag_called".to_string()].into(),
            page_size: 10,
            concurrency: 1,
            record_days: true,
            young_after: Utc::now() - chrono::Duration::hours(48),
        }
    }

    #[test]
    fn a_page_becomes_batches_with_rejections_and_ignored_events_counted() {
        let events: Vec<String> = vec![
            r#"{"uuid":"00000000-0000-4000-8000-000000000001","event":"a","distinct_id":"d","timestamp":"2021-06-01T00:00:00.000001Z","properties":{}}"#.into(),
            r#"{"uuid":"00000000-0000-4000-8000-000000000002","event":"$feature_flag_called","distinct_id":"d","properties":{}}"#.into(),
            r#"{"uuid":"00000000-0000-4000-8000-000000000003","event":"b","distinct_id":"","properties":{}}"#.into(),
            "{not json".into(),
            r#"{"uuid":"00000000-0000-4000-8000-000000000004","event":"c","distinct_id":"d","timestamp":"2021-06-01T00:00:01Z","properties":{}}"#.into(),
            r#"{"uuid":"00000000-0000-4000-8000-000000000005","event":"d","distinct_id":"d","timestamp":"2021-06-01T00:00:02Z","properties":{}}"#.into(),
        ];
        let mut settled = Settled::default();
        let batches = batches_of(&events, &options(), &mut settled);
        assert_eq!(batches.iter().map(|b| b.uuids.len()).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(settled.read, 6);
        assert_eq!(settled.rejected.len(), 2);
        assert_eq!(
            settled.converted[0],
            ("2021-06-01".to_string(), "00000000-0000-4000-8000-000000000001".to_string())
        );
        assert_eq!(settled.converted.len(), 3);
        let body = migrator3000::delivery::batch_json(&batches[0]).unwrap();
        assert!(body.contains("\"historical_migration\":true"));
        assert!(body.contains("2021-06-01T00:00:00.000001Z"), "{body}");
    }
}

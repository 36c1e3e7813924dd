//! Progress as the migration settles pages: a bar with the rate, the share done (of the
//! events the source counted, else the source's own measure, else the range behind the
//! cursor) and the time left on a terminal; a plain line every few seconds otherwise
//! (logs, CI), and a last one at the end.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use migrator3000::timestamp;

use crate::shared::reporter::{self, note};
use crate::store::runs::{Cursor, Run};
use crate::store::settle::Settled;

const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    bar: Option<ProgressBar>,
    from_ms: i64,
    to_ms: i64,
    /// The run's events at the source, and those read before this process.
    total: Option<u64>,
    read_before: u64,
    started: Instant,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    read: u64,
    delivered: u64,
    rejected: u64,
    kept: u64,
    share: f64,
    last_line: Option<Instant>,
}

fn millis(text: &str) -> i64 {
    timestamp::parse_iso(text).map_or(0, |t| t.timestamp_millis())
}

impl Progress {
    pub fn new(run: &Run) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(1000);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {percent:>3}% {msg} ({eta} left)")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            reporter::attach(&bar);
            bar
        });
        let progress = Progress {
            bar,
            from_ms: millis(&run.from),
            to_ms: millis(&run.to),
            total: run.total.filter(|t| *t > 0),
            read_before: run.read,
            started: Instant::now(),
            counts: Mutex::new(Counts::default()),
        };
        if let Some(cursor) = &run.cursor {
            let share = progress.share(0, cursor);
            progress.counts.lock().unwrap_or_else(|e| e.into_inner()).share = share;
        }
        progress
    }

    /// The share done with `read` events read by this process, the cursor at `cursor`.
    fn share(&self, read: u64, cursor: &Cursor) -> f64 {
        if let Some(total) = self.total {
            return ((self.read_before + read) as f64 / total as f64).clamp(0.0, 1.0);
        }
        if self.to_ms <= self.from_ms {
            return 0.0;
        }
        ((millis(&cursor.timestamp) - self.from_ms) as f64 / (self.to_ms - self.from_ms) as f64).clamp(0.0, 1.0)
    }

    /// A page settled; `share` is the source's own measure of the cursor, if it has one.
    pub fn settled(&self, settled: &Settled, cursor: Option<&Cursor>, share: Option<f64>) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.read += settled.read;
        counts.delivered += settled.delivered;
        counts.rejected += settled.rejected.len() as u64;
        counts.kept += settled.keep.iter().map(|k| k.0.uuids.len() as u64).sum::<u64>();
        if let Some(cursor) = cursor {
            counts.share = share.unwrap_or_else(|| self.share(counts.read, cursor)).clamp(0.0, 1.0);
        }
        match &self.bar {
            Some(bar) => {
                bar.set_position((counts.share * 1000.0) as u64);
                bar.set_message(self.line(&counts));
            }
            None if counts.last_line.is_none_or(|at| at.elapsed() >= PLAIN_EVERY) => {
                counts.last_line = Some(Instant::now());
                note!("{}", self.plain(&counts));
            }
            None => {}
        }
    }

    /// A kept request of `events` was sent again and settled as `settled`.
    pub fn resent(&self, events: u64, settled: &Settled) {
        {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            counts.kept = counts.kept.saturating_sub(events);
        }
        self.settled(settled, None, None);
    }

    fn line(&self, counts: &Counts) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let of = self.total.map_or(String::new(), |total| format!(" of {total}"));
        format!(
            "{}{of} read, {} delivered, {} rejected, {} kept to send again; {:.0} events/s",
            self.read_before + counts.read,
            counts.delivered,
            counts.rejected,
            counts.kept,
            counts.delivered as f64 / seconds
        )
    }

    fn plain(&self, counts: &Counts) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        let left = if counts.share > 0.0 && counts.share < 1.0 {
            format!("; about {:.0} s left", seconds * (1.0 - counts.share) / counts.share)
        } else {
            String::new()
        };
        format!("{:.0}% done: {}{left}", counts.share * 100.0, self.line(counts))
    }

    pub fn finish(&self) {
        match &self.bar {
            Some(bar) => {
                reporter::detach();
                bar.finish_and_clear()
            }
            None => {
                let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
                if counts.last_line.is_some() {
                    note!("{}", self.plain(&counts));
                }
            }
        }
    }
}

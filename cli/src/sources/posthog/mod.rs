//! A PostHog as a source: its ClickHouse (fastest), or its Query API.

pub mod clickhouse;
pub mod persons;
pub mod query_api;

use chrono::{DateTime, Utc};

use crate::shared::retry::ReadError;
use crate::sources::{Tally, Unread, Window};
use crate::store::runs::Cursor;

/// A PostHog source read in windows, with a tally of the rows it handed over of each:
/// ClickHouse and the Query API count a window's rows again the same way, for
/// `Source::unread` and `Source::count`.
pub(crate) trait Recount {
    fn windows(&self) -> &[Window];
    fn tally(&mut self) -> &mut Tally;
    /// The rows of `[from, to)` after `after`, as the source holds them now.
    fn count_rows(&mut self, from: DateTime<Utc>, to: DateTime<Utc>, after: Option<&Cursor>) -> Result<u64, ReadError>;

    /// The windows read that hold more rows than were read of them (the tally is taken
    /// out while the source counts, and put back).
    fn recount_unread(&mut self) -> Result<Vec<Unread>, ReadError> {
        let windows = self.windows().to_vec();
        let tally = std::mem::take(self.tally());
        let unread = tally.unread(&windows, |w, after| self.count_rows(w.from, w.to, after));
        *self.tally() = tally;
        unread
    }

    /// The rows `[from, to)` holds now.
    fn recount(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Option<u64>, ReadError> {
        self.count_rows(from, to, None).map(Some)
    }
}

//! Every default of the command in one place: the flags' defaults, and the sizes and
//! limits the layers below use when no flag says otherwise.

/// The state file, where a run resumes from.
pub const STATE_FILE: &str = "migrator3000.sqlite";
/// Events a request holds at most (as the core's settings read it).
pub const BATCH_SIZE: &str = "500";
pub const BATCH_MAX_KILOBYTES: &str = "1800";
pub const GZIP: &str = "on";
/// Requests in flight at once.
pub const CONCURRENCY: usize = 4;
/// Requests in flight at most: each is a thread with its connection, and a destination
/// gains nothing from more (pace a migration with --events-per-minute).
pub const MOST_CONCURRENCY: usize = 64;
/// Events handed from a source to the senders at a time.
pub const PAGE_SIZE: usize = 10_000;
/// Events of a page at most: a page is held in memory with its requests (PostHog's
/// Query API gives 50,000 rows a query at most).
pub const MOST_PAGE_SIZE: usize = 100_000;
/// PostHog's cap on rows a Query API query returns: the page size on that source, and
/// the rows a page of uuids asks for in `verify`.
pub const QUERY_API_MOST_ROWS: usize = 50_000;
/// PostHog's throttle of HogQL queries, per personal API key.
pub const QUERIES_PER_HOUR: usize = 120;
/// A failing read of a source or of the Query API is tried this often before giving up
/// (a rerun resumes).
pub const READ_TRIES: u32 = 8;
/// Tries of a request without any answer, a second more apart each, while no request
/// ever got one, before the destination (or a Query API) is taken to be out of reach (a
/// wrong host, DNS, a firewall) rather than down a while.
pub const FIRST_CONTACT_TRIES: u32 = 3;
/// Multiplies every wait before a try again (tests make them short).
pub const RETRY_SCALE: f64 = 1.0;
/// Events younger than this many hours go without `historical_migration`, as PostHog asks.
pub const YOUNG_HOURS: i64 = 48;
/// `verify`: a day that differs and took events in the last this many minutes is still
/// arriving; `--wait` without a value waits this many minutes at most, `--resend` waits
/// for the days it sent this long without `--wait`.
pub const SETTLE_MINUTES: f64 = 10.0;
pub const WAIT_MINUTES: &str = "30";
pub const RESEND_WAIT_MINUTES: f64 = 10.0;
/// `verify`: --wait and --settle-minutes at most, a day.
pub const MOST_MINUTES: f64 = 24.0 * 60.0;
/// `demo`: events in the generated export.
pub const DEMO_EVENTS: usize = 5000;

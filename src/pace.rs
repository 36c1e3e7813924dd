//! Pacing the history to the events per minute the user set: a bucket of at most one
//! minute's worth of events (or one page, if larger), refilled at the rate. A pause
//! (a held destination, a restart) leaves at most one minute's worth to send at once.
//! Over the rate, the page goes back to the source, which offers it again later:
//! nothing is copied into storage to wait.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub tokens: u64,
    /// When `tokens` was last brought up to date (ms).
    pub at: i64,
}

/// Whether `count` events may go now; the bucket to store either way, and if not,
/// about how long until they may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    pub allowed: bool,
    pub bucket: Bucket,
    pub wait_seconds: u64,
}

pub fn take(stored: Option<Bucket>, per_minute: u64, count: u64, now_ms: i64) -> Take {
    let per_minute = per_minute.max(1);
    let capacity = per_minute.max(count);
    let mut bucket = stored.unwrap_or(Bucket { tokens: capacity, at: now_ms });
    let elapsed = u64::try_from(now_ms - bucket.at).unwrap_or(0);
    let earned = elapsed.saturating_mul(per_minute) / 60_000;
    if bucket.tokens.saturating_add(earned) >= capacity {
        bucket = Bucket { tokens: capacity, at: now_ms };
    } else if earned > 0 {
        // Only the time that earned whole events is spent.
        bucket.tokens += earned;
        bucket.at += i64::try_from(earned * 60_000 / per_minute).unwrap_or(0);
    }
    if bucket.tokens >= count {
        bucket.tokens -= count;
        return Take { allowed: true, bucket, wait_seconds: 0 };
    }
    let wait_seconds = ((count - bucket.tokens) * 60).div_ceil(per_minute);
    Take { allowed: false, bucket, wait_seconds }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn a_minutes_worth_goes_at_once_then_the_rate_holds() {
        let first = take(None, 100, 60, 0);
        assert!(first.allowed);
        assert!(take(Some(first.bucket), 100, 40, 0).allowed);
        let over = take(Some(take(Some(first.bucket), 100, 40, 0).bucket), 100, 50, 0);
        assert!(!over.allowed);
        assert_eq!(over.wait_seconds, 30);
        // Thirty seconds later, fifty more have been earned.
        assert!(take(Some(over.bucket), 100, 50, 30_000).allowed);
    }

    #[test]
    fn sending_at_the_rate_for_an_hour_sends_the_rate() {
        let mut bucket = None;
        let mut sent = 0;
        for second in 0..3600 {
            let t = take(bucket, 600, 20, second * 1000);
            bucket = Some(t.bucket);
            sent += if t.allowed { 20 } else { 0 };
        }
        // One minute's worth at once, then 600 a minute: 36,600 at most.
        assert!((36_000..=36_600).contains(&sent), "{sent}");
    }

    #[test]
    fn a_long_pause_earns_no_more_than_a_minutes_worth() {
        let empty = Bucket { tokens: 0, at: 0 };
        let later = take(Some(empty), 100, 100, 6 * 3_600_000);
        assert!(later.allowed);
        assert!(!take(Some(later.bucket), 100, 10, 6 * 3_600_000).allowed, "the pause was saved up");
    }

    #[test]
    fn a_page_larger_than_a_minutes_worth_still_goes_when_the_bucket_is_full() {
        let t = take(None, 100, 250, 0);
        assert!(t.allowed);
        let next = take(Some(t.bucket), 100, 250, 60_000);
        assert!(!next.allowed);
        assert!(take(Some(next.bucket), 100, 250, 150_000).allowed);
    }
}

//! What the history has in flight, kept in the host's storage as numbered records (an
//! atomic sequence gives the numbers, as for parcels): one per export page from the
//! moment it reaches the app until it is handled to the end, and one per live event
//! left to an export that may already have read past it (a "late" instant, read again
//! once the export is through). Every minute the records from the lowest that may
//! still exist (the floor) up to the newest are looked at.
//!
//! Storage has no way to list keys: numbering is what lets the minute task find every
//! page in flight, and so the lowest of them, which the position must not pass.

use serde::{Deserialize, Serialize};

/// Records looked at in one minute, to stay well inside the host's 30 s.
pub const LOOK_AT_MOST: u64 = 500;
/// A page being handled this long has lost its handler (a crash, a call the host gave
/// up on): no request of the app waits longer than the host's 30 s, and a page has
/// a handful of requests.
pub const HANDLING_LIMIT_MS: i64 = 10 * 60 * 1000;
/// How late the host's retry of a page handed back may come before it counts as lost.
pub const RETRY_GRACE_MS: i64 = 2 * 60 * 1000;
/// The host offers a page at most this many times (its first attempt and 14 retries:
/// plugin server 1.10.5 and the V2 export both stop at `retriesPerformedSoFar >= 15`).
pub const HOST_ATTEMPTS: u32 = 15;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Record {
    Page(PageRecord),
    Late(LateRecord),
}

/// A page of the export, from its first arrival until it is handled to the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageRecord {
    /// The run it arrived in.
    pub epoch: u32,
    /// Its earliest historical event (ms): its export window starts at or before it.
    pub from: i64,
    /// The storage key that finds this record again when the host offers the page again.
    pub key: String,
    /// When it last arrived (ms).
    pub at: i64,
    /// How many times the host has offered it.
    pub attempts: u32,
    /// When it was last handed back with RetryError (ms); `None` while being handled.
    #[serde(default)]
    pub handed_back_at: Option<i64>,
}

/// The instant (ms) of a live event left to an export that may have read past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateRecord {
    pub at: i64,
}

impl PageRecord {
    pub fn new(epoch: u32, from: i64, key: String, now_ms: i64) -> PageRecord {
        PageRecord { epoch, from, key, at: now_ms, attempts: 1, handed_back_at: None }
    }

    /// The host offers the page again.
    pub fn again(mut self, now_ms: i64) -> PageRecord {
        self.attempts += 1;
        self.at = now_ms;
        self.handed_back_at = None;
        self
    }

    pub fn handed_back(mut self, now_ms: i64) -> PageRecord {
        self.handed_back_at = Some(now_ms);
        self
    }

    /// Nobody will finish this page: its handler is gone, or the host will not offer it
    /// again (retries used up, or its retry job long overdue).
    pub fn lost(&self, now_ms: i64) -> bool {
        match self.handed_back_at {
            None => now_ms - self.at > HANDLING_LIMIT_MS,
            Some(back) => {
                // The host waits 3 * 2^n s before retry n + 1 (n = attempts so far - 1).
                let wait_ms = 3_000i64.saturating_mul(1i64 << self.attempts.saturating_sub(1).min(30));
                self.attempts >= HOST_ATTEMPTS || now_ms > back.saturating_add(wait_ms).saturating_add(RETRY_GRACE_MS)
            }
        }
    }
}

/// The ids to read now: from the floor, at most `LOOK_AT_MOST`, up to the newest
/// (none when `first > last`).
pub fn to_read(floor: u64, last: u64) -> (u64, u64) {
    let first = floor.max(1);
    (first, last.min(first + LOOK_AT_MOST - 1))
}

/// What the shim read: the floor it stored, the newest id issued, and each id read
/// with what storage holds for it (`None`: gone; `Err`: not a record of ours).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub floor: u64,
    pub last: u64,
    pub read: Vec<(u64, Option<Result<Record, String>>)>,
}

/// A record to delete, with the page key that leads to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forget {
    pub id: u64,
    pub key: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Looked {
    /// The floor to store.
    pub floor: u64,
    /// Every id up to the newest was read: only then do `in_flight` and `lowest` say
    /// everything about the pages in flight.
    pub complete: bool,
    /// Pages of the run `epoch` in flight, and the earliest event among them (ms).
    pub in_flight: u64,
    pub lowest: Option<i64>,
    /// Pages of the run that nobody will finish.
    pub lost: u64,
    /// Late instants found (to be kept in the export state, then forgotten here).
    pub late: Vec<i64>,
    /// Records done with: late instants taken, pages of earlier runs, unreadable ones.
    pub forget: Vec<Forget>,
    /// Ids whose content was not a record of ours.
    pub unreadable: Vec<u64>,
}

/// Looks at the records read for the run `epoch`.
pub fn look(seen: &Seen, epoch: u32, now_ms: i64) -> Looked {
    let (first, end) = to_read(seen.floor, seen.last);
    let mut looked = Looked { floor: first, complete: end >= seen.last, ..Looked::default() };
    let mut contiguous = true;
    for (id, record) in &seen.read {
        let gone = match record {
            None => true,
            Some(Err(_)) => {
                looked.unreadable.push(*id);
                looked.forget.push(Forget { id: *id, key: None });
                true
            }
            Some(Ok(Record::Late(late))) => {
                looked.late.push(late.at);
                looked.forget.push(Forget { id: *id, key: None });
                true
            }
            Some(Ok(Record::Page(page))) if page.epoch != epoch => {
                // Its run was abandoned: the run after it reads that history again.
                looked.forget.push(Forget { id: *id, key: Some(page.key.clone()) });
                true
            }
            Some(Ok(Record::Page(page))) => {
                looked.in_flight += 1;
                looked.lowest = Some(looked.lowest.map_or(page.from, |l| l.min(page.from)));
                looked.lost += u64::from(page.lost(now_ms));
                false
            }
        };
        if contiguous && gone && *id == looked.floor {
            looked.floor = id + 1;
        } else {
            contiguous = false;
        }
    }
    looked
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_435_200_000;

    fn page(epoch: u32, from: i64) -> Option<Result<Record, String>> {
        Some(Ok(Record::Page(PageRecord::new(epoch, from, format!("migrator_page_{epoch}_{from}"), NOW))))
    }

    #[test]
    fn the_lowest_page_of_the_run_in_flight_is_found_and_the_floor_moves_past_what_is_gone() {
        let seen = Seen {
            floor: 3,
            last: 8,
            read: vec![
                (3, None),
                (4, Some(Ok(Record::Late(LateRecord { at: 42 })))),
                (5, page(2, 9_000)),
                (6, page(1, 1_000)),
                (7, page(2, 7_000)),
                (8, None),
            ],
        };
        let looked = look(&seen, 2, NOW);
        assert!(looked.complete);
        assert_eq!((looked.in_flight, looked.lowest, looked.lost), (2, Some(7_000), 0));
        assert_eq!(looked.late, [42]);
        assert_eq!(looked.floor, 5, "the floor stops at the first page still in flight");
        assert_eq!(
            looked.forget,
            [Forget { id: 4, key: None }, Forget { id: 6, key: Some("migrator_page_1_1000".into()) }],
            "the late instant is taken and the page of an abandoned run forgotten"
        );
    }

    #[test]
    fn a_look_that_cannot_reach_the_newest_record_says_so() {
        let read = (1..=LOOK_AT_MOST).map(|id| (id, None)).collect();
        let looked = look(&Seen { floor: 1, last: LOOK_AT_MOST + 10, read }, 1, NOW);
        assert!(!looked.complete);
        assert_eq!(looked.floor, LOOK_AT_MOST + 1);
        assert_eq!(to_read(looked.floor, LOOK_AT_MOST + 10), (LOOK_AT_MOST + 1, LOOK_AT_MOST + 10));
        assert_eq!(to_read(4, 3), (4, 3), "nothing to read");
        let empty = look(&Seen { floor: 4, last: 3, read: Vec::new() }, 1, NOW);
        assert_eq!((empty.floor, empty.complete), (4, true));
    }

    #[test]
    fn unreadable_records_are_reported_and_dropped() {
        let seen = Seen { floor: 1, last: 2, read: vec![(1, Some(Err("x".into()))), (2, page(1, 5))] };
        let looked = look(&seen, 1, NOW);
        assert_eq!(looked.unreadable, [1]);
        assert_eq!(looked.floor, 2);
        assert_eq!(looked.in_flight, 1);
    }

    #[test]
    fn a_page_is_lost_when_its_handler_or_its_retry_is_gone() {
        let handling = PageRecord::new(1, 0, "k".into(), NOW);
        assert!(!handling.lost(NOW + HANDLING_LIMIT_MS));
        assert!(handling.lost(NOW + HANDLING_LIMIT_MS + 1));
        // Handed back at its first attempt: the host retries 3 s later.
        let back = handling.clone().handed_back(NOW);
        assert!(!back.lost(NOW + 3_000 + RETRY_GRACE_MS));
        assert!(back.lost(NOW + 3_000 + RETRY_GRACE_MS + 1));
        // The fifth attempt waits 48 s for the sixth.
        let mut fifth = handling.clone();
        for _ in 1..5 {
            fifth = fifth.handed_back(NOW).again(NOW);
        }
        assert_eq!(fifth.attempts, 5);
        assert!(!fifth.clone().handed_back(NOW).lost(NOW + 48_000 + RETRY_GRACE_MS));
        assert!(fifth.handed_back(NOW).lost(NOW + 48_000 + RETRY_GRACE_MS + 1));
        // After its last attempt the host drops it.
        let mut last = handling;
        for _ in 1..HOST_ATTEMPTS {
            last = last.handed_back(NOW).again(NOW);
        }
        assert!(!last.lost(NOW));
        assert!(last.handed_back(NOW).lost(NOW));
    }

    #[test]
    fn records_keep_their_shape_in_storage() {
        let record = Record::Page(PageRecord::new(3, 17, "migrator_page_3_x".into(), 99).handed_back(100));
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "page", "epoch": 3, "from": 17, "key": "migrator_page_3_x", "at": 99,
                               "attempts": 1, "handedBackAt": 100})
        );
        assert_eq!(serde_json::from_value::<Record>(json).unwrap(), record);
        let late: Record = serde_json::from_str(r#"{"kind": "late", "at": 5}"#).unwrap();
        assert_eq!(late, Record::Late(LateRecord { at: 5 }));
    }
}

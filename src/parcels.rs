//! Requests kept in the host's storage until they are delivered: one key per request
//! ("parcel"), numbered by an atomic sequence. Every minute the parcels from the lowest
//! that may still exist (the floor) up to the newest are looked at: that finds a
//! waiting request whose resend job was lost, counts what is still open, and moves
//! the floor past parcels already gone, so a look never goes over every id ever
//! issued.

use serde::{Deserialize, Serialize};

use crate::batch::{Batch, Body};

/// A waiting parcel this late past its time has lost its job: it is sent again.
pub const LOST_JOB_GRACE_MS: i64 = 2 * 60 * 1000;
/// Parcels looked at in one call, to stay well inside the host's 30 s.
pub const LOOK_AT_MOST: u64 = 500;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parcel {
    pub request: StoredRequest,
    pub historical: bool,
    /// The attempt its next sending will be.
    pub attempt: u32,
    /// `waiting`, `parked` or `held`.
    pub state: String,
    /// When it is due to be sent again (waiting only, ms).
    pub due_at: i64,
    pub reason: String,
}

/// A request as kept: its body as sent (gzip as base64), and its events' uuids. The
/// address is not kept: a request held for a wrong host goes where the settings say
/// when it is sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRequest {
    pub body: String,
    /// `json` or `gzip-base64`.
    pub encoding: String,
    pub json_bytes: usize,
    pub uuids: Vec<String>,
}

impl StoredRequest {
    pub fn of(batch: &Batch) -> StoredRequest {
        use base64::Engine;
        let (body, encoding) = match &batch.body {
            Body::Json(text) => (text.clone(), "json"),
            Body::Gzip(bytes) => (base64::engine::general_purpose::STANDARD.encode(bytes), "gzip-base64"),
        };
        StoredRequest { body, encoding: encoding.into(), json_bytes: batch.json_bytes, uuids: batch.uuids.clone() }
    }

    pub fn to_batch(&self) -> Result<Batch, String> {
        use base64::Engine;
        let body = match self.encoding.as_str() {
            "json" => Body::Json(self.body.clone()),
            "gzip-base64" => Body::Gzip(
                base64::engine::general_purpose::STANDARD
                    .decode(&self.body)
                    .map_err(|e| format!("a kept request is not base64 ({e})"))?,
            ),
            other => return Err(format!("a kept request has an unknown encoding \"{other}\"")),
        };
        Ok(Batch { body, json_bytes: self.json_bytes, uuids: self.uuids.clone() })
    }
}

/// Why the parcels are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The minute task: resend waiting parcels whose job was lost.
    Minute,
    /// The settings were saved: held parcels go again.
    SettingsSaved,
    /// The user asked: parked and held parcels go again.
    ResendParked,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Looked {
    /// The new floor.
    pub floor: u64,
    /// Where to go on next time, when not everything could be looked at.
    pub next_from: Option<u64>,
    /// Waiting or held: the history cannot advance past them. At least 1 while some
    /// parcels were not looked at.
    pub open: u64,
    pub parked: u64,
    /// Parcels to store as given and send now (by a job).
    pub send: Vec<(u64, Parcel)>,
    /// Events in `send`.
    pub events: usize,
}

/// Looks at `parcels` (each id from `from` up, with what storage holds for it), the
/// newest id being `last`.
pub fn look(floor: u64, from: u64, last: u64, parcels: &[(u64, Option<Parcel>)], why: Look, now_ms: i64) -> Looked {
    let mut looked = Looked { floor, ..Looked::default() };
    let mut contiguous = from <= floor;
    for (id, parcel) in parcels {
        let Some(parcel) = parcel else {
            if contiguous && *id == looked.floor {
                looked.floor = id + 1;
            }
            continue;
        };
        contiguous = false;
        let resend = match (parcel.state.as_str(), why) {
            ("waiting", _) => now_ms >= parcel.due_at + LOST_JOB_GRACE_MS,
            ("held", Look::SettingsSaved | Look::ResendParked) => true,
            ("parked", Look::ResendParked) => true,
            _ => false,
        };
        match parcel.state.as_str() {
            "parked" if !resend => looked.parked += 1,
            _ => looked.open += 1,
        }
        if resend {
            let attempt = if parcel.state == "waiting" { parcel.attempt } else { 1 };
            let state = "waiting".to_string();
            // The due time moves on, so the next look does not send it again meanwhile.
            let again = Parcel { attempt, state, due_at: now_ms, ..parcel.clone() };
            looked.events += again.request.uuids.len();
            looked.send.push((*id, again));
        }
    }
    let seen_up_to = parcels.last().map_or(from.saturating_sub(1), |(id, _)| *id);
    if seen_up_to < last {
        looked.next_from = Some(seen_up_to + 1);
        looked.open = looked.open.max(1);
    }
    looked
}

/// The ids to look at in one call: from `from` (or the floor), at most `LOOK_AT_MOST`.
pub fn to_look_at(floor: u64, from: Option<u64>, last: u64) -> std::ops::RangeInclusive<u64> {
    let start = from.unwrap_or(floor).max(floor).max(1);
    start..=last.min(start + LOOK_AT_MOST - 1)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn parcel(state: &str, due_at: i64) -> Option<Parcel> {
        Some(Parcel {
            request: StoredRequest {
                body: "{}".into(),
                encoding: "json".into(),
                json_bytes: 2,
                uuids: vec!["u".into()],
            },
            historical: true,
            attempt: 3,
            state: state.into(),
            due_at,
            reason: "HTTP 503".into(),
        })
    }

    #[test]
    fn the_floor_moves_past_parcels_gone_and_stops_at_the_first_kept() {
        let parcels = [(1, None), (2, None), (3, parcel("parked", 0)), (4, None), (5, parcel("waiting", 10_000))];
        let looked = look(1, 1, 5, &parcels, Look::Minute, 0);
        assert_eq!(looked.floor, 3);
        assert_eq!((looked.open, looked.parked), (1, 1));
        assert!(looked.send.is_empty());
        assert_eq!(looked.next_from, None);
    }

    #[test]
    fn a_waiting_parcel_whose_job_was_lost_is_sent_again() {
        let parcels = [(7, parcel("waiting", 1_000))];
        assert!(look(7, 7, 7, &parcels, Look::Minute, 1_000 + LOST_JOB_GRACE_MS - 1).send.is_empty());
        let looked = look(7, 7, 7, &parcels, Look::Minute, 1_000 + LOST_JOB_GRACE_MS);
        assert_eq!(looked.send.len(), 1);
        let (id, again) = &looked.send[0];
        assert_eq!((*id, again.attempt, again.due_at), (7, 3, 1_000 + LOST_JOB_GRACE_MS));
        assert_eq!(looked.open, 1);
    }

    #[test]
    fn saving_settings_sends_held_parcels_and_the_user_sends_parked_ones() {
        let parcels = [(1, parcel("held", 0)), (2, parcel("parked", 0))];
        let saved = look(1, 1, 2, &parcels, Look::SettingsSaved, 5);
        assert_eq!(
            saved.send.iter().map(|(id, p)| (*id, p.attempt, p.state.as_str())).collect::<Vec<_>>(),
            [(1, 1, "waiting")]
        );
        assert_eq!((saved.open, saved.parked), (1, 1));
        let asked = look(1, 1, 2, &parcels, Look::ResendParked, 5);
        assert_eq!(asked.send.len(), 2);
        assert_eq!((asked.open, asked.parked, asked.events), (2, 0, 2));
    }

    #[test]
    fn a_look_cut_short_goes_on_next_time_and_counts_as_open() {
        assert_eq!(to_look_at(3, None, 10_000), 3..=502);
        assert_eq!(to_look_at(3, Some(503), 10_000), 503..=1002);
        assert!(to_look_at(0, None, 0).is_empty(), "nothing kept yet");
        let parcels: Vec<_> = (3..=502).map(|id| (id, None)).collect();
        let looked = look(3, 3, 10_000, &parcels, Look::Minute, 0);
        assert_eq!((looked.floor, looked.next_from, looked.open), (503, Some(503), 1));
    }

    #[test]
    fn kept_requests_read_back_as_the_batch_they_were() {
        let mut batcher = crate::batch::Batcher::new(
            "k",
            true,
            crate::batch::BatchLimits { max_events: 10, max_bytes: 10_000 },
            true,
        );
        batcher.push_json("u1", "{\"event\":\"e\"}");
        let batch = batcher.flush().unwrap();
        let stored = StoredRequest::of(&batch);
        assert_eq!(stored.encoding, "gzip-base64");
        assert_eq!(stored.to_batch().unwrap(), batch);
        let broken = StoredRequest { encoding: "zip".into(), ..stored };
        assert!(broken.to_batch().unwrap_err().contains("unknown encoding"));
    }
}

use super::*;
use crate::transform::Prepared;
use chrono::{DateTime, Duration};
use serde_json::{json, Value};

const LIMITS: BatchLimits = BatchLimits { max_events: 100, max_bytes: 1_000_000 };

fn batch(n: usize, gzip: bool) -> Batch {
    let mut batcher = Batcher::new("phc_key", true, LIMITS, gzip);
    for i in 0..n {
        let uuid = format!("00000000-0000-4000-8000-{i:012}");
        let json = json!({"event": format!("e{i}"), "uuid": uuid, "distinct_id": "d"}).to_string();
        batcher.push(&Prepared { uuid, json, at: DateTime::UNIX_EPOCH, used_current_time: false, derived_uuid: false });
    }
    batcher.flush().unwrap()
}

fn encoded(batch: &Batch) -> (String, &'static str) {
    match &batch.body {
        crate::batch::Body::Json(text) => (text.clone(), "json"),
        crate::batch::Body::Gzip(bytes) => (BASE64.encode(bytes), "gzip-base64"),
    }
}

fn decide_for(batch: &Batch, status: u16, attempt: u32, retry_after: Option<u64>) -> Decision {
    let (body, encoding) = encoded(batch);
    decide(Sent { body: &body, encoding, attempt }, status, retry_after, "{\"error\":\"bad\"}", LIMITS, true).unwrap()
}

#[test]
fn every_status_has_a_meaning() {
    let cases = [
        (200, Answer::Delivered),
        (204, Answer::Delivered),
        (400, Answer::Invalid),
        (413, Answer::TooLarge),
        (401, Answer::Unauthorized),
        (403, Answer::Unauthorized),
        (404, Answer::WrongDestination),
        (405, Answer::WrongDestination),
        (408, Answer::Retry),
        (429, Answer::Retry),
        (500, Answer::Retry),
        (503, Answer::Retry),
        (302, Answer::Retry),
        (0, Answer::Retry),
    ];
    for (status, answer) in cases {
        assert_eq!(classify(status), answer, "{status}");
    }
}

#[test]
fn delivered_counts_the_events() {
    for gzip in [true, false] {
        assert_eq!(decide_for(&batch(7, gzip), 200, 1, None), Decision::Delivered { count: 7 });
    }
}

#[test]
fn a_refused_request_splits_in_halves_that_keep_every_event_once() {
    for status in [400, 413] {
        let original = batch(7, false);
        let Decision::Split(halves) = decide_for(&original, status, 1, None) else { panic!("no split for {status}") };
        assert_eq!(halves.len(), 2);
        assert_eq!(halves[0].uuids.len(), 3);
        assert_eq!(halves[1].uuids.len(), 4);
        let joined: Vec<String> = halves.iter().flat_map(|h| h.uuids.clone()).collect();
        assert_eq!(joined, original.uuids);
        for half in &halves {
            assert!(half.body.is_gzip());
            let (body, encoding) = encoded(half);
            let json: Value =
                serde_json::from_str(&body_json(Sent { body: &body, encoding, attempt: 1 }).unwrap()).unwrap();
            assert_eq!(json["api_key"], "phc_key");
            assert_eq!(json["historical_migration"], true);
            assert_eq!(json["batch"].as_array().unwrap().len(), half.uuids.len());
        }
    }
}

#[test]
fn a_refused_single_event_is_rejected_with_what_the_destination_said() {
    let Decision::Rejected(rejected) = decide_for(&batch(1, true), 400, 1, None) else { panic!() };
    assert_eq!(rejected.uuid.as_deref(), Some("00000000-0000-4000-8000-000000000000"));
    assert_eq!(rejected.event_name.as_deref(), Some("e0"));
    assert_eq!(rejected.reason.code(), "refused_by_destination");
    assert_eq!(rejected.reason.to_string(), "the destination refused it (HTTP 400) {\"error\":\"bad\"}");
    let Decision::Rejected(rejected) = decide_for(&batch(1, true), 413, 1, None) else { panic!() };
    assert!(rejected.reason.to_string().starts_with("the destination finds it too large (HTTP 413)"));
}

#[test]
fn transient_failures_back_off_then_park() {
    assert_eq!(decide_for(&batch(2, true), 503, 1, None), Decision::Retry { delay_seconds: 15, attempt: 2 });
    assert_eq!(decide_for(&batch(2, true), 500, 2, None), Decision::Retry { delay_seconds: 30, attempt: 3 });
    assert_eq!(decide_for(&batch(2, true), 429, 1, Some(120)), Decision::Retry { delay_seconds: 120, attempt: 2 });
    assert_eq!(decide_for(&batch(2, true), 0, 9, None), Decision::Retry { delay_seconds: 3600, attempt: 10 });
    assert_eq!(decide_for(&batch(2, true), 503, MAX_ATTEMPTS, None), Decision::Park);
    let total: u64 = (0..MAX_ATTEMPTS - 1).map(|a| backoff_seconds(a, None)).sum();
    assert!((3 * 3600..6 * 3600).contains(&total), "{total}");
    assert_eq!(backoff_seconds(0, Some(10 * 86_400)), 6 * 3600);
    assert_eq!(backoff_seconds(u32::MAX, None), 3600);
}

#[test]
fn settings_problems_stop_everything_and_say_what_to_fix() {
    for (status, words) in [(401, "project API key"), (403, "project API key"), (404, "Destination host")] {
        let Decision::Stop(refusal) = decide_for(&batch(2, true), status, 1, None) else { panic!("{status}") };
        let message = refusal.app_words();
        assert!(message.contains(words) && message.contains(&format!("HTTP {status}")), "{message}");
    }
}

#[test]
fn unreadable_requests_are_errors_not_panics() {
    for (body, encoding) in [("{", "json"), ("!!", "gzip-base64"), ("aGVsbG8=", "gzip-base64"), ("{}", "zip")] {
        let sent = Sent { body, encoding, attempt: 1 };
        assert!(decide(sent, 400, None, "", LIMITS, true).is_err(), "{body} {encoding}");
        assert!(decide(sent, 200, None, "", LIMITS, true).is_err(), "{body} {encoding}");
    }
}

#[test]
fn retry_after_is_read_as_seconds_or_a_date() {
    let now = crate::timestamp::parse_iso("2015-10-21T07:28:00Z").unwrap();
    assert_eq!(retry_after_seconds("120", now), Some(120));
    assert_eq!(retry_after_seconds(" 0 ", now), Some(0));
    assert_eq!(retry_after_seconds("Wed, 21 Oct 2015 07:30:00 GMT", now), Some(120));
    assert_eq!(retry_after_seconds("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(0));
    assert_eq!(retry_after_seconds("soon", now), None);
    assert_eq!(retry_after_seconds("-5", now + Duration::zero()), None);
}

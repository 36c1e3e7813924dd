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
    let said = if (200..300).contains(&status) { "{\"status\":1}" } else { "{\"error\":\"bad\"}" };
    decide_said(batch, status, attempt, retry_after, said)
}

fn decide_said(batch: &Batch, status: u16, attempt: u32, retry_after: Option<u64>, said: &str) -> Decision {
    let (body, encoding) = encoded(batch);
    decide(Sent { body: &body, encoding, attempt }, status, retry_after, said, LIMITS, true).unwrap()
}

/// A batch of one event with `padding` bytes of properties.
fn one_event(padding: usize) -> Batch {
    let mut batcher = Batcher::new("phc_key", true, BatchLimits { max_events: 1, max_bytes: 2_000_000 }, true);
    let uuid = "00000000-0000-4000-8000-000000000000".to_string();
    let json = json!({"event": "e0", "uuid": uuid, "distinct_id": "d", "properties": {"pad": "x".repeat(padding)}});
    batcher.push(&Prepared {
        uuid,
        json: json.to_string(),
        at: DateTime::UNIX_EPOCH,
        used_current_time: false,
        derived_uuid: false,
    });
    batcher.flush().unwrap()
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
        (301, Answer::Redirect),
        (302, Answer::Redirect),
        (308, Answer::Redirect),
        (101, Answer::Retry),
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
    // An event near capture's own limit for one event, refused alone as too large.
    let large = one_event(600 * 1024);
    let Decision::Rejected(rejected) = decide_for(&large, 413, 1, None) else { panic!() };
    assert!(rejected.reason.to_string().starts_with("the destination finds it too large (HTTP 413)"));
}

#[test]
fn a_small_event_refused_alone_as_too_large_meets_the_endpoints_limit_and_is_kept() {
    for padding in [0, 100_000, ENDPOINT_LIMIT_BELOW_BYTES - 1000] {
        let alone = one_event(padding);
        let json = batch_json(&alone).unwrap();
        let Decision::Stop(Refusal::EndpointLimit { status: 413, bytes }) = decide_for(&alone, 413, 1, None) else {
            panic!("{padding}: not held as the endpoint's limit")
        };
        assert!(bytes > padding && bytes < json.len(), "{bytes} of {}", json.len());
        let words = Refusal::EndpointLimit { status: 413, bytes }.app_words();
        assert!(words.contains("client_max_body_size") && words.contains("Destination host"), "{words}");
    }
}

#[test]
fn a_2xx_counts_as_delivered_only_with_captures_answer() {
    // Django capture, the Rust capture (with quota_limited at times), a 204 or a proxy's
    // empty 200.
    for said in [
        "{\"status\":1}",
        "{\"status\": 1}\n",
        "{\"status\":\"Ok\"}",
        "{\"status\":\"Ok\",\"quota_limited\":[\"events\"]}",
        "",
        " \r\n",
    ] {
        for status in [200, 204] {
            assert_eq!(
                decide_said(&batch(3, true), status, 1, None, said),
                Decision::Delivered { count: 3 },
                "{said:?}"
            );
        }
    }
    let page = "<!DOCTYPE html><html><head><title>Acme</title></head><body><div id=\"root\"></div></body></html>";
    for said in [page, "OK", "{}", "{\"status\":0}", "{\"status\":\"error\"}", "[1]", "{\"ok\":true}"] {
        let Decision::Stop(refusal) = decide_said(&batch(3, true), 200, 1, None, said) else {
            panic!("{said:?} counted as capture's answer")
        };
        let Refusal::NotCaptureAnswer { status: 200, said: shown } = &refusal else { panic!("{refusal:?}") };
        assert!(shown.len() <= 120 && said.starts_with(shown.as_str()), "{shown:?}");
        let words = refusal.app_words();
        assert!(words.contains("HTTP 200") && words.contains("\"Destination host\""), "{words}");
    }
}

#[test]
fn a_redirect_or_tls_to_plain_http_is_about_the_host() {
    let Decision::Stop(refusal) = decide_said(&batch(2, true), 301, 1, None, "https://ph.example.com/batch/") else {
        panic!()
    };
    assert_eq!(refusal, Refusal::Redirect { status: 301, to: "https://ph.example.com/batch/".into() });
    assert!(refusal.app_words().contains("\"https://ph.example.com\""), "{}", refusal.app_words());
    let Decision::Stop(Refusal::Redirect { to, .. }) = decide_said(&batch(2, true), 302, 1, None, "<html>moved</html>")
    else {
        panic!()
    };
    assert_eq!(to, "");
    let plain = [
        ("tls connection init failed: received corrupt message of type InvalidContentType", "EPROTO"),
        ("request to https://127.0.0.1:8000/batch/ failed, reason: write EPROTO 1408F10B:SSL routines:ssl3_get_record:wrong version number", "EPROTO"),
    ];
    for (text, code) in plain {
        assert_eq!(classify_reply(0, text, Some(code)), Answer::PlainHttp, "{text}");
    }
    for (text, code) in [("connect ECONNREFUSED 127.0.0.1:9", "ECONNREFUSED"), ("timed out", "ETIMEDOUT")] {
        assert_eq!(classify_reply(0, text, Some(code)), Answer::Retry, "{text}");
    }
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

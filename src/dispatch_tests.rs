use super::*;
use crate::batch::Batcher;
use crate::transform::Prepared;
use serde_json::{json, Value};

const LIMITS: BatchLimits = BatchLimits { max_events: 100, max_bytes: 10_000_000 };

fn uuid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn batch_of(range: std::ops::Range<usize>, padding: usize) -> Batch {
    batch_with(range, padding, true)
}

fn batch_with(range: std::ops::Range<usize>, padding: usize, gzip: bool) -> Batch {
    let mut batcher = Batcher::new("phc_key", true, LIMITS, gzip);
    for i in range {
        let json = json!({"event": format!("e{i}"), "uuid": uuid(i), "distinct_id": "d", "pad": "x".repeat(padding)});
        batcher.push(&Prepared {
            uuid: uuid(i),
            json: json.to_string(),
            at: DateTime::UNIX_EPOCH,
            used_current_time: false,
            derived_uuid: false,
        });
    }
    batcher.flush().unwrap()
}

fn uuids_of(batch: &Batch) -> Vec<String> {
    let body: Value = serde_json::from_str(&delivery::batch_json(batch).unwrap()).unwrap();
    body["batch"].as_array().unwrap().iter().map(|e| e["uuid"].as_str().unwrap().to_string()).collect()
}

/// Runs a dispatch against a destination given as a function of the request's uuids.
fn run<T: AsRef<str>>(
    mut dispatch: Dispatch,
    answer: impl Fn(&[String], usize) -> (u16, T, Option<&'static str>),
) -> (Summary, Vec<Vec<String>>) {
    let mut sent = Vec::new();
    while let Some(batch) = dispatch.next_request() {
        let uuids = uuids_of(batch);
        let (status, text, error) = answer(&uuids, batch.body.bytes().len());
        sent.push(uuids);
        dispatch.answer(status, None, text.as_ref(), error);
        assert!(sent.len() < 10_000, "no end to the requests");
    }
    (dispatch.finish(DateTime::UNIX_EPOCH), sent)
}

fn dispatch(batches: Vec<Batch>, attempt: u32) -> Dispatch {
    Dispatch::new(batches, attempt, true, LIMITS, true, None)
}

#[test]
fn delivered_requests_count_their_events() {
    let (summary, sent) =
        run(dispatch(vec![batch_of(0..5, 0), batch_of(5..7, 0)], 1), |_, _| (200, "{\"status\":1}", None));
    assert_eq!(summary.delivered, 7);
    assert_eq!(sent.len(), 2);
    assert!(summary.keep.is_empty() && summary.rejected.is_empty() && summary.stop.is_none());
}

#[test]
fn events_refused_for_themselves_are_isolated_and_rejected_alone() {
    let bad = [uuid(0), uuid(5)];
    let (summary, _) = run(dispatch(vec![batch_of(0..8, 0)], 1), |uuids, _| {
        if uuids.iter().any(|u| bad.contains(u)) {
            (400, "{\"type\":\"validation_error\"}", None)
        } else {
            (200, "{\"status\":1}", None)
        }
    });
    assert_eq!(summary.delivered, 6);
    let rejected: Vec<_> = summary.rejected.iter().map(|r| r.uuid.clone().unwrap()).collect();
    assert_eq!(rejected, bad);
    assert_eq!(
        summary.rejected[0].reason.to_string(),
        "the destination refused it (HTTP 400) {\"type\":\"validation_error\"}"
    );
    assert!(summary.keep.is_empty() && summary.stop.is_none());
}

#[test]
fn every_event_refused_alike_is_about_the_endpoint_and_all_are_held() {
    // A redirect made the POST a GET: capture finds no data, whatever is sent.
    let message = "No data found. Make sure to use a POST request when sending the payload in the body of the request.";
    let (summary, sent) = run(dispatch(vec![batch_of(0..40, 0), batch_of(40..50, 0)], 1), |_, _| (400, message, None));
    assert!(summary.rejected.is_empty(), "{:?}", summary.rejected);
    assert_eq!(summary.delivered, 0);
    let kept: Vec<String> = summary.keep.iter().flat_map(|k| uuids_of(&k.batch)).collect();
    let mut expected: Vec<String> = (0..50).map(uuid).collect();
    let mut kept_sorted = kept.clone();
    kept_sorted.sort();
    expected.sort();
    assert_eq!(kept_sorted, expected, "every event is kept, once");
    assert!(summary.keep.iter().all(|k| k.state == KeepState::Held));
    assert!(summary.stop.unwrap().app_words().contains("Check the setting \"Destination host\""));
    assert_eq!(summary.error.len(), 1, "{:?}", summary.error);
    assert!(sent.len() < 15, "it gave up early: {} requests", sent.len());
}

#[test]
fn a_wrong_key_holds_this_request_and_every_one_after_it() {
    let (summary, sent) =
        run(dispatch(vec![batch_of(0..3, 0), batch_of(3..6, 0)], 1), |_, _| (401, "{\"error\":\"bad key\"}", None));
    assert_eq!(sent.len(), 1, "it kept knocking with a wrong key");
    assert_eq!(summary.keep.len(), 2);
    assert!(summary.keep.iter().all(|k| k.state == KeepState::Held && k.attempt == 1));
    assert_eq!(
        summary.error,
        ["The destination refused the project API key (HTTP 401). Check the settings \"Destination host\" and \
          \"Destination project API key\"; saving them resends what waits. (6 historical events are kept until then.)"]
    );
}

#[test]
fn known_wrong_settings_keep_everything_without_sending() {
    let mut held = Dispatch::new(vec![batch_of(0..3, 0)], 1, false, LIMITS, true, Some("fix the key".into()));
    assert!(held.next_request().is_none());
    let summary = held.finish(DateTime::UNIX_EPOCH);
    assert_eq!((summary.keep.len(), summary.keep[0].state), (1, KeepState::Held));
    assert!(summary.error.is_empty(), "said when it happened, not again");
}

#[test]
fn failures_wait_with_back_off_then_park() {
    let (summary, _) = run(dispatch(vec![batch_of(0..3, 0)], 1), |_, _| (503, "", None));
    let keep = &summary.keep[0];
    assert_eq!((keep.state, keep.attempt, keep.delay_seconds), (KeepState::Waiting, 2, 15));
    assert_eq!(summary.retries, 1);
    assert_eq!(
        summary.warn,
        ["3 historical events not delivered yet (HTTP 503): sending them again in 15 s (attempt 2)."]
    );
    let (summary, _) = run(dispatch(vec![batch_of(0..3, 0)], MAX_ATTEMPTS), |_, _| (0, "", Some("ECONNREFUSED")));
    assert_eq!(summary.keep[0].state, KeepState::Parked);
    assert!(
        summary.error[0].contains("parked after 12 attempts (last answer: no answer (ECONNREFUSED))"),
        "{:?}",
        summary.error
    );
}

#[test]
fn odd_answer_bodies_still_reach_a_decision() {
    let html = "<html><body><h1>502 Bad Gateway</h1></body></html>";
    let huge = "x".repeat(100_000);
    for (status, text) in [(502, ""), (503, html), (500, "\u{fffd}\u{fffd}\0binary"), (504, huge.as_str())] {
        let (summary, _) = run(dispatch(vec![batch_of(0..2, 0)], 1), |_, _| (status, text, None));
        assert_eq!(summary.keep.len(), 1, "{status}");
        assert_eq!(summary.keep[0].state, KeepState::Waiting);
    }
    let (summary, _) = run(dispatch(vec![batch_of(0..1, 0)], 1), |_, _| (400, "", None));
    assert_eq!(summary.rejected[0].reason.to_string(), "the destination refused it (HTTP 400)");
}

#[test]
fn a_large_request_cut_off_while_uploading_is_split_until_it_fits() {
    let big = batch_with(0..8, 400_000, false);
    assert!(big.body.bytes().len() > 3 * CUT_WHILE_LARGE_BYTES);
    let plain = Dispatch::new(vec![big], 1, true, LIMITS, false, None);
    let (summary, sent) = run(plain, |uuids, bytes| {
        if bytes >= CUT_WHILE_LARGE_BYTES {
            (0, "write EPIPE", Some("EPIPE"))
        } else {
            assert!(!uuids.is_empty());
            (200, "{\"status\":1}", None)
        }
    });
    assert_eq!(summary.delivered, 8);
    assert!(sent.len() > 1);
    // A small request cut off is a plain failure: sent again later.
    let (summary, _) = run(dispatch(vec![batch_of(0..2, 0)], 1), |_, _| (0, "socket hang up", Some("ECONNRESET")));
    assert_eq!(summary.keep[0].state, KeepState::Waiting);
}

#[test]
fn a_destination_that_takes_smaller_requests_than_asked_is_learned_and_sent_under() {
    // A proxy refuses bodies over 10 KB (413); 64 events of about 1 KB are asked in one.
    let limit = 10_000;
    let plain = Dispatch::new(vec![batch_with(0..64, 1000, false)], 1, true, LIMITS, false, None);
    let refused = std::cell::Cell::new(0);
    let (summary, sent) = run(plain, |_, bytes| {
        if bytes > limit {
            refused.set(refused.get() + 1);
            (413, "<html>413</html>", None)
        } else {
            (200, "", None)
        }
    });
    assert_eq!(summary.delivered, 64);
    let mut delivered: Vec<String> = sent.iter().flatten().cloned().collect();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 64);
    assert!(summary.rejected.is_empty() && summary.keep.is_empty() && summary.stop.is_none());
    // Halving each refused request alone refuses 1 + 2 + 4 of them; learning the size
    // that passes, a request at each size at most.
    assert!(refused.get() <= 3, "{} requests refused as too large", refused.get());
    let learned = summary.too_large.expect("what the destination takes is learned");
    assert!(learned.max_bytes <= limit && learned.json_bytes > limit, "{learned:?}");
    assert!(summary.warn.iter().any(|w| w.contains("HTTP 413") && w.contains("Largest request")), "{:?}", summary.warn);
}

#[test]
fn every_request_refused_as_too_large_is_the_endpoints_limit_and_all_are_held() {
    let (summary, sent) = run(dispatch(vec![batch_of(0..20, 0), batch_of(20..30, 0)], 1), |_, _| {
        (413, "<html><head><title>413 Request Entity Too Large</title></head></html>", None)
    });
    assert!(summary.rejected.is_empty(), "{:?}", summary.rejected);
    assert_eq!(summary.delivered, 0);
    let mut kept: Vec<String> = summary.keep.iter().flat_map(|k| uuids_of(&k.batch)).collect();
    kept.sort();
    assert_eq!(kept, (0..30).map(uuid).collect::<Vec<_>>(), "every event is kept, once");
    assert!(summary.keep.iter().all(|k| k.state == KeepState::Held));
    assert!(matches!(summary.stop, Some(Stop::Refused(Refusal::EndpointLimit { status: 413, .. }))));
    assert!(sent.len() <= 8, "{} requests before it knew", sent.len());
}

#[test]
fn a_page_answered_200_is_not_capture_and_nothing_counts_delivered() {
    let page = "<!doctype html><html><body>Welcome to Acme</body></html>";
    let (summary, sent) = run(dispatch(vec![batch_of(0..5, 0), batch_of(5..9, 0)], 1), |_, _| (200, page, None));
    assert_eq!(summary.delivered, 0);
    assert_eq!(sent.len(), 1, "it went on sending to a web page");
    assert_eq!(summary.keep.iter().map(|k| k.batch.uuids.len()).sum::<usize>(), 9);
    assert!(summary.keep.iter().all(|k| k.state == KeepState::Held));
    let Some(Stop::Refused(Refusal::NotCaptureAnswer { status: 200, said })) = &summary.stop else {
        panic!("{:?}", summary.stop)
    };
    assert!(said.starts_with("<!doctype html>"), "{said}");
}

//! `migrator3000 demo`: the command killed part way and resumed against its loopback
//! destination, which drops one request's events under a 200 until verify finds them
//! and sends them again; it must then hold every event of the generated export.

mod support;

use support::*;

/// The events the demo's destination dropped, from the line that says so.
fn dropped(line: &str) -> usize {
    line.split("dropped its ").nth(1).and_then(|r| r.split(' ').next()?.parse().ok()).expect(line)
}

#[test]
fn the_demo_kills_the_command_part_way_resumes_it_and_finds_every_event() {
    let output = run(&["demo", "--events", "3000"]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("Killed with"), "the first run must be killed part way: {said}");
    assert!(said.contains("resuming after"), "the second run must resume from the state file: {said}");
    assert!(!said.contains("NOT "), "{said}");
    assert!(said.contains("the whole export"), "status must say a local export has no range: {said}");
    // The events the destination dropped under a 200 are found by verify and sent again.
    let line = said.lines().find(|l| l.contains("answered one request with a 200 and dropped its")).expect(&said);
    let n = dropped(line);
    // A request of at most --batch-size events (the last of a page has fewer).
    assert!((1..=50).contains(&n), "{line}");
    assert!(said.contains(&format!("Not everything arrived: {n} missing and 0 extra events on ")), "{said}");
    assert!(said.contains("Exit code: 5 (5: differences found)"), "{said}");
    assert!(
        said.contains(&format!("Sent again: {n} of the {n} missing events found at the source, {n} delivered.")),
        "{said}"
    );
    assert!(said.contains("Everything arrived: the "), "{said}");
    assert!(said.contains(&format!("ok  verify found the {n} dropped events and --resend mended them")), "{said}");
    let arrived = said.lines().find(|l| l.contains("of the export's")).expect("a line on the export's events");
    let numbers: Vec<usize> = arrived.split_whitespace().filter_map(|w| w.replace(',', "").parse().ok()).collect();
    assert!(numbers.len() == 2 && numbers[0] == numbers[1] && numbers[0] > 2000, "{arrived}");
}

#[test]
fn the_demo_refuses_too_few_events_in_words() {
    let output = run(&["demo", "--events", "10"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("--events: give at least 100"), "{}", text(&output));
    let output = run(&["demo", "--events", "1000001"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).starts_with("migrator3000: --events: give at most 1,000,000"), "{}", text(&output));
}

#[test]
fn the_demo_passes_at_smaller_sizes_its_drop_found_by_verify_every_time() {
    for events in ["100", "200", "500", "1000", "2000"] {
        let output = run(&["demo", "--events", events]);
        let said = text(&output);
        assert!(output.status.success(), "--events {events}: {said}");
        assert!(said.contains("Killed with") && said.contains("resuming after"), "--events {events}: {said}");
        assert!(!said.contains("NOT "), "--events {events}: {said}");
        let line = said.lines().find(|l| l.contains("and dropped its")).expect(&said);
        let dropped = dropped(line);
        assert!(dropped > 0, "{line}");
        assert!(
            said.contains(&format!("Not everything arrived: {dropped} missing and 0 extra events on ")),
            "--events {events}: {said}"
        );
        assert!(
            said.contains(&format!("Sent again: {dropped} of the {dropped} missing events found at the source")),
            "--events {events}: {said}"
        );
    }
}

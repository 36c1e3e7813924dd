//! `migrator3000 demo`: the command killed part way and resumed against its loopback
//! destination, which drops one request's events under a 200 until verify finds them
//! and sends them again; it must then hold every event of the generated export.

mod support;

use support::*;

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
    let dropped = said.lines().find(|l| l.contains("answered one request with a 200 and dropped its")).expect(&said);
    assert!(dropped.contains("dropped its 50 events"), "{dropped}");
    assert!(said.contains("Not everything arrived: 50 missing and 0 extra events on 1 day"), "{said}");
    assert!(said.contains("Exit code: 5 (5: differences found)"), "{said}");
    assert!(said.contains("Sent again: 50 of the 50 missing events found at the source, 50 delivered."), "{said}");
    assert!(said.contains("Everything arrived: the "), "{said}");
    assert!(said.contains("ok  verify found the 50 dropped events and --resend mended them"), "{said}");
    let arrived = said.lines().find(|l| l.contains("of the export's")).expect("a line on the export's events");
    let numbers: Vec<usize> = arrived.split_whitespace().filter_map(|w| w.replace(',', "").parse().ok()).collect();
    assert!(numbers.len() == 2 && numbers[0] == numbers[1] && numbers[0] > 2000, "{arrived}");
}

#[test]
fn the_demo_refuses_too_few_events_in_words() {
    let output = run(&["demo", "--events", "10"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("--events: give at least 100"), "{}", text(&output));
}

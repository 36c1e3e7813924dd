//! `migrator3000 demo`: the command killed part way and resumed against its loopback
//! destination, which must then hold every event of the generated export.

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

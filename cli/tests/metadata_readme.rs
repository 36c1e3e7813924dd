//! The README's `migrator3000 metadata` example, run as written: its lines are taken
//! from README.md verbatim and run by `sh` against two PostHog-shaped instances on
//! loopback, only the values it tells the reader to set (the two keys, the hosts and
//! project ids) replaced by the instances'.

mod support;

use std::path::Path;
use std::process::Command;

use support::posthog_api::{Instance, DESTINATION_KEY, SOURCE_KEY};
use support::{cli, text, TempDir};

const SECTION: &str = "## The rest of a project: `migrator3000 metadata`";

/// The first `sh` block of the README's `metadata` section, as the README has it.
fn example() -> String {
    let readme = std::fs::read_to_string(support::root().join("README.md")).unwrap();
    let section = &readme[readme.find(SECTION).expect("the README has the metadata section")..];
    let block = &section[section.find("```sh\n").expect("the section has an sh example") + "```sh\n".len()..];
    block[..block.find("```").unwrap()].to_string()
}

/// `line` with the value of each `NAME=value` of `values` (at the line's start, after
/// `export` or after another such assignment) replaced; which names were met.
fn substitute(line: &str, values: &[(&str, String)], met: &mut Vec<String>) -> String {
    let (code, comment) = match line.find(" #") {
        Some(at) => line.split_at(at),
        None => (line, ""),
    };
    let mut words: Vec<String> = Vec::new();
    for word in code.split(' ') {
        let assigned = word.split_once('=').and_then(|(name, _)| values.iter().find(|(v, _)| *v == name));
        let leading = words.iter().all(|w| w == "export" || w.is_empty() || w.contains('='));
        match assigned {
            Some((name, value)) if leading => {
                met.push(name.to_string());
                words.push(format!("{name}={value}"));
            }
            _ => words.push(word.to_string()),
        }
    }
    format!("{}{comment}", words.join(" "))
}

#[test]
fn the_readme_example_runs_as_written_and_the_copy_completes() {
    // A small project at the source (an action matched by name elsewhere, a flag, a
    // cohort), an empty one at the destination.
    let source = Instance::start("destination", 2, SOURCE_KEY, &["--forms", "projects"]);
    let destination =
        Instance::start("none", 12345, DESTINATION_KEY, &["--forms", "environments", "--id-start", "5000"]);
    let at_source = ["actions/", "cohorts/", "feature_flags/"].map(|rel| source.list(rel).len());
    assert!(at_source.iter().all(|n| *n > 0));

    let values = [
        ("POSTHOG_PERSONAL_API_KEY", SOURCE_KEY.to_string()),
        ("POSTHOG_DESTINATION_PERSONAL_API_KEY", DESTINATION_KEY.to_string()),
        ("SOURCE", source.url.clone()),
        ("SOURCE_PROJECT", source.project.to_string()),
        ("DESTINATION", destination.url.clone()),
        ("DESTINATION_PROJECT", destination.project.to_string()),
    ];
    let example = example();
    let mut met = Vec::new();
    let script: Vec<String> = example.lines().map(|l| substitute(l, &values, &mut met)).collect();
    met.sort();
    let mut names: Vec<String> = values.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(met, names, "the example sets each of its values once:\n{example}");
    assert!(example.matches("migrator3000 metadata").count() >= 3, "{example}");

    let dir = TempDir::new("metadata-readme");
    std::fs::write(dir.0.join("example.sh"), script.join("\n") + "\n").unwrap();
    let binary = cli().get_program().to_owned();
    let bin_dir = Path::new(&binary).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("sh")
        .args(["-e", "example.sh"])
        .current_dir(&dir.0)
        .env("PATH", path)
        .env_remove("POSTHOG_PERSONAL_API_KEY")
        .env_remove("POSTHOG_DESTINATION_PERSONAL_API_KEY")
        .output()
        .unwrap();
    let out = text(&output);
    assert!(output.status.success(), "the example failed:\n{}\n{out}", script.join("\n"));

    // The dry run, then the copy, complete, then the rerun of some kinds, in step.
    assert!(out.contains("Dry run: nothing was sent or recorded."), "{out}");
    assert_eq!(out.matches("Complete: each of the source's").count(), 2, "{out}");
    assert_eq!(["actions/", "cohorts/", "feature_flags/"].map(|rel| destination.list(rel).len()), at_source, "{out}");
    assert!(dir.0.join("metadata.html").exists(), "the report was written where the example runs");
    assert!(dir.0.join("migrator3000.sqlite").exists(), "the state file is the default one");
}

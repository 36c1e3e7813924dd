//! `migrator3000 demo`: the command end to end on this machine, with nothing to set up.
//! A generated Amplitude export, a destination on loopback that answers as capture does
//! (one request in nine refused with a 503, one answered 200 with its events dropped, as
//! over quota) and as the Query API does, and a state file in a temporary folder; the
//! command itself runs as a child process, is killed (SIGKILL) part way (the destination
//! answers nothing more from then until the kill, so that the kill always finds pages
//! unsettled), is run again with the same arguments (during which the destination drops
//! the events of one request it had none of), `verify` finds the dropped events and
//! `verify --resend` sends them again, and the destination is then checked to hold
//! every event.

mod destination;
pub mod error;
mod export;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use destination::Destination;
use error::DemoError;

use super::exit::{CommandError, Exit, Outcome};
use crate::shared::reporter::say;
use crate::shared::words;
use crate::store::state_file::{StateFile, Use};

const API_KEY: &str = "phc_demo_destination";

struct Folder {
    path: PathBuf,
    keep: bool,
}

impl Drop for Folder {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn thousands(n: usize) -> String {
    words::thousands(n as u64)
}

/// This very program, on the demo's state file.
fn migrator3000(state: &Path) -> Result<Command, DemoError> {
    let exe = std::env::current_exe().map_err(DemoError::NoProgram)?;
    let mut command = Command::new(exe);
    command.arg("--state").arg(state);
    Ok(command)
}

/// Events a request carries, and a page: about forty requests and ten pages for a small
/// export, so that the kill finds pages settled to resume after, and the drop a request
/// of events not sent before.
fn sizes(events: usize) -> (usize, usize) {
    ((events / 40).clamp(5, 50), (events / 10).clamp(10, 500))
}

/// The fewest events the demo generates: enough for a middle to kill the run in.
const FEWEST_EVENTS: usize = 100;

/// The most events the demo generates: more is a bench, not a demo.
const MOST_EVENTS: usize = 1_000_000;

fn import(state: &Path, export: &Path, destination: &Destination, events: usize) -> Result<Command, DemoError> {
    let (batch, page) = sizes(events);
    let mut command = migrator3000(state)?;
    command.arg("amplitude").arg("--files").arg(export);
    command.args([
        "--host",
        &destination.url,
        "--project-api-key",
        API_KEY,
        "--batch-size",
        &batch.to_string(),
        "--page-size",
        &page.to_string(),
    ]);
    // The waits before a resend, a fiftieth of the real ones: the demo lasts seconds.
    command.args(["--retry-scale", "0.02"]);
    Ok(command)
}

pub fn run(events: usize, keep: bool) -> Outcome {
    demo(events, keep).map_err(CommandError::from)
}

fn demo(events: usize, keep: bool) -> Result<Exit, DemoError> {
    if events < FEWEST_EVENTS {
        return Err(DemoError::FewEvents { least: FEWEST_EVENTS });
    }
    if events > MOST_EVENTS {
        return Err(DemoError::ManyEvents { most: MOST_EVENTS });
    }
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let folder =
        Folder { path: std::env::temp_dir().join(format!("migrator3000-demo-{}-{stamp}", std::process::id())), keep };
    let export_dir = folder.path.join("export");
    let state_path = folder.path.join("migrator3000.sqlite");
    let expected = export::write(&export_dir, events)?;
    let destination = Destination::start(API_KEY)?;
    let must_arrive = expected.uuids.len() + expected.aliases;
    say!(
        "1. An Amplitude export: {} lines in {} hourly files (web, iOS and Android lines as the Export API writes \
         them; {} users, some devices anonymous before their user logs in, {} session_start markers, {} malformed \
         lines), in {}",
        thousands(expected.lines),
        expected.files,
        export::USERS,
        expected.session_markers,
        expected.malformed,
        export_dir.display()
    );
    say!(
        "2. A destination at {} that checks requests as PostHog's capture does, answers one in nine with a 503 \
         and an empty body, and answers verify's HogQL as PostHog's Query API does.",
        destination.url
    );

    let kill_at = must_arrive * 2 / 5;
    say!(
        "\n3. migrator3000 amplitude --files ... --host {}, killed (SIGKILL) once {} events have arrived:\n",
        destination.url,
        thousands(kill_at)
    );
    destination.hold_at.store(kill_at, Ordering::SeqCst);
    let mut child = import(&state_path, &export_dir, &destination, events)?.spawn().map_err(DemoError::CannotRun)?;
    let started = Instant::now();
    let killed = loop {
        if let Some(status) = child.try_wait().map_err(DemoError::Run)? {
            break Err(status);
        }
        if destination.accepted.load(Ordering::SeqCst) >= kill_at {
            child.kill().map_err(DemoError::CannotKill)?;
            let _ = child.wait();
            break Ok(destination.accepted.load(Ordering::SeqCst));
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            return Err(DemoError::FirstRunTooLong);
        }
        thread::sleep(Duration::from_millis(2));
    };
    destination.killed();
    match killed {
        Ok(arrived) => say!("\n   Killed with {} events at the destination.", thousands(arrived)),
        Err(status) => {
            say!("\n   It ended ({status}) before it could be killed; the rerun below has nothing left to do.")
        }
    }

    say!("\n4. The same command again: it resumes from the state file.\n");
    destination.over_quota.store(true, Ordering::SeqCst);
    let status = import(&state_path, &export_dir, &destination, events)?.status().map_err(DemoError::Run)?;
    say!("\n   Exit code: {}", status.code().map_or("none".into(), |c| c.to_string()));

    say!("\n5. migrator3000 status\n");
    migrator3000(&state_path)?.arg("status").status().map_err(DemoError::Run)?;

    let dropped = destination.dropped.load(Ordering::SeqCst);
    say!(
        "\n6. The destination was over its quota for a moment during the rerun: it answered one request with a 200 \
         and dropped its {} events, as PostHog does. migrator3000 verify, against the destination's Query API:\n",
        thousands(dropped)
    );
    let report = folder.path.join("verify.html");
    let found = verify(&state_path, &destination)?.arg("--report").arg(&report).status().map_err(DemoError::Run)?;
    say!("\n   Exit code: {} (5: differences found)", found.code().map_or("none".into(), |c| c.to_string()));

    destination.over_quota.store(false, Ordering::SeqCst);
    say!("\n7. The quota is back: migrator3000 verify --resend sends exactly the missing events again:\n");
    let mended = verify(&state_path, &destination)?
        .arg("--resend")
        .arg("--files")
        .arg(&export_dir)
        .args(["--host", &destination.url, "--project-api-key", API_KEY, "--retry-scale", "0.02"])
        .status()
        .map_err(DemoError::Run)?;
    say!("\n   Exit code: {}", mended.code().map_or("none".into(), |c| c.to_string()));

    let mut verdict = check(&expected, &destination, &state_path)?;
    say!("\n8. What the destination holds:\n");
    let found_and_mended = dropped > 0 && found.code() == Some(5) && mended.success();
    verdict.ok &= found_and_mended;
    verdict.lines.insert(
        0,
        format!(
            "{} verify found the {} dropped events and --resend mended them",
            if found_and_mended { "ok " } else { "NOT" },
            thousands(dropped)
        ),
    );
    for line in &verdict.lines {
        say!("   {line}");
    }
    if keep {
        say!(
            "\nThe export, the state file and verify's report ({}) are kept in {}.",
            report.display(),
            folder.path.display()
        );
    }
    Ok(if verdict.ok && status.success() { Exit::Done } else { Exit::NotVerified })
}

/// `migrator3000 verify` of the import in the state file against the destination.
fn verify(state: &Path, destination: &Destination) -> Result<Command, DemoError> {
    let mut command = migrator3000(state)?;
    command.args(["verify", "--from", "amplitude", "--destination-query-api-host", &destination.url]);
    command.args(["--destination-project-id", &destination::PROJECT.to_string()]);
    command.args(["--destination-personal-api-key", destination::PERSONAL_KEY]);
    // The demo's destination holds an event from the moment it answers: nothing arrives late.
    command.args(["--settle-minutes", "0"]);
    Ok(command)
}

struct Verdict {
    ok: bool,
    lines: Vec<String>,
}

/// Compares what arrived with what the export holds.
fn check(expected: &export::Expected, destination: &Destination, state_path: &Path) -> Result<Verdict, DemoError> {
    let received = destination.received.lock().unwrap_or_else(|e| e.into_inner());
    let missing = expected.uuids.iter().filter(|u| !received.contains_key(*u)).count();
    let aliases = received.iter().filter(|(u, r)| r.name == "$create_alias" && !expected.uuids.contains(*u)).count();
    let strangers = received.len() - (expected.uuids.len() - missing) - aliases;
    let again = received.values().filter(|r| r.times > 1).count();
    let state = StateFile::open(state_path, Use::Read)?;
    let rejected = state.runs()?.iter().map(|r| r.rejected).sum::<u64>() as usize;
    let mut verdict = Verdict { ok: true, lines: Vec::new() };
    let mut line_of = |ok: bool, line: String| {
        verdict.ok &= ok;
        verdict.lines.push(format!("{} {line}", if ok { "ok " } else { "NOT" }));
    };
    line_of(
        missing == 0,
        format!(
            "{} of the export's {} events arrived",
            thousands(expected.uuids.len() - missing),
            thousands(expected.uuids.len())
        ),
    );
    line_of(
        aliases == expected.aliases,
        format!("{} devices linked to their user by one $create_alias each (expected {})", aliases, expected.aliases),
    );
    line_of(strangers == 0, format!("{strangers} events the export does not hold"));
    line_of(
        rejected == expected.malformed,
        format!("{rejected} malformed lines reported and counted as rejected (expected {})", expected.malformed),
    );
    verdict
        .lines
        .push(format!("    {} requests answered 503, each sent again", destination.refused.load(Ordering::SeqCst)));
    verdict.lines.push(format!(
        "    {again} events came twice, every time with the same uuid: delivered before the kill from pages \
             not yet wholly answered (the state file moves a page at a time). PostHog keeps one event per uuid"
    ));
    Ok(verdict)
}

//! The state file as `--state` names it: one run at a time (a second says who holds it),
//! another program's SQLite file refused untouched, and a file or folder that cannot be
//! used named with its cause and what to do, before anything is read or sent.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::*;

/// A command whose state file checks come first: no source or destination is reached.
fn unreached(state: &Path) -> Vec<String> {
    posthog_from_clickhouse("http://127.0.0.1:9", "http://127.0.0.1:9", state)
}

fn first_line(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).lines().next().unwrap_or_default().to_string()
}

/// The uid this test runs as (0: root, whom file modes do not stop).
fn uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The command run so that file modes apply: as root, without the capabilities that
/// override them (setpriv); `None` where that cannot be done.
fn bound_by_modes() -> Option<Command> {
    if uid() != 0 {
        return Some(cli());
    }
    let setpriv = Command::new("setpriv").arg("--version").output().ok()?;
    if !setpriv.status.success() {
        return None;
    }
    let mut command = Command::new("setpriv");
    command.args(["--bounding-set", "-dac_override,-dac_read_search", "--"]).arg(env!("CARGO_BIN_EXE_migrator3000"));
    Some(command)
}

#[test]
fn a_second_run_on_the_same_state_file_is_refused_and_told_who_holds_it() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 400, 400, "2021-06-02 00:00:00");
    let capture = Capture::start();
    // Slow enough that the first run is still going when the second starts.
    capture.set_fault(|_| {
        std::thread::sleep(Duration::from_millis(30));
        None
    });
    let dir = TempDir::new("lock");
    let state = dir.0.join("s.sqlite");
    let base = posthog_from_clickhouse(&engine.url, &capture.server.url, &state);
    let mut first = cli().args(&base).args(["--batch-size", "10", "--page-size", "50"]).spawn().unwrap();
    capture.wait_for(20, "the first run sent nothing", Duration::from_millis(20));
    let second = cli().args(&base).args(["--batch-size", "10", "--page-size", "50"]).output().unwrap();
    let line = first_line(&second);
    assert_eq!(second.status.code(), Some(75), "{}", text(&second));
    assert!(line.contains(&state.display().to_string()) && line.contains("in use by another run"), "{line}");
    assert!(line.contains(&format!("pid {}", first.id())) && line.contains("`migrator3000 posthog`"), "{line}");
    assert!(line.contains("since 20"), "{line}");
    // Read-only commands still work meanwhile.
    let status = run(&["--state", state.to_str().unwrap(), "status"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains("in progress"), "{}", text(&status));
    assert!(first.wait().unwrap().success());
    let uuids = capture.uuids();
    let once: HashSet<&String> = uuids.iter().collect();
    assert_eq!((uuids.len(), once.len()), (400, 400), "every event once");
    // Released at the end: the same command runs again (and has nothing to do).
    let again = cli().args(&base).output().unwrap();
    assert!(again.status.success() && text(&again).contains("already complete"), "{}", text(&again));
}

#[test]
fn a_killed_run_leaves_no_lock_behind() {
    let capture = Capture::start();
    capture.set_fault(|_| {
        std::thread::sleep(Duration::from_millis(30));
        None
    });
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 200, 200, "2021-06-02 00:00:00");
    let dir = TempDir::new("lock-kill");
    let state = dir.0.join("s.sqlite");
    let base = posthog_from_clickhouse(&engine.url, &capture.server.url, &state);
    let mut first = cli().args(&base).args(["--batch-size", "10", "--page-size", "20"]).spawn().unwrap();
    capture.wait_for(20, "the first run sent nothing", Duration::from_millis(20));
    first.kill().unwrap();
    first.wait().unwrap();
    capture.set_fault(|_| None);
    let rerun = cli().args(&base).output().unwrap();
    assert!(rerun.status.success(), "{}", text(&rerun));
    let delivered: HashSet<String> = capture.uuids().into_iter().collect();
    assert_eq!(delivered, engine.uuids(2).into_iter().collect::<HashSet<_>>());
}

#[test]
fn another_programs_sqlite_file_is_refused_untouched() {
    let dir = TempDir::new("foreign");
    let foreign = dir.0.join("contacts.db");
    {
        let db = rusqlite::Connection::open(&foreign).unwrap();
        db.execute_batch("CREATE TABLE contacts (name TEXT, phone TEXT); INSERT INTO contacts VALUES ('a', '1');")
            .unwrap();
    }
    let marked = dir.0.join("marked.db");
    {
        let db = rusqlite::Connection::open(&marked).unwrap();
        db.execute_batch("PRAGMA application_id = 1234; CREATE TABLE runs (id TEXT);").unwrap();
    }
    for (path, cause) in [(&foreign, "tables of another program (contacts)"), (&marked, "application_id is 0x4d2")] {
        let before = std::fs::read(path).unwrap();
        let output = cli().args(unreached(path)).output().unwrap();
        let line = first_line(&output);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(line.contains(&format!("--state {}", path.display())) && line.contains(cause), "{line}");
        assert!(
            line.contains("left untouched") && line.contains("Give --state a file of migrator3000's own"),
            "{line}"
        );
        assert_eq!(std::fs::read(path).unwrap(), before, "the file changed");
        let status = run(&["--state", path.to_str().unwrap(), "status"]);
        assert_eq!(status.status.code(), Some(2), "{}", text(&status));
        assert_eq!(std::fs::read(path).unwrap(), before, "status changed the file");
        let names: Vec<String> =
            std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(!names.iter().any(|n| n.ends_with("-wal") || n.ends_with("-journal")), "{names:?}");
    }
}

#[test]
fn a_state_file_of_the_version_before_the_mark_opens_and_is_marked() {
    let dir = TempDir::new("unmarked");
    let state = dir.0.join("old.sqlite");
    {
        // The tables as the version before the mark wrote them, with a run in them.
        let db = rusqlite::Connection::open(&state).unwrap();
        db.execute_batch(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, source TEXT NOT NULL, destination TEXT NOT NULL, \
             api_key TEXT NOT NULL, gzip INTEGER NOT NULL, range_from TEXT NOT NULL, range_to TEXT NOT NULL, \
             cursor TEXT, total INTEGER, read INTEGER NOT NULL DEFAULT 0, delivered INTEGER NOT NULL DEFAULT 0, \
             rejected INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0, migration TEXT, \
             live INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, body BLOB NOT NULL, \
             gzip INTEGER NOT NULL, json_bytes INTEGER NOT NULL, uuids TEXT NOT NULL, attempt INTEGER NOT NULL, \
             state TEXT NOT NULL, due_at INTEGER NOT NULL, reason TEXT NOT NULL);
             CREATE TABLE rejected (run TEXT NOT NULL, uuid TEXT, event TEXT, reason TEXT NOT NULL);
             CREATE TABLE verify_checks (id INTEGER PRIMARY KEY, at TEXT NOT NULL, source TEXT NOT NULL, \
             destination TEXT NOT NULL, range_from TEXT NOT NULL, range_to TEXT NOT NULL, verdict TEXT NOT NULL);
             INSERT INTO runs (id, source, destination, api_key, gzip, range_from, range_to, total, read, delivered) \
             VALUES ('r', 'ClickHouse at http://old', 'https://us.i.posthog.com', 'phc_old', 1, '2021-01-01', \
             '2021-02-01', 10, 10, 10);",
        )
        .unwrap();
    }
    let status = run(&["--state", state.to_str().unwrap(), "status"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains("ClickHouse at http://old"), "{}", text(&status));
    let db = rusqlite::Connection::open(&state).unwrap();
    let id: i32 = db.query_row("PRAGMA application_id", [], |r| r.get(0)).unwrap();
    assert_eq!(id, 0x4d33_4b53, "marked as migrator3000's");
}

#[test]
fn resend_parked_and_status_with_a_mistyped_state_create_nothing() {
    let dir = TempDir::new("mistyped");
    let state = dir.0.join("migrator300.sqlite");
    for command in [vec!["resend-parked"], vec!["status"]] {
        let output = cli().arg("--state").arg(&state).args(&command).output().unwrap();
        let line = first_line(&output);
        assert_eq!(output.status.code(), Some(1), "{command:?}: {}", text(&output));
        assert!(line.contains(&state.display().to_string()) && line.contains("does not exist"), "{line}");
        assert!(line.contains("Check --state"), "{line}");
        assert!(!text(&output).contains("No event is parked"), "{}", text(&output));
        assert!(!state.exists(), "{command:?} created the state file");
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0, "{command:?} left files behind");
    }
}

/// A state file of a real run: 30 events into a loopback destination.
fn a_real_state_file(engine: &ClickHouse, state: &Path) {
    let capture = Capture::start();
    let output = cli().args(posthog_from_clickhouse(&engine.url, &capture.server.url, state)).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn each_unusable_state_file_is_named_with_its_cause_and_what_to_do() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 30, 30, "2021-06-02 00:00:00");
    let dir = TempDir::new("unusable");
    let said = |state: &Path, command: Option<Command>| -> (Option<i32>, String) {
        let mut command = command.unwrap_or_else(cli);
        let output = command.args(unreached(state)).output().unwrap();
        (output.status.code(), first_line(&output))
    };

    let missing = dir.0.join("no-such-folder/s.sqlite");
    let (code, line) = said(&missing, None);
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains(&dir.0.join("no-such-folder").display().to_string()), "{line}");
    assert!(line.contains("folder") && line.contains("does not exist") && line.contains("mkdir -p"), "{line}");
    assert!(!dir.0.join("no-such-folder").exists());

    let (code, line) = said(&dir.0, None);
    assert_eq!(code, Some(2), "{line}");
    assert!(line.contains(&format!("--state {} is a folder, not a file", dir.0.display())), "{line}");

    // Cut short: a tenth of a real state file, and its first 50 bytes.
    let state = dir.0.join("cut.sqlite");
    a_real_state_file(&engine, &state);
    let whole = std::fs::read(&state).unwrap();
    std::fs::write(&state, &whole[..whole.len() / 10]).unwrap();
    let (code, line) = said(&state, None);
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains(&state.display().to_string()) && line.contains("is cut short"), "{line}");
    assert!(line.contains("Restore a whole copy"), "{line}");
    let status = run(&["--state", state.to_str().unwrap(), "status"]);
    assert!(first_line(&status).contains("is cut short"), "{}", text(&status));
    std::fs::write(&state, &whole[..50]).unwrap();
    let (code, line) = said(&state, None);
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains(&state.display().to_string()) && line.contains("is cut short"), "{line}");
    // Damaged inside: a page of its tables overwritten.
    let mut damaged = whole.clone();
    let page = 4096;
    for byte in &mut damaged[page..2 * page] {
        *byte = 0xA5;
    }
    std::fs::write(&state, &damaged).unwrap();
    let status = run(&["--state", state.to_str().unwrap(), "status"]);
    assert_eq!(status.status.code(), Some(1), "{}", text(&status));
    let line = first_line(&status);
    assert!(line.contains(&state.display().to_string()) && line.contains("is damaged"), "{line}");
    assert!(line.contains("Restore a copy of it"), "{line}");
    std::fs::write(&state, b"name,phone\na,1\n").unwrap();
    let (_, line) = said(&state, None);
    assert!(line.contains("is not a SQLite database") && line.contains("another kind of file"), "{line}");

    let Some(_) = bound_by_modes() else {
        eprintln!("skipped: file modes cannot be made to apply here (root without setpriv)");
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();

    let state = dir.0.join("unreadable.sqlite");
    a_real_state_file(&engine, &state);
    mode(&state, 0o000);
    let (code, line) = said(&state, bound_by_modes());
    assert_eq!(code, Some(1), "{line}");
    assert!(
        line.contains(&state.display().to_string()) && line.contains("cannot be read (permission denied)"),
        "{line}"
    );
    assert!(line.contains("chmod u+rw"), "{line}");

    let state = dir.0.join("read-only.sqlite");
    a_real_state_file(&engine, &state);
    mode(&state, 0o444);
    let (code, line) = said(&state, bound_by_modes());
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains(&state.display().to_string()) && line.contains("is read-only"), "{line}");
    assert!(line.contains("chmod u+w"), "{line}");
    // Its progress can still be shown.
    let status = bound_by_modes().unwrap().args(["--state", state.to_str().unwrap(), "status"]).output().unwrap();
    assert!(status.status.success() && text(&status).contains("complete"), "{}", text(&status));

    let folder = dir.0.join("read-only-folder");
    std::fs::create_dir(&folder).unwrap();
    let state = folder.join("s.sqlite");
    a_real_state_file(&engine, &state);
    mode(&folder, 0o555);
    let (code, line) = said(&state, bound_by_modes());
    mode(&folder, 0o755);
    assert_eq!(code, Some(1), "{line}");
    assert!(line.contains(&format!("the folder {} of the state file {}", folder.display(), state.display())), "{line}");
    assert!(line.contains("read-only") && line.contains("writable folder"), "{line}");
}

/// A small tmpfs mounted for the test, unmounted when dropped.
struct Mount(TempDir);

impl Mount {
    fn tmpfs(kilobytes: u64) -> Option<Mount> {
        let dir = TempDir::new("tmpfs");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kilobytes}k"), "tmpfs"])
            .arg(&dir.0)
            .output()
            .ok()?;
        mounted.status.success().then_some(Mount(dir))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0 .0).status();
    }
}

#[test]
fn a_full_disk_is_named_with_the_state_file() {
    let Some(disk) = Mount::tmpfs(1024) else {
        eprintln!("skipped: a tmpfs cannot be mounted here (not root, or no mount in this container)");
        return;
    };
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 300, 300, "2021-06-02 00:00:00");
    let capture = Capture::start();
    let state = disk.0 .0.join("s.sqlite");
    // The disk filled but for room to start (the schema's steps, written to the WAL, take
    // some 150 KB of it): it fills up part way through the run.
    let filler = disk.0 .0.join("filler");
    std::fs::write(&filler, vec![0u8; (1024 - 320) * 1024]).unwrap();
    let output = cli()
        .args(posthog_from_clickhouse(&engine.url, &capture.server.url, &state))
        .args(["--batch-size", "1", "--page-size", "1"])
        .output()
        .unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    // Pages were recorded before the disk filled: the failure comes part way.
    let recorded: u64 = said
        .lines()
        .filter_map(|l| l.split("% done: ").nth(1))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .max()
        .unwrap_or(0);
    assert!(recorded > 0 && recorded < 300, "{said}");
    let last = said.lines().rev().find(|l| l.starts_with("migrator3000:")).unwrap_or_default().to_string();
    assert!(last.contains(&format!("the disk holding the state file {} is full", state.display())), "{said}");
    assert!(last.contains("free some space") && last.contains("run the same command again"), "{said}");
    // With room again, the same command ends the migration, each event delivered once
    // at least and none lost.
    std::fs::remove_file(&filler).unwrap();
    let again = cli().args(posthog_from_clickhouse(&engine.url, &capture.server.url, &state)).output().unwrap();
    assert!(again.status.success(), "{}", text(&again));
    let delivered: HashSet<String> = capture.uuids().into_iter().collect();
    assert_eq!(delivered, engine.uuids(2).into_iter().collect::<HashSet<_>>());
}

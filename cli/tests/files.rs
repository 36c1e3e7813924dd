//! `migrator3000 files` on generated files of the real shapes: posthog-js events as
//! PostHog captures them (1-2 KB of properties), and the lines of PostHog's S3 batch
//! export (its columns, `set`, `elements_chain`, `person_properties`), plain, gzip and
//! zstd, with malformed lines, lines without a distinct_id and an oversized line; from a
//! folder (killed with SIGKILL part way and resumed), from a real S3-compatible server
//! on loopback (moto), and verified at a loopback PostHog (`verify --from files`).

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::posthog::{PostHog, PERSONAL_KEY, PROJECT};
use support::*;

/// A posthog-js `$pageview` or `$autocapture` as capture receives it: about 1.5 KB of
/// properties.
fn captured(n: usize, day: u32, with_uuid: bool) -> Value {
    let user = format!("user-{}", n % 17);
    let url = format!("https://shop.example.com/products/{}?utm_source=newsletter&ref=ünï-{n}", n % 40);
    let mut event = json!({
        "event": if n % 3 == 0 { "$autocapture" } else { "$pageview" },
        "distinct_id": user,
        "timestamp": format!("2024-03-{day:02}T{:02}:{:02}:{:02}.{:03}Z", n / 3600 % 24, n / 60 % 60, n % 60, n % 1000),
        "properties": {
            "$os": "Mac OS X", "$os_version": "14.3.1", "$browser": "Chrome", "$browser_version": 122,
            "$device_type": "Desktop", "$current_url": url, "$host": "shop.example.com",
            "$pathname": format!("/products/{}", n % 40), "$raw_user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
            "$screen_height": 1117, "$screen_width": 1728, "$viewport_height": 959, "$viewport_width": 1728,
            "$lib": "web", "$lib_version": "1.110.0", "$insert_id": format!("ins{n:08}"),
            "$time": 1_709_251_200.0 + n as f64, "distinct_id": user, "$device_id": format!("018e{n:04x}-device"),
            "$user_id": user, "$session_id": format!("018e0000-0000-7000-8000-{:012x}", n / 20),
            "$window_id": format!("018e0000-0000-7000-9000-{:012x}", n / 20),
            "$pageview_id": format!("018e0000-0000-7000-a000-{n:012x}"), "$referrer": "https://www.google.com/",
            "$referring_domain": "www.google.com", "token": "phc_source_project_token",
            "$is_identified": true, "$process_person_profile": true, "$sent_at": "2024-03-01T00:00:00Z",
            "$session_entry_url": url, "$session_entry_referrer": "$direct", "$configured_session_timeout_ms": 1_800_000,
            "$active_feature_flags": ["new-checkout", "beta-search"], "$feature/new-checkout": true,
            "description": "a longer product description as sites send it along ".repeat(8),
        },
        "$set": {"plan": if n % 2 == 0 { "pro" } else { "free" }, "email": format!("user-{}@example.com", n % 17)},
        "$set_once": {"$initial_referrer": "https://www.google.com/", "$initial_current_url": url},
    });
    if n % 3 == 0 {
        event["properties"]["$elements_chain"] =
            json!("button.btn.btn-primary:attr__class=\"btn btn-primary\"nth-child=\"2\"nth-of-type=\"1\"text=\"Add to cart\"");
    }
    if with_uuid {
        event["uuid"] = json!(format!("018e{day:04x}-0000-7000-8000-{n:012x}"));
    }
    event
}

/// The same event as a line of PostHog's S3 batch export (JSON lines): its default
/// columns, properties as written by the export, the person's properties beside them.
fn batch_export_line(n: usize, day: u32) -> Value {
    let event = captured(n, day, true);
    let mut properties = event["properties"].clone();
    let chain = properties.as_object_mut().unwrap().remove("$elements_chain");
    json!({
        "uuid": format!("018e{day:04x}-0000-7000-b000-{n:012x}"),
        "event": event["event"],
        "properties": properties,
        "distinct_id": event["distinct_id"],
        "team_id": 2,
        "timestamp": event["timestamp"].as_str().unwrap().replace('T', " ").replace('Z', "+00:00"),
        "_inserted_at": "2024-03-05T00:00:00+00:00",
        "created_at": "2024-03-05T00:00:00+00:00",
        "elements_chain": chain.unwrap_or(json!("")),
        "set": event["$set"],
        "set_once": null,
        "person_id": "018e0000-0000-0000-0000-000000000001",
        "person_properties": {"email": "someone@example.com"},
    })
}

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

fn zstd(text: &str) -> Vec<u8> {
    let mut child = Command::new("zstd").args(["-q", "-c"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
    match child.as_mut() {
        // The zstd tool when the machine has it, else the encoder of the crate that decodes.
        Ok(child) => {
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        Err(_) => {
            return ruzstd::encoding::compress_to_vec(text.as_bytes(), ruzstd::encoding::CompressionLevel::Fastest)
        }
    }
    let output = child.unwrap().wait_with_output().unwrap();
    assert!(output.status.success());
    output.stdout
}

/// Generated files: (name, bytes), the uuids of the valid lines with a uuid, the number
/// of valid lines, and the rejected lines as (file, line).
struct Export {
    files: Vec<(String, Vec<u8>)>,
    given_uuids: HashSet<String>,
    valid: usize,
    rejected: Vec<(String, usize)>,
}

fn export(per_file: usize) -> Export {
    let mut given_uuids = HashSet::new();
    let mut valid = 0;
    let mut rejected = Vec::new();
    let mut files = Vec::new();
    // Captured events, a uuid on every other line, a byte-order mark and CRLF ends (as a
    // Windows tool writes), one line not JSON and one without a distinct_id.
    let mut lines = Vec::new();
    for n in 0..per_file {
        let event = captured(n, 1, n % 2 == 0);
        if let Some(uuid) = event["uuid"].as_str() {
            given_uuids.insert(uuid.to_string());
        }
        lines.push(event.to_string());
        valid += 1;
    }
    lines.insert(5, "{\"event\": \"$pageview\", \"distinct_id\": \"cut sh".into());
    rejected.push(("captured/2024-03-01.jsonl".to_string(), 6));
    let mut anonymous = captured(9_999, 1, false);
    anonymous.as_object_mut().unwrap().remove("distinct_id");
    anonymous["properties"].as_object_mut().unwrap().remove("distinct_id");
    lines.insert(10, anonymous.to_string());
    rejected.push(("captured/2024-03-01.jsonl".to_string(), 11));
    files.push(("captured/2024-03-01.jsonl".to_string(), format!("\u{feff}{}\r\n", lines.join("\r\n")).into_bytes()));

    // PostHog's S3 batch export, gzip, with an oversized line and a blank line.
    let mut lines: Vec<String> = (0..per_file).map(|n| batch_export_line(n, 2).to_string()).collect();
    for n in 0..per_file {
        given_uuids.insert(format!("018e{:04x}-0000-7000-b000-{n:012x}", 2));
    }
    valid += per_file;
    let mut huge = captured(8_888, 2, true);
    huge["properties"]["blob"] = json!("x".repeat(1_000_000));
    lines.insert(3, huge.to_string());
    rejected.push(("exports/2024-03-02T00:00:00+00:00-2024-03-03T00:00:00+00:00.jsonl.gz".to_string(), 4));
    lines.insert(7, String::new());
    let name = "exports/2024-03-02T00:00:00+00:00-2024-03-03T00:00:00+00:00.jsonl.gz".to_string();
    files.push((name, gzip(&(lines.join("\n") + "\n"))));
    files.push((
        "exports/2024-03-02T00:00:00+00:00-2024-03-03T00:00:00+00:00_manifest.json".to_string(),
        b"{\"files\": [\"x\"]}".to_vec(),
    ));

    // Captured events without uuids, zstd.
    let lines: Vec<String> = (0..per_file).map(|n| captured(n, 3, false).to_string()).collect();
    valid += per_file;
    files.push(("more/2024-03-03.ndjson.zst".to_string(), zstd(&lines.join("\n"))));
    Export { files, given_uuids, valid, rejected }
}

fn write(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn migrate(state: &Path, source: &str, capture_url: &str, extra: &str) -> Vec<String> {
    words(&format!(
        "--state {} files {source} --host {capture_url} --project-api-key phc_destination --retry-scale 0.001 {extra}",
        state.display()
    ))
}

/// Each event by uuid, and how many times each uuid came.
fn by_uuid(events: &[Value]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for event in events {
        *out.entry(event["uuid"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    out
}

#[test]
fn a_folder_arrives_once_with_bad_lines_named_and_a_rerun_or_a_copy_sends_nothing() {
    let dir = TempDir::new("files");
    let Export { files, given_uuids, valid, rejected } = export(60);
    write(&dir.0.join("in"), &files);
    let capture = Capture::start();
    let state = dir.0.join("s.sqlite");
    let source = format!("--files {}", dir.0.join("in").display());
    let output = cli().args(migrate(&state, &source, &capture.server.url, "")).output().unwrap();
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    let received = capture.accepted.lock().unwrap().clone();
    let uuids = by_uuid(&received);
    assert_eq!(received.len(), valid, "{said}");
    assert_eq!(uuids.len(), valid, "every valid line once, each its own uuid");
    assert!(given_uuids.iter().all(|u| uuids.contains_key(u)), "a given uuid is kept");
    assert!(said.contains(&format!("{} rejected", rejected.len())), "{said}");
    for (file, line) in &rejected {
        assert!(said.contains(&format!("{file} line {line}:")), "{file} line {line} not named: {said}");
    }
    assert!(said.contains("no distinct_id") && said.contains("not a JSON object") && said.contains("over the 900 KiB"));
    assert!(!said.contains("_manifest.json"), "the batch export's manifest is expected, not named: {said}");

    // The shapes: a batch export's line gives its set and elements, drops its person.
    let exported = received.iter().find(|e| e["uuid"] == "018e0002-0000-7000-b000-000000000003").unwrap();
    assert_eq!(exported["$set"]["plan"], "free");
    assert!(exported["properties"]["$elements_chain"].as_str().unwrap().contains("Add to cart"));
    assert!(exported.get("person_properties").is_none() && exported["properties"].get("person_properties").is_none());
    assert_eq!(exported["timestamp"], "2024-03-02T00:00:03.003Z");
    let zstd_event = received
        .iter()
        .find(|e| {
            e["properties"]["$insert_id"] == "ins00000007" && e["timestamp"].as_str().unwrap().starts_with("2024-03-03")
        })
        .unwrap();
    assert_eq!(
        zstd_event["properties"]["$current_url"],
        "https://shop.example.com/products/7?utm_source=newsletter&ref=ünï-7"
    );
    assert!(zstd_event["properties"].get("token").is_none(), "the source project's token is not sent");

    // The same command again: nothing is sent.
    let before = capture.accepted.lock().unwrap().len();
    let again = cli().args(migrate(&state, &source, &capture.server.url, "")).output().unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("already complete"), "{}", text(&again));
    // A copy elsewhere (other paths, other times): known by content, nothing sent.
    write(&dir.0.join("copy/elsewhere"), &files);
    let copy = format!("--files {}", dir.0.join("copy").display());
    let output = cli().args(migrate(&state, &copy, &capture.server.url, "")).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("3 files this destination got before (the same content) were skipped"),
        "{}",
        text(&output)
    );
    assert_eq!(capture.accepted.lock().unwrap().len(), before, "nothing sent again");
    // Another destination gets everything.
    let other = Capture::start();
    let output = cli().args(migrate(&state, &copy, &other.server.url, "")).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(by_uuid(&other.accepted.lock().unwrap()).len(), valid);
}

#[test]
fn killed_part_way_and_run_again_every_event_arrives_by_uuid() {
    let dir = TempDir::new("files-kill");
    let Export { files, valid, .. } = export(900);
    write(&dir.0.join("in"), &files);
    let capture = Capture::start();
    capture.set_fault(|_| {
        std::thread::sleep(Duration::from_millis(15));
        None
    });
    let state = dir.0.join("s.sqlite");
    let source = format!("--files {}", dir.0.join("in").display());
    let args = migrate(&state, &source, &capture.server.url, "--page-size 100 --batch-size 25 --concurrency 1");
    let mut child = cli().args(&args).stderr(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while capture.uuids().len() < valid / 3 && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = capture.uuids().len();
    assert!(at_kill < valid, "the kill came too late ({at_kill} of {valid})");
    let output = cli().args(&args).output().unwrap();
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("resuming after"), "{said}");
    let uuids = by_uuid(&capture.accepted.lock().unwrap());
    assert_eq!(uuids.len(), valid, "every valid line arrived");
    // Sent twice only around the kill (pages not yet settled), with the same uuids.
    let twice: usize = uuids.values().map(|n| n - 1).sum();
    assert!(twice <= 200, "{twice} sent again");
}

/// A real S3-compatible server on loopback: moto in server mode (installed into
/// .tools/s3-venv by scripts/bootstrap.sh), killed when dropped.
struct S3Server {
    url: String,
    child: Child,
}

impl S3Server {
    fn start() -> S3Server {
        let moto = root().join(".tools/s3-venv/bin/moto_server");
        assert!(
            moto.exists(),
            "no S3-compatible server: run `bash scripts/bootstrap.sh` (it installs moto into .tools/)"
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = S3Server { url: format!("http://127.0.0.1:{port}"), child };
        let started = Instant::now();
        while ureq::get(&format!("{}/moto-api/", server.url)).call().is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn put(&self, path: &str, bytes: &[u8]) {
        ureq::put(&format!("{}/{path}", self.url)).send_bytes(bytes).unwrap();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_aws(mut command: Command) -> Command {
    command
        .env("AWS_ACCESS_KEY_ID", "AKIDMIGRATOR3000")
        .env("AWS_SECRET_ACCESS_KEY", "secret/for+tests")
        .env("AWS_REGION", "us-east-1");
    command
}

#[test]
fn a_bucket_on_an_s3_compatible_server_is_read_under_its_prefix() {
    let s3 = S3Server::start();
    let Export { files, valid, rejected, .. } = export(40);
    s3.put("exports-bucket", b"");
    for (name, bytes) in &files {
        s3.put(&format!("exports-bucket/team-2/{name}"), bytes);
    }
    // Outside the prefix: not read.
    s3.put("exports-bucket/other/x.jsonl", captured(1, 5, true).to_string().as_bytes());
    let capture = Capture::start();
    let dir = TempDir::new("files-s3");
    let state = dir.0.join("s.sqlite");
    let source = format!("--s3 s3://exports-bucket/team-2/ --s3-endpoint {}", s3.url);
    let args = migrate(&state, &source, &capture.server.url, "--page-size 50");
    let output = with_aws(cli()).args(&args).output().unwrap();
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(said.contains("the files at s3://exports-bucket/team-2/"), "{said}");
    let uuids = by_uuid(&capture.accepted.lock().unwrap());
    assert_eq!(uuids.len(), valid, "{said}");
    assert_eq!(uuids.values().sum::<usize>(), valid);
    assert!(said.contains(&format!("{} rejected", rejected.len())), "{said}");
    // The same files in a folder: known by content, nothing sent.
    write(&dir.0.join("in"), &files);
    let local = format!("--files {}", dir.0.join("in").display());
    let output = cli().args(migrate(&state, &local, &capture.server.url, "")).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(capture.accepted.lock().unwrap().len(), valid, "nothing sent twice");
    // No credentials: said plainly.
    let output = cli().env_remove("AWS_ACCESS_KEY_ID").args(&args).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("AWS_ACCESS_KEY_ID"), "{}", text(&output));
    // A bucket that is not there.
    let missing =
        migrate(&state, &format!("--s3 s3://no-such-bucket --s3-endpoint {}", s3.url), &capture.server.url, "");
    let output = with_aws(cli()).args(&missing).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("HTTP 404 NoSuchBucket"), "{}", text(&output));
}

#[test]
fn an_import_of_files_is_verified_day_by_day_and_mended_from_its_files() {
    let dir = TempDir::new("files-verify");
    let Export { files, valid, .. } = export(50);
    write(&dir.0.join("in"), &files);
    let destination = PostHog::start();
    // Over quota for a moment: some of March 2's events answered 200 and dropped.
    destination.set_drop(|e| e["uuid"].as_str().is_some_and(|u| u.starts_with("018e0002") && u.ends_with('7')));
    let state = dir.0.join("s.sqlite");
    let source = format!("--files {}", dir.0.join("in").display());
    let output = cli().args(migrate(&state, &source, &destination.server.url, "")).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let check = format!(
        "--state {} verify --from files --destination-query-api-host {} --destination-project-id {PROJECT} \
         --destination-personal-api-key {PERSONAL_KEY} --settle-minutes 0",
        state.display(),
        destination.server.url
    );
    let output = cli().args(words(&check)).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(5), "{said}");
    let dropped = (0..50).filter(|n| format!("{n:012x}").ends_with('7')).count();
    let row = |day: &str| -> Vec<String> {
        said.lines().find(|l| l.starts_with(day)).unwrap_or_default().split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(row("2024-03-01")[..3], ["2024-03-01", "50", "50"], "{said}");
    assert_eq!(
        row("2024-03-02")[..4],
        ["2024-03-02".to_string(), "50".into(), (50 - dropped).to_string(), dropped.to_string()],
        "{said}"
    );
    assert_eq!(row("2024-03-03")[..3], ["2024-03-03", "50", "50"], "{said}");
    assert!(said.contains("the import of files recorded in the state file"), "{said}");

    destination.set_drop(|_| false);
    let resend =
        format!("{check} --resend {source} --host {} --project-api-key phc_destination", destination.server.url);
    let output = cli().args(words(&resend)).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "Sent again: {dropped} of the {dropped} missing events found at the source, {dropped} delivered"
        )),
        "{said}"
    );
    assert_eq!(valid, 150);
}

#[test]
fn a_file_skipped_as_unreadable_leaves_the_import_not_complete_and_a_rerun_reads_it() {
    let dir = TempDir::new("files-unreadable");
    let Export { files, valid, .. } = export(40);
    let input = dir.0.join("in");
    write(&input, &files);
    // The batch export's gzip file cut in half, as an interrupted download leaves it.
    let (name, whole) = files.iter().find(|(n, _)| n.ends_with(".jsonl.gz")).cloned().unwrap();
    std::fs::write(input.join(&name), &whole[..whole.len() / 2]).unwrap();
    let capture = Capture::start();
    let state = dir.0.join("s.sqlite");
    let source = format!("--files {}", input.display());
    let output = cli().args(migrate(&state, &source, &capture.server.url, "--skip-unreadable")).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(6), "{said}");
    assert!(said.contains(&name) && said.contains("could not be read"), "{said}");
    let first = capture.accepted.lock().unwrap().len();
    assert!(first > 0 && first < valid, "{first} of {valid}: {said}");

    std::fs::write(input.join(&name), &whole).unwrap();
    let output = cli().args(migrate(&state, &source, &capture.server.url, "--skip-unreadable")).output().unwrap();
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    let received = capture.accepted.lock().unwrap().clone();
    assert_eq!(received.len(), valid, "the rerun sent the mended file alone: {said}");
    assert_eq!(by_uuid(&received).len(), valid);
}

//! `migrator3000 mixpanel` on generated exports that follow Mixpanel's documented raw
//! export (web and mobile SDK lines, original and simplified ID merge, seconds and
//! milliseconds, repeated `$insert_id`, malformed lines) and Engage export: from a
//! folder, killed with SIGKILL and resumed, from a loopback export API that enforces
//! Mixpanel's limits, and verified day by day at a loopback PostHog.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::export::gzip;
use support::posthog::{PostHog, PERSONAL_KEY, PROJECT};
use support::*;

/// PostHog's importer's uuid of a line with `$insert_id` (v5 in the namespace of the
/// bytes `posthog_mixpanel`).
fn posthog_uuid(insert_id: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::from_bytes(*b"posthog_mixpanel"), insert_id.as_bytes()).to_string()
}

/// A web SDK line (mixpanel-js), anonymous under simplified ID merge until `user`.
fn web(n: usize, day: u32, device: &str, user: Option<&str>, event: &str) -> Value {
    let mut p = json!({
        "time": 1_709_251_200 + (day as i64 - 1) * 86_400 + n as i64, "distinct_id": format!("$device:{device}"),
        "$device_id": device, "$insert_id": format!("web-{day}-{n}"), "mp_lib": "web", "$lib_version": "2.47.0",
        "$browser": "Chrome", "$browser_version": 122, "$os": "Mac OS X", "$current_url": format!("https://shop.example.com/p/{n}"),
        "current_page_title": "Shop", "current_domain": "shop.example.com", "current_url_path": format!("/p/{n}"),
        "$city": "Lisbon", "$region": "Lisbon", "mp_country_code": "PT", "$screen_height": 900, "$screen_width": 1440,
        "$initial_referrer": "$direct", "$initial_referring_domain": "$direct", "utm_source": "newsletter",
        "mp_processing_time_ms": 1_709_251_260_000i64, "$mp_api_endpoint": "api-js.mixpanel.com",
        "$mp_api_timestamp_ms": 1_709_251_260_001i64, "mp_sent_by_lib_version": "2.47.0",
    });
    if let Some(user) = user {
        p["distinct_id"] = json!(user);
        p["$user_id"] = json!(user);
    }
    json!({"event": event, "properties": p})
}

/// A mobile SDK line (Android) under original ID merge: time in milliseconds, the id
/// rewritten by identity resolution with `$distinct_id_before_identity`.
fn mobile(n: usize, day: u32, device: &str, user: &str) -> Value {
    json!({"event": "Opened App", "properties": {
        "time": (1_709_251_200_000i64 + (day as i64 - 1) * 86_400_000 + n as i64 * 1000 + 250),
        "distinct_id": device, "$distinct_id_before_identity": user, "$insert_id": format!("and-{day}-{n}"),
        "mp_lib": "android", "$lib_version": "7.3.1", "$os": "Android", "$os_version": "14", "$manufacturer": "Google",
        "$model": "Pixel 7", "$carrier": "Vodafone", "$wifi": true, "$app_version_string": "3.1.0",
        "$app_build_number": "310", "$screen_dpi": 420, "mp_country_code": "DE", "$city": "Berlin",
    }})
}

struct Export {
    dir: PathBuf,
    /// Uuids that must arrive once each: events and profiles.
    uuids: HashSet<String>,
    /// (user, device) links that must arrive once each.
    links: HashSet<(String, String)>,
    rejected: Vec<String>,
}

/// Two days (one plain, one gzipped) and an Engage export.
fn small_export(root: &Path) -> Export {
    let dir = root.join("mixpanel");
    std::fs::create_dir_all(&dir).unwrap();
    let day1 = vec![
        web(0, 1, "D1", None, "$mp_web_page_view").to_string(),
        web(1, 1, "D1", Some("ana@example.com"), "Signed Up").to_string(),
        web(1, 1, "D1", Some("ana@example.com"), "Signed Up").to_string(), // repeated $insert_id
        mobile(2, 1, "5F3C1A2B-0D4E-4F60-8A9B-0C1D2E3F4A5B", "user-7").to_string(),
        json!({"event": "$identify", "properties": {"time": 1_709_251_300, "distinct_id": "bo", "$identified_id": "bo", "$anon_distinct_id": "$device:B1"}}).to_string(),
        "{not json".to_string(),
        json!({"event": "orphan", "properties": {"time": 1_709_251_300}}).to_string(),
        String::new(),
        json!({"event": "no time", "properties": {"distinct_id": "x"}}).to_string(),
    ];
    let day2 = vec![
        mobile(3, 2, "5F3C1A2B-0D4E-4F60-8A9B-0C1D2E3F4A5B", "user-7").to_string(),
        web(4, 2, "D1", Some("ana@example.com"), "Purchased").to_string(),
        json!({"event": "no insert id", "properties": {"time": 1_709_337_700, "distinct_id": "bo"}}).to_string(),
        web(1, 1, "D1", Some("ana@example.com"), "Signed Up").to_string(), // repeated a day later
        format!("{{\"event\": \"huge\", \"properties\": {{\"time\": 1709337700, \"distinct_id\": \"bo\", \"blob\": \"{}\"}}}}", "x".repeat(1 << 20)),
    ];
    std::fs::write(dir.join("export-2024-03-01.json"), day1.join("\n")).unwrap();
    std::fs::write(dir.join("export-2024-03-02.json.gz"), gzip(&day2)).unwrap();
    let profiles = [
        json!({"$distinct_id": "ana@example.com", "$properties": {"$email": "ana@example.com", "$name": "Ana", "$created": "2024-02-28T10:00:00", "plan": "pro", "$last_seen": "2024-03-02T09:00:00"}}),
        json!({"$distinct_id": "never-seen", "$properties": {"$email": "ze@example.com", "$country_code": "BR"}}),
        json!({"$properties": {"$email": "nobody@example.com"}}),
    ];
    let people = root.join("people.json");
    std::fs::write(&people, profiles.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")).unwrap();
    let mut uuids: HashSet<String> =
        ["web-1-0", "web-1-1", "and-1-2", "and-2-3", "web-2-4"].iter().map(|i| posthog_uuid(i)).collect();
    uuids.insert("no insert id".into()); // found by name below
    uuids.insert("profile ana@example.com".into());
    uuids.insert("profile never-seen".into());
    let links = [("ana@example.com", "D1"), ("user-7", "5F3C1A2B-0D4E-4F60-8A9B-0C1D2E3F4A5B"), ("bo", "$device:B1")]
        .iter()
        .map(|(u, d)| (u.to_string(), d.to_string()))
        .collect();
    let rejected = vec![
        "export-2024-03-01.json line 6: the line is not a JSON object".to_string(),
        "export-2024-03-01.json line 7: no distinct_id".to_string(),
        "export-2024-03-01.json line 9: no usable `properties.time`".to_string(),
        "export-2024-03-02.json.gz line 5: the line is larger than 1 MB".to_string(),
        "people.json line 3: no $distinct_id".to_string(),
    ];
    Export { dir, uuids, links, rejected }
}

fn import(capture_url: &str, state: &Path, source: &str) -> Vec<String> {
    words(&format!(
        "--state {} mixpanel {source} --host {capture_url} --project-api-key phc_destination --retry-scale 0.001 \
         --concurrency 1",
        state.display()
    ))
}

/// As `import`, waiting what a service asks for to the second (`--retry-scale 1`).
fn import_waiting(capture_url: &str, state: &Path, source: &str) -> Vec<String> {
    import(capture_url, state, source).into_iter().map(|w| if w == "0.001" { "1".into() } else { w }).collect()
}

fn links(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "$create_alias")
        .map(|e| (e["distinct_id"].as_str().unwrap().into(), e["properties"]["alias"].as_str().unwrap().into()))
        .collect()
}

#[test]
fn a_folder_and_its_people_arrive_each_line_once_each_device_linked_once() {
    let root = TempDir::new("mixpanel");
    let export = small_export(&root.0);
    let capture = Capture::start();
    let state = root.0.join("s.sqlite");
    let source = format!("--files {} --profiles {}", export.dir.display(), root.0.join("people.json").display());
    let output = cli().args(import(&capture.server.url, &state, &source)).output().unwrap();
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    let received = capture.accepted.lock().unwrap().clone();

    // Every valid line once, by uuid; the repeats of web-1-1 not sent.
    let by_uuid: HashMap<&str, &Value> = received.iter().map(|e| (e["uuid"].as_str().unwrap(), e)).collect();
    assert_eq!(by_uuid.len(), received.len(), "a uuid came twice: {received:#?}");
    let events: Vec<&Value> = received.iter().filter(|e| e["event"] != "$create_alias").collect();
    let mut expected = export.uuids.clone();
    for e in &events {
        let name = e["event"].as_str().unwrap();
        let key = match name {
            "no insert id" => "no insert id".to_string(),
            "$set" => format!("profile {}", e["distinct_id"].as_str().unwrap()),
            _ => e["uuid"].as_str().unwrap().to_string(),
        };
        assert!(expected.remove(&key), "unexpected {key}: {e:#}");
    }
    assert!(expected.is_empty(), "never arrived: {expected:?}");

    // One link per device, before the user's first event on it.
    let sent_links = links(&received);
    assert_eq!(sent_links.iter().cloned().collect::<HashSet<_>>(), export.links);
    assert_eq!(sent_links.len(), export.links.len());
    let position = |f: &dyn Fn(&Value) -> bool| received.iter().position(f).unwrap();
    assert!(
        position(&|e| e["event"] == "$create_alias" && e["properties"]["alias"] == "D1")
            < position(&|e| e["event"] == "Signed Up")
    );

    // The mapping on real shapes.
    let signed_up = events.iter().find(|e| e["event"] == "Signed Up").unwrap();
    let p = &signed_up["properties"];
    assert_eq!(signed_up["distinct_id"], "ana@example.com");
    assert_eq!(signed_up["timestamp"], "2024-03-01T00:00:01.000Z");
    assert_eq!(
        (&p["$geoip_city_name"], &p["$geoip_country_name"], &p["$lib"]),
        (&json!("Lisbon"), &json!("Portugal"), &json!("web"))
    );
    assert_eq!(
        (&p["title"], &p["$host"], &p["$pathname"]),
        (&json!("Shop"), &json!("shop.example.com"), &json!("/p/1"))
    );
    assert!(
        p.get("mp_processing_time_ms").is_none()
            && p.get("$mp_api_endpoint").is_none()
            && p.get("mp_sent_by_lib_version").is_none()
    );
    assert_eq!(signed_up["$set"]["$browser"], "Chrome");
    assert_eq!(signed_up["$set_once"]["$initial_referrer"], "$direct");
    let pageview = events.iter().find(|e| e["event"] == "$pageview").unwrap();
    assert_eq!(pageview["distinct_id"], "$device:D1", "anonymous web events stay the device's");
    let opened = events.iter().find(|e| e["uuid"] == posthog_uuid("and-1-2").as_str()).unwrap();
    assert_eq!(opened["distinct_id"], "user-7", "original ID merge: the id before identity, not the device's");
    assert_eq!(opened["timestamp"], "2024-03-01T00:00:02.250Z", "milliseconds kept");
    let op = &opened["properties"];
    assert_eq!(
        (&op["$device_manufacturer"], &op["$device_model"], &op["$app_version"]),
        (&json!("Google"), &json!("Pixel 7"), &json!("3.1.0"))
    );
    assert_eq!(op["$geoip_country_name"], "Germany");
    let ana = events.iter().find(|e| e["event"] == "$set" && e["distinct_id"] == "ana@example.com").unwrap();
    assert_eq!(
        (&ana["$set"]["email"], &ana["$set"]["name"], &ana["$set"]["plan"]),
        (&json!("ana@example.com"), &json!("Ana"), &json!("pro"))
    );
    let ze = events.iter().find(|e| e["event"] == "$set" && e["distinct_id"] == "never-seen").unwrap();
    assert_eq!(ze["$set"]["$geoip_country_name"], "Brazil", "a profile without events gets its person");
    assert!(events.iter().all(|e| e["event"] != "$identify"), "Mixpanel's identity events are links, not events");

    // Rejected lines named by file and line, and counted.
    for why in &export.rejected {
        assert!(said.contains(why.as_str()), "{why} not said:\n{said}");
    }
    assert!(said.contains(&format!("{} rejected", export.rejected.len())), "{said}");
    assert!(said.contains("2 lines the export repeated (the same $insert_id) were sent once"), "{said}");

    // Again: nothing new. The same files moved and renamed: nothing new either.
    let before = received.len();
    let again = cli().args(import(&capture.server.url, &state, &source)).output().unwrap();
    assert!(again.status.success(), "{}", text(&again));
    let moved = root.0.join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::copy(export.dir.join("export-2024-03-01.json"), moved.join("a.json")).unwrap();
    std::fs::copy(export.dir.join("export-2024-03-02.json.gz"), moved.join("b.json.gz")).unwrap();
    let output =
        cli().args(import(&capture.server.url, &state, &format!("--files {}", moved.display()))).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("2 files this destination got whole before"), "{}", text(&output));
    assert_eq!(capture.accepted.lock().unwrap().len(), before, "a rerun sent something again");
}

/// `files` days of `per_file` lines, a tenth of them repeating an earlier `$insert_id`.
/// A dry run ends as the other imports' dry runs (`commands/destination.rs::
/// migrate_import`): what would be sent summed up, nothing sent, no state file written.
#[test]
fn a_dry_run_sums_up_and_sends_and_keeps_nothing() {
    let root = TempDir::new("mixpanel-dry");
    let export = small_export(&root.0);
    let capture = Capture::start();
    let state = root.0.join("s.sqlite");
    let source = format!("--files {} --dry-run", export.dir.display());
    let output = cli().args(import(&capture.server.url, &state, &source)).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("Dry run: ") && said.contains("Nothing was sent."), "{said}");
    assert!(capture.accepted.lock().unwrap().is_empty(), "{said}");
    assert!(!state.exists(), "a dry run keeps no state");
}

fn big_export(dir: &Path, files: u32, per_file: usize) -> (HashSet<String>, HashSet<(String, String)>) {
    std::fs::create_dir_all(dir).unwrap();
    let (mut uuids, mut links, mut devices) = (HashSet::new(), HashSet::new(), HashSet::new());
    for day in 1..=files {
        let lines: Vec<String> = (0..per_file)
            .map(|i| {
                let n = if i % 10 == 9 { i - 1 } else { i };
                let user = format!("user-{}", n % 37);
                let device = format!("dev-{}-{}", n % 37, day % 2);
                if devices.insert(device.clone()) {
                    links.insert((user.clone(), device.clone()));
                }
                uuids.insert(posthog_uuid(&format!("web-{day}-{n}")));
                web(n, day, &device, Some(&user), "viewed").to_string()
            })
            .collect();
        std::fs::write(dir.join(format!("2024-03-{day:02}.json.gz")), gzip(&lines)).unwrap();
    }
    (uuids, links)
}

#[test]
fn killed_mid_run_and_run_again_everything_arrives_once_by_uuid() {
    let root = TempDir::new("mixpanel-kill");
    let (uuids, pairs) = big_export(&root.0.join("export"), 12, 200);
    let capture = Capture::start();
    capture.set_fault(|_| {
        std::thread::sleep(Duration::from_millis(10));
        None
    });
    let state = root.0.join("s.sqlite");
    let source = format!("--files {} --page-size 100 --batch-size 20", root.0.join("export").display());
    let args = import(&capture.server.url, &state, &source);
    let mut child = cli().args(&args).spawn().unwrap();
    let started = Instant::now();
    while capture.uuids().len() < 600 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = capture.uuids().len();
    assert!(at_kill < uuids.len(), "the kill came too late");
    let output = cli().args(&args).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("resuming after"), "{}", text(&output));
    let received = capture.accepted.lock().unwrap().clone();
    let event_uuids: HashSet<String> = received
        .iter()
        .filter(|e| e["event"] != "$create_alias")
        .map(|e| e["uuid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(event_uuids, uuids, "events lost or foreign");
    assert_eq!(links(&received).into_iter().collect::<HashSet<_>>(), pairs);
    // By uuid, everything once at the destination (which keeps one event per uuid);
    // sent twice only what was in flight at the kill.
    let distinct: HashSet<&str> = received.iter().map(|e| e["uuid"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), uuids.len() + pairs.len());
    assert!(received.len() - distinct.len() <= 200, "{} sent twice", received.len() - distinct.len());
}

/// Mixpanel's raw export API on loopback: its limits enforced (3 queries a second, 60
/// an hour, 429 past them), a service account's basic auth, one day a query. And its
/// Engage query API beside it: `POST /api/query/engage`, pages of `page_size` profiles,
/// a further page only in the session the first page opened and only the one after the
/// last, its own 60 queries an hour and at most 5 at once (429 past them).
struct ExportApi {
    server: Server,
    asked: Arc<Mutex<Vec<(Instant, String)>>>,
    refused: Arc<Mutex<usize>>,
    /// A switch: the next export query is refused once with 429 and Retry-After: 2, as
    /// when another client spent the budget.
    refuse_next: Arc<Mutex<bool>>,
    /// When each switched refusal was answered, and what it refused.
    refusals: Arc<Mutex<Vec<(Instant, String)>>>,
    /// The Engage pages answered: (when, session, page).
    engage_asked: Arc<Mutex<Vec<(Instant, String, u64)>>>,
    /// A switch: the Engage query for this page is refused once with 429 and Retry-After: 2.
    refuse_page: Arc<Mutex<Option<u64>>>,
    /// A switch: the Engage query for this page is held (not answered) while it is set.
    hold_page: Arc<Mutex<Option<u64>>>,
    /// The most Engage queries under way at once.
    most_at_once: Arc<Mutex<usize>>,
}

fn too_many(what: &str) -> Reply {
    refuse(what, 1)
}

fn refuse(what: &str, retry_after: u64) -> Reply {
    Reply::Answer {
        status: 429,
        headers: vec![("Retry-After".into(), retry_after.to_string())],
        body: format!("{{\"error\": \"{what}\"}}").into_bytes(),
    }
}

fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%20", " ")))
        .collect()
}

fn export_api(days: HashMap<String, Vec<u8>>, per_hour: usize) -> ExportApi {
    mixpanel_api(days, Vec::new(), 1000, per_hour)
}

fn mixpanel_api(days: HashMap<String, Vec<u8>>, profiles: Vec<Value>, page_size: usize, per_hour: usize) -> ExportApi {
    let api = ExportApi {
        server: Server { url: String::new() },
        asked: Arc::default(),
        refused: Arc::default(),
        refuse_next: Arc::default(),
        refusals: Arc::default(),
        engage_asked: Arc::default(),
        refuse_page: Arc::default(),
        hold_page: Arc::default(),
        most_at_once: Arc::default(),
    };
    let (a, r, next, refusals) =
        (api.asked.clone(), api.refused.clone(), api.refuse_next.clone(), api.refusals.clone());
    let (engage, refuse_page, hold, most) =
        (api.engage_asked.clone(), api.refuse_page.clone(), api.hold_page.clone(), api.most_at_once.clone());
    let at_once = Arc::new(Mutex::new(0usize));
    let sessions: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let server = Server::start(Arc::new(move |request: &Request| {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode("sa.user:sa-secret");
        if request.headers.get("authorization") != Some(&format!("Basic {auth}")) {
            return Reply::new(401, "{\"error\": \"Unauthorized\"}");
        }
        let (path, query) = request.path.split_once('?').unwrap_or((request.path.as_str(), ""));
        let params: HashMap<&str, &str> = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
        let now = Instant::now();
        if path == "/api/query/engage" {
            if request.method != "POST" {
                return Reply::new(405, "{\"error\": \"POST\"}");
            }
            let body = form(&request.body);
            let page: u64 = body.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
            {
                let mut n = at_once.lock().unwrap();
                *n += 1;
                let mut most = most.lock().unwrap();
                *most = (*most).max(*n);
                if *n > 5 {
                    *n -= 1;
                    *r.lock().unwrap() += 1;
                    return too_many("at most 5 concurrent queries");
                }
            }
            let answer = (|| {
                while *hold.lock().unwrap() == Some(page) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::thread::sleep(Duration::from_millis(20)); // a query takes a while
                let mut asked = engage.lock().unwrap();
                if refuse_page.lock().unwrap().take_if(|p| *p == page).is_some() {
                    refusals.lock().unwrap().push((Instant::now(), format!("page {page}")));
                    return refuse("rate limit exceeded", 2);
                }
                if asked.iter().filter(|(t, ..)| now.duration_since(*t) < Duration::from_secs(3600)).count() >= per_hour
                {
                    *r.lock().unwrap() += 1;
                    return too_many("60 queries an hour");
                }
                if params.get("project_id") != Some(&"777") {
                    return Reply::new(400, "{\"error\": \"project 777\"}");
                }
                let mut sessions = sessions.lock().unwrap();
                let session = match (page, body.get("session_id")) {
                    (0, _) => {
                        let session = format!("S{}", sessions.len() + 1);
                        sessions.insert(session.clone(), 0);
                        session
                    }
                    (_, Some(session)) if sessions.get(session) == Some(&(page - 1)) => {
                        sessions.insert(session.clone(), page);
                        session.clone()
                    }
                    _ => {
                        return Reply::new(
                            400,
                            "{\"error\": \"a further page needs its session and the page after the last\"}",
                        )
                    }
                };
                asked.push((Instant::now(), session.clone(), page));
                let from = (page as usize * page_size).min(profiles.len());
                let results = &profiles[from..(from + page_size).min(profiles.len())];
                let answer = json!({"page": page, "page_size": page_size, "session_id": session, "status": "ok",
                    "total": profiles.len(), "results": results});
                Reply::new(200, &answer.to_string())
            })();
            *at_once.lock().unwrap() -= 1;
            return answer;
        }
        let mut asked = a.lock().unwrap();
        if std::mem::take(&mut *next.lock().unwrap()) {
            refusals.lock().unwrap().push((now, query.to_string()));
            return refuse("rate limit exceeded", 2);
        }
        let last_second = asked.iter().filter(|(t, _)| now.duration_since(*t) < Duration::from_secs(1)).count();
        let last_hour = asked.iter().filter(|(t, _)| now.duration_since(*t) < Duration::from_secs(3600)).count();
        if last_second >= 3 || last_hour >= per_hour {
            *r.lock().unwrap() += 1;
            return too_many("rate limit exceeded");
        }
        asked.push((now, query.to_string()));
        if params.get("project_id") != Some(&"777") || params.get("from_date") != params.get("to_date") {
            return Reply::new(400, "{\"error\": \"one day a query, project 777\"}");
        }
        let day = params.get("from_date").copied().unwrap_or("");
        Reply::Answer { status: 200, headers: Vec::new(), body: days.get(day).cloned().unwrap_or_default() }
    }));
    ExportApi { server, ..api }
}

#[test]
fn the_export_api_is_read_a_day_a_query_within_mixpanels_limits() {
    let root = TempDir::new("mixpanel-api");
    let mut days = HashMap::new();
    let mut uuids = HashSet::new();
    for day in 1..=7u32 {
        let lines: Vec<String> = (0..5).map(|n| web(n, day, "DA", Some("ana"), "viewed").to_string()).collect();
        uuids.extend((0..5).map(|n| posthog_uuid(&format!("web-{day}-{n}"))));
        days.insert(format!("2024-03-{day:02}"), gzip(&lines));
    }
    let api = export_api(days, 60);
    let capture = Capture::start();
    let state = root.0.join("s.sqlite");
    let source = format!("--project-id 777 --start 2024-03-01 --end 2024-03-08 --mixpanel-url {}", api.server.url);
    let started = Instant::now();
    let output = cli()
        .args(import(&capture.server.url, &state, &source))
        .env("MIXPANEL_SERVICE_ACCOUNT_USER", "sa.user")
        .env("MIXPANEL_SERVICE_ACCOUNT_SECRET", "sa-secret")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let asked: Vec<String> = api.asked.lock().unwrap().iter().map(|(_, q)| q.clone()).collect();
    let wanted: Vec<String> =
        (1..=7).map(|d| format!("project_id=777&from_date=2024-03-{d:02}&to_date=2024-03-{d:02}")).collect();
    assert_eq!(asked, wanted, "each day once, in order");
    assert_eq!(*api.refused.lock().unwrap(), 0, "the command went past Mixpanel's limits");
    assert!(started.elapsed() >= Duration::from_secs(2), "7 queries at 3 a second take 2 seconds at least");
    let received: HashSet<String> = capture.uuids().into_iter().collect();
    assert!(uuids.is_subset(&received) && received.len() == uuids.len() + 1, "{} of {}", received.len(), uuids.len());

    // Another client spent the budget: the next query is refused (429, Retry-After: 2
    // seconds); it is asked again after them, nothing lost.
    let spent = export_api(HashMap::new(), 1);
    let mut more = HashMap::new();
    more.insert("2024-04-01".to_string(), gzip(&[web(0, 40, "DB", None, "late").to_string()]));
    let busy = export_api(more, 60);
    *busy.refuse_next.lock().unwrap() = true;
    let source = format!("--project-id 777 --start 2024-04-01 --end 2024-04-02 --mixpanel-url {}", busy.server.url);
    let output = cli()
        .args(import_waiting(&capture.server.url, &root.0.join("t.sqlite"), &source))
        .env("MIXPANEL_SERVICE_ACCOUNT_USER", "sa.user")
        .env("MIXPANEL_SERVICE_ACCOUNT_SECRET", "sa-secret")
        .output()
        .unwrap();
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    let refusals = busy.refusals.lock().unwrap().clone();
    let day = "project_id=777&from_date=2024-04-01&to_date=2024-04-01".to_string();
    assert_eq!(refusals.iter().map(|(_, q)| q.clone()).collect::<Vec<_>>(), vec![day.clone()], "refused once");
    let asked = busy.asked.lock().unwrap().clone();
    assert_eq!(asked.iter().map(|(_, q)| q.clone()).collect::<Vec<_>>(), vec![day], "asked again once");
    assert!(asked[0].0.duration_since(refusals[0].0) >= Duration::from_secs(2), "the Retry-After was not waited");
    assert!(said.contains("asks to slow down (HTTP 429)"), "{said}");
    assert_eq!(*busy.refused.lock().unwrap(), 0, "refused past the switch");
    assert!(capture.accepted.lock().unwrap().iter().any(|e| e["event"] == "late"));

    let wrong = format!("--project-id 777 --start 2024-03-01 --end 2024-03-02 --mixpanel-url {}", spent.server.url);
    let refused = cli()
        .args(import(&capture.server.url, &root.0.join("u.sqlite"), &wrong))
        .env("MIXPANEL_SERVICE_ACCOUNT_USER", "sa.user")
        .env("MIXPANEL_SERVICE_ACCOUNT_SECRET", "wrong")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("Mixpanel refused the service account (HTTP 401)"), "{}", text(&refused));
}

/// `n` Engage profiles, `p0` .. : a few with events, most without.
fn profiles(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"$distinct_id": format!("p{i}"), "$properties": {"$email": format!("p{i}@example.com"),
                "$name": format!("Person {i}"), "$created": "2024-01-05T10:00:00", "plan": if i % 2 == 0 { "pro" } else { "free" }}})
        })
        .collect()
}

/// The `$set` events each person got, by distinct_id.
fn sets(capture: &Capture) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for e in capture.accepted.lock().unwrap().iter().filter(|e| e["event"] == "$set") {
        *out.entry(e["distinct_id"].as_str().unwrap().to_string()).or_default() += 1;
    }
    out
}

fn sa(command: &mut std::process::Command, secret: &str) -> Output {
    command
        .env("MIXPANEL_SERVICE_ACCOUNT_USER", "sa.user")
        .env("MIXPANEL_SERVICE_ACCOUNT_SECRET", secret)
        .output()
        .unwrap()
}

#[test]
fn the_people_are_read_from_the_engage_api_page_by_page_each_once() {
    let root = TempDir::new("mixpanel-engage");
    let mut days = HashMap::new();
    days.insert("2024-03-01".to_string(), gzip(&[web(0, 1, "DP", Some("p1"), "viewed").to_string()]));
    let api = mixpanel_api(days, profiles(10), 3, 60);
    *api.refuse_page.lock().unwrap() = Some(2);
    let capture = Capture::start();
    let state = root.0.join("s.sqlite");
    let source = format!(
        "--project-id 777 --start 2024-03-01 --end 2024-03-02 --profiles api --mixpanel-url {}",
        api.server.url
    );
    let output = sa(cli().args(import_waiting(&capture.server.url, &state, &source)), "sa-secret");
    let said = text(&output);
    assert!(output.status.success(), "{said}");

    // Each profile once, as the same $set as from a file, those without events included.
    let expected: HashMap<String, usize> = (0..10).map(|i| (format!("p{i}"), 1)).collect();
    assert_eq!(sets(&capture), expected, "{said}");
    let received = capture.accepted.lock().unwrap().clone();
    let p4 = received.iter().find(|e| e["event"] == "$set" && e["distinct_id"] == "p4").unwrap();
    assert_eq!((&p4["$set"]["email"], &p4["$set"]["name"]), (&json!("p4@example.com"), &json!("Person 4")));
    assert_eq!(p4["timestamp"], "2024-01-05T10:00:00.000Z");
    assert!(received.iter().any(|e| e["event"] == "viewed"), "the events came too");

    // Pages 0 to 3 (3, 3, 3 and 1 profiles), each once, the further ones in the first's
    // session; page 2 refused once and asked again after its Retry-After.
    let asked = api.engage_asked.lock().unwrap().clone();
    let pages: Vec<(String, u64)> = asked.iter().map(|(_, s, p)| (s.clone(), *p)).collect();
    assert_eq!(pages, (0..4).map(|p| ("S1".to_string(), p)).collect::<Vec<_>>());
    let refusals = api.refusals.lock().unwrap().clone();
    assert_eq!(refusals.len(), 1);
    // Two seconds: more than the pace of 3 queries a second would give it.
    assert!(asked[2].0.duration_since(refusals[0].0) >= Duration::from_secs(2), "the Retry-After was not waited");
    assert!(said.contains("Mixpanel's Engage API asks to slow down (HTTP 429) at page 2"), "{said}");
    assert_eq!(*api.refused.lock().unwrap(), 0, "the command went past the Query API's limits");
    assert!(*api.most_at_once.lock().unwrap() <= 5);
    assert!(said.contains("10 profiles set on their persons"), "{said}");

    // Again: nothing is sent twice.
    let again = sa(cli().args(import(&capture.server.url, &state, &source)), "sa-secret");
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(sets(&capture), expected, "a rerun sent a profile again");

    // The people alone, no events, no --start.
    let people_only = format!("--project-id 777 --profiles api --mixpanel-url {}", api.server.url);
    let other = Capture::start();
    let output = sa(cli().args(import(&other.server.url, &root.0.join("p.sqlite"), &people_only)), "sa-secret");
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(sets(&other), expected);
    // Again, the people alone: nothing is sent twice either.
    let before = other.accepted.lock().unwrap().len();
    let output = sa(cli().args(import(&other.server.url, &root.0.join("p.sqlite"), &people_only)), "sa-secret");
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(other.accepted.lock().unwrap().len(), before, "a rerun of the people alone sent them again");

    // Wrong credentials: exit 1, naming where they come from.
    let refused = sa(cli().args(import(&other.server.url, &root.0.join("u.sqlite"), &people_only)), "wrong");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let said = text(&refused);
    assert!(
        said.contains("HTTP 401")
            && said.contains("MIXPANEL_SERVICE_ACCOUNT_USER")
            && said.contains("MIXPANEL_SERVICE_ACCOUNT_SECRET"),
        "{said}"
    );
    // None at all: a usage error naming them.
    let none = cli()
        .args(import(&other.server.url, &root.0.join("v.sqlite"), &people_only))
        .env_remove("MIXPANEL_SERVICE_ACCOUNT_USER")
        .env_remove("MIXPANEL_SERVICE_ACCOUNT_SECRET")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2), "{}", text(&none));
    assert!(text(&none).contains("MIXPANEL_SERVICE_ACCOUNT_SECRET"), "{}", text(&none));
}

#[test]
fn killed_while_reading_the_engage_api_and_run_again_each_profile_arrives_once() {
    let root = TempDir::new("mixpanel-engage-kill");
    let api = mixpanel_api(HashMap::new(), profiles(12), 3, 60);
    *api.hold_page.lock().unwrap() = Some(2);
    let capture = Capture::start();
    let state = root.0.join("s.sqlite");
    let source = format!("--project-id 777 --profiles api --page-size 3 --mixpanel-url {}", api.server.url);
    let args = import(&capture.server.url, &state, &source);
    let mut child = cli()
        .args(&args)
        .env("MIXPANEL_SERVICE_ACCOUNT_USER", "sa.user")
        .env("MIXPANEL_SERVICE_ACCOUNT_SECRET", "sa-secret")
        .spawn()
        .unwrap();
    let started = Instant::now();
    // Pages 0 and 1 delivered and settled while page 2 is held.
    while sets(&capture).len() < 6 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(sets(&capture).len(), 6, "killed before pages 0 and 1 arrived");
    *api.hold_page.lock().unwrap() = None;
    let output = sa(cli().args(&args), "sa-secret");
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("resuming after"), "{}", text(&output));
    // Every profile arrived. The rerun asked for the pages from the first again (a new
    // session); what the destination got was not sent again, by uuid: sent twice at most
    // page 1, delivered but not yet recorded when the reader was held at page 2.
    let got = sets(&capture);
    assert_eq!(got.keys().cloned().collect::<HashSet<_>>(), (0..12).map(|i| format!("p{i}")).collect());
    let twice: usize = got.values().map(|n| n - 1).sum();
    assert!(twice <= 3, "{twice} profiles sent twice: {got:?}");
    let sessions: HashSet<String> = api.engage_asked.lock().unwrap().iter().map(|(_, s, _)| s.clone()).collect();
    assert_eq!(sessions.len(), 2, "the rerun opened its own session");
}

#[test]
fn a_mixpanel_import_is_verified_day_by_day_and_mended_from_its_files() {
    let root = TempDir::new("mixpanel-verify");
    let export = root.0.join("export");
    big_export(&export, 2, 60);
    let destination = PostHog::start();
    let lost = posthog_uuid("web-2-7");
    let dropped = lost.clone();
    destination.set_drop(move |e| e["uuid"] == dropped.as_str());
    let state = root.0.join("s.sqlite");
    let output =
        cli().args(import(&destination.server.url, &state, &format!("--files {}", export.display()))).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let verify = format!(
        "--state {} verify --from mixpanel --destination-query-api-host {} --destination-project-id {PROJECT} \
         --destination-personal-api-key {PERSONAL_KEY} --settle-minutes 0",
        state.display(),
        destination.server.url
    );
    let output = cli().args(words(&verify)).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(5), "{said}");
    assert!(said.contains("1 missing and 0 extra events on 1 day (2024-03-02)"), "{said}");
    destination.set_drop(|_| false);
    let resend = format!(
        "{verify} --resend --files {} --host {} --project-api-key phc_destination --retry-scale 0.001",
        export.display(),
        destination.server.url
    );
    let output = cli().args(words(&resend)).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains("Sent again: 1 of the 1 missing events found at the source, 1 delivered"), "{said}");
}

//! Destinations that are not quite PostHog's capture, as users meet them: a web app that
//! answers every path with its page, a proxy with a body size limit of its own, a
//! redirect from http:// to https://, a plain-http instance written without its scheme,
//! capture's endpoint written into --host. Nothing accepted is
//! lost, and each is named with what to write.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// What stands in front of capture's checks.
#[derive(Clone)]
enum Front {
    /// Capture itself.
    Capture,
    /// A web app serving its page, with a 200, for every path.
    Page,
    /// A proxy refusing bodies over this many bytes with nginx's 413 page.
    BodyLimit(usize),
    /// Every request redirected (301) to this URL.
    Redirect(String),
}

/// A destination on loopback: `front` first, then capture's own checks.
struct Destination {
    server: Server,
    front: Arc<Mutex<Front>>,
    accepted: Arc<Mutex<Vec<Value>>>,
    /// The path of every request, with the status it got.
    answered: Arc<Mutex<Vec<(String, u16)>>>,
}

const PAGE: &str = "<!DOCTYPE html><html><head><title>Acme dashboard</title></head><body><div id=\"root\"></div>\
                    <script src=\"/static/app.js\"></script></body></html>";
const NGINX_413: &str = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center>\
                         <h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n\
                         </body>\r\n</html>\r\n";

impl Destination {
    fn start(front: Front) -> Destination {
        let front = Arc::new(Mutex::new(front));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let (f, a, log) = (front.clone(), accepted.clone(), answered.clone());
        let server = Server::start(Arc::new(move |request: &Request| {
            let path = request.path.split('?').next().unwrap_or_default().to_string();
            let reply = match f.lock().unwrap().clone() {
                Front::Page => Reply::Answer {
                    status: 200,
                    headers: vec![("Content-Type".into(), "text/html".into())],
                    body: PAGE.as_bytes().to_vec(),
                },
                Front::BodyLimit(most) if request.body.len() > most => Reply::Answer {
                    status: 413,
                    headers: vec![("Content-Type".into(), "text/html".into())],
                    body: NGINX_413.as_bytes().to_vec(),
                },
                Front::Redirect(to) => Reply::Answer {
                    status: 301,
                    headers: vec![("Location".into(), to)],
                    body: b"<html><body>Moved Permanently</body></html>".to_vec(),
                },
                _ => match body_json(request).ok_or_else(|| Reply::new(400, "{\"error\":\"malformed\"}")) {
                    Err(reply) => reply,
                    Ok(json) => match capture_checks(&json) {
                        Ok(batch) => {
                            a.lock().unwrap().extend(batch);
                            Reply::new(200, "{\"status\":\"Ok\"}")
                        }
                        Err(reply) => reply,
                    },
                },
            };
            let status = match &reply {
                Reply::Answer { status, .. } => *status,
                Reply::Drop => 0,
            };
            log.lock().unwrap().push((path, status));
            reply
        }));
        Destination { server, front, accepted, answered }
    }

    fn uuids(&self) -> Vec<String> {
        self.accepted.lock().unwrap().iter().map(|e| e["uuid"].as_str().unwrap().to_string()).collect()
    }

    fn answers(&self, status: u16) -> usize {
        self.answered.lock().unwrap().iter().filter(|(_, s)| *s == status).count()
    }
}

fn command(engine: &ClickHouse, host: &str, state: &str, more: &str) -> Vec<String> {
    words(&format!(
        "--state {state} posthog --from clickhouse --clickhouse-url {} --clickhouse-user {USER} --clickhouse-password \
         {PASSWORD} --team-id 2 --start 2021-06-01 --end 2021-07-01 --host {host} --project-api-key phc_destination \
         --retry-scale 0.0001 {more}",
        engine.url
    ))
}

/// Every event of the source arrived, each once.
fn each_once(destination: &Destination, source: &[String]) {
    let uuids = destination.uuids();
    let distinct: HashSet<&String> = uuids.iter().collect();
    assert_eq!(distinct, source.iter().collect::<HashSet<_>>(), "not every event arrived");
    assert_eq!(uuids.len(), source.len(), "an event arrived twice");
}

#[test]
fn a_web_page_answered_200_delivers_nothing_and_the_fixed_host_gets_every_event() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 60, 60, "2021-06-02 00:00:00");
    let source = engine.uuids(2);
    let web_app = Destination::start(Front::Page);
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let state = state.to_str().unwrap();
    let output = cli().args(command(&engine, &web_app.server.url, state, "--batch-size 10")).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(4), "{said}");
    assert!(said.contains("0 delivered"), "{said}");
    assert!(!said.contains("complete"), "{said}");
    let stopped = said.lines().find(|l| l.starts_with("Stopped:")).unwrap_or_else(|| panic!("{said}"));
    assert!(
        stopped.contains(&format!("--host {} answered HTTP 200", web_app.server.url))
            && stopped.contains("not PostHog capture's answer (<!DOCTYPE html>")
            && stopped.contains("Check --host"),
        "{stopped}"
    );
    assert!(web_app.answers(200) <= 4, "{} requests went to a web page", web_app.answers(200));

    // The same command with --host fixed: every event, once.
    let capture = Destination::start(Front::Capture);
    let fixed = cli().args(command(&engine, &capture.server.url, state, "--batch-size 10")).output().unwrap();
    assert_eq!(fixed.status.code(), Some(0), "{}", text(&fixed));
    each_once(&capture, &source);
    // And where the web app is fixed in place (the same --host): every event, once.
    *web_app.front.lock().unwrap() = Front::Capture;
    let again = cli().args(command(&engine, &web_app.server.url, state, "--batch-size 10")).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    each_once(&web_app, &source);
}

#[test]
fn a_proxy_refusing_every_request_as_too_large_keeps_every_event_and_names_the_limit_to_raise() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 40, 40, "2021-06-02 00:00:00");
    let source = engine.uuids(2);
    let destination = Destination::start(Front::BodyLimit(1));
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let state = state.to_str().unwrap();
    let output = cli().args(command(&engine, &destination.server.url, state, "")).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(4), "{said}");
    assert!(said.contains("0 delivered, 0 rejected"), "{said}");
    assert!(!said.contains("requests go under"), "no size passes, yet one was said to: {said}");
    let stopped = said.lines().find(|l| l.starts_with("Stopped:")).unwrap_or_else(|| panic!("{said}"));
    assert!(
        stopped.contains("refuses a request of one event")
            && stopped.contains("(HTTP 413)")
            && stopped.contains("client_max_body_size")
            && stopped.contains(&format!("Raise it to 20 MB for {}/batch/", destination.server.url)),
        "{stopped}"
    );
    let status = text(&run(&["--state", state, "status"]));
    assert!(status.contains("0 delivered, 0 rejected") && status.contains("in progress"), "{status}");

    // The proxy's limit raised: the same command sends every event, once.
    *destination.front.lock().unwrap() = Front::Capture;
    let fixed = cli().args(command(&engine, &destination.server.url, state, "")).output().unwrap();
    assert_eq!(fixed.status.code(), Some(0), "{}", text(&fixed));
    each_once(&destination, &source);
}

#[test]
fn a_proxy_refusing_larger_requests_is_said_and_learned_and_progress_goes_on() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 4000, 4000, "2021-06-02 00:00:00");
    let source = engine.uuids(2);
    // Requests of 500 events are about 1 MB without gzip: ten times what the proxy takes.
    let most = 100_000;
    let destination = Destination::start(Front::BodyLimit(most));
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let started = Instant::now();
    let more = "--gzip off --page-size 500";
    let output = cli().args(command(&engine, &destination.server.url, state.to_str().unwrap(), more)).output().unwrap();
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    each_once(&destination, &source);
    let notes: Vec<&str> = said.lines().filter(|l| l.contains("as too large")).collect();
    let first = notes.first().unwrap_or_else(|| panic!("nothing said: {said}"));
    assert!(first.contains("(HTTP 413)") && first.contains("client_max_body_size"), "{first}");
    assert!(first.contains("lower --batch-max-kilobytes"), "{first}");
    // Each lower limit is said once, the last one a size that passes.
    let under = |note: &str| -> usize {
        note.split("requests go under ").nth(1).and_then(|r| r.split(' ').next()?.parse().ok()).unwrap()
    };
    assert!(notes.windows(2).all(|w| under(w[1]) < under(w[0])), "{notes:#?}");
    assert!(under(notes[notes.len() - 1]) * 1024 <= most, "{notes:#?}");
    assert!(said.contains("% done"), "no progress: {said}");
    // Halving every request of 500 until it fits costs 15 refusals each (120 here);
    // learned, a few while the first requests find the size.
    let refused = destination.answers(413);
    assert!(refused <= 24, "{refused} requests refused as too large in {:?}", started.elapsed());
}

#[test]
fn a_redirect_is_named_with_the_host_to_write_at_once() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 20, 20, "2021-06-02 00:00:00");
    let destination = Destination::start(Front::Capture);
    let port = destination.server.url.rsplit(':').next().unwrap().to_string();
    let to = format!("https://127.0.0.1:{port}/batch/");
    *destination.front.lock().unwrap() = Front::Redirect(to.clone());
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let started = Instant::now();
    let output = cli().args(command(&engine, &destination.server.url, state.to_str().unwrap(), "")).output().unwrap();
    let said = text(&output);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(4), "{said}");
    let stopped = said.lines().find(|l| l.starts_with("Stopped:")).unwrap_or_else(|| panic!("{said}"));
    assert!(
        stopped.contains(&format!("redirects (HTTP 301) to {to}"))
            && stopped.contains(&format!("Write --host https://127.0.0.1:{port}.")),
        "{stopped}"
    );
    assert!(destination.uuids().is_empty());
}

#[test]
fn a_plain_http_instance_written_without_its_scheme_is_named_at_once_and_capture_s_path_is_understood() {
    let engine = ClickHouse::start();
    insert_events(&engine, 2, 0, 30, 30, "2021-06-02 00:00:00");
    let source = engine.uuids(2);
    let destination = Destination::start(Front::Capture);
    let address = destination.server.url.strip_prefix("http://").unwrap().to_string();
    let dir = TempDir::new("state");
    let state = dir.0.join("s.sqlite");
    let state = state.to_str().unwrap();
    let started = Instant::now();
    let output = cli().args(command(&engine, &address, state, "")).output().unwrap();
    let said = text(&output);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(output.status.code(), Some(4), "{said}");
    let stopped = said.lines().find(|l| l.starts_with("Stopped:")).unwrap_or_else(|| panic!("{said}"));
    assert!(
        stopped.contains(&format!("--host https://{address} speaks plain http, not https"))
            && stopped.contains(&format!("Write --host http://{address}.")),
        "{stopped}"
    );

    // Capture's endpoint written into --host, as PostHog's docs show it with the host.
    let output = cli().args(command(&engine, &format!("http://{address}/batch"), state, "")).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    each_once(&destination, &source);
    let paths: HashSet<String> = destination.answered.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(paths, HashSet::from(["/batch/".to_string()]));
}

//! Headless Chromium (installed by scripts/bootstrap.sh) driven through ChromeDriver's
//! WebDriver API, plain HTTP and JSON: a page is opened as a user opens it, and the test
//! asks the browser what it laid out (sizes, colours, what it fetched).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::TempDir;

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: TempDir,
}

fn call(request: ureq::Request, body: Option<Value>) -> Value {
    let answer = match body {
        Some(body) => request.send_string(&body.to_string()),
        None => request.call(),
    };
    match answer {
        Ok(r) => serde_json::from_str(&r.into_string().unwrap_or_default()).unwrap_or(Value::Null),
        Err(ureq::Error::Status(status, r)) => {
            panic!("ChromeDriver answered {status}: {}", r.into_string().unwrap_or_default())
        }
        Err(e) => panic!("ChromeDriver: {e}"),
    }
}

impl Browser {
    pub fn start() -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("no chromedriver: run `bash scripts/bootstrap.sh` (it installs Chromium and ChromeDriver)");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "ChromeDriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = TempDir::new("chromium");
        // The flags this machine's closed network needs (no background connections).
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1200,1000",
            &format!("--user-data-dir={}", profile.0.display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let answer = call(ureq::post(&format!("{base}/session")), Some(capabilities));
        let session = answer["value"]["sessionId"].as_str().expect("a WebDriver session").to_string();
        Browser { driver, base, session, _profile: profile }
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/session/{}/{tail}", self.base, self.session)
    }

    pub fn open(&self, file: &Path) {
        let url = format!("file://{}", file.canonicalize().unwrap().display());
        call(ureq::post(&self.url("url")), Some(json!({"url": url})));
    }

    /// The value of a script's `return`, run in the open page.
    pub fn eval(&self, script: &str) -> Value {
        call(ureq::post(&self.url("execute/sync")), Some(json!({"script": script, "args": []})))["value"].clone()
    }

    pub fn screenshot(&self, to: &Path) {
        let answer = call(ureq::get(&self.url("screenshot")), None);
        let png = base64::engine::general_purpose::STANDARD.decode(answer["value"].as_str().unwrap_or("")).unwrap();
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

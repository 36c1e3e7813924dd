//! One PostHog-shaped instance on loopback for the `metadata` tests: a process of
//! `posthog_api/server.py` (its facts in `posthog_api/API.md`), with what the tests read
//! and change at it through its REST API, under whichever URL form it answers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::{cli, root, text, TempDir};

pub const SOURCE_KEY: &str = "phx_source_key";
pub const DESTINATION_KEY: &str = "phx_destination_key";

pub struct Instance {
    pub url: String,
    pub project: u64,
    pub key: &'static str,
    child: Child,
    _dir: TempDir,
}

impl Instance {
    pub fn start(seed: &str, project: u64, key: &'static str, extra: &[&str]) -> Instance {
        let dir = TempDir::new("posthog-api");
        let mut child = Command::new("python3")
            .arg(root().join("cli/tests/posthog_api/server.py"))
            .args(["--db", dir.0.join("posthog.sqlite").to_str().unwrap(), "--seed", seed, "--key", key])
            .args(["--project", &project.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the PostHog-shaped API");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("READY ").unwrap_or_else(|| panic!("the API said {line:?}")).to_string();
        Instance { url, project, key, child, _dir: dir }
    }

    /// The seeded source project (actions, cohorts, flags), only under `/api/projects/`,
    /// in pages of 7; `extra` adds to it (`--seed-kinds` for the newer kinds).
    pub fn source(extra: &[&str]) -> Instance {
        let mut args = vec!["--forms", "projects", "--page", "7"];
        args.extend(extra);
        Instance::start("source", 7, SOURCE_KEY, &args)
    }

    /// The destination project, only under `/api/environments/`, its ids from 5000.
    pub fn destination(extra: &[&str]) -> Instance {
        let mut args = vec!["--forms", "environments", "--id-start", "5000"];
        args.extend(extra);
        Instance::start("destination", 12, DESTINATION_KEY, &args)
    }

    /// The answer to a request of `rel` (under the project), or its status.
    fn answer(&self, method: &str, rel: &str, body: Option<&Value>) -> Result<Value, u16> {
        let url = format!("{}/api/{}/{}/{rel}", self.url, self.form(), self.project);
        let request = ureq::request(method, &url).set("Authorization", &format!("Bearer {}", self.key));
        let answer = match body {
            Some(body) => request.set("Content-Type", "application/json").send_string(&body.to_string()),
            None => request.call(),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(ureq::Error::Status(code, _)) => return Err(code),
            Err(other) => panic!("{other}"),
        };
        let text = answer.into_string().unwrap();
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    /// Whichever form the instance answers under.
    pub fn form(&self) -> &'static str {
        let probe = format!("{}/api/projects/{}/actions/", self.url, self.project);
        match ureq::get(&probe).set("Authorization", &format!("Bearer {}", self.key)).call() {
            Ok(_) => "projects",
            Err(_) => "environments",
        }
    }

    pub fn get(&self, rel: &str) -> Value {
        self.answer("GET", rel, None).unwrap()
    }

    /// Every object of a list, following `next`.
    pub fn list(&self, rel: &str) -> Vec<Value> {
        self.pages(rel).into_iter().flat_map(|p| p["results"].as_array().unwrap().clone()).collect()
    }

    /// The pages of a list as the instance answers them, following `next`.
    pub fn pages(&self, rel: &str) -> Vec<Value> {
        let form = self.form();
        let mut out = Vec::new();
        let mut url = format!("{}/api/{form}/{}/{rel}", self.url, self.project);
        loop {
            let page: Value = ureq::get(&url)
                .set("Authorization", &format!("Bearer {}", self.key))
                .call()
                .unwrap()
                .into_string()
                .map(|t| serde_json::from_str(&t).unwrap())
                .unwrap();
            let next = page["next"].as_str().map(|n| format!("{}{}", self.url, &n[n.find("/api/").unwrap()..]));
            out.push(page);
            match next {
                Some(next) => url = next,
                None => return out,
            }
        }
    }

    pub fn post(&self, rel: &str, body: Value) -> Value {
        self.answer("POST", rel, Some(&body)).unwrap()
    }

    pub fn patch(&self, rel: &str, body: Value) -> Value {
        self.answer("PATCH", rel, Some(&body)).unwrap()
    }

    pub fn faults(&self, faults: Value) {
        ureq::post(&format!("{}/_test/faults", self.url)).send_string(&faults.to_string()).unwrap();
    }

    /// The requests answered so far with this method.
    pub fn requests(&self, method: &str) -> u64 {
        let counts = ureq::get(&format!("{}/_test/requests", self.url)).call().unwrap().into_string().unwrap();
        serde_json::from_str::<Value>(&counts).unwrap()[method].as_u64().unwrap_or(0)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `migrator3000 metadata` from `source` to `destination`, their keys in the environment
/// (waits shortened unless `more` sets `--retry-scale`).
pub fn metadata_command(state: &Path, source: &Instance, destination: &Instance, more: &[&str]) -> Command {
    let mut command = cli();
    command
        .args(["--state", state.to_str().unwrap(), "metadata"])
        .args(["--source-host", &source.url, "--source-project-id", &source.project.to_string()])
        .args(["--destination-host", &destination.url, "--destination-project-id", &destination.project.to_string()])
        .args(if more.contains(&"--retry-scale") { &[][..] } else { &["--retry-scale", "0.01"][..] })
        .args(more)
        .env("POSTHOG_PERSONAL_API_KEY", source.key)
        .env("POSTHOG_DESTINATION_PERSONAL_API_KEY", destination.key);
    command
}

/// `metadata_command` run to its end: its exit code and what it said.
pub fn metadata(state: &Path, source: &Instance, destination: &Instance, more: &[&str]) -> (i32, String) {
    let output = metadata_command(state, source, destination, more).output().unwrap();
    (output.status.code().unwrap_or(-1), text(&output))
}

/// A kind's row of the metadata table: its numbers after the name.
pub fn row(output: &str, kind: &str) -> Vec<u64> {
    let line = output
        .lines()
        .find(|l| l.split_whitespace().next() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} row in {output}"));
    line.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect()
}

/// Objects by the text of one of their fields.
pub fn by(objects: &[Value], field: &str) -> HashMap<String, Value> {
    objects.iter().map(|o| (o[field].as_str().unwrap().to_string(), o.clone())).collect()
}

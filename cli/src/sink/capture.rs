//! One request to the destination's capture, and what came back: nothing is decided
//! here (the core's dispatch does that). A redirect's answer is where it leads (its
//! `Location`); it is not followed.

use migrator3000::batch::Batch;

pub struct Reply {
    /// 0 when no answer came.
    pub status: u16,
    pub retry_after: Option<u64>,
    pub text: String,
    /// Why no answer came, as the app's shim names it (`EPIPE`, `ECONNRESET`, ...).
    pub error: Option<String>,
}

/// Of an answer's text, only the start is ever shown.
const ANSWER_TEXT_BYTES: u64 = 65536;

pub fn post(agent: &ureq::Agent, url: &str, batch: &Batch) -> Reply {
    let answer = agent.post(url).set("Content-Type", "application/json").send_bytes(batch.body.bytes());
    let read = |response: ureq::Response| -> (Option<u64>, String) {
        let retry_after = response
            .header("retry-after")
            .and_then(|h| migrator3000::delivery::retry_after_seconds(h, chrono::Utc::now()));
        if let Some(location) = response.header("location").filter(|_| (300..400).contains(&response.status())) {
            // A redirect is not followed: where it goes is what the answer says.
            return (retry_after, location.to_string());
        }
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(
            &mut std::io::Read::take(response.into_reader(), ANSWER_TEXT_BYTES),
            &mut text,
        );
        (retry_after, text)
    };
    match answer {
        Ok(response) => {
            let status = response.status();
            let (retry_after, text) = read(response);
            Reply { status, retry_after, text, error: None }
        }
        Err(ureq::Error::Status(status, response)) => {
            let (retry_after, text) = read(response);
            Reply { status, retry_after, text, error: None }
        }
        Err(ureq::Error::Transport(transport)) => {
            let message = transport.to_string();
            let lower = message.to_ascii_lowercase();
            let error = if lower.contains("broken pipe") {
                "EPIPE"
            } else if lower.contains("reset") {
                "ECONNRESET"
            } else if lower.contains("refused") {
                "ECONNREFUSED"
            } else if lower.contains("timed out") {
                "ETIMEDOUT"
            } else if lower.contains("dns") || lower.contains("resolve") {
                "ENOTFOUND"
            } else if lower.contains("tls") {
                // TLS spoken to a plain-http server fails here; the core tells it apart.
                "EPROTO"
            } else {
                "transport"
            };
            Reply { status: 0, retry_after: None, text: message, error: Some(error.into()) }
        }
    }
}

//! What an answer from capture means for the events of a request.

/// The status codes as capture uses them (see the capture API notes in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: the events are in (over-quota drops also answer 200; nothing tells them apart).
    Delivered,
    /// 401/403: wrong project API key or host; nothing will get through until fixed.
    Unauthorized,
    /// 400 and 413 and other 4xx: this request as it stands will never be accepted.
    Refused,
    /// 408, 429, 5xx, and no answer at all: the same request may succeed later.
    Retry,
}

pub fn classify(status: u16) -> Answer {
    match status {
        200..=299 => Answer::Delivered,
        401 | 403 => Answer::Unauthorized,
        408 | 429 => Answer::Retry,
        400..=499 => Answer::Refused,
        // 1xx/3xx are not answers capture gives: treat them like a failing server.
        _ => Answer::Retry,
    }
}

impl Answer {
    pub fn code(self) -> &'static str {
        match self {
            Answer::Delivered => "delivered",
            Answer::Unauthorized => "unauthorized",
            Answer::Refused => "refused",
            Answer::Retry => "retry",
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_meaning() {
        let cases = [
            (200, Answer::Delivered),
            (204, Answer::Delivered),
            (400, Answer::Refused),
            (413, Answer::Refused),
            (404, Answer::Refused),
            (401, Answer::Unauthorized),
            (403, Answer::Unauthorized),
            (408, Answer::Retry),
            (429, Answer::Retry),
            (500, Answer::Retry),
            (503, Answer::Retry),
            (302, Answer::Retry),
            (0, Answer::Retry),
        ];
        for (status, answer) in cases {
            assert_eq!(classify(status), answer, "{status}");
        }
    }
}

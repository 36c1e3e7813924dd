//! The one retry policy for reads: of a source (ClickHouse, the Query API, Amplitude's
//! Export API) and of the Query API in `verify`. A read that fails for a while is tried
//! again up to `READ_TRIES` times, waiting what the service asked (Retry-After) or a
//! doubling wait, every wait multiplied by `--retry-scale`.

use std::time::Duration;

use super::defaults::READ_TRIES;
use super::interrupt;
use super::reporter::note;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Bad credentials, unknown team/project, unreachable host: the user must act.
    #[error("{0}")]
    Fatal(String),
    /// May succeed later (429, 5xx, timeouts); `retry_after_seconds` if the service said.
    #[error("{message}")]
    Transient { message: String, retry_after_seconds: Option<u64> },
}

/// A read the policy gave up on.
#[derive(Debug, thiserror::Error)]
pub enum GaveUp {
    #[error("{0}")]
    Fatal(String),
    #[error("{message}; tried {tries} times. Run the same command again to resume.")]
    Tries { message: String, tries: u32 },
    /// Ctrl-C while waiting to ask again.
    #[error("{message}; stopped by Ctrl-C while waiting to ask again")]
    Interrupted { message: String },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Multiplies every wait (`--retry-scale`).
    pub scale: f64,
}

impl RetryPolicy {
    pub fn new(scale: f64) -> RetryPolicy {
        RetryPolicy { scale: scale.max(0.0) }
    }

    /// `seconds` as this policy waits them.
    pub fn wait(&self, seconds: f64) -> Duration {
        Duration::from_secs_f64((seconds * self.scale).max(0.0))
    }

    /// Reads (`read`) until it succeeds, fails for good, its tries run out, or Ctrl-C
    /// comes during a wait; says each wait.
    pub fn read<T>(&self, mut read: impl FnMut() -> Result<T, ReadError>) -> Result<T, GaveUp> {
        let mut tries = 0;
        loop {
            match read() {
                Ok(answer) => return Ok(answer),
                Err(ReadError::Fatal(message)) => return Err(GaveUp::Fatal(message)),
                Err(ReadError::Transient { message, retry_after_seconds }) => {
                    tries += 1;
                    if tries >= READ_TRIES {
                        return Err(GaveUp::Tries { message, tries });
                    }
                    let wait = retry_after_seconds.unwrap_or(1 << tries.min(6)).min(600) as f64 * self.scale;
                    note!("{message}: asking again in {wait:.0} s");
                    if interrupt::sleep(Duration::from_secs_f64(wait)) {
                        return Err(GaveUp::Interrupted { message });
                    }
                }
            }
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy::new(super::defaults::RETRY_SCALE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transient_failure_is_tried_again_and_a_fatal_one_is_not() {
        let policy = RetryPolicy::new(0.0);
        let mut tries = 0;
        let answer = policy.read(|| {
            tries += 1;
            if tries < 3 {
                Err(ReadError::Transient { message: "503".into(), retry_after_seconds: Some(30) })
            } else {
                Ok(tries)
            }
        });
        assert_eq!(answer.unwrap(), 3);
        let mut tries = 0;
        let gave_up = policy.read(|| -> Result<(), _> {
            tries += 1;
            Err(ReadError::Transient { message: "HTTP 503".into(), retry_after_seconds: None })
        });
        assert_eq!(tries, READ_TRIES);
        assert_eq!(gave_up.unwrap_err().to_string(), "HTTP 503; tried 8 times. Run the same command again to resume.");
        let fatal = policy.read(|| -> Result<(), _> { Err(ReadError::Fatal("no".into())) });
        assert!(matches!(fatal, Err(GaveUp::Fatal(m)) if m == "no"));
    }
}

//! Ctrl-C (SIGINT) during a migration: the first one asks the run to stop (no new page is
//! read, the requests in flight get a moment to be answered, what is settled is
//! recorded, and the command ends as `commands::exit` says); a second one stops the
//! command at once, as SIGINT's default does (the state file is then as after a kill:
//! the same command resumes).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

static ASKED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// From now on, Ctrl-C asks the command to stop instead of killing it.
pub fn watch() {
    ASKED.get_or_init(|| {
        let asked = Arc::new(AtomicBool::new(false));
        use signal_hook::consts::SIGINT;
        // Registered first, so it runs before the flag is set: only a second Ctrl-C ends
        // the process at once.
        let _ = signal_hook::flag::register_conditional_default(SIGINT, asked.clone());
        let _ = signal_hook::flag::register(SIGINT, asked.clone());
        asked
    });
}

/// Whether Ctrl-C was pressed since `watch`.
pub fn asked() -> bool {
    ASKED.get().is_some_and(|asked| asked.load(Ordering::SeqCst))
}

/// Sleeps `wait`, or less when Ctrl-C is pressed meanwhile; whether it was.
pub fn sleep(wait: Duration) -> bool {
    let until = Instant::now() + wait;
    loop {
        if asked() {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

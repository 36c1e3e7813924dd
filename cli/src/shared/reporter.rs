//! The one place that prints. Lines for the person watching (progress, waits, notes)
//! go to stderr, through the progress bar while one is shown so that it is not torn;
//! results (summaries, tables, the last line) go to stdout. Every layer writes through
//! `note!` and `say!`; nothing else in the command prints.

use std::sync::Mutex;

use indicatif::ProgressBar;

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// While `bar` shows, notes are printed above it.
pub fn attach(bar: &ProgressBar) {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
}

pub fn detach() {
    *BAR.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// A line for the person watching (stderr).
pub fn note_line(line: &str) {
    match BAR.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(bar) => bar.println(line),
        None => eprintln!("{line}"),
    }
}

/// A line of the result (stdout).
pub fn say_line(line: &str) {
    println!("{line}");
}

/// `note!("...", args)`: a line for the person watching.
macro_rules! note {
    ($($t:tt)*) => { $crate::shared::reporter::note_line(&format!($($t)*)) };
}

/// `say!("...", args)`: a line of the result.
macro_rules! say {
    () => { $crate::shared::reporter::say_line("") };
    ($($t:tt)*) => { $crate::shared::reporter::say_line(&format!($($t)*)) };
}

pub(crate) use {note, say};

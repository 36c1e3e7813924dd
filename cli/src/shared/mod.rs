//! The bottom layer of the command: what every layer above shares. The retry policy,
//! the defaults, the watch for Ctrl-C, the one place that prints, and numbers as the
//! output writes them.

pub mod defaults;
pub mod interrupt;
pub mod reporter;
pub mod retry;
pub mod words;

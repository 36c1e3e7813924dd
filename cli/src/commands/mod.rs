//! The commands layer: one module per subcommand, each setting up its run from plain
//! options (no flag parsing), saying what to print and how it ends (`exit`); and what
//! they share: the destination's flags (`destination`) and what a migration's end says
//! (`summary`).

pub mod amplitude;
pub mod demo;
pub mod destination;
pub mod exit;
pub mod files;
pub mod metadata;
pub mod mixpanel;
pub mod posthog;
pub mod resend_parked;
pub mod status;
pub mod summary;
pub mod verify;

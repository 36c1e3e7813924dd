//! `migrator3000`: migrates a PostHog's events to another PostHog by reading them
//! itself, from its ClickHouse or its Query API (or an Amplitude export, or files of
//! events), with the same transform, uuids, batches and answer decisions as the app,
//! and its state in one SQLite file so that a killed run resumes where it was.
//!
//! Layers, each importing only those below it (README, "Development"; `tests/layers.rs`
//! keeps it so): `args` (flags) and this file; `commands`; `pipeline`; `sources`; `sink`,
//! `store`, `posthog_api`; `shared`; the core crate under all of them.

mod args;
mod commands;
mod pipeline;
mod posthog_api;
mod shared;
mod sink;
mod sources;
mod store;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::commands::exit::{exit_code, Outcome};
use crate::commands::{amplitude, demo, files, metadata, mixpanel, posthog, resend_parked, status, verify};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome: Outcome = match &cli.command {
        Command::Posthog(args) => posthog::run(&cli.state, &args.as_ref().into()),
        Command::Amplitude(args) => amplitude::run(&cli.state, &args.as_ref().into()),
        Command::Mixpanel(args) => mixpanel::run(&cli.state, &args.as_ref().into()),
        Command::Files(args) => files::run(&cli.state, &args.as_ref().into()),
        Command::Status => status::run(&cli.state),
        Command::Verify(args) => verify::run(&cli.state, &args.as_ref().into()),
        Command::Metadata(args) => metadata::run(&cli.state, &args.as_ref().into()),
        Command::Demo { events, keep } => demo::run(*events, *keep),
        Command::ResendParked { retry_scale } => resend_parked::run(&cli.state, *retry_scale),
    };
    let code = exit_code(&outcome);
    if let Err(error) = outcome {
        // The one line that says why the command stopped.
        eprintln!("migrator3000: {error}");
    }
    ExitCode::from(code)
}

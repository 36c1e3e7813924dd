//! The pipeline layer: a migration's plan of ranges (`plan`, `migration`), the page loop
//! of a run (`page_loop`: pages read, turned into batches by `batches`, sent on a few
//! threads, the cursor moved when a page is settled), its `progress`, the `shortfall`
//! of a run that read fewer events than its source counted, a `dry_run`, the `persons`
//! step after the events, the comparison of `verification`, and `metadata`: a project's
//! actions, cohorts and flags copied with their references rewritten.

pub mod batches;
pub mod dry_run;
pub mod error;
pub mod metadata;
pub mod migration;
pub mod page_loop;
pub mod persons;
pub mod plan;
pub mod progress;
pub mod run_options;
pub mod shortfall;
pub mod verification;

//! The store layer: the state of every migration in one SQLite file, so that a run
//! killed at any moment resumes where it was. `schema` alone creates and upgrades its
//! tables and says whose a file is; `state_file` checks and opens it, `lock` holds it for
//! one run at a time; each feature's tables have a module of their own (`runs`,
//! `requests`, `rejected`, `amplitude`, `mixpanel`, `files`, `verify`, `persons`,
//! `metadata`), and
//! `settle` writes what a page settled across them in one transaction.

pub mod amplitude;
pub mod error;
pub mod files;
pub mod lock;
pub mod metadata;
pub mod mixpanel;
pub mod persons;
pub mod rejected;
pub mod requests;
pub mod runs;
pub mod schema;
pub mod settle;
pub mod state_file;
pub mod verify;

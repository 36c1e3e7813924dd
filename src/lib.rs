//! Core of Migrator 3000: everything the app decides about settings and events.
//!
//! The core knows nothing of JavaScript; `boundary` (built for wasm32 only) converts
//! host values into these types once and turns errors into JS `Error`s once.

pub mod batch;
pub mod delivery;
pub mod dispatch;
pub mod elements;
pub mod event_id;
pub mod export;
pub mod export_plan;
pub mod gzip;
pub mod handover;
pub mod host;
pub mod inflight;
pub mod migrator;
pub mod pace;
pub mod page;
pub mod parcels;
pub mod raw;
pub mod scan;
pub mod settings;
pub mod timestamp;
pub mod transform;
pub mod version;

#[cfg(target_arch = "wasm32")]
pub mod boundary;

//! The sink layer: PostHog's capture as the destination. `capture` sends one request
//! and reads its answer; `delivery` follows a batch through the core's dispatch
//! (retries, splitting, parking as the core decides) on a shared pace.

pub mod capture;
pub mod delivery;

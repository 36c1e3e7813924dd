//! The PostHog API layer: one client for a PostHog's Query API (auth, the hourly HogQL
//! budget, 202 polling, 429 Retry-After, 504/512 told apart), used by the Query API
//! source and by `verify`; PostHog's REST API goes here too when a feature needs it.

pub mod client;

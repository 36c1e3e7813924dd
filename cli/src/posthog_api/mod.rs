//! The PostHog API layer: one client for a PostHog (`client`): its Query API (auth, the
//! hourly HogQL budget, 202 polling, 429 Retry-After, 504/512 told apart), used by the
//! Query API source and by `verify`; and its REST API (`rest`: a project's objects listed,
//! created and updated, both URL forms, PostHog's error bodies), used by `metadata`.

pub mod client;
pub mod rest;

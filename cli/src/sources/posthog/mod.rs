//! A PostHog as a source: its ClickHouse (fastest), or its Query API.

pub mod clickhouse;
pub mod persons;
pub mod query_api;

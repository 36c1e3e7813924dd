//! The comparison behind `verify`: the two `side`s (a PostHog's ClickHouse or Query API,
//! or what an import recorded), their days counted and their uuids walked (`compare`),
//! the Query API in verify's terms (`hogql`), and the missing events read again and sent
//! (`resend`).

pub mod compare;
pub mod hogql;
pub mod persons;
pub mod resend;
pub mod side;

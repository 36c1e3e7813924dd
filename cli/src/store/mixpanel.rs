//! What a Mixpanel import keeps in the state file, for each destination (its host and
//! project key) apart: the devices linked to a user (`mixpanel_links`) and the files
//! wholly imported, by the fingerprint of their content (`mixpanel_files`). A page
//! carries what it adds (its `Ledger`), written with the page's cursor.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, Connection};

use super::error::StoreResult;
use super::state_file::StateFile;
use super::verify;

/// What a page adds to its destination's record.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ledger {
    /// The destination (empty when the page is not a Mixpanel import's).
    pub destination: String,
    /// (user, device) pairs linked by the page's `$create_alias` events.
    pub links: Vec<(String, String)>,
    /// Files whose last line the page holds: (fingerprint, name, lines).
    pub files: Vec<(String, String, u64)>,
}

impl Ledger {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.files.is_empty()
    }
}

/// What the state file holds for one destination.
#[derive(Debug, Default, Clone)]
pub struct Known {
    /// Devices already linked to a user.
    pub devices: HashSet<String>,
    /// Fingerprint -> the name the file had when wholly imported.
    pub files: HashMap<String, String>,
}

pub(super) fn write_ledger(tx: &Connection, ledger: &Ledger) -> rusqlite::Result<()> {
    let to = &ledger.destination;
    for (user, device) in &ledger.links {
        tx.execute(
            "INSERT OR IGNORE INTO mixpanel_links (destination, device_id, user_id) VALUES (?1, ?2, ?3)",
            params![to, device, user],
        )?;
    }
    for (fingerprint, name, lines) in &ledger.files {
        tx.execute(
            "INSERT OR REPLACE INTO mixpanel_files (destination, fingerprint, name, lines) VALUES (?1, ?2, ?3, ?4)",
            params![to, fingerprint, name, *lines as i64],
        )?;
    }
    Ok(())
}

impl StateFile {
    /// What a Mixpanel import gave `destination` so far, by any run.
    pub fn mixpanel_known(&self, destination: &str) -> StoreResult<Known> {
        let mut known = Known::default();
        let mut statement = self.db.prepare("SELECT device_id FROM mixpanel_links WHERE destination = ?1")?;
        for device in statement.query_map(params![destination], |r| r.get::<_, String>(0))? {
            known.devices.insert(device?);
        }
        let mut statement = self.db.prepare("SELECT fingerprint, name FROM mixpanel_files WHERE destination = ?1")?;
        let rows = statement.query_map(params![destination], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
        for row in rows {
            let (fingerprint, name) = row?;
            known.files.insert(fingerprint, name);
        }
        Ok(known)
    }

    /// The uuids the runs whose source is like one of `sources` (SQL LIKE, as `verify`
    /// chooses an import's runs) handed to the destination `url` and project `api_key`
    /// (recorded per day for verify): the events a new run must not send again when the
    /// export repeats them.
    pub fn handed_over(&self, sources: &[&str], url: &str, api_key: &str) -> StoreResult<HashSet<u128>> {
        let mut statement = self.db.prepare(&format!(
            "SELECT vi.uuid FROM verify_imported vi JOIN verify_imports i ON i.id = vi.import \
             JOIN runs r ON r.id = i.run WHERE r.destination = ?1 AND r.api_key = ?2 AND {}",
            verify::of_sources("i.run", sources, 3)
        ))?;
        let mut out = HashSet::new();
        let values = verify::bound(&[&url, &api_key], sources);
        for uuid in statement.query_map(values.as_slice(), |r| r.get::<_, String>(0))? {
            if let Ok(parsed) = uuid::Uuid::try_parse(&uuid?) {
                out.insert(parsed.as_u128());
            }
        }
        Ok(out)
    }
}

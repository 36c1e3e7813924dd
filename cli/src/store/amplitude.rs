//! What an Amplitude import keeps in the state file, for each destination (its host and
//! project key) apart: the devices linked to a user (`amplitude_links`), the group
//! properties last sent (`amplitude_groups`), and the export files wholly imported
//! (`amplitude_files`). A page of events carries what it adds (its `Ledger`), and the
//! state file writes it with the page's cursor, so a kill loses none of it.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, Connection};

use super::error::StoreResult;
use super::state_file::StateFile;

/// What a page adds to its destination's record.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ledger {
    /// The destination (empty when the page is not an Amplitude import's).
    pub destination: String,
    /// (user, device) pairs linked by the page's `$create_alias` events.
    pub links: Vec<(String, String)>,
    /// (group type, group key, digest of the properties its `$groupidentify` set).
    pub groups: Vec<(String, String, String)>,
    /// Files whose last line the page holds.
    pub files: Vec<Imported>,
}

/// An export file wholly handed over: its name, what identifies its content, its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub name: String,
    pub content: String,
    pub lines: u64,
}

impl Ledger {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.groups.is_empty() && self.files.is_empty()
    }
}

/// What the state file holds for one destination.
#[derive(Debug, Default, Clone)]
pub struct Known {
    /// Devices already linked to a user.
    pub devices: HashSet<String>,
    /// (group type, group key) -> digest of the properties last sent.
    pub groups: HashMap<(String, String), String>,
    /// File name -> the content it had when wholly imported.
    pub files: HashMap<String, String>,
}

/// Writes what an Amplitude page gave its destination.
pub(super) fn write_ledger(tx: &Connection, ledger: &Ledger) -> rusqlite::Result<()> {
    let to = &ledger.destination;
    for (user, device) in &ledger.links {
        tx.execute(
            "INSERT OR IGNORE INTO amplitude_links (destination, device_id, user_id) VALUES (?1, ?2, ?3)",
            params![to, device, user],
        )?;
    }
    for (kind, key, digest) in &ledger.groups {
        tx.execute(
            "INSERT OR REPLACE INTO amplitude_groups (destination, group_type, group_key, digest) VALUES (?1, ?2, ?3, ?4)",
            params![to, kind, key, digest],
        )?;
    }
    for file in &ledger.files {
        tx.execute(
            "INSERT OR REPLACE INTO amplitude_files (destination, name, content, lines) VALUES (?1, ?2, ?3, ?4)",
            params![to, file.name, file.content, file.lines as i64],
        )?;
    }
    Ok(())
}

impl StateFile {
    /// What an Amplitude import gave `destination` so far, by any run.
    pub fn amplitude_known(&self, destination: &str) -> StoreResult<Known> {
        let mut known = Known::default();
        let query = |sql: &str, each: &mut dyn FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>| {
            let mut statement = self.db.prepare(sql)?;
            let mut rows = statement.query(params![destination])?;
            while let Some(row) = rows.next()? {
                each(row)?;
            }
            Ok::<_, rusqlite::Error>(())
        };
        query("SELECT device_id FROM amplitude_links WHERE destination = ?1", &mut |r| {
            known.devices.insert(r.get(0)?);
            Ok(())
        })?;
        query("SELECT group_type, group_key, digest FROM amplitude_groups WHERE destination = ?1", &mut |r| {
            known.groups.insert((r.get(0)?, r.get(1)?), r.get(2)?);
            Ok(())
        })?;
        query("SELECT name, content FROM amplitude_files WHERE destination = ?1", &mut |r| {
            known.files.insert(r.get(0)?, r.get(1)?);
            Ok(())
        })?;
        Ok(known)
    }
}

//! What an Amplitude import keeps in the state file, for each destination (its host and
//! project key) apart: the devices linked to a user, the group properties last sent,
//! and the export files wholly imported. A page of events carries what it adds, and the
//! state file writes it with the page's cursor, so a kill loses none of it.

use std::collections::{HashMap, HashSet};

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

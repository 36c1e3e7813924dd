//! The `persons_sent` table: for each migration, which persons of the source were
//! handed to the destination, at which version and with which content (its digest), so
//! that a rerun sends only the persons changed since, and a run killed in its persons
//! step resumes without sending again what was delivered.

use std::collections::HashMap;

use rusqlite::params;

use super::error::StoreResult;
use super::state_file::StateFile;

/// A person as it was sent: its source uuid, version and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentPerson {
    pub id: String,
    pub version: u64,
    pub digest: String,
}

impl StateFile {
    /// The digests of the persons of `ids` this migration sent.
    pub fn persons_sent(&self, migration: &str, ids: &[&str]) -> StoreResult<HashMap<String, String>> {
        let mut statement =
            self.db.prepare_cached("SELECT digest FROM persons_sent WHERE migration = ?1 AND person_id = ?2")?;
        let mut found = HashMap::new();
        for id in ids {
            let digest: Option<String> =
                statement.query_row(params![migration, id], |r| r.get(0)).map(Some).or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            if let Some(digest) = digest {
                found.insert(id.to_string(), digest);
            }
        }
        Ok(found)
    }

    /// Records persons the destination took, in one transaction.
    pub fn record_persons_sent(&mut self, migration: &str, persons: &[SentPerson]) -> StoreResult<()> {
        let tx = self.db.transaction()?;
        {
            let mut statement = tx.prepare_cached(
                "INSERT INTO persons_sent (migration, person_id, version, digest) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (migration, person_id) DO UPDATE SET version = excluded.version, digest = excluded.digest",
            )?;
            for p in persons {
                statement.execute(params![migration, p.id, p.version as i64, p.digest])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

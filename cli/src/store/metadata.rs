//! `metadata`'s tables: each copy of a project's metadata (one source project to one
//! destination project), and per object of the source its copy at the destination.
//! An object's row is written before its create is sent (`Creating`, no id yet), so that
//! a run killed between the two finds its copy by natural key instead of making another.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use super::error::StoreResult;
use super::state_file::StateFile;

/// How an object came to have its copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// A create was sent; its answer not recorded yet.
    Creating,
    /// Created by us.
    Created,
    /// Found at the destination under the same natural key.
    Matched,
}

impl How {
    fn name(self) -> &'static str {
        match self {
            How::Creating => "creating",
            How::Created => "created",
            How::Matched => "matched",
        }
    }

    fn from_name(name: &str) -> How {
        match name {
            "created" => How::Created,
            "matched" => How::Matched,
            _ => How::Creating,
        }
    }
}

/// An object's copy as recorded.
#[derive(Debug, Clone)]
pub struct Copy {
    pub destination_id: Option<String>,
    pub how: How,
    /// The fields sent (references rewritten), JSON.
    pub sent: String,
    /// The same fields as the destination answered them, JSON.
    pub answered: Option<String>,
}

impl StateFile {
    /// The id of the copy from one source project to one destination project, made on
    /// first use.
    pub fn metadata_migration(
        &self,
        source_host: &str,
        source_project: u64,
        destination_host: &str,
        destination_project: u64,
    ) -> StoreResult<i64> {
        let key = params![source_host, source_project as i64, destination_host, destination_project as i64];
        self.db.execute(
            "INSERT OR IGNORE INTO metadata_migrations \
             (source_host, source_project, destination_host, destination_project) VALUES (?1, ?2, ?3, ?4)",
            key,
        )?;
        Ok(self.db.query_row(
            "SELECT id FROM metadata_migrations WHERE source_host = ?1 AND source_project = ?2 \
             AND destination_host = ?3 AND destination_project = ?4",
            key,
            |r| r.get(0),
        )?)
    }

    /// Every object of a kind recorded for a migration, by source id.
    pub fn metadata_copies(&self, migration: i64, kind: &str) -> StoreResult<HashMap<String, Copy>> {
        let mut statement = self.db.prepare(
            "SELECT source_id, destination_id, how, sent, answered FROM metadata_objects \
             WHERE migration = ?1 AND kind = ?2",
        )?;
        let rows = statement.query_map(params![migration, kind], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Copy {
                    destination_id: r.get(1)?,
                    how: How::from_name(&r.get::<_, String>(2)?),
                    sent: r.get(3)?,
                    answered: r.get(4)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records an object's copy (or the create about to be sent).
    pub fn metadata_record(&self, migration: i64, kind: &str, source_id: &str, copy: &Copy) -> StoreResult<()> {
        self.db.execute(
            "INSERT OR REPLACE INTO metadata_objects (migration, kind, source_id, destination_id, how, sent, answered) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![migration, kind, source_id, copy.destination_id, copy.how.name(), copy.sent, copy.answered],
        )?;
        Ok(())
    }

    /// Forgets a create that never reached the destination (found nowhere on a rerun).
    pub fn metadata_forget(&self, migration: i64, kind: &str, source_id: &str) -> StoreResult<()> {
        self.db.execute(
            "DELETE FROM metadata_objects WHERE migration = ?1 AND kind = ?2 AND source_id = ?3",
            params![migration, kind, source_id],
        )?;
        Ok(())
    }

    /// The migration's id, if one was recorded (a dry run records nothing).
    pub fn metadata_migration_known(
        &self,
        source_host: &str,
        source_project: u64,
        destination_host: &str,
        destination_project: u64,
    ) -> StoreResult<Option<i64>> {
        Ok(self
            .db
            .query_row(
                "SELECT id FROM metadata_migrations WHERE source_host = ?1 AND source_project = ?2 \
                 AND destination_host = ?3 AND destination_project = ?4",
                params![source_host, source_project as i64, destination_host, destination_project as i64],
                |r| r.get(0),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_kept_per_migration_and_replaced_when_it_changes() {
        let path = std::env::temp_dir().join(format!("m3k-metadata-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let state = StateFile::open(&path, crate::store::state_file::Use::Run).unwrap();
        let one = state.metadata_migration("https://a", 1, "https://b", 2).unwrap();
        assert_eq!(state.metadata_migration("https://a", 1, "https://b", 2).unwrap(), one);
        let other = state.metadata_migration("https://a", 1, "https://b", 3).unwrap();
        assert_ne!(one, other);
        let creating = Copy { destination_id: None, how: How::Creating, sent: "{}".into(), answered: None };
        state.metadata_record(one, "actions", "7", &creating).unwrap();
        let created = Copy { destination_id: Some("70".into()), how: How::Created, ..creating };
        state.metadata_record(one, "actions", "7", &created).unwrap();
        let copies = state.metadata_copies(one, "actions").unwrap();
        assert_eq!((copies["7"].destination_id.as_deref(), copies["7"].how), (Some("70"), How::Created));
        assert!(state.metadata_copies(other, "actions").unwrap().is_empty());
        state.metadata_forget(one, "actions", "7").unwrap();
        assert!(state.metadata_copies(one, "actions").unwrap().is_empty());
        let _ = std::fs::remove_file(&path);
    }
}

//! What one page (or one resend) settled, written at once with the cursor it reaches:
//! one transaction across the features' tables, so a kill loses none of it.

use super::amplitude::{self, Ledger};
use super::error::StoreResult;
use super::files::{self, FileRead};
use super::mixpanel;
use super::rejected::{self, Refused};
use super::requests::{self, Kept, ToKeep};
use super::runs::{self, Cursor};
use super::state_file::StateFile;
use super::verify;

#[derive(Debug, Default)]
pub struct Settled {
    pub read: u64,
    pub delivered: u64,
    pub rejected: Vec<Refused>,
    pub keep: Vec<ToKeep>,
    /// What an Amplitude page gave its destination.
    pub ledger: Ledger,
    /// What a Mixpanel page gave its destination.
    pub mixpanel: mixpanel::Ledger,
    /// The files an import of files handed over whole with this page.
    pub files: Vec<FileRead>,
    /// (UTC day, uuid) of each event an import handed over, for `verify`.
    pub converted: Vec<(String, String)>,
    pub live: u64,
    pub duplicates: u64,
}

impl StateFile {
    /// Writes what was settled and moves the cursor, in one transaction.
    pub fn settle(&mut self, run: &str, settled: &Settled, cursor: Option<&Cursor>) -> StoreResult<()> {
        let tx = self.db.transaction()?;
        for keep in &settled.keep {
            requests::insert(&tx, run, keep)?;
        }
        amplitude::write_ledger(&tx, &settled.ledger)?;
        mixpanel::write_ledger(&tx, &settled.mixpanel)?;
        files::write(&tx, &settled.files)?;
        for refused in &settled.rejected {
            rejected::insert(&tx, run, refused)?;
        }
        let s = settled;
        runs::add_counts(&tx, run, s.read, s.delivered, s.rejected.len() as u64, s.live, s.duplicates)?;
        verify::record_imported(&tx, run, &settled.converted)?;
        if let Some(cursor) = cursor {
            runs::move_cursor(&tx, run, cursor)?;
        }
        Ok(tx.commit()?)
    }

    /// A kept request was sent again: it goes, and what became of it is written.
    pub fn resent(&mut self, kept: &Kept, settled: &Settled) -> StoreResult<()> {
        requests::delete(&self.db, kept.id)?;
        self.settle(&kept.run, settled, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::amplitude::Imported;
    use crate::store::runs::Run;
    use crate::store::state_file::Use;
    use migrator3000::batch::{Batch, Body};

    fn run() -> Run {
        Run {
            id: "r".into(),
            migration: "m".into(),
            source: "s".into(),
            destination: "http://d".into(),
            api_key: "phc".into(),
            gzip: true,
            from: "2021-01-01".into(),
            to: "2021-02-01".into(),
            cursor: None,
            total: Some(10),
            read: 0,
            delivered: 0,
            rejected: 0,
            live: 0,
            duplicates: 0,
            done: false,
        }
    }

    #[test]
    fn a_settled_page_moves_the_cursor_with_what_it_kept_and_rejected() {
        let dir = std::env::temp_dir().join(format!("m3k-state-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let mut state = StateFile::open(&dir, Use::Run).unwrap();
        state.start(&run()).unwrap();
        state.start(&run()).unwrap();
        let batch = Batch { body: Body::Gzip(vec![1, 2, 3]), json_bytes: 9, uuids: vec!["a".into(), "b".into()] };
        let settled = Settled {
            read: 5,
            delivered: 2,
            rejected: vec![(Some("u".into()), Some("e".into()), "why".into())],
            keep: vec![(batch.clone(), 2, "waiting".into(), 1000, "HTTP 503".into())],
            ledger: Ledger {
                destination: "http://d phc".into(),
                links: vec![("user".into(), "device".into())],
                groups: vec![("org".into(), "o1".into(), "digest".into())],
                files: vec![Imported { name: "f.json.gz".into(), content: "crc32 1".into(), lines: 3 }],
            },
            mixpanel: Default::default(),
            files: vec![FileRead {
                destination: "http://d phc".into(),
                fingerprint: "ab12".into(),
                name: "a.jsonl".into(),
                lines: 4,
            }],
            converted: vec![],
            live: 1,
            duplicates: 3,
        };
        let cursor = Cursor { timestamp: "2021-01-02 00:00:00.000001".into(), key: "k".into() };
        state.settle("r", &settled, Some(&cursor)).unwrap();
        drop(state);
        let reopened = StateFile::open(&dir, Use::Run).unwrap();
        let saved = reopened.run("r").unwrap().unwrap();
        assert_eq!((saved.read, saved.delivered, saved.rejected, saved.live, saved.duplicates), (5, 2, 1, 1, 3));
        assert_eq!(reopened.runs_of("m").unwrap(), std::slice::from_ref(&saved));
        assert_eq!(saved.cursor, Some(cursor));
        let kept = reopened.kept(Some("r"), "waiting").unwrap();
        assert_eq!((kept[0].batch.clone(), kept[0].attempt), (batch, 2));
        assert_eq!(reopened.count_events("r", "waiting").unwrap(), 2);
        assert_eq!(reopened.rejected_sample("r", 10).unwrap(), [("u".into(), "e".into(), "why".into())]);
        let known = reopened.amplitude_known("http://d phc").unwrap();
        assert!(known.devices.contains("device"));
        assert_eq!(known.groups[&("org".to_string(), "o1".to_string())], "digest");
        assert_eq!(known.files["f.json.gz"], "crc32 1");
        assert!(reopened.amplitude_known("http://other phc").unwrap().devices.is_empty(), "kept per destination");
        assert!(reopened.files_read("http://d phc").unwrap().contains("ab12"));
        assert!(reopened.files_read("http://other phc").unwrap().is_empty(), "kept per destination");
        let _ = std::fs::remove_file(&dir);
    }
}

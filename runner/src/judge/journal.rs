//! The submission journal (docs/judge.md, "Durability"): every accepted submission is written to
//! `<data_dir>/judge/journal.redb` before it is acknowledged, and its result and events when it
//! finishes. After a restart (SIGTERM or SIGKILL) the unfinished ones are judged again, and the
//! finished ones stay readable until `result_ttl_secs` after they finished, then are purged.
//!
//! The store is redb: an embedded, crash-safe (copy-on-write B-trees, fsync at each commit),
//! pure-Rust key-value database, so no C library is built or linked; one table, submission id →
//! JSON record.
//!
//! Owns: the file, the record format, and the blocking calls on it (callers on tokio use
//! `spawn_blocking`). Must not: keep program output beyond what the result holds (the result's
//! messages are already cut to 64-byte excerpts), or log sources.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::submission::{Event, SubmissionRequest, SubmissionResult};

/// The journal's directory under the data directory, and its file.
pub const JOURNAL_DIR: &str = "judge";
const JOURNAL_FILE: &str = "journal.redb";

const SUBMISSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("submissions");

/// The journal failed: the daemon's fault (503 or 500 for the client; the chain is logged).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create the journal directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the submission journal failed")]
    Db(#[from] redb::Error),
    #[error("a journal record is not valid")]
    Record(#[from] serde_json::Error),
    #[error("a journal task failed: {0}")]
    Task(String),
}

fn db_err(e: impl Into<redb::Error>) -> JournalError {
    JournalError::Db(e.into())
}

/// One submission as journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// `SubmissionRequest::to_json`.
    pub request: Value,
    /// How many times judging started (1 for the first run; +1 per restart that judged it again,
    /// and per redelivery in queue mode). Part of every event id.
    pub attempt: u32,
    pub accepted_unix: u64,
    pub finished_unix: Option<u64>,
    pub result: Option<SubmissionResult>,
    /// The finished submission's events in order, as (name, data); the `done` event last.
    pub events: Vec<(String, String)>,
}

impl Record {
    /// The request, read back (`None`: a record written by an incompatible version).
    pub fn request(&self) -> Option<SubmissionRequest> {
        match &self.request {
            Value::Object(obj) => SubmissionRequest::from_object(obj).ok(),
            _ => None,
        }
    }

    /// The events, read back.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .iter()
            .filter_map(|(name, data)| Event::parse(name, data))
            .collect()
    }

    /// Whether a finished record is past `ttl` at `now` (unix seconds).
    pub fn expired(&self, ttl: Duration, now: u64) -> bool {
        self.finished_unix
            .is_some_and(|f| f.saturating_add(ttl.as_secs()) <= now)
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The journal. Blocking; `&self` from any thread.
#[derive(Debug)]
pub struct Journal {
    db: Database,
}

impl Journal {
    /// Opens (or creates) `<data_dir>/judge/journal.redb`. redb recovers from a crash on open.
    pub fn open(data_dir: &Path) -> Result<Journal, JournalError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = data_dir.join(JOURNAL_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| JournalError::Dir {
                path: dir.clone(),
                source,
            })?;
        let db = Database::create(dir.join(JOURNAL_FILE)).map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(SUBMISSIONS).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(Journal { db })
    }

    /// Writes (or replaces) the record of `id`; durable when this returns.
    pub fn put(&self, id: &str, record: &Record) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(record)?;
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = txn.open_table(SUBMISSIONS).map_err(db_err)?;
            t.insert(id, bytes.as_slice()).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    pub fn get(&self, id: &str) -> Result<Option<Record>, JournalError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(SUBMISSIONS).map_err(db_err)?;
        match t.get(id).map_err(db_err)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    /// Every unfinished submission: `(id, record)`, oldest accepted first.
    pub fn unfinished(&self) -> Result<Vec<(String, Record)>, JournalError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(SUBMISSIONS).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            match serde_json::from_slice::<Record>(v.value()) {
                Ok(r) if r.finished_unix.is_none() => out.push((k.value().to_owned(), r)),
                Ok(_) => {}
                Err(e) => tracing::warn!(id = k.value(), error = %e, "unreadable journal record"),
            }
        }
        out.sort_by_key(|(_, r)| r.accepted_unix);
        Ok(out)
    }

    /// Removes the finished submissions older than `ttl` at `now` (and unreadable records).
    /// Returns how many went.
    pub fn purge(&self, ttl: Duration, now: u64) -> Result<usize, JournalError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let mut removed = 0;
        {
            let mut t = txn.open_table(SUBMISSIONS).map_err(db_err)?;
            t.retain(|_, v| {
                let keep = serde_json::from_slice::<Record>(v).is_ok_and(|r| !r.expired(ttl, now));
                removed += usize::from(!keep);
                keep
            })
            .map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Records survive reopening; purge by age.
    use super::*;

    fn record(finished: Option<u64>) -> Record {
        Record {
            request: serde_json::json!({"problem": "p", "version": "v", "language_id": "c",
                                        "sourcecode": "x"}),
            attempt: 1,
            accepted_unix: 100,
            finished_unix: finished,
            result: None,
            events: vec![("status".into(), "{\"status\":\"queued\"}".into())],
        }
    }

    #[test]
    fn test_put_get_reopen_unfinished_purge() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(tmp.path()).unwrap();
            j.put("a", &record(None)).unwrap();
            j.put("b", &record(Some(1000))).unwrap();
            j.put("c", &record(Some(5000))).unwrap();
        }
        let j = Journal::open(tmp.path()).unwrap();
        let a = j.get("a").unwrap().unwrap();
        assert_eq!(a.request().unwrap().testset.problem(), "p");
        assert_eq!(a.events().len(), 1);
        assert!(j.get("zz").unwrap().is_none());
        let un: Vec<String> = j
            .unfinished()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(un, ["a"]);
        // b finished at 1000: with a 60 s ttl it is gone at 1060, c stays.
        assert_eq!(j.purge(Duration::from_secs(60), 1060).unwrap(), 1);
        assert!(j.get("b").unwrap().is_none());
        assert!(j.get("c").unwrap().is_some() && j.get("a").unwrap().is_some());
        assert!(record(Some(1000)).expired(Duration::from_secs(60), 1060));
        assert!(!record(Some(1000)).expired(Duration::from_secs(60), 1059));
        assert!(!record(None).expired(Duration::ZERO, u64::MAX));
    }
}

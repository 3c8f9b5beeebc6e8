//! What the backup manager records of a job while it runs: which attempt, under
//! which epoch, how far it has come, and how it ended.

use serde::{Deserialize, Serialize};

use super::time::Millis;

/// A backup or a restore, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JobRef {
    Backup(u64),
    Restore(u64),
}

impl JobRef {
    pub fn what(self) -> &'static str {
        match self {
            JobRef::Backup(_) => "backup",
            JobRef::Restore(_) => "restore",
        }
    }

    pub fn id(self) -> u64 {
        match self {
            JobRef::Backup(id) | JobRef::Restore(id) => id,
        }
    }
}

/// The run of a job now under way (or the last one): attempt `number` (1 for
/// the first, one more each time a backup manager starts it again), started by
/// the backup manager of `epoch`. Reports of another attempt or epoch are
/// refused, so a run the job has moved on from cannot change it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub epoch: u64,
    pub started_at: Option<Millis>,
}

/// How far a running job has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub files_done: u64,
    pub bytes_done: u64,
    /// Known once the source's walk ended (a restore knows them from the start).
    pub files_total: Option<u64>,
    pub bytes_total: Option<u64>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Every replica holds the backup.
    BackupDone {
        files: u64,
        /// Logical bytes read.
        size_bytes: u64,
        /// New bytes it added to the stores (after dedup and compression),
        /// counted on one replica.
        stored_bytes: u64,
        /// Where its replicas are (the nodes it was given, or those that held).
        storage_nodes: Vec<u64>,
    },
    RestoreDone {
        files: u64,
        bytes: u64,
    },
    Failed {
        error: String,
    },
}

//! How the log fails: with the file and what was being done.

use std::io;
use std::path::{Path, PathBuf};

/// A log failure, with the file and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the Raft log is damaged: {}: {problem} (restore this node from its peers: see docs/OPERATIONS.md, lost disks)", path.display())]
    Corrupt { path: PathBuf, problem: String },
    #[error("cannot append log index {index}: the log ends at {last} (no holes allowed)")]
    Hole { index: u64, last: u64 },
    #[error("log record {index} is larger than 4 GiB")]
    TooLarge { index: u64 },
}

impl WalError {
    /// Whether the disk was full (the write can be retried once space is freed).
    pub fn is_no_space(&self) -> bool {
        matches!(self, WalError::Io { source, .. } if crate::space::is_no_space(source))
    }
}

pub(super) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

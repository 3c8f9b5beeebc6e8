//! The storage engine behind a narrow interface: an ordered log of byte records keyed
//! by index, a few named metadata records, and `flush` (fsync). sled lives only here,
//! so replacing it is a change to this one file.

use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

/// An engine failure, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("storage engine: cannot {action}: {source}")]
pub struct EngineError {
    action: &'static str,
    #[source]
    source: sled::Error,
}

fn err(action: &'static str) -> impl FnOnce(sled::Error) -> EngineError {
    move |source| EngineError { action, source }
}

/// The node's on-disk store: `log` (index -> entry bytes) and `meta` (name -> bytes).
pub struct Engine {
    db: sled::Db,
    /// sled's data file, for the fdatasync that follows sled's own flush.
    data_file: Arc<std::fs::File>,
    log: sled::Tree,
    meta: sled::Tree,
}

impl Engine {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Engine, EngineError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // sled caches up to 1 GiB by default; the state machine lives in memory
            // anyway, so the page cache only serves the log tail and the snapshot.
            .cache_capacity(32 * 1024 * 1024)
            .open()
            .map_err(err("open the database"))?;
        let log = db.open_tree("log").map_err(err("open the log tree"))?;
        let meta = db.open_tree("meta").map_err(err("open the meta tree"))?;
        let data_file = std::fs::File::open(dir.join("db"))
            .map(Arc::new)
            .map_err(|e| err("open the data file for fsync")(sled::Error::Io(e)))?;
        Ok(Engine {
            db,
            data_file,
            log,
            meta,
        })
    }

    /// True when nothing was ever written (a new or wiped data directory).
    pub fn is_empty(&self) -> bool {
        self.log.is_empty() && self.meta.is_empty()
    }

    /// Appends records; they are readable on return and durable after [`Engine::flush`].
    pub fn log_append(
        &self,
        records: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> Result<(), EngineError> {
        let mut batch = sled::Batch::default();
        for (index, bytes) in records {
            batch.insert(&index.to_be_bytes(), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(err("append to the log"))
    }

    /// Records whose index lies in `range`, in order.
    pub fn log_range(
        &self,
        range: impl RangeBounds<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>, EngineError> {
        use std::ops::Bound::*;
        let start = match range.start_bound() {
            Included(i) => Included(i.to_be_bytes()),
            Excluded(i) => Excluded(i.to_be_bytes()),
            Unbounded => Unbounded,
        };
        let end = match range.end_bound() {
            Included(i) => Included(i.to_be_bytes()),
            Excluded(i) => Excluded(i.to_be_bytes()),
            Unbounded => Unbounded,
        };
        self.log
            .range::<[u8; 8], _>((start, end))
            .map(|r| {
                let (k, v) = r.map_err(err("read the log"))?;
                Ok((index_of(&k), v.to_vec()))
            })
            .collect()
    }

    /// The record with the highest index.
    pub fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>, EngineError> {
        Ok(self
            .log
            .last()
            .map_err(err("read the last log record"))?
            .map(|(k, v)| (index_of(&k), v.to_vec())))
    }

    /// Removes every record with index >= `from`.
    pub fn log_remove_from(&self, from: u64) -> Result<(), EngineError> {
        self.remove_range(from..)
    }

    /// Removes every record with index <= `through`.
    pub fn log_remove_through(&self, through: u64) -> Result<(), EngineError> {
        self.remove_range(..=through)
    }

    fn remove_range(&self, range: impl RangeBounds<u64>) -> Result<(), EngineError> {
        let mut batch = sled::Batch::default();
        for (index, _) in self.log_range(range)? {
            batch.remove(&index.to_be_bytes());
        }
        self.log
            .apply_batch(batch)
            .map_err(err("remove log records"))
    }

    pub fn meta_get(&self, name: &str) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self
            .meta
            .get(name)
            .map_err(err("read metadata"))?
            .map(|v| v.to_vec()))
    }

    pub fn meta_put(&self, name: &str, bytes: Vec<u8>) -> Result<(), EngineError> {
        self.meta
            .insert(name, bytes)
            .map(|_| ())
            .map_err(err("write metadata"))
    }

    /// Writes several metadata records atomically (all or none after a crash).
    pub fn meta_put_all(&self, records: Vec<(&str, Vec<u8>)>) -> Result<(), EngineError> {
        let mut batch = sled::Batch::default();
        for (name, bytes) in records {
            batch.insert(name, bytes);
        }
        self.meta.apply_batch(batch).map_err(err("write metadata"))
    }

    /// Makes everything written so far durable: sled's flush, then an fdatasync
    /// of its data file. sled 0.34's flush writes its buffers with
    /// `sync_file_range`, which neither flushes the disk's write cache nor the
    /// file's size when the file grew (sled only calls `fsync` on a 500 ms timer):
    /// a power loss could take writes it reported flushed. The fdatasync closes
    /// that gap before an append or a vote is acknowledged.
    pub async fn flush(&self) -> Result<(), EngineError> {
        self.db.flush_async().await.map_err(err("flush to disk"))?;
        let file = self.data_file.clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| err("fsync the data file")(sled::Error::Io(e)))
    }
}

fn index_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    u64::from_be_bytes(b)
}

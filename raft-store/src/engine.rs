//! The storage engine behind a narrow interface: an ordered log of byte records keyed
//! by index (the append-only [`Wal`], in `<dir>/wal`), a few small named metadata
//! records (vote, committed, purge bounds: sled, in `<dir>`), the latest snapshot
//! (a file of its own, `<dir>/snapshot`), and the syncs that make each durable.
//! sled lives only here.
//!
//! Data directories written before the log and the snapshot moved out of sled hold
//! them in sled (the `log` tree, the `snapshot_meta`/`snapshot_data` records); the
//! first open moves them out (see [`migrate_sled_log`], [`migrate_sled_snapshot`]).

use std::ops::RangeBounds;
use std::path::{Path, PathBuf};

use crate::wal::{Wal, WalError};

/// An engine failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("storage engine: cannot {action}: {source}")]
    Meta {
        action: &'static str,
        #[source]
        source: sled::Error,
    },
    /// sled's lock on the data file is held: a node (or `bcm recover`) has it open.
    #[error("storage engine: {dir} is in use (is another bcm process using this data directory?): {source}")]
    InUse {
        dir: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error(transparent)]
    Log(#[from] WalError),
}

impl EngineError {
    /// Whether the disk was full (see space.rs).
    pub fn is_no_space(&self) -> bool {
        match self {
            EngineError::Log(e) => e.is_no_space(),
            EngineError::Meta {
                source: sled::Error::Io(e),
                ..
            } => crate::space::is_no_space(e),
            EngineError::Meta { .. } | EngineError::InUse { .. } => false,
        }
    }
}

fn err(action: &'static str) -> impl FnOnce(sled::Error) -> EngineError {
    move |source| EngineError::Meta { action, source }
}

fn io(action: &'static str) -> impl FnOnce(std::io::Error) -> EngineError {
    move |e| err(action)(sled::Error::Io(e))
}

/// How long [`open_sled`] waits for sled's lock on the data file.
const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens sled in `dir`. sled locks its data file and releases the lock when its
/// last handle drops, but its flusher thread holds one for up to a flush interval
/// after the `Db` itself is dropped: reopening in the same process (a restore from
/// PostgreSQL, then serving) can find the lock still held for a moment. Another
/// process holding it past [`SLED_LOCK_WAIT`] is an error that says so.
fn open_sled(dir: &Path) -> Result<sled::Db, EngineError> {
    let deadline = std::time::Instant::now() + SLED_LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            // sled caches up to 1 GiB by default; it holds only a few small records.
            .cache_capacity(16 * 1024 * 1024)
            .open();
        match opened {
            // sled reports it as an io::Error of kind Other with this text.
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if std::time::Instant::now() >= deadline {
                    return Err(EngineError::InUse {
                        dir: dir.to_path_buf(),
                        source: sled::Error::Io(e),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.map_err(err("open the database")),
        }
    }
}

/// The metadata record that bounds the log from below: records up to this index
/// were purged (big-endian u64).
const LOG_PURGED_THROUGH: &str = "log_purged_through";

/// The latest snapshot's file, and its header: magic, the metadata's length (u64),
/// a CRC-32 of metadata and data (u32), 4 bytes of padding.
const SNAPSHOT_FILE: &str = "snapshot";
const SNAPSHOT_MAGIC: &[u8; 8] = b"bcm-snp1";
const SNAPSHOT_HEADER: usize = 24;
/// Where the snapshot was kept in sled before it got its own file.
const LEGACY_SNAPSHOT_META: &str = "snapshot_meta";
const LEGACY_SNAPSHOT_DATA: &str = "snapshot_data";

/// A saved snapshot: its metadata and its data, as encoded by the caller.
pub type SavedSnapshot = (Vec<u8>, Vec<u8>);

/// The node's on-disk store.
pub struct Engine {
    dir: PathBuf,
    /// The database (its trees hold handles too; the tests look at its tree names).
    #[cfg_attr(not(test), allow(dead_code))]
    db: sled::Db,
    meta: sled::Tree,
    log: Wal,
    /// Asks the metadata sync thread for a flush (see [`meta_sync`]).
    sync_tx: std::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

/// Makes metadata durable on a thread of its own (`bcm-meta-sync`): sled's flush,
/// then an fdatasync of sled's data file. One round covers every request that
/// arrived while the previous one ran. Votes wait on this; on tokio's blocking
/// pool they would queue behind whatever else runs there. Ends with the engine.
fn meta_sync(
    db: sled::Db,
    data_file: std::fs::File,
    rx: std::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<Result<(), String>>>,
) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        let synced = db
            .flush()
            .map(|_| ())
            .map_err(|e| format!("flush to disk: {e}"))
            .and_then(|()| {
                data_file
                    .sync_data()
                    .map_err(|e| format!("fsync the data file: {e}"))
            });
        for reply in waiting {
            let _ = reply.send(synced.clone());
        }
    }
}

impl Engine {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Engine, EngineError> {
        let db = open_sled(dir)?;
        let meta = db.open_tree("meta").map_err(err("open the meta tree"))?;
        let data_file =
            std::fs::File::open(dir.join("db")).map_err(io("open the data file for fsync"))?;
        let purged = match meta.get(LOG_PURGED_THROUGH).map_err(err("read metadata"))? {
            None => None,
            Some(v) => Some(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                io("read the log's purge bound")(std::io::Error::other(format!(
                    "{LOG_PURGED_THROUGH} holds {} bytes, not 8",
                    v.len()
                )))
            })?)),
        };
        let wal_dir = dir.join("wal");
        migrate_sled_log(&db, dir, &wal_dir)?;
        migrate_sled_snapshot(&db, &meta, dir)?;
        let log = Wal::open(&wal_dir, purged)?;
        let (sync_tx, sync_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("bcm-meta-sync".into())
            .spawn({
                let db = db.clone();
                move || meta_sync(db, data_file, sync_rx)
            })
            .map_err(io("start the metadata sync thread"))?;
        Ok(Engine {
            dir: dir.to_path_buf(),
            db,
            meta,
            log,
            sync_tx,
        })
    }

    /// True when nothing was ever written (a new or wiped data directory).
    pub fn is_empty(&self) -> bool {
        self.log.last_index().is_none()
            && self.meta.is_empty()
            && !self.dir.join(SNAPSHOT_FILE).exists()
    }

    /// The latest snapshot as saved: (metadata, data).
    pub fn snapshot_get(&self) -> Result<Option<SavedSnapshot>, EngineError> {
        read_snapshot_file(&self.dir.join(SNAPSHOT_FILE))
    }

    /// Replaces the snapshot, durably (written beside, synced, renamed into place:
    /// a crash leaves the old one or the new one). Hands `data` back, also with an
    /// error (to try again with).
    pub async fn snapshot_put(
        &self,
        meta: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, (EngineError, Vec<u8>)> {
        let dir = self.dir.clone();
        let (written, data) = tokio::task::spawn_blocking(move || {
            let written = write_snapshot_file(&dir, &meta, &data);
            if written.is_err() {
                let _ = std::fs::remove_file(dir.join("snapshot.tmp"));
            }
            (written, data)
        })
        .await
        .map_err(|e| {
            (
                io("write the snapshot")(std::io::Error::other(e.to_string())),
                Vec::new(),
            )
        })?;
        match written {
            Ok(()) => Ok(data),
            Err(e) => Err((e, data)),
        }
    }

    /// Appends records (consecutive indexes); they are readable on return and
    /// durable after [`Engine::log_sync`].
    pub fn log_append<P: AsRef<[u8]>>(
        &self,
        records: impl IntoIterator<Item = (u64, P)>,
    ) -> Result<(), EngineError> {
        Ok(self.log.append(records)?)
    }

    /// Makes every appended record durable (blocks for the disk).
    pub fn log_sync(&self) -> Result<(), EngineError> {
        Ok(self.log.sync()?)
    }

    /// Index of the last record in the log.
    pub fn log_last_index(&self) -> Option<u64> {
        self.log.last_index()
    }

    /// Records whose index lies in `range`, in order.
    pub fn log_range(
        &self,
        range: impl RangeBounds<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>, EngineError> {
        Ok(self.log.read(range)?)
    }

    /// Like [`Engine::log_range`], but at most `max_bytes` of records (always the
    /// first one, whatever its size).
    pub fn log_range_at_most(
        &self,
        range: impl RangeBounds<u64>,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, EngineError> {
        Ok(self.log.read_at_most(range, max_bytes)?)
    }

    /// The record with the highest index.
    pub fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>, EngineError> {
        Ok(self.log.last()?)
    }

    /// Removes every record with index >= `from`, durably (blocks for the disk).
    pub fn log_remove_from(&self, from: u64) -> Result<(), EngineError> {
        Ok(self.log.truncate_from(from)?)
    }

    /// Removes every record with index <= `through`: the bound is made durable
    /// first, so that a crash in between leaves a log that starts after it.
    pub async fn log_remove_through(&self, through: u64) -> Result<(), EngineError> {
        self.meta_put(LOG_PURGED_THROUGH, through.to_be_bytes().to_vec())?;
        self.flush().await?;
        Ok(self.log.purge_through(through)?)
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

    /// Makes every metadata write so far durable: sled's flush, then an fdatasync
    /// of its data file. sled 0.34's flush writes its buffers with
    /// `sync_file_range`, which neither flushes the disk's write cache nor the
    /// file's size when the file grew (sled only calls `fsync` on a 500 ms timer):
    /// a power loss could take writes it reported flushed. The fdatasync closes
    /// that gap before a vote or a snapshot is reported saved.
    pub async fn flush(&self) -> Result<(), EngineError> {
        let (reply, done) = tokio::sync::oneshot::channel();
        let gone = || io("sync metadata")(std::io::Error::other("the sync thread has stopped"));
        self.sync_tx.send(reply).map_err(|_| gone())?;
        done.await
            .map_err(|_| gone())?
            .map_err(|e| io("sync metadata")(std::io::Error::other(e)))
    }
}

/// Moves a log kept in sled's `log` tree (big-endian index -> record), as data
/// directories written before the WAL hold it, into a new WAL at `wal_dir`.
///
/// The WAL is built beside (`wal.migrating`), synced, and renamed into place
/// before the sled tree is emptied: a crash at any point leaves either the old log
/// (migrated again on the next open) or the complete new one.
fn migrate_sled_log(db: &sled::Db, dir: &Path, wal_dir: &Path) -> Result<(), EngineError> {
    let tree_name: &[u8] = b"log";
    let had_tree = db.tree_names().iter().any(|n| n.as_ref() == tree_name);
    if !wal_dir.exists() {
        let staging: PathBuf = dir.join("wal.migrating");
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io("remove an interrupted log migration"))?;
        }
        if had_tree {
            let tree = db
                .open_tree(tree_name)
                .map_err(err("open the old log tree"))?;
            let wal = Wal::open(&staging, None)?;
            let mut moved = 0u64;
            let mut chunk = Vec::new();
            for record in tree.iter() {
                let (k, v) = record.map_err(err("read the old log tree"))?;
                let key: [u8; 8] = k.as_ref().try_into().map_err(|_| {
                    io("read the old log tree")(std::io::Error::other("a key is not 8 bytes"))
                })?;
                chunk.push((u64::from_be_bytes(key), v.to_vec()));
                if chunk.len() == 1024 {
                    moved += chunk.len() as u64;
                    wal.append(std::mem::take(&mut chunk))?;
                }
            }
            moved += chunk.len() as u64;
            wal.append(chunk)?;
            wal.sync()?;
            if moved > 0 {
                tracing::info!(
                    records = moved,
                    "moved the Raft log out of sled into the WAL"
                );
            }
        } else {
            std::fs::create_dir_all(&staging).map_err(io("create the log directory"))?;
        }
        std::fs::rename(&staging, wal_dir).map_err(io("move the new log into place"))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync the data directory"))?;
    }
    if had_tree {
        db.drop_tree(tree_name)
            .map_err(err("drop the old log tree"))?;
        db.flush().map_err(err("flush to disk"))?;
    }
    Ok(())
}

/// Moves a snapshot kept in sled's metadata (as data directories written before
/// the snapshot file hold it) into the snapshot file, then drops it from sled.
fn migrate_sled_snapshot(db: &sled::Db, meta: &sled::Tree, dir: &Path) -> Result<(), EngineError> {
    let old_meta = meta
        .get(LEGACY_SNAPSHOT_META)
        .map_err(err("read metadata"))?;
    let old_data = meta
        .get(LEGACY_SNAPSHOT_DATA)
        .map_err(err("read metadata"))?;
    if old_meta.is_none() && old_data.is_none() {
        return Ok(());
    }
    if let (Some(m), Some(d)) = (&old_meta, &old_data) {
        if !dir.join(SNAPSHOT_FILE).exists() {
            write_snapshot_file(dir, m, d)?;
            tracing::info!("moved the snapshot out of sled into its own file");
        }
    }
    let mut batch = sled::Batch::default();
    batch.remove(LEGACY_SNAPSHOT_META);
    batch.remove(LEGACY_SNAPSHOT_DATA);
    meta.apply_batch(batch).map_err(err("write metadata"))?;
    db.flush().map_err(err("flush to disk"))?;
    Ok(())
}

fn snapshot_crc(meta: &[u8], data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(meta);
    h.update(data);
    h.finalize()
}

/// Writes the snapshot beside its place, syncs it, renames it into place. The
/// file is the owner's only (0600): the state it holds includes the token
/// signing key and password hashes.
fn write_snapshot_file(dir: &Path, meta: &[u8], data: &[u8]) -> Result<(), EngineError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = dir.join(SNAPSHOT_FILE);
    let tmp = dir.join("snapshot.tmp");
    let mut header = [0u8; SNAPSHOT_HEADER];
    header[..8].copy_from_slice(SNAPSHOT_MAGIC);
    header[8..16].copy_from_slice(&(meta.len() as u64).to_le_bytes());
    header[16..20].copy_from_slice(&snapshot_crc(meta, data).to_le_bytes());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create the snapshot file"))?;
    // A file left by an interrupted write keeps the mode it had: set it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io("make the snapshot file private (0600)"))?;
    file.write_all(&header)
        .and_then(|_| file.write_all(meta))
        .and_then(|_| file.write_all(data))
        .and_then(|_| file.sync_all())
        .map_err(io("write the snapshot file"))?;
    std::fs::rename(&tmp, &path).map_err(io("move the snapshot file into place"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync the data directory"))
}

fn read_snapshot_file(path: &Path) -> Result<Option<SavedSnapshot>, EngineError> {
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read the snapshot file")(e)),
    };
    let damaged = |why: &str| {
        io("read the snapshot file")(std::io::Error::other(format!(
            "{} is damaged: {why}",
            path.display()
        )))
    };
    if bytes.len() < SNAPSHOT_HEADER || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(damaged("bad header"));
    }
    let meta_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let meta_end = usize::try_from(meta_len)
        .ok()
        .and_then(|l| l.checked_add(SNAPSHOT_HEADER))
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| damaged("metadata length past the end"))?;
    let meta = bytes[SNAPSHOT_HEADER..meta_end].to_vec();
    if snapshot_crc(&meta, &bytes[meta_end..]) != crc {
        return Err(damaged("checksum mismatch"));
    }
    bytes.drain(..meta_end);
    Ok(Some((meta, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory as bcm wrote it before the WAL and the snapshot file: the
    /// log in sled's `log` tree, the snapshot in the metadata.
    fn old_layout(dir: &Path, records: &[(u64, Vec<u8>)]) {
        let db = sled::Config::new().path(dir).open().unwrap();
        let log = db.open_tree("log").unwrap();
        for (i, bytes) in records {
            log.insert(i.to_be_bytes(), bytes.clone()).unwrap();
        }
        let meta = db.open_tree("meta").unwrap();
        meta.insert("vote", b"the vote".to_vec()).unwrap();
        meta.insert(LEGACY_SNAPSHOT_META, b"snapshot meta".to_vec())
            .unwrap();
        meta.insert(LEGACY_SNAPSHOT_DATA, vec![7u8; 100_000])
            .unwrap();
        db.flush().unwrap();
    }

    #[test]
    fn an_old_data_directory_is_moved_out_of_sled_with_nothing_lost() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<_> = (10..2500u64)
            .map(|i| (i, i.to_le_bytes().repeat(9)))
            .collect();
        old_layout(dir.path(), &records);
        for _ in 0..2 {
            let engine = Engine::open(dir.path()).unwrap();
            assert_eq!(engine.log_range(..).unwrap(), records);
            assert_eq!(engine.meta_get("vote").unwrap(), Some(b"the vote".to_vec()));
            let (meta, data) = engine.snapshot_get().unwrap().expect("snapshot");
            assert_eq!(
                (meta.as_slice(), data),
                (&b"snapshot meta"[..], vec![7u8; 100_000])
            );
            assert!(!engine.is_empty());
            assert!(engine.meta_get(LEGACY_SNAPSHOT_DATA).unwrap().is_none());
            assert!(!engine.db.tree_names().iter().any(|n| n.as_ref() == b"log"));
        }
    }

    #[test]
    fn a_data_directory_in_use_is_refused_and_free_again_once_closed() {
        let dir = tempfile::tempdir().unwrap();
        let first = Engine::open(dir.path()).unwrap();
        let e = Engine::open(dir.path())
            .err()
            .expect("a second open must fail");
        assert!(matches!(e, EngineError::InUse { .. }), "{e}");
        assert!(e.to_string().contains("another bcm process"), "{e}");
        drop(first);
        // Reopened at once, as a restore from PostgreSQL does before serving.
        for _ in 0..3 {
            let engine = Engine::open(dir.path()).unwrap();
            assert!(engine.is_empty());
        }
    }

    #[test]
    fn an_interrupted_migration_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<_> = (1..100u64).map(|i| (i, vec![i as u8; 40])).collect();
        old_layout(dir.path(), &records);
        // A crash mid-migration left part of a new log beside the old one.
        let staging = dir.path().join("wal.migrating");
        Wal::open(&staging, None)
            .unwrap()
            .append(records[..10].to_vec())
            .unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        assert_eq!(engine.log_range(..).unwrap(), records);
        assert!(!staging.exists());
    }

    #[tokio::test]
    async fn a_snapshot_is_replaced_whole_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        assert!(engine.is_empty());
        assert!(engine.snapshot_get().unwrap().is_none());
        let back = engine
            .snapshot_put(b"m1".to_vec(), vec![1; 5000])
            .await
            .unwrap();
        assert_eq!(back, vec![1; 5000]);
        engine
            .snapshot_put(b"m2".to_vec(), vec![2; 10])
            .await
            .unwrap();
        assert_eq!(
            engine.snapshot_get().unwrap(),
            Some((b"m2".to_vec(), vec![2; 10]))
        );
        assert!(
            !engine.is_empty(),
            "a snapshot alone makes a directory non-empty"
        );
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = engine.snapshot_get().unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
    }
}

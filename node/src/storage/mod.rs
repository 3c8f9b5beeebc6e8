//! This node as a storage node: its chunk store (`bcm-chunks`' pack store under
//! `storage.dir`) and the cluster-internal routes that serve it ([`routes`]),
//! whose wire types are in [`wire`], and the client side of them ([`client`]).

pub mod client;
pub mod routes;
pub mod wire;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bcm_chunks::store::Session;
use bcm_chunks::PackStore;

use crate::config::NodeConfig;

/// A backup whose source has not been heard from for this long has its claim on
/// the chunks it was told exist dropped (a GC may then collect them; the
/// backup, if it goes on, finds them missing and sends them again).
const LEASE: Duration = Duration::from_secs(30 * 60);

/// The store and the backups being written to it.
pub struct Storage {
    pub store: Arc<PackStore>,
    leases: Mutex<HashMap<u64, (Session, Instant)>>,
}

impl Storage {
    /// Opens the store of a node with role `storage` (None for other nodes),
    /// saying what the opening found.
    pub fn open(cfg: &NodeConfig) -> anyhow::Result<Option<Arc<Storage>>> {
        if !cfg.roles.contains(&bcm_raft_store::Role::Storage) {
            return Ok(None);
        }
        let dir = &cfg.storage_dir;
        let (store, report) = PackStore::open(dir).map_err(|e| {
            anyhow::anyhow!("cannot open the chunk store in {}: {e}", dir.display())
        })?;
        for (path, why) in &report.quarantined {
            tracing::error!(
                path = %path.display(),
                "a pack file is damaged ({why}); moved to quarantine/, its chunks are missing until a verify repairs them"
            );
        }
        tracing::info!(
            dir = %dir.display(),
            packs = report.packs,
            leftovers = report.leftovers,
            "chunk store open"
        );
        Ok(Some(Arc::new(Storage {
            store: Arc::new(store),
            leases: Mutex::new(HashMap::new()),
        })))
    }

    /// Keeps the chunks backup `backup` was told exist safe from GC, for another
    /// [`LEASE`]; drops leases not renewed in time.
    fn renew(&self, backup: u64) {
        let now = Instant::now();
        let mut leases = self.leases.lock().expect("leases lock");
        leases.retain(|_, (_, at)| now.duration_since(*at) < LEASE);
        match leases.get_mut(&backup) {
            Some((_, at)) => *at = now,
            None => {
                leases.insert(backup, (self.store.session(), now));
            }
        }
    }

    /// The session of backup `backup` (opened when it has none).
    fn with_session<T>(&self, backup: u64, f: impl FnOnce(&Session) -> T) -> T {
        self.renew(backup);
        let leases = self.leases.lock().expect("leases lock");
        f(&leases[&backup].0)
    }

    /// Backup `backup` is written (or abandoned): its claim ends.
    fn release(&self, backup: u64) {
        self.leases.lock().expect("leases lock").remove(&backup);
    }
}

/// Size and free space of the file system holding `dir`.
pub fn capacity(dir: &Path) -> std::io::Result<(u64, u64)> {
    let s = rustix::fs::statvfs(dir)?;
    Ok((
        s.f_blocks.saturating_mul(s.f_frsize),
        s.f_bavail.saturating_mul(s.f_frsize),
    ))
}

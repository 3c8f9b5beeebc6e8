//! This node as a storage node: its chunk store (`bcm-chunks`' pack store,
//! under `storage.dir`, or in an S3-compatible object store with `backend =
//! "s3"`, through `bcm-s3`) and the cluster-internal routes that serve it
//! ([`routes`]), whose wire types are in [`wire`], and the client side of them
//! ([`client`]).

pub mod client;
pub mod routes;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bcm_chunks::store::{Backend, Session};
use bcm_chunks::PackStore;
use bcm_s3::{S3Backend, Settings};

use crate::config::NodeConfig;

/// A backup whose source has not been heard from for this long has its claim on
/// the chunks it was told exist dropped (a GC may then collect them; the
/// backup, if it goes on, finds them missing and sends them again).
const LEASE: Duration = bcm_chunks::store::backend::CLAIM_LIFETIME;
/// In a shared place, a backup's mark (`Backend::claim`) is made again this
/// often while it is written, well within [`LEASE`].
const RECLAIM: Duration = Duration::from_secs(5 * 60);
/// An object store that cannot be used at start-up is tried again this often.
const RETRY_OPEN: Duration = Duration::from_secs(5);

/// The store and the backups being written to it.
pub struct Storage {
    /// The store, once open: at start-up on a local disk; for an object store,
    /// as soon as it answers (until then the routes and `/readyz` say why not).
    store: OnceLock<Arc<PackStore>>,
    /// Why the store is not open yet.
    problem: Mutex<Option<String>>,
    /// Where the store is, for operators ("pack files in ...", "bucket ... at ...").
    pub place: String,
    /// The same for storage nodes whose stores share one place (a bucket):
    /// placement puts no two replicas of a backup there.
    pub place_key: String,
    /// `local` or `s3`.
    pub backend: &'static str,
    /// Per backup being written: its session, when it was last heard from,
    /// and when its mark in a shared place was last made.
    leases: Mutex<HashMap<u64, Lease>>,
}

struct Lease {
    session: Session,
    heard: Instant,
    marked: Instant,
}

impl Storage {
    /// Opens the store of a node with role `storage` (None for other nodes),
    /// saying what the opening found. A local store that cannot be opened
    /// stops the node; an object store that cannot be reached is said so (in
    /// the log, `/readyz` and every storage call) and tried again until it
    /// answers.
    pub fn open(cfg: &NodeConfig) -> anyhow::Result<Option<Arc<Storage>>> {
        if !cfg.roles.contains(&bcm_raft_store::Role::Storage) {
            return Ok(None);
        }
        let Some(s3) = &cfg.storage_s3 else {
            let dir = &cfg.storage_dir;
            let (store, report) = PackStore::open(dir).map_err(|e| {
                anyhow::anyhow!("cannot open the chunk store in {}: {e}", dir.display())
            })?;
            let storage = Storage::new(
                store.backend().describe(),
                format!("local:{}", cfg.id),
                "local",
            );
            storage.opened(store, report);
            return Ok(Some(storage));
        };
        let backend = S3Backend::new(Settings {
            endpoint: s3.endpoint.clone(),
            bucket: s3.bucket.clone(),
            region: s3.region.clone(),
            prefix: s3.prefix.clone(),
            access_key_id: s3.access_key_id.clone(),
            secret_access_key: s3.secret_access_key.expose().to_string(),
            path_style: s3.path_style,
            owner: cfg.id,
        })?;
        let storage = Storage::new(backend.describe(), backend.place_key(), "s3");
        *storage.problem.lock().expect("problem lock") = Some(format!(
            "the chunk store in {} is being opened",
            storage.place
        ));
        let opening = storage.clone();
        std::thread::Builder::new()
            .name("bcm-store-open".into())
            .spawn(move || opening.open_when_reachable(backend))?;
        Ok(Some(storage))
    }

    fn new(place: String, place_key: String, backend: &'static str) -> Arc<Storage> {
        Arc::new(Storage {
            store: OnceLock::new(),
            problem: Mutex::new(None),
            place,
            place_key,
            backend,
            leases: Mutex::new(HashMap::new()),
        })
    }

    /// Tries the object store until it answers and opens the store in it.
    fn open_when_reachable(&self, backend: S3Backend) {
        let mut failures = 0u32;
        loop {
            let opened = backend.probe().map_err(|e| e.to_string()).and_then(|()| {
                PackStore::open_in(Box::new(backend.clone())).map_err(|e| e.to_string())
            });
            match opened {
                Ok((store, report)) => {
                    self.opened(store, report);
                    return;
                }
                Err(why) => {
                    let why = format!("the chunk store in {} cannot be used: {why}", self.place);
                    if failures == 0 {
                        tracing::error!("{why}; trying again every {RETRY_OPEN:?}");
                    } else {
                        tracing::debug!("{why}");
                    }
                    failures += 1;
                    *self.problem.lock().expect("problem lock") = Some(why);
                }
            }
            std::thread::sleep(RETRY_OPEN);
        }
    }

    fn opened(&self, store: PackStore, report: bcm_chunks::store::OpenReport) {
        for (pack, why) in &report.quarantined {
            tracing::error!(
                %pack,
                "a pack is damaged ({why}); moved to quarantine/, its chunks are missing until a verify repairs them"
            );
        }
        tracing::info!(
            place = %self.place,
            packs = report.packs,
            leftovers = report.leftovers,
            "chunk store open"
        );
        let _ = self.store.set(Arc::new(store));
        *self.problem.lock().expect("problem lock") = None;
    }

    /// The store, or why it is not open.
    pub fn store(&self) -> Result<&Arc<PackStore>, String> {
        self.store.get().ok_or_else(|| {
            self.problem
                .lock()
                .expect("problem lock")
                .clone()
                .unwrap_or_else(|| "the chunk store is not open yet".into())
        })
    }

    /// Why the store cannot be used, when it cannot (for `/readyz`).
    pub fn problem(&self) -> Option<String> {
        self.store().err()
    }

    /// Keeps the chunks backup `backup` was told exist safe from GC, for another
    /// [`LEASE`]; drops leases not renewed in time. In a place shared with other
    /// storage nodes, a backup's first call marks it there (no other node's GC
    /// runs while it is written) and takes in the packs they wrote, so that
    /// what they hold is not sent again; the mark is made again every
    /// [`RECLAIM`]. A mark that cannot be made, or packs that cannot be looked
    /// over, refuse the call: the index must not be trusted stale there.
    fn renew(&self, store: &Arc<PackStore>, backup: u64) -> Result<(), String> {
        let now = Instant::now();
        let (fresh, mark, expired) = {
            let mut leases = self.leases.lock().expect("leases lock");
            let expired: Vec<u64> = leases
                .iter()
                .filter(|(_, l)| now.duration_since(l.heard) >= LEASE)
                .map(|(id, _)| *id)
                .collect();
            for id in &expired {
                leases.remove(id);
            }
            match leases.get_mut(&backup) {
                Some(l) => {
                    l.heard = now;
                    let mark = now.duration_since(l.marked) >= RECLAIM;
                    if mark {
                        l.marked = now;
                    }
                    (false, mark, expired)
                }
                None => (true, true, expired),
            }
        };
        let backend = store.backend();
        for id in expired {
            if let Err(e) = backend.unclaim(id) {
                tracing::warn!(backup = id, "a lapsed backup's mark not removed: {e}");
            }
        }
        if mark {
            backend
                .claim(backup)
                .map_err(|e| format!("cannot mark backup {backup} in {}: {e}", self.place))?;
        }
        if fresh {
            store
                .refresh()
                .map_err(|e| format!("cannot look over the packs in {}: {e}", self.place))?;
            let mut leases = self.leases.lock().expect("leases lock");
            leases.entry(backup).or_insert_with(|| Lease {
                session: store.session(),
                heard: now,
                marked: now,
            });
        }
        Ok(())
    }

    /// The session of backup `backup` (opened when it has none).
    fn with_session<T>(
        &self,
        store: &Arc<PackStore>,
        backup: u64,
        f: impl FnOnce(&Session) -> T,
    ) -> Result<T, String> {
        self.renew(store, backup)?;
        let leases = self.leases.lock().expect("leases lock");
        leases
            .get(&backup)
            .map(|l| f(&l.session))
            .ok_or_else(|| format!("backup {backup} was written or given up meanwhile"))
    }

    /// Backup `backup` is written (or abandoned): its claim ends, and its mark.
    fn release(&self, store: &PackStore, backup: u64) {
        self.leases.lock().expect("leases lock").remove(&backup);
        if let Err(e) = store.backend().unclaim(backup) {
            tracing::warn!(backup, "the mark of a backup written not removed: {e}");
        }
    }
}

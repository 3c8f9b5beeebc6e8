//! The data disk's free space, watched: below `node.disk_reserve_mb` this node
//! refuses writes (507), serves reads, does not campaign and hands leadership to
//! another voter; the storage's reserve file is given up when the disk is full and
//! taken again once there is room (see raft-store's space.rs).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bcm_raft_store::space::{DiskSpace, RESERVE_BYTES};

use super::node::SharedNode;

/// How often the free space is measured (a statvfs: cheap).
const EVERY: Duration = Duration::from_millis(200);

/// The free space of this node's data disk, as last measured.
pub struct DiskWatch {
    space: Arc<DiskSpace>,
    reserve: u64,
    low: AtomicBool,
    available: AtomicU64,
}

impl DiskWatch {
    pub fn new(space: Arc<DiskSpace>, reserve: u64) -> DiskWatch {
        let watch = DiskWatch {
            space,
            reserve,
            low: AtomicBool::new(false),
            available: AtomicU64::new(u64::MAX),
        };
        watch.measure();
        watch
    }

    /// Why this node refuses writes now, when it does.
    pub fn refusal(&self, node_id: u64) -> Option<String> {
        if !self.low.load(Ordering::SeqCst) {
            return None;
        }
        let free = self.available.load(Ordering::SeqCst);
        Some(if self.space.log_stalled() {
            format!(
                "node {node_id}'s data disk ({}) is full: its Raft log waits for space; \
                 writes through this node are refused until space is freed (reads are served)",
                self.space.dir().display()
            )
        } else {
            format!(
                "node {node_id}'s data disk ({}) has {} MiB free, less than node.disk_reserve_mb \
                 ({} MiB): writes through this node are refused until space is freed (reads \
                 are served)",
                self.space.dir().display(),
                free >> 20,
                self.reserve >> 20
            )
        })
    }

    /// Whether the disk is (nearly) full.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::SeqCst)
    }

    /// Free bytes as last measured.
    pub fn available(&self) -> u64 {
        self.available.load(Ordering::SeqCst)
    }

    /// Measures, gives up or takes back the reserve file, and says whether the
    /// disk is low now and whether that changed.
    fn measure(&self) -> (bool, bool) {
        let free = match self.space.available() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("cannot measure the data disk's free space: {e}");
                return (self.is_low(), false);
            }
        };
        let mut free = free;
        if free < RESERVE_BYTES / 2 && self.space.release_reserve() {
            tracing::error!(
                "the data disk is full: released the {} MiB reserve file so that this node's \
                 metadata can still be written",
                RESERVE_BYTES >> 20
            );
            free = self.space.available().unwrap_or(free);
        } else if !self.space.reserve_held() && free >= self.reserve + 2 * RESERVE_BYTES {
            match self.space.hold_reserve() {
                Ok(()) => free = self.space.available().unwrap_or(free),
                Err(e) => tracing::warn!("cannot write the space reserve file: {e}"),
            }
        }
        self.available.store(free, Ordering::SeqCst);
        let low = free < self.reserve || self.space.log_stalled();
        let was = self.low.swap(low, Ordering::SeqCst);
        (low, low != was)
    }
}

/// Measures the data disk every [`EVERY`] and logs a change (a leader whose disk
/// ran low hands leadership over: see the cluster manager's loop).
pub(super) async fn watch(node: SharedNode) {
    let mut shutdown = node.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let disk = node.disk.clone();
        let Ok((_, changed)) = tokio::task::spawn_blocking(move || disk.measure()).await else {
            continue;
        };
        if changed {
            match node.disk.refusal(node.cfg.id) {
                Some(why) => tracing::error!("{why}"),
                None => tracing::info!(
                    free_mib = node.disk.available() >> 20,
                    "the data disk has room again: writes are accepted"
                ),
            }
        }
    }
}

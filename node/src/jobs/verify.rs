//! Verifying a backup's replicas and repairing them (`POST /backups/{id}/verify`
//! and the backup manager's periodic scrub): every storage node the catalog
//! places the backup on reads back each of its chunks and hashes it (setting a
//! damaged pack aside); a replica that lacks chunks or its manifest is made
//! whole from a replica that is; a replica on a node that is down or gone is
//! re-created on another storage node, and the catalog moves it there
//! (`MoveReplica`). The storage node that receives chunks checks each against
//! its name before it keeps it.

use std::collections::VecDeque;

use bcm_api::{ReplicaView, VerifyView};
use bcm_chunks::store::BackupCheck;
use bcm_chunks::{Blob, ChunkId, Manifest};
use bcm_raft_store::{Backup, Command, NodeStatus, Response};
use futures_util::future::join_all;

use super::{placement, source};
use crate::cluster::rpc::Peers;
use crate::cluster::{leader, now_ms, Node};
use crate::storage::client::{manifest_from, StorageNode};
use crate::storage::wire::Fence;

/// Chunks asked of the donor in one `get` (it answers with at most 24 MiB).
const WINDOW: usize = 64;

/// Checks (and repairs) every replica of `backup`, a succeeded one.
pub async fn verify(node: &Node, backup: &Backup) -> VerifyView {
    let peers = node.peers.with_own_pool();
    let fence = Fence {
        epoch: node
            .state
            .read(|d| d.state.backup_manager.map_or(0, |b| b.epoch)),
    };
    let holders = placement::addressed(node, &backup.storage_nodes);
    let checks = join_all(holders.iter().map(|h| h.check(&peers, backup.id))).await;
    let donors: Vec<StorageNode> = holders
        .iter()
        .zip(&checks)
        .filter(|(_, c)| c.as_ref().is_ok_and(BackupCheck::is_clean))
        .map(|(h, _)| h.clone())
        .collect();
    let mut manifest: Option<Result<Manifest, String>> = None;
    let mut replicas = Vec::new();
    for &id in &backup.storage_nodes {
        let mut view = ReplicaView {
            node_id: id,
            state: "ok".into(),
            chunks: None,
            missing_chunks: 0,
            damaged_packs: 0,
            repaired_chunks: 0,
            moved_to: None,
            error: None,
        };
        let at = holders.iter().position(|h| h.id == id);
        match at.map(|i| (&holders[i], &checks[i])) {
            Some((_, Ok(c))) if c.is_clean() => view.chunks = Some(c.chunks),
            Some((holder, Ok(c))) => {
                view.chunks = Some(c.chunks).filter(|_| c.held);
                view.missing_chunks = c.missing.len() as u64;
                view.damaged_packs = c.damaged.len() as u64;
                if let Some(why) = &c.manifest_error {
                    view.error = Some(why.clone());
                }
                if manifest.is_none() {
                    manifest = Some(manifest_from(&peers, &donors, backup.id).await);
                }
                let m = manifest.as_ref().expect("fetched above");
                match repair(&peers, fence, backup.id, &donors, holder, m).await {
                    Ok(copied) => {
                        view.state = "repaired".into();
                        view.repaired_chunks = copied;
                        view.error = None;
                    }
                    Err(why) => {
                        view.state = "damaged".into();
                        view.error = Some(why);
                    }
                }
            }
            unreachable => {
                let why = match unreachable {
                    Some((_, Err(e))) => e.to_string(),
                    _ => format!("node {id} is not registered"),
                };
                view.state = "unreachable".into();
                view.error = Some(why);
                if gone(node, id) {
                    if manifest.is_none() {
                        manifest = Some(manifest_from(&peers, &donors, backup.id).await);
                    }
                    let m = manifest.as_ref().expect("fetched above");
                    match rehome(node, &peers, fence, backup, id, &donors, m).await {
                        Ok((to, copied)) => {
                            view.state = "moved".into();
                            view.moved_to = Some(to);
                            view.repaired_chunks = copied;
                        }
                        Err(why) => {
                            let before = view.error.take().unwrap_or_default();
                            view.error = Some(format!("{before}; not re-created: {why}"));
                        }
                    }
                }
            }
        }
        replicas.push(view);
    }
    let ok = replicas
        .iter()
        .all(|r| matches!(r.state.as_str(), "ok" | "repaired" | "moved"));
    if ok {
        tracing::info!(backup = backup.id, "verified: every replica is whole");
    } else {
        tracing::warn!(
            backup = backup.id,
            ?replicas,
            "verify: a replica is not whole"
        );
    }
    VerifyView {
        backup: backup.id,
        ok,
        replicas,
    }
}

/// Whether node `id` is down or gone from the registry (a replica there is
/// re-created elsewhere), as opposed to slow to answer just now.
fn gone(node: &Node, id: u64) -> bool {
    node.state.read(|d| {
        d.state
            .nodes
            .get(&id)
            .is_none_or(|n| n.status != NodeStatus::Up || !n.enabled)
    })
}

/// Makes `holder`'s replica whole from a donor's; the chunks copied.
async fn repair(
    peers: &Peers,
    fence: Fence,
    backup: u64,
    donors: &[StorageNode],
    holder: &StorageNode,
    manifest: &Result<Manifest, String>,
) -> Result<u64, String> {
    let manifest = manifest.as_ref().map_err(|e| e.clone())?;
    let mut why = Vec::new();
    for donor in donors {
        match copy(peers, fence, backup, donor, holder, manifest).await {
            Ok(n) => {
                tracing::info!(
                    backup,
                    from = donor.id,
                    to = holder.id,
                    chunks = n,
                    "replica repaired"
                );
                return Ok(n);
            }
            Err(e) => why.push(format!("from node {}: {e}", donor.id)),
        }
    }
    if donors.is_empty() {
        why.push("no replica of it is whole".into());
    }
    Err(why.join("; "))
}

/// Re-creates the replica that was on `from` on another storage node, then
/// records the move; that node and the chunks copied.
async fn rehome(
    node: &Node,
    peers: &Peers,
    fence: Fence,
    backup: &Backup,
    from: u64,
    donors: &[StorageNode],
    manifest: &Result<Manifest, String>,
) -> Result<(u64, u64), String> {
    let target = placement::choose(node, 1, &[], &backup.storage_nodes)
        .await?
        .remove(0);
    let copied = repair(peers, fence, backup.id, donors, &target, manifest).await?;
    let cmd = Command::MoveReplica {
        backup: backup.id,
        from,
        to: target.id,
        epoch: fence.epoch,
        at: now_ms(),
    };
    match leader::write(node, cmd).await {
        Ok(Response::Rejected(why)) => Err(format!("the catalog refused the move: {why}")),
        Ok(_) => {
            tracing::info!(backup = backup.id, from, to = target.id, "replica moved");
            Ok((target.id, copied))
        }
        Err(e) => Err(format!("the move was not recorded: {e}")),
    }
}

/// Sends `to` every chunk of `manifest` it lacks, read from `from`, then the
/// manifest; the chunks sent.
async fn copy(
    peers: &Peers,
    fence: Fence,
    backup: u64,
    from: &StorageNode,
    to: &StorageNode,
    manifest: &Manifest,
) -> Result<u64, String> {
    let lacking = to
        .missing(peers, fence, backup, manifest.chunks())
        .await
        .map_err(|e| e.to_string())?;
    let mut left: VecDeque<ChunkId> = lacking.into();
    let mut copied = 0;
    while !left.is_empty() {
        let ask: Vec<ChunkId> = left.iter().take(WINDOW).copied().collect();
        let blobs: Vec<Blob> = from.get(peers, ask).await.map_err(|e| e.to_string())?;
        if blobs.is_empty() {
            return Err(format!("storage node {} sent no chunk", from.id));
        }
        for b in &blobs {
            if left.pop_front() != Some(b.id) {
                return Err(format!("storage node {} sent chunks out of order", from.id));
            }
        }
        let refs: Vec<&Blob> = blobs.iter().collect();
        for part in source::split(&refs) {
            to.put(peers, fence, backup, &part)
                .await
                .map_err(|e| e.to_string())?;
        }
        copied += blobs.len() as u64;
    }
    to.put_manifest(peers, fence, backup, manifest)
        .await
        .map_err(|e| e.to_string())?;
    Ok(copied)
}

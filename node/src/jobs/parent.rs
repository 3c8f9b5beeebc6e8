//! Files unchanged since the plan's previous backup: taken from its manifest with
//! their chunks, without being read again, when every replica still holds them.

use std::collections::{HashMap, HashSet};

use bcm_chunks::{ChunkId, Entry, EntryKind};
use futures_util::future::try_join_all;

use super::source::{retry, Fail};
use super::wire::RunBackup;
use crate::cluster::rpc::Peers;
use crate::storage::client::manifest_from;
use crate::storage::wire::Fence;

/// Chunk ids asked about in one call.
const ASK_IDS: usize = 4096;

/// The previous backup's files (by entry path) whose chunks every replica of
/// this backup holds (and now keeps for it, as for any chunk it was asked about);
/// empty without a previous backup, or when no holder gives its manifest.
pub async fn reusable(
    peers: &Peers,
    job: &RunBackup,
    fence: Fence,
) -> Result<HashMap<Vec<u8>, Entry>, Fail> {
    let Some(parent) = &job.parent else {
        return Ok(HashMap::new());
    };
    let manifest = match manifest_from(peers, &parent.holders, parent.backup).await {
        Ok(m) => m,
        Err(why) => {
            tracing::info!(backup = job.backup, "every file is read again: {why}");
            return Ok(HashMap::new());
        }
    };
    let ids = manifest.chunks();
    let lacking: Vec<Vec<ChunkId>> = try_join_all(job.replicas.iter().map(|r| {
        let ids = &ids;
        async move {
            let mut lacks = Vec::new();
            for part in ids.chunks(ASK_IDS) {
                let part = part.to_vec();
                lacks.extend(retry(|| r.missing(peers, fence, job.backup, part.clone())).await?);
            }
            Ok::<_, Fail>(lacks)
        }
    }))
    .await?;
    let lacking: HashSet<ChunkId> = lacking.into_iter().flatten().collect();
    let files: HashMap<Vec<u8>, Entry> = manifest
        .entries
        .into_iter()
        .filter(|e| match &e.kind {
            EntryKind::File { chunks, .. } => chunks.iter().all(|c| !lacking.contains(c)),
            _ => false,
        })
        .map(|e| (e.path.clone(), e))
        .collect();
    tracing::debug!(
        backup = job.backup,
        parent = parent.backup,
        files = files.len(),
        "files of the previous backup that need not be read again when unchanged"
    );
    Ok(files)
}

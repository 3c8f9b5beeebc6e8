//! Talking to one storage node from elsewhere (a source, a restore target, the
//! backup manager): the calls of [`super::routes`], with their timeouts, and
//! their errors said the way an operator reads them.

use std::time::Duration;

use bcm_chunks::store::{BackupCheck, GcReport};
use bcm_chunks::{Blob, ChunkId, Manifest};

use super::wire::{self, Fence};
use crate::cluster::rpc::{PeerError, Peers};

const QUICK: Duration = Duration::from_secs(15);
/// A batch of chunks in or out (16-24 MiB), over a slow link too.
const BULK: Duration = Duration::from_secs(120);
/// GC and verify read or rewrite a whole store.
const WHOLE_STORE: Duration = Duration::from_secs(3600);

/// What a storage node said no to, or why it said nothing.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The backup-manager role moved on: the job this call was for is over.
    #[error("storage node {node}: {detail}")]
    Stale { node: u64, detail: String },
    #[error("storage node {node}: {detail}")]
    Refused {
        node: u64,
        status: u16,
        detail: String,
    },
    #[error("storage node {node}: {source}")]
    Unreachable { node: u64, source: PeerError },
}

impl StorageError {
    /// Worth trying again (the node or the link may come back); a refusal is not.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Unreachable { .. } => true,
            StorageError::Refused { status, .. } => *status >= 500 && *status != 507,
            StorageError::Stale { .. } => false,
        }
    }
}

/// One storage node, by id and internal address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StorageNode {
    pub id: u64,
    pub rpc: String,
}

impl StorageNode {
    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        peers: &Peers,
        path: &'static str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, StorageError> {
        peers
            .call(&self.rpc, path, req, timeout)
            .await
            .map_err(|e| match e {
                PeerError::Status { status, body, .. } => {
                    let detail = problem_detail(&body);
                    if status == 409 && detail.contains("stale epoch") {
                        StorageError::Stale {
                            node: self.id,
                            detail,
                        }
                    } else {
                        StorageError::Refused {
                            node: self.id,
                            status,
                            detail,
                        }
                    }
                }
                other => StorageError::Unreachable {
                    node: self.id,
                    source: other,
                },
            })
    }

    pub async fn missing(
        &self,
        peers: &Peers,
        fence: Fence,
        backup: u64,
        ids: Vec<ChunkId>,
    ) -> Result<Vec<ChunkId>, StorageError> {
        let req = wire::Missing { fence, backup, ids };
        self.call(peers, wire::PATH_MISSING, &req, QUICK).await
    }

    pub async fn put(
        &self,
        peers: &Peers,
        fence: Fence,
        backup: u64,
        blobs: &[&Blob],
    ) -> Result<wire::PutReply, StorageError> {
        let req = wire::PutRef {
            fence,
            backup,
            blobs,
        };
        self.call(peers, wire::PATH_PUT, &req, BULK).await
    }

    /// Some of `ids`' chunks, in order, as stored (at least one; check each).
    pub async fn get(&self, peers: &Peers, ids: Vec<ChunkId>) -> Result<Vec<Blob>, StorageError> {
        self.call(peers, wire::PATH_GET, &wire::Get { ids }, BULK)
            .await
    }

    pub async fn put_manifest(
        &self,
        peers: &Peers,
        fence: Fence,
        backup: u64,
        manifest: &Manifest,
    ) -> Result<(), StorageError> {
        let req = wire::ManifestPut {
            fence,
            backup,
            manifest: manifest.encode(),
        };
        self.call(peers, wire::PATH_MANIFEST_PUT, &req, QUICK).await
    }

    /// Backup `backup`'s manifest, when this node holds it.
    pub async fn manifest(
        &self,
        peers: &Peers,
        backup: u64,
    ) -> Result<Option<Manifest>, StorageError> {
        let bytes: Option<serde_bytes::ByteBuf> = self
            .call(
                peers,
                wire::PATH_MANIFEST_GET,
                &wire::ManifestGet { backup },
                BULK,
            )
            .await?;
        bytes
            .map(|b| {
                Manifest::decode(&b).map_err(|e| StorageError::Refused {
                    node: self.id,
                    status: 500,
                    detail: format!("the manifest of backup {backup} is damaged: {e}"),
                })
            })
            .transpose()
    }

    pub async fn delete_manifest(
        &self,
        peers: &Peers,
        fence: Fence,
        backup: u64,
    ) -> Result<bool, StorageError> {
        let req = wire::ManifestDelete { fence, backup };
        self.call(peers, wire::PATH_MANIFEST_DELETE, &req, QUICK)
            .await
    }

    /// The backups whose manifests this node holds.
    pub async fn backups(&self, peers: &Peers) -> Result<Vec<u64>, StorageError> {
        self.call(peers, wire::PATH_MANIFEST_LIST, &(), QUICK).await
    }

    /// Reads back every chunk of backup `backup` there.
    pub async fn check(&self, peers: &Peers, backup: u64) -> Result<BackupCheck, StorageError> {
        self.call(
            peers,
            wire::PATH_CHECK,
            &wire::Check { backup },
            WHOLE_STORE,
        )
        .await
    }

    pub async fn gc(&self, peers: &Peers, fence: Fence) -> Result<GcReport, StorageError> {
        self.call(peers, wire::PATH_GC, &fence, WHOLE_STORE).await
    }
}

/// Backup `backup`'s manifest from the first of `holders` that gives it.
pub async fn manifest_from(
    peers: &Peers,
    holders: &[StorageNode],
    backup: u64,
) -> Result<Manifest, String> {
    let mut why = Vec::new();
    for h in holders {
        match h.manifest(peers, backup).await {
            Ok(Some(m)) => return Ok(m),
            Ok(None) => why.push(format!("storage node {} does not hold it", h.id)),
            Err(e) => why.push(e.to_string()),
        }
    }
    if holders.is_empty() {
        why.push("no storage node holds it".into());
    }
    Err(format!(
        "no storage node could give backup {backup}'s manifest: {}",
        why.join("; ")
    ))
}

/// The `detail` of a problem+json body, or the body itself.
fn problem_detail(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("detail")?.as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string())
}

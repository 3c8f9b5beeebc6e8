//! The cluster-internal routes by which the backup manager hands a node its
//! work (answered at once; the job runs on), and the check of a backup's paths
//! on its source node. A dispatch from a stale backup manager is refused (409).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use bcm_raft_store::JobRef;

use super::wire::{self, CheckPaths, RunBackup, RunRestore};
use super::{restore, source, Runs};
use crate::cluster::rpc_server::encode;
use crate::cluster::SharedNode;
use crate::net::problem::Problem;
use crate::storage::routes::{check, decode};
use crate::storage::wire::Fence;

pub fn router(runs: Arc<Runs>) -> Router<SharedNode> {
    let backup_runs = runs.clone();
    Router::new()
        .route(
            wire::PATH_BACKUP,
            post(
                move |State(node): State<SharedNode>, body: Bytes| async move {
                    let job: RunBackup = decode(&body)?;
                    check(&node, Fence { epoch: job.epoch })?;
                    let (id, attempt) = (JobRef::Backup(job.backup), job.attempt);
                    backup_runs.start(id, attempt, source::run(node, job));
                    Ok::<_, Problem>(encode(&()))
                },
            ),
        )
        .route(
            wire::PATH_RESTORE,
            post(
                move |State(node): State<SharedNode>, body: Bytes| async move {
                    let job: RunRestore = decode(&body)?;
                    check(&node, Fence { epoch: job.epoch })?;
                    let (id, attempt) = (JobRef::Restore(job.restore), job.attempt);
                    runs.start(id, attempt, restore::run(node, job));
                    Ok::<_, Problem>(encode(&()))
                },
            ),
        )
        .route(
            wire::PATH_CHECK_PATHS,
            post(|body: Bytes| async move {
                let req: CheckPaths = decode(&body)?;
                let problems: Vec<String> = req
                    .paths
                    .iter()
                    .filter_map(|p| {
                        bcm_chunks::walk::check_roots(&[PathBuf::from(p)])
                            .err()
                            .map(|e| e.to_string())
                    })
                    .collect();
                Ok::<_, Problem>(encode(&problems))
            }),
        )
}

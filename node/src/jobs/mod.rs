//! The data plane's jobs: the backup manager's loop ([`manager`]: schedules,
//! placement, dispatch, takeover, retention; [`cleanup`]: stale manifests and
//! garbage collection), and the work a node is
//! given: a backup on its source ([`source`], which does not read again what is
//! unchanged since the plan's previous backup: [`parent`]), a restore on its target
//! ([`restore`]), received on the cluster-internal routes of [`routes`]; and
//! the check and repair of a backup's replicas ([`verify`]).
//!
//! Every state change of a job is a replicated command carrying the manager's
//! epoch and the job's attempt (see model/DESIGN.md, rule 5); a node running a
//! job stops when the cluster refuses its report (the job has moved on).

mod cleanup;
pub mod manager;
mod parent;
pub mod placement;
mod read;
pub mod restore;
pub mod routes;
pub mod source;
pub mod verify;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bcm_raft_store::{Command, JobRef, Response};
use tokio::task::AbortHandle;

use crate::cluster::error::ClusterError;
use crate::cluster::{leader, Node};

/// How often a running job says how far it has come (and so that it is alive).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What this node's jobs have moved since it started (`/metrics`).
pub struct DataCounters {
    /// Bytes of files read by backups that succeeded here (as their source).
    pub backed_up_bytes: AtomicU64,
    /// Bytes of files those backups found unchanged since their plan's previous
    /// backup and kept without reading them.
    pub unchanged_bytes: AtomicU64,
    /// Bytes those backups added to their first replica (compressed).
    pub stored_bytes: AtomicU64,
    /// Bytes read that were not sent: chunks the replicas (or the backup
    /// itself) already had.
    pub deduplicated_bytes: AtomicU64,
    /// Bytes written by restores that succeeded here (as their target).
    pub restored_bytes: AtomicU64,
    pub backups_succeeded: AtomicU64,
    pub backups_failed: AtomicU64,
    pub restores_succeeded: AtomicU64,
    pub restores_failed: AtomicU64,
}

pub static DATA: DataCounters = DataCounters {
    backed_up_bytes: AtomicU64::new(0),
    unchanged_bytes: AtomicU64::new(0),
    stored_bytes: AtomicU64::new(0),
    deduplicated_bytes: AtomicU64::new(0),
    restored_bytes: AtomicU64::new(0),
    backups_succeeded: AtomicU64::new(0),
    backups_failed: AtomicU64::new(0),
    restores_succeeded: AtomicU64::new(0),
    restores_failed: AtomicU64::new(0),
};

impl DataCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The jobs this node runs now, by job: the attempt and how to stop it.
pub struct Runs {
    running: Mutex<HashMap<JobRef, (u32, AbortHandle)>>,
    /// Where the runs go: the API's runtime. A dispatch arrives on the
    /// cluster-internal listener, which is served by the Raft runtime's one
    /// thread; a backup's sending and waiting must not share it with Raft.
    runtime: tokio::runtime::Handle,
}

impl Runs {
    /// Runs that start on `runtime`.
    pub fn on(runtime: tokio::runtime::Handle) -> Runs {
        Runs {
            running: Mutex::default(),
            runtime,
        }
    }

    /// Starts `attempt` of `job` with `run`, unless it runs already (a repeated
    /// dispatch); an older attempt of the job here is stopped first.
    pub fn start<F>(self: &std::sync::Arc<Self>, job: JobRef, attempt: u32, run: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut running = self.running.lock().expect("runs lock");
        if let Some((a, handle)) = running.get(&job) {
            if *a >= attempt && !handle.is_finished() {
                return;
            }
            handle.abort();
        }
        let runs = self.clone();
        let task = self.runtime.spawn(async move {
            run.await;
            let mut running = runs.running.lock().expect("runs lock");
            if running.get(&job).is_some_and(|(a, _)| *a == attempt) {
                running.remove(&job);
            }
        });
        running.insert(job, (attempt, task.abort_handle()));
    }
}

/// Why a job's run stopped before it could report its end.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    /// The cluster refused the report: the job moved on (another attempt, another
    /// manager) or ended; nothing more to do.
    #[error("the job moved on: {0}")]
    Superseded(String),
    /// No leader took the report for a long while.
    #[error("no leader took the report: {0}")]
    Unreported(String),
}

/// Proposes a job's report, trying again while no leader answers (up to about a
/// minute); a refusal means the run is over.
pub async fn report(node: &Node, command: Command) -> Result<(), Stop> {
    let mut wait = Duration::from_millis(100);
    let mut last = String::new();
    for _ in 0..12 {
        match leader::write(node, command.clone()).await {
            Ok(Response::Rejected(why)) => return Err(Stop::Superseded(why.to_string())),
            Ok(_) => return Ok(()),
            Err(e @ (ClusterError::NoLeader(_) | ClusterError::Unavailable(_))) => {
                last = e.to_string()
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(8));
    }
    Err(Stop::Unreported(last))
}

/// An error text short enough for the catalog (the model bounds what a command
/// may hold; a failure says what went wrong in one line).
pub fn short(error: impl std::fmt::Display) -> String {
    let text = error.to_string();
    match text.char_indices().nth(1000) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

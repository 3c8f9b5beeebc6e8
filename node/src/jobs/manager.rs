//! The backup manager: whichever node holds the role (the cluster manager hands
//! it out with an epoch) runs this loop; the others wait. Each tick (every
//! [`TICK`], and at once when a job is created or ends, so that a job starts
//! without waiting for the next one) it
//!
//! 1. runs due scheduled slots (`RunSlot`: once per slot, the latest one when
//!    several were missed),
//! 2. starts pending backups (placement, `StartJob`, dispatch to the source) and
//!    restores (dispatch to the target), failing one that cannot start within
//!    [`START_WAIT`],
//! 3. takes over jobs an earlier backup manager started (their next attempt,
//!    under this epoch), and restarts one whose run has gone quiet for
//!    [`STALL`] (up to [`MAX_ATTEMPTS`]),
//! 4. applies retention (`keep_last` succeeded backups per plan), and
//! 5. every [`CLEANUP_EVERY`], and at once after a succeeded backup went, removes
//!    from each storage node the manifests no
//!    backup in the catalog keeps there, then collects its garbage, and
//! 6. every [`SCRUB_EVERY`], verifies every succeeded backup's replicas,
//!    repairing what it can (jobs/verify.rs), one backup after the other.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bcm_raft_store::{
    Backup, Command, JobRef, JobStatus, Millis, NodeStatus, Outcome, Response, Restore, StateEvent,
};

use tokio::sync::broadcast::{self, error::TryRecvError};

use super::wire::{self, Parent, RunBackup, RunRestore};
use super::{placement, short};
use crate::cluster::{leader, now_ms, Node, SharedNode};
use crate::storage::client::StorageNode;

const TICK: Duration = Duration::from_millis(500);
/// A job whose run has reported nothing for this long is started again.
pub const STALL: Duration = Duration::from_secs(20);
pub const MAX_ATTEMPTS: u32 = 3;
/// A pending job that cannot start (no storage nodes, its node down) for this
/// long fails, saying why.
pub const START_WAIT: Duration = Duration::from_secs(60);
pub const CLEANUP_EVERY: Duration = Duration::from_secs(60);
pub const SCRUB_EVERY: Duration = Duration::from_secs(6 * 3600);
const DISPATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the loop remembers between ticks (only while it holds the role).
#[derive(Default)]
struct Memory {
    epoch: u64,
    /// Per running job: its last `updated_at` and when this loop saw it change.
    heard: HashMap<JobRef, (Millis, Instant)>,
    /// Per pending job: since when it could not start, and why.
    blocked: HashMap<JobRef, (Instant, String)>,
    last_cleanup: Option<Instant>,
    /// Places (a disk, a shared bucket) owed a garbage collection.
    gc_owed: BTreeSet<String>,
    /// The succeeded backups and their storage nodes at the last tick.
    kept: Option<BTreeSet<(u64, Vec<u64>)>>,
    /// The last scrub's start (the first one comes [`SCRUB_EVERY`] after the
    /// role did) and whether it still runs.
    last_scrub: Option<Instant>,
    scrub: Option<tokio::task::JoinHandle<()>>,
}

/// Returns once a backup or restore is created or ends here (or events were
/// missed: the tick that follows looks at everything).
async fn job_created_or_ended(changes: &mut broadcast::Receiver<StateEvent>) {
    use JobStatus::Running;
    loop {
        match changes.recv().await {
            Ok(
                StateEvent::BackupChanged { status, .. }
                | StateEvent::RestoreChanged { status, .. },
            ) if status != Running => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

pub async fn run(node: SharedNode) {
    let mut shutdown = node.shutdown.clone();
    let mut memory = Memory::default();
    let mut changes = node.state.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = job_created_or_ended(&mut changes) => {
                // One tick for a burst of them.
                while !matches!(changes.try_recv(), Err(TryRecvError::Empty | TryRecvError::Closed)) {}
            }
            _ = shutdown.changed() => return,
        }
        let mine = node.state.read(|d| {
            d.state
                .backup_manager
                .filter(|b| b.node_id == node.cfg.id)
                .map(|b| b.epoch)
        });
        let Some(epoch) = mine else {
            if let Some(old) = memory.scrub.take() {
                old.abort();
            }
            memory = Memory::default();
            continue;
        };
        if memory.epoch != epoch {
            // Newly the holder: catch up with everything committed first, so no
            // job is judged on a state older than the role.
            if let Err(e) = leader::read_barrier(&node).await {
                tracing::debug!("backup manager waits for the log: {e}");
                continue;
            }
            tracing::info!(epoch, "this node is the backup manager");
            if let Some(old) = memory.scrub.take() {
                old.abort();
            }
            memory = Memory {
                epoch,
                last_scrub: Some(Instant::now()),
                ..Memory::default()
            };
        }
        tick(&node, &mut memory).await;
    }
}

async fn tick(node: &SharedNode, memory: &mut Memory) {
    let epoch = memory.epoch;
    run_slots(node, epoch).await;
    let (backups, restores): (Vec<Backup>, Vec<Restore>) = node.state.read(|d| {
        let s = &d.state;
        let open = |st: JobStatus| matches!(st, JobStatus::Pending | JobStatus::Running);
        (
            s.backups
                .values()
                .filter(|b| open(b.status))
                .cloned()
                .collect(),
            s.restores
                .values()
                .filter(|r| open(r.status))
                .cloned()
                .collect(),
        )
    });
    let now = Instant::now();
    memory.heard.retain(|job, _| match job {
        JobRef::Backup(id) => backups.iter().any(|b| b.id == *id),
        JobRef::Restore(id) => restores.iter().any(|r| r.id == *id),
    });
    for b in &backups {
        let job = JobRef::Backup(b.id);
        if let Some(action) = next_step(memory, job, b.status, b.attempt, b.updated_at, now) {
            match action {
                Step::Start(attempt) => start_backup(node, memory, b, attempt).await,
                Step::GiveUp(error) => {
                    finish_failed(node, epoch, job, b.attempt.number, error).await
                }
            }
        }
    }
    for r in &restores {
        let job = JobRef::Restore(r.id);
        if let Some(action) = next_step(memory, job, r.status, r.attempt, r.updated_at, now) {
            match action {
                Step::Start(attempt) => start_restore(node, memory, r, attempt).await,
                Step::GiveUp(error) => {
                    finish_failed(node, epoch, job, r.attempt.number, error).await
                }
            }
        }
    }
    retention(node).await;
    // A succeeded backup deleted (or a replica moved) since the last tick: its
    // data goes now, not at the next round.
    let kept = node.state.read(|d| {
        d.state
            .backups
            .values()
            .filter(|b| b.status == JobStatus::Succeeded)
            .map(|b| (b.id, b.storage_nodes.clone()))
            .collect::<BTreeSet<_>>()
    });
    let changed = memory
        .kept
        .as_ref()
        .is_some_and(|before| before.iter().any(|b| !kept.contains(b)));
    memory.kept = Some(kept);
    if changed
        || memory
            .last_cleanup
            .is_none_or(|t| t.elapsed() >= CLEANUP_EVERY)
    {
        memory.last_cleanup = Some(Instant::now());
        super::cleanup::run(node, epoch, &mut memory.gc_owed).await;
    }
    let scrubbing = memory.scrub.as_ref().is_some_and(|t| !t.is_finished());
    if !scrubbing && memory.last_scrub.is_none_or(|t| t.elapsed() >= SCRUB_EVERY) {
        memory.last_scrub = Some(Instant::now());
        memory.scrub = Some(tokio::spawn(scrub(node.clone())));
    }
}

/// Verifies every succeeded backup, one after the other.
async fn scrub(node: SharedNode) {
    let ids: Vec<u64> = node.state.read(|d| {
        d.state
            .backups
            .values()
            .filter(|b| b.status == JobStatus::Succeeded)
            .map(|b| b.id)
            .collect()
    });
    let mut whole = 0;
    let mut not = Vec::new();
    for id in ids {
        let Some(b) = node.state.read(|d| d.state.backups.get(&id).cloned()) else {
            continue;
        };
        if b.status != JobStatus::Succeeded {
            continue;
        }
        if super::verify::verify(&node, &b).await.ok {
            whole += 1;
        } else {
            not.push(id);
        }
    }
    tracing::info!(whole, not_whole = ?not, "scrub done");
}

enum Step {
    /// Start this attempt (the first, a takeover, or a restart).
    Start(u32),
    GiveUp(String),
}

/// What a job needs now: started (pending, an earlier manager's, or quiet too
/// long), given up on (too many attempts), or nothing.
fn next_step(
    memory: &mut Memory,
    job: JobRef,
    status: JobStatus,
    attempt: bcm_raft_store::Attempt,
    updated_at: Millis,
    now: Instant,
) -> Option<Step> {
    if status == JobStatus::Pending {
        return Some(Step::Start(attempt.number + 1));
    }
    if attempt.epoch != memory.epoch {
        return Some(Step::Start(attempt.number + 1));
    }
    let heard = memory.heard.entry(job).or_insert((updated_at, now));
    if heard.0 != updated_at {
        *heard = (updated_at, now);
        return None;
    }
    if now.duration_since(heard.1) < STALL {
        return None;
    }
    memory.heard.remove(&job);
    if attempt.number >= MAX_ATTEMPTS {
        return Some(Step::GiveUp(format!(
            "no progress for {}s after {MAX_ATTEMPTS} attempts",
            STALL.as_secs()
        )));
    }
    tracing::warn!(
        ?job,
        attempt = attempt.number,
        "no progress for {STALL:?}; starting it again"
    );
    Some(Step::Start(attempt.number + 1))
}

/// Runs each scheduled plan's latest due slot, unless it ran already.
async fn run_slots(node: &Node, epoch: u64) {
    let now = now_ms();
    let due: Vec<(u64, Millis)> = node.state.read(|d| {
        let s = &d.state;
        s.plans
            .values()
            .filter(|p| p.spec.enabled)
            .filter_map(|p| {
                let slot = latest_slot(p.spec.schedule.as_deref()?, now)?;
                let ran = s.plan_slots.get(&p.id).copied().unwrap_or(0);
                (slot > ran && slot >= p.created_at).then_some((p.id, slot))
            })
            .collect()
    });
    for (plan, slot) in due {
        let cmd = Command::RunSlot {
            plan,
            slot,
            epoch,
            at: now,
        };
        match leader::write(node, cmd).await {
            Ok(Response::Backup(b)) => {
                tracing::info!(plan, slot, backup = b.id, "scheduled backup created")
            }
            Ok(other) => tracing::debug!(plan, slot, "slot not run: {other:?}"),
            Err(e) => tracing::debug!(plan, slot, "slot not run: {e}"),
        }
    }
}

/// The most recent time at or before `now` (Unix ms, UTC) that `schedule`
/// names.
pub fn latest_slot(schedule: &str, now: Millis) -> Option<Millis> {
    let cron: croner::Cron = schedule.parse().ok()?;
    let at = chrono::DateTime::from_timestamp_millis(now as i64)?;
    let slot = cron.find_previous_occurrence(&at, true).ok()?;
    u64::try_from(slot.timestamp_millis()).ok()
}

/// A job this manager cannot start: remembered, and failed after
/// [`START_WAIT`] (a pending one) with why.
async fn blocked(node: &Node, memory: &mut Memory, job: JobRef, attempt: u32, why: String) {
    let since = memory
        .blocked
        .entry(job)
        .or_insert_with(|| (Instant::now(), why.clone()));
    since.1 = why.clone();
    if since.0.elapsed() >= START_WAIT {
        memory.blocked.remove(&job);
        let epoch = memory.epoch;
        finish_failed(node, epoch, job, attempt.saturating_sub(1), why).await;
    } else {
        tracing::debug!(?job, "cannot start yet: {why}");
    }
}

/// Whether node `id` is registered, enabled and up; why not otherwise.
fn usable(node: &Node, id: u64) -> Result<String, String> {
    node.state.read(|d| match d.state.nodes.get(&id) {
        None => Err(format!("node {id} is not registered")),
        Some(n) if !n.enabled => Err(format!("node {id} is disabled")),
        Some(n) if n.status != NodeStatus::Up => Err(format!("node {id} is {}", n.status.as_str())),
        Some(n) => Ok(n.rpc_addr.clone()),
    })
}

async fn start_backup(node: &Node, memory: &mut Memory, b: &Backup, attempt: u32) {
    let job = JobRef::Backup(b.id);
    let source = match usable(node, b.source_node) {
        Ok(rpc) => rpc,
        Err(why) => {
            let why = format!("its source {why}");
            return blocked(node, memory, job, attempt, why).await;
        }
    };
    // A takeover keeps the replicas' nodes that answer (the chunks they got
    // stay useful); a first start prefers the plan's previous backup's.
    let sticky = if b.status == JobStatus::Running {
        b.storage_nodes.clone()
    } else {
        placement::previous_home(node, b)
    };
    let replicas = match placement::choose(node, b.replicas, &sticky, &[]).await {
        Ok(r) => r,
        Err(why) => return blocked(node, memory, job, attempt, why).await,
    };
    memory.blocked.remove(&job);
    let nodes: Vec<u64> = replicas.iter().map(|r| r.id).collect();
    if !propose_start(node, memory.epoch, job, attempt, nodes).await {
        return;
    }
    let parent = placement::previous(node, b).map(|(backup, holders)| Parent {
        backup,
        holders: placement::addressed(node, &holders),
    });
    let run = RunBackup {
        backup: b.id,
        attempt,
        epoch: memory.epoch,
        paths: b.paths.clone(),
        replicas,
        parent,
    };
    dispatch(node, &source, wire::PATH_BACKUP, &run, job).await;
}

async fn start_restore(node: &Node, memory: &mut Memory, r: &Restore, attempt: u32) {
    let job = JobRef::Restore(r.id);
    let target = match usable(node, r.target_node) {
        Ok(rpc) => rpc,
        Err(why) => {
            let why = format!("its target {why}");
            return blocked(node, memory, job, attempt, why).await;
        }
    };
    let holder_ids = node
        .state
        .read(|d| {
            d.state
                .backups
                .get(&r.backup)
                .map(|b| b.storage_nodes.clone())
        })
        .unwrap_or_default();
    let holders: Vec<StorageNode> = placement::addressed(node, &holder_ids)
        .into_iter()
        .filter(|h| usable(node, h.id).is_ok())
        .collect();
    if holders.is_empty() {
        let why = format!(
            "no storage node holding backup {} is up (it is on {holder_ids:?})",
            r.backup
        );
        return blocked(node, memory, job, attempt, why).await;
    }
    memory.blocked.remove(&job);
    if !propose_start(node, memory.epoch, job, attempt, Vec::new()).await {
        return;
    }
    let run = RunRestore {
        restore: r.id,
        attempt,
        epoch: memory.epoch,
        backup: r.backup,
        holders,
        target_path: r.target_path.clone(),
        overwrite: r.overwrite,
        include: r.include.clone(),
    };
    dispatch(node, &target, wire::PATH_RESTORE, &run, job).await;
}

async fn propose_start(
    node: &Node,
    epoch: u64,
    job: JobRef,
    attempt: u32,
    nodes: Vec<u64>,
) -> bool {
    let cmd = Command::StartJob {
        job,
        epoch,
        attempt,
        nodes,
        at: now_ms(),
    };
    match leader::write(node, cmd).await {
        Ok(Response::Rejected(why)) => {
            tracing::debug!(?job, attempt, "not started: {why}");
            false
        }
        Ok(_) => {
            tracing::info!(?job, attempt, epoch, "job started");
            true
        }
        Err(e) => {
            tracing::debug!(?job, attempt, "not started: {e}");
            false
        }
    }
}

/// Hands the job to the node that runs it. A lost dispatch shows as a quiet
/// job, started again after [`STALL`].
async fn dispatch<T: serde::Serialize>(
    node: &Node,
    rpc: &str,
    path: &'static str,
    run: &T,
    job: JobRef,
) {
    if let Err(e) = node
        .peers
        .call::<_, ()>(rpc, path, run, DISPATCH_TIMEOUT)
        .await
    {
        tracing::warn!(?job, "could not hand the job over: {e}");
    }
}

async fn finish_failed(node: &Node, epoch: u64, job: JobRef, attempt: u32, error: String) {
    let cmd = Command::FinishJob {
        job,
        epoch,
        attempt,
        outcome: Outcome::Failed {
            error: short(&error),
        },
        at: now_ms(),
    };
    match leader::write(node, cmd).await {
        Ok(Response::Rejected(why)) => tracing::debug!(?job, "not failed: {why}"),
        Ok(_) => tracing::warn!(?job, "failed: {error}"),
        Err(e) => tracing::debug!(?job, "not failed: {e}"),
    }
}

/// Deletes each plan's succeeded backups beyond its `keep_last` newest.
async fn retention(node: &Node) {
    let old: Vec<u64> = node.state.read(|d| {
        let s = &d.state;
        let mut by_plan: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for b in s
            .backups
            .values()
            .filter(|b| b.status == JobStatus::Succeeded)
        {
            if let Some(p) = b.plan {
                by_plan.entry(p).or_default().push(b.id);
            }
        }
        by_plan
            .into_iter()
            .filter_map(|(p, ids)| Some((s.plans.get(&p)?.spec.keep_last as usize, ids)))
            .flat_map(|(keep, mut ids)| {
                ids.sort_unstable_by(|a, b| b.cmp(a));
                ids.into_iter().skip(keep)
            })
            .collect()
    });
    for id in old {
        match leader::write(node, Command::DeleteBackup { id }).await {
            Ok(Response::Rejected(why)) => tracing::debug!(backup = id, "not pruned: {why}"),
            Ok(_) => tracing::info!(backup = id, "pruned (keep_last)"),
            Err(e) => tracing::debug!(backup = id, "not pruned: {e}"),
        }
    }
}

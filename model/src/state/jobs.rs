//! Jobs under way: the backup manager starts an attempt of a backup or a restore,
//! the node running it reports progress and the end, and scheduled slots create
//! backups. Every such command carries the backup manager's epoch and is refused
//! unless it is the current one; reports name their attempt and are refused
//! unless it is the job's current one. So a job succeeds at most once, and a run
//! the job has moved on from (an older manager's, a restarted attempt's) changes
//! nothing.

use super::catalog::{backup_changed, restore_changed};
use super::{conflict, invalid, not_found, Applied, ClusterState};
use crate::command::Rejection;
use crate::records::{Attempt, JobRef, JobStatus, Millis, Outcome, Progress, Role};

/// What every job has that a run changes.
struct Run<'a> {
    status: &'a mut JobStatus,
    attempt: &'a mut Attempt,
    progress: &'a mut Option<Progress>,
    error: &'a mut Option<String>,
    updated_at: &'a mut Millis,
    finished_at: &'a mut Option<Millis>,
}

impl ClusterState {
    /// Refuses a command of any backup manager but the current one.
    fn check_epoch(&self, epoch: u64) -> Option<Applied> {
        self.stale(epoch).map(Applied::rejected)
    }

    fn stale(&self, epoch: u64) -> Option<Rejection> {
        let current = self.backup_manager.map_or(0, |b| b.epoch);
        (epoch != current || current == 0).then_some(Rejection::StaleEpoch {
            proposed: epoch,
            current,
        })
    }

    fn run_of(&mut self, job: JobRef) -> Option<Run<'_>> {
        match job {
            JobRef::Backup(id) => self.backups.get_mut(&id).map(|b| Run {
                status: &mut b.status,
                attempt: &mut b.attempt,
                progress: &mut b.progress,
                error: &mut b.error,
                updated_at: &mut b.updated_at,
                finished_at: &mut b.finished_at,
            }),
            JobRef::Restore(id) => self.restores.get_mut(&id).map(|r| Run {
                status: &mut r.status,
                attempt: &mut r.attempt,
                progress: &mut r.progress,
                error: &mut r.error,
                updated_at: &mut r.updated_at,
                finished_at: &mut r.finished_at,
            }),
        }
    }

    /// The answer to a command that changed `job`.
    fn job_changed(&self, job: JobRef) -> Applied {
        match job {
            JobRef::Backup(id) => backup_changed(self.backups[&id].clone()),
            JobRef::Restore(id) => restore_changed(self.restores[&id].clone()),
        }
    }

    /// The storage nodes a backup's replicas go to: `replicas` distinct
    /// registered nodes with role `storage`.
    fn check_placement(&self, replicas: u32, nodes: &[u64]) -> Option<Applied> {
        let mut distinct = nodes.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != nodes.len() {
            return Some(invalid("two replicas of a backup cannot be on one node"));
        }
        if nodes.len() != replicas as usize {
            return Some(invalid(format!(
                "a backup with {replicas} replica(s) needs as many storage nodes, not {}",
                nodes.len()
            )));
        }
        nodes.iter().find_map(|n| match self.nodes.get(n) {
            Some(r) if r.has_role(Role::Storage) => None,
            Some(_) => Some(invalid(format!("node {n} does not have role storage"))),
            None => Some(invalid(format!("node {n} is not a registered node"))),
        })
    }

    pub(super) fn start_job(
        &mut self,
        job: JobRef,
        epoch: u64,
        attempt: u32,
        nodes: &[u64],
        at: Millis,
    ) -> Applied {
        if let Some(refused) = self.check_epoch(epoch) {
            return refused;
        }
        let placement = match job {
            JobRef::Backup(id) => match self.backups.get(&id) {
                Some(b) => self.check_placement(b.replicas, nodes),
                None => return not_found("backup", id),
            },
            JobRef::Restore(_) if !nodes.is_empty() => {
                Some(invalid("a restore is not placed on storage nodes"))
            }
            JobRef::Restore(_) => None,
        };
        let Some(run) = self.run_of(job) else {
            return not_found(job.what(), job.id());
        };
        let (what, id) = (job.what(), job.id());
        if !matches!(run.status, JobStatus::Pending | JobStatus::Running) {
            return conflict(format!(
                "{what} {id} is {}: it cannot start again",
                run.status.as_str()
            ));
        }
        if attempt != run.attempt.number + 1 {
            return conflict(format!(
                "{what} {id} is at attempt {}: attempt {attempt} cannot start",
                run.attempt.number
            ));
        }
        if let Some(refused) = placement {
            return refused;
        }
        *run.status = JobStatus::Running;
        *run.attempt = Attempt {
            number: attempt,
            epoch,
            started_at: Some(at),
        };
        *run.progress = Some(Progress::default());
        *run.error = None;
        *run.updated_at = at;
        if let JobRef::Backup(id) = job {
            self.backups
                .get_mut(&id)
                .expect("found above")
                .storage_nodes = nodes.to_vec();
        }
        self.job_changed(job)
    }

    /// The run of `job` if `epoch` is the current one, `attempt` the job's, and
    /// it runs under that epoch; the refusal otherwise. The current backup
    /// manager may also give up on (`failing`) a job of an earlier one, and on
    /// a pending job (attempt 0) it cannot start.
    fn current_run(
        &mut self,
        job: JobRef,
        epoch: u64,
        attempt: u32,
        failing: bool,
    ) -> Result<Run<'_>, Rejection> {
        if let Some(stale) = self.stale(epoch) {
            return Err(stale);
        }
        let (what, id) = (job.what(), job.id());
        let run = self.run_of(job).ok_or_else(|| Rejection::NotFound {
            what: what.into(),
            id: id.to_string(),
        })?;
        let pending = failing && *run.status == JobStatus::Pending && attempt == 0;
        if *run.status != JobStatus::Running && !pending {
            return Err(Rejection::Conflict(format!(
                "{what} {id} is {}, not running",
                run.status.as_str()
            )));
        }
        if run.attempt.number != attempt || (!failing && run.attempt.epoch != epoch) {
            return Err(Rejection::Conflict(format!(
                "{what} {id} runs attempt {} (epoch {}), not attempt {attempt} (epoch {epoch})",
                run.attempt.number, run.attempt.epoch
            )));
        }
        Ok(run)
    }

    pub(super) fn job_progress(
        &mut self,
        job: JobRef,
        epoch: u64,
        attempt: u32,
        progress: &Progress,
        at: Millis,
    ) -> Applied {
        match self.current_run(job, epoch, attempt, false) {
            Ok(run) => {
                *run.progress = Some(*progress);
                *run.updated_at = at;
            }
            Err(refused) => return Applied::rejected(refused),
        }
        self.job_changed(job)
    }

    pub(super) fn finish_job(
        &mut self,
        job: JobRef,
        epoch: u64,
        attempt: u32,
        outcome: &Outcome,
        at: Millis,
    ) -> Applied {
        let fits = matches!(
            (job, outcome),
            (_, Outcome::Failed { .. })
                | (JobRef::Backup(_), Outcome::BackupDone { .. })
                | (JobRef::Restore(_), Outcome::RestoreDone { .. })
        );
        if !fits {
            return invalid(format!("that is not how a {} ends", job.what()));
        }
        if let Outcome::BackupDone { storage_nodes, .. } = outcome {
            let id = job.id();
            let Some(b) = self.backups.get(&id) else {
                return not_found("backup", id);
            };
            if storage_nodes.is_empty()
                || storage_nodes.iter().any(|n| !b.storage_nodes.contains(n))
            {
                return invalid(format!(
                    "backup {id}'s replicas can only be on the nodes it was given, {:?}",
                    b.storage_nodes
                ));
            }
        }
        let failed = matches!(outcome, Outcome::Failed { .. });
        match self.current_run(job, epoch, attempt, failed) {
            Ok(run) => {
                *run.status = match outcome {
                    Outcome::Failed { error } => {
                        *run.error = Some(error.clone());
                        JobStatus::Failed
                    }
                    _ => JobStatus::Succeeded,
                };
                *run.updated_at = at;
                *run.finished_at = Some(at);
            }
            Err(refused) => return Applied::rejected(refused),
        }
        match (job, outcome) {
            (
                JobRef::Backup(id),
                Outcome::BackupDone {
                    files,
                    size_bytes,
                    stored_bytes,
                    storage_nodes,
                },
            ) => {
                let b = self.backups.get_mut(&id).expect("checked above");
                b.files = Some(*files);
                b.size_bytes = Some(*size_bytes);
                b.stored_bytes = Some(*stored_bytes);
                b.storage_nodes = storage_nodes.clone();
            }
            (JobRef::Restore(id), Outcome::RestoreDone { files, bytes }) => {
                let r = self.restores.get_mut(&id).expect("checked above");
                r.files = Some(*files);
                r.bytes = Some(*bytes);
            }
            _ => {}
        }
        self.job_changed(job)
    }

    pub(super) fn run_slot(&mut self, plan: u64, slot: Millis, epoch: u64, at: Millis) -> Applied {
        if let Some(refused) = self.check_epoch(epoch) {
            return refused;
        }
        let Some(p) = self.plans.get(&plan) else {
            return not_found("plan", plan);
        };
        if !p.spec.enabled || p.spec.schedule.is_none() {
            return conflict(format!("plan {plan} is not scheduled"));
        }
        if let Some(last) = self.plan_slots.get(&plan).filter(|last| **last >= slot) {
            return conflict(format!(
                "plan {plan} already ran for the slot at {last} ms, not earlier than {slot} ms"
            ));
        }
        let applied = self.create_backup(Some(plan), None, &[], Some(slot), at);
        if !matches!(applied.response, crate::command::Response::Rejected(_)) {
            self.plan_slots.insert(plan, slot);
        }
        applied
    }

    pub(super) fn move_replica(
        &mut self,
        backup: u64,
        from: u64,
        to: u64,
        epoch: u64,
        at: Millis,
    ) -> Applied {
        if let Some(refused) = self.check_epoch(epoch) {
            return refused;
        }
        let Some(b) = self.backups.get(&backup) else {
            return not_found("backup", backup);
        };
        if b.status != JobStatus::Succeeded {
            return conflict(format!(
                "backup {backup} is {}: only a succeeded backup's replicas move",
                b.status.as_str()
            ));
        }
        if !b.storage_nodes.contains(&from) {
            return conflict(format!("backup {backup} has no replica on node {from}"));
        }
        if b.storage_nodes.contains(&to) {
            return conflict(format!(
                "backup {backup} has a replica on node {to} already"
            ));
        }
        match self.nodes.get(&to) {
            Some(n) if n.has_role(Role::Storage) => {}
            Some(_) => return invalid(format!("node {to} does not have role storage")),
            None => return invalid(format!("node {to} is not a registered node")),
        }
        let b = self.backups.get_mut(&backup).expect("looked up above");
        for n in b.storage_nodes.iter_mut().filter(|n| **n == from) {
            *n = to;
        }
        b.updated_at = at;
        backup_changed(b.clone())
    }
}

#[cfg(test)]
mod tests;

use crate::command::{Command, Rejection, Response};
use crate::records::{JobRef, JobStatus, Outcome, PlanSpec, Progress, Role};
use crate::state::fixtures::{initialized, register};
use crate::state::ClusterState;

/// A cluster of four nodes (1-3 storage, 4 a plain one), node 1 the backup
/// manager at epoch 1, and one pending backup (id 1) of plan 1 (2 replicas,
/// scheduled, from node 4).
fn with_a_backup() -> ClusterState {
    let mut s = initialized();
    let all = vec![Role::Manager, Role::BackupManager, Role::Storage];
    for id in 1..=3 {
        s.apply(1 + id, &register(id, all.clone(), 1));
    }
    s.apply(5, &register(4, vec![Role::Manager], 1));
    assign(&mut s, 6, 1, 1);
    let spec = PlanSpec {
        name: "etc".into(),
        source_node: 4,
        paths: vec!["/etc".into()],
        schedule: Some("0 * * * *".into()),
        keep_last: 3,
        replicas: 2,
        enabled: true,
    };
    s.apply(7, &Command::CreatePlan { spec, at: 7 });
    let made = s.apply(
        8,
        &Command::CreateBackup {
            plan: Some(1),
            source_node: None,
            paths: vec![],
            at: 8,
        },
    );
    assert!(matches!(made.response, Response::Backup(_)));
    s
}

fn assign(s: &mut ClusterState, index: u64, node_id: u64, epoch: u64) {
    let r = s.apply(
        index,
        &Command::AssignBackupManager {
            node_id,
            epoch,
            at: index,
        },
    );
    assert_eq!(r.response, Response::Done);
}

fn start(job: JobRef, epoch: u64, attempt: u32, nodes: &[u64]) -> Command {
    Command::StartJob {
        job,
        epoch,
        attempt,
        nodes: nodes.to_vec(),
        at: 100,
    }
}

fn done(epoch: u64, attempt: u32, storage_nodes: &[u64]) -> Command {
    Command::FinishJob {
        job: JobRef::Backup(1),
        epoch,
        attempt,
        outcome: Outcome::BackupDone {
            files: 10,
            size_bytes: 1000,
            stored_bytes: 400,
            storage_nodes: storage_nodes.to_vec(),
        },
        at: 200,
    }
}

fn progress(epoch: u64, attempt: u32) -> Command {
    Command::JobProgress {
        job: JobRef::Backup(1),
        epoch,
        attempt,
        progress: Progress {
            files_done: 3,
            bytes_done: 300,
            files_total: None,
            bytes_total: None,
        },
        at: 150,
    }
}

fn rejection(r: &Response) -> &Rejection {
    match r {
        Response::Rejected(why) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_backup_starts_reports_progress_and_succeeds_once() {
    let mut s = with_a_backup();
    let r = s.apply(9, &start(JobRef::Backup(1), 1, 1, &[2, 3]));
    let Response::Backup(b) = r.response else {
        panic!("{:?}", r.response)
    };
    assert_eq!(
        (b.status, b.attempt.number, b.attempt.epoch),
        (JobStatus::Running, 1, 1)
    );
    assert_eq!(b.storage_nodes, vec![2, 3]);
    s.apply(10, &progress(1, 1));
    assert_eq!(s.backups[&1].progress.unwrap().files_done, 3);
    let r = s.apply(11, &done(1, 1, &[2, 3]));
    let Response::Backup(b) = r.response else {
        panic!("{:?}", r.response)
    };
    assert_eq!(b.status, JobStatus::Succeeded);
    assert_eq!(
        (b.files, b.size_bytes, b.stored_bytes),
        (Some(10), Some(1000), Some(400))
    );
    assert_eq!(b.finished_at, Some(200));
    // Reported again (a retry, a duplicate): refused, nothing changes.
    let before = s.clone();
    assert!(matches!(
        rejection(&s.apply(12, &done(1, 1, &[2, 3])).response),
        Rejection::Conflict(_)
    ));
    assert!(matches!(
        rejection(
            &s.apply(13, &start(JobRef::Backup(1), 1, 2, &[2, 3]))
                .response
        ),
        Rejection::Conflict(_)
    ));
    assert_eq!(s, before);
}

#[test]
fn a_new_backup_manager_restarts_a_job_and_the_old_run_is_refused() {
    let mut s = with_a_backup();
    s.apply(9, &start(JobRef::Backup(1), 1, 1, &[2, 3]));
    assign(&mut s, 10, 2, 2);
    // The old manager's run, and the old manager itself, can no longer write.
    for cmd in [
        progress(1, 1),
        done(1, 1, &[2, 3]),
        start(JobRef::Backup(1), 1, 2, &[1, 2]),
    ] {
        let r = s.apply(11, &cmd);
        assert_eq!(
            rejection(&r.response),
            &Rejection::StaleEpoch {
                proposed: 1,
                current: 2
            }
        );
    }
    // The new one adopts it as attempt 2; a report of attempt 1 under the new
    // epoch is refused too.
    let r = s.apply(12, &start(JobRef::Backup(1), 2, 2, &[1, 3]));
    assert!(
        matches!(r.response, Response::Backup(_)),
        "{:?}",
        r.response
    );
    assert!(matches!(
        rejection(&s.apply(13, &done(2, 1, &[1, 3])).response),
        Rejection::Conflict(_)
    ));
    // Attempt numbers do not skip.
    assert!(matches!(
        rejection(
            &s.apply(14, &start(JobRef::Backup(1), 2, 4, &[1, 3]))
                .response
        ),
        Rejection::Conflict(_)
    ));
    s.apply(15, &done(2, 2, &[1, 3]));
    assert_eq!(s.backups[&1].status, JobStatus::Succeeded);
    assert_eq!(s.backups[&1].attempt.number, 2);
}

#[test]
fn replicas_go_to_distinct_storage_nodes_as_many_as_the_plan_wants() {
    let mut s = with_a_backup();
    for nodes in [&[2, 2][..], &[2], &[1, 2, 3], &[2, 4], &[2, 9]] {
        let r = s.apply(9, &start(JobRef::Backup(1), 1, 1, nodes));
        assert!(
            matches!(rejection(&r.response), Rejection::Invalid(_)),
            "{nodes:?}"
        );
    }
    assert_eq!(s.backups[&1].status, JobStatus::Pending);
    // It finishes on the nodes it was given, not others.
    s.apply(10, &start(JobRef::Backup(1), 1, 1, &[1, 2]));
    let r = s.apply(11, &done(1, 1, &[1, 3]));
    assert!(matches!(rejection(&r.response), Rejection::Invalid(_)));
}

#[test]
fn a_scheduled_slot_makes_one_backup_and_earlier_slots_are_refused() {
    let mut s = with_a_backup();
    let slot = |slot, epoch| Command::RunSlot {
        plan: 1,
        slot,
        epoch,
        at: slot + 5,
    };
    let r = s.apply(9, &slot(3_600_000, 1));
    let Response::Backup(b) = r.response else {
        panic!("{:?}", r.response)
    };
    assert_eq!(
        (b.id, b.slot, b.replicas, b.status),
        (2, Some(3_600_000), 2, JobStatus::Pending)
    );
    for (at, again) in [(10, 3_600_000), (11, 0)] {
        assert!(matches!(
            rejection(&s.apply(at, &slot(again, 1)).response),
            Rejection::Conflict(_)
        ));
    }
    assert!(matches!(
        rejection(&s.apply(12, &slot(7_200_000, 0)).response),
        Rejection::StaleEpoch { .. }
    ));
    assert!(matches!(
        s.apply(13, &slot(7_200_000, 1)).response,
        Response::Backup(_)
    ));
    assert_eq!(s.backups.len(), 3);
}

#[test]
fn a_restore_runs_with_its_options_and_ends_its_own_way() {
    let mut s = with_a_backup();
    s.apply(9, &start(JobRef::Backup(1), 1, 1, &[2, 3]));
    s.apply(10, &done(1, 1, &[2, 3]));
    let r = s.apply(
        11,
        &Command::RequestRestore {
            backup: 1,
            target_node: 4,
            target_path: "/restore".into(),
            overwrite: true,
            include: Some("etc/ssh".into()),
            at: 11,
        },
    );
    let Response::Restore(r) = r.response else {
        panic!("{:?}", r.response)
    };
    assert!(r.overwrite && r.include.as_deref() == Some("etc/ssh"));
    let job = JobRef::Restore(r.id);
    assert!(matches!(
        rejection(&s.apply(12, &start(job, 1, 1, &[2])).response),
        Rejection::Invalid(_)
    ));
    s.apply(13, &start(job, 1, 1, &[]));
    let wrong = Command::FinishJob {
        job,
        epoch: 1,
        attempt: 1,
        outcome: done_outcome(),
        at: 14,
    };
    assert!(matches!(
        rejection(&s.apply(14, &wrong).response),
        Rejection::Invalid(_)
    ));
    let ok = Command::FinishJob {
        job,
        epoch: 1,
        attempt: 1,
        outcome: Outcome::RestoreDone {
            files: 10,
            bytes: 1000,
        },
        at: 15,
    };
    s.apply(15, &ok);
    let r = &s.restores[&r.id];
    assert_eq!(
        (r.status, r.files, r.bytes),
        (JobStatus::Succeeded, Some(10), Some(1000))
    );
}

fn done_outcome() -> Outcome {
    Outcome::BackupDone {
        files: 1,
        size_bytes: 1,
        stored_bytes: 1,
        storage_nodes: vec![2],
    }
}

#[test]
fn a_failed_attempt_says_why_and_is_final() {
    let mut s = with_a_backup();
    s.apply(9, &start(JobRef::Backup(1), 1, 1, &[2, 3]));
    let failed = Command::FinishJob {
        job: JobRef::Backup(1),
        epoch: 1,
        attempt: 1,
        outcome: Outcome::Failed {
            error: "source path /etc: gone".into(),
        },
        at: 20,
    };
    s.apply(10, &failed);
    let b = &s.backups[&1];
    assert_eq!(
        (b.status, b.error.as_deref()),
        (JobStatus::Failed, Some("source path /etc: gone"))
    );
    assert!(matches!(
        rejection(
            &s.apply(11, &start(JobRef::Backup(1), 1, 2, &[2, 3]))
                .response
        ),
        Rejection::Conflict(_)
    ));
}

#[test]
fn a_pending_job_that_cannot_start_is_failed_by_the_backup_manager_only() {
    let mut s = with_a_backup();
    let give_up = |epoch, attempt| Command::FinishJob {
        job: JobRef::Backup(1),
        epoch,
        attempt,
        outcome: Outcome::Failed {
            error: "2 replicas need as many storage nodes; 1 is up".into(),
        },
        at: 30,
    };
    assert!(matches!(
        rejection(&s.apply(9, &give_up(0, 0)).response),
        Rejection::StaleEpoch { .. }
    ));
    assert!(matches!(
        rejection(&s.apply(10, &give_up(1, 1)).response),
        Rejection::Conflict(_)
    ));
    // Only a failure ends a job that never started.
    rejection(&s.apply(11, &done(1, 0, &[2, 3])).response);
    assert_eq!(s.backups[&1].status, JobStatus::Pending);
    s.apply(12, &give_up(1, 0));
    assert_eq!(s.backups[&1].status, JobStatus::Failed);
}

fn move_replica(from: u64, to: u64, epoch: u64) -> Command {
    Command::MoveReplica {
        backup: 1,
        from,
        to,
        epoch,
        at: 300,
    }
}

#[test]
fn a_succeeded_backups_replica_moves_to_another_storage_node_once() {
    let mut s = with_a_backup();
    // Not before it succeeded.
    assert!(matches!(
        rejection(&s.apply(9, &move_replica(2, 1, 1)).response),
        Rejection::Conflict(_)
    ));
    s.apply(10, &start(JobRef::Backup(1), 1, 1, &[2, 3]));
    s.apply(11, &done(1, 1, &[2, 3]));
    let before = s.clone();
    for (index, cmd) in [
        (12, move_replica(2, 1, 0)), // a stale epoch
        (13, move_replica(1, 2, 1)), // no replica on 1
        (14, move_replica(2, 3, 1)), // 3 holds one already
        (15, move_replica(2, 4, 1)), // 4 keeps no chunks
        (16, move_replica(2, 9, 1)), // not a node
    ] {
        assert!(
            matches!(s.apply(index, &cmd).response, Response::Rejected(_)),
            "{cmd:?}"
        );
    }
    assert_eq!(s, before);
    let r = s.apply(17, &move_replica(2, 1, 1));
    let Response::Backup(b) = r.response else {
        panic!("{:?}", r.response)
    };
    assert_eq!(b.storage_nodes, vec![1, 3]);
    assert_eq!(s.backups[&1].storage_nodes, vec![1, 3]);
    assert!(matches!(
        s.apply(18, &move_replica(2, 1, 1)).response,
        Response::Rejected(_)
    ));
}

//! Values of every kind, as a cluster makes them: the valid encodings the fuzz
//! targets of this crate and of the crates that carry commands (raft-store's log,
//! node's RPC bodies) start their mutations from.

use std::collections::{BTreeMap, BTreeSet};

use crate::records::{JobRef, JobStatus, NodeStatus, Outcome, PlanSpec, Progress, Role};
use crate::{ClusterState, Command, NodeInfo, NodePatch, Response};

/// Node `id` as it registers, with every role.
pub fn info(id: u64) -> NodeInfo {
    NodeInfo {
        id,
        name: format!("node-{id}"),
        api_addr: format!("http://127.0.0.1:{}", 8080 + id),
        rpc_addr: format!("http://127.0.0.1:{}", 9080 + id),
        roles: vec![Role::Manager, Role::BackupManager, Role::Storage],
    }
}

/// A plan named `name`, with every field set.
pub fn spec(name: &str) -> PlanSpec {
    PlanSpec {
        name: name.into(),
        source_node: 1,
        paths: vec!["/srv/data".into(), "/etc".into()],
        schedule: Some("0 3 * * *".into()),
        keep_last: 7,
        replicas: 2,
        enabled: true,
    }
}

/// Every kind of command, with values like those a cluster proposes, in an
/// order that applies (so that the responses and the state are real ones too).
pub fn commands() -> Vec<Command> {
    let put = |key: &str, value: &str| Command::PutConfig {
        key: key.into(),
        value_json: value.into(),
        if_version: None,
        at: 20,
    };
    vec![
        Command::InitCluster {
            cluster_id: "c-7f3a".into(),
            token_key: vec![7; 32],
            admin_password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            at: 1_700_000_000_000,
        },
        Command::RegisterNode {
            info: info(1),
            at: 2,
        },
        Command::AddNode {
            info: info(2),
            at: 3,
        },
        Command::UpdateNode {
            id: 2,
            patch: NodePatch {
                roles: Some(vec![Role::Storage]),
                enabled: Some(true),
                labels: Some(BTreeMap::from([("rack".into(), "a".into())])),
            },
        },
        Command::SetNodeStatus {
            id: 2,
            status: NodeStatus::Up,
            at: 4,
        },
        Command::AssignBackupManager {
            node_id: 1,
            epoch: 1,
            at: 5,
        },
        put("backup.retention", "{\"days\":30}"),
        Command::PutConfig {
            key: "backup.retention".into(),
            value_json: "1".into(),
            if_version: Some(3),
            at: 21,
        },
        Command::DeleteConfig {
            key: "nothing.here".into(),
            if_version: Some(0),
        },
        Command::CreateUser {
            name: "alice".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$YQ$Yg".into(),
            groups: vec!["viewer".into()],
            at: 6,
        },
        Command::PutGroup {
            name: "auditors".into(),
            permissions: BTreeSet::from(["config.read".into(), "users.read".into()]),
            create: true,
        },
        Command::UpdateUser {
            id: 2,
            enabled: Some(false),
            password_hash: Some("$argon2id$v=19$x".into()),
            groups: Some(vec!["auditors".into()]),
        },
        Command::CreatePlan {
            spec: spec("etc"),
            at: 7,
        },
        Command::UpdatePlan {
            id: 1,
            spec: spec("etc-nightly"),
        },
        Command::CreateBackup {
            plan: Some(1),
            source_node: None,
            paths: vec![],
            at: 8,
        },
        Command::CreateBackup {
            plan: None,
            source_node: Some(1),
            paths: vec!["/home".into()],
            at: 8,
        },
        Command::StartJob {
            job: JobRef::Backup(1),
            epoch: 1,
            attempt: 1,
            nodes: vec![1, 2],
            at: 9,
        },
        Command::JobProgress {
            job: JobRef::Backup(1),
            epoch: 1,
            attempt: 1,
            progress: Progress {
                files_done: 3,
                bytes_done: 4096,
                files_total: Some(10),
                bytes_total: None,
            },
            at: 10,
        },
        Command::FinishJob {
            job: JobRef::Backup(1),
            epoch: 1,
            attempt: 1,
            outcome: Outcome::BackupDone {
                files: 10,
                size_bytes: 1 << 20,
                stored_bytes: 1 << 19,
                storage_nodes: vec![1, 2],
            },
            at: 11,
        },
        Command::SetBackupStatus {
            id: 2,
            status: JobStatus::Failed,
            size_bytes: Some(0),
            storage_nodes: Some(vec![]),
            error: Some("the source node is gone".into()),
            at: 12,
        },
        Command::RequestRestore {
            backup: 1,
            target_node: 2,
            target_path: "/restore".into(),
            overwrite: true,
            include: Some("etc/hosts".into()),
            at: 13,
        },
        Command::CreateRestore {
            backup: 1,
            target_node: 1,
            target_path: "/restore-old".into(),
            at: 13,
        },
        Command::SetRestoreStatus {
            id: 2,
            status: JobStatus::Cancelled,
            error: None,
            at: 14,
        },
        Command::FinishJob {
            job: JobRef::Restore(1),
            epoch: 1,
            attempt: 0,
            outcome: Outcome::Failed {
                error: "no holder answers".into(),
            },
            at: 15,
        },
        Command::RunSlot {
            plan: 1,
            slot: 1_700_000_060_000,
            epoch: 1,
            at: 16,
        },
        Command::MoveReplica {
            backup: 1,
            from: 2,
            to: 1,
            epoch: 1,
            at: 17,
        },
        Command::SetMaintenance {
            node: 2,
            on: true,
            at: 18,
        },
        Command::RevokeToken {
            token_id: "c2lnbmF0dXJl".into(),
            expires_at: 1_800_000_000,
            at: 19,
        },
        Command::Batch(vec![
            put("a", "1"),
            put("b", "[true,null]"),
            Command::Batch(vec![put("c", "3")]),
        ]),
        Command::DeleteBackup { id: 2 },
        Command::DeletePlan { id: 1 },
        Command::DeleteUser { id: 2 },
        Command::DeleteGroup {
            name: "auditors".into(),
        },
        Command::AddNode {
            info: info(1),
            at: 3,
        },
    ]
}

/// The commands applied in turn: every response, and the state after each.
pub fn applied() -> (Vec<Response>, Vec<ClusterState>) {
    let mut state = ClusterState::default();
    let mut responses = Vec::new();
    let mut states = vec![state.clone()];
    for (i, c) in commands().iter().enumerate() {
        responses.push(state.apply(i as u64 + 1, c).response);
        states.push(state.clone());
    }
    (responses, states)
}

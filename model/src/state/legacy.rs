//! Earlier encodings of [`ClusterState`], so that snapshots (on disk and in
//! PostgreSQL) written by earlier versions still decode. postcard encodes fields
//! in order without names, so a new field anywhere is a new layout: each layout
//! that was ever released is kept here, with what turns it into today's state.
//!
//! A state of an earlier layout also had the predefined groups of its time: they
//! get today's permissions (`admin` gains `audit.read`, which came with layout 5).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ClusterState;
use crate::records::{
    builtin_permissions, Attempt, AuditLog, Backup, BackupManager, ConfigEntry, ConfigMap, Group,
    JobStatus, Millis, NodeRecord, Plan, Restore, RevokedTokens, User,
};

/// Layout 4: before `tls` and `audit`.
#[derive(Deserialize)]
struct ClusterStateV4 {
    cluster_id: Option<String>,
    initialized_at: Millis,
    token_key: Vec<u8>,
    users: BTreeMap<u64, User>,
    groups: BTreeMap<String, Group>,
    plans: BTreeMap<u64, Plan>,
    next_plan_id: u64,
    backups: BTreeMap<u64, Backup>,
    next_backup_id: u64,
    restores: BTreeMap<u64, Restore>,
    next_restore_id: u64,
    next_user_id: u64,
    nodes: BTreeMap<u64, NodeRecord>,
    config: ConfigMap,
    backup_manager: Option<BackupManager>,
    revoked_tokens: RevokedTokens,
    plan_slots: BTreeMap<u64, Millis>,
    maintenance: BTreeMap<u64, Millis>,
}

impl From<ClusterStateV4> for ClusterState {
    fn from(v: ClusterStateV4) -> ClusterState {
        ClusterState {
            cluster_id: v.cluster_id,
            initialized_at: v.initialized_at,
            token_key: v.token_key,
            users: v.users,
            groups: v.groups,
            plans: v.plans,
            next_plan_id: v.next_plan_id,
            backups: v.backups,
            next_backup_id: v.next_backup_id,
            restores: v.restores,
            next_restore_id: v.next_restore_id,
            next_user_id: v.next_user_id,
            nodes: v.nodes,
            config: v.config,
            backup_manager: v.backup_manager,
            revoked_tokens: v.revoked_tokens,
            plan_slots: v.plan_slots,
            maintenance: v.maintenance,
            tls: None,
            audit: AuditLog::default(),
        }
    }
}

/// Layout 3: before `maintenance`.
#[derive(Deserialize)]
struct ClusterStateV3 {
    cluster_id: Option<String>,
    initialized_at: Millis,
    token_key: Vec<u8>,
    users: BTreeMap<u64, User>,
    groups: BTreeMap<String, Group>,
    plans: BTreeMap<u64, Plan>,
    next_plan_id: u64,
    backups: BTreeMap<u64, Backup>,
    next_backup_id: u64,
    restores: BTreeMap<u64, Restore>,
    next_restore_id: u64,
    next_user_id: u64,
    nodes: BTreeMap<u64, NodeRecord>,
    config: ConfigMap,
    backup_manager: Option<BackupManager>,
    revoked_tokens: RevokedTokens,
    plan_slots: BTreeMap<u64, Millis>,
}

impl From<ClusterStateV3> for ClusterState {
    fn from(v: ClusterStateV3) -> ClusterState {
        ClusterState {
            cluster_id: v.cluster_id,
            initialized_at: v.initialized_at,
            token_key: v.token_key,
            users: v.users,
            groups: v.groups,
            plans: v.plans,
            next_plan_id: v.next_plan_id,
            backups: v.backups,
            next_backup_id: v.next_backup_id,
            restores: v.restores,
            next_restore_id: v.next_restore_id,
            next_user_id: v.next_user_id,
            nodes: v.nodes,
            config: v.config,
            backup_manager: v.backup_manager,
            revoked_tokens: v.revoked_tokens,
            plan_slots: v.plan_slots,
            maintenance: BTreeMap::new(),
            tls: None,
            audit: AuditLog::default(),
        }
    }
}

/// The state before jobs ran (layout 2: `revoked_tokens` already there; no
/// `plan_slots`; backups and restores without their runs).
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct ClusterStateV2 {
    cluster_id: Option<String>,
    initialized_at: Millis,
    token_key: Vec<u8>,
    users: BTreeMap<u64, User>,
    groups: BTreeMap<String, Group>,
    plans: BTreeMap<u64, Plan>,
    next_plan_id: u64,
    backups: BTreeMap<u64, BackupV1>,
    next_backup_id: u64,
    restores: BTreeMap<u64, RestoreV1>,
    next_restore_id: u64,
    next_user_id: u64,
    nodes: BTreeMap<u64, NodeRecord>,
    config: ConfigMap,
    backup_manager: Option<BackupManager>,
    revoked_tokens: RevokedTokens,
}

/// Layout 1: before `revoked_tokens` existed.
#[derive(Deserialize)]
struct ClusterStateV1 {
    cluster_id: Option<String>,
    initialized_at: Millis,
    token_key: Vec<u8>,
    users: BTreeMap<u64, User>,
    groups: BTreeMap<String, Group>,
    plans: BTreeMap<u64, Plan>,
    next_plan_id: u64,
    backups: BTreeMap<u64, BackupV1>,
    next_backup_id: u64,
    restores: BTreeMap<u64, RestoreV1>,
    next_restore_id: u64,
    next_user_id: u64,
    nodes: BTreeMap<u64, NodeRecord>,
    config: BTreeMap<String, ConfigEntry>,
    backup_manager: Option<BackupManager>,
}

/// A backup as layouts 1 and 2 encode it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct BackupV1 {
    id: u64,
    plan: Option<u64>,
    plan_name: Option<String>,
    source_node: u64,
    paths: Vec<String>,
    status: JobStatus,
    size_bytes: Option<u64>,
    storage_nodes: Vec<u64>,
    error: Option<String>,
    created_at: Millis,
    updated_at: Millis,
}

/// A restore as layouts 1 and 2 encode it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct RestoreV1 {
    id: u64,
    backup: u64,
    target_node: u64,
    target_path: String,
    status: JobStatus,
    error: Option<String>,
    created_at: Millis,
    updated_at: Millis,
}

/// A state in any earlier layout, as today's (with today's predefined groups);
/// None when it is none of them.
pub(super) fn decode(bytes: &[u8]) -> Option<ClusterState> {
    let mut state = decode_layout(bytes)?;
    for group in state.groups.values_mut().filter(|g| g.builtin) {
        group.permissions = builtin_permissions(&group.name);
    }
    Some(state)
}

fn decode_layout(bytes: &[u8]) -> Option<ClusterState> {
    if let Ok(v4) = crate::codec::decode::<ClusterStateV4>(bytes) {
        return Some(v4.into());
    }
    if let Ok(v3) = crate::codec::decode::<ClusterStateV3>(bytes) {
        return Some(v3.into());
    }
    if let Ok(v2) = crate::codec::decode::<ClusterStateV2>(bytes) {
        return Some(v2.into());
    }
    crate::codec::decode::<ClusterStateV1>(bytes)
        .ok()
        .map(|v1| {
            ClusterStateV2 {
                cluster_id: v1.cluster_id,
                initialized_at: v1.initialized_at,
                token_key: v1.token_key,
                users: v1.users,
                groups: v1.groups,
                plans: v1.plans,
                next_plan_id: v1.next_plan_id,
                backups: v1.backups,
                next_backup_id: v1.next_backup_id,
                restores: v1.restores,
                next_restore_id: v1.next_restore_id,
                next_user_id: v1.next_user_id,
                nodes: v1.nodes,
                config: v1.config.into(),
                backup_manager: v1.backup_manager,
                revoked_tokens: RevokedTokens::default(),
            }
            .into()
        })
}

impl From<ClusterStateV2> for ClusterState {
    fn from(v: ClusterStateV2) -> ClusterState {
        let replicas_of = |plan: Option<u64>| {
            plan.and_then(|p| v.plans.get(&p))
                .map_or(1, |p| p.spec.replicas)
        };
        let backups = v
            .backups
            .into_iter()
            .map(|(id, b)| {
                let replicas = replicas_of(b.plan);
                (id, b.into_current(replicas))
            })
            .collect();
        ClusterState {
            cluster_id: v.cluster_id,
            initialized_at: v.initialized_at,
            token_key: v.token_key,
            users: v.users,
            groups: v.groups,
            plans: v.plans,
            next_plan_id: v.next_plan_id,
            backups,
            next_backup_id: v.next_backup_id,
            restores: v
                .restores
                .into_iter()
                .map(|(id, r)| (id, r.into()))
                .collect(),
            next_restore_id: v.next_restore_id,
            next_user_id: v.next_user_id,
            nodes: v.nodes,
            config: v.config,
            backup_manager: v.backup_manager,
            revoked_tokens: v.revoked_tokens,
            plan_slots: BTreeMap::new(),
            maintenance: BTreeMap::new(),
            tls: None,
            audit: AuditLog::default(),
        }
    }
}

impl BackupV1 {
    fn into_current(self, replicas: u32) -> Backup {
        Backup {
            id: self.id,
            plan: self.plan,
            plan_name: self.plan_name,
            source_node: self.source_node,
            paths: self.paths,
            status: self.status,
            size_bytes: self.size_bytes,
            storage_nodes: self.storage_nodes,
            error: self.error,
            created_at: self.created_at,
            updated_at: self.updated_at,
            replicas,
            slot: None,
            attempt: Attempt::default(),
            progress: None,
            files: None,
            stored_bytes: None,
            finished_at: None,
        }
    }
}

impl From<RestoreV1> for Restore {
    fn from(r: RestoreV1) -> Restore {
        Restore {
            id: r.id,
            backup: r.backup,
            target_node: r.target_node,
            target_path: r.target_path,
            status: r.status,
            error: r.error,
            created_at: r.created_at,
            updated_at: r.updated_at,
            overwrite: false,
            include: None,
            attempt: Attempt::default(),
            progress: None,
            files: None,
            bytes: None,
            finished_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::initialized;

    #[test]
    fn an_earlier_layouts_predefined_groups_get_todays_permissions() {
        let mut s = initialized();
        // Formed before audit.read existed: its admin group did not hold it.
        s.groups
            .get_mut("admin")
            .unwrap()
            .permissions
            .remove("audit.read");
        let mut bytes = crate::codec::encode(&s).unwrap();
        // Layout 4 is today's without `tls` (None, 1 byte) and the (empty)
        // audit log (2 bytes).
        bytes.truncate(bytes.len() - 3);
        let now = ClusterState::decode(&bytes).unwrap();
        assert!(now.groups["admin"].permissions.contains("audit.read"));
        for (name, group) in &now.groups {
            assert_eq!(group.permissions, builtin_permissions(name), "{name}");
        }
        assert!(!now.groups["viewer"].permissions.contains("audit.read"));
        assert!(!now.groups["operator"].permissions.contains("audit.read"));
        assert!(now.audit.is_empty());
    }

    #[test]
    fn backups_and_restores_of_the_layout_before_jobs_decode_with_empty_runs() {
        let s = initialized();
        let old = ClusterStateV2 {
            cluster_id: s.cluster_id.clone(),
            initialized_at: s.initialized_at,
            token_key: s.token_key.clone(),
            users: s.users.clone(),
            groups: s.groups.clone(),
            plans: BTreeMap::new(),
            next_plan_id: 1,
            backups: BTreeMap::from([(
                4,
                BackupV1 {
                    id: 4,
                    plan: None,
                    plan_name: None,
                    source_node: 1,
                    paths: vec!["/srv".into()],
                    status: JobStatus::Succeeded,
                    size_bytes: Some(10),
                    storage_nodes: vec![1],
                    error: None,
                    created_at: 5,
                    updated_at: 6,
                },
            )]),
            next_backup_id: 5,
            restores: BTreeMap::from([(
                2,
                RestoreV1 {
                    id: 2,
                    backup: 4,
                    target_node: 1,
                    target_path: "/r".into(),
                    status: JobStatus::Pending,
                    error: None,
                    created_at: 7,
                    updated_at: 7,
                },
            )]),
            next_restore_id: 3,
            next_user_id: s.next_user_id,
            nodes: BTreeMap::new(),
            config: ConfigMap::default(),
            backup_manager: None,
            revoked_tokens: RevokedTokens::default(),
        };
        let bytes = crate::codec::encode(&old).unwrap();
        let now = ClusterState::decode(&bytes).unwrap();
        let b = &now.backups[&4];
        assert_eq!(
            (b.paths.clone(), b.size_bytes, b.replicas),
            (vec!["/srv".to_string()], Some(10), 1)
        );
        assert_eq!(
            (b.attempt, b.progress, b.slot),
            (Attempt::default(), None, None)
        );
        let r = &now.restores[&2];
        assert_eq!(
            (r.target_path.as_str(), r.overwrite, r.include.clone()),
            ("/r", false, None)
        );
        assert_eq!(now.next_backup_id, 5);
    }
}

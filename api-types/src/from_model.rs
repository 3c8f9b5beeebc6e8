//! How the model's records appear in the API: one conversion each, so that a view
//! never shows what the model keeps private (a password hash, a token generation).

use bcm_model as m;

use crate::{
    AuditView, BackupView, ConfigView, GroupView, NodeView, PlanView, ProgressView, RestoreView,
    UserView,
};

impl From<&m::User> for UserView {
    fn from(u: &m::User) -> UserView {
        UserView {
            id: u.id,
            name: u.name.clone(),
            enabled: u.enabled,
            groups: u.groups.clone(),
            created_at_ms: u.created_at,
        }
    }
}

impl From<&m::Group> for GroupView {
    fn from(g: &m::Group) -> GroupView {
        GroupView {
            name: g.name.clone(),
            permissions: g.permissions.clone(),
            builtin: g.builtin,
        }
    }
}

impl From<&m::ConfigEntry> for ConfigView {
    fn from(e: &m::ConfigEntry) -> ConfigView {
        ConfigView {
            key: e.key.clone(),
            value: serde_json::from_str(&e.value_json).unwrap_or(serde_json::Value::Null),
            version: e.version,
        }
    }
}

impl From<&m::NodeRecord> for NodeView {
    fn from(n: &m::NodeRecord) -> NodeView {
        NodeView {
            id: n.id,
            name: n.name.clone(),
            api_addr: n.api_addr.clone(),
            rpc_addr: n.rpc_addr.clone(),
            roles: n.roles.clone(),
            enabled: n.enabled,
            labels: n.labels.clone(),
            status: n.status,
            maintenance: false,
        }
    }
}

impl From<&m::Plan> for PlanView {
    fn from(p: &m::Plan) -> PlanView {
        PlanView {
            id: p.id,
            name: p.spec.name.clone(),
            source_node: p.spec.source_node,
            paths: p.spec.paths.clone(),
            schedule: p.spec.schedule.clone(),
            keep_last: p.spec.keep_last,
            replicas: p.spec.replicas,
            enabled: p.spec.enabled,
            created_at_ms: p.created_at,
        }
    }
}

impl From<&m::Backup> for BackupView {
    fn from(b: &m::Backup) -> BackupView {
        BackupView {
            id: b.id,
            plan: b.plan,
            plan_name: b.plan_name.clone(),
            source_node: b.source_node,
            paths: b.paths.clone(),
            status: b.status,
            size_bytes: b.size_bytes,
            storage_nodes: b.storage_nodes.clone(),
            error: b.error.clone(),
            created_at_ms: b.created_at,
            updated_at_ms: b.updated_at,
            replicas: b.replicas,
            files: b.files,
            stored_bytes: b.stored_bytes,
            progress: b.progress.as_ref().map(ProgressView::from),
            attempt: b.attempt.number,
            epoch: b.attempt.epoch,
            slot_ms: b.slot,
            finished_at_ms: b.finished_at,
        }
    }
}

impl From<&m::Progress> for ProgressView {
    fn from(p: &m::Progress) -> ProgressView {
        ProgressView {
            files_done: p.files_done,
            bytes_done: p.bytes_done,
            files_total: p.files_total,
            bytes_total: p.bytes_total,
        }
    }
}

impl From<&m::Restore> for RestoreView {
    fn from(r: &m::Restore) -> RestoreView {
        RestoreView {
            id: r.id,
            backup: r.backup,
            target_node: r.target_node,
            target_path: r.target_path.clone(),
            status: r.status,
            error: r.error.clone(),
            created_at_ms: r.created_at,
            updated_at_ms: r.updated_at,
            overwrite: r.overwrite,
            include: r.include.clone(),
            progress: r.progress.as_ref().map(ProgressView::from),
            files: r.files,
            bytes: r.bytes,
            attempt: r.attempt.number,
            finished_at_ms: r.finished_at,
        }
    }
}

impl From<&m::AuditRecord> for AuditView {
    fn from(r: &m::AuditRecord) -> AuditView {
        AuditView {
            id: r.id,
            at_ms: r.entry.at,
            actor: r.entry.actor.clone(),
            addr: r.entry.addr.clone(),
            action: r.entry.action.clone(),
            target: r.entry.target.clone(),
            detail: r.entry.detail.clone(),
            outcome: r.outcome.as_str().to_string(),
            reason: r.outcome.reason().map(str::to_string),
        }
    }
}

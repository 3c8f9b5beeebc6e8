//! The resources as the public JSON API returns them: the API's own types
//! (`bcm-api`), read from its answers, so a page shows exactly what the API says.
//! What the pages add is how each reads to a person: the `*Text` traits.

use bcm_api::time::{human_bytes, utc};
use serde_json::Value;

pub use bcm_api::{
    AuditView as AuditRecord, BackupManagerView as BackupManager, BackupView as Backup,
    ClusterView as Cluster, ConfigView as ConfigEntry, GroupView as Group, MemberView as Member,
    PlanView as Plan, ProgressView, RestoreView as Restore, UserView as User,
};

/// `{items, total}`: one page of a list.
pub type List<T> = bcm_api::Page<T>;

/// A list joined with ", ", or `none`.
fn joined_or_none<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let all: Vec<&str> = items.into_iter().collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

pub trait MemberText {
    fn has_role(&self, role: &str) -> bool;
    fn roles_text(&self) -> String;
    /// `key=value` lines, the form the edit view takes labels in.
    fn labels_text(&self) -> String;
    fn contact_text(&self) -> String;
}

impl MemberText for Member {
    fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.as_str() == role)
    }

    fn roles_text(&self) -> String {
        joined_or_none(self.roles.iter().map(|r| r.as_str()))
    }

    fn labels_text(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn contact_text(&self) -> String {
        match self.last_contact_ms {
            Some(ms) if ms < 1000 => format!("{ms} ms ago"),
            Some(ms) => format!("{:.1} s ago", ms as f64 / 1000.0),
            None => "unknown".into(),
        }
    }
}

pub trait ClusterText {
    /// How many committed entries `m` is missing, as the leader last saw it.
    fn lag(&self, m: &Member) -> Option<u64>;
    fn lag_text(&self, m: &Member) -> String;
    fn is_leader(&self, m: &Member) -> bool;
    fn is_backup_manager(&self, m: &Member) -> bool;
    /// Members with this status (`up`, `down`, ...).
    fn count(&self, status: &str) -> usize;
}

impl ClusterText for Cluster {
    fn lag(&self, m: &Member) -> Option<u64> {
        m.matched_index.map(|i| self.commit_index.saturating_sub(i))
    }

    fn lag_text(&self, m: &Member) -> String {
        match self.lag(m) {
            Some(0) => "in sync".into(),
            Some(n) => format!("{n} entries behind"),
            None => "unknown".into(),
        }
    }

    fn is_leader(&self, m: &Member) -> bool {
        self.leader_id == Some(m.id)
    }

    fn is_backup_manager(&self, m: &Member) -> bool {
        self.backup_manager.is_some_and(|b| b.node_id == m.id)
    }

    fn count(&self, status: &str) -> usize {
        self.members
            .iter()
            .filter(|m| m.status.as_str() == status)
            .count()
    }
}

pub trait UserText {
    fn groups_text(&self) -> String;
    fn created(&self) -> String;
}

impl UserText for User {
    fn groups_text(&self) -> String {
        joined_or_none(self.groups.iter().map(String::as_str))
    }

    fn created(&self) -> String {
        utc(self.created_at_ms)
    }
}

pub trait AuditText {
    fn when(&self) -> String;
    /// The client's address, or `-`.
    fn address(&self) -> String;
    fn reason_text(&self) -> String;
}

impl AuditText for AuditRecord {
    fn when(&self) -> String {
        utc(self.at_ms)
    }

    fn address(&self) -> String {
        self.addr.clone().unwrap_or_else(|| "-".into())
    }

    fn reason_text(&self) -> String {
        self.reason.clone().unwrap_or_default()
    }
}

pub trait GroupText {
    fn permissions_text(&self) -> String;
}

impl GroupText for Group {
    /// Its permissions joined with ", " (empty for none).
    fn permissions_text(&self) -> String {
        let all: Vec<&str> = self.permissions.iter().map(String::as_str).collect();
        all.join(", ")
    }
}

pub trait ConfigText {
    /// The value as JSON text, indented when it is a structure.
    fn value_text(&self) -> String;
}

impl ConfigText for ConfigEntry {
    fn value_text(&self) -> String {
        match &self.value {
            Value::Object(_) | Value::Array(_) => {
                serde_json::to_string_pretty(&self.value).unwrap_or_default()
            }
            v => v.to_string(),
        }
    }
}

pub trait PlanText {
    fn paths_text(&self) -> String;
    fn schedule_text(&self) -> String;
}

impl PlanText for Plan {
    fn paths_text(&self) -> String {
        self.paths.join("\n")
    }

    fn schedule_text(&self) -> String {
        self.schedule.clone().unwrap_or_default()
    }
}

/// What backups and restores share: when, and why they failed.
pub trait JobText {
    /// When it was created and last updated (Unix milliseconds), and its error.
    fn job(&self) -> (u64, u64, Option<&str>);

    fn created(&self) -> String {
        utc(self.job().0)
    }

    fn updated(&self) -> String {
        utc(self.job().1)
    }

    fn error_text(&self) -> String {
        self.job().2.unwrap_or_default().to_string()
    }
}

impl JobText for Backup {
    fn job(&self) -> (u64, u64, Option<&str>) {
        (
            self.created_at_ms,
            self.updated_at_ms,
            self.error.as_deref(),
        )
    }
}

impl JobText for Restore {
    fn job(&self) -> (u64, u64, Option<&str>) {
        (
            self.created_at_ms,
            self.updated_at_ms,
            self.error.as_deref(),
        )
    }
}

pub trait BackupText {
    fn plan_text(&self) -> String;
    fn size_text(&self) -> String;
    fn storage_text(&self) -> String;
    fn stored_text(&self) -> String;
    fn files_text(&self) -> String;
}

/// How far a running job has come: "120 files, 3.5 MiB (40%)"; empty when it
/// reported nothing (not running, or just started).
pub fn progress_text(p: Option<&ProgressView>) -> String {
    let Some(p) = p else {
        return String::new();
    };
    let files = match p.files_total {
        Some(t) => format!("{} of {t} files", p.files_done),
        None => format!("{} files", p.files_done),
    };
    match p.bytes_total.filter(|t| *t > 0) {
        Some(t) => format!(
            "{files}, {} of {} ({}%)",
            human_bytes(p.bytes_done),
            human_bytes(t),
            p.bytes_done.saturating_mul(100) / t
        ),
        None => format!("{files}, {} read", human_bytes(p.bytes_done)),
    }
}

/// A job's progress, for the templates.
pub trait ProgressText {
    fn progress_text(&self) -> String;
}

impl ProgressText for Backup {
    fn progress_text(&self) -> String {
        progress_text(self.progress.as_ref())
    }
}

impl ProgressText for Restore {
    fn progress_text(&self) -> String {
        progress_text(self.progress.as_ref())
    }
}

impl BackupText for Backup {
    fn plan_text(&self) -> String {
        match (&self.plan, &self.plan_name) {
            (Some(id), Some(n)) => format!("{n} (#{id})"),
            (Some(id), None) => format!("#{id}"),
            _ => "ad hoc".into(),
        }
    }

    fn size_text(&self) -> String {
        match self.size_bytes {
            Some(b) => human_bytes(b),
            None => "—".into(),
        }
    }

    fn storage_text(&self) -> String {
        if self.storage_nodes.is_empty() {
            return format!("— ({} replica(s) wanted)", self.replicas);
        }
        let on = self
            .storage_nodes
            .iter()
            .map(|n| format!("node {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{on} ({} of {} replica(s))",
            self.storage_nodes.len(),
            self.replicas
        )
    }

    fn stored_text(&self) -> String {
        match self.stored_bytes {
            Some(b) => format!("{} new after dedup and compression", human_bytes(b)),
            None => "—".into(),
        }
    }

    fn files_text(&self) -> String {
        match self.files {
            Some(f) => f.to_string(),
            None => "—".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_json_from_the_api_reads() {
        let c: Cluster = serde_json::from_value(serde_json::json!({
            "cluster_id": "c1", "leader_id": 1, "term": 3, "commit_index": 40,
            "last_applied": 40, "snapshot_index": null, "this_node_id": 2,
            "backup_manager": {"node_id": 1, "epoch": 2, "since_ms": 5},
            "members": [{"id": 1, "name": "node-1", "api_addr": "http://a", "rpc_addr": "http://b",
                "voter": true, "roles": ["manager"], "status": "up", "enabled": true,
                "labels": {}, "last_contact_ms": 0, "matched_index": 38}]
        }))
        .unwrap();
        assert_eq!(c.lag(&c.members[0]), Some(2));
        assert!(c.is_backup_manager(&c.members[0]));
    }
}

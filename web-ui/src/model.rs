//! The resources as the public JSON API returns them (docs/API.md). The UI reads the
//! API's answers into these, so a page shows exactly what the API says.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// `{items, total}`: one page of a list.
#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    pub items: Vec<T>,
    pub total: usize,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            items: Vec::new(),
            total: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub api_addr: String,
    #[serde(default)]
    pub rpc_addr: String,
    #[serde(default)]
    pub voter: bool,
    #[serde(default)]
    pub roles: Vec<String>,
    pub status: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub last_contact_ms: Option<u64>,
    #[serde(default)]
    pub matched_index: Option<u64>,
}

fn yes() -> bool {
    true
}

impl Member {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn roles_text(&self) -> String {
        if self.roles.is_empty() {
            "none".into()
        } else {
            self.roles.join(", ")
        }
    }

    /// `key=value` lines, the form the edit view takes labels in.
    pub fn labels_text(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn contact_text(&self) -> String {
        match self.last_contact_ms {
            Some(ms) if ms < 1000 => format!("{ms} ms ago"),
            Some(ms) => format!("{:.1} s ago", ms as f64 / 1000.0),
            None => "unknown".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct BackupManager {
    pub node_id: u64,
    pub epoch: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Cluster {
    #[serde(default)]
    pub cluster_id: Option<String>,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub this_node_id: u64,
    #[serde(default)]
    pub backup_manager: Option<BackupManager>,
    pub members: Vec<Member>,
}

impl Cluster {
    /// How many committed entries `m` is missing, as the leader last saw it.
    pub fn lag(&self, m: &Member) -> Option<u64> {
        m.matched_index.map(|i| self.commit_index.saturating_sub(i))
    }

    pub fn lag_text(&self, m: &Member) -> String {
        match self.lag(m) {
            Some(0) => "in sync".into(),
            Some(n) => format!("{n} entries behind"),
            None => "unknown".into(),
        }
    }

    pub fn is_leader(&self, m: &Member) -> bool {
        self.leader_id == Some(m.id)
    }

    pub fn is_backup_manager(&self, m: &Member) -> bool {
        self.backup_manager.is_some_and(|b| b.node_id == m.id)
    }

    pub fn count(&self, status: &str) -> usize {
        self.members.iter().filter(|m| m.status == status).count()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub enabled: bool,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub created_at_ms: u64,
}

impl User {
    pub fn groups_text(&self) -> String {
        if self.groups.is_empty() {
            "none".into()
        } else {
            self.groups.join(", ")
        }
    }

    pub fn created(&self) -> String {
        utc(self.created_at_ms)
    }

    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub builtin: bool,
}

impl Group {
    pub fn grants(&self, p: &str) -> bool {
        self.permissions.iter().any(|x| x == p)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConfigEntry {
    pub key: String,
    pub value: Value,
    pub version: u64,
}

impl ConfigEntry {
    /// The value as JSON text, indented when it is a structure.
    pub fn value_text(&self) -> String {
        match &self.value {
            Value::Object(_) | Value::Array(_) => {
                serde_json::to_string_pretty(&self.value).unwrap_or_default()
            }
            v => v.to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Plan {
    pub id: u64,
    pub name: String,
    pub source_node: u64,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub schedule: Option<String>,
    pub keep_last: u32,
    pub replicas: u32,
    pub enabled: bool,
}

impl Plan {
    pub fn paths_text(&self) -> String {
        self.paths.join("\n")
    }

    pub fn schedule_text(&self) -> String {
        self.schedule.clone().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Backup {
    pub id: u64,
    #[serde(default)]
    pub plan: Option<u64>,
    #[serde(default)]
    pub plan_name: Option<String>,
    pub source_node: u64,
    #[serde(default)]
    pub paths: Vec<String>,
    pub status: String,
    #[serde(default)]
    pub size_bytes: Option<u64>,
    #[serde(default)]
    pub storage_nodes: Vec<u64>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub created_at_ms: u64,
    #[serde(default)]
    pub updated_at_ms: u64,
}

impl Backup {
    pub fn created(&self) -> String {
        utc(self.created_at_ms)
    }

    pub fn updated(&self) -> String {
        utc(self.updated_at_ms)
    }

    pub fn plan_text(&self) -> String {
        match (&self.plan, &self.plan_name) {
            (Some(id), Some(n)) => format!("{n} (#{id})"),
            (Some(id), None) => format!("#{id}"),
            _ => "ad hoc".into(),
        }
    }

    pub fn size_text(&self) -> String {
        match self.size_bytes {
            Some(b) => human_bytes(b),
            None => "—".into(),
        }
    }

    pub fn storage_text(&self) -> String {
        if self.storage_nodes.is_empty() {
            "—".into()
        } else {
            self.storage_nodes
                .iter()
                .map(|n| format!("node {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    pub fn error_text(&self) -> String {
        self.error.clone().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Restore {
    pub id: u64,
    pub backup: u64,
    pub target_node: u64,
    pub target_path: String,
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub created_at_ms: u64,
    #[serde(default)]
    pub updated_at_ms: u64,
}

impl Restore {
    pub fn created(&self) -> String {
        utc(self.created_at_ms)
    }

    pub fn updated(&self) -> String {
        utc(self.updated_at_ms)
    }

    pub fn error_text(&self) -> String {
        self.error.clone().unwrap_or_default()
    }
}

/// 1536 -> "1.5 KiB".
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC` (empty for 0).
pub fn utc(ms: u64) -> String {
    if ms == 0 {
        return String::new();
    }
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(utc(0), "");
        assert_eq!(utc(1_795_000_000_000), "2026-11-18 11:06:40 UTC");
    }

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

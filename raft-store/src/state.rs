//! The replicated state of a bcm cluster and its deterministic transitions.
//!
//! `ClusterState::apply` is pure: no clocks, randomness, I/O or hashing. Given the
//! same sequence of `(index, command)` it produces the same state and responses.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::{Command, Millis, NodeInfo, NodePatch, Rejection, Response};
use crate::limits::quota;

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// May vote and become the Raft leader (the cluster manager).
    Manager,
    /// May hold the backup-manager role.
    BackupManager,
    /// Runs backup and restore jobs and keeps backup data.
    Storage,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Manager, Role::BackupManager, Role::Storage];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::BackupManager => "backup-manager",
            Role::Storage => "storage",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A node's health as the cluster manager last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    Up,
    Down,
    Joining,
    Removed,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Up => "up",
            NodeStatus::Down => "down",
            NodeStatus::Joining => "joining",
            NodeStatus::Removed => "removed",
        }
    }
}

/// One entry of the node registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: u64,
    pub name: String,
    pub api_addr: String,
    pub rpc_addr: String,
    pub roles: Vec<Role>,
    pub enabled: bool,
    pub labels: BTreeMap<String, String>,
    pub status: NodeStatus,
    pub registered_at: Millis,
    pub status_since: Millis,
}

impl NodeRecord {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// A user account. (Managing users beyond `admin` comes with the access-control issue.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    /// argon2id PHC string; never a password.
    pub password_hash: String,
    pub enabled: bool,
    pub groups: Vec<String>,
    pub created_at: Millis,
    /// Tokens carry the generation they were issued in; a new password or
    /// disabling the user moves it on, which ends every older token.
    pub token_generation: u64,
}

/// A cluster-wide setting. `value_json` is JSON text (the binary codec cannot carry
/// self-describing JSON values); `version` is the log index of its last write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub key: String,
    pub value_json: String,
    pub version: u64,
    pub updated_at: Millis,
}

/// Who holds the backup-manager role, with its fencing epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManager {
    pub node_id: u64,
    pub epoch: u64,
    pub since: Millis,
}

/// Something that changed, for the event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StateEvent {
    ClusterInitialized {
        cluster_id: String,
    },
    NodeRegistered {
        node_id: u64,
    },
    NodeUpdated {
        node_id: u64,
    },
    NodeStatusChanged {
        node_id: u64,
        status: NodeStatus,
    },
    BackupManagerAssigned {
        node_id: u64,
        epoch: u64,
    },
    ConfigChanged {
        key: String,
        version: u64,
    },
    ConfigDeleted {
        key: String,
    },
    UserChanged {
        user_id: u64,
    },
    UserDeleted {
        user_id: u64,
    },
    GroupChanged {
        name: String,
    },
    PlanChanged {
        plan_id: u64,
    },
    BackupChanged {
        backup_id: u64,
        status: crate::catalog::JobStatus,
    },
    BackupDeleted {
        backup_id: u64,
    },
    RestoreChanged {
        restore_id: u64,
        status: crate::catalog::JobStatus,
    },
}

/// The whole replicated control-plane state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub cluster_id: Option<String>,
    pub initialized_at: Millis,
    /// HMAC key for bearer tokens: replicated so every node verifies every token.
    pub token_key: Vec<u8>,
    pub users: BTreeMap<u64, User>,
    pub groups: BTreeMap<String, crate::access::Group>,
    pub plans: BTreeMap<u64, crate::catalog::Plan>,
    pub next_plan_id: u64,
    pub backups: BTreeMap<u64, crate::catalog::Backup>,
    pub next_backup_id: u64,
    pub restores: BTreeMap<u64, crate::catalog::Restore>,
    pub next_restore_id: u64,
    pub next_user_id: u64,
    pub nodes: BTreeMap<u64, NodeRecord>,
    pub config: ConfigMap,
    pub backup_manager: Option<BackupManager>,
    /// Tokens logged out before they expired.
    pub revoked_tokens: RevokedTokens,
}

/// Logged-out tokens: signature -> expiry (Unix seconds), with an index by expiry
/// so that forgetting the expired ones costs only what is forgotten. Encoded as the
/// plain map; the index is made again when a state is decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedTokens {
    by_id: BTreeMap<String, u64>,
    by_expiry: BTreeSet<(u64, String)>,
}

impl RevokedTokens {
    pub fn contains(&self, token_id: &str) -> bool {
        self.by_id.contains_key(token_id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn insert(&mut self, token_id: &str, expires_at: u64) {
        if let Some(old) = self.by_id.insert(token_id.to_string(), expires_at) {
            self.by_expiry.remove(&(old, token_id.to_string()));
        }
        self.by_expiry.insert((expires_at, token_id.to_string()));
    }

    /// Forgets every token that expired before `before` (Unix seconds).
    fn forget_expired_before(&mut self, before: u64) {
        while let Some((exp, _)) = self.by_expiry.first() {
            if *exp >= before {
                break;
            }
            let (_, id) = self.by_expiry.pop_first().expect("checked");
            self.by_id.remove(&id);
        }
    }
}

impl From<BTreeMap<String, u64>> for RevokedTokens {
    fn from(by_id: BTreeMap<String, u64>) -> RevokedTokens {
        let by_expiry = by_id.iter().map(|(id, exp)| (*exp, id.clone())).collect();
        RevokedTokens { by_id, by_expiry }
    }
}

impl Serialize for RevokedTokens {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.by_id.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RevokedTokens {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RevokedTokens, D::Error> {
        BTreeMap::deserialize(d).map(RevokedTokens::from)
    }
}

/// The cluster-wide settings by key, with the bytes they hold counted for the
/// quota. Encoded as the plain map (the count is derived, and made again when a
/// state is decoded); read through `Deref`, changed only by the state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigMap {
    entries: BTreeMap<String, ConfigEntry>,
    bytes: u64,
}

impl ConfigMap {
    /// Bytes of keys and values together, as counted against
    /// [`quota::CONFIG_BYTES`].
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn insert(&mut self, entry: ConfigEntry) {
        self.bytes += config_size(&entry.key, &entry.value_json);
        if let Some(old) = self.entries.insert(entry.key.clone(), entry) {
            self.bytes -= config_size(&old.key, &old.value_json);
        }
    }

    fn remove(&mut self, key: &str) -> Option<ConfigEntry> {
        let removed = self.entries.remove(key)?;
        self.bytes -= config_size(&removed.key, &removed.value_json);
        Some(removed)
    }
}

impl std::ops::Deref for ConfigMap {
    type Target = BTreeMap<String, ConfigEntry>;
    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl From<BTreeMap<String, ConfigEntry>> for ConfigMap {
    fn from(entries: BTreeMap<String, ConfigEntry>) -> ConfigMap {
        let bytes = entries
            .values()
            .map(|e| config_size(&e.key, &e.value_json))
            .sum();
        ConfigMap { entries, bytes }
    }
}

impl Serialize for ConfigMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ConfigMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ConfigMap, D::Error> {
        BTreeMap::deserialize(d).map(ConfigMap::from)
    }
}

/// [`ClusterState`] as encoded before `revoked_tokens` existed: snapshots (on disk
/// and in PostgreSQL) written by earlier versions decode through it. postcard
/// encodes fields in order without names, so a new field is a new layout.
#[derive(Deserialize)]
struct ClusterStateV1 {
    cluster_id: Option<String>,
    initialized_at: Millis,
    token_key: Vec<u8>,
    users: BTreeMap<u64, User>,
    groups: BTreeMap<String, crate::access::Group>,
    plans: BTreeMap<u64, crate::catalog::Plan>,
    next_plan_id: u64,
    backups: BTreeMap<u64, crate::catalog::Backup>,
    next_backup_id: u64,
    restores: BTreeMap<u64, crate::catalog::Restore>,
    next_restore_id: u64,
    next_user_id: u64,
    nodes: BTreeMap<u64, NodeRecord>,
    config: BTreeMap<String, ConfigEntry>,
    backup_manager: Option<BackupManager>,
}

impl From<ClusterStateV1> for ClusterState {
    fn from(v: ClusterStateV1) -> ClusterState {
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
            config: v.config.into(),
            backup_manager: v.backup_manager,
            revoked_tokens: RevokedTokens::default(),
        }
    }
}

/// What one config entry counts against the config bytes quota.
fn config_size(key: &str, value_json: &str) -> u64 {
    (key.len() + value_json.len()) as u64
}

/// Seconds a revoked token's entry outlives its expiry: tokens are accepted up to
/// this much past it (clock skew between nodes).
const REVOCATION_LEEWAY_SECS: u64 = 60;

/// The outcome of applying one command.
pub struct Applied {
    pub response: Response,
    pub events: Vec<StateEvent>,
}

impl Applied {
    pub(crate) fn ok(response: Response, events: Vec<StateEvent>) -> Applied {
        Applied { response, events }
    }

    pub(crate) fn rejected(r: Rejection) -> Applied {
        Applied {
            response: Response::Rejected(r),
            events: Vec::new(),
        }
    }
}

fn not_found(what: &str, id: impl ToString) -> Rejection {
    Rejection::NotFound {
        what: what.to_string(),
        id: id.to_string(),
    }
}

impl ClusterState {
    pub fn is_initialized(&self) -> bool {
        self.cluster_id.is_some()
    }

    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.users.values().find(|u| u.name == name)
    }

    /// Applies the command at log `index`. Refused commands change nothing.
    pub fn apply(&mut self, index: u64, command: &Command) -> Applied {
        match command {
            Command::Batch(commands) => self.apply_batch(index, commands),
            Command::InitCluster {
                cluster_id,
                token_key,
                admin_password_hash,
                at,
            } => self.init_cluster(cluster_id, token_key, admin_password_hash, *at),
            Command::RegisterNode { info, at } => self.register_node(info, *at),
            Command::AddNode { info, at } => self.add_node(info, *at),
            Command::UpdateNode { id, patch } => self.update_node(*id, patch),
            Command::SetNodeStatus { id, status, at } => self.set_node_status(*id, *status, *at),
            Command::AssignBackupManager { node_id, epoch, at } => {
                self.assign_backup_manager(*node_id, *epoch, *at)
            }
            Command::PutConfig {
                key,
                value_json,
                if_version,
                at,
            } => self.put_config(index, key, value_json, *if_version, *at),
            Command::DeleteConfig { key, if_version } => self.delete_config(key, *if_version),
            Command::CreateUser {
                name,
                password_hash,
                groups,
                at,
            } => self.create_user(name, password_hash, groups, *at),
            Command::UpdateUser {
                id,
                enabled,
                password_hash,
                groups,
            } => self.update_user(*id, *enabled, password_hash.as_deref(), groups.as_deref()),
            Command::DeleteUser { id } => self.delete_user(*id),
            Command::PutGroup {
                name,
                permissions,
                create,
            } => self.put_group(name, permissions, *create),
            Command::DeleteGroup { name } => self.delete_group(name),
            Command::CreatePlan { spec, at } => self.create_plan(spec, *at),
            Command::UpdatePlan { id, spec } => self.update_plan(*id, spec),
            Command::DeletePlan { id } => self.delete_plan(*id),
            Command::CreateBackup {
                plan,
                source_node,
                paths,
                at,
            } => self.create_backup(*plan, *source_node, paths, *at),
            Command::SetBackupStatus {
                id,
                status,
                size_bytes,
                storage_nodes,
                error,
                at,
            } => self.set_backup_status(
                *id,
                *status,
                *size_bytes,
                storage_nodes.as_deref(),
                error.as_deref(),
                *at,
            ),
            Command::DeleteBackup { id } => self.delete_backup(*id),
            Command::CreateRestore {
                backup,
                target_node,
                target_path,
                at,
            } => self.create_restore(*backup, *target_node, target_path, *at),
            Command::SetRestoreStatus {
                id,
                status,
                error,
                at,
            } => self.set_restore_status(*id, *status, error.as_deref(), *at),
            Command::RevokeToken {
                token_id,
                expires_at,
                at,
            } => self.revoke_token(token_id, *expires_at, *at),
        }
    }

    /// Decodes a state encoded by this version or an earlier one.
    pub fn decode(bytes: &[u8]) -> Result<ClusterState, crate::codec::CodecError> {
        crate::codec::decode::<ClusterState>(bytes).or_else(|e| {
            crate::codec::decode::<ClusterStateV1>(bytes)
                .map(ClusterState::from)
                .map_err(|_| e)
        })
    }

    /// Whether the token with this signature was logged out.
    pub fn is_revoked(&self, token_id: &str) -> bool {
        self.revoked_tokens.contains(token_id)
    }

    fn revoke_token(&mut self, token_id: &str, expires_at: u64, at: Millis) -> Applied {
        if token_id.is_empty() || token_id.len() > 128 {
            return Applied::rejected(Rejection::Invalid(
                "a token id is 1 to 128 characters".into(),
            ));
        }
        let now = at / 1000;
        self.revoked_tokens
            .forget_expired_before(now.saturating_sub(REVOCATION_LEEWAY_SECS));
        if expires_at.saturating_add(REVOCATION_LEEWAY_SECS) >= now {
            if self.revoked_tokens.len() >= quota::REVOKED_TOKENS
                && !self.revoked_tokens.contains(token_id)
            {
                return Applied::rejected(Rejection::QuotaExceeded {
                    quota: "auth.revoked_tokens".into(),
                    limit: quota::REVOKED_TOKENS as u64,
                    detail: "logged-out tokens not yet expired".into(),
                });
            }
            self.revoked_tokens.insert(token_id, expires_at);
        }
        Applied::ok(Response::Done, Vec::new())
    }

    fn init_cluster(
        &mut self,
        cluster_id: &str,
        token_key: &[u8],
        admin_password_hash: &str,
        at: Millis,
    ) -> Applied {
        if self.is_initialized() {
            return Applied::rejected(Rejection::AlreadyInitialized);
        }
        if cluster_id.is_empty() || token_key.len() < 32 || admin_password_hash.is_empty() {
            return Applied::rejected(Rejection::Invalid(
                "cluster id, a 32-byte token key and an admin password hash are required".into(),
            ));
        }
        self.cluster_id = Some(cluster_id.to_string());
        self.initialized_at = at;
        self.token_key = token_key.to_vec();
        self.next_user_id = 2;
        self.create_builtin_groups();
        self.users.insert(
            1,
            User {
                id: 1,
                name: "admin".into(),
                password_hash: admin_password_hash.to_string(),
                enabled: true,
                groups: vec!["admin".into()],
                created_at: at,
                token_generation: 0,
            },
        );
        Applied::ok(
            Response::Done,
            vec![StateEvent::ClusterInitialized {
                cluster_id: cluster_id.to_string(),
            }],
        )
    }

    fn apply_batch(&mut self, index: u64, commands: &[Command]) -> Applied {
        let mut written: BTreeSet<&str> = BTreeSet::new();
        let mut responses = Vec::with_capacity(commands.len());
        let mut events = Vec::new();
        for command in commands {
            let applied = match command {
                Command::Batch(_) => {
                    Applied::rejected(Rejection::Invalid("a batch inside a batch".into()))
                }
                c if c.config_key().is_some_and(|k| !written.insert(k)) => {
                    Applied::rejected(Rejection::Conflict(format!(
                        "config key `{}` is written twice in one batch",
                        c.config_key().unwrap_or_default()
                    )))
                }
                c => self.apply(index, c),
            };
            responses.push(applied.response);
            events.extend(applied.events);
        }
        Applied::ok(Response::Batch(responses), events)
    }

    fn register_node(&mut self, info: &NodeInfo, at: Millis) -> Applied {
        let record = match self.nodes.get_mut(&info.id) {
            Some(existing) => {
                existing.name = info.name.clone();
                existing.api_addr = info.api_addr.clone();
                existing.rpc_addr = info.rpc_addr.clone();
                existing.roles = info.roles.clone();
                existing.clone()
            }
            None => {
                let record = new_record(info, NodeStatus::Joining, at);
                self.nodes.insert(info.id, record.clone());
                record
            }
        };
        Applied::ok(
            Response::Node(record),
            vec![StateEvent::NodeRegistered { node_id: info.id }],
        )
    }

    fn add_node(&mut self, info: &NodeInfo, at: Millis) -> Applied {
        if self.nodes.contains_key(&info.id) {
            return Applied::rejected(Rejection::AlreadyExists {
                what: "node".into(),
                id: info.id.to_string(),
            });
        }
        let record = new_record(info, NodeStatus::Down, at);
        self.nodes.insert(info.id, record.clone());
        Applied::ok(
            Response::Node(record),
            vec![StateEvent::NodeRegistered { node_id: info.id }],
        )
    }

    fn update_node(&mut self, id: u64, patch: &NodePatch) -> Applied {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Applied::rejected(not_found("node", id));
        };
        if let Some(roles) = &patch.roles {
            node.roles = roles.clone();
        }
        if let Some(enabled) = patch.enabled {
            node.enabled = enabled;
        }
        if let Some(labels) = &patch.labels {
            node.labels = labels.clone();
        }
        Applied::ok(
            Response::Node(node.clone()),
            vec![StateEvent::NodeUpdated { node_id: id }],
        )
    }

    fn set_node_status(&mut self, id: u64, status: NodeStatus, at: Millis) -> Applied {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Applied::rejected(not_found("node", id));
        };
        if node.status == status {
            return Applied::ok(Response::Node(node.clone()), Vec::new());
        }
        node.status = status;
        node.status_since = at;
        Applied::ok(
            Response::Node(node.clone()),
            vec![StateEvent::NodeStatusChanged {
                node_id: id,
                status,
            }],
        )
    }

    fn assign_backup_manager(&mut self, node_id: u64, epoch: u64, at: Millis) -> Applied {
        let current = self.backup_manager.map(|b| b.epoch).unwrap_or(0);
        if epoch != current + 1 {
            return Applied::rejected(Rejection::StaleEpoch {
                proposed: epoch,
                current,
            });
        }
        let Some(node) = self.nodes.get(&node_id) else {
            return Applied::rejected(not_found("node", node_id));
        };
        if !node.has_role(Role::BackupManager) || !node.enabled {
            return Applied::rejected(Rejection::Invalid(format!(
                "node {node_id} is not an enabled node with role backup-manager"
            )));
        }
        self.backup_manager = Some(BackupManager {
            node_id,
            epoch,
            since: at,
        });
        Applied::ok(
            Response::Done,
            vec![StateEvent::BackupManagerAssigned { node_id, epoch }],
        )
    }

    fn put_config(
        &mut self,
        index: u64,
        key: &str,
        value_json: &str,
        if_version: Option<u64>,
        at: Millis,
    ) -> Applied {
        let current = self.config.get(key).map(|e| e.version);
        if let Some(expected) = if_version {
            if current.unwrap_or(0) != expected {
                return Applied::rejected(Rejection::VersionMismatch { expected, current });
            }
        }
        let old_size = self
            .config
            .get(key)
            .map(|e| config_size(&e.key, &e.value_json));
        if old_size.is_none() && self.config.len() >= quota::CONFIG_KEYS {
            return Applied::rejected(Rejection::QuotaExceeded {
                quota: "config.keys".into(),
                limit: quota::CONFIG_KEYS as u64,
                detail: "config keys in the cluster".into(),
            });
        }
        let new_size = config_size(key, value_json);
        let total = self.config.bytes() - old_size.unwrap_or(0) + new_size;
        // A write that shrinks an entry is taken even over the quota.
        if total > quota::CONFIG_BYTES && new_size > old_size.unwrap_or(0) {
            return Applied::rejected(Rejection::QuotaExceeded {
                quota: "config.bytes".into(),
                limit: quota::CONFIG_BYTES,
                detail: format!(
                    "bytes of config keys and values ({} in use)",
                    self.config.bytes()
                ),
            });
        }
        let entry = ConfigEntry {
            key: key.to_string(),
            value_json: value_json.to_string(),
            version: index,
            updated_at: at,
        };
        self.config.insert(entry.clone());
        Applied::ok(
            Response::Config(entry),
            vec![StateEvent::ConfigChanged {
                key: key.to_string(),
                version: index,
            }],
        )
    }

    fn delete_config(&mut self, key: &str, if_version: Option<u64>) -> Applied {
        let Some(current) = self.config.get(key).map(|e| e.version) else {
            return Applied::rejected(not_found("config key", key));
        };
        if let Some(expected) = if_version {
            if current != expected {
                return Applied::rejected(Rejection::VersionMismatch {
                    expected,
                    current: Some(current),
                });
            }
        }
        let removed = self.config.remove(key).expect("checked above");
        Applied::ok(
            Response::Config(removed),
            vec![StateEvent::ConfigDeleted {
                key: key.to_string(),
            }],
        )
    }
}

fn new_record(info: &NodeInfo, status: NodeStatus, at: Millis) -> NodeRecord {
    NodeRecord {
        id: info.id,
        name: info.name.clone(),
        api_addr: info.api_addr.clone(),
        rpc_addr: info.rpc_addr.clone(),
        roles: info.roles.clone(),
        enabled: true,
        labels: BTreeMap::new(),
        status,
        registered_at: at,
        status_since: at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::JobStatus;
    use proptest::prelude::*;

    fn info(id: u64, roles: Vec<Role>) -> NodeInfo {
        NodeInfo {
            id,
            name: format!("node-{id}"),
            api_addr: format!("http://127.0.0.1:{}", 8080 + id),
            rpc_addr: format!("http://127.0.0.1:{}", 9080 + id),
            roles,
        }
    }

    fn init() -> Command {
        Command::InitCluster {
            cluster_id: "c1".into(),
            token_key: vec![7; 32],
            admin_password_hash: "$argon2id$v=19$m=19456,t=2,p=1$x$y".into(),
            at: 1,
        }
    }

    fn revoke(token_id: &str, expires_at: u64, at_secs: u64) -> Command {
        Command::RevokeToken {
            token_id: token_id.into(),
            expires_at,
            at: at_secs * 1000,
        }
    }

    #[test]
    fn a_revoked_token_stays_refused_until_it_expires_then_is_forgotten() {
        let mut s = ClusterState::default();
        s.apply(1, &init());
        assert_eq!(
            s.apply(2, &revoke("sig-a", 1_000, 100)).response,
            Response::Done
        );
        assert!(s.is_revoked("sig-a") && !s.is_revoked("sig-b"));
        // One already past its expiry (and the leeway) is not kept.
        s.apply(3, &revoke("sig-old", 10, 100));
        assert!(!s.is_revoked("sig-old"));
        // A later revocation forgets the ones that have expired since.
        s.apply(
            4,
            &revoke("sig-b", 5_000, 1_000 + REVOCATION_LEEWAY_SECS + 1),
        );
        assert!(!s.is_revoked("sig-a") && s.is_revoked("sig-b"));
        assert_eq!(s.revoked_tokens.len(), 1);
        for bad in ["", &"x".repeat(129)] {
            let before = s.clone();
            let r = s.apply(5, &revoke(bad, 9_000, 1_000)).response;
            assert!(
                matches!(r, Response::Rejected(Rejection::Invalid(_))),
                "{r:?}"
            );
            assert_eq!(s, before);
        }
    }

    #[test]
    fn a_state_from_before_revocations_still_decodes() {
        let mut s = ClusterState::default();
        s.apply(1, &init());
        s.apply(
            2,
            &Command::PutConfig {
                key: "a".into(),
                value_json: "1".into(),
                if_version: None,
                at: 2,
            },
        );
        let bytes = crate::codec::encode(&s).unwrap();
        // The earlier layout is this one without the (empty) map at the end: a
        // postcard map starts with its length, one byte 0 when empty.
        assert_eq!(bytes.last(), Some(&0));
        let old = &bytes[..bytes.len() - 1];
        assert_eq!(ClusterState::decode(old).unwrap(), s);
        assert_eq!(ClusterState::decode(&bytes).unwrap(), s);
        assert!(ClusterState::decode(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn init_happens_once() {
        let mut s = ClusterState::default();
        assert_eq!(s.apply(1, &init()).response, Response::Done);
        assert!(s.user_by_name("admin").is_some());
        let before = s.clone();
        assert_eq!(
            s.apply(2, &init()).response,
            Response::Rejected(Rejection::AlreadyInitialized)
        );
        assert_eq!(s, before);
    }

    #[test]
    fn a_restore_reports_each_status_change_as_an_event() {
        let mut s = ClusterState::default();
        s.apply(1, &init());
        s.apply(
            2,
            &Command::RegisterNode {
                info: info(1, vec![Role::Storage]),
                at: 2,
            },
        );
        s.apply(
            3,
            &Command::CreateBackup {
                plan: None,
                source_node: Some(1),
                paths: vec!["/etc".into()],
                at: 3,
            },
        );
        for (i, status) in [JobStatus::Running, JobStatus::Succeeded]
            .into_iter()
            .enumerate()
        {
            s.apply(
                4 + i as u64,
                &Command::SetBackupStatus {
                    id: 1,
                    status,
                    size_bytes: Some(10),
                    storage_nodes: Some(vec![1]),
                    error: None,
                    at: 4,
                },
            );
        }
        let created = s.apply(
            6,
            &Command::CreateRestore {
                backup: 1,
                target_node: 1,
                target_path: "/restore".into(),
                at: 6,
            },
        );
        let Response::Restore(r) = created.response else {
            panic!("{:?}", created.response)
        };
        assert_eq!(
            created.events,
            vec![StateEvent::RestoreChanged {
                restore_id: r.id,
                status: JobStatus::Pending
            }]
        );
        let running = s.apply(
            7,
            &Command::SetRestoreStatus {
                id: r.id,
                status: JobStatus::Running,
                error: None,
                at: 7,
            },
        );
        assert_eq!(
            running.events,
            vec![StateEvent::RestoreChanged {
                restore_id: r.id,
                status: JobStatus::Running
            }]
        );
    }

    #[test]
    fn compare_and_set_uses_versions() {
        let mut s = ClusterState::default();
        let put = |v: Option<u64>| Command::PutConfig {
            key: "k".into(),
            value_json: "1".into(),
            if_version: v,
            at: 0,
        };
        // Some(0): create only.
        assert!(
            matches!(s.apply(5, &put(Some(0))).response, Response::Config(e) if e.version == 5)
        );
        assert!(matches!(
            s.apply(6, &put(Some(0))).response,
            Response::Rejected(Rejection::VersionMismatch {
                expected: 0,
                current: Some(5)
            })
        ));
        assert!(
            matches!(s.apply(7, &put(Some(5))).response, Response::Config(e) if e.version == 7)
        );
        // Delete then recreate: an old version never matches again (no ABA).
        let del = Command::DeleteConfig {
            key: "k".into(),
            if_version: Some(7),
        };
        assert!(matches!(s.apply(8, &del).response, Response::Config(_)));
        assert!(matches!(s.apply(9, &put(None)).response, Response::Config(e) if e.version == 9));
        assert!(matches!(
            s.apply(10, &put(Some(7))).response,
            Response::Rejected(_)
        ));
    }

    fn put_config(key: &str, value_json: String) -> Command {
        Command::PutConfig {
            key: key.into(),
            value_json,
            if_version: None,
            at: 0,
        }
    }

    fn quota_of(r: &Response) -> Option<&str> {
        match r {
            Response::Rejected(Rejection::QuotaExceeded { quota, .. }) => Some(quota),
            _ => None,
        }
    }

    #[test]
    fn config_bytes_are_capped_and_counted_through_every_change() {
        let mut s = ClusterState::default();
        let mib = "x".repeat(1 << 20);
        let value = format!("\"{mib}\"");
        let fit = (quota::CONFIG_BYTES / (value.len() as u64 + 8)) as usize;
        for i in 0..fit {
            let r = s.apply(
                i as u64 + 1,
                &put_config(&format!("k{i:05}"), value.clone()),
            );
            assert!(
                matches!(r.response, Response::Config(_)),
                "{i}: {:?}",
                quota_of(&r.response)
            );
        }
        let before = s.clone();
        let r = s
            .apply(10_000, &put_config("one-more", value.clone()))
            .response;
        assert_eq!(quota_of(&r), Some("config.bytes"));
        assert_eq!(s, before, "a refused write changes nothing");
        // Overwriting with something smaller is taken; deleting gives room back.
        let r = s.apply(10_001, &put_config("k00000", "1".into())).response;
        assert!(matches!(r, Response::Config(_)));
        let del = Command::DeleteConfig {
            key: "k00001".into(),
            if_version: None,
        };
        assert!(matches!(
            s.apply(10_002, &del).response,
            Response::Config(_)
        ));
        assert!(matches!(
            s.apply(10_003, &put_config("one-more", value)).response,
            Response::Config(_)
        ));
        let counted: u64 = s
            .config
            .values()
            .map(|e| config_size(&e.key, &e.value_json))
            .sum();
        assert_eq!(s.config.bytes(), counted);
        // The count is made again when a state is decoded (it is not encoded).
        let decoded = ClusterState::decode(&crate::codec::encode(&s).unwrap()).unwrap();
        assert_eq!(decoded.config.bytes(), counted);
        assert_eq!(decoded, s);
    }

    #[test]
    fn config_keys_are_capped() {
        let mut s = ClusterState::default();
        for i in 0..quota::CONFIG_KEYS {
            s.apply(i as u64 + 1, &put_config(&format!("k{i}"), "1".into()));
        }
        assert_eq!(s.config.len(), quota::CONFIG_KEYS);
        let r = s
            .apply(u64::MAX - 1, &put_config("new", "1".into()))
            .response;
        assert_eq!(quota_of(&r), Some("config.keys"));
        // An existing key can still be written.
        let r = s.apply(u64::MAX, &put_config("k7", "2".into())).response;
        assert!(matches!(r, Response::Config(_)));
    }

    #[test]
    fn revoked_tokens_are_capped_until_they_expire() {
        let mut s = ClusterState::default();
        s.apply(1, &init());
        for i in 0..quota::REVOKED_TOKENS {
            let r = s
                .apply(2, &revoke(&format!("sig-{i}"), 1_000, 100))
                .response;
            assert_eq!(r, Response::Done);
        }
        let r = s.apply(3, &revoke("sig-more", 1_000, 100)).response;
        assert_eq!(quota_of(&r), Some("auth.revoked_tokens"));
        // Once the remembered ones have expired, there is room again.
        let later = 1_000 + REVOCATION_LEEWAY_SECS + 1;
        assert_eq!(
            s.apply(4, &revoke("sig-more", 9_000, later)).response,
            Response::Done
        );
        assert_eq!(s.revoked_tokens.len(), 1);
    }

    #[test]
    fn a_new_password_or_disabling_ends_older_tokens() {
        let mut s = ClusterState::default();
        s.apply(1, &init());
        let create = Command::CreateUser {
            name: "alice".into(),
            password_hash: "h1".into(),
            groups: vec!["viewer".into()],
            at: 2,
        };
        let Response::User(alice) = s.apply(2, &create).response else {
            panic!("not created")
        };
        assert_eq!(alice.token_generation, 0);
        let pw = Command::UpdateUser {
            id: alice.id,
            enabled: None,
            password_hash: Some("h2".into()),
            groups: None,
        };
        s.apply(3, &pw);
        assert_eq!(s.users[&alice.id].token_generation, 1);
        let groups_only = Command::UpdateUser {
            id: alice.id,
            enabled: None,
            password_hash: None,
            groups: Some(vec!["operator".into()]),
        };
        s.apply(4, &groups_only);
        assert_eq!(
            s.users[&alice.id].token_generation, 1,
            "a group change keeps tokens"
        );
        let disable = Command::UpdateUser {
            id: alice.id,
            enabled: Some(false),
            password_hash: None,
            groups: None,
        };
        s.apply(5, &disable);
        assert_eq!(s.users[&alice.id].token_generation, 2);
        // The last enabled admin cannot go.
        let demote = Command::UpdateUser {
            id: 1,
            enabled: None,
            password_hash: None,
            groups: Some(vec!["viewer".into()]),
        };
        assert!(matches!(
            s.apply(6, &demote).response,
            Response::Rejected(Rejection::Conflict(_))
        ));
        assert!(matches!(
            s.apply(7, &Command::DeleteUser { id: 1 }).response,
            Response::Rejected(Rejection::Conflict(_))
        ));
        assert!(matches!(
            s.apply(
                8,
                &Command::DeleteGroup {
                    name: "viewer".into()
                }
            )
            .response,
            Response::Rejected(Rejection::Conflict(_))
        ));
    }

    #[test]
    fn backup_manager_epoch_is_fenced() {
        let mut s = ClusterState::default();
        s.apply(
            1,
            &Command::RegisterNode {
                info: info(1, vec![Role::BackupManager]),
                at: 0,
            },
        );
        s.apply(
            2,
            &Command::RegisterNode {
                info: info(2, vec![Role::Storage]),
                at: 0,
            },
        );
        let assign = |node_id, epoch| Command::AssignBackupManager {
            node_id,
            epoch,
            at: 0,
        };
        assert_eq!(s.apply(3, &assign(1, 1)).response, Response::Done);
        assert!(matches!(
            s.apply(4, &assign(1, 1)).response,
            Response::Rejected(Rejection::StaleEpoch { .. })
        ));
        assert!(matches!(
            s.apply(5, &assign(2, 2)).response,
            Response::Rejected(Rejection::Invalid(_))
        ));
        assert_eq!(s.backup_manager.unwrap().epoch, 1);
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        let key = prop_oneof![Just("a".to_string()), Just("b".to_string()), "[a-z]{1,3}"];
        let role = prop_oneof![
            Just(Role::Manager),
            Just(Role::BackupManager),
            Just(Role::Storage)
        ];
        let status = prop_oneof![
            Just(NodeStatus::Up),
            Just(NodeStatus::Down),
            Just(NodeStatus::Joining),
            Just(NodeStatus::Removed)
        ];
        prop_oneof![
            Just(init()),
            (1u64..5, proptest::collection::vec(role.clone(), 0..3)).prop_map(|(id, roles)| {
                Command::RegisterNode {
                    info: info(id, roles),
                    at: id,
                }
            }),
            (1u64..5, proptest::collection::vec(role, 0..3)).prop_map(|(id, roles)| {
                Command::AddNode {
                    info: info(id, roles),
                    at: id,
                }
            }),
            (1u64..5, any::<Option<bool>>()).prop_map(|(id, enabled)| Command::UpdateNode {
                id,
                patch: NodePatch {
                    enabled,
                    ..Default::default()
                }
            }),
            (1u64..5, status).prop_map(|(id, status)| Command::SetNodeStatus { id, status, at: 3 }),
            (1u64..5, 0u64..4).prop_map(|(node_id, epoch)| Command::AssignBackupManager {
                node_id,
                epoch,
                at: 4
            }),
            (key.clone(), "[0-9]{1,3}", proptest::option::of(0u64..20)).prop_map(
                |(key, v, if_version)| Command::PutConfig {
                    key,
                    value_json: v,
                    if_version,
                    at: 5
                }
            ),
            (key, proptest::option::of(0u64..20))
                .prop_map(|(key, if_version)| Command::DeleteConfig { key, if_version }),
            (user_name(), group_list()).prop_map(|(name, groups)| Command::CreateUser {
                name,
                password_hash: "$argon2id$v=19$x".into(),
                groups,
                at: 6
            }),
            (
                1u64..5,
                any::<Option<bool>>(),
                proptest::option::of(group_list()),
                any::<bool>()
            )
                .prop_map(|(id, enabled, groups, pw)| Command::UpdateUser {
                    id,
                    enabled,
                    password_hash: pw.then(|| "$argon2id$v=19$y".into()),
                    groups
                }),
            (1u64..5).prop_map(|id| Command::DeleteUser { id }),
            (
                group_name(),
                proptest::collection::btree_set(permission(), 0..4),
                any::<bool>()
            )
                .prop_map(|(name, permissions, create)| Command::PutGroup {
                    name,
                    permissions,
                    create
                }),
            group_name().prop_map(|name| Command::DeleteGroup { name }),
            catalog_command(),
            ("[a-z]{0,3}", 0u64..200, 0u64..200_000).prop_map(|(token_id, expires_at, at)| {
                Command::RevokeToken {
                    token_id,
                    expires_at,
                    at,
                }
            }),
        ]
    }

    fn job_status() -> impl Strategy<Value = crate::catalog::JobStatus> {
        proptest::sample::select(crate::catalog::JobStatus::ALL.to_vec())
    }

    fn catalog_command() -> impl Strategy<Value = Command> {
        use crate::catalog::PlanSpec;
        prop_oneof![
            (prop_oneof![Just("daily"), Just("hourly")], 1u64..5).prop_map(
                |(name, source_node)| Command::CreatePlan {
                    spec: PlanSpec {
                        name: name.into(),
                        source_node,
                        paths: vec!["/srv".into()],
                        schedule: None,
                        keep_last: 3,
                        replicas: 1,
                        enabled: true
                    },
                    at: 7
                }
            ),
            (proptest::option::of(1u64..3), proptest::option::of(1u64..5)).prop_map(
                |(plan, source_node)| {
                    Command::CreateBackup {
                        plan,
                        source_node,
                        paths: vec!["/etc".into()],
                        at: 8,
                    }
                }
            ),
            (1u64..4, job_status()).prop_map(|(id, status)| Command::SetBackupStatus {
                id,
                status,
                size_bytes: Some(10),
                storage_nodes: Some(vec![1]),
                error: None,
                at: 9
            }),
            (1u64..4).prop_map(|id| Command::DeleteBackup { id }),
            (1u64..4, 1u64..5).prop_map(|(backup, target_node)| Command::CreateRestore {
                backup,
                target_node,
                target_path: "/restore".into(),
                at: 10
            }),
            (1u64..4, job_status()).prop_map(|(id, status)| Command::SetRestoreStatus {
                id,
                status,
                error: None,
                at: 11
            }),
        ]
    }

    fn user_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("admin".to_string()),
            Just("alice".to_string()),
            Just("bob".to_string())
        ]
    }

    fn group_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("admin".to_string()),
            Just("viewer".to_string()),
            Just("backup-ops".to_string()),
            Just("auditors".to_string())
        ]
    }

    fn group_list() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(group_name(), 0..3)
    }

    fn permission() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("config.read".to_string()),
            Just("config.write".to_string()),
            Just("users.read".to_string()),
            Just("no.such".to_string())
        ]
    }

    #[test]
    fn a_batch_refuses_a_second_write_of_one_key_and_a_nested_batch() {
        let mut s = ClusterState::default();
        s.apply(1, &init());
        let put = |key: &str, v: &str| Command::PutConfig {
            key: key.into(),
            value_json: v.into(),
            if_version: None,
            at: 2,
        };
        let batch = Command::Batch(vec![
            put("a", "1"),
            put("b", "2"),
            Command::DeleteConfig {
                key: "a".into(),
                if_version: None,
            },
            Command::Batch(vec![put("c", "3")]),
            put("d", "4"),
        ]);
        let applied = s.apply(
            5,
            &crate::codec::decode(&crate::codec::encode(&batch).unwrap()).unwrap(),
        );
        let Response::Batch(each) = applied.response else {
            panic!("not a batch answer: {:?}", applied.response)
        };
        assert_eq!(each.len(), 5);
        assert!(matches!(&each[0], Response::Config(e) if e.key == "a" && e.version == 5));
        assert!(matches!(&each[1], Response::Config(e) if e.key == "b" && e.version == 5));
        assert!(
            matches!(&each[2], Response::Rejected(Rejection::Conflict(_))),
            "{:?}",
            each[2]
        );
        assert!(
            matches!(&each[3], Response::Rejected(Rejection::Invalid(_))),
            "{:?}",
            each[3]
        );
        assert!(matches!(&each[4], Response::Config(e) if e.key == "d"));
        assert_eq!(s.config["a"].value_json, "1");
        assert!(!s.config.contains_key("c"));
        // One event per write that took effect.
        assert_eq!(applied.events.len(), 3);
    }

    proptest! {
        #[test]
        fn a_batch_applies_like_its_commands_one_by_one(cmds in proptest::collection::vec(arb_command(), 0..40)) {
            // Writes of one config key never share a batch: keep the first of each.
            let mut keys = BTreeSet::new();
            let cmds: Vec<Command> = cmds
                .into_iter()
                .filter(|c| c.config_key().is_none_or(|k| keys.insert(k.to_string())))
                .collect();
            let mut alone = ClusterState::default();
            alone.apply(1, &init());
            let mut batched = alone.clone();
            let mut responses = Vec::new();
            let mut events = Vec::new();
            for c in &cmds {
                let a = alone.apply(2, c);
                responses.push(a.response);
                events.extend(a.events);
            }
            let b = batched.apply(2, &Command::Batch(cmds.clone()));
            prop_assert_eq!(b.response, Response::Batch(responses));
            prop_assert_eq!(b.events, events);
            prop_assert_eq!(alone, batched);
        }

        #[test]
        fn two_replicas_applying_the_same_log_agree(cmds in proptest::collection::vec(arb_command(), 0..60)) {
            let mut a = ClusterState::default();
            let mut b = ClusterState::default();
            for (i, c) in cmds.iter().enumerate() {
                let ra = a.apply(i as u64 + 1, c).response;
                // b goes through the codec, as a follower receiving the log does.
                let c2: Command = crate::codec::decode(&crate::codec::encode(c).unwrap()).unwrap();
                let rb = b.apply(i as u64 + 1, &c2).response;
                prop_assert_eq!(ra, rb);
            }
            prop_assert_eq!(&a, &b);
            let restored = ClusterState::decode(&crate::codec::encode(&a).unwrap()).unwrap();
            prop_assert_eq!(a, restored);
        }

        #[test]
        fn rejected_commands_change_nothing(cmds in proptest::collection::vec(arb_command(), 0..60)) {
            let mut s = ClusterState::default();
            for (i, c) in cmds.iter().enumerate() {
                let before = s.clone();
                let applied = s.apply(i as u64 + 1, c);
                if matches!(applied.response, Response::Rejected(_)) {
                    prop_assert_eq!(&before, &s);
                    prop_assert!(applied.events.is_empty());
                }
            }
        }

        #[test]
        fn once_initialized_an_enabled_admin_always_remains(cmds in proptest::collection::vec(arb_command(), 0..80)) {
            let mut s = ClusterState::default();
            s.apply(1, &init());
            for (i, c) in cmds.iter().enumerate() {
                s.apply(i as u64 + 2, c);
                let admins = s.users.values().filter(|u| u.enabled && u.groups.iter().any(|g| g == "admin")).count();
                prop_assert!(admins >= 1, "no enabled admin left after {:?}", c);
                for name in crate::access::BUILTIN_GROUPS {
                    prop_assert!(s.groups.get(*name).is_some_and(|g| g.builtin), "predefined group {} changed", name);
                }
            }
        }

        #[test]
        fn finished_jobs_never_change_status(cmds in proptest::collection::vec(arb_command(), 0..120)) {
            use crate::catalog::JobStatus::*;
            let mut s = ClusterState::default();
            for (i, c) in cmds.iter().enumerate() {
                let before: Vec<_> = s.backups.values().map(|b| (b.id, b.status)).collect();
                s.apply(i as u64 + 1, c);
                for (id, status) in before {
                    if matches!(status, Succeeded | Failed | Cancelled) {
                        if let Some(b) = s.backups.get(&id) {
                            prop_assert_eq!(b.status, status, "backup {} left a final status after {:?}", id, c);
                        }
                    }
                }
            }
        }

        #[test]
        fn epochs_only_grow_by_one(cmds in proptest::collection::vec(arb_command(), 0..60)) {
            let mut s = ClusterState::default();
            let mut last = 0;
            for (i, c) in cmds.iter().enumerate() {
                s.apply(i as u64 + 1, c);
                let now = s.backup_manager.map(|b| b.epoch).unwrap_or(0);
                prop_assert!(now == last || now == last + 1);
                last = now;
            }
        }
    }
}

//! The node registry and the backup-manager role.

use std::collections::BTreeMap;

use super::{not_found, Applied, ClusterState};
use crate::command::{NodeInfo, NodePatch, Rejection, Response};
use crate::records::{BackupManager, Millis, NodeRecord, NodeStatus, Role, StateEvent};

impl ClusterState {
    /// Whether the registry has node `id` decommissioned (an unknown node is not).
    pub fn is_removed(&self, id: u64) -> bool {
        self.nodes
            .get(&id)
            .is_some_and(|n| n.status == NodeStatus::Removed)
    }

    pub(super) fn register_node(&mut self, info: &NodeInfo, at: Millis) -> Applied {
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

    pub(super) fn add_node(&mut self, info: &NodeInfo, at: Millis) -> Applied {
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

    pub(super) fn update_node(&mut self, id: u64, patch: &NodePatch) -> Applied {
        let Some(node) = self.nodes.get_mut(&id) else {
            return not_found("node", id);
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

    pub(super) fn set_maintenance(&mut self, id: u64, on: bool, at: Millis) -> Applied {
        let Some(node) = self.nodes.get(&id) else {
            return not_found("node", id);
        };
        if node.status == NodeStatus::Removed {
            return super::conflict(format!("node {id} was decommissioned"));
        }
        let record = node.clone();
        let changed = if on {
            // Kept from when it began, if it already had.
            let mut begun = false;
            self.maintenance.entry(id).or_insert_with(|| {
                begun = true;
                at
            });
            begun
        } else {
            self.maintenance.remove(&id).is_some()
        };
        let events = if changed {
            vec![StateEvent::NodeUpdated { node_id: id }]
        } else {
            Vec::new()
        };
        Applied::ok(Response::Node(record), events)
    }

    pub(super) fn set_node_status(&mut self, id: u64, status: NodeStatus, at: Millis) -> Applied {
        let Some(node) = self.nodes.get_mut(&id) else {
            return not_found("node", id);
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

    pub(super) fn assign_backup_manager(
        &mut self,
        node_id: u64,
        epoch: u64,
        at: Millis,
    ) -> Applied {
        let current = self.backup_manager.map(|b| b.epoch).unwrap_or(0);
        if epoch != current + 1 {
            return Applied::rejected(Rejection::StaleEpoch {
                proposed: epoch,
                current,
            });
        }
        let Some(node) = self.nodes.get(&node_id) else {
            return not_found("node", node_id);
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
    use crate::command::{Command, Rejection, Response};
    use crate::records::{NodeStatus, Role};
    use crate::state::fixtures::register;
    use crate::state::ClusterState;

    #[test]
    fn backup_manager_epoch_is_fenced() {
        let mut s = ClusterState::default();
        s.apply(1, &register(1, vec![Role::BackupManager], 0));
        s.apply(2, &register(2, vec![Role::Storage], 0));
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

    #[test]
    fn a_node_is_removed_only_once_decommissioned_and_until_re_added() {
        let mut s = ClusterState::default();
        s.apply(1, &register(1, vec![Role::Storage], 0));
        let status = |status| Command::SetNodeStatus {
            id: 1,
            status,
            at: 0,
        };
        assert!(!s.is_removed(1));
        assert!(!s.is_removed(9), "an unknown node is not removed");
        s.apply(2, &status(NodeStatus::Removed));
        assert!(s.is_removed(1));
        s.apply(3, &status(NodeStatus::Down));
        assert!(!s.is_removed(1));
    }
}

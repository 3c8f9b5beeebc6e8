//! What a member may ask the leader to write over `/internal/leader`.
//!
//! Members forward two kinds of writes: their users' (always wrapped in
//! `Command::Audited` by the service layer, which checked the user's permission)
//! and their own work (registering themselves, the backup manager's jobs and the
//! reports of the nodes running them, the CA the cluster formed with, audit
//! records of logins). What only the cluster manager decides — forming the
//! cluster, a node's health (a `Removed` status revokes its certificate), who
//! holds the backup-manager role — and batches, which the leader makes itself,
//! are refused when they come from another node, as is a user's write without
//! its audit record. The match is exhaustive: a new command must be placed here.

use bcm_raft_store::{Command, NodeStatus};

/// Who proposes a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proposer {
    /// The leader (the cluster manager) alone.
    Leader,
    /// A node, for its own work.
    Node,
    /// A user's request, through the service layer (always audited).
    User,
    /// Either (a node's registration or an operator's re-admission; the
    /// backup manager's retention or a user's delete; the first CA or a rotation).
    NodeOrUser,
}

/// The one exhaustive list: a new command must be placed here.
fn proposer(command: &Command) -> Proposer {
    use Proposer::*;
    match command {
        Command::InitCluster { .. }
        | Command::AssignBackupManager { .. }
        | Command::SetNodeStatus { .. }
        | Command::Batch(_) => Leader,
        Command::StartJob { .. }
        | Command::JobProgress { .. }
        | Command::FinishJob { .. }
        | Command::RunSlot { .. }
        | Command::MoveReplica { .. }
        | Command::Audit { .. }
        | Command::Audited { .. } => Node,
        Command::RegisterNode { .. }
        | Command::DeleteBackup { .. }
        | Command::AddClusterCa { .. } => NodeOrUser,
        Command::AddNode { .. }
        | Command::UpdateNode { .. }
        | Command::PutConfig { .. }
        | Command::DeleteConfig { .. }
        | Command::CreateUser { .. }
        | Command::UpdateUser { .. }
        | Command::DeleteUser { .. }
        | Command::PutGroup { .. }
        | Command::DeleteGroup { .. }
        | Command::CreatePlan { .. }
        | Command::UpdatePlan { .. }
        | Command::DeletePlan { .. }
        | Command::CreateBackup { .. }
        | Command::SetBackupStatus { .. }
        | Command::CreateRestore { .. }
        | Command::SetRestoreStatus { .. }
        | Command::RevokeToken { .. }
        | Command::RequestRestore { .. }
        | Command::SetMaintenance { .. }
        | Command::RenewNodeCerts { .. } => User,
    }
}

/// Why a member may not forward `command`, or `None` if it may; `removed` says
/// whether a node is decommissioned (in the leader's state).
pub fn refusal(command: &Command, removed: impl Fn(u64) -> bool) -> Option<String> {
    match command {
        // A user's write, with its record: what a user's request proposes.
        Command::Audited { inner, .. } => match proposer(inner) {
            Proposer::User | Proposer::NodeOrUser => None,
            Proposer::Leader | Proposer::Node => {
                Some(format!("no user's request proposes {}", name(inner)))
            }
        },
        // The one status a member's API proposes: a decommissioned node
        // re-admitted by an operator (service/nodes.rs) is `Down` until it
        // registers again.
        Command::SetNodeStatus {
            id,
            status: NodeStatus::Down,
            ..
        } if removed(*id) => None,
        // A node forwards the cluster's first CA; a rotation is an operator's
        // write and comes audited.
        Command::AddClusterCa {
            retire_previous_at: Some(_),
            ..
        } => Some("a CA rotation is an operator's write: it comes with its audit record".into()),
        _ => match proposer(command) {
            Proposer::Leader => Some(format!(
                "only the cluster manager (the leader) proposes {}",
                name(command)
            )),
            Proposer::Node | Proposer::NodeOrUser => None,
            Proposer::User => Some(format!(
                "{} is a user's write: it comes with its audit record",
                name(command)
            )),
        },
    }
}

/// The command's variant name, for the refusal.
fn name(command: &Command) -> String {
    let debug = format!("{command:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcm_raft_store::AuditEntry;

    fn create_user() -> Command {
        Command::CreateUser {
            name: "mallory".into(),
            password_hash: "$argon2id$...".into(),
            groups: vec!["admin".into()],
            at: 1,
        }
    }

    fn audited(inner: Command) -> Command {
        Command::Audited {
            entry: AuditEntry {
                at: 1,
                actor: "admin".into(),
                addr: None,
                action: "users.create".into(),
                target: "mallory".into(),
                detail: String::new(),
            },
            inner: Box::new(inner),
        }
    }

    fn status(id: u64, status: NodeStatus) -> Command {
        Command::SetNodeStatus { id, status, at: 1 }
    }

    #[test]
    fn a_users_write_is_forwarded_with_its_record_only() {
        let none = |_| false;
        let why = refusal(&create_user(), none).expect("a bare user write is refused");
        assert!(why.contains("CreateUser"), "{why}");
        assert_eq!(refusal(&audited(create_user()), none), None);
        assert_eq!(
            refusal(&audited(Command::DeleteBackup { id: 3 }), none),
            None
        );
    }

    #[test]
    fn what_the_cluster_manager_decides_is_not_forwarded() {
        let none = |_| false;
        let assign = Command::AssignBackupManager {
            node_id: 2,
            epoch: 9,
            at: 1,
        };
        assert!(refusal(&assign, none).is_some());
        // Not even dressed as a user's write.
        let why = refusal(&audited(assign), none).unwrap();
        assert!(why.contains("AssignBackupManager"), "{why}");
        assert!(refusal(&status(3, NodeStatus::Removed), none).is_some());
        assert!(refusal(&audited(status(3, NodeStatus::Removed)), none).is_some());
        assert!(refusal(&Command::Batch(vec![]), none).is_some());
    }

    #[test]
    fn a_removed_node_is_readmitted_as_down_only() {
        let removed = |id| id == 3;
        assert_eq!(refusal(&status(3, NodeStatus::Down), removed), None);
        assert!(refusal(&status(2, NodeStatus::Down), removed).is_some());
        assert!(refusal(&status(3, NodeStatus::Up), removed).is_some());
    }

    #[test]
    fn a_nodes_own_work_is_forwarded() {
        let none = |_| false;
        assert_eq!(refusal(&Command::DeleteBackup { id: 3 }, none), None);
    }
}

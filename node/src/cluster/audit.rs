//! What the cluster manager does by itself to roles and membership, in the
//! audit log: the backup-manager role handed over, a node registering (joining,
//! or coming back with new addresses), a node promoted to voter or demoted. The
//! actor is the node that asked (`node N`): the leader, or the node registering.
//! (The writes users ask for are recorded by the service layer.)

use std::fmt::Display;

use bcm_raft_store::{AuditEntry, AuditOutcome, Command, NodeId};

use super::{local, now_ms, Node};

/// The record of `action` on `target` by node `actor`.
fn entry(actor: NodeId, action: &str, target: impl Display, detail: String) -> AuditEntry {
    AuditEntry {
        at: now_ms(),
        actor: format!("node {actor}"),
        addr: None,
        action: action.to_string(),
        target: target.to_string(),
        detail,
    }
    .bounded()
}

/// `command`, asked for by node `actor`, with its record.
pub fn audited(
    actor: NodeId,
    action: &str,
    target: impl Display,
    detail: String,
    command: Command,
) -> Command {
    Command::Audited {
        entry: entry(actor, action, target, detail),
        inner: Box::new(command),
    }
}

/// Records what this node, the leader, did that is no command of its own (a
/// membership change). A record that cannot be written is logged and given up.
pub async fn record(node: &Node, action: &str, target: impl Display, detail: String) {
    let command = Command::Audit {
        entry: entry(node.cfg.id, action, target, detail),
        outcome: AuditOutcome::Ok,
    };
    if let Err(e) = local::write_local(node, command).await {
        tracing::warn!(action, "audit record not written: {e}");
    }
}

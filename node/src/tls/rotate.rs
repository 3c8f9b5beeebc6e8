//! Rotating the cluster CA: a new CA, cross-signed by the one it replaces so that
//! nodes that do not trust it yet still accept the certificates it issues, with
//! an overlap during which both are trusted.

use std::time::Duration;

use bcm_raft_store::Command;

use super::ca::CaKey;
use super::enroll;
use crate::cluster::{now_ms, Node};

/// The command that rotates the CA; every node then renews its certificate
/// from the new CA (sync.rs), and the old one is trusted for `overlap` more.
pub fn new_ca_command(node: &Node, overlap: Duration) -> anyhow::Result<Command> {
    let (old, _) = enroll::issuing_ca(node)?.ok_or_else(|| {
        anyhow::anyhow!("this cluster has no CA: its nodes talk plaintext (http:// rpc addresses)")
    })?;
    let new = CaKey::generate()?;
    let cross = old.cross_sign(&new)?;
    let now = now_ms();
    Ok(Command::AddClusterCa {
        ca: new.sealed(&node.cfg.secret, Some(cross), now),
        retire_previous_at: Some(now + overlap.as_millis() as u64),
        at: now,
    })
}

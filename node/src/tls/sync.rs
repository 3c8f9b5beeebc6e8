//! Keeping a node's TLS material in step with the replicated state: the CAs it
//! trusts, the nodes it refuses, its own certificate renewed when it is due, and
//! (on the bootstrap member that made it) the first CA written into the state.

use std::collections::BTreeSet;
use std::time::Duration;

use bcm_raft_store::tls::ClusterTls;
use bcm_raft_store::{Command, NodeStatus};

use super::ca::{self, NODE_VALIDITY};
use super::enroll;
use crate::cluster::{now_ms, Node, SharedNode};

/// Runs until the node shuts down.
pub async fn run(node: SharedNode) {
    let Some(tls) = node.tls.clone() else {
        return;
    };
    let mut shutdown = node.shutdown.clone();
    let mut announced_ca = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
        if *node.shutdown.borrow() {
            return;
        }
        let (cluster_tls, revoked, formed) = node.state.read(|d| {
            let revoked: BTreeSet<u64> = d
                .state
                .nodes
                .values()
                .filter(|n| n.status == NodeStatus::Removed)
                .map(|n| n.id)
                .collect();
            (d.state.tls.clone(), revoked, d.state.cluster_id.is_some())
        });
        tls.set_revoked(revoked);
        let Some(cluster_tls) = cluster_tls else {
            if formed && !announced_ca {
                announced_ca = announce_first_ca(&node).await;
            }
            continue;
        };
        let now = now_ms();
        let anchors: Vec<String> = cluster_tls
            .trusted_at(now)
            .map(|c| c.cert_pem.clone())
            .collect();
        if let Err(e) = tls.set_anchors(anchors) {
            tracing::error!("cannot take the cluster's CAs: {e:#}");
        }
        if let Some(why) = renewal_due(&tls.own_facts(), &cluster_tls, now) {
            match renew(&node) {
                Ok(()) => tracing::info!("renewed this node's certificate ({why})"),
                Err(e) => tracing::error!("cannot renew this node's certificate ({why}): {e:#}"),
            }
        }
    }
}

/// Why this node's certificate must be renewed now, if it must.
fn renewal_due(own: &Option<ca::CertFacts>, tls: &ClusterTls, now: u64) -> Option<&'static str> {
    let own = own.as_ref()?;
    let issuing = tls.issuing()?;
    if own.issuer != ca::ca_name(&issuing.cert_pem) {
        return Some("the cluster has a new CA");
    }
    // Certificates are backdated by an hour (ca.rs): issued an hour after their start.
    let issued_ms = (own.not_before + 3600).max(0) as u64 * 1000;
    if issued_ms < tls.renew_before {
        return Some("renewal was asked for (bcm certs rotate)");
    }
    let left = (own.not_after * 1000).saturating_sub(now as i64);
    if left < (NODE_VALIDITY.as_millis() / 3) as i64 {
        return Some("it expires within a third of its lifetime");
    }
    None
}

/// Issues this node a new certificate from the state's CA (any member holding
/// the cluster secret can) and takes it into use.
pub fn renew(node: &Node) -> anyhow::Result<()> {
    let tls = node.tls.as_ref().ok_or_else(|| anyhow::anyhow!("no TLS"))?;
    let (ca, cross) =
        enroll::issuing_ca(node)?.ok_or_else(|| anyhow::anyhow!("the cluster has no CA"))?;
    let chain = enroll::issue(
        &ca,
        cross.as_deref(),
        node.cfg.id,
        &node.cfg.rpc_advertise,
        &tls.csr()?,
    )?;
    tls.install(&chain, tls.anchors())
}

/// Writes the CA this node made while forming into the replicated state.
/// True once it is there (or this node made none).
async fn announce_first_ca(node: &SharedNode) -> bool {
    let ca = match enroll::local_ca(node) {
        Ok(Some(ca)) => ca,
        Ok(None) => return true,
        Err(e) => {
            tracing::error!("{e:#}");
            return false;
        }
    };
    let cmd = Command::AddClusterCa {
        ca,
        retire_previous_at: None,
        at: now_ms(),
    };
    match crate::cluster::leader::write(node, cmd).await {
        Ok(_) => {
            tracing::info!("the cluster CA is in the replicated state");
            true
        }
        Err(e) => {
            tracing::info!("cannot record the cluster CA yet: {e}");
            false
        }
    }
}

//! Cluster TLS for operators: the CAs, every member's certificate, rotation.

use std::time::Duration;

use bcm_api::{CaView, CertsView, NodeCertView, RotateCerts, RotateStarted};
use bcm_raft_store::Command;

use super::audit::Audit;
use super::auth::Caller;
use super::OpError;
use crate::cluster::rpc::{self, Hello};
use crate::cluster::{now_ms, Node};
use crate::tls::{ca, rotate};

/// Overlap of a CA rotation when none is given: a day.
const DEFAULT_OVERLAP_SECS: u64 = 24 * 3600;

/// The CAs and each member's certificate (members asked in parallel, 2 s each).
pub async fn view(node: &Node) -> CertsView {
    let tls = node.state.read(|d| d.state.tls.clone()).unwrap_or_default();
    let issuing = tls.issuing().map(|c| c.cert_pem.clone());
    let now = now_ms();
    let cas = tls
        .cas
        .iter()
        .filter(|c| c.retire_at.is_none_or(|t| t > now))
        .map(|c| CaView {
            name: ca::ca_name(&c.cert_pem),
            created: c.created,
            retire_at: c.retire_at,
            issuing: Some(&c.cert_pem) == issuing.as_ref(),
        })
        .collect();
    let members: Vec<(u64, String)> = {
        let m = node.raft_metrics();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.rpc_addr.clone()))
            .collect()
    };
    let asks = members.into_iter().map(|(id, addr)| async move {
        if id == node.cfg.id {
            return node.hello().cert.unwrap_or(NodeCertView {
                node_id: id,
                ..Default::default()
            });
        }
        let hello: Result<Hello, _> = node
            .peers
            .call(&addr, rpc::PATH_HELLO, &(), Duration::from_secs(2))
            .await;
        match hello {
            Ok(h) => h.cert.unwrap_or(NodeCertView {
                node_id: id,
                ..Default::default()
            }),
            Err(e) => NodeCertView {
                node_id: id,
                error: Some(e.to_string()),
                ..Default::default()
            },
        }
    });
    CertsView {
        mutual_tls: node.tls.is_some(),
        cas,
        renew_before: tls.renew_before,
        nodes: futures_util::future::join_all(asks).await,
    }
}

/// Renews every node's certificate, or rotates the CA.
pub async fn rotate(
    node: &Node,
    caller: &Caller,
    body: RotateCerts,
) -> Result<RotateStarted, OpError> {
    let action = if body.ca {
        "cluster.ca.rotate"
    } else {
        "cluster.certs.rotate"
    };
    let audit = caller.audit(action, "cluster");
    audit.run(node, rotate_audited(node, &audit, body)).await
}

async fn rotate_audited(
    node: &Node,
    audit: &Audit,
    body: RotateCerts,
) -> Result<RotateStarted, OpError> {
    if node.tls.is_none() {
        return Err(OpError::conflict(
            "this cluster's internal traffic is plaintext (http:// rpc addresses): it has no certificates to rotate",
        ));
    }
    if !body.ca && body.overlap_secs.is_some() {
        return Err(OpError::invalid(
            "overlap_secs",
            "applies only with \"ca\": true",
        ));
    }
    let overlap = body.overlap_secs.unwrap_or(DEFAULT_OVERLAP_SECS);
    if !(60..=30 * 24 * 3600).contains(&overlap) {
        return Err(OpError::invalid(
            "overlap_secs",
            "must be between 60 (a minute) and 2592000 (30 days)",
        ));
    }
    let (command, message) = if body.ca {
        // The new CA is cross-signed by the newest one this node has: not one a
        // rotation through another node a moment ago has already replaced.
        super::caught_up(node).await?;
        let cmd = rotate::new_ca_command(node, Duration::from_secs(overlap))
            .map_err(|e| OpError::Internal(format!("{e:#}")))?;
        (
            cmd,
            format!(
                "a new CA issues from now on; every node renews its certificate from it within seconds; the old CA stays trusted for {overlap} s"
            ),
        )
    } else {
        (
            Command::RenewNodeCerts { at: now_ms() },
            "every node renews its certificate within seconds".to_string(),
        )
    };
    super::write::<()>(node, audit, command).await?;
    Ok(RotateStarted { message })
}

/// The trusted CA certificates (PEM), if the cluster has any.
pub fn ca_pem(node: &Node) -> Option<String> {
    let now = now_ms();
    let pem: String = node.state.read(|d| {
        d.state
            .tls
            .as_ref()
            .map(|t| t.trusted_at(now).map(|c| c.cert_pem.clone()).collect())
            .unwrap_or_default()
    });
    if !pem.is_empty() {
        return Some(pem);
    }
    node.tls
        .as_ref()
        .map(|t| t.anchors().concat())
        .filter(|p| !p.is_empty())
}

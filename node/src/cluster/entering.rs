//! Entering the cluster: forming it (bootstrap members with empty data), joining it
//! through a member (new nodes), or announcing a restart, retried until it works.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bcm_raft_store::BcmNode;

use super::node::{Node, SharedNode};
use super::rpc::{self, Hello, JoinReply, JoinRequest, LeaderReply};

/// Forms the cluster (bootstrap members with empty data), or joins it, or announces a
/// restarted member, retrying until it succeeds or the node shuts down.
pub(super) async fn enter_cluster(node: SharedNode, pristine: bool) {
    if !pristine {
        // Raft data of a cluster that went on without this node stays unused.
        let fenced = super::fence::superseded(&node).await;
        node.asking_members.store(false, Ordering::SeqCst);
        if let Some(why) = fenced {
            tracing::error!("{why}");
            *node.refused.lock().expect("refused lock") = Some(why);
            return;
        }
        node.open_raft();
    }
    let me = node.cfg.rpc_advertise.clone();
    let bootstrapping = pristine && node.cfg.bootstrap.contains(&me);
    let mut attempt = 0u32;
    loop {
        if *node.shutdown.borrow() {
            return;
        }
        let result = if !crate::tls::NodeTls::ready(&node) {
            crate::tls::enroll::obtain(&node, pristine)
                .await
                .map(|_| false)
        } else if bootstrapping && !node.raft_open() {
            try_bootstrap(&node).await
        } else {
            try_join(&node, pristine).await
        };
        match result {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                if attempt.is_multiple_of(10) {
                    tracing::info!("not in the cluster yet: {e:#}");
                }
            }
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ok(true): done; Ok(false): try again; the bootstrap falls through to joining once
/// some member reports an already formed cluster.
async fn try_bootstrap(node: &SharedNode) -> anyhow::Result<bool> {
    let mut members = BTreeMap::new();
    let mut formed_elsewhere = false;
    // A member that does not answer keeps a first formation waiting, but not a
    // wiped member whose cluster exists: another member saying so is enough (the
    // silent one may be gone for good, as after `bcm recover`).
    let mut silent = None;
    for addr in &node.cfg.bootstrap {
        if addr == &node.cfg.rpc_advertise {
            members.insert(
                node.cfg.id,
                BcmNode {
                    api_addr: node.cfg.api_advertise.clone(),
                    rpc_addr: node.cfg.rpc_advertise.clone(),
                },
            );
            continue;
        }
        let hello: Hello = match node
            .peers
            .call(addr, rpc::PATH_HELLO, &(), Duration::from_secs(2))
            .await
        {
            Ok(hello) => hello,
            Err(e) => {
                silent.get_or_insert_with(|| format!("waiting for bootstrap member {addr}: {e}"));
                continue;
            }
        };
        if hello.info.rpc_addr != *addr {
            anyhow::bail!(
                "bootstrap member {addr} advertises itself as {}: fix cluster.bootstrap or its node.rpc_advertise",
                hello.info.rpc_addr
            );
        }
        if let Some(prev) = members.insert(
            hello.info.id,
            BcmNode {
                api_addr: hello.info.api_addr.clone(),
                rpc_addr: hello.info.rpc_addr.clone(),
            },
        ) {
            anyhow::bail!(
                "node id {} is used by both {} and {}: ids must be unique",
                hello.info.id,
                prev.rpc_addr,
                addr
            );
        }
        // A peer counts as formed once a leader committed the cluster's identity;
        // a peer that merely called initialize (same membership) is still forming.
        formed_elsewhere |= hello.cluster_id.is_some();
    }
    if formed_elsewhere {
        // The cluster exists and this node has no data: it joins like any new node.
        tracing::info!("the cluster is already formed; joining it");
        return try_join(node, true).await;
    }
    if let Some(why) = silent {
        anyhow::bail!(why);
    }
    node.open_raft();
    match node.raft.initialize(members.clone()).await {
        Ok(()) => tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "cluster formed"),
        Err(openraft::error::RaftError::APIError(
            openraft::error::InitializeError::NotAllowed(_),
        )) => {
            tracing::info!("cluster already initialized by a peer")
        }
        Err(e) => anyhow::bail!("cannot initialize the cluster: {e}"),
    }
    // Registration follows once a leader is known.
    Ok(false)
}

/// Registers this node with the leader. Returns Ok(true) once the leader has it.
async fn try_join(node: &SharedNode, fresh: bool) -> anyhow::Result<bool> {
    let leader_rpc = match node.leader() {
        Some((_, n)) => n.rpc_addr,
        None => find_leader_via(node, &leader_finders(&node.cfg)).await?,
    };
    let req = JoinRequest {
        info: node.info(),
        fresh: fresh && !node.raft_open(),
    };
    let reply: LeaderReply<JoinReply> = node
        .peers
        .call(&leader_rpc, rpc::PATH_JOIN, &req, Duration::from_secs(10))
        .await?;
    match reply {
        LeaderReply::Ok(JoinReply::Proceed) => {
            *node.refused.lock().expect("refused lock") = None;
            node.open_raft();
            tracing::info!(leader = %leader_rpc, "registered with the cluster manager");
            warn_if_roles_differ(node.clone());
            Ok(true)
        }
        LeaderReply::Ok(JoinReply::Superseded { leader, term }) => {
            // As when the members' answers fence it (enter_cluster): no part in
            // Raft, saying why, until it is stopped.
            node.close_raft();
            let why = super::fence::superseded_by(node, leader, term);
            tracing::error!("{why}");
            *node.refused.lock().expect("refused lock") = Some(why);
            Ok(true)
        }
        LeaderReply::NotLeader { .. } | LeaderReply::Unavailable(_) => Ok(false),
        LeaderReply::Refused(why) => {
            *node.refused.lock().expect("refused lock") = Some(why.to_string());
            anyhow::bail!("the cluster manager refused this node: {why}")
        }
    }
}

/// Once this node is ready and has its own registry record, says so when the roles
/// in its config file are not the registry's: the registry's apply (they seed the
/// record at the first registration only; see admission.rs `handle_join`).
fn warn_if_roles_differ(node: SharedNode) {
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut shutdown = node.shutdown.clone();
        while Instant::now() < deadline {
            // Ready: it has applied what the leader had committed, its own record
            // as it is now included (before, a restarted node may replay older roles).
            let registered = match node.readiness().await {
                Ok(()) => node
                    .state
                    .read(|d| d.state.nodes.get(&node.cfg.id).map(|r| r.roles.clone())),
                Err(_) => None,
            };
            if let Some(roles) = registered {
                if roles != node.cfg.roles {
                    let names = |rs: &[bcm_raft_store::Role]| {
                        rs.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
                    };
                    let flags: String = node
                        .cfg
                        .roles
                        .iter()
                        .map(|r| format!(" --role {}", r.as_str()))
                        .collect();
                    tracing::warn!(
                        "node.roles in the config file ({}) are not the cluster registry's ({}), which apply: the config file's only seed them when a node first registers; to apply the config file's, run `bcm nodes update {}{flags}`",
                        names(&node.cfg.roles),
                        names(&roles),
                        node.cfg.id,
                    );
                }
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

/// Whom to ask for the leader: `cluster.join`, then the bootstrap members it does
/// not list (a bootstrap member whose `join` names only itself, wiped and started
/// again, finds the cluster it belongs to through its bootstrap peers).
fn leader_finders(cfg: &crate::config::NodeConfig) -> Vec<String> {
    let mut addrs = cfg.join.clone();
    for b in &cfg.bootstrap {
        if !addrs.contains(b) {
            addrs.push(b.clone());
        }
    }
    addrs
}

/// Asks each address for the leader's rpc address.
async fn find_leader_via(node: &Node, addrs: &[String]) -> anyhow::Result<String> {
    for addr in addrs {
        if addr == &node.cfg.rpc_advertise {
            continue;
        }
        if let Ok(hello) = node
            .peers
            .call::<_, Hello>(addr, rpc::PATH_HELLO, &(), Duration::from_secs(2))
            .await
        {
            if let Some(l) = hello.leader_rpc {
                return Ok(l);
            }
        }
    }
    anyhow::bail!("no leader known by any of {addrs:?}")
}

//! Cluster TLS: a cluster with https:// rpc addresses forms over mutual TLS with
//! its own CA, serves its API over HTTPS, fails over; a client without the CA, a
//! process with the cluster secret but no certificate, and a decommissioned
//! node's certificate are all refused at the handshake; a renewed API
//! certificate is served without a restart; the CA is rotated while a writer
//! sees no failed request.

use std::time::Instant;

use bcm_api::{CertsView, ClusterView};
use bcm_model::{Command, NodeInfo};
use bcm_tests::serde_json::json;
use bcm_tests::{error_chain, wait_until, Cluster, Writer, CLUSTER_SECRET};

use crate::secs;

/// A blocking client that trusts `ca_pem` (if any) and shows `identity` (if any).
fn client(ca_pem: Option<&str>, identity: Option<&[u8]>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(secs(5))
        .tls_info(true)
        .no_proxy();
    if let Some(pem) = ca_pem {
        for c in reqwest::Certificate::from_pem_bundle(pem.as_bytes()).unwrap() {
            b = b.add_root_certificate(c);
        }
    }
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id).unwrap());
    }
    b.build().unwrap()
}

/// The body of `/internal/leader` asking the leader to write `command`: postcard's
/// `LeaderOp::Write(command)`, variant 0 then the command (node/src/cluster/rpc.rs
/// tests this layout).
fn leader_write(command: &Command) -> Vec<u8> {
    let mut body = vec![0u8];
    body.extend(postcard::to_allocvec(command).unwrap());
    body
}

/// A node's certificate and key, as a client identity (PEM).
fn node_identity(c: &Cluster, node: u64) -> Vec<u8> {
    let dir = c.data_dir(node).join("tls");
    let mut pem = std::fs::read(dir.join("node.crt")).unwrap();
    pem.extend(std::fs::read(dir.join("node.key")).unwrap());
    pem
}

/// The certificates once the cluster CA is in the replicated state (the
/// member that made it records it just after the cluster forms) and every
/// member answers with its certificate.
fn settled_certs(c: &Cluster, node: u64, members: usize) -> CertsView {
    let mut seen = None;
    wait_until(secs(15), "the cluster CA to be recorded", || {
        let v: CertsView = c.get_as(node, "/api/v1/cluster/certs")?;
        let ok = !v.cas.is_empty()
            && v.nodes.len() == members
            && v.nodes.iter().all(|n| n.issuer.is_some());
        seen = Some(v.clone());
        if ok {
            Ok(())
        } else {
            Err(format!("{v:?}"))
        }
    });
    seen.unwrap()
}

fn cluster_ca(c: &Cluster, node: u64) -> String {
    let r = c.get(node, "/api/v1/cluster/ca").unwrap();
    assert_eq!(r.status, 200, "{r}");
    assert!(r.body.contains("BEGIN CERTIFICATE"), "{r}");
    r.body
}

#[test]
fn a_tls_cluster_forms_fails_over_and_refuses_strangers() {
    let mut c = Cluster::builder().name("tls").tls().start();
    let leader = c.wait_for_leader();
    assert!(c.api_url(leader).starts_with("https://"));
    assert!(c.rpc_url(leader).starts_with("https://"));
    c.write_eventually("tls-a", &json!(1), secs(10));

    // Every member has a certificate of the cluster CA, kept for its user only.
    let certs = settled_certs(&c, leader, 3);
    assert!(certs.mutual_tls);
    assert_eq!(certs.cas.len(), 1, "{certs:?}");
    assert_eq!(certs.nodes.len(), 3, "{certs:?}");
    for n in &certs.nodes {
        assert_eq!(
            n.issuer.as_deref(),
            Some(certs.cas[0].name.as_str()),
            "{certs:?}"
        );
    }
    for id in 1..=3 {
        use std::os::unix::fs::PermissionsExt;
        let dir = c.data_dir(id).join("tls");
        for f in ["node.key", "node.crt", "ca.crt"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f} of node {id}");
        }
    }
    let ca = cluster_ca(&c, leader);

    // The API speaks HTTPS only: plain HTTP gets no answer, a client without
    // the operators' CA is refused at the handshake.
    let plain = c.api_url(leader).replacen("https://", "http://", 1);
    let r = client(None, None).get(format!("{plain}/healthz")).send();
    assert!(r.is_err(), "plain HTTP was answered: {r:?}");
    let e = client(None, None)
        .get(format!("{}/healthz", c.api_url(leader)))
        .send()
        .expect_err("a client without the CA was answered");
    assert!(
        error_chain(&e).to_lowercase().contains("certificate"),
        "{}",
        error_chain(&e)
    );

    // A process with the cluster secret but no certificate cannot send a Raft
    // RPC: the handshake fails (even trusting the cluster CA), before any HTTP.
    for path in ["/raft/vote", "/internal/leader", "/internal/hello"] {
        let e = client(Some(&ca), None)
            .post(format!("{}{path}", c.rpc_url(leader)))
            .bearer_auth(CLUSTER_SECRET)
            .body(vec![0u8; 8])
            .send()
            .expect_err("a peer without a certificate was answered");
        let why = error_chain(&e);
        assert!(
            why.contains("handshake")
                || why.contains("alert")
                || why.contains("certificate")
                || why.contains("closed"),
            "{path}: {why}"
        );
    }
    // The same call with a member's certificate is answered: the refusal above
    // is the certificate's absence.
    let member = client(Some(&ca), Some(&node_identity(&c, leader)));
    let r = member
        .post(format!("{}/internal/hello", c.rpc_url(leader)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // A member forwards to the leader only what members need: its users'
    // writes with their audit records, and its own work. With a follower's
    // certificate, a bare user write, the backup-manager role, or a
    // registration in another node's name are refused (403) and change nothing.
    let follower = (1..=3).find(|&n| n != leader).unwrap();
    let as_follower = client(Some(&ca), Some(&node_identity(&c, follower)));
    let before: ClusterView = c.get_as(leader, "/api/v1/cluster").unwrap();
    let epoch = before.backup_manager.as_ref().map_or(0, |m| m.epoch);
    let forged = [
        Command::CreateUser {
            name: "mallory".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
            groups: vec!["admin".into()],
            at: 1,
        },
        Command::AssignBackupManager {
            node_id: follower,
            epoch: epoch + 1,
            at: 1,
        },
        Command::RegisterNode {
            info: NodeInfo {
                id: leader,
                name: "impostor".into(),
                api_addr: "https://127.0.0.1:1".into(),
                rpc_addr: "https://127.0.0.1:1".into(),
                roles: vec![],
            },
            at: 1,
        },
    ];
    for command in forged {
        let r = as_follower
            .post(format!("{}/internal/leader", c.rpc_url(leader)))
            .body(leader_write(&command))
            .send()
            .unwrap();
        let status = r.status();
        let body = r.text().unwrap();
        assert_eq!(status, 403, "{command:?} was answered {status}: {body}");
    }
    let users: bcm_tests::serde_json::Value = c.get_as(leader, "/api/v1/users").unwrap();
    assert!(!users.to_string().contains("mallory"), "{users}");
    let after: ClusterView = c.get_as(leader, "/api/v1/cluster").unwrap();
    assert_eq!(
        after.backup_manager.map(|m| (m.node_id, m.epoch)),
        before.backup_manager.map(|m| (m.node_id, m.epoch))
    );
    assert!(
        !after.members.iter().any(|m| m.name == "impostor"),
        "{after:?}"
    );

    // Failover: the leader is killed, another takes over, writes go on, and the
    // old leader comes back with its certificate from disk.
    c.kill(leader);
    let new = c.wait_for_new_leader(leader);
    c.write_eventually("tls-b", &json!(2), secs(10));
    c.restart(leader);
    c.wait_ready(leader, secs(30));
    let v: ClusterView = c.get_as(leader, "/api/v1/cluster").unwrap();
    assert_eq!(v.members.len(), 3);
    assert_eq!(c.config_value(leader, "tls-b").unwrap(), Some(json!(2)));

    // A node that joins later gets its certificate with the cluster secret,
    // then talks mutual TLS like the others.
    let joiner = c.start_extra(&["storage"]);
    c.wait_ready(joiner, secs(45));
    let certs: CertsView = c.get_as(new, "/api/v1/cluster/certs").unwrap();
    assert!(
        certs
            .nodes
            .iter()
            .any(|n| n.node_id == joiner && n.issuer.is_some()),
        "{certs:?}"
    );
    let joiner_id = node_identity(&c, joiner);
    let as_joiner = client(Some(&ca), Some(&joiner_id));
    let r = as_joiner
        .post(format!("{}/internal/hello", c.rpc_url(new)))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the joiner's certificate is accepted before it is removed"
    );

    // Decommissioned: its certificate is refused by the others from then on.
    let r = c.delete(new, &format!("/api/v1/nodes/{joiner}")).unwrap();
    assert!(r.is_success(), "{r}");
    c.kill(joiner);
    wait_until(
        secs(15),
        "the removed node's certificate to be refused",
        || {
            for id in 1..=3 {
                let fresh = client(Some(&ca), Some(&joiner_id));
                match fresh
                    .post(format!("{}/internal/hello", c.rpc_url(id)))
                    .send()
                {
                    Err(e)
                        if error_chain(&e).contains("alert")
                            || error_chain(&e).contains("handshake") => {}
                    Err(e) => return Err(format!("node {id}: unexpected {}", error_chain(&e))),
                    Ok(r) => return Err(format!("node {id} still answers it: {}", r.status())),
                }
            }
            Ok(())
        },
    );
}

#[test]
fn an_api_certificate_renewed_on_disk_is_served_without_a_restart() {
    let c = Cluster::builder()
        .name("tls-reload")
        .voters(1)
        .tls()
        .start();
    let files = c.api_tls().expect("a TLS cluster");
    let served = |c: &Cluster| -> Vec<u8> {
        let r = client(Some(&files.ca_pem), None)
            .get(format!("{}/healthz", c.api_url(1)))
            .send()
            .unwrap();
        r.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate())
            .expect("the server's certificate")
            .to_vec()
    };
    let before = served(&c);
    let renewed = files.renew("bcm test API, renewed");
    let renewed_der = pem_der(&renewed);
    assert_ne!(before, renewed_der);
    let pid = c.pid(1);
    wait_until(secs(10), "the renewed certificate to be served", || {
        if served(&c) == renewed_der {
            Ok(())
        } else {
            Err("still the old one".into())
        }
    });
    assert_eq!(c.pid(1), pid, "served by the same process");
    // A broken pair (a key that does not fit) keeps the working certificate.
    std::fs::write(&files.key, b"not a key").unwrap();
    std::thread::sleep(secs(3));
    assert_eq!(served(&c), renewed_der);
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn the_cluster_ca_is_rotated_with_no_failed_request() {
    let c = Cluster::builder().name("tls-rotate").tls().start();
    let leader = c.wait_for_leader();
    let before = settled_certs(&c, leader, 3);
    let old_ca = before.cas[0].name.clone();

    let writer = Writer::start(&c, "rotate");
    writer.wait_for_progress(50, secs(30));
    let r = c
        .post(
            leader,
            "/api/v1/cluster/certs/rotate",
            &json!({"ca": true, "overlap_secs": 120}),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{r}");
    let started = Instant::now();
    let mut new_ca = String::new();
    wait_until(
        secs(30),
        "every node to hold a certificate of the new CA",
        || {
            let v: CertsView = c.get_as(leader, "/api/v1/cluster/certs")?;
            let issuing = v.cas.iter().find(|ca| ca.issuing).ok_or("no issuing CA")?;
            if issuing.name == old_ca {
                return Err("the old CA still issues".into());
            }
            new_ca = issuing.name.clone();
            if v.nodes
                .iter()
                .all(|n| n.issuer.as_deref() == Some(issuing.name.as_str()))
            {
                Ok(())
            } else {
                Err(format!("{:?}", v.nodes))
            }
        },
    );
    c.log(format!(
        "all nodes renewed from {new_ca} within {:?}",
        started.elapsed()
    ));
    writer.wait_for_progress(50, secs(30));
    // Node certificates renewed from the current CA: the same, once more.
    let serials = |v: &CertsView| v.nodes.iter().map(|n| n.serial.clone()).collect::<Vec<_>>();
    let before_renewal = serials(&c.get_as(leader, "/api/v1/cluster/certs").unwrap());
    let r = c
        .post(leader, "/api/v1/cluster/certs/rotate", &json!({}))
        .unwrap();
    assert_eq!(r.status, 200, "{r}");
    wait_until(secs(15), "every node to renew its certificate", || {
        let now = serials(&c.get_as(leader, "/api/v1/cluster/certs")?);
        let renewed = now.len() == before_renewal.len()
            && now
                .iter()
                .zip(&before_renewal)
                .all(|(a, b)| a.is_some() && a != b);
        if renewed {
            Ok(())
        } else {
            Err(format!("{before_renewal:?} -> {now:?}"))
        }
    });
    writer.wait_for_progress(50, secs(30));
    let log = writer.stop();
    assert_eq!(
        log.failed, 0,
        "failed writes during the rotation: {:?}",
        log.last_errors
    );
    // New connections carry the new certificates: a follower restarted
    // reconnects to everyone, and the cluster goes on.
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    c.kill(follower);
    c.restart(follower);
    c.wait_ready(follower, secs(30));
    let writer = Writer::start(&c, "after-rotate");
    writer.wait_for_progress(50, secs(30));
    let log = writer.stop();
    assert_eq!(log.failed, 0, "{:?}", log.last_errors);
    let pem = cluster_ca(&c, leader);
    assert_eq!(
        pem.matches("BEGIN CERTIFICATE").count(),
        2,
        "old and new CA trusted during the overlap"
    );
    // A bad overlap is refused and changes nothing.
    let r = c
        .post(
            leader,
            "/api/v1/cluster/certs/rotate",
            &json!({"ca": true, "overlap_secs": 5}),
        )
        .unwrap();
    assert_eq!(r.status, 422, "{r}");
}

/// `api.http_redirect_listen`: plain HTTP there is answered 308 to the same path
/// on the advertised HTTPS address, whatever `Host` the request names, and a
/// client that follows it reaches the API.
#[test]
fn plain_http_is_redirected_to_the_https_api() {
    let mut c = Cluster::builder()
        .name("tls-redirect")
        .voters(1)
        .tls()
        .start();
    c.wait_for_leader();
    let port = bcm_tests::free_port();
    c.kill(1);
    c.set_api_toml(1, &format!("http_redirect_listen = \"127.0.0.1:{port}\""));
    c.restart(1);
    c.wait_ready(1, secs(30));

    let plain = format!("http://127.0.0.1:{port}");
    let no_follow = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let r = no_follow
        .post(format!("{plain}/api/v1/auth/login?next=/x"))
        .header("host", "evil.example")
        .send()
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("{}/api/v1/auth/login?next=/x", c.api_url(1))
    );
    // Followed with the operators' CA, it is the HTTPS API that answers.
    let ca = &c.api_tls().expect("a TLS cluster").ca_pem;
    let r = client(Some(ca), None)
        .get(format!("{plain}/healthz"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.url().as_str().starts_with("https://"), "{}", r.url());
}

//! `bcm dev`: a local three-node cluster for trying bcm out, stopped with Ctrl-C.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;

use bcm_tests::{wait_until, Bcm, DevCluster};

use crate::{millis, secs};

/// Is something accepting connections on this loopback port?
fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), millis(500)).is_ok()
}

#[test]
fn bcm_dev_starts_a_working_cluster_and_ctrl_c_stops_every_node() {
    let mut dev = DevCluster::start(3);

    // It says where the nodes are, the admin password, and when the cluster is ready.
    let password = dev.wait_for_stdout(secs(45), "bcm dev to report a ready cluster", |out| {
        if !out.contains("the cluster is ready") {
            return Err(format!("it printed so far:\n{out}"));
        }
        out.lines()
            .find_map(|l| l.split_once("password: "))
            .map(|(_, p)| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("no admin password in:\n{out}"))
    });
    let out = dev.stdout();
    for i in 1..=3 {
        let url = dev.api_url(i);
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("node {i}:")) && l.contains(&url)),
            "bcm dev names node {i} at {url}:\n{out}"
        );
    }

    // Its first job: a backup from node 1, restored onto node 3, checked file by file.
    let demo = dev.wait_for_stdout(secs(60), "bcm dev's first backup and restore", |out| {
        out.lines()
            .find(|l| l.contains("bcm dev: restore"))
            .map(str::to_string)
            .ok_or_else(|| format!("it printed so far:\n{out}"))
    });
    assert!(demo.contains("byte-identical to the source"), "{demo}");
    let out = dev.stdout();
    assert!(
        out.lines()
            .any(|l| l.starts_with("bcm dev: backup 1 ") && l.contains(" files, ")),
        "bcm dev reports its backup:\n{out}"
    );

    // What it wrote holds the cluster secret and the admin password: for this
    // user only.
    let data = dev.data_dir();
    let mut open = Vec::new();
    let mut check = |p: std::path::PathBuf, want: u32| {
        let m = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        if m != want {
            open.push(format!("{} is {m:o}, not {want:o}", p.display()));
        }
    };
    check(data.clone(), 0o700);
    for f in [
        "cluster-secret",
        "admin-password",
        "node1.toml",
        "node2.toml",
        "node3.toml",
    ] {
        check(data.join(f), 0o600);
    }
    assert!(open.is_empty(), "readable by others: {open:?}");

    // The printed password works with the CLI, against node 2.
    let status = Bcm::new(&dev.home(), &["status", "--server", &dev.api_url(2)])
        .env("BCM_PASSWORD", &password)
        .run(secs(30));
    assert!(status.success(), "{status}");
    for i in 1..=3 {
        assert!(
            status
                .stdout
                .lines()
                .any(|l| l.starts_with(&format!("{i} ")) && l.contains(&format!("node-{i}"))),
            "bcm status lists node {i}:\n{status}"
        );
    }
    assert!(status.stdout.contains("cluster-manager"), "{status}");

    // Ctrl-C: bcm dev stops every node and exits 0.
    dev.interrupt();
    let exit = dev.wait_exit(secs(20));
    assert!(
        exit.success(),
        "bcm dev exited with {exit} after Ctrl-C:\n{}",
        dev.output()
    );
    for i in 1..=3 {
        for port in dev.ports(i) {
            wait_until(
                secs(5),
                &format!("node {i}'s port {port} to stop answering"),
                || {
                    if answers(port) {
                        Err("it still accepts connections".into())
                    } else {
                        Ok(())
                    }
                },
            );
        }
    }
    assert!(
        !dev.group_alive(),
        "a process of bcm dev's group (pgid {}) survived Ctrl-C",
        dev.pgid()
    );
}

/// A port already taken by another program: `bcm dev` says which node could not
/// start and exits non-zero, instead of reporting the other program as its cluster.
#[test]
fn bcm_dev_fails_clearly_when_a_port_is_taken() {
    let base = bcm_tests::free_base_port(&[0, 1, 2, 1000, 1001, 1002]);
    // Something else answers on node 2's API port.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", base + 1)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bcm_tests::bcm_bin())
        .args(["dev", "--base-port", &base.to_string(), "--data-dir"])
        .arg(dir.path().join("dev"))
        .env_remove("BCM_AUTH__ADMIN_PASSWORD")
        .output()
        .unwrap();
    drop(squatter);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("node 2 exited at start"), "{text}");
    assert!(!text.contains("the cluster is ready"), "{text}");
}

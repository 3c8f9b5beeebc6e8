//! `bcm dev`: a local cluster of real `bcm node` processes for trying bcm out.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

#[derive(clap::Args)]
pub struct DevArgs {
    /// Number of nodes (all voters).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Node i serves its API and UI on base-port + i - 1; Raft RPC on base-port + 1000 + i - 1.
    #[arg(long, default_value_t = 8080)]
    base_port: u16,
    /// Where the nodes keep their data; reused (with its data) when it exists.
    #[arg(long, default_value = "bcm-dev-data")]
    data_dir: PathBuf,
    /// Skip the first job: a backup of a small generated tree (in
    /// <data-dir>/demo/source) from node 1 and its restore onto the last node.
    #[arg(long)]
    no_demo: bool,
}

fn write_config(
    dir: &Path,
    i: u16,
    args: &DevArgs,
    secret: &str,
    password: &str,
) -> anyhow::Result<PathBuf> {
    let api = args.base_port + i - 1;
    let rpc = args.base_port + 1000 + i - 1;
    let bootstrap: Vec<String> = (1..=args.nodes)
        .map(|j| format!("\"https://127.0.0.1:{}\"", args.base_port + 1000 + j - 1))
        .collect();
    let data = dir.join(format!("node{i}"));
    let text = format!(
        "# written by `bcm dev`\n[node]\nid = {i}\nname = \"node-{i}\"\ndata_dir = \"{}\"\napi_listen = \"127.0.0.1:{api}\"\nrpc_listen = \"127.0.0.1:{rpc}\"\n\n[cluster]\nsecret = \"{secret}\"\nbootstrap = [{}]\n\n[auth]\nadmin_password = \"{password}\"\n",
        data.display(),
        bootstrap.join(", ")
    );
    let path = dir.join(format!("node{i}.toml"));
    // It holds the cluster secret and the admin password.
    super::write_private(&path, text.as_bytes())?;
    Ok(path)
}

/// Reads a secret kept in the dev directory (making it this user's only, as an
/// older `bcm dev` did not), or creates it.
fn kept(dir: &Path, name: &str, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    if let Ok(v) = std::fs::read_to_string(&path) {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private (0600)", path.display()))?;
        return Ok(v.trim().to_string());
    }
    let v = make();
    super::write_private(&path, v.as_bytes())?;
    Ok(v)
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.nodes > 9 {
        anyhow::bail!("--nodes must be between 1 and 9");
    }
    if args.base_port.checked_add(1000 + args.nodes).is_none() {
        anyhow::bail!("--base-port is too high");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let dir = std::fs::canonicalize(&args.data_dir)?;
    let secret = kept(&dir, "cluster-secret", crate::crypto::generate_password)?;
    let password = kept(&dir, "admin-password", crate::crypto::generate_password)?;
    let exe = std::env::current_exe().context("finding the bcm executable")?;
    let mut children = Vec::new();
    for i in 1..=args.nodes {
        let config = write_config(&dir, i, &args, &secret, &password)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("node{i}.log")))?;
        let child = tokio::process::Command::new(&exe)
            .arg("node")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {i}"))?;
        children.push(child);
    }
    println!(
        "bcm dev: starting {} nodes (data and logs in {})",
        args.nodes,
        dir.display()
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let ready = wait_ready(&client, &args, &mut children).await?;
    // The nodes read BCM_* variables too: a password given that way wins over the
    // one written into their configs.
    let password = match std::env::var("BCM_AUTH__ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => password,
    };
    for i in 1..=args.nodes {
        println!(
            "  node {i}: http://127.0.0.1:{}   (log: {}/node{i}.log)",
            args.base_port + i - 1,
            dir.display()
        );
    }
    println!("  admin user: admin   password: {password}");
    if ready {
        println!("bcm dev: the cluster is ready. Try: BCM_PASSWORD='{password}' bcm status --server http://127.0.0.1:{}", args.base_port);
        if !args.no_demo {
            if let Err(e) = super::demo::run(&dir, args.base_port, args.nodes, &password).await {
                eprintln!("bcm dev: the first backup and restore did not work: {e:#}");
            }
        }
    } else {
        println!("bcm dev: the cluster is not ready yet after 30 s; see the logs above");
    }
    println!("bcm dev: press Ctrl-C to stop all nodes");

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    // A node that dies (or is killed to watch a failover) is reported; the others
    // keep running until Ctrl-C.
    let mut reported = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for (i, c) in children.iter_mut().enumerate() {
                    if let Ok(Some(status)) = c.try_wait() {
                        if !reported[i] {
                            eprintln!("bcm dev: node {} exited ({status}); the others keep running", i + 1);
                            reported[i] = true;
                        }
                    }
                }
            }
        }
    }
    println!("bcm dev: stopping");
    for c in &children {
        if let Some(pid) = c.id() {
            // SIGTERM: each node shuts down cleanly.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    for mut c in children {
        let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
    }
    Ok(())
}

/// Waits until every node answers `/readyz` 200 (false after 30 s). Fails at once
/// when a node exits: whatever answers on its port is not our node.
async fn wait_ready(
    client: &reqwest::Client,
    args: &DevArgs,
    children: &mut [tokio::process::Child],
) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        for (i, c) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                anyhow::bail!(
                    "node {} exited at start ({status}); its log ({}/node{}.log) says why \
                     (a port in use? try --base-port)",
                    i + 1,
                    args.data_dir.display(),
                    i + 1
                );
            }
        }
        let mut all = true;
        for i in 1..=args.nodes {
            let url = format!("http://127.0.0.1:{}/readyz", args.base_port + i - 1);
            let ok = matches!(client.get(&url).send().await, Ok(r) if r.status().is_success());
            all &= ok;
        }
        if all {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(false)
}

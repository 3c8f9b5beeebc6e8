//! `bcm`: every backend instance runs this binary (`bcm node`); operators use the
//! same binary as a CLI (`bcm status`, `bcm login`) and to try bcm out (`bcm dev`).

mod client;
mod cluster;
mod config;
mod crypto;
#[cfg(test)]
mod fuzz;
mod http;
mod jobs;
mod net;
mod service;
mod storage;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bcm", version, about = "Backup Cluster Manager")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// A PEM file of CA certificates to trust for https:// servers (besides
    /// none: the system's roots are not used), for the CLI and `bcm bench`.
    #[arg(long, global = true, env = "BCM_CACERT")]
    cacert: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node of a cluster.
    Node(NodeArgs),
    /// Quorum lost for good: re-form the cluster from this stopped node's data, as
    /// its only voter (the other members are wiped and join it).
    Recover(cluster::recover::RecoverArgs),
    /// Start a local N-node cluster for trying bcm out (no PostgreSQL needed).
    Dev(client::dev::DevArgs),
    /// Log in and keep the token for later commands.
    Login(client::LoginArgs),
    /// Revoke the kept token on every node and forget it.
    Logout(client::LogoutArgs),
    /// Show the cluster: leader, term, members and their health.
    Status(client::StatusArgs),
    /// Users: list, get, create, update, delete.
    Users(client::resources::UsersArgs),
    /// Groups and their permissions.
    Groups(client::resources::GroupsArgs),
    /// The node registry: list, get, add, update, remove (decommission).
    Nodes(client::resources::NodesArgs),
    /// Cluster-wide settings: list, get, set, delete (with compare-and-set).
    Config(client::resources::ConfigArgs),
    /// Backup plans: list, get, create, update, delete.
    Plans(client::resources::PlansArgs),
    /// Backups: list, get, start, delete, restore.
    Backups(client::resources::BackupsArgs),
    /// Restores and their status.
    Restores(client::resources::RestoresArgs),
    /// The audit log: who did what, when, from where (newest first).
    Audit(client::resources::AuditArgs),
    /// Load a cluster (bcm, or etcd for comparison) and report throughput and latency.
    Bench(client::bench::BenchArgs),
    /// Cluster TLS: status (CAs, each node's certificate) and rotate.
    Certs(client::certs::CertsArgs),
    /// Ask a node's health endpoint once; exit 0 on 200 (for container health checks).
    Healthcheck(client::healthcheck::HealthcheckArgs),
}

#[derive(clap::Args)]
struct NodeArgs {
    /// The node's configuration file (see cluster.toml).
    #[arg(long, short, env = "BCM_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides node.id.
    #[arg(long)]
    id: Option<u64>,
    /// Overrides node.data_dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Overrides node.api_listen.
    #[arg(long)]
    api_listen: Option<String>,
    /// Overrides node.rpc_listen.
    #[arg(long)]
    rpc_listen: Option<String>,
    /// Disaster recovery: fill the (empty) data directory from the newest snapshot
    /// in PostgreSQL ([postgres] url) and start as a one-voter cluster; the other
    /// members, started with empty data directories, join it.
    #[arg(long)]
    restore_from_postgres: bool,
    /// With --restore-from-postgres: the cluster whose snapshot to restore
    /// (needed when PostgreSQL holds snapshots of several clusters).
    #[arg(long, requires = "restore_from_postgres")]
    cluster_id: Option<String>,
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    if let Err(e) = client::set_cacert(cli.cacert.as_deref()) {
        eprintln!("bcm: error: {e:#}");
        return ExitCode::FAILURE;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the async runtime");
    let result = rt.block_on(async move {
        match cli.command {
            Cmd::Node(args) => run_node(args).await,
            Cmd::Recover(args) => cluster::recover::run(args).await,
            Cmd::Dev(args) => client::dev::run(args).await,
            Cmd::Login(args) => client::login(args).await,
            Cmd::Logout(args) => client::logout(args).await,
            Cmd::Status(args) => client::status(args).await,
            Cmd::Bench(args) => client::bench::run(args).await,
            Cmd::Certs(args) => client::certs::run(args).await,
            Cmd::Healthcheck(args) => client::healthcheck::run(args).await,
            Cmd::Users(args) => client::resources::users(args).await,
            Cmd::Groups(args) => client::resources::groups(args).await,
            Cmd::Nodes(args) => client::resources::nodes(args).await,
            Cmd::Config(args) => client::resources::config(args).await,
            Cmd::Plans(args) => client::resources::plans(args).await,
            Cmd::Backups(args) => client::resources::backups(args).await,
            Cmd::Restores(args) => client::resources::restores(args).await,
            Cmd::Audit(args) => client::resources::audit(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bcm: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that allocates its own arena (up to 8 per core); with
/// tokio's workers, sled's threads and openraft's tasks that fragments memory: a node
/// holding 100 000 keys measured ~40 MiB more RSS than with two arenas, at the same
/// throughput. `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only adjusts allocator tuning; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
    // glibc raises its mmap threshold each time a large block is freed (up to
    // 32 MiB), after which snapshot-sized buffers (the whole state, encoded) come
    // from the heap and their pages stay resident. A fixed threshold keeps them
    // mmapped and returned at free. It sits just above the largest chunk (8 MiB)
    // and its compressed blob, so that the data path's chunk buffers come from
    // the heap and reuse its pages: at 1 MiB each one was mmapped and faulted in
    // afresh (a backup of 1.4 GB measured 10.0 s of CPU, 7.0 s at 9 MiB); a
    // follower with 100 000 keys measured 75 MiB RSS at 1 MiB, 85 MiB at 9 MiB
    // (178 MiB with glibc's moving threshold) (docs/BENCHMARKS.md).
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: as above.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 9 << 20);
        }
    }
    // With a fixed threshold glibc also trims the heap's top whenever 128 KiB
    // are free there, so the data path's chunk-sized buffers (allocated and
    // freed by the hundred per second) fault their pages in again each time: a
    // backup of 1.4 GB measured 12.6 s before, 7.9 s with 64 MiB kept
    // (docs/BENCHMARKS.md); 32 MiB kept was not enough (11.7 s).
    if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
        // SAFETY: as above.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        }
    }
}

fn init_logging(cfg: &config::LogSection) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BCM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cfg.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let mut overrides = config::Overrides::node(args.id, args.data_dir.as_deref());
    if let Some(a) = args.api_listen {
        overrides.values.push(("node.api_listen", a.into()));
    }
    if let Some(a) = args.rpc_listen {
        overrides.values.push(("node.rpc_listen", a.into()));
    }
    let cfg = config::load(args.config.as_deref(), overrides)?;
    init_logging(&cfg.log);

    // Bind first: a taken port fails at once, before anything is written. (The
    // rpc listener joins the Raft runtime below, as a std listener until then.)
    let rpc_listener = std::net::TcpListener::bind(cfg.rpc_listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| anyhow::anyhow!("cannot listen on node.rpc_listen {}: {e}", cfg.rpc_listen))?;
    let api_listener = tokio::net::TcpListener::bind(cfg.api_listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on node.api_listen {}: {e}", cfg.api_listen))?;
    let redirect_listener = match cfg.api_redirect_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!("cannot listen on api.http_redirect_listen {addr}: {e}")
        })?),
        None => None,
    };
    if args.restore_from_postgres {
        cluster::export::restore_from_postgres(&cfg, args.cluster_id.as_deref()).await?;
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tracing::info!(
        node_id = cfg.id,
        api = %cfg.api_advertise,
        rpc = %cfg.rpc_advertise,
        roles = ?cfg.roles,
        "starting bcm node"
    );
    // Raft (its core, replication, the election timer, proposing) and the
    // cluster-internal listener run on a runtime of their own: a heartbeat or an
    // append never waits behind client work (a handler parsing a 1 MiB body holds
    // a worker thread of the API's runtime for a while). One thread: openraft's
    // core is one task, and its hand-offs to the replication tasks, the state
    // machine's worker and the append streams then stay on that thread instead of
    // waking another; measured, more writes per second with less CPU each and a
    // lower one-client latency than with two (docs/BENCHMARKS.md). Whatever could
    // hold the thread for long runs elsewhere: the state's encoding for a
    // snapshot and its decoding from one on the blocking pool, a job's run on the
    // API's runtime, a chunk's store and load on the blocking pool.
    let raft_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bcm-raft")
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the Raft runtime: {e}"))?;
    let node = raft_rt
        .spawn(cluster::start(cfg, stop_rx.clone()))
        .await??;

    // The Postgres export's status: written by its task, read by /metrics, the
    // cluster view and peers asking the leader.
    let export = node
        .cfg
        .postgres
        .is_some()
        .then(|| Arc::new(cluster::export::ExportState::default()));
    let storage = storage::Storage::open(&node.cfg)?;
    let rpc_extra = match &export {
        Some(e) => cluster::export::router(e.clone()),
        None => axum::Router::new(),
    }
    .merge(storage::routes::router(storage.clone()))
    .merge(jobs::routes::router(Arc::new(jobs::Runs::on(
        tokio::runtime::Handle::current(),
    ))));
    let rpc_app = cluster::rpc_server::router(node.clone(), rpc_extra);
    let rpc_tls = match &node.tls {
        Some(t) => net::serve::Tls::Cluster {
            node: t.clone(),
            mutual: t.server_config(),
            enroll: t.enroll_server_config(),
            enroll_app: tls::enroll::router(node.clone()),
        },
        None => net::serve::Tls::Off,
    };
    let api_tls = match &node.cfg.api_tls {
        Some((cert, key)) => {
            let files = tls::api::ApiTls::open(cert, key)?;
            tokio::spawn(files.clone().watch(stop_rx.clone()));
            net::serve::Tls::Server(files.server_config())
        }
        None => net::serve::Tls::Off,
    };
    let (api_stats, rpc_stats) = (Arc::default(), Arc::default());
    let app = http::AppState::new(
        node.clone(),
        export.clone(),
        storage.clone(),
        Arc::clone(&api_stats),
        Arc::clone(&rpc_stats),
    );
    // The web UI shares the API listener: its pages at the top level, the API under /api/v1.
    let api_app = http::router(app.clone());
    let limits = net::serve::Limits::of(&node.cfg.http);
    let rpc_stop = stop_rx.clone();
    let rpc_node = node.clone();
    let rpc_task = raft_rt.spawn(async move {
        match tokio::net::TcpListener::from_std(rpc_listener) {
            Ok(l) => {
                let streams = vec![
                    cluster::append_stream::streams(rpc_node.clone()),
                    cluster::forward_stream::streams(rpc_node),
                ];
                net::serve::serve(
                    "rpc",
                    l,
                    rpc_app,
                    limits,
                    rpc_stats,
                    net::serve::Speaks {
                        tls: rpc_tls,
                        streams,
                    },
                    rpc_stop,
                )
                .await
            }
            Err(e) => tracing::error!("cannot serve node.rpc_listen: {e}"),
        }
    });
    let api_task = tokio::spawn(net::serve::serve(
        "api",
        api_listener,
        api_app,
        limits,
        api_stats,
        api_tls.into(),
        stop_rx.clone(),
    ));
    if let Some(listener) = redirect_listener {
        tracing::info!(
            addr = ?node.cfg.api_redirect_listen,
            to = %node.cfg.api_advertise,
            "plain HTTP is redirected to the HTTPS API"
        );
        tokio::spawn(net::serve::serve(
            "redirect",
            listener,
            tls::redirect::router(&node.cfg.api_advertise),
            limits,
            Arc::default(),
            net::serve::Tls::Off.into(),
            stop_rx.clone(),
        ));
    }
    tokio::spawn(cluster::manager::run(node.clone()));
    tokio::spawn(jobs::manager::run(node.clone()));
    if let (Some(pg), Some(status)) = (node.cfg.postgres.clone(), export) {
        tokio::spawn(cluster::export::run(node.clone(), pg, status));
    }

    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    if let Err(e) = node.raft.shutdown().await {
        tracing::warn!("raft shutdown: {e}");
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let _ = rpc_task.await;
        let _ = api_task.await;
    })
    .await;
    // Whatever still runs there (a task waiting on a peer) ends with the process.
    raft_rt.shutdown_background();
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

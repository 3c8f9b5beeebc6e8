//! `bcm recover`: re-forms a cluster from one stopped survivor's data when a majority
//! of its voters is lost for good (as etcd's `--force-new-cluster`).
//!
//! Runs on the survivor's machine with its configuration, while it is stopped. It
//! reads the survivor's Raft data whole (its snapshot and every entry of its log,
//! committed or not), refuses when the other voters that answer could still elect a
//! leader, says what may be lost and asks before it changes anything. Then it moves
//! the old Raft directory aside (kept, never deleted) and seeds a new one with the
//! state built from that history: the same last index, a term far above every term
//! the old cluster can have used, this node its only voter. The other members are
//! wiped and started again; they join the new cluster as a lost disk does.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use bcm_raft_store::{codec, BcmNode, HistoryError, LocalHistory, NodeId};

use crate::cluster::rpc::{Hello, PeerError, Peers, PATH_HELLO};
use crate::config::{self, NodeConfig};

/// How long each of the other voters has to answer the probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the new Raft directory is built before it is renamed into place.
const STAGING: &str = "raft.recovering";

/// What the operator types to go ahead.
const CONFIRMATION: &str = "recover";

#[derive(clap::Args)]
pub struct RecoverArgs {
    /// The survivor to re-form the cluster from: this node's own id (run
    /// `bcm recover` on that node's machine, with its configuration).
    #[arg(long, value_name = "N")]
    from_node: NodeId,
    /// The node's configuration file, as for `bcm node`.
    #[arg(long, short, env = "BCM_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides node.id.
    #[arg(long)]
    id: Option<NodeId>,
    /// Overrides node.data_dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

pub async fn run(args: RecoverArgs) -> anyhow::Result<()> {
    let overrides = config::Overrides::node(args.id, args.data_dir.as_deref());
    let cfg = config::load(args.config.as_deref(), overrides)?;
    let n = args.from_node;
    if n != cfg.id {
        anyhow::bail!(
            "--from-node {n}, but this configuration is node {}'s (node.id = {}): run bcm \
             recover on node {n}'s machine with node {n}'s config",
            cfg.id,
            cfg.id
        );
    }
    let raft_dir = cfg.data_dir.join("raft");
    let staging = cfg.data_dir.join(STAGING);
    if !raft_dir.exists() && staging.is_dir() {
        // Only between its two renames (see `reseed`): the new directory is whole.
        anyhow::bail!(
            "{} does not exist but {} does: a `bcm recover` was interrupted after it had \
             moved the old data aside (to raft.before-recover-*); rename {} to raft to \
             finish it",
            raft_dir.display(),
            staging.display(),
            staging.display()
        );
    }
    if !raft_dir.is_dir() {
        anyhow::bail!(
            "{} does not exist: node {n} has no Raft data to recover from (is --data-dir or \
             node.data_dir right?)",
            raft_dir.display()
        );
    }

    // Held (sled's lock) until the new directory is in place: no node starts on it
    // meanwhile.
    let dir = raft_dir.clone();
    let (history, held) = tokio::task::spawn_blocking(move || bcm_raft_store::read_history(&dir))
        .await?
        .map_err(|e| match e {
            HistoryError::InUse { dir } => anyhow::anyhow!(
                "{} is in use: is another bcm process using this data directory? Stop node \
                 {n} first: bcm recover runs while the node is stopped",
                dir.display()
            ),
            HistoryError::Empty { dir } => anyhow::anyhow!(
                "{} holds no Raft data: node {n} has nothing to recover from",
                dir.display()
            ),
            e => anyhow::anyhow!("{e}"),
        })?;
    let Some(last) = history.last_log else {
        anyhow::bail!(
            "{} holds no log and no snapshot: node {n} has nothing to recover from",
            raft_dir.display()
        );
    };

    let mut out = std::io::stdout();
    writeln!(out, "{}", describe(&cfg, &history))?;
    let others = probe_voters(&cfg, &history).await;
    for (id, addr, probe) in &others {
        writeln!(out, "  node {id} ({addr}): {probe}")?;
    }
    check_majority_lost(&cfg, &history, &others)?;
    writeln!(out, "{}", what_may_be_lost(&cfg, &history))?;
    if !args.yes && !confirmed()? {
        anyhow::bail!("aborted: nothing was changed");
    }

    let term = bcm_raft_store::reseeded_term(
        last.leader_id
            .term
            .max(history.vote.map(|v| v.leader_id().term).unwrap_or(0)),
    );
    let aside = reseed(&cfg, &history, term, last.index).await?;
    drop(held);

    let config_flag = args
        .config
        .as_ref()
        .map(|p| format!(" --config {}", p.display()))
        .unwrap_or_default();
    let others = nodes(&members_but(&history, cfg.id));
    writeln!(
        out,
        "\nrecovered: node {n} is now the only voter of cluster {}, at log index {} and term {term}.\n\
         The old Raft data is kept in {}.\n\nNext:\n  \
         1. start this node: bcm node{config_flag}\n  \
         2. on each other member ({others}): stop it if it runs, move its <data_dir>/raft away \
         (its chunk store may stay), start it: it joins the recovered cluster and, with role \
         manager, becomes a voter again.\n  \
         3. a node that is gone for good: `bcm nodes remove ID` takes it out of the registry.\n\n\
         To go back: stop node {n}, move {} away and rename {} to raft.",
        history.state.cluster_id.as_deref().unwrap_or("(no id yet)"),
        last.index,
        aside.display(),
        raft_dir.display(),
        aside.display(),
    )?;
    Ok(())
}

/// What this node's Raft data holds.
fn describe(cfg: &NodeConfig, h: &LocalHistory) -> String {
    let at = |l: Option<bcm_raft_store::LogId>| match l {
        Some(l) => format!("index {} (term {})", l.index, l.leader_id.term),
        None => "none".into(),
    };
    let mem = h.membership.membership();
    let voters: Vec<String> = mem.voter_ids().map(|id| id.to_string()).collect();
    let snapshot = match h.snapshot {
        Some(_) => format!(
            "{}, and {} log entries after it",
            at(h.snapshot),
            h.entries_after_snapshot
        ),
        None => format!("none; {} log entries", h.entries_after_snapshot),
    };
    format!(
        "node {}, Raft data in {}:\n  \
         last log entry:        {}\n  \
         committed (as saved):  {}\n  \
         snapshot:              {snapshot}\n  \
         voters:                {} (membership of {})\n\
         asking the other voters whether they answer ({}s each):",
        cfg.id,
        cfg.data_dir.join("raft").display(),
        at(h.last_log),
        at(h.committed),
        voters.join(", "),
        at(*h.membership.log_id()),
        PROBE_TIMEOUT.as_secs(),
    )
}

/// What a voter's rpc address said to the probe.
enum Probe {
    /// It answers as that voter, with Raft state: it could vote.
    Member,
    /// It answers as that node but holds no Raft state (wiped, waiting to rejoin).
    Empty,
    /// It answers as another node.
    OtherNode(NodeId),
    /// Something answers there but not as a member would (a wrong secret, a
    /// refusal): counted as running, to be safe.
    Answers(String),
    /// Nothing answers.
    Silent(String),
}

impl Probe {
    /// Counted as a voter that could still take part in an election.
    fn running(&self) -> bool {
        matches!(self, Probe::Member | Probe::Answers(_))
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Member => write!(f, "answers, as a member"),
            Probe::Empty => write!(f, "answers, but holds no Raft data (wiped): not counted"),
            Probe::OtherNode(id) => write!(f, "answers as node {id}: not counted"),
            Probe::Answers(what) => write!(f, "answers ({what}): counted as running, to be safe"),
            Probe::Silent(why) => write!(f, "no answer ({why})"),
        }
    }
}

/// Asks every other voter of the last membership, on its rpc address, who it is.
async fn probe_voters(cfg: &NodeConfig, h: &LocalHistory) -> Vec<(NodeId, String, Probe)> {
    // With cluster TLS, peers are asked with this node's certificate.
    let tls = if cfg.cluster_tls {
        crate::tls::NodeTls::open(&cfg.data_dir.join("tls")).ok()
    } else {
        None
    };
    let peers = Peers::new(
        cfg.secret.clone(),
        PROBE_TIMEOUT * 2,
        cfg.rpc_listen.ip(),
        tls,
    );
    let mem = h.membership.membership();
    let probes = mem.voter_ids().filter(|id| *id != cfg.id).map(|id| {
        let addr = mem
            .get_node(&id)
            .map(|n| n.rpc_addr.clone())
            .unwrap_or_default();
        let peers = peers.clone();
        async move {
            let answer = peers
                .call::<_, Hello>(&addr, PATH_HELLO, &(), PROBE_TIMEOUT)
                .await;
            let probe = match answer {
                Ok(hello) if hello.info.id != id => Probe::OtherNode(hello.info.id),
                Ok(hello) if hello.initialized => Probe::Member,
                Ok(_) => Probe::Empty,
                Err(PeerError::Status { status, body, .. }) => {
                    Probe::Answers(format!("HTTP {status}: {body}"))
                }
                Err(PeerError::Decode { message, .. }) => Probe::Answers(message),
                Err(e) => Probe::Silent(e.to_string()),
            };
            (id, addr, probe)
        }
    });
    futures_util::future::join_all(probes).await
}

/// Refuses when the voters that answer could still elect a leader, alone or with
/// this node started again: then nothing is lost for good, and recovering would
/// throw away what they committed.
fn check_majority_lost(
    cfg: &NodeConfig,
    h: &LocalHistory,
    others: &[(NodeId, String, Probe)],
) -> anyhow::Result<()> {
    let configs = h.membership.membership().get_joint_config().clone();
    let mut up: BTreeSet<NodeId> = others
        .iter()
        .filter(|(_, _, p)| p.running())
        .map(|(id, _, _)| *id)
        .collect();
    if majority_of_each(&configs, &up) {
        anyhow::bail!(
            "a majority of the voters answers ({}): this cluster can still elect a leader; \
             `bcm recover` is only for a majority lost for good",
            nodes(&up)
        );
    }
    let answering = (!up.is_empty()).then(|| nodes(&up));
    up.insert(cfg.id);
    if majority_of_each(&configs, &up) {
        let why = match answering {
            Some(them) => format!(
                "{them} of the voters answer{}: with node {} started again, {} form a majority",
                if up.len() == 2 { "s" } else { "" },
                cfg.id,
                nodes(&up),
            ),
            None => format!("node {} alone is a majority of the voters", cfg.id),
        };
        anyhow::bail!(
            "{why} and elect a leader with nothing lost. Start node {} again instead; \
             `bcm recover` is only for a majority lost for good",
            cfg.id
        );
    }
    Ok(())
}

/// "node 2", "nodes 2, 3", "no node".
fn nodes<'a>(ids: impl IntoIterator<Item = &'a NodeId>) -> String {
    let ids: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    match ids.len() {
        0 => "no node".into(),
        1 => format!("node {}", ids[0]),
        _ => format!("nodes {}", ids.join(", ")),
    }
}

/// Whether `up` holds a majority of every configuration (a membership in the middle
/// of a change has two, and an election needs a majority of each).
fn majority_of_each(configs: &[BTreeSet<NodeId>], up: &BTreeSet<NodeId>) -> bool {
    !configs.is_empty()
        && configs
            .iter()
            .all(|c| c.iter().filter(|v| up.contains(v)).count() > c.len() / 2)
}

/// Every member of the last membership but `me`: voters and learners alike hold
/// the old history and must be wiped before they join the recovered cluster.
fn members_but(h: &LocalHistory, me: NodeId) -> Vec<NodeId> {
    h.membership
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .filter(|id| *id != me)
        .collect()
}

/// The warning shown before asking.
fn what_may_be_lost(cfg: &NodeConfig, h: &LocalHistory) -> String {
    let last = h.last_log.map(|l| l.index).unwrap_or(0);
    let committed = h.committed.map(|l| l.index).unwrap_or(0);
    let others = nodes(&members_but(h, cfg.id));
    let mut s = format!(
        "\nThe majority of the voters does not answer. `bcm recover` makes node {} the only \
         voter of a new cluster holding this node's state:\n  \
         - its snapshot and every entry of its log up to index {last} are kept",
        cfg.id
    );
    if last > committed {
        s.push_str(&format!(
            ", also the entries after index {committed} that this node had not seen \
             committed (they may never have been acknowledged to a client)"
        ));
    }
    s.push_str(&format!(
        ";\n  - writes the lost majority committed after index {last} are lost: this node \
         never received them;\n  \
         - the other members ({others}) must be wiped (their <data_dir>/raft moved away) and \
         started again to join the recovered cluster; one started with its old Raft data would \
         still believe in the old cluster;\n  \
         - the old Raft data stays in {}.",
        cfg.data_dir
            .join("raft.before-recover-<unix time>")
            .display()
    ));
    s
}

/// Asks on standard input; true only for the exact word.
fn confirmed() -> anyhow::Result<bool> {
    let mut out = std::io::stdout();
    write!(out, "type \"{CONFIRMATION}\" to continue: ")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the confirmation from standard input")?;
    Ok(line.trim() == CONFIRMATION)
}

/// Seeds a new Raft directory with the state and swaps it in for the old one, which
/// is kept under `raft.before-recover-<unix time>`; returns where.
///
/// The new directory is built beside (`raft.recovering`) and renamed into place
/// after the old one moved aside, so that a crash leaves the old data whole under
/// one of the two names. The staging directory only ever holds a seed of ours, so a
/// leftover of an interrupted run is removed.
async fn reseed(
    cfg: &NodeConfig,
    h: &LocalHistory,
    term: u64,
    index: u64,
) -> anyhow::Result<PathBuf> {
    let data_dir = &cfg.data_dir;
    let raft_dir = data_dir.join("raft");
    let staging = data_dir.join(STAGING);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).with_context(|| {
            format!(
                "removing {} (left by an interrupted run)",
                staging.display()
            )
        })?;
    }
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let state = codec::encode(&h.state).context("encoding the recovered state")?;
    let me = BcmNode {
        api_addr: cfg.api_advertise.clone(),
        rpc_addr: cfg.rpc_advertise.clone(),
    };
    bcm_raft_store::seed_from_export(&staging, state, term, index, cfg.id, me)
        .await
        .with_context(|| format!("seeding {}", staging.display()))?;

    let aside = free_name(data_dir, &format!("raft.before-recover-{}", unix_secs()));
    std::fs::rename(&raft_dir, &aside)
        .with_context(|| format!("moving {} aside to {}", raft_dir.display(), aside.display()))?;
    std::fs::rename(&staging, &raft_dir).with_context(|| {
        format!(
            "moving {} into place as {} (the old data is in {})",
            staging.display(),
            raft_dir.display(),
            aside.display()
        )
    })?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", data_dir.display()))?;
    Ok(aside)
}

/// `dir/name`, or `dir/name-2`, ... when that exists.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let mut path = dir.join(name);
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{name}-{n}"));
        n += 1;
    }
    path
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_majority_counts_in_every_configuration() {
        let three = vec![set(&[1, 2, 3])];
        assert!(majority_of_each(&three, &set(&[2, 3])));
        assert!(!majority_of_each(&three, &set(&[2])));
        assert!(majority_of_each(&three, &set(&[1, 2])));
        let five = vec![set(&[1, 2, 3, 4, 5])];
        assert!(!majority_of_each(&five, &set(&[1, 2])));
        assert!(majority_of_each(&five, &set(&[1, 2, 5])));
        // In the middle of a change from {1,2,3} to {3,4,5}: both need a majority.
        let joint = vec![set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(!majority_of_each(&joint, &set(&[1, 2, 4])));
        assert!(majority_of_each(&joint, &set(&[2, 3, 4])));
        assert!(!majority_of_each(&[], &set(&[1])));
    }
}

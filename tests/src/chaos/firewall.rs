//! Cutting and degrading the links between nodes that each have an address of
//! their own on loopback (`ClusterBuilder::own_addresses`): iptables rules in a
//! chain of this process's own, dropping every packet of a pair (a cut) or a
//! share of them at random (a lossy link: TCP retransmits, at 200 ms and
//! more, make it a slow one too; the kernels here have no netem for plain
//! delay). Root only; the rules go when the `Firewall` does, and `new` clears
//! what a crashed run of the same pid left behind.

use std::process::Command;

/// Rules on the loopback links of this process's cluster.
pub struct Firewall {
    chain: String,
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn iptables(args: &[&str]) -> Result<String, String> {
    let mut all = vec!["-w"];
    all.extend_from_slice(args);
    run("iptables", &all)
}

/// Whether this process may change the firewall (root, with iptables).
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("partitions need root (iptables)".into());
    }
    iptables(&["-L", "INPUT", "-n"]).map(|_| ())
}

impl Firewall {
    /// A chain of this process's own, jumped to from INPUT.
    pub fn new() -> Result<Firewall, String> {
        available()?;
        // Chains left by runs that were killed (no Drop ran): their process
        // is gone, their rules go.
        for line in iptables(&["-S"])?.lines() {
            let Some(old) = line.strip_prefix("-N BCMCHAOS") else {
                continue;
            };
            if !std::path::Path::new(&format!("/proc/{old}")).exists() {
                remove(&format!("BCMCHAOS{old}"));
            }
        }
        let chain = format!("BCMCHAOS{}", std::process::id());
        remove(&chain);
        iptables(&["-N", &chain])?;
        iptables(&["-I", "INPUT", "-j", &chain])?;
        Ok(Firewall { chain })
    }

    /// Drops every packet from `from` to `to` (one way: a TCP connection
    /// either way then stalls, as on a real one-way cut).
    pub fn cut(&self, from: &str, to: &str) -> Result<(), String> {
        iptables(&["-A", &self.chain, "-s", from, "-d", to, "-j", "DROP"]).map(|_| ())
    }

    /// Drops `loss_pct` % of the packets from `from` to `to`, at random.
    pub fn lossy(&self, from: &str, to: &str, loss_pct: u32) -> Result<(), String> {
        let p = format!("{:.2}", f64::from(loss_pct.min(100)) / 100.0);
        iptables(&[
            "-A",
            &self.chain,
            "-s",
            from,
            "-d",
            to,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &p,
            "-j",
            "DROP",
        ])
        .map(|_| ())
    }

    /// Every cut and lossy link gone.
    pub fn heal(&self) -> Result<(), String> {
        iptables(&["-F", &self.chain]).map(|_| ())
    }
}

/// Removes chain `chain` and the jump to it, when they are there.
fn remove(chain: &str) {
    let _ = iptables(&["-D", "INPUT", "-j", chain]);
    let _ = iptables(&["-F", chain]);
    let _ = iptables(&["-X", chain]);
}

impl Drop for Firewall {
    fn drop(&mut self) {
        remove(&self.chain);
    }
}

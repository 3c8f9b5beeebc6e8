//! `bcm-chaos --duration SECONDS --seed N [--clients C] [--keys K] [--nodes N]
//! [--faults kill,pause,...] [--local-reads]`: one chaos run against real bcm
//! processes (see `bcm_tests::chaos`); its last line is the summary, and it
//! exits 0 only when nothing was violated. Root (iptables, tc). Started by
//! `scripts/chaos.sh`.

use std::process::ExitCode;
use std::time::Duration;

use bcm_tests::chaos::{self, Options, FAULTS};

fn main() -> ExitCode {
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        let number = |v: String| -> u64 {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: {v:?} is not a number")))
        };
        match flag.as_str() {
            "--duration" => opts.duration = Duration::from_secs(number(value())),
            "--seed" => opts.seed = number(value()),
            "--clients" => opts.clients = number(value()) as usize,
            "--keys" => opts.keys = number(value()) as usize,
            "--nodes" => opts.nodes = number(value()) as usize,
            "--local-reads" => opts.local_reads = true,
            "--faults" => {
                opts.faults = value()
                    .split(',')
                    .map(|f| {
                        *FAULTS
                            .iter()
                            .find(|k| **k == f)
                            .unwrap_or_else(|| usage(&format!("unknown fault {f:?}")))
                    })
                    .collect()
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    eprintln!("chaos: {opts:?}");
    let report = chaos::run(opts);
    for v in &report.violations {
        eprintln!(
            "violation on {}: {} of {} operations linearized{}",
            v.key,
            v.linearized,
            v.ops,
            if v.gave_up { " (search gave up)" } else { "" }
        );
    }
    if !report.lost.is_empty() {
        eprintln!("lost acknowledged set elements: {:?}", report.lost);
    }
    if let Some(d) = &report.diverged {
        eprintln!("not converged: {d}");
    }
    eprintln!("leader changes: {}", report.leader_changes);
    eprintln!(
        "writes without a definite answer: {} of {} operations",
        report.unanswered, report.ops
    );
    for (kind, gaps) in &report.unavailable_ms {
        let mut g = gaps.clone();
        g.sort_unstable();
        eprintln!(
            "unavailable during {kind}: median {} ms, longest {} ms ({} faults)",
            g[g.len() / 2],
            g[g.len() - 1],
            g.len()
        );
    }
    if let Some(dir) = &report.kept {
        eprintln!(
            "the history (history.json), a window around each violation (violations.json) \
             and every node's log are kept in {}",
            dir.display()
        );
    }
    println!("{}", report.summary());
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("bcm-chaos: {problem}");
    }
    eprintln!(
        "usage: bcm-chaos --duration SECONDS --seed N [--clients C] [--keys K] [--nodes N] \
         [--faults {}] [--local-reads]",
        FAULTS.join(",")
    );
    std::process::exit(2)
}

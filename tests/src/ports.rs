//! Free loopback ports for nodes and helper programs, taken below the ephemeral range.

use std::collections::HashSet;
use std::fs;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

use rand::Rng;

/// Hands out loopback ports that are free now and were never handed out before in this
/// process, so two tests (or two nodes) never share one.
///
/// Ports are taken *below* the kernel's ephemeral range: the harness's own outgoing
/// connections (and the nodes' connections to each other) take their local port from
/// that range, and could otherwise grab a node's port while it is down for a restart.
/// If the ephemeral range leaves no room below it, we fall back to binding port 0.
pub fn free_port() -> u16 {
    let mut used = used_ports().lock().unwrap();
    let (lo, hi) = (12000u16, ephemeral_low().saturating_sub(1));
    let mut rng = rand::thread_rng();
    if hi > lo + 1000 {
        for _ in 0..10_000 {
            let port = rng.gen_range(lo..=hi);
            if used.contains(&port) {
                continue;
            }
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                used.insert(port);
                return port;
            }
        }
    }
    for _ in 0..1000 {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("bind a loopback port")
            .port();
        if used.insert(port) {
            return port;
        }
    }
    panic!("could not find a free loopback port");
}

/// A base port `P` such that every `P + offset` is free on loopback and was never
/// handed out before, for programs that derive their ports from one number (like
/// `bcm dev --base-port P`). Taken below the ephemeral range, as [`free_port`] does.
pub fn free_base_port(offsets: &[u16]) -> u16 {
    let mut used = used_ports().lock().unwrap();
    let span = offsets.iter().copied().max().unwrap_or(0);
    let (lo, hi) = (12000u16, ephemeral_low().saturating_sub(1 + span));
    assert!(
        hi > lo,
        "no room below the ephemeral port range for a block of {span} ports"
    );
    let mut rng = rand::thread_rng();
    for _ in 0..10_000 {
        let base = rng.gen_range(lo..=hi);
        let ports: Vec<u16> = offsets.iter().map(|o| base + o).collect();
        if ports.iter().any(|p| used.contains(p)) {
            continue;
        }
        if ports
            .iter()
            .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            used.extend(ports);
            return base;
        }
    }
    panic!("could not find free loopback ports at offsets {offsets:?} from one base");
}

fn used_ports() -> &'static Mutex<HashSet<u16>> {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    USED.get_or_init(|| Mutex::new(HashSet::new()))
}

fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32768)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
    }
}

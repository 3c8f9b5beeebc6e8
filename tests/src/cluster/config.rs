//! The TOML config file the harness writes for each node.

use std::fmt::Write as _;
use std::fs;

use super::Cluster;
use crate::{ADMIN_PASSWORD, CLUSTER_SECRET};

impl Cluster {
    pub(super) fn write_config(&self, id: u64) {
        let node = self.node(id);
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| toml_str(s)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut toml = String::new();
        let _ = writeln!(toml, "[node]");
        let _ = writeln!(toml, "id = {id}");
        let _ = writeln!(toml, "name = {}", toml_str(&format!("node-{id}")));
        let _ = writeln!(
            toml,
            "data_dir = {}",
            toml_str(&node.data_dir.to_string_lossy())
        );
        let _ = writeln!(toml, "api_listen = \"127.0.0.1:{}\"", node.api_port);
        let _ = writeln!(toml, "api_advertise = {}", toml_str(&node.api_url()));
        let _ = writeln!(toml, "rpc_listen = \"{}:{}\"", node.rpc_host, node.rpc_port);
        let _ = writeln!(toml, "rpc_advertise = {}", toml_str(&node.rpc_url()));
        let _ = writeln!(toml, "roles = {}", list(&node.roles));
        if let Some(disk) = self.disk {
            let _ = writeln!(toml, "disk_reserve_mb = {}", disk.reserve_mb);
        }
        let _ = writeln!(toml);
        let _ = writeln!(toml, "[cluster]");
        let _ = writeln!(toml, "secret = {}", toml_str(CLUSTER_SECRET));
        let _ = writeln!(toml, "bootstrap = {}", list(&self.bootstrap));
        // Bootstrap nodes leave `join` to its default (= bootstrap); the others only
        // know the bootstrap members to register with.
        let _ = writeln!(toml, "join = {}", list(&self.bootstrap));
        if self.snapshot_every.is_some() || self.keep_logs.is_some() {
            let _ = writeln!(toml);
            let _ = writeln!(toml, "[raft]");
        }
        if let Some(n) = self.snapshot_every {
            let _ = writeln!(toml, "snapshot_every = {n}");
        }
        if let Some(n) = self.keep_logs {
            let _ = writeln!(toml, "keep_logs_behind_snapshot = {n}");
        }
        if let Some(ms) = self.grace_ms {
            let _ = writeln!(toml);
            let _ = writeln!(toml, "[manager]");
            let _ = writeln!(toml, "backup_manager_grace_ms = {ms}");
        }
        if let Some((url, interval)) = &self.postgres {
            let _ = writeln!(toml);
            let _ = writeln!(toml, "[postgres]");
            let _ = writeln!(toml, "url = {}", toml_str(url));
            let _ = writeln!(toml, "export_interval_secs = {interval}");
        }
        let api_extra = self.api_toml.get(&id);
        if self.api_tls.is_some() || api_extra.is_some() {
            let _ = writeln!(toml);
            let _ = writeln!(toml, "[api]");
        }
        if let Some(tls) = &self.api_tls {
            let _ = writeln!(toml, "tls_cert = {}", toml_str(&tls.cert.to_string_lossy()));
            let _ = writeln!(toml, "tls_key = {}", toml_str(&tls.key.to_string_lossy()));
        }
        if let Some(extra) = api_extra {
            toml.push_str(extra);
            toml.push('\n');
        }
        let _ = writeln!(toml);
        let _ = writeln!(toml, "[auth]");
        let _ = writeln!(toml, "admin_password = {}", toml_str(ADMIN_PASSWORD));
        if let Some(extra) = self.extra_toml.get(&id) {
            let _ = writeln!(toml);
            toml.push_str(extra);
        }
        fs::write(&node.config_path, toml).expect("write node config");
    }
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}

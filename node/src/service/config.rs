//! Cluster-wide settings: keys, values (any JSON) and versions for compare-and-set.

use bcm_api::ConfigFilter;
use bcm_raft_store::{limits, Command, ConfigEntry};
use serde_json::Value;

use super::auth::Caller;
use super::{lookup, write, OpError};
use crate::cluster::{now_ms, Node};

/// A page of `list` stops growing past this many bytes of keys and values (at
/// least one entry is always sent): `total` still counts every match, and the next
/// page starts at `offset + items.len()`.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Keys: 1 to 256 characters of letters, digits and `. _ - /`.
pub fn check_key(key: &str) -> Result<(), OpError> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(OpError::Invalid {
            field: Some("key".into()),
            message: "key: 1 to 256 characters of letters, digits and . _ - /".into(),
        })
    }
}

/// One page of the entries matching `filter` (bounded by [`PAGE_BYTES`] as well as
/// by the window), with the count of all matches.
pub fn list(
    node: &Node,
    filter: &ConfigFilter,
    window: &bcm_api::Window,
) -> (Vec<ConfigEntry>, usize) {
    // The page's entries are copied out under the read lock.
    node.state.read(|d| {
        let matches = |e: &&ConfigEntry| filter.q.as_deref().is_none_or(|q| e.key.contains(q));
        let total = d.state.config.values().filter(matches).count();
        let mut page = Vec::new();
        let mut bytes = 0usize;
        for e in d
            .state
            .config
            .values()
            .filter(matches)
            .skip(window.offset())
            .take(window.limit())
        {
            bytes += e.key.len() + e.value_json.len();
            if !page.is_empty() && bytes > PAGE_BYTES {
                break;
            }
            page.push(e.clone());
        }
        (page, total)
    })
}

pub fn get(node: &Node, key: &str) -> Result<ConfigEntry, OpError> {
    check_key(key)?;
    lookup(node, "config key", format!("{key:?}"), |s| {
        s.config.get(key)
    })
}

/// Sets `key` to `value`; with `if_version`, only when the key's version matches
/// (`Some(0)`: only when the key does not exist).
/// (The audit log has the key and the version asked for, never the value: a
/// setting may hold a secret.)
pub async fn put(
    node: &Node,
    caller: &Caller,
    key: String,
    value: &Value,
    if_version: Option<u64>,
) -> Result<ConfigEntry, OpError> {
    let audit = caller
        .audit("config.set", &key)
        .detail(if_version_text(if_version));
    audit
        .run(node, async {
            check_key(&key)?;
            let value_json = value.to_string();
            if value_json.len() > limits::CONFIG_VALUE_BYTES {
                // JSON written back can be longer than it came (`1e15` is 1000000000000000.0).
                return Err(OpError::TooLarge {
                    field: Some("value".into()),
                    message: format!(
                        "the value is {} bytes as stored; at most {} are accepted",
                        value_json.len(),
                        limits::CONFIG_VALUE_BYTES
                    ),
                });
            }
            let command = Command::PutConfig {
                key,
                value_json,
                if_version,
                at: now_ms(),
            };
            write(node, &audit, command).await
        })
        .await
}

/// Deletes `key` (with `if_version` as for [`put`]).
pub async fn delete(
    node: &Node,
    caller: &Caller,
    key: String,
    if_version: Option<u64>,
) -> Result<ConfigEntry, OpError> {
    let audit = caller
        .audit("config.delete", &key)
        .detail(if_version_text(if_version));
    audit
        .run(node, async {
            check_key(&key)?;
            write(node, &audit, Command::DeleteConfig { key, if_version }).await
        })
        .await
}

/// A compare-and-set's condition, for the audit log.
fn if_version_text(if_version: Option<u64>) -> String {
    match if_version {
        None => String::new(),
        Some(0) => "only if absent".into(),
        Some(v) => format!("only at version {v}"),
    }
}

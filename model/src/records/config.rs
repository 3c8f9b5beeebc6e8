//! The cluster-wide settings, counted for their quota.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::time::Millis;

/// A cluster-wide setting. `value_json` is JSON text (the binary codec cannot carry
/// self-describing JSON values); `version` is the log index of its last write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub key: String,
    pub value_json: String,
    pub version: u64,
    pub updated_at: Millis,
}

/// The cluster-wide settings by key, with the bytes they hold counted for the
/// quota. Encoded as the plain map (the count is derived, and made again when a
/// state is decoded); read through `Deref`, changed only by the state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigMap {
    entries: BTreeMap<String, ConfigEntry>,
    bytes: u64,
}

impl ConfigMap {
    /// Bytes of keys and values together, as counted against
    /// [`crate::limits::quota::CONFIG_BYTES`].
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn insert(&mut self, entry: ConfigEntry) {
        self.bytes += config_size(&entry.key, &entry.value_json);
        if let Some(old) = self.entries.insert(entry.key.clone(), entry) {
            self.bytes -= config_size(&old.key, &old.value_json);
        }
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<ConfigEntry> {
        let removed = self.entries.remove(key)?;
        self.bytes -= config_size(&removed.key, &removed.value_json);
        Some(removed)
    }
}

impl std::ops::Deref for ConfigMap {
    type Target = BTreeMap<String, ConfigEntry>;
    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl From<BTreeMap<String, ConfigEntry>> for ConfigMap {
    fn from(entries: BTreeMap<String, ConfigEntry>) -> ConfigMap {
        let bytes = entries
            .values()
            .map(|e| config_size(&e.key, &e.value_json))
            .sum();
        ConfigMap { entries, bytes }
    }
}

encoded_as_plain_map!(ConfigMap, entries: BTreeMap<String, ConfigEntry>);

/// What one config entry counts against the config bytes quota.
pub(crate) fn config_size(key: &str, value_json: &str) -> u64 {
    (key.len() + value_json.len()) as u64
}

//! Cluster-wide settings: writes with compare-and-set, within their quota.

use super::{not_found, Applied, ClusterState};
use crate::command::{Rejection, Response};
use crate::limits::quota;
use crate::records::config::config_size;
use crate::records::{ConfigEntry, Millis, StateEvent};

impl ClusterState {
    pub(super) fn put_config(
        &mut self,
        index: u64,
        key: &str,
        value_json: &str,
        if_version: Option<u64>,
        at: Millis,
    ) -> Applied {
        let current = self.config.get(key).map(|e| e.version);
        if let Some(expected) = if_version {
            if current.unwrap_or(0) != expected {
                return Applied::rejected(Rejection::VersionMismatch { expected, current });
            }
        }
        let old_size = self
            .config
            .get(key)
            .map(|e| config_size(&e.key, &e.value_json));
        if old_size.is_none() && self.config.len() >= quota::CONFIG_KEYS {
            return Applied::rejected(Rejection::QuotaExceeded {
                quota: "config.keys".into(),
                limit: quota::CONFIG_KEYS as u64,
                detail: "config keys in the cluster".into(),
            });
        }
        let new_size = config_size(key, value_json);
        let total = self.config.bytes() - old_size.unwrap_or(0) + new_size;
        // A write that shrinks an entry is taken even over the quota.
        if total > quota::CONFIG_BYTES && new_size > old_size.unwrap_or(0) {
            return Applied::rejected(Rejection::QuotaExceeded {
                quota: "config.bytes".into(),
                limit: quota::CONFIG_BYTES,
                detail: format!(
                    "bytes of config keys and values ({} in use)",
                    self.config.bytes()
                ),
            });
        }
        let entry = ConfigEntry {
            key: key.to_string(),
            value_json: value_json.to_string(),
            version: index,
            updated_at: at,
        };
        self.config.insert(entry.clone());
        Applied::ok(
            Response::Config(entry),
            vec![StateEvent::ConfigChanged {
                key: key.to_string(),
                version: index,
            }],
        )
    }

    pub(super) fn delete_config(&mut self, key: &str, if_version: Option<u64>) -> Applied {
        let Some(current) = self.config.get(key).map(|e| e.version) else {
            return not_found("config key", key);
        };
        if let Some(expected) = if_version {
            if current != expected {
                return Applied::rejected(Rejection::VersionMismatch {
                    expected,
                    current: Some(current),
                });
            }
        }
        let removed = self.config.remove(key).expect("checked above");
        Applied::ok(
            Response::Config(removed),
            vec![StateEvent::ConfigDeleted {
                key: key.to_string(),
            }],
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, Rejection, Response};
    use crate::limits::quota;
    use crate::records::config::config_size;
    use crate::state::fixtures::quota_of;
    use crate::state::ClusterState;

    #[test]
    fn compare_and_set_uses_versions() {
        let mut s = ClusterState::default();
        let put = |v: Option<u64>| Command::PutConfig {
            key: "k".into(),
            value_json: "1".into(),
            if_version: v,
            at: 0,
        };
        // Some(0): create only.
        assert!(
            matches!(s.apply(5, &put(Some(0))).response, Response::Config(e) if e.version == 5)
        );
        assert!(matches!(
            s.apply(6, &put(Some(0))).response,
            Response::Rejected(Rejection::VersionMismatch {
                expected: 0,
                current: Some(5)
            })
        ));
        assert!(
            matches!(s.apply(7, &put(Some(5))).response, Response::Config(e) if e.version == 7)
        );
        // Delete then recreate: an old version never matches again (no ABA).
        let del = Command::DeleteConfig {
            key: "k".into(),
            if_version: Some(7),
        };
        assert!(matches!(s.apply(8, &del).response, Response::Config(_)));
        assert!(matches!(s.apply(9, &put(None)).response, Response::Config(e) if e.version == 9));
        assert!(matches!(
            s.apply(10, &put(Some(7))).response,
            Response::Rejected(_)
        ));
    }

    fn put_config(key: &str, value_json: String) -> Command {
        Command::PutConfig {
            key: key.into(),
            value_json,
            if_version: None,
            at: 0,
        }
    }

    #[test]
    fn config_bytes_are_capped_and_counted_through_every_change() {
        let mut s = ClusterState::default();
        let mib = "x".repeat(1 << 20);
        let value = format!("\"{mib}\"");
        let fit = (quota::CONFIG_BYTES / (value.len() as u64 + 8)) as usize;
        for i in 0..fit {
            let r = s.apply(
                i as u64 + 1,
                &put_config(&format!("k{i:05}"), value.clone()),
            );
            assert!(
                matches!(r.response, Response::Config(_)),
                "{i}: {:?}",
                quota_of(&r.response)
            );
        }
        let before = s.clone();
        let r = s
            .apply(10_000, &put_config("one-more", value.clone()))
            .response;
        assert_eq!(quota_of(&r), Some("config.bytes"));
        assert_eq!(s, before, "a refused write changes nothing");
        // Overwriting with something smaller is taken; deleting gives room back.
        let r = s.apply(10_001, &put_config("k00000", "1".into())).response;
        assert!(matches!(r, Response::Config(_)));
        let del = Command::DeleteConfig {
            key: "k00001".into(),
            if_version: None,
        };
        assert!(matches!(
            s.apply(10_002, &del).response,
            Response::Config(_)
        ));
        assert!(matches!(
            s.apply(10_003, &put_config("one-more", value)).response,
            Response::Config(_)
        ));
        let counted: u64 = s
            .config
            .values()
            .map(|e| config_size(&e.key, &e.value_json))
            .sum();
        assert_eq!(s.config.bytes(), counted);
        // The count is made again when a state is decoded (it is not encoded).
        let decoded = ClusterState::decode(&crate::codec::encode(&s).unwrap()).unwrap();
        assert_eq!(decoded.config.bytes(), counted);
        assert_eq!(decoded, s);
    }

    #[test]
    fn config_keys_are_capped() {
        let mut s = ClusterState::default();
        for i in 0..quota::CONFIG_KEYS {
            s.apply(i as u64 + 1, &put_config(&format!("k{i}"), "1".into()));
        }
        assert_eq!(s.config.len(), quota::CONFIG_KEYS);
        let r = s
            .apply(u64::MAX - 1, &put_config("new", "1".into()))
            .response;
        assert_eq!(quota_of(&r), Some("config.keys"));
        // An existing key can still be written.
        let r = s.apply(u64::MAX, &put_config("k7", "2".into())).response;
        assert!(matches!(r, Response::Config(_)));
    }
}

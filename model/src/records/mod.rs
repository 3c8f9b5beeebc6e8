//! The records of the replicated state: plain data, and the rules that need
//! nothing else (which permissions a group holds, which status may follow which).
//! Nothing here imports the commands or the state machine; they import these.

/// Encodes `$ty`, a map kept with something derived from it (an index, a count),
/// as its plain map `$field: $plain` alone, and decodes it through
/// `From<$plain>`, which derives the rest again: postcard writes exactly the
/// bytes of the plain map.
macro_rules! encoded_as_plain_map {
    ($ty:ty, $field:ident: $plain:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&self.$field, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                <$plain as serde::Deserialize>::deserialize(d).map(<$ty>::from)
            }
        }
    };
}

pub mod access;
pub mod audit;
pub mod catalog;
pub mod config;
pub mod event;
pub mod jobs;
pub mod nodes;
pub mod time;
pub mod tls;
pub mod tokens;

pub use access::{builtin_permissions, Group, PermissionSet, User, BUILTIN_GROUPS, PERMISSIONS};
pub use audit::{AuditEntry, AuditLog, AuditOutcome, AuditRecord};
pub use catalog::{Backup, JobStatus, Plan, PlanSpec, Restore};
pub use config::{ConfigEntry, ConfigMap};
pub use event::StateEvent;
pub use jobs::{Attempt, JobRef, Outcome, Progress};
pub use nodes::{BackupManager, NodeRecord, NodeStatus, Role};
pub use time::Millis;
pub use tokens::RevokedTokens;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{ConfigEntry, ConfigMap, RevokedTokens};
    use crate::codec;

    #[test]
    fn maps_with_a_derived_index_encode_as_the_plain_map_and_rebuild_it() {
        let entry = |key: &str, value_json: &str| ConfigEntry {
            key: key.into(),
            value_json: value_json.into(),
            version: 4,
            updated_at: 5,
        };
        let plain: BTreeMap<String, ConfigEntry> = [entry("a", "1"), entry("bb", "\"x\"")]
            .into_iter()
            .map(|e| (e.key.clone(), e))
            .collect();
        let config = ConfigMap::from(plain.clone());
        let bytes = codec::encode(&config).unwrap();
        assert_eq!(bytes, codec::encode(&plain).unwrap());
        let decoded: ConfigMap = codec::decode(&bytes).unwrap();
        assert_eq!((decoded.bytes(), &decoded), (2 + 5, &config));

        let plain = BTreeMap::from([("t1".to_string(), 100), ("t2".to_string(), 50)]);
        let revoked = RevokedTokens::from(plain.clone());
        let bytes = codec::encode(&revoked).unwrap();
        assert_eq!(bytes, codec::encode(&plain).unwrap());
        let mut decoded: RevokedTokens = codec::decode(&bytes).unwrap();
        assert_eq!(decoded, revoked);
        decoded.forget_expired_before(60);
        assert!(decoded.contains("t1") && !decoded.contains("t2"));
    }
}

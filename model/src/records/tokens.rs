//! The tokens logged out before they expired.

use std::collections::{BTreeMap, BTreeSet};

/// Logged-out tokens: signature -> expiry (Unix seconds), with an index by expiry
/// so that forgetting the expired ones costs only what is forgotten. Encoded as the
/// plain map; the index is made again when a state is decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedTokens {
    by_id: BTreeMap<String, u64>,
    by_expiry: BTreeSet<(u64, String)>,
}

impl RevokedTokens {
    pub fn contains(&self, token_id: &str) -> bool {
        self.by_id.contains_key(token_id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub(crate) fn insert(&mut self, token_id: &str, expires_at: u64) {
        if let Some(old) = self.by_id.insert(token_id.to_string(), expires_at) {
            self.by_expiry.remove(&(old, token_id.to_string()));
        }
        self.by_expiry.insert((expires_at, token_id.to_string()));
    }

    /// Forgets every token that expired before `before` (Unix seconds).
    pub(crate) fn forget_expired_before(&mut self, before: u64) {
        while let Some((exp, _)) = self.by_expiry.first() {
            if *exp >= before {
                break;
            }
            let (_, id) = self.by_expiry.pop_first().expect("checked");
            self.by_id.remove(&id);
        }
    }
}

impl From<BTreeMap<String, u64>> for RevokedTokens {
    fn from(by_id: BTreeMap<String, u64>) -> RevokedTokens {
        let by_expiry = by_id.iter().map(|(id, exp)| (*exp, id.clone())).collect();
        RevokedTokens { by_id, by_expiry }
    }
}

encoded_as_plain_map!(RevokedTokens, by_id: BTreeMap<String, u64>);

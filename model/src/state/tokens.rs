//! Logging out: revoked tokens, remembered until they expire.

use super::{Applied, ClusterState};
use crate::command::{Rejection, Response};
use crate::limits::quota;
use crate::records::Millis;

/// Seconds a revoked token's entry outlives its expiry: tokens are accepted up to
/// this much past it (clock skew between nodes).
const REVOCATION_LEEWAY_SECS: u64 = 60;

impl ClusterState {
    /// Whether the token with this signature was logged out.
    pub fn is_revoked(&self, token_id: &str) -> bool {
        self.revoked_tokens.contains(token_id)
    }

    pub(super) fn revoke_token(&mut self, token_id: &str, expires_at: u64, at: Millis) -> Applied {
        if token_id.is_empty() || token_id.len() > 128 {
            return Applied::rejected(Rejection::Invalid(
                "a token id is 1 to 128 characters".into(),
            ));
        }
        let now = at / 1000;
        self.revoked_tokens
            .forget_expired_before(now.saturating_sub(REVOCATION_LEEWAY_SECS));
        if expires_at.saturating_add(REVOCATION_LEEWAY_SECS) >= now {
            if self.revoked_tokens.len() >= quota::REVOKED_TOKENS
                && !self.revoked_tokens.contains(token_id)
            {
                return Applied::rejected(Rejection::QuotaExceeded {
                    quota: "auth.revoked_tokens".into(),
                    limit: quota::REVOKED_TOKENS as u64,
                    detail: "logged-out tokens not yet expired".into(),
                });
            }
            self.revoked_tokens.insert(token_id, expires_at);
        }
        Applied::ok(Response::Done, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::REVOCATION_LEEWAY_SECS;
    use crate::command::{Command, Rejection, Response};
    use crate::limits::quota;
    use crate::state::fixtures::{initialized, quota_of};

    fn revoke(token_id: &str, expires_at: u64, at_secs: u64) -> Command {
        Command::RevokeToken {
            token_id: token_id.into(),
            expires_at,
            at: at_secs * 1000,
        }
    }

    #[test]
    fn a_revoked_token_stays_refused_until_it_expires_then_is_forgotten() {
        let mut s = initialized();
        assert_eq!(
            s.apply(2, &revoke("sig-a", 1_000, 100)).response,
            Response::Done
        );
        assert!(s.is_revoked("sig-a") && !s.is_revoked("sig-b"));
        // One already past its expiry (and the leeway) is not kept.
        s.apply(3, &revoke("sig-old", 10, 100));
        assert!(!s.is_revoked("sig-old"));
        // A later revocation forgets the ones that have expired since.
        s.apply(
            4,
            &revoke("sig-b", 5_000, 1_000 + REVOCATION_LEEWAY_SECS + 1),
        );
        assert!(!s.is_revoked("sig-a") && s.is_revoked("sig-b"));
        assert_eq!(s.revoked_tokens.len(), 1);
        for bad in ["", &"x".repeat(129)] {
            let before = s.clone();
            let r = s.apply(5, &revoke(bad, 9_000, 1_000)).response;
            assert!(
                matches!(r, Response::Rejected(Rejection::Invalid(_))),
                "{r:?}"
            );
            assert_eq!(s, before);
        }
    }

    #[test]
    fn revoked_tokens_are_capped_until_they_expire() {
        let mut s = initialized();
        for i in 0..quota::REVOKED_TOKENS {
            let r = s
                .apply(2, &revoke(&format!("sig-{i}"), 1_000, 100))
                .response;
            assert_eq!(r, Response::Done);
        }
        let r = s.apply(3, &revoke("sig-more", 1_000, 100)).response;
        assert_eq!(quota_of(&r), Some("auth.revoked_tokens"));
        // Once the remembered ones have expired, there is room again.
        let later = 1_000 + REVOCATION_LEEWAY_SECS + 1;
        assert_eq!(
            s.apply(4, &revoke("sig-more", 9_000, later)).response,
            Response::Done
        );
        assert_eq!(s.revoked_tokens.len(), 1);
    }
}

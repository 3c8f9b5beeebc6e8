//! The cluster's certificate authority as the replicated state keeps it: the CA
//! certificates every node trusts, each CA's signing key sealed under a key only
//! the holders of the cluster secret can derive, and when node certificates are due.

use serde::{Deserialize, Serialize};

use super::time::Millis;

/// The cluster's TLS trust, replicated so that any member can issue and check
/// node certificates (see node/src/tls).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterTls {
    /// Trusted CAs, oldest first; the last one issues new node certificates.
    pub cas: Vec<ClusterCa>,
    /// Node certificates issued before this time are renewed by their nodes
    /// (`bcm certs rotate`).
    pub renew_before: Millis,
}

/// One certificate authority of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCa {
    /// Its self-signed certificate (PEM): the trust anchor.
    pub cert_pem: String,
    /// The same CA (subject and key) certified by the previous CA, when it
    /// replaced one: a node that trusts only the previous CA yet accepts the new
    /// one's node certificates through it.
    pub cross_pem: Option<String>,
    /// Its signing key, sealed (node/src/tls/seal.rs): never in the clear here.
    pub sealed_key: Vec<u8>,
    pub created: Millis,
    /// Trusted until then (set when a newer CA replaced it).
    pub retire_at: Option<Millis>,
}

impl ClusterTls {
    /// The CA that issues, if there is one.
    pub fn issuing(&self) -> Option<&ClusterCa> {
        self.cas.last()
    }

    /// The CAs still trusted at `now`.
    pub fn trusted_at(&self, now: Millis) -> impl Iterator<Item = &ClusterCa> {
        self.cas
            .iter()
            .filter(move |ca| ca.retire_at.is_none_or(|t| now < t))
    }
}

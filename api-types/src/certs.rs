//! The cluster's certificates: its CAs, each node's certificate, rotation.

use serde::{Deserialize, Serialize};

/// Cluster TLS as the answering node sees it (`GET /api/v1/cluster/certs`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertsView {
    /// False when the cluster's internal traffic is plaintext (http:// rpc addresses).
    pub mutual_tls: bool,
    /// The trusted CAs, oldest first; the last one issues.
    pub cas: Vec<CaView>,
    /// Node certificates issued before this (ms since the epoch) are renewed.
    pub renew_before: u64,
    /// Every member's certificate, as it answered (null fields: it did not).
    pub nodes: Vec<NodeCertView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CaView {
    pub name: String,
    /// ms since the epoch.
    pub created: u64,
    /// Trusted until then (ms since the epoch); null: for good.
    pub retire_at: Option<u64>,
    pub issuing: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeCertView {
    pub node_id: u64,
    /// The CA that issued it.
    pub issuer: Option<String>,
    pub serial: Option<String>,
    /// Unix seconds.
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// Why it could not be asked, when it could not.
    #[serde(default)]
    pub error: Option<String>,
}

/// `POST /api/v1/cluster/certs/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateCerts {
    /// Rotate the CA itself (every node then renews from the new CA); otherwise
    /// every node renews its certificate from the current CA.
    #[serde(default)]
    pub ca: bool,
    /// With `ca`: how long the old CA stays trusted (seconds, 60 to 30 days;
    /// default one day).
    #[serde(default)]
    #[schema(minimum = 60, maximum = 2592000)]
    pub overlap_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RotateStarted {
    /// What happens now, in words.
    pub message: String,
}

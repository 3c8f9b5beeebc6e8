//! Cluster-wide settings.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigView {
    pub key: String,
    /// Any JSON value.
    pub value: Value,
    /// Changes with every write; use it with `If-Match`. Also sent as `ETag`.
    pub version: u64,
}

/// The body of a `PUT`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigValue {
    /// Any JSON value.
    pub value: Value,
}

crate::filters! {
    /// `GET /config` filters.
    ConfigFilter {
        /// Part of the key.
        q: String,
    }
}

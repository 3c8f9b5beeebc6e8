//! Backup plans: what to back up, when, and how many to keep.

use serde::{Deserialize, Serialize};

/// A backup plan.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlanView {
    pub id: u64,
    pub name: String,
    /// The node whose paths are backed up.
    pub source_node: u64,
    pub paths: Vec<String>,
    /// A cron expression, or null for on demand only.
    pub schedule: Option<String>,
    /// How many backups to keep.
    pub keep_last: u32,
    /// On how many storage nodes each backup is kept.
    pub replicas: u32,
    pub enabled: bool,
    /// Unix milliseconds.
    pub created_at_ms: u64,
}

/// A new plan.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    /// 1 to 64 letters, digits and `. _ -`.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// A registered node.
    #[schema(minimum = 1)]
    pub source_node: u64,
    /// 1 to 64 absolute paths.
    #[schema(min_items = 1, max_items = 64)]
    pub paths: Vec<String>,
    /// A cron expression (e.g. `0 3 * * *`), or null for on demand only.
    #[serde(default)]
    pub schedule: Option<String>,
    /// 1 to 1000 (default 7).
    #[serde(default = "default_keep_last")]
    #[schema(default = 7, minimum = 1, maximum = 1000)]
    pub keep_last: u32,
    /// 1 to 7 (default 1).
    #[serde(default = "default_replicas")]
    #[schema(default = 1, minimum = 1, maximum = 7)]
    pub replicas: u32,
    #[serde(default = "default_enabled")]
    #[schema(default = true)]
    pub enabled: bool,
}

fn default_keep_last() -> u32 {
    7
}
fn default_replicas() -> u32 {
    1
}
fn default_enabled() -> bool {
    true
}

/// PATCH takes any subset of the fields; the result is validated as a whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub source_node: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_items = 1, max_items = 64)]
    pub paths: Option<Vec<String>>,
    /// A cron expression; null removes the schedule.
    #[serde(
        default,
        with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub schedule: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 7)]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Tells `"schedule": null` (`Some(None)`: remove the schedule) from an absent
/// field (`None`: leave it).
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }

    pub fn serialize<S: Serializer>(v: &Option<Option<String>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().and_then(|inner| inner.as_ref()).serialize(s)
    }
}

crate::filters! {
    /// `GET /plans` filters.
    PlanFilter {
        /// Part of the name (any case), or the exact id.
        q: String,
        /// Only plans backing up this node.
        node: u64,
        enabled: bool,
    }
}

//! Logging in and who the caller is.

use serde::{Deserialize, Serialize};

use crate::users::UserView;

/// Credentials.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// A session token and who it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Session {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    pub user: UserView,
}

/// The caller.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Me {
    pub id: u64,
    pub name: String,
    pub groups: Vec<String>,
}

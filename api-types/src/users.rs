//! Users and groups.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A user as the API shows it (never its password hash).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: u64,
    pub name: String,
    pub enabled: bool,
    pub groups: Vec<String>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
}

/// A new user.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1 to 64 letters, digits and `. _ -`, starting with a letter or digit;
    /// unique regardless of case.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// At least 12 characters, not a well-known weak one, not containing the name.
    #[schema(min_length = 12)]
    pub password: String,
    /// Existing groups (`admin`, `operator`, `viewer` or custom).
    #[serde(default)]
    pub groups: Vec<String>,
}

crate::optional_fields! {
    /// Changes to a user; absent fields stay as they are.
    UserPatch {
        enabled: bool,
        /// As for a new user.
        #[schema(min_length = 12)]
        password: String,
        groups: Vec<String>,
    }
}

crate::filters! {
    /// `GET /users` filters.
    UserFilter {
        /// Part of the name (any case), or the exact id.
        q: String,
        enabled: bool,
        /// Only members of this group.
        group: String,
    }
}

/// A group and the permissions it grants.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupView {
    pub name: String,
    pub permissions: BTreeSet<String>,
    /// `admin`, `operator` and `viewer`: cannot be deleted.
    pub builtin: bool,
}

/// A custom group.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// 1 to 64 letters, digits and `. _ -`.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// Named permissions, e.g. `users.read`, `backups.write`.
    #[serde(default)]
    pub permissions: BTreeSet<String>,
}

/// The group's new set of permissions.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    pub permissions: BTreeSet<String>,
}

crate::filters! {
    /// `GET /groups` filters.
    GroupFilter {
        /// Part of the name.
        q: String,
    }
}

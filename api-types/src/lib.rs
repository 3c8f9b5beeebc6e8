//! The public API's wire types: every request body, every response view, pages,
//! problem details and the time format, written once for the server, the web UI,
//! the CLI and the test harness. A field renamed here fails to compile everywhere
//! at once.

/// Declares the filters of one `GET` list: optional query parameters, each with
/// its doc comment (unknown ones are refused; `limit`, `offset` and `consistency`
/// are every list's, see [`Window`] and [`ReadParams`]).
#[macro_export]
macro_rules! filters {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: Option<$ty>,)*
        }
    };
}

/// Declares a request body of optional fields (a change: absent fields stay as
/// they are), each with its doc comment; absent fields are left out when sent.
#[macro_export]
macro_rules! optional_fields {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$fdoc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

pub mod audit;
pub mod auth;
pub mod backup_data;
pub mod backups;
pub mod certs;
pub mod cluster;
pub mod config;
mod from_model;
pub mod nodes;
pub mod page;
pub mod plans;
pub mod problem;
pub mod storage;
pub mod time;
pub mod users;

pub use audit::{AuditFilter, AuditView};
pub use auth::{Login, Me, Session};
pub use backup_data::{FileView, FilesQuery, ReplicaView, VerifyView};
pub use backups::{
    BackupFilter, BackupView, JobStatus, NewBackup, NewRestore, ProgressView, RestoreFilter,
    RestoreView,
};
pub use certs::{CaView, CertsView, NodeCertView, RotateCerts, RotateStarted};
pub use cluster::{
    BackupManagerView, ClusterView, Health, LeaderView, MemberView, SnapshotExportView,
    SnapshotTaken, StateDigest,
};
pub use config::{ConfigFilter, ConfigValue, ConfigView};
pub use nodes::{NewNode, NodeFilter, NodeStatus, NodeView, Removed, Role, UpdateNode};
pub use page::{Page, Window};
pub use plans::{PlanBody, PlanFilter, PlanPatch, PlanView};
pub use problem::Problem;
pub use storage::StorageView;
pub use users::{
    GroupFilter, GroupPatch, GroupView, NewGroup, NewUser, UserFilter, UserPatch, UserView,
};

/// The values of `?consistency=` (the handlers read it as text, and refuse
/// others with 400).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    Local,
    Linearizable,
}

/// `?consistency=`: `local` (default: the answering node's state) or
/// `linearizable` (the leader confirms it leads, and the node catches up first).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// `local` (default: this node's state) or `linearizable` (ask the leader first).
    #[param(inline, value_type = Option<Consistency>)]
    pub consistency: Option<String>,
}

//! The public HTTP surface: the JSON API (`api/`), the web UI (`ui/`), health and
//! metrics, and the state they share (`AppState`).

pub mod api;
pub mod metrics;
pub mod streams;
pub mod ui;

use std::sync::Arc;

use crate::cluster::{Node, SharedNode};
use crate::net::serve::ListenerStats;

/// What the public API and the UI hold: the cluster node they serve, and the state
/// of their own features (each feature's state here, not in the cluster's `Node`).
pub struct AppState {
    pub node: SharedNode,
    /// The logins this node took, counted by its own limiter (the leader's
    /// counts for the cluster: cluster/logins.rs).
    pub login_limiter: crate::cluster::logins::LoginLimiter,
    /// Bearer tokens this node has verified.
    pub tokens: crate::crypto::TokenCache,
    /// Event streams open per user (api/events.rs, ui/live.rs).
    pub streams: Arc<streams::StreamCounts>,
    /// Request latency per route, and both listeners' connections.
    pub metrics: metrics::HttpMetrics,
    /// The Postgres export's status, with `[postgres]`.
    pub export: Option<Arc<crate::cluster::export::ExportState>>,
    /// This node's chunk store, with role `storage`.
    pub storage: Option<Arc<crate::storage::Storage>>,
}

/// The handle every handler gets.
pub type App = Arc<AppState>;

/// Everything the public listener serves: the API under `/api/v1` and the web
/// UI's pages, each request's client address worked out first
/// (net/client_addr.rs).
pub fn router(app: App) -> axum::Router {
    let trusted = Arc::new(app.cfg.trusted_proxies.clone());
    api::router(app.clone())
        .merge(ui::router(app))
        .layer(axum::middleware::from_fn_with_state(
            trusted,
            crate::net::client_addr::resolve,
        ))
}

impl AppState {
    pub fn new(
        node: SharedNode,
        export: Option<Arc<crate::cluster::export::ExportState>>,
        storage: Option<Arc<crate::storage::Storage>>,
        api: Arc<ListenerStats>,
        rpc: Arc<ListenerStats>,
    ) -> App {
        Arc::new(AppState {
            node,
            export,
            storage,
            login_limiter: Default::default(),
            tokens: Default::default(),
            streams: Arc::default(),
            metrics: metrics::HttpMetrics::new(api, rpc),
        })
    }
}

/// Handlers read the cluster node's state through the app: `app.state`, `app.cfg`.
impl std::ops::Deref for AppState {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

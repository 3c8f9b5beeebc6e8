//! Cluster TLS: the cluster CA, node certificates and mutual TLS between nodes
//! (enrollment, renewal, rotation), and HTTPS for the API with reloaded files.

pub mod api;
pub mod ca;
pub mod enroll;
pub mod live;
pub mod redirect;
pub mod rotate;
pub mod seal;
pub mod sync;

pub use live::NodeTls;

/// The ALPN protocol of an enrollment connection (enroll.rs).
pub const ALPN_ENROLL: &[u8] = b"bcm-enroll/1";

/// The ALPN protocol of the Raft append stream (cluster/append_stream.rs).
pub const ALPN_APPEND: &[u8] = b"bcm-append/1";

/// The ALPN protocol of the forward stream (cluster/forward_stream/).
pub const ALPN_FORWARD: &[u8] = b"bcm-forward/1";

/// The node id a request's peer proved with its certificate (set by the
/// listener on every request of a mutual-TLS connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerNode(pub bcm_raft_store::NodeId);

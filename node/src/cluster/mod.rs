//! The replicated cluster: this node's Raft instance and its storage, the
//! cluster-internal protocol (client and server), forming and joining, proposing
//! and forwarding writes, the cluster manager's duties and the Postgres export.
//! Knows nothing of the public HTTP API.

mod admission;
pub mod append_stream;
pub mod audit;
pub mod disk;
mod election;
mod entering;
pub mod error;
pub mod events;
pub mod export;
mod fence;
pub mod forward;
pub mod forward_stream;
mod framed;
pub mod leader;
pub mod local;
pub mod logins;
pub mod manager;
pub mod membership;
mod node;
mod peer_ops;
pub mod propose;
pub mod recover;
pub mod rounds;
pub mod rpc;
pub mod rpc_server;
mod start;
mod tasks;

pub use node::{now_ms, Node, SharedNode, REQUEST_DEADLINE};
pub use start::start;

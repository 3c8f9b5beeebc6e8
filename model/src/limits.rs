//! The byte limits that keep every request, log entry and RPC bounded, in one place
//! so that their order is checked by the compiler (docs/OPERATIONS.md "Limits").
//!
//! Each limit feeds the next: a request body becomes at most one command, commands
//! are batched into one log entry, entries into one AppendEntries, and every
//! cluster-internal request must fit the RPC listener's body limit. A count limit
//! where bytes matter is how a burst of legal 1 MiB writes once built entries that
//! no follower would accept, and stopped the cluster's writes for good.

/// The largest request body the public API accepts.
pub const API_BODY_BYTES: usize = 1024 * 1024;

/// The largest config value, as stored (JSON text, re-encoded from the request:
/// numbers like `1e15` grow when written back, so this is checked after).
pub const CONFIG_VALUE_BYTES: usize = API_BODY_BYTES;

/// The largest single command, encoded. Every write is checked against it before
/// it is proposed (413 otherwise): a config value at its limit plus its key and
/// framing, or any other request body re-encoded, stays below.
pub const COMMAND_BYTES: usize = API_BODY_BYTES + API_BODY_BYTES / 2;

/// The largest log entry the leader proposes: a batch of commands stops growing
/// before it would pass this. One command always fits.
pub const ENTRY_BYTES: usize = 2 * 1024 * 1024;

/// The largest AppendEntries payload a leader sends: the log reader hands
/// replication at most this many bytes of entries at a time (always at least one
/// entry). Small enough that one call, with the follower's fsync, fits well
/// within the heartbeat interval openraft uses as its timeout.
pub const APPEND_BYTES: usize = 4 * 1024 * 1024;

/// The largest batch of writes a follower forwards to the leader in one request.
pub const FORWARD_BYTES: usize = ENTRY_BYTES;

/// The snapshot travels in chunks of this size (openraft's `snapshot_max_chunk_size`).
pub const SNAPSHOT_CHUNK_BYTES: usize = 2 * 1024 * 1024;

/// The largest body the cluster-internal listener accepts. Anything bigger is a
/// bug or an attack; it is refused with 413 (which a leader takes as
/// `PayloadTooLarge`, and sends less).
pub const RPC_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Room for the framing around entries and commands in an RPC body (vote, log ids,
/// the request's own fields): generous, checked below.
pub const RPC_FRAMING_BYTES: usize = 64 * 1024;

// body < command < entry <= append < RPC, and every RPC body fits with its framing.
const _: () = {
    assert!(CONFIG_VALUE_BYTES <= API_BODY_BYTES);
    assert!(API_BODY_BYTES < COMMAND_BYTES);
    assert!(COMMAND_BYTES < ENTRY_BYTES);
    assert!(ENTRY_BYTES <= APPEND_BYTES);
    assert!(COMMAND_BYTES <= FORWARD_BYTES);
    assert!(APPEND_BYTES + RPC_FRAMING_BYTES < RPC_BODY_BYTES);
    assert!(FORWARD_BYTES + RPC_FRAMING_BYTES < RPC_BODY_BYTES);
    assert!(SNAPSHOT_CHUNK_BYTES + RPC_FRAMING_BYTES < RPC_BODY_BYTES);
};

/// The audit records the replicated state keeps: the oldest go first (never a
/// refusal: an audit record is always written). At its bounds a record is about
/// 1 KiB, so at most about 10 MiB of every snapshot; the Postgres export keeps
/// every record it saw.
pub const AUDIT_RECORDS: usize = 10_000;

/// Quotas on what users keep in the replicated state (every node holds all of it
/// in memory and in each snapshot). Fixed here so that `apply` stays deterministic:
/// every node refuses the same write.
pub mod quota {
    /// Config keys in the whole cluster.
    pub const CONFIG_KEYS: usize = 100_000;
    /// Bytes of config keys and values together.
    pub const CONFIG_BYTES: u64 = 128 * 1024 * 1024;
    /// Logged-out tokens remembered until they expire.
    pub const REVOKED_TOKENS: usize = 100_000;
}

//! Backup data on a storage node: files cut into content-defined chunks
//! ([`chunker`]), each named by the BLAKE3 hash of its bytes ([`ChunkId`]), kept
//! once however many backups hold it, compressed into pack files ([`PackStore`]),
//! and a manifest per backup listing its files and their chunks ([`Manifest`]).
//! [`walk`] turns source paths into entries and chunks, [`restore`] writes them
//! back, and [`local`] joins the two ends on one machine.
//!
//! Knows nothing of the cluster: a storage node keeps a store, a source node cuts
//! files and asks a store which chunks it lacks, and both speak in the types here.

pub mod chunker;
pub mod direct;
pub mod gen;
pub mod id;
pub mod local;
pub mod manifest;
pub mod pack;
pub mod restore;
pub mod store;
pub mod walk;

pub use chunker::{Chunk, Chunker};
pub use id::{Checked, ChunkId};
pub use manifest::{Entry, EntryKind, Manifest, Stamp};
pub use pack::Blob;
pub use restore::{RestoreError, RestoreStats, Restorer};
pub use store::{GcReport, PackStore, StoreError, StoreStats, VerifyReport};
pub use walk::{Found, SourceError};

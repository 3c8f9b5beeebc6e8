//! Where a [`PackStore`](super::PackStore) keeps its pack files and manifests:
//! the one interface its two homes implement, a directory on the node's own disk
//! ([`Disk`](super::disk::Disk), the default) and an S3-compatible object store
//! (the `bcm-s3` crate). The store's logic (the index, sessions, GC, verify) is
//! written once above it.
//!
//! Every call blocks (the store runs on blocking threads). A write returns only
//! once what it wrote is durable where it went (fsync'd; acknowledged by the
//! object store); an error leaves the old state or the new, never a half.

use std::io;
use std::time::Duration;

use bytes::Bytes;

use crate::pack::PackId;

/// How long a claim ([`Backend::claim`]) holds without being made again: a
/// backup being written renews its claim on every request, and one not heard
/// from for this long is taken to be gone.
pub const CLAIM_LIFETIME: Duration = Duration::from_secs(30 * 60);

pub trait Backend: Send + Sync {
    /// Where this is, for logs and errors (never a secret).
    fn describe(&self) -> String;

    /// Whether other stores write to the same place (storage nodes sharing one
    /// bucket): their packs are found by [`Backend::list_packs`] too, and their
    /// manifests by [`Backend::foreign_manifests`].
    fn shared(&self) -> bool {
        false
    }

    /// The size of the place and what is free in it, when it has such a thing
    /// (a file system does; an object store does not say).
    fn capacity(&self) -> io::Result<Option<(u64, u64)>>;

    /// Removes what writes cut short by a crash left behind (called once, when
    /// the store opens); how many there were.
    fn clean_leftovers(&self) -> io::Result<usize>;

    /// Every pack kept here, with its size in bytes.
    fn list_packs(&self) -> io::Result<Vec<(PackId, u64)>>;

    /// Bytes `offset..offset + len` of pack `id`, fewer only where the pack
    /// ends. A pack that is not there is [`io::ErrorKind::NotFound`].
    fn read(&self, id: &PackId, offset: u64, len: usize) -> io::Result<Bytes>;

    /// Bytes between two chunks of a pack that a read takes along rather than
    /// split the read in two at: what one more read costs, in bytes.
    fn run_gap(&self) -> u64 {
        256 * 1024
    }

    /// Several [`Backend::read`]s (pack, offset, length), answered in order:
    /// one after the other unless the backend does better.
    fn read_ranges(&self, ranges: &[(PackId, u64, usize)]) -> Vec<io::Result<Bytes>> {
        ranges
            .iter()
            .map(|(id, offset, len)| self.read(id, *offset, *len))
            .collect()
    }

    /// Keeps pack `id`, made of `parts` one after the other: when this returns
    /// it is durable, whole, under its name.
    fn write_pack(&self, id: &PackId, parts: &[&[u8]]) -> io::Result<()>;

    /// Whether pack `id` is (still) there.
    fn has_pack(&self, id: &PackId) -> io::Result<bool>;

    /// Deletes pack `id`, durably; false when it was not there.
    fn remove_pack(&self, id: &PackId) -> io::Result<bool>;

    /// Moves a damaged pack out of the way, kept for an operator to look at
    /// (`quarantine/`); nothing when it is gone already.
    fn quarantine_pack(&self, id: &PackId) -> io::Result<()>;

    /// Keeps backup `backup`'s manifest, durably, replacing any before.
    fn write_manifest(&self, backup: u64, bytes: &[u8]) -> io::Result<()>;

    /// Backup `backup`'s manifest, when this store holds it.
    fn read_manifest(&self, backup: u64) -> io::Result<Option<Vec<u8>>>;

    /// Deletes backup `backup`'s manifest, durably; false when it was not there.
    fn remove_manifest(&self, backup: u64) -> io::Result<bool>;

    /// The backups whose manifests this store holds.
    fn manifests(&self) -> io::Result<Vec<u64>>;

    /// In a shared place: marks that backup `backup` is being written through
    /// this store (again, to keep the mark fresh), so that no other store's
    /// GC runs meanwhile ([`Backend::foreign_claims`]). A store's own GC knows
    /// its own backups. Nothing for a place of one store's own.
    fn claim(&self, _backup: u64) -> io::Result<()> {
        Ok(())
    }

    /// Backup `backup` is written (or given up): its mark goes.
    fn unclaim(&self, _backup: u64) -> io::Result<()> {
        Ok(())
    }

    /// The marks of backups other stores sharing the place are writing, made
    /// within `max_age` (older ones are of a store that died): names, for a
    /// GC to say why it waits.
    fn foreign_claims(&self, _max_age: Duration) -> io::Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// The manifests other stores sharing the place keep there (a name for
    /// errors, and the bytes): what GC must keep alive beside this store's own.
    fn foreign_manifests(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        Ok(Vec::new())
    }
}

//! Two stores sharing one place, as storage nodes sharing a bucket do: the
//! place here is a map in memory with an object store's semantics (whole
//! objects, listed, read by range, each store's manifests and marks under its
//! own name). The real thing, Garage, is in the end-to-end tests; these pin the
//! store's logic: what one store sees of the other's packs, GC, and marks.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::backend::Backend;
use super::tests::{blob, manifest_of};
use super::*;
use crate::gen::noise;

#[derive(Default)]
struct Objects {
    packs: HashMap<PackId, Bytes>,
    manifests: BTreeMap<(u64, u64), Vec<u8>>,
    claims: BTreeMap<(u64, u64), ()>,
}

/// One store's view of the shared place.
struct Place {
    objects: Arc<Mutex<Objects>>,
    owner: u64,
}

impl Place {
    fn objects(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap()
    }
}

fn not_found() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no such object")
}

impl Backend for Place {
    fn describe(&self) -> String {
        format!("the shared place, as store {}", self.owner)
    }
    fn shared(&self) -> bool {
        true
    }
    fn capacity(&self) -> io::Result<Option<(u64, u64)>> {
        Ok(None)
    }
    fn clean_leftovers(&self) -> io::Result<usize> {
        Ok(0)
    }
    fn list_packs(&self) -> io::Result<Vec<(PackId, u64)>> {
        Ok(self
            .objects()
            .packs
            .iter()
            .map(|(id, b)| (*id, b.len() as u64))
            .collect())
    }
    fn read(&self, id: &PackId, offset: u64, len: usize) -> io::Result<Bytes> {
        let objects = self.objects();
        let pack = objects.packs.get(id).ok_or_else(not_found)?;
        let from = (offset as usize).min(pack.len());
        Ok(pack.slice(from..(from + len).min(pack.len())))
    }
    fn write_pack(&self, id: &PackId, parts: &[&[u8]]) -> io::Result<()> {
        self.objects()
            .packs
            .insert(*id, Bytes::from(parts.concat()));
        Ok(())
    }
    fn has_pack(&self, id: &PackId) -> io::Result<bool> {
        Ok(self.objects().packs.contains_key(id))
    }
    fn remove_pack(&self, id: &PackId) -> io::Result<bool> {
        Ok(self.objects().packs.remove(id).is_some())
    }
    fn quarantine_pack(&self, id: &PackId) -> io::Result<()> {
        self.objects().packs.remove(id);
        Ok(())
    }
    fn write_manifest(&self, backup: u64, bytes: &[u8]) -> io::Result<()> {
        self.objects()
            .manifests
            .insert((self.owner, backup), bytes.to_vec());
        Ok(())
    }
    fn read_manifest(&self, backup: u64) -> io::Result<Option<Vec<u8>>> {
        Ok(self.objects().manifests.get(&(self.owner, backup)).cloned())
    }
    fn remove_manifest(&self, backup: u64) -> io::Result<bool> {
        Ok(self
            .objects()
            .manifests
            .remove(&(self.owner, backup))
            .is_some())
    }
    fn manifests(&self) -> io::Result<Vec<u64>> {
        Ok(self
            .objects()
            .manifests
            .keys()
            .filter(|(o, _)| *o == self.owner)
            .map(|(_, b)| *b)
            .collect())
    }
    fn claim(&self, backup: u64) -> io::Result<()> {
        self.objects().claims.insert((self.owner, backup), ());
        Ok(())
    }
    fn unclaim(&self, backup: u64) -> io::Result<()> {
        self.objects().claims.remove(&(self.owner, backup));
        Ok(())
    }
    fn foreign_claims(&self, _max_age: Duration) -> io::Result<Vec<String>> {
        Ok(self
            .objects()
            .claims
            .keys()
            .filter(|(o, _)| *o != self.owner)
            .map(|(o, b)| format!("claims/{o}/{b}"))
            .collect())
    }
    fn foreign_manifests(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .objects()
            .manifests
            .iter()
            .filter(|((o, _), _)| *o != self.owner)
            .map(|((o, b), m)| (format!("manifests/{o}/{b}"), m.clone()))
            .collect())
    }
}

/// Two stores, owners 1 and 2, on one place.
fn two_stores() -> (Arc<Mutex<Objects>>, Arc<PackStore>, Arc<PackStore>) {
    let objects = Arc::new(Mutex::new(Objects::default()));
    let open = |owner| {
        let place = Place {
            objects: objects.clone(),
            owner,
        };
        Arc::new(PackStore::open_in(Box::new(place)).unwrap().0)
    };
    let (a, b) = (open(1), open(2));
    (objects, a, b)
}

#[test]
fn a_store_takes_in_the_other_stores_packs_and_reads_them() {
    let (_, a, b) = two_stores();
    let (x, y) = (noise(40_000, 1), noise(50_000, 2));
    a.put(&blob(&x)).unwrap();
    a.put(&blob(&y)).unwrap();
    a.put_manifest(1, &manifest_of(&[&x, &y])).unwrap();
    assert_eq!(b.missing(&[ChunkId::of(&x)]), vec![ChunkId::of(&x)]);
    b.refresh().unwrap();
    assert!(b.missing(&[ChunkId::of(&x), ChunkId::of(&y)]).is_empty());
    assert_eq!(b.get(&ChunkId::of(&y)).unwrap(), y);
    // B keeps a manifest of its own over A's chunks, without sending them.
    b.put_manifest(2, &manifest_of(&[&x])).unwrap();
    assert_eq!(b.stats().unwrap().manifests, 1);
}

#[test]
fn gc_keeps_what_the_other_stores_manifests_use_and_the_other_reads_it_where_it_moved() {
    let (objects, a, b) = two_stores();
    let (x, y, z) = (noise(40_000, 3), noise(50_000, 4), noise(60_000, 5));
    for d in [&x, &y, &z] {
        a.put(&blob(d)).unwrap();
    }
    a.put_manifest(1, &manifest_of(&[&x, &y, &z])).unwrap();
    b.refresh().unwrap();
    b.put_manifest(2, &manifest_of(&[&x])).unwrap();
    // A's backup goes: x stays (B's manifest uses it), y and z go; the pack,
    // mostly dead, is rewritten with x alone.
    a.delete_manifest(1).unwrap();
    let report = a.gc().unwrap();
    assert_eq!(report.stopped, None);
    assert_eq!(report.packs_rewritten, 1, "{report:?}");
    assert_eq!(objects.lock().unwrap().packs.len(), 1);
    // B's index still names the old pack: its read looks again and finds x.
    assert_eq!(b.get(&ChunkId::of(&x)).unwrap(), x);
    let check = b.check_backup(2).unwrap();
    assert!(check.is_clean(), "{check:?}");
    assert!(b.has(&ChunkId::of(&x)) && !b.has(&ChunkId::of(&y)));
}

#[test]
fn a_gc_waits_while_another_store_writes_a_backup_there() {
    let (objects, a, b) = two_stores();
    let x = noise(40_000, 6);
    a.put(&blob(&x)).unwrap();
    a.flush().unwrap();
    b.backend().claim(9).unwrap();
    let report = a.gc().unwrap();
    let why = report.stopped.expect("stopped");
    assert!(why.contains("claims/2/9"), "{why}");
    assert_eq!(
        objects.lock().unwrap().packs.len(),
        1,
        "nothing deleted while B writes"
    );
    b.backend().unclaim(9).unwrap();
    let report = a.gc().unwrap();
    assert_eq!((report.stopped, report.packs_deleted), (None, 1));
}

#[test]
fn a_manifest_over_chunks_another_stores_gc_took_is_refused() {
    let (_, a, b) = two_stores();
    let x = noise(40_000, 7);
    a.put(&blob(&x)).unwrap();
    a.flush().unwrap();
    // B was told x is there (its index says so), then A's GC took the pack.
    b.refresh().unwrap();
    assert!(b.has(&ChunkId::of(&x)));
    a.gc().unwrap();
    assert!(matches!(
        b.put_manifest(3, &manifest_of(&[&x])),
        Err(StoreError::MissingChunks(1))
    ));
    // Sent again, it is kept.
    b.put(&blob(&x)).unwrap();
    b.put_manifest(3, &manifest_of(&[&x])).unwrap();
}

#[test]
fn a_pack_the_other_store_rewrote_is_not_called_damaged() {
    let (_, a, b) = two_stores();
    let (x, y) = (noise(40_000, 8), noise(50_000, 9));
    a.put(&blob(&x)).unwrap();
    a.put(&blob(&y)).unwrap();
    a.put_manifest(1, &manifest_of(&[&y])).unwrap();
    b.refresh().unwrap();
    b.put_manifest(2, &manifest_of(&[&x])).unwrap();
    a.delete_manifest(1).unwrap();
    a.gc().unwrap();
    let check = b.check_backup(2).unwrap();
    assert!(check.is_clean(), "{check:?}");
    let whole = b.verify().unwrap();
    assert!(whole.is_clean(), "{whole:?}");
}

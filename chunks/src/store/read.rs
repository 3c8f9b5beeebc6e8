//! Reading many chunks at once, for a restore: a request's blobs sorted by where
//! they lie, neighbours in a pack read as one run (one read of the backend: on
//! disk, around the page cache; from an object store, one ranged GET).

use std::io;

use bytes::Bytes;

use super::{PackStore, StoreError};
use crate::id::ChunkId;
use crate::pack::{Blob, BlobEntry, PackError, PackId};

/// Bytes read at most in one run.
const RUN_MAX: u64 = 16 * 1024 * 1024;

/// A chunk as stored (compressed or not), its bytes shared with the read that
/// brought them; the receiver checks it against its id.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: ChunkId,
    pub raw_len: u32,
    pub compressed: bool,
    pub bytes: Bytes,
}

impl From<Blob> for Stored {
    fn from(b: Blob) -> Stored {
        Stored {
            id: b.id,
            raw_len: b.raw_len,
            compressed: b.compressed,
            bytes: Bytes::from(b.stored),
        }
    }
}

/// Where one of the chunks asked for is: still in memory, or in a pack file.
pub(super) enum Place {
    Here(Blob),
    Packed { pack: PackId, entry: BlobEntry },
}

impl PackStore {
    /// `ids`' chunks as stored, in `ids`' order, as many as `max_bytes` hold
    /// (at least one; the one that crosses it is the last).
    pub fn read_many(&self, ids: &[ChunkId], max_bytes: usize) -> Result<Vec<Stored>, StoreError> {
        match self.read_places(ids, max_bytes) {
            // A pack gone since its place was looked up: a GC rewrote it
            // meanwhile (this store's, or in a shared place another store's,
            // which a refresh takes in). Look again, then read again.
            Err(StoreError::Pack {
                source: PackError::Io(e),
                ..
            }) if e.kind() == io::ErrorKind::NotFound => {
                self.refresh()?;
                self.read_places(ids, max_bytes)
            }
            other => other,
        }
    }

    pub(super) fn read_places(
        &self,
        ids: &[ChunkId],
        max_bytes: usize,
    ) -> Result<Vec<Stored>, StoreError> {
        let places = self.places(ids, max_bytes)?;
        let mut out: Vec<Option<Stored>> = vec![None; places.len()];
        let mut packed: Vec<usize> = Vec::new();
        for (i, p) in places.iter().enumerate() {
            match p {
                Place::Here(b) => out[i] = Some(Stored::from(b.clone())),
                Place::Packed { .. } => packed.push(i),
            }
        }
        let at = |i: usize| match &places[i] {
            Place::Packed { pack, entry } => (*pack, *entry),
            Place::Here(_) => unreachable!("only packed places are sorted"),
        };
        packed.sort_by_key(|&i| {
            let (pack, entry) = at(i);
            (pack, entry.offset)
        });
        // The runs: neighbours in a pack, each its slice of `packed`.
        let mut runs: Vec<(PackId, u64, u64, &[usize])> = Vec::new();
        let gap = self.backend.run_gap();
        let mut rest = &packed[..];
        while let Some(&first) = rest.first() {
            let (pack, e0) = at(first);
            let mut end = e0.offset + u64::from(e0.stored_len);
            let mut n = 1;
            while let Some(&next) = rest.get(n) {
                let (p, e) = at(next);
                let e_end = e.offset + u64::from(e.stored_len);
                if p != pack || e.offset > end + gap || e_end.max(end) - e0.offset > RUN_MAX {
                    break;
                }
                end = end.max(e_end);
                n += 1;
            }
            runs.push((pack, e0.offset, end, &rest[..n]));
            rest = &rest[n..];
        }
        // All read at once where the backend can (an object store: one
        // request each, in parallel).
        let asks: Vec<(PackId, u64, usize)> = runs
            .iter()
            .map(|(pack, from, to, _)| (*pack, *from, (to - from) as usize))
            .collect();
        let read = self.backend.read_ranges(&asks);
        for ((_, from, to, members), got) in runs.iter().zip(read) {
            let first = at(members[0]).1;
            let run = got
                .and_then(|run| whole(run, (to - from) as usize))
                .map_err(|e| StoreError::Pack {
                    id: first.id,
                    source: e.into(),
                })?;
            for &i in members.iter() {
                let (_, e) = at(i);
                let at = (e.offset - from) as usize;
                out[i] = Some(Stored {
                    id: e.id,
                    raw_len: e.raw_len,
                    compressed: e.compressed,
                    bytes: run.slice(at..at + e.stored_len as usize),
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|s| s.expect("every place read"))
            .collect())
    }

    /// Where each chunk of `ids`' prefix that `max_bytes` hold is.
    pub(super) fn places(
        &self,
        ids: &[ChunkId],
        max_bytes: usize,
    ) -> Result<Vec<Place>, StoreError> {
        let inner = self.lock();
        let mut places = Vec::new();
        let mut bytes = 0;
        for id in ids {
            if !places.is_empty() && bytes >= max_bytes {
                break;
            }
            let place = if let Some(at) = inner.open_index.get(id) {
                Place::Here(inner.open.blob(&inner.open.entries()[*at]))
            } else if let Some(b) = inner
                .sealing
                .as_deref()
                .and_then(|(b, index)| index.get(id).map(|at| b.blob(&b.entries()[*at])))
            {
                Place::Here(b)
            } else {
                let loc = inner.index.get(id).ok_or(StoreError::NotFound(*id))?;
                Place::Packed {
                    pack: loc.pack,
                    entry: loc.entry,
                }
            };
            bytes += match &place {
                Place::Here(b) => b.stored.len(),
                Place::Packed { entry, .. } => entry.stored_len as usize,
            };
            places.push(place);
        }
        Ok(places)
    }

    /// Bytes `from..to` of a pack, whole.
    pub(super) fn read_run(&self, pack: &PackId, from: u64, to: u64) -> io::Result<Bytes> {
        whole(
            self.backend.read(pack, from, (to - from) as usize)?,
            (to - from) as usize,
        )
    }
}

/// `run` if it holds `len` bytes: a pack that ends before the chunks its index
/// names is damaged.
fn whole(run: Bytes, len: usize) -> io::Result<Bytes> {
    if run.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "a pack ends before the chunks its index names",
        ));
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::gen::noise;

    /// Chunks in two sealed packs and in the open one, some compressible.
    fn filled(dir: &Path) -> (PackStore, Vec<ChunkId>) {
        let store = PackStore::open(dir).unwrap().0;
        let mut ids = Vec::new();
        for round in 0..3u64 {
            for k in 0..12u64 {
                let data = if k % 3 == 0 {
                    format!("chunk {round} {k} ").repeat(4000).into_bytes()
                } else {
                    noise(50_000 + 7_919 * k as usize, round * 100 + k)
                };
                let blob = Blob::new(ChunkId::of(&data), &data).unwrap();
                store.put(&blob).unwrap();
                ids.push(blob.id);
            }
            if round < 2 {
                store.flush().unwrap();
            }
        }
        (store, ids)
    }

    fn same(store: &PackStore, got: &[Stored], ids: &[ChunkId]) {
        assert_eq!(got.len(), ids.len());
        for (s, id) in got.iter().zip(ids) {
            let b = store.get_blob(id).unwrap();
            assert_eq!(
                (s.id, s.raw_len, s.compressed, &s.bytes[..]),
                (b.id, b.raw_len, b.compressed, &b.stored[..]),
            );
        }
    }

    /// Every third one, then the rest backwards, one twice: runs are cut where
    /// blobs are not neighbours, and the answer keeps the order asked.
    fn scrambled(ids: &[ChunkId]) -> Vec<ChunkId> {
        let mut order: Vec<ChunkId> = ids.iter().step_by(3).copied().collect();
        let rest: Vec<ChunkId> = ids
            .iter()
            .rev()
            .filter(|id| !order.contains(id))
            .copied()
            .collect();
        order.extend(rest);
        order.push(ids[4]);
        order
    }

    #[test]
    fn many_chunks_come_back_as_stored_in_the_order_asked() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ids) = filled(dir.path());
        let order = scrambled(&ids);
        let got = store.read_many(&order, usize::MAX).unwrap();
        same(&store, &got, &order);
        // Read again after a reopen: all of them from pack files now.
        store.flush().unwrap();
        drop(store);
        let store = PackStore::open(dir.path()).unwrap().0;
        same(
            &store,
            &store.read_many(&order, usize::MAX).unwrap(),
            &order,
        );
    }

    #[test]
    fn an_answer_stops_after_the_chunk_that_crosses_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ids) = filled(dir.path());
        let sizes: Vec<usize> = ids
            .iter()
            .map(|id| store.get_blob(id).unwrap().stored.len())
            .collect();
        let limit = sizes[0] + sizes[1] + 1;
        let got = store.read_many(&ids, limit).unwrap();
        same(&store, &got, &ids[..3]);
        same(&store, &store.read_many(&ids, 0).unwrap(), &ids[..1]);
        let never = ChunkId::of(b"never put");
        assert!(matches!(
            store.read_many(&[ids[0], never], usize::MAX),
            Err(StoreError::NotFound(id)) if id == never
        ));
    }

    #[test]
    fn a_file_system_without_direct_reads_is_read_through_the_page_cache() {
        // tmpfs refuses O_DIRECT at open.
        if !Path::new("/dev/shm").is_dir() {
            return;
        }
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let (store, ids) = filled(dir.path());
        let order = scrambled(&ids);
        same(
            &store,
            &store.read_many(&order, usize::MAX).unwrap(),
            &order,
        );
    }
}

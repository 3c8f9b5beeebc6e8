//! The Raft log on disk: append-only segment files, made durable by one
//! `fdatasync` per flush.
//!
//! A log append is the hottest write path of the cluster: the leader and every
//! follower wait for it before a write is committed. A general-purpose store
//! (sled, before this) pays several syncs of its own bookkeeping per flush; an
//! append-only file pays one.
//!
//! Layout of `dir`: one file per segment, `<index of its first record, 20 digits>.wal`,
//! starting with a 16-byte header (`MAGIC`, then the first index, little-endian)
//! followed by records:
//!
//! ```text
//! [payload length: u32][crc32 of length, index and payload: u32][index: u64][payload]
//! ```
//!
//! all little-endian. A segment is created complete (written under a temporary
//! name, synced, renamed, directory synced) and preallocated to `SEGMENT_BYTES`, so
//! an `fdatasync` after an append only flushes data, not a new file size. A full
//! segment is synced before the next one is created: whatever a crash leaves, the
//! durable log is one unbroken run of records.
//!
//! Opening reads every segment. The last one ends at its first record that is
//! incomplete or fails its checksum: a write the crash cut short, never reported
//! durable. What follows it is zeroed so that it can never be read back. Such a
//! record anywhere else, a gap between segments that purging cannot explain, or a
//! damaged header is corruption: opening fails and says where.

mod error;
mod segment;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use error::io_err;
pub use error::WalError;
use segment::{
    checksum, create_segment, read_record, read_segment, sync_dir, zero_from, Loc, Segment,
    RECORD_HEADER, SEGMENT_HEADER,
};

/// A segment is full at this size (records are never split: one bigger than this
/// gets a segment of its own).
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

struct Inner {
    /// By first index; the last one takes the appends.
    segments: BTreeMap<u64, Segment>,
    /// Records up to this index are gone (purged), even if their segment remains.
    purged_through: Option<u64>,
    /// Files written since they were last synced.
    dirty: Vec<Arc<File>>,
}

/// The log: append, read, truncate, purge, sync. Safe to share between threads.
pub struct Wal {
    dir: PathBuf,
    /// A segment is full at this size (`SEGMENT_BYTES`; smaller in tests).
    segment_bytes: u64,
    inner: Mutex<Inner>,
}

impl Wal {
    /// Opens the log in `dir` (created when missing). Records up to `purged_through`
    /// are treated as purged: segments holding only such records are deleted.
    pub fn open(dir: &Path, purged_through: Option<u64>) -> Result<Wal, WalError> {
        Wal::open_sized(dir, purged_through, SEGMENT_BYTES)
    }

    fn open_sized(
        dir: &Path,
        purged_through: Option<u64>,
        segment_bytes: u64,
    ) -> Result<Wal, WalError> {
        fs::create_dir_all(dir).map_err(io_err("create the log directory", dir))?;
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list the log directory", dir))? {
            let path = entry.map_err(io_err("list the log directory", dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".wal.tmp") {
                // A segment whose creation a crash interrupted: never used.
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
            } else if let Some(first) = name.strip_suffix(".wal").and_then(|s| s.parse().ok()) {
                names.push((first, path));
            }
        }
        names.sort();

        // A segment followed by one that starts at or before the first unpurged
        // index holds only purged records (purging deletes the oldest first, and a
        // crash can bring back a deletion that was not yet durable).
        let keep_from = purged_through.map_or(0, |p| p + 1);
        let mut kept = Vec::new();
        for (i, (first, path)) in names.iter().enumerate() {
            match names.get(i + 1) {
                Some((next, _)) if *next <= keep_from => {
                    fs::remove_file(path).map_err(io_err("remove purged segment", path))?;
                }
                _ => kept.push((*first, path.clone())),
            }
        }

        let mut segments = BTreeMap::new();
        let count = kept.len();
        for (i, (first, path)) in kept.into_iter().enumerate() {
            let segment = read_segment(&path, first, i + 1 == count, segment_bytes)?;
            if segment.records.is_empty() {
                // Created for a record a crash kept from being written: no data.
                fs::remove_file(&path).map_err(io_err("remove empty segment", &path))?;
            } else {
                segments.insert(first, segment);
            }
        }

        // Consecutive segments must join up. A gap can only be explained by purged
        // segments that came back: everything before it must be purged.
        let firsts: Vec<u64> = segments.keys().copied().collect();
        for pair in firsts.windows(2).rev() {
            let (a, b) = (&segments[&pair[0]], &segments[&pair[1]]);
            if a.next() != b.first {
                if b.first <= keep_from {
                    let stale: Vec<u64> = segments.range(..=pair[0]).map(|(k, _)| *k).collect();
                    for k in stale {
                        let s = segments.remove(&k).expect("listed");
                        fs::remove_file(&s.path)
                            .map_err(io_err("remove purged segment", &s.path))?;
                    }
                    break;
                }
                return Err(WalError::Corrupt {
                    path: b.path.clone(),
                    problem: format!(
                        "starts at index {} but the segment before it ends at {}",
                        b.first,
                        a.next() - 1
                    ),
                });
            }
        }

        let wal = Wal {
            dir: dir.to_path_buf(),
            segment_bytes,
            inner: Mutex::new(Inner {
                segments,
                purged_through: None,
                dirty: Vec::new(),
            }),
        };
        if let Some(p) = purged_through {
            wal.purge_through(p)?;
        }
        Ok(wal)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("wal lock poisoned")
    }

    /// Index of the first readable record.
    pub fn first_index(&self) -> Option<u64> {
        self.lock().first_index()
    }

    /// Index of the last record.
    pub fn last_index(&self) -> Option<u64> {
        self.lock().last_index()
    }

    /// Appends records (consecutive indexes, continuing the log; the first record of
    /// an empty log may have any index). They are readable on return and durable
    /// after the next [`Wal::sync`].
    ///
    /// On an error some of the records may have been appended (those before a
    /// segment the disk had no room for): [`Wal::last_index`] says which.
    pub fn append<P: AsRef<[u8]>>(
        &self,
        records: impl IntoIterator<Item = (u64, P)>,
    ) -> Result<(), WalError> {
        let mut inner = self.lock();
        let mut records = records.into_iter().peekable();
        let Some(mut next) = records.peek().map(|(i, _)| *i) else {
            return Ok(());
        };
        match inner.last_index() {
            Some(last) if next != last + 1 => return Err(WalError::Hole { index: next, last }),
            Some(_) => {}
            None => inner.restart_at(&self.dir, next)?,
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut locs: Vec<Loc> = Vec::new();
        for (index, payload) in records {
            let payload = payload.as_ref();
            if index != next {
                return Err(WalError::Hole {
                    index,
                    last: next - 1,
                });
            }
            next += 1;
            let len = u32::try_from(payload.len()).map_err(|_| WalError::TooLarge { index })?;
            let size = (RECORD_HEADER + payload.len()) as u64;
            let needs_segment = match inner.active() {
                None => true,
                // Never split a record; a full segment takes no more.
                Some(s) => {
                    let used = s.end + buf.len() as u64;
                    used > SEGMENT_HEADER && used + size > self.segment_bytes
                }
            };
            if needs_segment {
                inner.write(&mut buf, &mut locs)?;
                if inner.active().is_some() {
                    inner.seal_active()?;
                }
                let segment = create_segment(&self.dir, index, self.segment_bytes)?;
                inner.segments.insert(index, segment);
            }
            let start = inner.active().expect("an active segment").end + buf.len() as u64;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&checksum(len, index, payload).to_le_bytes());
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(payload);
            locs.push(Loc {
                offset: start,
                len: size as u32,
            });
        }
        inner.write(&mut buf, &mut locs)
    }

    /// Makes every record appended so far durable (one `fdatasync` per segment
    /// written since the last sync, usually one). Does not block appends or reads
    /// while the disk works.
    pub fn sync(&self) -> Result<(), WalError> {
        let dirty = std::mem::take(&mut self.lock().dirty);
        for file in dirty {
            file.sync_data()
                .map_err(io_err("fdatasync the log in", &self.dir))?;
        }
        Ok(())
    }

    /// The records with indexes in `range` that exist, in order.
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<(u64, Vec<u8>)>, WalError> {
        self.read_at_most(range, usize::MAX)
    }

    /// Like [`Wal::read`], but stops before the record that would take the payloads
    /// read past `max_bytes`; the first record is always read, whatever its size.
    pub fn read_at_most(
        &self,
        range: impl RangeBounds<u64>,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, WalError> {
        let inner = self.lock();
        let (Some(first), Some(last)) = (inner.first_index(), inner.last_index()) else {
            return Ok(Vec::new());
        };
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(first);
        let end = match range.end_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(i) => i - 1,
            Bound::Unbounded => u64::MAX,
        }
        .min(last);
        let mut out =
            Vec::with_capacity(end.saturating_sub(start).saturating_add(1).min(4096) as usize);
        let mut index = start;
        let mut bytes = 0usize;
        while index <= end {
            let (_, segment) = inner
                .segments
                .range(..=index)
                .next_back()
                .expect("a segment holds every index between first and last");
            let upto = end.min(segment.next() - 1);
            for i in index..=upto {
                let len = segment.records[(i - segment.first) as usize].len as usize;
                let payload = len.saturating_sub(RECORD_HEADER);
                if !out.is_empty() && bytes.saturating_add(payload) > max_bytes {
                    return Ok(out);
                }
                bytes = bytes.saturating_add(payload);
                out.push((i, read_record(segment, i)?));
            }
            index = upto + 1;
        }
        Ok(out)
    }

    /// The record with the highest index.
    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>, WalError> {
        let inner = self.lock();
        let Some(last) = inner.last_index() else {
            return Ok(None);
        };
        let (_, segment) = inner
            .segments
            .range(..=last)
            .next_back()
            .expect("last segment");
        Ok(Some((last, read_record(segment, last)?)))
    }

    /// Removes every record with index >= `from`, durably, before it returns: later
    /// segments are deleted (and the directory synced) first, then the segment
    /// holding `from` is cut and zeroed past the cut, so that a crash at any point
    /// leaves an unbroken log.
    pub fn truncate_from(&self, from: u64) -> Result<(), WalError> {
        let mut inner = self.lock();
        let doomed: Vec<u64> = inner.segments.range(from..).map(|(k, _)| *k).collect();
        for first in doomed.iter().rev() {
            let s = inner.segments.remove(first).expect("listed");
            inner.dirty.retain(|f| !Arc::ptr_eq(f, &s.file));
            fs::remove_file(&s.path).map_err(io_err("remove log segment", &s.path))?;
        }
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        if let Some((_, s)) = inner.segments.range_mut(..from).next_back() {
            if s.next() > from {
                let cut = s.records[(from - s.first) as usize].offset;
                zero_from(&s.file, &s.path, cut, self.segment_bytes)?;
                s.records.truncate((from - s.first) as usize);
                s.end = cut;
            }
        }
        Ok(())
    }

    /// Forgets every record with index <= `through` and deletes the segments that
    /// hold nothing else. The caller records `through` durably first: a deletion a
    /// crash undoes is redone by [`Wal::open`].
    pub fn purge_through(&self, through: u64) -> Result<(), WalError> {
        let mut inner = self.lock();
        if inner.purged_through.is_some_and(|p| p >= through) {
            return Ok(());
        }
        inner.purged_through = Some(through);
        let doomed: Vec<u64> = inner
            .segments
            .values()
            .filter(|s| s.next() <= through.saturating_add(1))
            .map(|s| s.first)
            .collect();
        for first in doomed {
            let s = inner.segments.remove(&first).expect("listed");
            inner.dirty.retain(|f| !Arc::ptr_eq(f, &s.file));
            fs::remove_file(&s.path).map_err(io_err("remove purged segment", &s.path))?;
        }
        Ok(())
    }
}

impl Inner {
    fn active(&self) -> Option<&Segment> {
        self.segments.values().next_back()
    }

    fn first_index(&self) -> Option<u64> {
        let first = self.segments.values().next()?.first;
        let first = match self.purged_through {
            Some(p) => first.max(p + 1),
            None => first,
        };
        (first <= self.last_index()?).then_some(first)
    }

    fn last_index(&self) -> Option<u64> {
        let s = self.active()?;
        if s.records.is_empty() {
            return None;
        }
        let last = s.next() - 1;
        match self.purged_through {
            Some(p) if p >= last => None,
            _ => Some(last),
        }
    }

    /// The log is empty (never written, or everything in it purged) and continues at
    /// `index`: segments that cannot take it are deleted, durably, so that none can
    /// come back beside the new one.
    fn restart_at(&mut self, dir: &Path, index: u64) -> Result<(), WalError> {
        let continues = self.active().is_some_and(|s| s.next() == index);
        if !continues && !self.segments.is_empty() {
            for (_, s) in std::mem::take(&mut self.segments) {
                fs::remove_file(&s.path).map_err(io_err("remove purged segment", &s.path))?;
            }
            self.dirty.clear();
            sync_dir(dir)?;
        }
        if self.purged_through.is_some_and(|p| p >= index) {
            self.purged_through = index.checked_sub(1);
        }
        Ok(())
    }

    /// Writes `buf` at the end of the active segment and records `locs`.
    fn write(&mut self, buf: &mut Vec<u8>, locs: &mut Vec<Loc>) -> Result<(), WalError> {
        if buf.is_empty() {
            return Ok(());
        }
        let s = self
            .segments
            .values_mut()
            .next_back()
            .expect("an active segment");
        s.file
            .write_all_at(buf, s.end)
            .map_err(io_err("write to the log", &s.path))?;
        s.end += buf.len() as u64;
        s.records.append(locs);
        let file = s.file.clone();
        if !self.dirty.iter().any(|f| Arc::ptr_eq(f, &file)) {
            self.dirty.push(file);
        }
        buf.clear();
        Ok(())
    }

    /// Makes the full active segment durable before another one is started, so
    /// that no crash can keep a later segment without this one's tail.
    fn seal_active(&mut self) -> Result<(), WalError> {
        let s = self.active().expect("an active segment");
        s.file
            .sync_data()
            .map_err(io_err("fdatasync the log segment", &s.path))?;
        let file = s.file.clone();
        self.dirty.retain(|f| !Arc::ptr_eq(f, &file));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap as Model;

    use std::fs::OpenOptions;
    /// Small segments, so that tests cross segment boundaries often.
    const SMALL: u64 = 4096;

    fn payload(index: u64, size: usize) -> Vec<u8> {
        (0..size).map(|i| (index as usize * 31 + i) as u8).collect()
    }

    fn open(dir: &Path, purged: Option<u64>) -> Wal {
        Wal::open_sized(dir, purged, SMALL).expect("open")
    }

    /// A log in a new directory holding records 1 to 99, 100 bytes each: several
    /// small segments.
    fn filled() -> (tempfile::TempDir, Wal) {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), None);
        wal.append((1..100).map(|i| (i, payload(i, 100)))).unwrap();
        (dir, wal)
    }

    /// Why the log in `dir` does not open.
    fn refused(dir: &Path) -> WalError {
        Wal::open_sized(dir, None, SMALL).err().expect("refused")
    }

    fn all(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
        wal.read(..).expect("read")
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn appended_records_read_back_across_segments_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), None);
        let records: Vec<_> = (5..205).map(|i| (i, payload(i, 100))).collect();
        for chunk in records.chunks(7) {
            wal.append(chunk.to_vec()).unwrap();
        }
        wal.sync().unwrap();
        assert_eq!(all(&wal), records);
        assert!(segment_files(dir.path()).len() > 4, "small segments roll");
        assert_eq!(wal.read(50..=52).unwrap(), records[45..48].to_vec());
        assert_eq!(wal.read(..6).unwrap(), records[..1].to_vec());
        assert_eq!(wal.read(300..).unwrap(), vec![]);
        // A byte limit stops before the record that would pass it, but always
        // returns the first one.
        let sizes = |rs: &[(u64, Vec<u8>)]| rs.iter().map(|r| r.1.len()).sum::<usize>();
        let first_two = sizes(&records[45..47]);
        assert_eq!(
            wal.read_at_most(50..=60, first_two).unwrap(),
            records[45..47].to_vec()
        );
        assert_eq!(
            wal.read_at_most(50..=60, first_two - 1).unwrap(),
            records[45..46].to_vec()
        );
        assert_eq!(
            wal.read_at_most(50..=60, 0).unwrap(),
            records[45..46].to_vec()
        );
        assert_eq!(
            wal.read_at_most(..=60, usize::MAX).unwrap(),
            records[..56].to_vec()
        );
        assert_eq!(wal.last().unwrap(), Some(records[199].clone()));
        drop(wal);
        let wal = open(dir.path(), None);
        assert_eq!(all(&wal), records);
        assert_eq!((wal.first_index(), wal.last_index()), (Some(5), Some(204)));
    }

    #[test]
    fn a_record_bigger_than_a_segment_gets_one_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), None);
        let records = vec![
            (1, payload(1, 10)),
            (2, payload(2, 10_000)),
            (3, payload(3, 10)),
        ];
        wal.append(records.clone()).unwrap();
        drop(wal);
        assert_eq!(all(&open(dir.path(), None)), records);
    }

    #[test]
    fn holes_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), None);
        wal.append(vec![(1, payload(1, 10)), (2, payload(2, 10))])
            .unwrap();
        let err = wal.append(vec![(4, payload(4, 10))]).unwrap_err();
        assert!(matches!(err, WalError::Hole { index: 4, last: 2 }), "{err}");
        assert!(wal
            .append(vec![(3, payload(3, 1)), (5, payload(5, 1))])
            .is_err());
        assert_eq!(wal.last_index(), Some(2));
    }

    #[test]
    fn a_record_cut_short_by_a_crash_ends_the_log_and_is_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), None);
        let records: Vec<_> = (1..=10).map(|i| (i, payload(i, 50))).collect();
        wal.append(records.clone()).unwrap();
        wal.sync().unwrap();
        let end = wal.lock().active().unwrap().end;
        wal.append(vec![(11, payload(11, 50))]).unwrap();
        drop(wal);
        // The crash kept only part of record 11: its header and half its payload.
        let path = segment_files(dir.path()).pop().unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0u8; 40], end + 16 + 10).unwrap();
        drop(f);

        let wal = open(dir.path(), None);
        assert_eq!(all(&wal), records);
        let bytes = fs::read(&path).unwrap();
        assert!(
            bytes[end as usize..].iter().all(|b| *b == 0),
            "the cut record is zeroed"
        );
        // The log goes on from where it ends.
        wal.append(vec![(11, payload(11, 20))]).unwrap();
        drop(wal);
        let wal = open(dir.path(), None);
        assert_eq!(wal.last().unwrap(), Some((11, payload(11, 20))));
    }

    #[test]
    fn damage_before_the_last_segment_refuses_to_open() {
        let (dir, wal) = filled();
        drop(wal);
        let first = segment_files(dir.path()).remove(0);
        let f = OpenOptions::new().write(true).open(&first).unwrap();
        f.write_all_at(b"rot", 200).unwrap();
        let err = refused(dir.path());
        assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("is damaged"), "{err}");
    }

    #[test]
    fn a_missing_segment_in_the_middle_refuses_to_open() {
        let (dir, wal) = filled();
        drop(wal);
        fs::remove_file(&segment_files(dir.path())[1]).unwrap();
        let err = refused(dir.path());
        assert!(err.to_string().contains("starts at index"), "{err}");
    }

    #[test]
    fn truncation_is_durable_and_nothing_cut_comes_back() {
        let (dir, wal) = filled();
        wal.truncate_from(40).unwrap();
        assert_eq!(wal.last_index(), Some(39));
        // Shorter records at the same indexes: the old ones must not reappear.
        wal.append((40..45).map(|i| (i, payload(i + 1000, 3))))
            .unwrap();
        drop(wal);
        let wal = open(dir.path(), None);
        let got = all(&wal);
        assert_eq!(got.len(), 44);
        assert_eq!(got[43], (44, payload(1044, 3)));
        wal.truncate_from(1).unwrap();
        assert_eq!(wal.last_index(), None);
        assert!(segment_files(dir.path()).is_empty());
    }

    #[test]
    fn purged_records_are_gone_and_their_segments_deleted() {
        let (dir, wal) = filled();
        let before = segment_files(dir.path());
        let first_segment = fs::read(&before[0]).unwrap();
        wal.purge_through(60).unwrap();
        assert_eq!(wal.first_index(), Some(61));
        assert_eq!(wal.read(..).unwrap()[0].0, 61);
        let after = segment_files(dir.path());
        assert!(after.len() < before.len());
        // A deletion that a crash undid: the old segment comes back.
        let stale = before[0].clone();
        drop(wal);
        fs::write(&stale, first_segment).unwrap();
        let wal = open(dir.path(), Some(60));
        assert!(
            !stale.exists(),
            "a purged segment that came back is deleted"
        );
        assert_eq!(wal.first_index(), Some(61));
        assert_eq!(wal.last_index(), Some(99));
    }

    #[test]
    fn after_purging_everything_the_log_restarts_where_it_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), None);
        wal.append((1..20).map(|i| (i, payload(i, 100)))).unwrap();
        // A snapshot installed from the leader covers more than this log holds.
        wal.purge_through(500).unwrap();
        assert_eq!((wal.first_index(), wal.last_index()), (None, None));
        wal.append((501..505).map(|i| (i, payload(i, 10)))).unwrap();
        drop(wal);
        let wal = open(dir.path(), Some(500));
        assert_eq!(
            (wal.first_index(), wal.last_index()),
            (Some(501), Some(504))
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(u8, u16),
        Truncate(u8),
        Purge(u8),
        Reopen,
        Restart(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1u8..20, 1u16..600).prop_map(|(n, s)| Op::Append(n, s)),
            1 => any::<u8>().prop_map(Op::Truncate),
            1 => any::<u8>().prop_map(Op::Purge),
            1 => Just(Op::Reopen),
            1 => (0u16..2000).prop_map(Op::Restart),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the sequence of appends, truncations, purges and reopenings,
        /// the log reads back exactly what a plain map says it holds.
        #[test]
        fn the_log_behaves_like_a_map(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut wal = open(dir.path(), None);
            let mut model: Model<u64, Vec<u8>> = Model::new();
            let mut purged: Option<u64> = None;
            for op in ops {
                match op {
                    Op::Append(n, size) => {
                        let next = model.keys().next_back().map(|l| l + 1)
                            .unwrap_or_else(|| purged.map_or(0, |p| p + 1));
                        let recs: Vec<_> = (next..next + n as u64)
                            .map(|i| (i, payload(i, size as usize))).collect();
                        wal.append(recs.clone()).unwrap();
                        model.extend(recs);
                    }
                    Op::Truncate(at) => {
                        let Some(first) = model.keys().next().copied() else { continue };
                        let from = first + at as u64 % (model.len() as u64 + 1);
                        wal.truncate_from(from).unwrap();
                        model.retain(|k, _| *k < from);
                    }
                    Op::Purge(at) => {
                        let Some(first) = model.keys().next().copied() else { continue };
                        let through = first + at as u64 % (model.len() as u64 + 2);
                        wal.purge_through(through).unwrap();
                        model.retain(|k, _| *k > through);
                        purged = Some(purged.map_or(through, |p| p.max(through)));
                    }
                    Op::Reopen => {
                        drop(wal);
                        wal = open(dir.path(), purged);
                    }
                    Op::Restart(at) => {
                        // Everything purged (a snapshot from the leader), then on.
                        let Some(last) = model.keys().next_back().copied() else { continue };
                        let through = last + at as u64;
                        wal.purge_through(through).unwrap();
                        model.clear();
                        purged = Some(through);
                    }
                }
                let expected: Vec<_> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
                prop_assert_eq!(all(&wal), expected);
                prop_assert_eq!(wal.first_index(), model.keys().next().copied());
                prop_assert_eq!(wal.last_index(), model.keys().next_back().copied());
            }
        }
    }

    #[test]
    fn a_segment_the_disk_has_no_room_for_is_refused_as_no_space_with_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        // Far larger than any disk: the free-space check refuses it.
        let wal = Wal::open_sized(dir.path(), None, u64::MAX / 4).unwrap();
        let e = wal.append([(1, payload(1, 10))]).unwrap_err();
        assert!(e.is_no_space(), "{e}");
        assert_eq!(wal.last_index(), None);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        // An ordinary I/O error is not one.
        assert!(!WalError::Hole { index: 3, last: 1 }.is_no_space());
    }

    #[test]
    fn appending_again_after_a_full_disk_skips_the_records_already_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), None);
        wal.append((1..=5).map(|i| (i, payload(i, 100)))).unwrap();
        // As LogStore does after a full-disk error: the records not in the log yet.
        let records: Vec<(u64, Vec<u8>)> = (1..=40).map(|i| (i, payload(i, 300))).collect();
        let done = wal.last_index().unwrap();
        wal.append(
            records
                .iter()
                .filter(|(i, _)| *i > done)
                .map(|(i, p)| (*i, p.as_slice())),
        )
        .unwrap();
        wal.sync().unwrap();
        drop(wal);
        let wal = open(dir.path(), None);
        let back = wal.read(..).unwrap();
        assert_eq!(back.len(), 40);
        assert_eq!(back[0].1, payload(1, 100));
        assert_eq!(back[39].1, payload(40, 300));
    }
}

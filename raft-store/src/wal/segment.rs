//! One segment file of the log: its header and records (the layout is described
//! in `wal.rs`), created complete, read back and checked.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{io_err, WalError};

const MAGIC: &[u8; 8] = b"bcm-wal1";
pub(super) const SEGMENT_HEADER: u64 = 16;
pub(super) const RECORD_HEADER: usize = 16;

/// Where one record lies in its segment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Loc {
    pub(super) offset: u64,
    /// Header and payload.
    pub(super) len: u32,
}

pub(super) struct Segment {
    pub(super) path: PathBuf,
    pub(super) file: Arc<File>,
    /// Index of the first record (also in the file name and header).
    pub(super) first: u64,
    /// One per record: indexes `first`, `first + 1`, ...
    pub(super) records: Vec<Loc>,
    /// Where the next record goes.
    pub(super) end: u64,
}

impl Segment {
    /// The index after its last record.
    pub(super) fn next(&self) -> u64 {
        self.first + self.records.len() as u64
    }
}

pub(super) fn checksum(len: u32, index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

/// Reserves the rest of a segment's space as zeroes (where the file system can).
/// Fails only when the disk has no room for it; a file system without fallocate
/// means no preallocation (the file then grows with each write, also correct).
fn preallocate(file: &File, from: u64, segment_bytes: u64) -> std::io::Result<()> {
    if from >= segment_bytes {
        return Ok(());
    }
    // SAFETY: fallocate on a file descriptor we own.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            0,
            from as libc::off_t,
            (segment_bytes - from) as libc::off_t,
        )
    };
    match rc {
        0 => Ok(()),
        _ => match std::io::Error::last_os_error() {
            e if crate::space::is_no_space(&e) => Err(e),
            _ => Ok(()),
        },
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync the log directory", dir))
}

/// Creates the segment for records from `first` on: complete or not at all.
pub(super) fn create_segment(
    dir: &Path,
    first: u64,
    segment_bytes: u64,
) -> Result<Segment, WalError> {
    let path = segment_path(dir, first);
    let tmp = path.with_extension("wal.tmp");
    // A new segment takes its whole size at once: it is started only while that
    // and the headroom the metadata needs are free (see space.rs).
    let free = crate::space::available_bytes(dir).map_err(io_err("measure free space in", dir))?;
    if free < segment_bytes + crate::space::HEADROOM {
        return Err(io_err("start a new log segment in", dir)(
            crate::space::no_space(),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        // The owner's only: the log holds password hashes and the token key.
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("create log segment", &tmp))?;
    // A file left by an interrupted start keeps the mode it had: set it.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_err("make log segment private (0600)", &tmp))?;
    let mut header = [0u8; SEGMENT_HEADER as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..].copy_from_slice(&first.to_le_bytes());
    file.write_all_at(&header, 0)
        .map_err(io_err("write log segment header", &tmp))?;
    if let Err(e) = preallocate(&file, SEGMENT_HEADER, segment_bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("preallocate log segment", &tmp)(e));
    }
    file.sync_all()
        .map_err(io_err("sync new log segment", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("rename new log segment", &tmp))?;
    sync_dir(dir)?;
    Ok(Segment {
        path,
        file: Arc::new(file),
        first,
        records: Vec::new(),
        end: SEGMENT_HEADER,
    })
}

/// Cuts the file at `at` and zeroes everything after it, durably.
pub(super) fn zero_from(
    file: &File,
    path: &Path,
    at: u64,
    segment_bytes: u64,
) -> Result<(), WalError> {
    file.set_len(at)
        .map_err(io_err("truncate log segment", path))?;
    // Without room the cut part is not reserved again: appends then grow the file.
    let _ = preallocate(file, at, segment_bytes);
    file.sync_all().map_err(io_err("sync log segment", path))
}

/// Reads and checks one segment. `last`: it is the segment appends went to, where
/// a record cut short by a crash may end the log.
pub(super) fn read_segment(
    path: &Path,
    first: u64,
    last: bool,
    segment_bytes: u64,
) -> Result<Segment, WalError> {
    let corrupt = |problem: String| WalError::Corrupt {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = fs::read(path).map_err(io_err("read log segment", path))?;
    if bytes.len() < SEGMENT_HEADER as usize || &bytes[..8] != MAGIC {
        return Err(corrupt("not a bcm log segment (bad header)".into()));
    }
    let named = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if named != first {
        return Err(corrupt(format!("its header says it starts at {named}")));
    }
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER as usize;
    let end = loop {
        let Some(head) = bytes.get(at..at + RECORD_HEADER) else {
            break at;
        };
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        if len == 0 {
            break at;
        }
        let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
        let index = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        let Some(payload) = bytes.get(at + RECORD_HEADER..at + RECORD_HEADER + len as usize) else {
            break at;
        };
        let expected = first + records.len() as u64;
        if checksum(len, index, payload) != crc || index != expected {
            break at;
        }
        records.push(Loc {
            offset: at as u64,
            len: (RECORD_HEADER + len as usize) as u32,
        });
        at += RECORD_HEADER + len as usize;
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("open log segment", path))?;
    if bytes[end..].iter().any(|b| *b != 0) {
        if !last {
            return Err(corrupt(format!(
                "record {} at offset {end} is damaged",
                first + records.len() as u64
            )));
        }
        // The tail of the last segment: a write the crash cut short. It was never
        // reported durable; zero it so that no part of it is ever read back.
        tracing::warn!(
            segment = %path.display(),
            offset = end,
            records = records.len(),
            "discarding an incomplete record at the end of the Raft log (a write cut short by a crash)"
        );
        zero_from(&file, path, end as u64, segment_bytes)?;
    }
    Ok(Segment {
        path: path.to_path_buf(),
        file: Arc::new(file),
        first,
        records,
        end: end as u64,
    })
}

pub(super) fn read_record(segment: &Segment, index: u64) -> Result<Vec<u8>, WalError> {
    let loc = segment.records[(index - segment.first) as usize];
    let mut buf = vec![0u8; loc.len as usize];
    segment
        .file
        .read_exact_at(&mut buf, loc.offset)
        .map_err(io_err("read log segment", &segment.path))?;
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let at = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
    let payload = &buf[RECORD_HEADER..];
    if len as usize != payload.len() || at != index || checksum(len, at, payload) != crc {
        return Err(WalError::Corrupt {
            path: segment.path.clone(),
            problem: format!("record {index} at offset {} does not check out", loc.offset),
        });
    }
    buf.drain(..RECORD_HEADER);
    Ok(buf)
}

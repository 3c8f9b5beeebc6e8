//! A backup's manifest: every directory, file and symlink it holds, in walk order
//! (a directory before what it contains), with the chunks of each file.
//!
//! Paths are relative to the file system root (`/srv/data/a` is `srv/data/a`),
//! as bytes (a Unix name need not be UTF-8), and are checked on the way in and
//! out: a manifest naming `..` or an absolute path is refused, so a restore can
//! never write outside its target.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::id::ChunkId;

const MAGIC: &[u8; 8] = b"bcmmani2";
/// Manifests written before entries had a [`Stamp`]; still read.
const MAGIC_V1: &[u8; 8] = b"bcmmani1";

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Dir,
    /// A regular file: its length and its chunks, in order.
    File {
        size: u64,
        chunks: Vec<ChunkId>,
    },
    /// A symbolic link and what it points to (as written, not resolved).
    Symlink {
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
    },
}

/// One directory, file or symlink of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the file system root, `/`-separated, no `.` or `..`.
    #[serde(with = "serde_bytes")]
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Modification time: seconds and nanoseconds since the Unix epoch.
    pub mtime: (i64, u32),
    /// How the file looked on the source, beside its size and mtime.
    pub stamp: Stamp,
}

/// What tells a file unchanged since an earlier backup without reading it, beside
/// its size and mtime (compared like restic does): its inode and its status-change
/// time, which every write and `chmod` moves and no `touch` can set back. Zero when
/// unknown (a manifest from before stamps), which matches no file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub inode: u64,
    pub ctime: (i64, u32),
}

/// An entry as manifests before stamps held it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct EntryV1 {
    path: Vec<u8>,
    kind: EntryKind,
    mode: u32,
    mtime: (i64, u32),
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct ManifestV1 {
    entries: Vec<EntryV1>,
    skipped: Vec<(Vec<u8>, String)>,
}

impl Entry {
    pub fn path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }

    /// Whether `self`, a file as the walk found it (no chunks yet), is `earlier`
    /// unchanged: same path, size, mtime, inode and ctime, with a known stamp.
    pub fn unchanged_since(&self, earlier: &Entry) -> bool {
        let size_of = |e: &Entry| match e.kind {
            EntryKind::File { size, .. } => Some(size),
            _ => None,
        };
        let size = size_of(self);
        size.is_some()
            && size == size_of(earlier)
            && self.path == earlier.path
            && self.mtime == earlier.mtime
            && self.stamp == earlier.stamp
            && self.stamp != Stamp::default()
    }

    /// Logical bytes: a file's length, nothing for the others.
    pub fn size(&self) -> u64 {
        match &self.kind {
            EntryKind::File { size, .. } => *size,
            _ => 0,
        }
    }
}

/// A backup's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<Entry>,
    /// Paths the walk met and did not keep (sockets, devices, fifos, unreadable
    /// files), with why.
    pub skipped: Vec<(Vec<u8>, String)>,
}

/// A manifest that cannot be read, or names a path a restore must not write.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a manifest (no manifest header)")]
    NotAManifest,
    #[error("the manifest is damaged: {0}")]
    Damaged(String),
    #[error("the manifest names a path that leaves its root: {0:?}")]
    BadPath(String),
}

impl Manifest {
    pub fn files(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::File { .. }))
    }

    /// Logical bytes of all files.
    pub fn size(&self) -> u64 {
        self.entries.iter().map(Entry::size).sum()
    }

    /// Every chunk the manifest uses, each once, in first-use order.
    pub fn chunks(&self) -> Vec<ChunkId> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for e in &self.entries {
            if let EntryKind::File { chunks, .. } = &e.kind {
                out.extend(chunks.iter().filter(|c| seen.insert(**c)));
            }
        }
        out
    }

    /// The entries at or under `prefix` (relative, like entry paths; empty for
    /// all), in order.
    pub fn under<'a>(&'a self, prefix: &'a Path) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.path().starts_with(prefix))
    }

    /// Header, CRC-32 of the body, body (postcard).
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_stdvec(self).expect("a manifest encodes");
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Reads a manifest back (this version's or the one before), checking its
    /// checksum and every path in it.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() < 12 || (&bytes[..8] != MAGIC && &bytes[..8] != MAGIC_V1) {
            return Err(ManifestError::NotAManifest);
        }
        let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let body = &bytes[12..];
        if crc32fast::hash(body) != crc {
            return Err(ManifestError::Damaged("its checksum does not match".into()));
        }
        let damaged = |e: postcard::Error| ManifestError::Damaged(e.to_string());
        let m: Manifest = if &bytes[..8] == MAGIC {
            postcard::from_bytes(body).map_err(damaged)?
        } else {
            let old: ManifestV1 = postcard::from_bytes(body).map_err(damaged)?;
            Manifest {
                entries: old
                    .entries
                    .into_iter()
                    .map(|e| Entry {
                        path: e.path,
                        kind: e.kind,
                        mode: e.mode,
                        mtime: e.mtime,
                        stamp: Stamp::default(),
                    })
                    .collect(),
                skipped: old.skipped,
            }
        };
        for e in &m.entries {
            relative_path(e.path())?;
        }
        Ok(m)
    }
}

/// `path` checked to stay below its root: plain names joined by single `/`
/// (no `..`, `.`, empty name or leading `/`), at least one of them.
pub fn relative_path(path: &Path) -> Result<&Path, ManifestError> {
    let bytes = path.as_os_str().as_bytes();
    let plain = !bytes.is_empty()
        && bytes
            .split(|b| *b == b'/')
            .all(|name| !matches!(name, b"" | b"." | b".."));
    if plain {
        Ok(path)
    } else {
        Err(ManifestError::BadPath(path.to_string_lossy().into_owned()))
    }
}

/// An absolute source path as an entry path (`/srv/a` → `srv/a`).
pub fn entry_path(absolute: &Path) -> PathBuf {
    absolute
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, chunks: &[&[u8]]) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File {
                size: chunks.iter().map(|c| c.len() as u64).sum(),
                chunks: chunks.iter().map(|c| ChunkId::of(c)).collect(),
            },
            mode: 0o644,
            mtime: (1_700_000_000, 5),
            stamp: Stamp::default(),
        }
    }

    #[test]
    fn a_manifest_round_trips_and_counts_its_chunks_once() {
        let m = Manifest {
            entries: vec![
                Entry {
                    path: b"srv".to_vec(),
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    mtime: (1, 0),
                    stamp: Stamp::default(),
                },
                file("srv/a", &[b"x", b"y"]),
                file("srv/b", &[b"y", b"z"]),
                Entry {
                    path: b"srv/l".to_vec(),
                    kind: EntryKind::Symlink {
                        target: b"../elsewhere".to_vec(),
                    },
                    mode: 0o777,
                    mtime: (2, 0),
                    stamp: Stamp::default(),
                },
            ],
            skipped: vec![(b"srv/sock".to_vec(), "a socket".into())],
        };
        let back = Manifest::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.chunks().len(), 3);
        assert_eq!(back.size(), 4);
        assert_eq!(back.files().count(), 2);
        assert_eq!(back.under(Path::new("srv/a")).count(), 1);
        assert_eq!(back.under(Path::new("")).count(), 4);
    }

    #[test]
    fn damage_and_escaping_paths_are_refused() {
        let m = Manifest {
            entries: vec![file("ok", &[b"1"])],
            ..Manifest::default()
        };
        let mut bytes = m.encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(ManifestError::Damaged(_))
        ));
        assert!(matches!(
            Manifest::decode(b"short"),
            Err(ManifestError::NotAManifest)
        ));
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "a/./b",
            "a//b",
            "a/",
            "",
        ] {
            let m = Manifest {
                entries: vec![file(bad, &[])],
                ..Manifest::default()
            };
            let r = Manifest::decode(&m.encode());
            assert!(
                matches!(r, Err(ManifestError::BadPath(_))),
                "{bad:?}: {r:?}"
            );
        }
    }

    #[test]
    fn a_manifest_from_before_stamps_still_reads_and_matches_no_file() {
        let old = file("srv/a", &[b"x"]);
        let v1 = ManifestV1 {
            entries: vec![EntryV1 {
                path: old.path.clone(),
                kind: old.kind.clone(),
                mode: old.mode,
                mtime: old.mtime,
            }],
            skipped: vec![],
        };
        let body = postcard::to_stdvec(&v1).unwrap();
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let back = Manifest::decode(&bytes).unwrap();
        assert_eq!(back.entries, vec![old.clone()]);
        let mut now = old.clone();
        now.stamp = Stamp {
            inode: 7,
            ctime: (1, 2),
        };
        assert!(!old.unchanged_since(&back.entries[0]), "no stamp, no match");
        assert!(now.unchanged_since(&now.clone()));
    }

    #[test]
    fn a_file_is_unchanged_only_when_size_mtime_inode_and_ctime_all_match() {
        let mut before = file("srv/a", &[b"xy"]);
        before.stamp = Stamp {
            inode: 42,
            ctime: (1_700_000_100, 9),
        };
        let now = before.clone();
        assert!(now.unchanged_since(&before));
        let changes: [fn(&mut Entry); 5] = [
            |e| e.mtime.1 += 1,
            |e| e.stamp.ctime.1 += 1,
            |e| e.stamp.inode += 1,
            |e| e.path.push(b'x'),
            |e| {
                e.kind = EntryKind::File {
                    size: 3,
                    chunks: vec![],
                }
            },
        ];
        for change in changes {
            let mut other = now.clone();
            change(&mut other);
            assert!(!other.unchanged_since(&before), "{other:?}");
        }
        let mut dir = before.clone();
        dir.kind = EntryKind::Dir;
        assert!(!dir.unchanged_since(&dir.clone()));
    }

    #[test]
    fn absolute_paths_become_entry_paths() {
        assert_eq!(
            entry_path(Path::new("/srv/data/x")),
            Path::new("srv/data/x")
        );
        assert_eq!(entry_path(Path::new("/")), Path::new(""));
    }
}

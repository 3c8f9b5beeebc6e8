//! A storage node's chunk store kept in an S3-compatible object store: the
//! object-store [`Backend`] of `bcm-chunks`' pack store. Under the configured
//! prefix of the bucket:
//!
//! ```text
//! packs/<2 hex>/<pack id>.pack        the packs (the same bytes as on disk)
//! manifests/<node id>/<backup>.manifest  each storage node's manifests
//! claims/<node id>/<backup>           backups being written through a node
//!                                     (no other node's GC runs meanwhile)
//! quarantine/<pack id>.pack           damaged packs, set aside
//! ```
//!
//! Several storage nodes may share one bucket (and prefix): packs are named by
//! their content, so a chunk one of them uploaded is found by the others
//! ([`Backend::shared`]), and each keeps its manifests under its own node id.
//!
//! The store's calls block (they run on the node's blocking threads); each is
//! run on a small runtime of this backend's own. Retries with backoff on 5xx
//! answers and timeouts are object_store's; a write returns only once the
//! object store acknowledged it.

use std::future::Future;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bcm_chunks::pack::PackId;
use bcm_chunks::store::disk::parse_pack_id;
use bcm_chunks::store::Backend;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};

/// Packs above this size are uploaded in parts of this size, all at once.
const PART: usize = 8 * 1024 * 1024;
/// Ranged reads in flight at once (a restore's runs, pack indexes when the
/// store opens). Garage answers with Nagle's algorithm on, so a response whose
/// last segment is small waits ~40 ms for the client's delayed ACK: many
/// requests at once hide that.
const AT_ONCE: usize = 16;

/// Where the store is and how to sign for it.
#[derive(Clone)]
pub struct Settings {
    /// `http://host:port` or `https://...`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Keys start with `<prefix>/` (none when empty).
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Path-style URLs (`endpoint/bucket/key`) rather than virtual-hosted ones.
    pub path_style: bool,
    /// This storage node's id: its manifests' folder.
    pub owner: u64,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("path_style", &self.path_style)
            .field("owner", &self.owner)
            .finish()
    }
}

/// What is wrong with the object store, said so that an operator can act on it
/// (and never with the secret key in it).
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("the object store settings are not usable: {0}")]
    Settings(String),
    #[error("cannot reach the object store at {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("the object store at {endpoint} refused access key {key_id} (wrong key id or secret, or no permission on bucket {bucket:?}): {detail}")]
    Refused {
        endpoint: String,
        key_id: String,
        bucket: String,
        detail: String,
    },
    #[error("bucket {bucket:?} does not exist at {endpoint} (create it, and allow key {key_id} to read and write it)")]
    NoBucket {
        endpoint: String,
        bucket: String,
        key_id: String,
    },
    #[error("the object store at {endpoint} answered: {detail}")]
    Other { endpoint: String, detail: String },
}

/// A small runtime that the blocking calls run their requests on; shut down
/// in the background when the backend goes (a runtime must not be dropped on
/// an async thread).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The object-store backend (cheap to clone: clones share the client).
#[derive(Clone)]
pub struct S3Backend {
    store: Arc<AmazonS3>,
    /// The same client without retries, short timeouts: the probe.
    quick: Arc<AmazonS3>,
    rt: Arc<Runtime>,
    settings: Arc<Settings>,
}

impl S3Backend {
    /// The client for `settings` (no request made yet: see [`S3Backend::probe`]).
    pub fn new(settings: Settings) -> Result<S3Backend, S3Error> {
        let build = |retry: RetryConfig, timeout: Duration| {
            AmazonS3Builder::new()
                .with_endpoint(&settings.endpoint)
                .with_bucket_name(&settings.bucket)
                .with_region(&settings.region)
                .with_access_key_id(&settings.access_key_id)
                .with_secret_access_key(&settings.secret_access_key)
                .with_virtual_hosted_style_request(!settings.path_style)
                // Not used (a pack's name is its content: a second put of it is
                // the same object), and Garage would ignore it: never sent.
                .with_conditional_put(S3ConditionalPut::Disabled)
                .with_retry(retry)
                // allow_http here: with_client_options replaces every option.
                .with_client_options(
                    ClientOptions::new()
                        .with_allow_http(settings.endpoint.starts_with("http://"))
                        .with_timeout(timeout)
                        .with_connect_timeout(Duration::from_secs(5)),
                )
                .build()
                .map_err(|e| S3Error::Settings(clean(&settings, e.to_string())))
        };
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 6,
            retry_timeout: Duration::from_secs(60),
        };
        let quick = RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bcm-s3")
            .enable_all()
            .build()
            .map_err(|e| S3Error::Settings(format!("cannot start its runtime: {e}")))?;
        Ok(S3Backend {
            store: Arc::new(build(retry, Duration::from_secs(120))?),
            quick: Arc::new(build(quick, Duration::from_secs(10))?),
            rt: Arc::new(Runtime(Some(rt))),
            settings: Arc::new(settings),
        })
    }

    /// The same for every storage node whose store is this bucket and prefix
    /// (whichever endpoint of the object store it talks to: a Garage or Ceph
    /// cluster answers on several). Buckets of the same name and prefix in two
    /// different object stores count as one place too: give them other names.
    pub fn place_key(&self) -> String {
        let s = &self.settings;
        format!("s3:{}/{}", s.bucket, s.prefix)
    }

    /// Every key under the prefix (for tests and tools: what is there).
    pub fn keys(&self) -> io::Result<Vec<String>> {
        Ok(self
            .list("")?
            .into_iter()
            .map(|m| m.location.to_string())
            .collect())
    }

    /// Asks the object store for one key of the bucket: whether it answers,
    /// takes the credentials and has the bucket, each said plainly.
    pub fn probe(&self) -> Result<(), S3Error> {
        let quick = self.quick.clone();
        let prefix = self.key("packs/");
        let listed = self.run(async move {
            let mut keys = quick.list(Some(&prefix));
            keys.next().await.transpose().map(|_| ())
        });
        listed.map_err(|e| self.explain(e))
    }

    /// An object store error as an [`S3Error`].
    fn explain(&self, e: object_store::Error) -> S3Error {
        let s = &self.settings;
        let endpoint = s.endpoint.clone();
        let detail = clean(s, chain(&e));
        let lower = detail.to_ascii_lowercase();
        let said = |words: &[&str]| words.iter().any(|w| lower.contains(w));
        // A request that never got an answer says nothing about keys or
        // buckets, whatever digits its message happens to hold (a timing such
        // as "in 1.403535ms" once read as a 403).
        let unanswered = said(&[
            "error sending request",
            "tcp connect error",
            "dns error",
            "connection refused",
        ]);
        let refused = !unanswered
            && (matches!(
                e,
                object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ) || (!said(&["nosuchbucket", "bucket not found"])
                && (status_403(&lower)
                    || said(&[
                        "invalidaccesskeyid",
                        "signaturedoesnotmatch",
                        "accessdenied",
                        "forbidden",
                    ]))));
        let no_bucket = !unanswered
            && (said(&["nosuchbucket", "bucket not found"])
                || matches!(e, object_store::Error::NotFound { .. }));
        if refused {
            S3Error::Refused {
                endpoint,
                key_id: s.access_key_id.clone(),
                bucket: s.bucket.clone(),
                detail,
            }
        } else if no_bucket {
            S3Error::NoBucket {
                endpoint,
                bucket: s.bucket.clone(),
                key_id: s.access_key_id.clone(),
            }
        } else if unanswered || said(&["connect", "dns", "timed out", "timeout"]) {
            S3Error::Unreachable { endpoint, detail }
        } else {
            S3Error::Other { endpoint, detail }
        }
    }

    /// Runs `fut` on the backend's runtime and waits for it (from any thread).
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let rt = self
            .rt
            .0
            .as_ref()
            .expect("the runtime lives as long as the backend");
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .expect("a request on the backend's runtime always answers")
    }

    fn key(&self, rest: &str) -> Path {
        match self.settings.prefix.as_str() {
            "" => Path::from(rest),
            p => Path::from(format!("{p}/{rest}")),
        }
    }

    fn pack_key(&self, id: &PackId) -> Path {
        let hex = id.to_string();
        self.key(&format!("packs/{}/{hex}.pack", &hex[..2]))
    }

    fn manifest_key(&self, owner: u64, backup: u64) -> Path {
        self.key(&format!("manifests/{owner}/{backup}.manifest"))
    }

    /// An object store error as an I/O error: not found as such, the rest with
    /// where it happened.
    fn io(&self, e: object_store::Error) -> io::Error {
        match e {
            object_store::Error::NotFound { path, .. } => {
                io::Error::new(io::ErrorKind::NotFound, format!("{path}: not found"))
            }
            other => io::Error::other(self.explain(other).to_string()),
        }
    }

    /// Every object under `dir` (a folder of the store's layout).
    fn list(&self, dir: &str) -> io::Result<Vec<object_store::ObjectMeta>> {
        let store = self.store.clone();
        let prefix = self.key(dir);
        self.run(async move { store.list(Some(&prefix)).try_collect::<Vec<_>>().await })
            .map_err(|e| self.io(e))
    }

    fn get_range(&self, key: Path, range: Range<u64>) -> io::Result<Bytes> {
        let store = self.store.clone();
        self.run(async move { store.get_range(&key, range).await })
            .map_err(|e| self.io(e))
    }

    /// Ranged GETs, [`AT_ONCE`] in flight, answered in order.
    fn get_ranges(&self, asks: Vec<(Path, Range<u64>)>) -> Vec<io::Result<Bytes>> {
        let store = self.store.clone();
        let got: Vec<Result<Bytes, object_store::Error>> = self.run(async move {
            futures_util::stream::iter(asks)
                .map(|(key, range)| {
                    let store = store.clone();
                    async move {
                        if range.is_empty() {
                            return Ok(Bytes::new());
                        }
                        store.get_range(&key, range).await
                    }
                })
                .buffered(AT_ONCE)
                .collect()
                .await
        });
        got.into_iter().map(|r| r.map_err(|e| self.io(e))).collect()
    }

    fn get(&self, key: Path) -> io::Result<Option<Bytes>> {
        let store = self.store.clone();
        match self.run(async move { store.get(&key).await?.bytes().await }) {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }

    fn exists(&self, key: Path) -> io::Result<bool> {
        let store = self.store.clone();
        match self.run(async move { store.head(&key).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Deletes `key`; whether it was there.
    fn delete(&self, key: Path) -> io::Result<bool> {
        if !self.exists(key.clone())? {
            return Ok(false);
        }
        let store = self.store.clone();
        match self.run(async move { store.delete(&key).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(self.io(e)),
        }
    }

    fn put(&self, key: Path, bytes: Bytes) -> io::Result<()> {
        let store = self.store.clone();
        self.run(async move { store.put(&key, PutPayload::from(bytes)).await })
            .map(|_| ())
            .map_err(|e| self.io(e))
    }
}

impl Backend for S3Backend {
    fn describe(&self) -> String {
        let s = &self.settings;
        match s.prefix.as_str() {
            "" => format!("bucket {:?} at {}", s.bucket, s.endpoint),
            p => format!("bucket {:?} at {}, under {p}/", s.bucket, s.endpoint),
        }
    }

    fn shared(&self) -> bool {
        true
    }

    fn capacity(&self) -> io::Result<Option<(u64, u64)>> {
        Ok(None)
    }

    /// An upload cut short leaves no object (S3 makes an object visible only
    /// once whole); its parts are the bucket's lifecycle rules' to clear.
    fn clean_leftovers(&self) -> io::Result<usize> {
        Ok(0)
    }

    fn list_packs(&self) -> io::Result<Vec<(PackId, u64)>> {
        Ok(self
            .list("packs/")?
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?;
                let id = parse_pack_id(name.strip_suffix(".pack")?)?;
                Some((id, m.size))
            })
            .collect())
    }

    fn read(&self, id: &PackId, offset: u64, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        self.get_range(self.pack_key(id), offset..offset + len as u64)
    }

    /// An extra request costs more than a few hundred KiB more of one.
    fn run_gap(&self) -> u64 {
        1024 * 1024
    }

    fn read_ranges(&self, ranges: &[(PackId, u64, usize)]) -> Vec<io::Result<Bytes>> {
        let asks = ranges
            .iter()
            .map(|(id, offset, len)| (self.pack_key(id), *offset..*offset + *len as u64))
            .collect();
        self.get_ranges(asks)
    }

    fn write_pack(&self, id: &PackId, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let key = self.pack_key(id);
        if len <= PART {
            return self.put(key, Bytes::from(parts.concat()));
        }
        let store = self.store.clone();
        let parts: Vec<Bytes> = parts.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        self.run(async move {
            let upload = store.put_multipart(&key).await?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            for p in parts {
                w.put(p);
            }
            w.finish().await
        })
        .map(|_| ())
        .map_err(|e| self.io(e))
    }

    fn has_pack(&self, id: &PackId) -> io::Result<bool> {
        self.exists(self.pack_key(id))
    }

    fn remove_pack(&self, id: &PackId) -> io::Result<bool> {
        self.delete(self.pack_key(id))
    }

    fn quarantine_pack(&self, id: &PackId) -> io::Result<()> {
        let from = self.pack_key(id);
        let to = self.key(&format!("quarantine/{id}.pack"));
        let store = self.store.clone();
        match self.run(async move { store.copy(&from, &to).await }) {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(self.io(e)),
        }
        self.delete(self.pack_key(id)).map(|_| ())
    }

    fn write_manifest(&self, backup: u64, bytes: &[u8]) -> io::Result<()> {
        let key = self.manifest_key(self.settings.owner, backup);
        self.put(key, Bytes::copy_from_slice(bytes))
    }

    fn read_manifest(&self, backup: u64) -> io::Result<Option<Vec<u8>>> {
        let key = self.manifest_key(self.settings.owner, backup);
        Ok(self.get(key)?.map(|b| b.to_vec()))
    }

    fn remove_manifest(&self, backup: u64) -> io::Result<bool> {
        self.delete(self.manifest_key(self.settings.owner, backup))
    }

    fn manifests(&self) -> io::Result<Vec<u64>> {
        let own = format!("manifests/{}/", self.settings.owner);
        Ok(self
            .list(&own)?
            .into_iter()
            .filter_map(|m| {
                m.location
                    .filename()?
                    .strip_suffix(".manifest")?
                    .parse()
                    .ok()
            })
            .collect())
    }

    fn claim(&self, backup: u64) -> io::Result<()> {
        let key = self.key(&format!("claims/{}/{backup}", self.settings.owner));
        self.put(key, Bytes::new())
    }

    fn unclaim(&self, backup: u64) -> io::Result<()> {
        let key = self.key(&format!("claims/{}/{backup}", self.settings.owner));
        let store = self.store.clone();
        match self.run(async move { store.delete(&key).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.io(e)),
        }
    }

    /// A mark's age is its last-modified time (the object store's clock)
    /// against this node's clock: keep them within minutes of each other.
    fn foreign_claims(&self, max_age: Duration) -> io::Result<Vec<String>> {
        let own = self.key(&format!("claims/{}/", self.settings.owner));
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Ok(self
            .list("claims/")?
            .into_iter()
            .filter(|m| !m.location.prefix_matches(&own))
            .filter(|m| now_ms - m.last_modified.timestamp_millis() < max_age.as_millis() as i64)
            .map(|m| m.location.to_string())
            .collect())
    }

    fn foreign_manifests(&self) -> io::Result<Vec<(String, Vec<u8>)>> {
        let own = self.key(&format!("manifests/{}/", self.settings.owner));
        let mut out = Vec::new();
        for m in self.list("manifests/")? {
            if m.location.prefix_matches(&own) {
                continue;
            }
            let name = m.location.to_string();
            // None: deleted since the listing.
            if let Some(bytes) = self.get(m.location)? {
                out.push((name, bytes.to_vec()));
            }
        }
        Ok(out)
    }
}

/// An error with its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// `text` with the secret key blotted out, should a message ever carry it.
fn clean(s: &Settings, text: String) -> String {
    if s.secret_access_key.is_empty() {
        text
    } else {
        text.replace(&s.secret_access_key, "***")
    }
}

/// Whether an error text carries the status code 403 as a number of its own,
/// not as digits inside another (a port, a duration, a byte count).
fn status_403(lower: &str) -> bool {
    let b = lower.as_bytes();
    lower.match_indices("403").any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| b[j]);
        let after = b.get(i + 3).copied();
        let joined = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.');
        !joined(before) && !joined(after)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str, prefix: &str) -> Settings {
        Settings {
            endpoint: endpoint.into(),
            bucket: "bcm".into(),
            region: "garage".into(),
            prefix: prefix.into(),
            access_key_id: "GK0123".into(),
            secret_access_key: "s3cr3t-key-material".into(),
            path_style: true,
            owner: 4,
        }
    }

    #[test]
    fn the_secret_key_never_shows() {
        let s = settings("http://127.0.0.1:3900", "");
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let said = clean(&s, "signature for s3cr3t-key-material failed".into());
        assert_eq!(said, "signature for *** failed");
    }

    #[test]
    fn keys_are_laid_out_under_the_prefix_and_one_bucket_is_one_place() {
        let a = S3Backend::new(settings("http://127.0.0.1:3900", "")).unwrap();
        let b = S3Backend::new(settings("http://127.0.0.1:3910", "")).unwrap();
        let other = S3Backend::new(settings("http://127.0.0.1:3900", "cluster-2")).unwrap();
        assert_eq!(
            a.place_key(),
            b.place_key(),
            "another endpoint of the same store"
        );
        assert_ne!(a.place_key(), other.place_key());
        let id = PackId([0xab; 32]);
        assert!(a.pack_key(&id).as_ref().starts_with("packs/ab/abab"));
        assert_eq!(
            other.manifest_key(4, 17).as_ref(),
            "cluster-2/manifests/4/17.manifest"
        );
        assert!(other.describe().contains("under cluster-2/"));
    }

    #[test]
    fn an_unanswered_request_is_unreachable_whatever_its_digits() {
        let b = S3Backend::new(settings("http://127.0.0.1:9", "")).unwrap();
        let generic = |text: &str| object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        };
        // The CI run that failed: the duration held "403".
        let e = b.explain(generic(
            "Error performing GET http://127.0.0.1:43279/bcm?list-type=2 in 1.403535ms - \
             HTTP error: error sending request: client error (Connect): tcp connect error: \
             Connection refused (os error 111)",
        ));
        assert!(matches!(e, S3Error::Unreachable { .. }), "{e}");
        let e = b.explain(generic(
            "Error performing GET http://127.0.0.1:4030/bcm in 2.1ms - \
             Client error with status 403 Forbidden: <Code>AccessDenied</Code>",
        ));
        assert!(matches!(e, S3Error::Refused { .. }), "{e}");
        let e = b.explain(generic(
            "Client error with status 404: NoSuchBucket, in 403ms",
        ));
        assert!(matches!(e, S3Error::NoBucket { .. }), "{e}");
        assert!(status_403("status 403 forbidden"));
        assert!(!status_403("in 1.403535ms on port 44030"));
    }

    #[test]
    fn a_store_that_is_not_there_is_said_unreachable() {
        // A port nothing listens on: refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let b = S3Backend::new(settings(&format!("http://127.0.0.1:{port}"), "")).unwrap();
        let e = b.probe().unwrap_err();
        assert!(matches!(e, S3Error::Unreachable { .. }), "{e}");
        assert!(
            e.to_string().contains("cannot reach the object store"),
            "{e}"
        );
    }
}

//! `bcm dev`'s first job: a backup of a small generated tree from node 1 and its
//! restore onto the last node, checked file by file, so that a new user sees the
//! data path work end to end (and where to look: the API calls are the ones an
//! operator makes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bcm_api::time::human_bytes;
use bcm_api::{BackupView, Login, NewBackup, NewRestore, RestoreView, Session};

/// Writes the demo tree once (a few dozen files, some sharing content).
fn make_source(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let shared = "the same paragraph, kept once however often it appears\n".repeat(2000);
    for d in 0..4 {
        let sub = dir.join(format!("dir{d}"));
        std::fs::create_dir_all(&sub)?;
        for f in 0..10 {
            let body = match f % 3 {
                0 => format!("file {d}.{f}\n").repeat(100 * (f + 1)),
                1 => shared.clone(),
                _ => format!("{d}-{f}: {}\n", "x".repeat(f * 37)),
            };
            std::fs::write(sub.join(format!("file{f}.txt")), body)?;
        }
    }
    std::os::unix::fs::symlink("dir0/file0.txt", dir.join("a-link"))?;
    Ok(())
}

/// Every file below `dir` and its bytes (symlinks as their targets).
fn contents(dir: &Path) -> anyhow::Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let path = e?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let rel = path.strip_prefix(dir)?.to_path_buf();
            if meta.is_symlink() {
                let target = std::fs::read_link(&path)?;
                out.insert(rel, target.into_os_string().into_encoded_bytes());
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(rel, std::fs::read(&path)?);
            }
        }
    }
    Ok(out)
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> anyhow::Result<T> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{path}: HTTP {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{path}: {text}"))
    }
}

/// Runs the demo against the cluster `bcm dev` started; a line per step.
pub async fn run(dir: &Path, base_port: u16, nodes: u16, password: &str) -> anyhow::Result<()> {
    let source = dir.join("demo").join("source");
    make_source(&source)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let base = format!("http://127.0.0.1:{base_port}");
    let login = Login {
        username: "admin".into(),
        password: password.into(),
    };
    let session: Session = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&login)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let api = Client {
        http,
        base,
        token: session.token,
    };
    let new = NewBackup {
        source_node: Some(1),
        paths: Some(vec![source.display().to_string()]),
        ..Default::default()
    };
    let b: BackupView = api
        .call(reqwest::Method::POST, "/api/v1/backups", Some(&new))
        .await?;
    let started = Instant::now();
    let b: BackupView = wait(
        &api,
        &format!("/api/v1/backups/{}", b.id),
        |b: &BackupView| b.status.as_str() != "pending" && b.status.as_str() != "running",
    )
    .await?;
    if b.status.as_str() != "succeeded" {
        bail!(
            "backup {} {}: {}",
            b.id,
            b.status.as_str(),
            b.error.unwrap_or_default()
        );
    }
    println!(
        "bcm dev: backup {} of {} from node 1: {} files, {}, {} stored after dedup on node(s) {}, {:.1}s",
        b.id,
        source.display(),
        b.files.unwrap_or(0),
        human_bytes(b.size_bytes.unwrap_or(0)),
        human_bytes(b.stored_bytes.unwrap_or(0)),
        b.storage_nodes.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        started.elapsed().as_secs_f64()
    );
    let target = dir.join("demo").join(format!("restored-{}", b.id));
    let to = NewRestore {
        target_node: nodes as u64,
        target_path: target.display().to_string(),
        overwrite: false,
        include: None,
    };
    let path = format!("/api/v1/backups/{}/restore", b.id);
    let r: RestoreView = api.call(reqwest::Method::POST, &path, Some(&to)).await?;
    let r: RestoreView = wait(
        &api,
        &format!("/api/v1/restores/{}", r.id),
        |r: &RestoreView| r.status.as_str() != "pending" && r.status.as_str() != "running",
    )
    .await?;
    if r.status.as_str() != "succeeded" {
        bail!(
            "restore {} {}: {}",
            r.id,
            r.status.as_str(),
            r.error.unwrap_or_default()
        );
    }
    let inside = target.join(source.strip_prefix("/").unwrap_or(&source));
    let same = contents(&source)? == contents(&inside)?;
    println!(
        "bcm dev: restore {} onto node {nodes} into {}: {} files, {} ({})",
        r.id,
        target.display(),
        r.files.unwrap_or(0),
        human_bytes(r.bytes.unwrap_or(0)),
        if same {
            "byte-identical to the source"
        } else {
            "DIFFERENT from the source"
        }
    );
    if !same {
        bail!("the restored tree differs from the source");
    }
    Ok(())
}

/// Polls `path` until `done` says so (60 s at most).
async fn wait<T: serde::de::DeserializeOwned>(
    api: &Client,
    path: &str,
    done: impl Fn(&T) -> bool,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: T = api.call(reqwest::Method::GET, path, None::<&()>).await?;
        if done(&v) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{path} did not end within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

//! A steady background writer ([`Writer`]) and what it saw ([`WriteLog`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};

use crate::{wait_until, Api};

/// What a [`Writer`] saw.
#[derive(Debug, Default, Clone)]
pub struct WriteLog {
    /// Every write acknowledged with 2xx: key -> value.
    pub acked: BTreeMap<String, Value>,
    /// Writes that got an answer other than 2xx, or no answer.
    pub failed: u64,
    /// The last few failures, for messages.
    pub last_errors: Vec<String>,
}

/// A background thread writing `PUT /api/v1/config/<prefix>-<n>` through random live
/// nodes, one write at a time, and recording every acknowledged write.
pub struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriteLog>>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(api: &Api, prefix: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriteLog::default()));
        let (api, prefix) = (api.clone(), prefix.to_string());
        let (stop2, log2) = (stop.clone(), log.clone());
        let handle = thread::Builder::new()
            .name(format!("writer-{prefix}"))
            .spawn(move || {
                let mut n = 0u64;
                let tag: u32 = rand::thread_rng().gen();
                while !stop2.load(Ordering::SeqCst) {
                    let Some(node) = api.random_live_node() else {
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    n += 1;
                    let key = format!("{prefix}-{n}");
                    let value = json!(format!("v{n}-{tag:08x}"));
                    let res = api.put_config(node, &key, &value);
                    let mut log = log2.lock().unwrap();
                    match res {
                        Ok(r) if r.is_success() => {
                            log.acked.insert(key, value);
                        }
                        other => {
                            log.failed += 1;
                            let msg = match other {
                                Ok(r) => format!("{key} via node {node}: {r}"),
                                Err(e) => format!("{key} via node {node}: {e}"),
                            };
                            if log.last_errors.len() >= 5 {
                                log.last_errors.remove(0);
                            }
                            log.last_errors.push(msg);
                            drop(log);
                            // Do not spin while the cluster has no leader.
                            thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    }
                    drop(log);
                    thread::sleep(Duration::from_millis(10));
                }
            })
            .expect("spawn writer thread");
        Writer {
            stop,
            log,
            handle: Some(handle),
        }
    }

    /// How many writes have been acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.log.lock().unwrap().acked.len()
    }

    /// A copy of what the writer has seen so far.
    pub fn snapshot(&self) -> WriteLog {
        self.log.lock().unwrap().clone()
    }

    /// Waits until at least `more` further writes are acknowledged.
    pub fn wait_for_progress(&self, more: usize, timeout: Duration) {
        let target = self.acked_count() + more;
        wait_until(
            timeout,
            &format!("the writer to reach {target} acknowledged writes"),
            || {
                let log = self.snapshot();
                if log.acked.len() >= target {
                    Ok(())
                } else {
                    Err(format!(
                        "{} acknowledged, {} failed; last errors: {:?}",
                        log.acked.len(),
                        log.failed,
                        log.last_errors
                    ))
                }
            },
        );
    }

    /// Stops the writer and returns everything it saw.
    pub fn stop(mut self) -> WriteLog {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().expect("writer thread panicked");
        }
        self.snapshot()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

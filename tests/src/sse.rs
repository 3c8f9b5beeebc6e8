//! A client for `GET /api/v1/events` (Server-Sent Events): a reader thread parses the
//! stream and hands each event to the test, which waits for the one it expects.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

use crate::Api;

/// How long the node may take to answer, and how long one read of the stream may
/// block before the reader thread checks whether it should stop (a timed-out read
/// leaves the stream open and intact).
const READ_SLICE: Duration = Duration::from_secs(5);

/// One event: its `event:` name and its `data:` (the lines joined with `\n`).
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

impl SseEvent {
    /// `data` parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

impl std::fmt::Display for SseEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.event, self.data)
    }
}

/// An open event stream on one node.
pub struct EventStream {
    node: u64,
    rx: Receiver<Result<SseEvent, String>>,
    /// Everything received so far, for failure messages.
    seen: Vec<SseEvent>,
    ended: Option<String>,
    stop: Arc<AtomicBool>,
}

impl EventStream {
    /// Opens `GET /api/v1/events` on `node` with an admin token. Returns once the node
    /// has answered 200 with `text/event-stream`: from then on it delivers every event.
    pub fn connect(api: &Api, node: u64) -> Result<EventStream, String> {
        let token = api.token(node)?;
        EventStream::connect_as(api, node, &token)
    }

    /// Like [`EventStream::connect`], with the given bearer token.
    pub fn connect_as(api: &Api, node: u64, token: &str) -> Result<EventStream, String> {
        let client = Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("{}/api/v1/events", api.api_url(node));
        let start = Instant::now();
        // The blocking client applies this timeout to getting the headers and then to
        // each read of the body, not to the whole stream.
        let mut resp = client
            .get(&url)
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .timeout(READ_SLICE)
            .send()
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if status != 200 || !ctype.starts_with("text/event-stream") {
            let body = resp.text().unwrap_or_default();
            return Err(format!("GET {url}: HTTP {status} ({ctype}) {body}"));
        }
        api.log(format!(
            "event stream open on node {node} after {:.2}s",
            start.elapsed().as_secs_f64()
        ));
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        thread::Builder::new()
            .name(format!("sse-node-{node}"))
            .spawn(move || {
                let mut parser = SseParser::default();
                let mut chunk = [0u8; 4096];
                while !stop2.load(Ordering::SeqCst) {
                    let n = match resp.read(&mut chunk) {
                        Ok(0) => {
                            let _ = tx.send(Err("the server closed the stream".into()));
                            return;
                        }
                        Ok(n) => n,
                        Err(e) if is_timeout(&e) => continue,
                        Err(e) => {
                            let _ = tx.send(Err(format!("reading the stream: {e}")));
                            return;
                        }
                    };
                    for ev in parser.feed(&chunk[..n]) {
                        if tx.send(Ok(ev)).is_err() {
                            return;
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(EventStream {
            node,
            rx,
            seen: Vec::new(),
            ended: None,
            stop,
        })
    }

    /// Waits until an event for which `pred` holds arrives and returns it. Panics on
    /// timeout (or when the stream ends) with every event seen so far.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&SseEvent) -> bool,
    ) -> SseEvent {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            if let Some(why) = &self.ended {
                panic!(
                    "waiting for {what} on node {}'s event stream: {why}; events seen: {}",
                    self.node,
                    self.seen_text()
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Ok(ev)) => {
                    self.seen.push(ev.clone());
                    if pred(&ev) {
                        return ev;
                    }
                }
                Ok(Err(why)) => self.ended = Some(why),
                Err(RecvTimeoutError::Disconnected) => {
                    self.ended = Some("the reader thread ended".into())
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "timed out after {:.1}s waiting for {what} on node {}'s event stream; \
                     events seen: {}",
                    start.elapsed().as_secs_f64(),
                    self.node,
                    self.seen_text()
                ),
            }
        }
    }

    /// Waits until the server ends the stream; events meanwhile are kept.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while self.ended.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Ok(ev)) => self.seen.push(ev),
                Ok(Err(why)) => self.ended = Some(why),
                Err(RecvTimeoutError::Disconnected) => {
                    self.ended = Some("the reader thread ended".into())
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "node {}'s event stream still open after {timeout:?}; events seen: {}",
                        self.node,
                        self.seen_text()
                    ))
                }
            }
        }
        match &self.ended {
            Some(why) if why.contains("closed") => Ok(()),
            other => Err(format!("the stream failed instead of ending: {other:?}")),
        }
    }

    /// Every event received so far.
    pub fn seen(&self) -> &[SseEvent] {
        &self.seen
    }

    fn seen_text(&self) -> String {
        if self.seen.is_empty() {
            return "none".into();
        }
        self.seen
            .iter()
            .map(|e| format!("[{e}]"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        // The reader notices within one read slice and closes the connection.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Turns the bytes of an event stream, in chunks of any size, into events.
#[derive(Default)]
struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: Vec<String>,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                // A blank line ends an event; a block of comments alone makes none.
                if !self.data.is_empty() || !self.event.is_empty() {
                    let event = std::mem::take(&mut self.event);
                    out.push(SseEvent {
                        event: if event.is_empty() {
                            "message".into()
                        } else {
                            event
                        },
                        data: std::mem::take(&mut self.data).join("\n"),
                    });
                }
            } else if !line.starts_with(':') {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => self.event = value.to_string(),
                    "data" => self.data.push(value.to_string()),
                    _ => {}
                }
            }
        }
        out
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|r| r as _);
    while let Some(err) = cur {
        if let Some(re) = err.downcast_ref::<reqwest::Error>() {
            if re.is_timeout() {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_comments_are_parsed() {
        let stream = b": keep-alive\n\nevent: config_changed\r\ndata: {\"key\":\"a\",\
                       \"version\":7}\n\nevent: leader_changed\ndata: {\"leader_id\":2}\n\ndata: x\ndata: y\n\n";
        let mut p = SseParser::default();
        let mut events = Vec::new();
        for chunk in stream.chunks(5) {
            events.extend(p.feed(chunk));
        }
        let got: Vec<(String, String)> = events.into_iter().map(|e| (e.event, e.data)).collect();
        assert_eq!(
            got,
            [
                ("config_changed".into(), r#"{"key":"a","version":7}"#.into()),
                ("leader_changed".into(), r#"{"leader_id":2}"#.into()),
                ("message".into(), "x\ny".into()),
            ]
        );
    }
}

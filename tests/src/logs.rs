//! Logs: the harness's own timeline (`harness.log`) and reading the nodes' logs.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A timeline of what the harness did, timed from its creation: each line goes to
/// stderr and to a log file.
#[derive(Clone)]
pub(crate) struct Events {
    start: Instant,
    file: Arc<Mutex<Option<File>>>,
}

impl Events {
    /// Starts the timeline now, writing to a new file at `path` (stderr only if it cannot
    /// be created).
    pub(crate) fn new(path: &Path) -> Events {
        Events {
            start: Instant::now(),
            file: Arc::new(Mutex::new(File::create(path).ok())),
        }
    }

    pub(crate) fn log(&self, msg: &str) {
        let line = format!(
            "[harness +{:7.3}s] {msg}",
            self.start.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        if let Some(f) = self.file.lock().unwrap().as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// The last `n` lines of a file (ANSI colour codes removed).
pub fn tail(path: &Path, n: usize) -> String {
    let text = match fs::read(path) {
        Ok(b) => strip_ansi(&String::from_utf8_lossy(&b)),
        Err(e) => return format!("(cannot read {}: {e})", path.display()),
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Removes ANSI escape sequences (`ESC [ ... letter`), which tracing adds for colours.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `(term, node_id)` of every line containing `became leader`, `term=T` and `node_id=N`.
pub fn parse_became_leader(log: &str) -> Vec<(u64, u64)> {
    let log = strip_ansi(log);
    log.lines()
        .filter(|l| l.contains("became leader"))
        .filter_map(|l| Some((field_u64(l, "term")?, field_u64(l, "node_id")?)))
        .collect()
}

/// The number after `name=` in `line`, where `name` is a whole word (so `term` does not
/// match `leader_term=`).
fn field_u64(line: &str, name: &str) -> Option<u64> {
    let pat = format!("{name}=");
    let mut from = 0;
    while let Some(pos) = line[from..].find(&pat) {
        let at = from + pos;
        let word_start = at == 0 || {
            let prev = line[..at].chars().next_back().unwrap();
            !(prev.is_alphanumeric() || prev == '_' || prev == '.')
        };
        if word_start {
            let digits: String = line[at + pat.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(v) = digits.parse() {
                return Some(v);
            }
        }
        from = at + pat.len();
    }
    None
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn parses_leader_lines_with_and_without_colours() {
        let log = "2025-01-01T00:00:00Z  INFO bcm::raft: became leader term=3 node_id=2\n\
                   \u{1b}[2m2025\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m bcm::raft: became leader \u{1b}[3mterm\u{1b}[0m\u{1b}[2m=\u{1b}[0m4 \u{1b}[3mnode_id\u{1b}[0m\u{1b}[2m=\u{1b}[0m1\n\
                   INFO bcm::raft: became leader leader_term=9 term=5 node_id=3\n\
                   INFO vote granted term=7 node_id=1\n";
        assert_eq!(parse_became_leader(log), vec![(3, 2), (4, 1), (5, 3)]);
    }
}

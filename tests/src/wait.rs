//! Waiting on a condition with a deadline, never sleeping for a guess.

use std::fmt::Display;
use std::thread;
use std::time::{Duration, Instant};

/// Polls `probe` every 50 ms until it returns `Ok`, and returns that value.
///
/// On timeout it panics with `what` and the last `Err` the probe returned, so a failing
/// test says what it was waiting for and what it saw instead.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut last;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {:.1}s waiting for {what}; last seen: {last}",
                start.elapsed().as_secs_f64()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `probe` until what it answers satisfies `ok`, and returns that answer: the
/// common case of [`wait_until`] where the probe reads something (a reply, a page)
/// and the condition looks at it.
///
/// On timeout it panics with `what` and the last answer (or the probe's last error).
pub fn wait_for<T: Display>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
    ok: impl Fn(&T) -> bool,
) -> T {
    wait_until(timeout, what, || {
        let answer = probe()?;
        if ok(&answer) {
            Ok(answer)
        } else {
            Err(answer.to_string())
        }
    })
}

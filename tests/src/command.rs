//! Running a helper program (docker, openssl, a script) that must succeed.

use std::process::{Command, Output};

/// Runs `cmd` to its end and returns its output; panics with `what`, the exit status
/// and what the program printed unless it succeeded.
pub(crate) fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

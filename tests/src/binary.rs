//! Finding the `bcm` binary under test.

use std::path::{Path, PathBuf};

/// Where the `bcm` binary is: `$BCM_BIN`, else `<workspace>/target/debug/bcm`
/// (honouring `$CARGO_TARGET_DIR`).
pub fn bcm_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BCM_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "BCM_BIN={} does not exist; unset it or point it at a built bcm binary",
            p.display()
        );
        return p;
    }
    let p = target_dir().join("debug").join("bcm");
    assert!(
        p.is_file(),
        "the bcm binary is missing at {}: run `cargo build --bin bcm` first \
         (or set BCM_BIN to a built binary)",
        p.display()
    );
    p
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace), else
/// `<workspace>/target`.
pub(crate) fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => workspace.join(t),
        None => workspace.join("target"),
    }
}

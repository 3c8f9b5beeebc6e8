//! Static files, compiled into the binary: no CDN, no external font, no build step.

/// (path under `/static/`, content type, bytes).
pub const FILES: &[(&str, &str, &[u8])] = &[
    (
        "bcm.css",
        "text/css; charset=utf-8",
        include_bytes!("../static/bcm.css"),
    ),
    (
        "bcm.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../static/bcm.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../static/favicon.svg"),
    ),
];

/// The file at `/static/<name>`, with its content type.
pub fn get(name: &str) -> Option<(&'static str, &'static [u8])> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, b)| (*t, *b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn assets_are_small_and_found() {
        let total: usize = super::FILES.iter().map(|(_, _, b)| b.len()).sum();
        assert!(total < 40 * 1024, "static assets weigh {total} bytes");
        assert!(super::get("bcm.js").is_some());
        assert!(super::get("../Cargo.toml").is_none());
    }
}

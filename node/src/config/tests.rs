//! The configuration's tests: layering, defaults and every refusal.

use super::*;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("cluster.toml");
    std::fs::write(&p, text).unwrap();
    p
}

const BASE: &str = r#"
[node]
id = 1
[cluster]
secret = "0123456789abcdef"
bootstrap = ["http://127.0.0.1:9080/"]
"#;

#[test]
fn defaults_are_resolved() {
    let d = tempfile::tempdir().unwrap();
    let c = load(Some(&write(d.path(), BASE)), Overrides::default()).unwrap();
    assert_eq!(c.name, "node-1");
    assert_eq!(c.api_advertise, "http://127.0.0.1:8080");
    assert_eq!(c.bootstrap, vec!["http://127.0.0.1:9080".to_string()]);
    assert_eq!(c.join, c.bootstrap);
    assert_eq!(c.roles.len(), 3);
    assert_eq!(c.manager.backup_manager_grace_ms, 3000);
}

#[test]
fn flags_override_file() {
    let d = tempfile::tempdir().unwrap();
    let o = Overrides {
        values: vec![("node.id", 7u64.into())],
    };
    let c = load(Some(&write(d.path(), BASE)), o).unwrap();
    assert_eq!(c.id, 7);
}

#[test]
fn clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let bad = BASE.replace("id = 1", "id = 1\nroles = [\"boss\"]");
    let e = load(Some(&write(d.path(), &bad)), Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("unknown role \"boss\""), "{e}");
    let unknown = BASE.replace("id = 1", "id = 1\nidd = 2");
    let e = load(Some(&write(d.path(), &unknown)), Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("idd"), "{e}");
    let short = BASE.replace("0123456789abcdef", "short");
    let e = load(Some(&write(d.path(), &short)), Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("cluster.secret"), "{e}");
    let spaced = BASE.replace("0123456789abcdef", "0123456789 abcdef");
    let e = load(Some(&write(d.path(), &spaced)), Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("printable ASCII"), "{e}");
}

#[test]
fn trusted_proxies_are_networks() {
    let d = tempfile::tempdir().unwrap();
    let c = load(Some(&write(d.path(), BASE)), Overrides::default()).unwrap();
    assert_eq!(
        c.trusted_proxies,
        TrustedProxies::default(),
        "none by default"
    );
    let with = |list: &str| format!("{BASE}[api]\ntrusted_proxies = {list}\n");
    let c = load(
        Some(&write(d.path(), &with(r#"["10.0.0.0/8", "::1"]"#))),
        Overrides::default(),
    )
    .unwrap();
    assert!(c.trusted_proxies.contains("10.9.8.7".parse().unwrap()));
    assert!(c.trusted_proxies.contains("::1".parse().unwrap()));
    assert!(!c.trusted_proxies.contains("127.0.0.1".parse().unwrap()));
    let e = load(
        Some(&write(d.path(), &with(r#"["10.0.0.0/40"]"#))),
        Overrides::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("api.trusted_proxies") && e.to_string().contains("0 to 32"),
        "{e}"
    );
}

#[test]
fn the_http_redirect_needs_an_https_api_and_a_port_of_its_own() {
    let d = tempfile::tempdir().unwrap();
    let plain = format!("{BASE}[api]\nhttp_redirect_listen = \"127.0.0.1:8081\"\n");
    let e = load(Some(&write(d.path(), &plain)), Overrides::default()).unwrap_err();
    assert!(
        e.to_string().contains("api.http_redirect_listen")
            && e.to_string().contains("api.tls_cert"),
        "{e}"
    );
    let https = |listen: &str| {
        format!(
            "{BASE}[api]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\nhttp_redirect_listen = \"{listen}\"\n"
        )
    };
    let c = load(
        Some(&write(d.path(), &https("0.0.0.0:8081"))),
        Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.api_redirect_listen, Some("0.0.0.0:8081".parse().unwrap()));
    let e = load(
        Some(&write(d.path(), &https(&c.api_listen.to_string()))),
        Overrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("a port of its own"), "{e}");
}

#[test]
fn token_lifetime_is_bounded() {
    let d = tempfile::tempdir().unwrap();
    let with = |ttl: u64| format!("{BASE}[auth]\ntoken_ttl_secs = {ttl}\n");
    for ttl in [60, 43_200, 30 * 24 * 3600] {
        let c = load(Some(&write(d.path(), &with(ttl))), Overrides::default()).unwrap();
        assert_eq!(c.token_ttl_secs, ttl);
    }
    // 0 would make every token expire as it is issued; a huge one would make
    // tokens live for ever, or overflow when added to the time of issue.
    let names_the_bounds = |ttl: u64, e: ConfigError| {
        let text = e.to_string();
        assert!(
            text.contains("auth.token_ttl_secs") && text.contains("60") && text.contains("2592000"),
            "{ttl}: {text}"
        );
    };
    for ttl in [0, 59, 30 * 24 * 3600 + 1, i64::MAX as u64] {
        let e = load(Some(&write(d.path(), &with(ttl))), Overrides::default()).unwrap_err();
        names_the_bounds(ttl, e);
    }
    let o = Overrides {
        values: vec![("auth.token_ttl_secs", u64::MAX.into())],
    };
    names_the_bounds(u64::MAX, load(Some(&write(d.path(), BASE)), o).unwrap_err());
}

#[test]
fn postgres_section() {
    let d = tempfile::tempdir().unwrap();
    let c = load(Some(&write(d.path(), BASE)), Overrides::default()).unwrap();
    assert!(c.postgres.is_none());
    let pg = format!("{BASE}[postgres]\nurl = \"postgres://u:p@h/db\"\n");
    let c = load(Some(&write(d.path(), &pg)), Overrides::default()).unwrap();
    let p = c.postgres.unwrap();
    assert_eq!(p.export_interval.as_secs(), 30);
    assert_eq!(p.keep_snapshots, 10);
    let alias = format!("{pg}export_interval = 5\n");
    let c = load(Some(&write(d.path(), &alias)), Overrides::default()).unwrap();
    assert_eq!(c.postgres.unwrap().export_interval.as_secs(), 5);
    let bad = format!("{BASE}[postgres]\nurl = \"mysql://h/db\"\n");
    let e = load(Some(&write(d.path(), &bad)), Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("postgres.url"), "{e}");
    let none = format!("{BASE}[postgres]\nkeep_snapshots = 3\n");
    let e = load(Some(&write(d.path(), &none)), Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("postgres.url"), "{e}");
}

#[test]
fn storage_s3_section() {
    let d = tempfile::tempdir().unwrap();
    let key_file = d.path().join("s3.key");
    std::fs::write(&key_file, "very-secret-key\n").unwrap();
    let s3 = format!(
        "{BASE}[storage]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:3900/\"\n\
         bucket = \"bcm\"\naccess_key_id = \"GK1\"\nsecret_access_key_file = {:?}\n",
        key_file.display().to_string()
    );
    let c = load(Some(&write(d.path(), &s3)), Overrides::default()).unwrap();
    let s = c.storage_s3.unwrap();
    assert_eq!(
        (s.endpoint.as_str(), s.bucket.as_str(), s.region.as_str()),
        ("http://127.0.0.1:3900", "bcm", "garage")
    );
    assert_eq!(s.secret_access_key.expose(), "very-secret-key");
    assert!(s.path_style && s.prefix.is_empty());
    assert!(!format!("{s:?}").contains("very-secret-key"));
    let no_bucket = s3.replace("bucket = \"bcm\"\n", "");
    let e = load(Some(&write(d.path(), &no_bucket)), Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("storage.bucket: is required"), "{e}");
    let no_key = s3.replace("secret_access_key_file", "other_file");
    let e = load(Some(&write(d.path(), &no_key)), Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("other_file"), "{e}");
    let ftp = s3.replace("http://127.0.0.1:3900/", "ftp://h");
    let e = load(Some(&write(d.path(), &ftp)), Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("storage.endpoint"), "{e}");
    let local = format!("{BASE}[storage]\nbucket = \"bcm\"\n");
    let e = load(Some(&write(d.path(), &local)), Overrides::default()).unwrap_err();
    assert!(
        e.to_string().contains("storage.bucket: is for backend"),
        "{e}"
    );
    let odd = format!("{BASE}[storage]\nbackend = \"tape\"\n");
    let e = load(Some(&write(d.path(), &odd)), Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("known: local, s3"), "{e}");
}

#[test]
fn the_example_cluster_toml_is_valid_once_given_a_secret_of_its_own() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster.toml");
    // Started as it is, with the secret everyone can read in it, a node
    // refuses and says which key to change.
    let e = load(Some(&example), Overrides::default()).unwrap_err();
    assert!(
        e.to_string().contains("cluster.secret: is the example"),
        "{e}"
    );
    let own = Overrides {
        values: vec![("cluster.secret", "a-secret-of-our-own-1234".into())],
    };
    let c = load(Some(&example), own).unwrap();
    assert_eq!(c.id, 1);
    assert_eq!(c.bootstrap.len(), 3);
    assert_eq!(c.raft.heartbeat_ms, RaftSection::default().heartbeat_ms);
}

#[test]
fn the_example_secret_is_refused_from_a_file_too() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("secret");
    std::fs::write(&file, "change-me-to-a-long-random-string\n").unwrap();
    let text = BASE.replace(
        "secret = \"0123456789abcdef\"",
        &format!("secret_file = {:?}", file.display().to_string()),
    );
    let e = load(Some(&write(d.path(), &text)), Overrides::default()).unwrap_err();
    assert!(
        e.to_string()
            .contains("cluster.secret_file: is the example"),
        "{e}"
    );
    std::fs::write(&file, "a-secret-of-our-own-1234\n").unwrap();
    let c = load(Some(&write(d.path(), &text)), Overrides::default()).unwrap();
    assert_eq!(c.secret.expose(), "a-secret-of-our-own-1234");
}

#[test]
fn secret_never_prints() {
    assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
}

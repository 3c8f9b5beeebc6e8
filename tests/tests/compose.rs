//! The compose stack users start with `docker compose up`: PostgreSQL, three bcm
//! nodes and HAProxy in containers (docker-compose.yml as shipped; the images are
//! built from local parts by scripts/local-images.sh, since nothing can be pulled
//! here). Skipped, with a message, where no Docker engine answers.
//!
//! `cargo build --bin bcm && cargo test -p bcm-tests --test compose`

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bcm_tests::compose::{self, Ack, ComposeStack, RenderedConfig, Writer};
use bcm_tests::serde_json::{json, Value};
use bcm_tests::{bcm_bin, wait_until};
use reqwest::Method;

/// How long after `docker kill` of the leader writes through HAProxy must succeed.
const FAILOVER_BUDGET: Duration = Duration::from_secs(5);
const NODES: [&str; 3] = ["bcm1", "bcm2", "bcm3"];
const STACK: [&str; 5] = ["postgres", "bcm1", "bcm2", "bcm3", "haproxy"];

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Waits until the writer has `n` more acknowledged writes than now.
fn wait_for_progress(writer: &Writer, n: usize, timeout: Duration) {
    let have = writer.acks().len();
    wait_until(timeout, &format!("{n} more acknowledged writes"), || {
        let now = writer.acks().len();
        if now >= have + n {
            Ok(())
        } else {
            Err(format!("{} more so far", now - have))
        }
    });
}

/// Every acknowledged write, with its value, is served by `base`.
fn check_all_present(stack: &ComposeStack, base: &str, acks: &[Ack], linearizable: bool) {
    let expected: BTreeMap<&str, &Value> =
        acks.iter().map(|a| (a.key.as_str(), &a.value)).collect();
    wait_until(
        secs(30),
        &format!("{base} to serve all {} acknowledged writes", expected.len()),
        || {
            let have = stack.settings(base, "w-", linearizable)?;
            let missing: Vec<String> = expected
                .iter()
                .filter(|(k, v)| have.get(**k) != Some(**v))
                .map(|(k, v)| format!("{k}={v} (has {:?})", have.get(*k)))
                .take(5)
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing or wrong: {}", missing.join(", ")))
            }
        },
    );
}

/// Secrets are files: `scripts/compose-init.sh` writes each readable by its owner
/// alone, and no generated secret is in the env file, in docker-compose.yml as
/// rendered, or in any container's environment (Garage's too: garage-init hands it
/// its key through the admin API). Needs Compose, not a Docker engine.
#[test]
fn no_secret_is_in_the_stacks_environment() {
    if let Err(why) = compose::compose_command() {
        eprintln!("skipped: no Docker Compose ({why})");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let rendered = RenderedConfig::init_and_render(dir.path());
    let secrets = &rendered.secrets;
    let expected = [
        "admin_password",
        "api_ca_cert",
        "api_ca_key",
        "api_cert",
        "api_key",
        "api_pem",
        "cluster_secret",
        "garage_admin_token",
        "garage_rpc_secret",
        "garage_secret_key",
        "postgres_password",
        "postgres_url",
    ];
    assert_eq!(
        secrets.keys().map(String::as_str).collect::<Vec<_>>(),
        expected,
        "the secret files"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&dir.path().join("secrets")),
        0o700,
        "the secrets directory"
    );
    for name in secrets.keys() {
        let m = mode(&dir.path().join("secrets").join(name));
        assert_eq!(m, 0o600, "secrets/{name} has mode {m:o}");
    }
    let postgres_password = &secrets["postgres_password"];
    assert_eq!(
        secrets["postgres_url"],
        format!("postgres://bcm:{postgres_password}@postgres:5432/bcm")
    );
    let values: Vec<(&str, &str)> = secrets
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    for (name, value) in &values {
        assert!(value.len() >= 32, "{name} is short: {value:?}");
        assert!(
            !rendered.env_file.contains(value),
            "{name} is in the env file:\n{}",
            rendered.env_file
        );
    }

    let envs = rendered.environments();
    let services: BTreeSet<&str> = envs.iter().map(|(s, _, _)| s.as_str()).collect();
    for service in [
        "bcm1",
        "bcm2",
        "bcm3",
        "bcm4",
        "bcm5",
        "postgres",
        "garage",
        "garage-init",
    ] {
        assert!(
            services.contains(service),
            "no environment for {service}: {envs:?}"
        );
    }
    for (service, var, value) in &envs {
        for (name, secret) in &values {
            assert!(
                !value.contains(secret),
                "{service}'s {var} holds the secret {name}"
            );
        }
    }
    // Nor anywhere else in the configuration (a command line, a label, ...).
    for (name, secret) in &values {
        let seen = rendered.config.matches(secret).count();
        assert_eq!(
            seen, 0,
            "the secret {name} is in the rendered configuration {seen} times"
        );
    }
    // Each node is handed the files it reads, and names them.
    for (service, var, value) in &envs {
        if service.starts_with("bcm") && var.ends_with("_FILE") {
            assert!(value.starts_with("/run/bcm/"), "{service}: {var}={value}");
        }
    }
    assert!(
        envs.contains(&(
            "postgres".into(),
            "POSTGRES_PASSWORD_FILE".into(),
            "/run/secrets/postgres_password".into()
        )),
        "postgres reads its password from a file: {envs:?}"
    );
}

/// An env file from before secrets were files keeps its values: they move into
/// the files, and out of the env file.
#[test]
fn an_older_env_file_is_converted_to_secret_files() {
    if let Err(why) = compose::compose_command() {
        eprintln!("skipped: no Docker Compose ({why})");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let old = "COMPOSE_PROJECT_NAME=bcm\n\
        BCM_CLUSTER_SECRET=OldClusterSecret0123456789abcdef\n\
        BCM_ADMIN_PASSWORD=OldAdminPassword0123456789abcdef\n\
        POSTGRES_PASSWORD=OldPostgresPassword0123456789abc\n\
        GARAGE_RPC_SECRET=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n\
        GARAGE_ACCESS_KEY_ID=GK00112233445566778899aabb\n\
        GARAGE_SECRET_KEY=ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n\
        BCM_PORT=18080\n";
    std::fs::write(dir.path().join("compose.env"), old).unwrap();
    // An older version also gave Garage its key in secrets/garage.env.
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    let old_garage_env = dir.path().join("secrets/garage.env");
    std::fs::write(&old_garage_env, "GARAGE_DEFAULT_SECRET_KEY=ffee").unwrap();
    let r = RenderedConfig::init_and_render(dir.path());
    assert!(!old_garage_env.exists(), "garage.env is still there");
    assert_eq!(
        r.secrets["cluster_secret"],
        "OldClusterSecret0123456789abcdef"
    );
    assert_eq!(
        r.secrets["admin_password"],
        "OldAdminPassword0123456789abcdef"
    );
    assert_eq!(
        r.secrets["postgres_url"],
        "postgres://bcm:OldPostgresPassword0123456789abc@postgres:5432/bcm"
    );
    assert!(r.secrets["garage_rpc_secret"].starts_with("0011"));
    assert!(r.secrets["garage_secret_key"].starts_with("ffee"));
    for gone in [
        "Old",
        "BCM_CLUSTER_SECRET",
        "GARAGE_SECRET_KEY",
        "00112233445566778899aabbcc",
    ] {
        assert!(
            !r.env_file.contains(gone),
            "{gone} is still in:\n{}",
            r.env_file
        );
    }
    for kept in [
        "BCM_PORT=18080",
        "GARAGE_ACCESS_KEY_ID=GK00112233445566778899aabb",
    ] {
        assert!(
            r.env_file.contains(kept),
            "{kept} is gone from:\n{}",
            r.env_file
        );
    }
    // Run again, nothing changes.
    let again = RenderedConfig::init_and_render(dir.path());
    assert_eq!(again.secrets, r.secrets);
    assert_eq!(again.env_file, r.env_file);
}

#[test]
fn compose_stack_survives_killing_the_leader_container() {
    if let Err(why) = compose::docker_available() {
        eprintln!("skipped: no Docker engine ({why})");
        return;
    }
    if let Err(why) = compose::compose_command() {
        eprintln!("skipped: no Docker Compose ({why})");
        return;
    }
    compose::build_local_images(&bcm_bin());

    // Up from a clean state: a fresh project, fresh volumes.
    let stack = Arc::new(ComposeStack::prepare());
    let start = Instant::now();
    stack.up(&[]);
    stack.wait_healthy(&STACK, secs(120));
    stack.log(format!(
        "the stack is up and healthy {:.1}s after `up`",
        start.elapsed().as_secs_f64()
    ));
    stack.login();
    the_api_is_https_only(&stack);
    haproxy_names_the_client(&stack);

    // Writes through HAProxy, all along.
    let writer = Writer::start(&stack, "w-");
    wait_for_progress(&writer, 20, secs(30));

    // Kill the leader's container.
    let old = stack
        .leader_via_proxy()
        .expect("HAProxy routes to a leader");
    let old_service = format!("bcm{old}");
    stack.log(format!("killing the leader's container, {old_service}"));
    // Timed from before `docker kill` runs; counted from the first write sent after
    // it returned: the measure errs on the slow side.
    let kill_started = Instant::now();
    stack.kill(&old_service);
    let killed_at = Instant::now();
    let first = wait_until(
        secs(30),
        "a write sent after the kill to be acknowledged",
        || {
            writer
                .acks()
                .into_iter()
                .find(|a| a.sent >= killed_at)
                .ok_or_else(|| "none yet".to_string())
        },
    );
    let took = first.acked - kill_started;
    let new = wait_until(secs(10), "HAProxy to route to a new leader", || match stack
        .leader_via_proxy()?
    {
        n if n != old => Ok(n),
        n => Err(format!("still {n}")),
    });
    stack.log(format!(
        "writes through HAProxy succeed again {:.2}s after `docker kill`; bcm{new} leads now",
        took.as_secs_f64()
    ));
    assert!(
        took < FAILOVER_BUDGET,
        "the first write after killing the leader's container took {:.2}s (budget {FAILOVER_BUDGET:?})",
        took.as_secs_f64()
    );
    assert_eq!(
        stack.health(&old_service),
        "exited",
        "a killed container stays down"
    );

    // Start it again: it rejoins and catches up.
    wait_for_progress(&writer, 20, secs(30));
    stack.start_container(&old_service);
    stack.wait_healthy(&[old_service.as_str()], secs(60));
    let rejoined = stack.node_url(old);
    wait_until(
        secs(30),
        &format!("{old_service} to see every member up"),
        || {
            let c = stack.cluster(&rejoined)?;
            let members = c["members"].as_array().cloned().unwrap_or_default();
            let up = members.iter().filter(|m| m["status"] == "up").count();
            if members.len() == 3 && up == 3 && c["leader_id"] == new {
                Ok(())
            } else {
                Err(format!(
                    "leader {} members {}",
                    c["leader_id"], c["members"]
                ))
            }
        },
    );
    check_all_present(&stack, &rejoined, &writer.acks(), false);
    stack.log(format!(
        "{old_service} rejoined and serves every acknowledged write"
    ));

    // Restarting PostgreSQL does not disturb the cluster.
    let before = writer.acks().len();
    stack.compose_ok(&["restart", "postgres"]);
    stack.wait_healthy(&["postgres"], secs(60));
    wait_for_progress(&writer, 20, secs(30));
    stack.wait_healthy(&NODES, secs(30));
    stack.log(format!(
        "PostgreSQL restarted; {} writes acknowledged meanwhile",
        writer.acks().len() - before
    ));

    let (attempts, acks) = writer.stop();
    stack.log(format!(
        "writer: {} of {attempts} writes acknowledged",
        acks.len()
    ));
    check_all_present(&stack, &stack.proxy_url(), &acks, true);

    // The snapshot export reaches the restarted PostgreSQL: a snapshot now is
    // exported, with no error left.
    let snap_url = format!("{}/api/v1/cluster/snapshot", stack.proxy_url());
    let (status, snap) = stack.send(Method::POST, &snap_url, None, secs(30)).unwrap();
    assert_eq!(status, 200, "POST /api/v1/cluster/snapshot: {snap}");
    let index = snap["snapshot_index"].as_u64().unwrap();
    wait_until(secs(60), "the export to PostgreSQL to catch up", || {
        let ex = stack.cluster(&stack.proxy_url())?["snapshot_export"].clone();
        match ex["last_index"].as_u64() {
            Some(i) if i >= index && ex["last_error"].is_null() => Ok(()),
            _ => Err(ex.to_string()),
        }
    });
    stack.log(format!(
        "PostgreSQL holds the state at index {index} or later"
    ));

    // `down` and `up` again: the volumes keep everything.
    stack.compose_ok(&["down", "--timeout", "10"]);
    assert!(!stack.volumes().is_empty(), "`down` keeps the volumes");
    stack.up(&[]);
    stack.wait_healthy(&STACK, secs(120));
    stack.login();
    check_all_present(&stack, &stack.proxy_url(), &acks, true);
    for n in 1..=3 {
        check_all_present(&stack, &stack.node_url(n), &acks, false);
    }
    stack.log("after `down` and `up` every acknowledged write is still there");

    // The `scale` profile adds a storage-only node, which joins by itself as a learner.
    stack.up(&["--profile", "scale"]);
    stack.wait_healthy(&["bcm4"], secs(60));
    wait_until(secs(30), "bcm4 to be a member that is up", || {
        let c = stack.cluster(&stack.proxy_url())?;
        let m = c["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["id"] == 4).cloned())
            .ok_or("bcm4 is not a member yet")?;
        if m["status"] == "up" && m["voter"] == false {
            Ok(())
        } else {
            Err(format!("bcm4: {m}"))
        }
    });
    check_all_present(&stack, &stack.node_url(4), &acks, false);
    stack.log("bcm4 (profile scale) joined as a learner and serves every acknowledged write");

    s3_profile_backs_up_into_garage(&stack);

    // Dropping the stack tears it down, volumes too; check that here.
    let stack = Arc::try_unwrap(stack).unwrap_or_else(|_| panic!("the stack is still shared"));
    let probe = ComposeProbe::of(&stack);
    drop(stack);
    assert!(probe.volumes_gone(), "`down --volumes` left volumes behind");
}

/// HAProxy tells the nodes who the client is, and they believe it from HAProxy
/// alone: a client whose guesses reached bcm1 directly (its made-up
/// X-Forwarded-For ignored there) is the same client through HAProxy, which adds
/// the address it saw; not HAProxy itself, whose limits would be everyone's.
fn haproxy_names_the_client(stack: &ComposeStack) {
    let direct = stack.node_url(1);
    for i in 0..5 {
        let xff = format!("198.51.100.{i}");
        let status = stack
            .login_attempt(&direct, "xff-probe", "wrong-password-here", Some(&xff))
            .unwrap();
        assert_eq!(status, 401, "guess {i} straight to bcm1");
    }
    let status = stack
        .login_attempt(
            &direct,
            "xff-probe",
            "wrong-password-here",
            Some("198.51.100.99"),
        )
        .unwrap();
    assert_eq!(
        status, 429,
        "a 6th guess from the same client straight to bcm1"
    );
    // Through HAProxy, with yet another made-up header: the client is still the
    // one HAProxy saw, already at its limit for that name.
    let status = stack
        .login_attempt(
            &stack.proxy_url(),
            "xff-probe",
            "wrong-password-here",
            Some("203.0.113.1"),
        )
        .unwrap();
    assert_eq!(status, 429, "the same client through HAProxy");
    // And admin is not locked out by it.
    stack.login();
    stack.log("HAProxy names the client in X-Forwarded-For, and only HAProxy is believed");
}

/// HAProxy and every node serve the API over HTTPS only, with the certificate
/// of the stack's own CA (secrets/api_ca_cert): a client that does not trust
/// that CA is refused at the handshake, and plain HTTP gets no HTTP answer.
fn the_api_is_https_only(stack: &ComposeStack) {
    let stranger = reqwest::blocking::Client::builder()
        .timeout(secs(5))
        .no_proxy()
        .build()
        .unwrap();
    for url in [stack.proxy_url(), stack.node_url(1)] {
        let e = stranger
            .get(format!("{url}/healthz"))
            .send()
            .expect_err("a client without the stack's CA was answered");
        let why = bcm_tests::error_chain(&e);
        assert!(why.to_lowercase().contains("certificate"), "{url}: {why}");
        let plain = url.replacen("https://", "http://", 1);
        let answer = stranger.get(format!("{plain}/healthz")).send();
        assert!(
            answer.as_ref().map_or(true, |r| !r.status().is_success()),
            "plain HTTP was served at {plain}: {answer:?}"
        );
    }
    stack.log("the API is HTTPS only, through HAProxy and on each node");
}

/// The `s3` profile: Garage and bcm5, a storage node keeping its chunks in
/// Garage's bucket. With the other nodes keeping none, a backup lands there,
/// verifies, and restores onto another node byte for byte.
fn s3_profile_backs_up_into_garage(stack: &ComposeStack) {
    if !compose::image_exists("bcm-local/garage:2") {
        stack.log("the s3 profile skipped: no garage image (no garage binary to build it from)");
        return;
    }
    stack.up(&["--profile", "scale", "--profile", "s3"]);
    stack.wait_healthy(&["garage", "bcm5"], secs(120));
    let api = stack.proxy_url();
    let call = |method: Method, path: &str, body: Option<Value>| {
        let url = format!("{api}/api/v1{path}");
        let (status, v) = stack
            .send(method.clone(), &url, body.as_ref(), secs(60))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(
            (200..300).contains(&status),
            "{method} {path}: HTTP {status} {v}"
        );
        v
    };
    let storage = call(Method::GET, "/storage", None);
    let bcm5 = storage["items"]
        .as_array()
        .and_then(|s| s.iter().find(|n| n["node_id"] == 5).cloned())
        .unwrap_or_else(|| panic!("no bcm5 in {storage}"));
    assert_eq!(bcm5["backend"], "s3", "{bcm5}");
    assert_eq!(bcm5["reachable"], true, "{bcm5}");
    // Only bcm5 keeps data from here on.
    for n in 1..=3 {
        let roles = json!({"roles": ["manager", "backup-manager"]});
        call(Method::PATCH, &format!("/nodes/{n}"), Some(roles));
    }
    call(Method::PATCH, "/nodes/4", Some(json!({"enabled": false})));
    let plan = call(
        Method::POST,
        "/plans",
        Some(json!({"name": "to-garage", "source_node": 1, "paths": ["/etc/bcm"], "replicas": 1})),
    );
    let backup = call(Method::POST, "/backups", Some(json!({"plan": plan["id"]})));
    let path = format!("/backups/{}", backup["id"]);
    let done = wait_until(secs(120), "the backup into Garage to end", || {
        let b = call(Method::GET, &path, None);
        match b["status"].as_str() {
            Some("pending" | "running") => Err(b.to_string()),
            _ => Ok(b),
        }
    });
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["storage_nodes"], json!([5]), "{done}");
    let verified = call(Method::POST, &format!("{path}/verify"), Some(json!({})));
    assert_eq!(verified["ok"], true, "{verified}");
    let restore = call(
        Method::POST,
        &format!("{path}/restore"),
        Some(json!({"target_node": 2, "target_path": "/tmp/from-garage"})),
    );
    let rpath = format!("/restores/{}", restore["id"]);
    let done = wait_until(secs(120), "the restore from Garage to end", || {
        let r = call(Method::GET, &rpath, None);
        match r["status"].as_str() {
            Some("pending" | "running") => Err(r.to_string()),
            _ => Ok(r),
        }
    });
    assert_eq!(done["status"], "succeeded", "{done}");
    stack.compose_ok(&[
        "exec",
        "-T",
        "bcm2",
        "cmp",
        "/etc/bcm/bcm.toml",
        "/tmp/from-garage/etc/bcm/bcm.toml",
    ]);
    stack.log("the s3 profile: a backup into Garage through bcm5 restored byte for byte on bcm2");
}

/// Looks at a project's volumes after the stack itself is gone.
struct ComposeProbe(String);

impl ComposeProbe {
    fn of(stack: &ComposeStack) -> ComposeProbe {
        ComposeProbe(stack.project().to_string())
    }

    fn volumes_gone(&self) -> bool {
        compose::project_volumes(&self.0).is_empty()
    }
}

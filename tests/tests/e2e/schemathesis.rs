//! schemathesis (the OpenAPI fuzzer) against a real node: every operation of
//! `/api/v1/openapi.json` called with generated requests, valid and invalid; no
//! answer may be a 5xx, nor carry a status code, a content type or a body the
//! document does not describe.
//!
//! scripts/test.sh installs schemathesis into a virtualenv of its own
//! (`~/.cache/bcm-venv`) and names it in `BCM_SCHEMATHESIS`. Without it the
//! test skips, saying so, except under CI, where a missing fuzzer is a failure.
//! `SCHEMATHESIS_SEED` picks the run (default 1), `SCHEMATHESIS_EXAMPLES` the
//! examples per operation (default 100: about 6 500 requests, a minute).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bcm_tests::serde_json::Value;
use bcm_tests::Cluster;

/// The whole run stops here, whatever it still had to do (it takes about a minute).
const DEADLINE: Duration = Duration::from_secs(300);

/// The operations left out, and why: `GET /api/v1/events` is a Server-Sent
/// Events stream, which ends only when its token does, so every call would
/// wait for the request timeout. Everything else is called (tests/schemathesis/
/// hooks.py says how the destructive ones are kept from ending the run).
const EXCLUDED_PATHS: &[&str] = &["/api/v1/events"];

/// Every check schemathesis has: no 5xx; status codes, content types, headers
/// and bodies as documented; schema-valid requests accepted (save the
/// exceptions in tests/schemathesis/schemathesis.toml, each with its reason)
/// and schema-violating ones refused; no route that ignores its token; ...
const CHECKS: &str = "all";

/// schemathesis: `BCM_SCHEMATHESIS`, the virtualenv scripts/test.sh makes, or
/// one on the `PATH`.
fn schemathesis() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("BCM_SCHEMATHESIS").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/bcm-venv/bin/schemathesis")),
        Some(PathBuf::from("schemathesis")),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn schemathesis_finds_nothing_the_document_does_not_say() {
    let Some(st) = schemathesis() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "schemathesis is missing under CI: scripts/test.sh installs it (BCM_SCHEMATHESIS)"
        );
        eprintln!("skipped: schemathesis is not installed (scripts/test.sh installs it)");
        return;
    };
    // One node with role manager only: no backup or restore ever runs, so that
    // generated paths (`/`, `/etc`) are never read or written.
    let c = Cluster::builder()
        .name("schemathesis")
        .voters(1)
        .voter_roles(&["manager"])
        .start();
    let me = c
        .call(1, reqwest::Method::GET, "/api/v1/auth/me", None)
        .unwrap();
    assert_eq!(me.status, 200, "{me}");
    let my_id = me.json()["id"].as_u64().expect("the user's id");
    let api = c.api_url(1);
    let report = c.dir().join("schemathesis.json");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemathesis");
    let hooks = dir.join("hooks.py");

    let mut cmd = Command::new(&st);
    cmd.current_dir(c.dir())
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .env("BCM_API", &api)
        .env("BCM_USER", "admin")
        .env("BCM_PASSWORD", bcm_tests::ADMIN_PASSWORD)
        .env("BCM_USER_ID", my_id.to_string())
        .arg("--no-color")
        .arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{api}/api/v1/openapi.json"))
        .args(["--checks", CHECKS])
        .args([
            "--max-examples",
            &env_or("SCHEMATHESIS_EXAMPLES", 100).to_string(),
        ])
        .args(["--seed", &env_or("SCHEMATHESIS_SEED", 1).to_string()])
        .args(["--workers", "1", "--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .args(["--report", "json", "--report-json-path"])
        .arg(&report);
    for path in EXCLUDED_PATHS {
        cmd.args(["--exclude-path", path]);
    }
    c.log(format!("running {cmd:?}"));
    let started = Instant::now();
    let (status, output) = run_with_deadline(cmd, DEADLINE);
    std::fs::write(c.dir().join("schemathesis.log"), &output).unwrap();
    let took = started.elapsed();
    let summary: String = output
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    c.log(format!("schemathesis took {took:?}: {status}\n{summary}"));
    let figures = std::fs::read(&report)
        .ok()
        .and_then(|b| bcm_tests::serde_json::from_slice::<Value>(&b).ok());
    if status != "exit status: 0" {
        c.keep();
        panic!(
            "schemathesis found something ({status}); its whole output is in {}:\n{output}",
            c.dir().join("schemathesis.log").display()
        );
    }
    // It did test: every operation, thousands of requests, nothing found.
    let f = figures.expect("schemathesis writes its JSON report");
    let (tested, cases, failures) = (
        f["operations"]["tested"].as_u64().unwrap_or(0),
        f["test_cases"]["generated"].as_u64().unwrap_or(0),
        f["test_cases"]["unique_failures"]
            .as_u64()
            .unwrap_or(u64::MAX),
    );
    c.log(format!(
        "schemathesis: {tested} operations, {cases} requests, {failures} failures in {took:?}"
    ));
    assert!(tested >= 40, "only {tested} operations tested: {f}");
    assert!(cases >= 1000, "only {cases} requests: {f}");
    assert_eq!(failures, 0, "{f}");
    // The run kept its token (tests/schemathesis/hooks.py): had it lost it, it
    // would have met only 401s.
    assert_eq!(f["auth"]["reauth_count"], 0, "{f}");
    c.check_processes();
}

/// Runs `cmd` to its end, or kills it at `deadline`: its exit status (as text)
/// and what it printed, stdout and stderr together.
fn run_with_deadline(mut cmd: Command, deadline: Duration) -> (String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start schemathesis");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for schemathesis") {
            break s.to_string();
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break format!("killed after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = reader.join().unwrap() + &err_reader.join().unwrap();
    (status, output)
}

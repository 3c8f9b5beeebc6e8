//! Bad input gets a clear 4xx problem+json answer and changes nothing.

use bcm_tests::serde_json::json;
use bcm_tests::{forged_token, Cluster, Reply, Req, CLUSTER_SECRET};
use reqwest::Method;

use crate::secs;

/// Sends `req`, checks the answer is a problem+json 4xx (with `expect` as the exact
/// status when given), and records a failure instead of panicking at the first one.
fn check(c: &Cluster, failures: &mut Vec<String>, what: &str, req: Req, expect: Option<u16>) {
    let reply: Reply = match c.send(req) {
        Ok(r) => r,
        Err(e) => {
            failures.push(format!("{what}: no answer: {e}"));
            return;
        }
    };
    c.log(format!("{what}: {reply}"));
    if let Some(want) = expect {
        if reply.status != want {
            failures.push(format!("{what}: expected {want}, got {reply}"));
            return;
        }
    }
    if let Err(e) = reply.check_problem() {
        failures.push(format!("{what}: {e}"));
    }
}

#[test]
fn bad_input_gets_a_problem_json_4xx_and_the_cluster_stays_healthy() {
    let c = Cluster::builder().name("bad-input").voters(3).start();
    let leader = c.wait_for_leader();
    let follower = c.followers()[0];
    let token = c.token(leader).unwrap();
    let ok = c
        .put_config(leader, "untouched", &json!("original"))
        .unwrap();
    assert!(ok.is_success(), "{ok}");

    let mut failures = Vec::new();
    for n in [leader, follower] {
        let put = |body: Vec<u8>| {
            c.request(n, Method::PUT, "/api/v1/config/untouched")
                .bearer(&token)
                .header("content-type", "application/json")
                .raw_body(body)
        };
        check(
            &c,
            &mut failures,
            &format!("node {n}: malformed JSON"),
            put(br#"{"value": "#.to_vec()),
            Some(400),
        );
        let mut huge = br#"{"value": ""#.to_vec();
        huge.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
        huge.extend(br#""}"#);
        check(
            &c,
            &mut failures,
            &format!("node {n}: 2 MiB body"),
            put(huge),
            Some(413),
        );
        check(
            &c,
            &mut failures,
            &format!("node {n}: unknown field"),
            put(br#"{"value": 1, "x": 2}"#.to_vec()),
            None,
        );
        check(
            &c,
            &mut failures,
            &format!("node {n}: missing field"),
            put(br#"{"valeu": 1}"#.to_vec()),
            None,
        );
        check(
            &c,
            &mut failures,
            &format!("node {n}: body is an array"),
            put(br#"[1, 2, 3]"#.to_vec()),
            None,
        );
        check(
            &c,
            &mut failures,
            &format!("node {n}: body is a string"),
            put(br#""value""#.to_vec()),
            None,
        );
        check(
            &c,
            &mut failures,
            &format!("node {n}: not UTF-8"),
            put(vec![0xff, 0xfe, 0x00, 0x80]),
            Some(400),
        );

        // Login: wrong types, wrong password, unknown user.
        let login = |body: &str| {
            c.request(n, Method::POST, "/api/v1/auth/login")
                .header("content-type", "application/json")
                .raw_body(body.as_bytes().to_vec())
        };
        check(
            &c,
            &mut failures,
            &format!("node {n}: login with wrong types"),
            login(r#"{"username": 5, "password": true}"#),
            None,
        );
        // A struct's fields as an array are not the object the API takes (serde
        // alone would take them in order; schemathesis found a PATCH of
        // `[null, null]` answered 200).
        check(
            &c,
            &mut failures,
            &format!("node {n}: login as an array of its fields"),
            login(r#"["admin", "e2e-admin-password-123"]"#),
            Some(422),
        );
        check(
            &c,
            &mut failures,
            &format!("node {n}: a change as an array"),
            c.request(n, Method::PATCH, "/api/v1/nodes/1")
                .bearer(&token)
                .header("content-type", "application/json")
                .raw_body(b"[null, null]".to_vec()),
            Some(422),
        );
        check(
            &c,
            &mut failures,
            &format!("node {n}: login with wrong password"),
            login(r#"{"username": "admin", "password": "not-the-password"}"#),
            Some(401),
        );
        check(
            &c,
            &mut failures,
            &format!("node {n}: login as unknown user"),
            login(r#"{"username": "mallory", "password": "e2e-admin-password-123"}"#),
            Some(401),
        );

        // Tokens.
        let get = || c.request(n, Method::GET, "/api/v1/config/untouched");
        let put_ok = || {
            c.request(n, Method::PUT, "/api/v1/config/untouched")
                .json(&json!({"value": "overwritten by an intruder"}))
        };
        check(
            &c,
            &mut failures,
            &format!("node {n}: no token"),
            get(),
            Some(401),
        );
        check(
            &c,
            &mut failures,
            &format!("node {n}: write without token"),
            put_ok(),
            Some(401),
        );
        check(
            &c,
            &mut failures,
            &format!("node {n}: garbage token"),
            get().bearer("not-a-token"),
            Some(401),
        );
        check(
            &c,
            &mut failures,
            &format!("node {n}: forged token"),
            put_ok().bearer(&forged_token(4_000_000_000)),
            Some(401),
        );
        check(
            &c,
            &mut failures,
            &format!("node {n}: expired-looking token"),
            get().bearer(&forged_token(1)),
            Some(401),
        );
        // A real token with its payload altered (signature no longer matches).
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        if parts.len() == 3 {
            parts[1] = bcm_tests::base64url(
                br#"{"sub":"admin","exp":4000000000,"iat":1,"groups":["admin"]}"#,
            );
            check(
                &c,
                &mut failures,
                &format!("node {n}: tampered token"),
                put_ok().bearer(&parts.join(".")),
                Some(401),
            );
        }
        check(
            &c,
            &mut failures,
            &format!("node {n}: wrong auth scheme"),
            get().header("authorization", &format!("Basic {token}")),
            Some(401),
        );

        // The Raft port: garbage with the right secret, anything with a wrong or no secret.
        for route in ["/raft/append", "/raft/vote", "/raft/snapshot"] {
            let rpc = || {
                c.rpc_request(n, Method::POST, route)
                    .header("content-type", "application/octet-stream")
                    .raw_body(vec![
                        0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                    ])
            };
            check(
                &c,
                &mut failures,
                &format!("node {n}: garbage on {route}"),
                rpc().bearer(CLUSTER_SECRET),
                Some(400),
            );
            check(
                &c,
                &mut failures,
                &format!("node {n}: empty body on {route}"),
                c.rpc_request(n, Method::POST, route).bearer(CLUSTER_SECRET),
                Some(400),
            );
            check(
                &c,
                &mut failures,
                &format!("node {n}: wrong secret on {route}"),
                rpc().bearer("wrong-secret-0123456789"),
                Some(401),
            );
            check(
                &c,
                &mut failures,
                &format!("node {n}: no secret on {route}"),
                rpc(),
                Some(401),
            );
        }
    }

    // The Raft append stream and the forward stream on the same port
    // (node/src/cluster/append_stream.rs, forward_stream/): a wrong secret,
    // garbage, an oversized frame are each refused with a reply frame carrying
    // the status HTTP would give, and change nothing. On the forward stream, a
    // write that members may not forward is refused as over HTTP (403).
    let forged = bcm_model::Command::CreateUser {
        name: "mallory".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
        groups: vec!["admin".into()],
        at: 1,
    };
    // A forward request: its id (a varint), then `LeaderOp::Write` (variant 0)
    // and the command.
    let mut forged_request = vec![7u8, 0];
    forged_request.extend(postcard::to_allocvec(&forged).unwrap());
    for n in c.all_nodes() {
        let addr = c.rpc_url(n).trim_start_matches("http://").to_string();
        let garbage = frame(&[0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        let oversized = (64u32 << 20).to_be_bytes().to_vec();
        let secret = CLUSTER_SECRET.as_bytes();
        let wrong: &[u8] = b"wrong-secret-0123456789";
        let cases: [StreamCase; 7] = [
            (Stream::Append, "wrong secret", wrong, vec![], 401),
            (
                Stream::Append,
                "garbage frame",
                secret,
                garbage.clone(),
                400,
            ),
            (
                Stream::Append,
                "oversized frame",
                secret,
                oversized.clone(),
                413,
            ),
            (Stream::Forward, "wrong secret", wrong, vec![], 401),
            (Stream::Forward, "garbage frame", secret, garbage, 400),
            (Stream::Forward, "oversized frame", secret, oversized, 413),
            (
                Stream::Forward,
                "a user write forged as a member's",
                secret,
                frame(&forged_request),
                403,
            ),
        ];
        for (stream, what, secret, then, want) in cases {
            match stream_refusal(&addr, stream, secret, &then) {
                Ok(status) if status == want => c.log(format!(
                    "node {n}: {what} on the {stream:?} stream: {status}"
                )),
                Ok(status) => failures.push(format!(
                    "node {n}: {what} on the {stream:?} stream: expected {want}, got {status}"
                )),
                Err(e) => failures.push(format!("node {n}: {what} on the {stream:?} stream: {e}")),
            }
        }
    }
    let users = c.get(leader, "/api/v1/users").unwrap();
    assert!(!users.body.contains("mallory"), "{users}");

    // Nothing crashed, nothing changed, and the cluster still works.
    c.check_processes();
    for n in c.all_nodes() {
        let h = c.get(n, "/healthz").unwrap();
        assert_eq!(h.status, 200, "node {n} /healthz: {h}");
        assert_eq!(
            c.config_value(n, "untouched").unwrap(),
            Some(json!("original")),
            "node {n}: bad input changed `untouched`"
        );
    }
    c.wait_for_agreed_leader(secs(10));
    let r = c.put_config(follower, "still-works", &json!(true)).unwrap();
    assert!(r.is_success(), "a good write after all that: {r}");

    assert!(
        failures.is_empty(),
        "{} bad inputs were not answered as expected:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A frame of a stream: its length (u32, big-endian), then its bytes.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A bad input on a stream: which stream, what it is, the secret shown, the
/// bytes sent after it, the status expected.
type StreamCase<'a> = (Stream, &'a str, &'a [u8], Vec<u8>, u16);

/// The framed protocols of the internal listener.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Append,
    Forward,
}

/// Opens a plaintext stream to `addr` showing `secret`, sends `then`, and
/// returns the status of the refusal the node answers with. The append
/// stream's is postcard `Reply::Refused { status, detail }` (variant 1, a
/// varint, a string); the forward stream first answers `Reply::Open` (variant
/// 0) when the secret is right, and its refusal is `Reply::Refused { id,
/// status, detail }` (variant 2, an optional id, a varint, a string).
fn stream_refusal(addr: &str, stream: Stream, secret: &[u8], then: &[u8]) -> Result<u16, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let preface: &[u8] = match stream {
        Stream::Append => b"BCM-APPEND/1\n",
        Stream::Forward => b"BCM-FORWARD/1\n",
    };
    let mut hello = preface.to_vec();
    hello.extend_from_slice(&(secret.len() as u16).to_be_bytes());
    hello.extend_from_slice(secret);
    hello.extend_from_slice(then);
    s.write_all(&hello).map_err(|e| format!("send: {e}"))?;
    let mut read_frame = || -> Result<Vec<u8>, String> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)
            .map_err(|e| format!("no reply frame: {e}"))?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body)
            .map_err(|e| format!("a short reply frame: {e}"))?;
        Ok(body)
    };
    let mut body = read_frame()?;
    let status_at = match stream {
        Stream::Append if body.first() == Some(&1) => 1,
        Stream::Forward => {
            if body == [0] {
                // Open: the refusal comes next.
                body = read_frame()?;
            }
            match body.get(..2) {
                Some([2, 0]) => 2,
                // Some(id): a varint, up to its last byte (high bit clear).
                Some([2, 1]) => match body[2..].iter().position(|b| b & 0x80 == 0) {
                    Some(last) => 2 + last + 1,
                    None => return Err(format!("a refusal with no whole id: {body:?}")),
                },
                _ => return Err(format!("not a refusal: {body:?}")),
            }
        }
        _ => return Err(format!("not a refusal: {body:?}")),
    };
    // The status: a LEB128 varint.
    let (mut status, mut shift) = (0u32, 0);
    for b in &body[status_at..] {
        status |= u32::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    u16::try_from(status).map_err(|_| format!("a status of {status}"))
}

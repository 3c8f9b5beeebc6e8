//! The OpenAPI document at `/api/v1/openapi.json`: it lists every route, every route
//! it does not mark public refuses a request without a token, the permission matrix
//! (access.rs) tries every route it lists, and the answers have the documented shape.

use std::collections::BTreeSet;

use bcm_tests::serde_json::{json, Value};
use bcm_tests::{Cluster, Reply};
use reqwest::Method;

use crate::access::routes;
use crate::{assert_no_failures, PASSWORD};

/// The routes anyone may call: logging in, the document itself and the probes.
const PUBLIC: &[&str] = &[
    "POST /api/v1/auth/login",
    "GET /api/v1/openapi.json",
    // The cluster CA certificates: public, as certificates are.
    "GET /api/v1/cluster/ca",
    "GET /healthz",
    "GET /readyz",
    "GET /leader",
    "GET /metrics",
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

/// Every operation of the document: (method, path template, operation).
fn operations(doc: &Value) -> Vec<(Method, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if let Some(op) = item.get(*m) {
                let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
                out.push((method, path.clone(), op.clone()));
            }
        }
    }
    out
}

/// Whether the operation opts out of the document's bearer requirement.
fn is_public(op: &Value) -> bool {
    op.get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().all(|r| r == &json!({})))
}

/// The template with its `{param}`s filled in with harmless values.
fn concrete(template: &str) -> String {
    template
        .replace("{id}", "4242")
        .replace("{name}", "admin")
        .replace("{key}", "openapi.probe")
}

/// Whether `path` is an instance of `template` (`{key}` may span slashes).
fn matches(template: &str, path: &str) -> bool {
    fn go(t: &[&str], p: &[&str]) -> bool {
        match (t.first(), p.first()) {
            (None, None) => true,
            (Some(&"{key}"), Some(_)) => (1..=p.len()).any(|n| go(&t[1..], &p[n..])),
            (Some(seg), Some(ps)) if seg.starts_with('{') || seg == ps => go(&t[1..], &p[1..]),
            _ => false,
        }
    }
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('?').next().unwrap().split('/').collect();
    go(&t, &p)
}

fn fetch_doc(c: &Cluster, node: u64) -> Value {
    let r = c.get(node, "/api/v1/openapi.json").unwrap();
    assert_eq!(r.status, 200, "the document needs no token: {r}");
    assert!(r.content_type().starts_with("application/json"), "{r}");
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not an OpenAPI 3 document: {}",
        &r.body[..r.body.len().min(200)]
    );
    doc
}

#[test]
fn every_documented_route_but_the_public_ones_answers_401_without_a_token() {
    let c = Cluster::builder().name("openapi-401").voters(3).start();
    let f = c.followers()[0];
    let doc = fetch_doc(&c, f);
    let ops = operations(&doc);
    assert!(ops.len() >= 40, "only {} operations documented", ops.len());

    // Exactly the public routes opt out of the token.
    let public: BTreeSet<String> = ops
        .iter()
        .filter(|(_, _, op)| is_public(op))
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    let expected: BTreeSet<String> = PUBLIC.iter().map(|s| s.to_string()).collect();
    assert_eq!(public, expected, "the routes the document marks public");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "the document names the bearer scheme"
    );

    // Every other route, called through a follower with no token (and a JSON body
    // where it takes one), is refused with 401 and a problem, and documents that 401.
    let mut failures = Vec::new();
    for (method, template, op) in &ops {
        if is_public(op) {
            continue;
        }
        if op["responses"].get("401").is_none() {
            failures.push(format!("{method} {template}: no 401 documented"));
        }
        let mut req = c.request(f, method.clone(), &concrete(template));
        if op.get("requestBody").is_some() {
            req = req.json(&json!({}));
        }
        match c.send_no_stream(req) {
            Ok(r) if r.status == 401 => {
                if let Err(e) = r.check_problem() {
                    failures.push(format!("{method} {template}: {e}"));
                }
                if r.headers.get("www-authenticate").is_none() {
                    failures.push(format!("{method} {template}: 401 without WWW-Authenticate"));
                }
            }
            Ok(r) => failures.push(format!("{method} {template}: {r}")),
            Err(e) => failures.push(format!("{method} {template}: {e}")),
        }
    }
    assert_no_failures(
        &failures,
        "documented routes did not refuse a request without a token",
    );

    // The public routes answer without one.
    for p in PUBLIC {
        let (m, path) = p.split_once(' ').unwrap();
        if m == "GET" && path != "/leader" {
            let r = c.get(f, path).unwrap();
            // A plaintext cluster has no CA to show: 404, without a token too.
            let ok = r.status == 200 || (path == "/api/v1/cluster/ca" && r.status == 404);
            assert!(ok, "{p} on a follower: {r}");
        }
    }

    // The permission matrix (access.rs) tries every documented non-public route, and
    // nothing the document lacks.
    let tried = routes(1, 1, "viewer", "x", 99);
    for (method, template, op) in &ops {
        if !is_public(op)
            && !tried
                .iter()
                .any(|r| r.method == *method && matches(template, &r.path))
        {
            failures.push(format!("{method} {template}: not in the permission matrix"));
        }
    }
    for r in &tried {
        if !ops
            .iter()
            .any(|(m, t, _)| *m == r.method && matches(t, &r.path))
        {
            failures.push(format!("{} {}: tried but not documented", r.method, r.path));
        }
    }
    assert_no_failures(
        &failures,
        "routes documented but not tried, or tried but not documented",
    );
}

/// The properties a schema (or `$ref`) lists.
fn properties<'a>(doc: &'a Value, schema: &'a Value) -> &'a serde_json::Map<String, Value> {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    };
    schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema without properties: {schema}"))
}

/// Checks that `body` has exactly the fields the documented 2xx schema lists, one
/// level into `items` for pages.
fn check_shape(
    doc: &Value,
    what: &str,
    op: &Value,
    status: u16,
    body: &Value,
) -> Result<(), String> {
    let schema = &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
    if schema.is_null() {
        return Err(format!("{what}: no JSON schema documented for {status}"));
    }
    let props = properties(doc, schema);
    same_fields(what, props, body)?;
    if let (Some(items), Some(first)) = (props.get("items"), body["items"].get(0)) {
        same_fields(
            &format!("{what} items"),
            properties(doc, &items["items"]),
            first,
        )?;
    }
    Ok(())
}

/// Checks that the JSON object `body` has exactly the fields `props` documents.
fn same_fields(
    what: &str,
    props: &serde_json::Map<String, Value>,
    body: &Value,
) -> Result<(), String> {
    let want: BTreeSet<&String> = props.keys().collect();
    let got: BTreeSet<&String> = body
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    if want != got {
        return Err(format!(
            "{what}: documented fields {want:?}, answered {got:?}"
        ));
    }
    Ok(())
}

#[test]
fn the_answers_have_the_documented_shape() {
    let c = Cluster::builder().name("openapi-shapes").voters(3).start();
    let n = c.leader().unwrap();
    let doc = fetch_doc(&c, n);
    let op = |method: &str, template: &str| doc["paths"][template][method].clone();

    // Something of every kind, made through the API.
    let call = |method: Method, path: &str, body: Option<Value>| -> Reply {
        let r = c.call(n, method.clone(), path, body.as_ref()).unwrap();
        assert!(r.is_success(), "{method} {path}: {r}");
        r
    };
    let mut failures = Vec::new();
    let mut check = |m: &str, template: &str, r: &Reply| {
        if let Err(e) = check_shape(
            &doc,
            &format!("{m} {template}"),
            &op(m, template),
            r.status,
            &r.json(),
        ) {
            failures.push(e);
        }
    };
    let r = call(
        Method::PUT,
        "/api/v1/config/a.b",
        Some(json!({"value": {"x": 1}})),
    );
    check("put", "/api/v1/config/{key}", &r);
    let r = call(
        Method::POST,
        "/api/v1/users",
        Some(json!({"name": "shape", "password": PASSWORD, "groups": ["viewer"]})),
    );
    check("post", "/api/v1/users", &r);
    let user = r.json()["id"].as_u64().unwrap();
    let r = call(
        Method::POST,
        "/api/v1/groups",
        Some(json!({"name": "shapers", "permissions": ["config.read"]})),
    );
    check("post", "/api/v1/groups", &r);
    let src = c.dir().join("etc");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hosts"), b"127.0.0.1 localhost\n").unwrap();
    let r = call(
        Method::POST,
        "/api/v1/plans",
        Some(json!({"name": "etc", "source_node": 1, "paths": [src], "schedule": "0 3 * * *"})),
    );
    check("post", "/api/v1/plans", &r);
    let plan = r.json()["id"].as_u64().unwrap();
    let r = call(Method::POST, "/api/v1/backups", Some(json!({"plan": plan})));
    check("post", "/api/v1/backups", &r);
    let backup = r.json()["id"].as_u64().unwrap();
    let r = call(Method::POST, "/api/v1/cluster/snapshot", None);
    check("post", "/api/v1/cluster/snapshot", &r);
    let r = c.login_with(n, "admin", bcm_tests::ADMIN_PASSWORD).unwrap();
    check("post", "/api/v1/auth/login", &r);

    for (template, path) in [
        ("/api/v1/auth/me", "/api/v1/auth/me".to_string()),
        ("/api/v1/cluster", "/api/v1/cluster".into()),
        ("/api/v1/nodes", "/api/v1/nodes".into()),
        ("/api/v1/nodes/{id}", "/api/v1/nodes/1".into()),
        ("/api/v1/config", "/api/v1/config".into()),
        ("/api/v1/config/{key}", "/api/v1/config/a.b".into()),
        ("/api/v1/users", "/api/v1/users".into()),
        ("/api/v1/users/{id}", format!("/api/v1/users/{user}")),
        ("/api/v1/groups", "/api/v1/groups".into()),
        ("/api/v1/groups/{name}", "/api/v1/groups/shapers".into()),
        ("/api/v1/plans", "/api/v1/plans".into()),
        ("/api/v1/plans/{id}", format!("/api/v1/plans/{plan}")),
        ("/api/v1/backups", "/api/v1/backups".into()),
        ("/api/v1/backups/{id}", format!("/api/v1/backups/{backup}")),
        ("/api/v1/restores", "/api/v1/restores".into()),
    ] {
        let r = call(Method::GET, &path, None);
        check("get", template, &r);
    }
    for path in ["/healthz", "/leader"] {
        let r = c.get(n, path).unwrap();
        check("get", path, &r);
    }
    let r = c
        .call(n, Method::DELETE, "/api/v1/config/a.b", None)
        .unwrap();
    check("delete", "/api/v1/config/{key}", &r);
    assert_no_failures(&failures, "answers without their documented shape");
}

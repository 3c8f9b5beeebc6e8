//! The OpenAPI 3 document served at `/api/v1/openapi.json`.
//!
//! Each handler carries its own `#[utoipa::path]` description (route, parameters,
//! body, its own answers), and `documented_routes` in `api/mod.rs` registers handler
//! and description together. `finish` then adds what every route shares, the same
//! way the code does: the bearer requirement with its 401 and 403, 503 when no
//! leader is known, 400 for an id that is not one and 404 for what does not
//! exist on every route of one item, 400 for a query parameter or header that is
//! not one, 409 and 507 on every write, and the body errors of every route that
//! takes JSON.

use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi as _};

use crate::net::problem::Problem;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "bcm",
        description = "The admin API of bcm, the Backup Cluster Manager. Every node \
            serves it; writes and `?consistency=linearizable` reads are forwarded to \
            the Raft leader. Errors are `application/problem+json` (RFC 9457).",
    ),
    components(schemas(Problem)),
    security(("bearer" = [])),
    modifiers(&BearerScheme),
    tags(
        (name = "health", description = "Unauthenticated probes for load balancers and monitoring"),
        (name = "auth", description = "Logging in"),
        (name = "cluster", description = "The Raft group, its leader and members"),
        (name = "nodes", description = "The node registry and membership"),
        (name = "config", description = "Cluster-wide settings"),
        (name = "users", description = "User accounts"),
        (name = "groups", description = "Groups and their permissions"),
        (name = "plans", description = "Backup plans"),
        (name = "backups", description = "Taken backups and restores"),
        (name = "storage", description = "Storage nodes: room, use, what they hold"),
        (name = "events", description = "Server-Sent Events"),
        (name = "audit", description = "The audit log: who did what, when, from where"),
    )
)]
struct Base;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("a token from POST /api/v1/auth/login"))
                    .build(),
            ),
        );
    }
}

/// The document's frame: info, tags, the `Problem` schema, the bearer scheme.
pub fn base() -> OpenApi {
    Base::openapi()
}

/// Whether an operation opted out of the bearer requirement (`security(())`).
fn is_public(op: &Operation) -> bool {
    op.security
        .as_ref()
        .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()))
}

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build()
}

fn add_if_absent(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| problem(description).into());
}

/// Adds the answers every route shares and turns axum's wildcard `{*key}` into an
/// OpenAPI path parameter `{key}`.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    doc.paths.add_path_operation(
        "/api/v1/openapi.json",
        vec![HttpMethod::Get],
        OperationBuilder::new()
            .summary(Some("This document"))
            .tag("health")
            .securities(Some([SecurityRequirement::default()]))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("the OpenAPI 3 document of every route")
                    .content("application/json", Content::new(None::<Ref>))
                    .build(),
            )
            .build(),
    );
    let paths = std::mem::take(&mut doc.paths.paths);
    for (path, mut item) in paths {
        let api = path.starts_with("/api/v1/");
        for (op, is_write) in [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ]
        .into_iter()
        .filter_map(|(op, w)| op.as_mut().map(|op| (op, w && api)))
        {
            if !is_public(op) {
                add_if_absent(
                    op,
                    "401",
                    "no token, a bad or expired one, or its user is disabled",
                );
                add_if_absent(op, "403", "the user's groups lack this route's permission");
            }
            if api {
                add_if_absent(
                    op,
                    "503",
                    "no leader known within a few seconds, or the node left the cluster (Retry-After)",
                );
            }
            if path.contains("{id}") {
                add_if_absent(op, "400", "the id is not a positive integer");
            }
            let takes = |place: ParameterIn| {
                op.parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place))
            };
            if takes(ParameterIn::Query) || takes(ParameterIn::Header) {
                add_if_absent(
                    op,
                    "400",
                    "a query parameter or header that is not one of the route's, or not of its type",
                );
            }
            if path.contains("/{") {
                add_if_absent(op, "404", "no such item");
            }
            if is_write {
                add_if_absent(
                    op,
                    "409",
                    "refused: it conflicts with the current state (the route's description says when)",
                );
                add_if_absent(
                    op,
                    "507",
                    "the leader's data disk is full, or a quota on the replicated state is reached (`quota` names it)",
                );
            }
            if op.request_body.is_some() {
                add_if_absent(op, "400", "the body is not JSON");
                add_if_absent(op, "413", "the body is larger than 1 MiB");
                add_if_absent(op, "415", "the content type is not application/json");
                add_if_absent(
                    op,
                    "422",
                    "a field is missing, unknown or invalid (`field` names it)",
                );
            }
        }
        doc.paths.paths.insert(path.replace("{*", "{"), item);
    }
    doc
}

/// The document as served: [`finish`]ed, then its integers made exact. utoipa
/// writes an unsigned integer as `int64` (or `int32`) with `minimum: 0`, which
/// says that 2^63 is not one while the server takes it, and gives no upper
/// bound at all for a `usize`; each gets its format (`uint64`, `uint32`) and
/// its maximum. A parameter that may be absent is not `null` either (a query
/// string or a header has no null).
pub fn served(doc: OpenApi) -> serde_json::Value {
    let mut v = serde_json::to_value(doc).expect("the OpenAPI document is JSON");
    exact_integers(&mut v);
    if let Some(paths) = v.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for param in paths
            .values_mut()
            .filter_map(|item| item.as_object_mut())
            .flat_map(|item| item.values_mut())
            .filter_map(|op| op.get_mut("parameters").and_then(|p| p.as_array_mut()))
            .flatten()
        {
            if let Some(types) = param
                .pointer_mut("/schema/type")
                .and_then(|t| t.as_array_mut())
            {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    param["schema"]["type"] = only;
                }
            }
        }
    }
    v
}

fn exact_integers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(o) => {
            let unsigned = o.get("type").and_then(Value::as_str) == Some("integer")
                && o.get("minimum")
                    .and_then(Value::as_f64)
                    .is_some_and(|m| m >= 0.0);
            if unsigned {
                let max = match o.get("format").and_then(Value::as_str) {
                    Some("int32") => {
                        o.insert("format".into(), "uint32".into());
                        u64::from(u32::MAX)
                    }
                    _ => {
                        o.insert("format".into(), "uint64".into());
                        u64::MAX
                    }
                };
                o.entry("maximum").or_insert(max.into());
            }
            o.values_mut().for_each(exact_integers);
        }
        Value::Array(a) => a.iter_mut().for_each(exact_integers),
        _ => {}
    }
}

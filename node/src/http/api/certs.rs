//! `/api/v1/cluster/ca` and `/api/v1/cluster/certs`: the cluster CA, each
//! member's certificate, and rotation.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bcm_api::{CertsView, Problem as ProblemView, RotateCerts, RotateStarted};

use super::{ok, Answer, ApiJson, ClusterRead, ClusterWrite, Ctx};
use crate::http::App;
use crate::net::problem::Problem;
use crate::service::certs;

/// The cluster CA certificates every node trusts (PEM; two during a rotation),
/// to check a node's certificate with. Public: certificates are not secrets.
#[utoipa::path(get, path = "/cluster/ca", tag = "cluster", security(()),
    responses(
        (status = 200, description = "the trusted CA certificates", body = String, content_type = "application/x-pem-file"),
        (status = 404, description = "the cluster talks plaintext inside: it has no CA", body = ProblemView, content_type = "application/problem+json"),
    ))]
pub async fn get_ca(State(app): State<App>) -> Response {
    match certs::ca_pem(&app) {
        Some(pem) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            pem,
        )
            .into_response(),
        None => Problem::new(
            StatusCode::NOT_FOUND,
            "this cluster has no CA: its internal traffic is plaintext (http:// rpc addresses)",
        )
        .into_response(),
    }
}

/// The CAs and every member's certificate. Permission `cluster.read`.
#[utoipa::path(get, path = "/cluster/certs", tag = "cluster",
    responses((status = 200, description = "the cluster's certificates", body = CertsView)))]
pub async fn status(ctx: Ctx<ClusterRead>) -> Answer {
    ok(certs::view(&ctx).await)
}

/// Renews every node's certificate now, or (`ca`) rotates the CA with an
/// overlap during which the old one stays trusted. Permission `cluster.write`.
#[utoipa::path(post, path = "/cluster/certs/rotate", tag = "cluster", request_body = RotateCerts,
    responses(
        (status = 200, description = "rotation under way", body = RotateStarted),
        (status = 422, description = "`overlap_secs` without `ca`", body = ProblemView, content_type = "application/problem+json"),
        (status = 409, description = "the cluster has no certificates (plaintext)", body = ProblemView, content_type = "application/problem+json"),
    ))]
pub async fn rotate(ctx: Ctx<ClusterWrite>, ApiJson(body): ApiJson<RotateCerts>) -> Answer {
    ok(certs::rotate(&ctx, &ctx.who, body).await?)
}

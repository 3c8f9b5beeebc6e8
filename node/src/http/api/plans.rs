//! `/api/v1/plans`: what to back up, when, and how many to keep (the rules are the
//! service layer's, service/plans.rs).

use axum::extract::Path;
use bcm_api::{Page, PlanBody, PlanFilter, PlanPatch, PlanView, ReadParams, Window};

use super::{created, ok, path_id, Answer, ApiJson, Ctx, Edit, ListQuery, PlansRead, PlansWrite};
use crate::service::{self, plans};

/// Plans, searched and filtered. Permission `plans.read`.
#[utoipa::path(get, path = "/plans", tag = "plans", params(PlanFilter, Window, ReadParams), responses((status = 200, description = "one page of matching plans", body = Page<PlanView>)))]
pub async fn list(ctx: Ctx<PlansRead>, q: ListQuery<PlanFilter>) -> Answer {
    service::consistent(&ctx, q.consistency.as_deref()).await?;
    let plans = plans::list(&ctx, &q.filter);
    ok(q.window.page(plans.iter().map(PlanView::from)))
}

/// One plan. Permission `plans.read`.
#[utoipa::path(get, path = "/plans/{id}", tag = "plans", params(("id" = u64, Path, minimum = 1, description = "plan id")), responses((status = 200, description = "the plan", body = PlanView)))]
pub async fn get_one(ctx: Ctx<PlansRead>, Path(id): Path<String>) -> Answer {
    ok(PlanView::from(&plans::get(&ctx, path_id("plan", &id)?)?))
}

/// Create a plan (409 when a plan of that name exists, in any case). Permission
/// `plans.write`.
#[utoipa::path(post, path = "/plans", tag = "plans", request_body = PlanBody, responses((status = 201, description = "created", body = PlanView)))]
pub async fn create(ctx: Ctx<PlansWrite>, ApiJson(body): ApiJson<PlanBody>) -> Answer {
    created(PlanView::from(&plans::create(&ctx, &ctx.who, body).await?))
}

/// Change a plan: any subset of its fields, validated as a whole (409 when another
/// plan has the new name). Permission `plans.write`.
#[utoipa::path(patch, path = "/plans/{id}", tag = "plans", params(("id" = u64, Path, minimum = 1, description = "plan id")), request_body = PlanPatch, responses((status = 200, description = "the plan as changed", body = PlanView)))]
pub async fn update(ctx: Ctx<PlansWrite>, Edit(id, patch): Edit<PlanPatch>) -> Answer {
    ok(PlanView::from(
        &plans::update(&ctx, &ctx.who, path_id("plan", &id)?, patch).await?,
    ))
}

/// Delete a plan (its backups stay in the catalog). Permission `plans.write`.
#[utoipa::path(delete, path = "/plans/{id}", tag = "plans", params(("id" = u64, Path, minimum = 1, description = "plan id")), responses((status = 200, description = "the deleted plan", body = PlanView)))]
pub async fn remove(ctx: Ctx<PlansWrite>, Path(id): Path<String>) -> Answer {
    ok(PlanView::from(
        &plans::delete(&ctx, &ctx.who, path_id("plan", &id)?).await?,
    ))
}

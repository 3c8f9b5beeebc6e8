//! `/api/v1/backups` and `/api/v1/restores`: the catalog of backups taken (or under
//! way) and of restores (the rules are the service layer's, service/backups.rs).

use axum::extract::Path;
use bcm_api::{
    BackupFilter, BackupView, FileView, FilesQuery, NewBackup, NewRestore, Page, ReadParams,
    RestoreFilter, RestoreView, VerifyView, Window,
};

use super::{
    accepted, ok, path_id, Answer, ApiJson, BackupsRead, BackupsWrite, Ctx, Edit, ListQuery,
    RestoresRead, RestoresWrite,
};
use crate::service::{self, backup_data, backups};

/// Backups, newest first (400 for an unknown `status`). Permission `backups.read`.
#[utoipa::path(get, path = "/backups", tag = "backups", params(BackupFilter, Window, ReadParams), responses((status = 200, description = "one page of matching backups", body = Page<BackupView>)))]
pub async fn list(ctx: Ctx<BackupsRead>, q: ListQuery<BackupFilter>) -> Answer {
    backups::parse_status(q.filter.status.as_deref())?;
    service::consistent(&ctx, q.consistency.as_deref()).await?;
    let backups = backups::list(&ctx, &q.filter)?;
    ok(q.window.page(backups.iter().map(BackupView::from)))
}

/// One backup. Permission `backups.read`.
#[utoipa::path(get, path = "/backups/{id}", tag = "backups", params(("id" = u64, Path, minimum = 1, description = "backup id")), responses((status = 200, description = "the backup", body = BackupView)))]
pub async fn get_one(ctx: Ctx<BackupsRead>, Path(id): Path<String>) -> Answer {
    ok(BackupView::from(&backups::get(
        &ctx,
        path_id("backup", &id)?,
    )?))
}

/// Start a backup now: recorded as `pending` for the backup manager (422 for an
/// unknown plan or node, bad paths, or neither form). Permission `backups.write`.
#[utoipa::path(post, path = "/backups", tag = "backups", request_body = NewBackup, responses((status = 202, description = "recorded, pending", body = BackupView)))]
pub async fn create(ctx: Ctx<BackupsWrite>, ApiJson(body): ApiJson<NewBackup>) -> Answer {
    accepted(BackupView::from(
        &backups::start(&ctx, &ctx.who, body).await?,
    ))
}

/// Delete a backup (409 while it runs or is being restored). Permission
/// `backups.write`.
#[utoipa::path(delete, path = "/backups/{id}", tag = "backups", params(("id" = u64, Path, minimum = 1, description = "backup id")), responses((status = 200, description = "the deleted backup", body = BackupView)))]
pub async fn remove(ctx: Ctx<BackupsWrite>, Path(id): Path<String>) -> Answer {
    ok(BackupView::from(
        &backups::delete(&ctx, &ctx.who, path_id("backup", &id)?).await?,
    ))
}

/// Restore a succeeded backup onto a node (409 unless it succeeded). Permission
/// `restores.write`.
#[utoipa::path(post, path = "/backups/{id}/restore", tag = "backups", params(("id" = u64, Path, minimum = 1, description = "backup id")), request_body = NewRestore, responses((status = 202, description = "recorded, pending", body = RestoreView)))]
pub async fn restore(ctx: Ctx<RestoresWrite>, Edit(id, body): Edit<NewRestore>) -> Answer {
    let backup = path_id("backup", &id)?;
    accepted(RestoreView::from(
        &backups::restore_to(&ctx, &ctx.who, backup, body).await?,
    ))
}

/// The tree of a succeeded backup: what is directly in `path` (or below it, with
/// `recursive`; the backup's own paths without `path`), read from a storage node
/// holding it (404 for a path it does not hold, 409 unless it succeeded, 503
/// when no holder answers). Permission `backups.read`.
#[utoipa::path(get, path = "/backups/{id}/files", tag = "backups", params(("id" = u64, Path, minimum = 1, description = "backup id"), FilesQuery, Window), responses((status = 200, description = "one page of the backup's entries, in walk order", body = Page<FileView>)))]
pub async fn files(
    ctx: Ctx<BackupsRead>,
    Path(id): Path<String>,
    q: ListQuery<FilesQuery>,
) -> Answer {
    let id = path_id("backup", &id)?;
    let files = backup_data::files(&ctx, id, &q.filter).await?;
    ok(q.window.page(files.into_iter()))
}

/// Check every replica of a succeeded backup: each storage node holding it
/// reads back and hashes every chunk; a replica that lacks some is repaired
/// from a whole one, one on a node that is down is re-created on another
/// storage node (409 unless it succeeded). Permission `backups.write`.
#[utoipa::path(post, path = "/backups/{id}/verify", tag = "backups", params(("id" = u64, Path, minimum = 1, description = "backup id")), responses((status = 202, description = "how every replica fared (answered once the check and the repairs are done); `ok` when all are whole now", body = VerifyView)))]
pub async fn verify(ctx: Ctx<BackupsWrite>, Path(id): Path<String>) -> Answer {
    accepted(backup_data::verify(&ctx, &ctx.who, path_id("backup", &id)?).await?)
}

/// Cancel a pending or running backup (409 once it ended). Permission
/// `backups.write`.
#[utoipa::path(post, path = "/backups/{id}/cancel", tag = "backups", params(("id" = u64, Path, minimum = 1, description = "backup id")), responses((status = 200, description = "the backup, cancelled", body = BackupView)))]
pub async fn cancel(ctx: Ctx<BackupsWrite>, Path(id): Path<String>) -> Answer {
    ok(BackupView::from(
        &backups::cancel(&ctx, &ctx.who, path_id("backup", &id)?).await?,
    ))
}

/// Cancel a pending or running restore (409 once it ended). Permission
/// `restores.write`.
#[utoipa::path(post, path = "/restores/{id}/cancel", tag = "backups", params(("id" = u64, Path, minimum = 1, description = "restore id")), responses((status = 200, description = "the restore, cancelled", body = RestoreView)))]
pub async fn cancel_restore(ctx: Ctx<RestoresWrite>, Path(id): Path<String>) -> Answer {
    ok(RestoreView::from(
        &backups::cancel_restore(&ctx, &ctx.who, path_id("restore", &id)?).await?,
    ))
}

/// Restores, newest first (400 for an unknown `status`). Permission
/// `restores.read`.
#[utoipa::path(get, path = "/restores", tag = "backups", params(RestoreFilter, Window, ReadParams), responses((status = 200, description = "one page of matching restores", body = Page<RestoreView>)))]
pub async fn list_restores(ctx: Ctx<RestoresRead>, q: ListQuery<RestoreFilter>) -> Answer {
    backups::parse_status(q.filter.status.as_deref())?;
    service::consistent(&ctx, q.consistency.as_deref()).await?;
    let restores = backups::restores(&ctx, &q.filter)?;
    ok(q.window.page(restores.iter().map(RestoreView::from)))
}

/// One restore. Permission `restores.read`.
#[utoipa::path(get, path = "/restores/{id}", tag = "backups", params(("id" = u64, Path, minimum = 1, description = "restore id")), responses((status = 200, description = "the restore", body = RestoreView)))]
pub async fn get_restore(ctx: Ctx<RestoresRead>, Path(id): Path<String>) -> Answer {
    ok(RestoreView::from(&backups::get_restore(
        &ctx,
        path_id("restore", &id)?,
    )?))
}

//! `/users` and `/users/{id}`: list, search and filter, create, enable, disable,
//! change groups and password, remove.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bcm_api::{NewUser, UserPatch};
use bcm_web_ui::model::{Group, List, User};
use bcm_web_ui::pages::{Listing, UserPage, UsersPage};
use bcm_web_ui::{Chrome, Draft};

use super::session::Posted;
use super::{changed, created, done, seg, DetailPage, ListPage, Session, Ui, UiError, UiState};

async fn group_names(ui: &Ui, s: &Session) -> Vec<String> {
    ui.get::<List<Group>>(s, "/api/v1/groups?limit=1000")
        .await
        .map(|l| l.items.into_iter().map(|g| g.name).collect())
        .unwrap_or_default()
}

impl ListPage for UsersPage {
    type Item = User;
    const API: &'static str = "/api/v1/users";

    async fn build(ui: &Ui, s: &Session, chrome: Chrome, listing: Listing<User>) -> Self {
        UsersPage {
            chrome,
            listing,
            groups: group_names(ui, s).await,
        }
    }
}

impl DetailPage for UserPage {
    type List = UsersPage;

    fn title(user: &User) -> String {
        format!("User {}", user.name)
    }

    async fn build(ui: &Ui, s: &Session, chrome: Chrome, user: User, _: Option<Draft>) -> Self {
        UserPage {
            chrome,
            user,
            groups: group_names(ui, s).await,
        }
    }
}

pub async fn create(State(ui): State<UiState>, p: Posted) -> Response {
    let f = &p.form;
    let user = NewUser {
        name: f.get("name").into(),
        password: f.get("password").into(),
        groups: f.all("groups"),
    };
    let result = ui.send(&p.s, Method::POST, UsersPage::API, &user).await;
    let result = result.map(|v| {
        done(
            &format!("/users/{}", v["id"]),
            format!("User {} created.", user.name),
        )
    });
    created::<UsersPage>(&ui, &p, result).await
}

/// The change a button of the user's page asks for, and what to say once it is made.
fn patch_for(f: &Draft) -> Result<(UserPatch, &'static str), UiError> {
    let mut patch = UserPatch::default();
    let message = match f.get("op") {
        "enable" => {
            patch.enabled = Some(true);
            "User enabled."
        }
        "disable" => {
            patch.enabled = Some(false);
            "User disabled: its sessions have ended."
        }
        "groups" => {
            patch.groups = Some(f.all("groups"));
            "Groups saved."
        }
        "password" => {
            patch.password = Some(f.get("password").into());
            "Password set."
        }
        other => {
            let why = format!("unknown action {other:?}");
            return Err(UiError::new(StatusCode::BAD_REQUEST, why));
        }
    };
    Ok((patch, message))
}

pub async fn change(State(ui): State<UiState>, Path(id): Path<String>, p: Posted) -> Response {
    let uri = UserPage::api_uri(&id);
    let result = if p.form.get("op") == "delete" {
        ui.delete(&p.s, &uri)
            .await
            .map(|_| done("/users", "User removed."))
    } else {
        match patch_for(&p.form) {
            Ok((patch, message)) => ui
                .send(&p.s, Method::PATCH, &uri, &patch)
                .await
                .map(|_| done(&format!("/users/{}", seg(&id)), message)),
            Err(e) => Err(e),
        }
    };
    changed::<UserPage>(&ui, &p, &id, result).await
}

//! `/groups` and `/groups/{name}`: predefined and custom groups and their permissions.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use bcm_api::{GroupPatch, NewGroup};
use bcm_raft_store::PERMISSIONS;
use bcm_web_ui::model::Group;
use bcm_web_ui::pages::{GroupPage, GroupsPage, Listing};
use bcm_web_ui::{Chrome, Draft};

use super::session::Posted;
use super::{changed, created, done, seg, DetailPage, ListPage, Session, Ui, UiState};

fn permissions() -> Vec<String> {
    PERMISSIONS.iter().map(|p| p.to_string()).collect()
}

impl ListPage for GroupsPage {
    type Item = Group;
    const API: &'static str = "/api/v1/groups";

    async fn build(_: &Ui, _: &Session, chrome: Chrome, listing: Listing<Group>) -> Self {
        GroupsPage {
            chrome,
            listing,
            permissions: permissions(),
        }
    }
}

impl DetailPage for GroupPage {
    type List = GroupsPage;

    fn title(group: &Group) -> String {
        format!("Group {}", group.name)
    }

    async fn build(_: &Ui, _: &Session, chrome: Chrome, group: Group, _: Option<Draft>) -> Self {
        GroupPage {
            chrome,
            group,
            permissions: permissions(),
        }
    }
}

pub async fn create(State(ui): State<UiState>, p: Posted) -> Response {
    let f = &p.form;
    let group = NewGroup {
        name: f.get("name").into(),
        permissions: f.all("permissions").into_iter().collect(),
    };
    let result = ui.send(&p.s, Method::POST, GroupsPage::API, &group).await;
    let result = result.map(|_| {
        done(
            &format!("/groups/{}", seg(&group.name)),
            format!("Group {} created.", group.name),
        )
    });
    created::<GroupsPage>(&ui, &p, result).await
}

pub async fn change(State(ui): State<UiState>, Path(name): Path<String>, p: Posted) -> Response {
    let uri = GroupPage::api_uri(&name);
    let result = if p.form.get("op") == "delete" {
        ui.delete(&p.s, &uri)
            .await
            .map(|_| done("/groups", format!("Group {name} removed.")))
    } else {
        let patch = GroupPatch {
            permissions: p.form.all("permissions").into_iter().collect(),
        };
        ui.send(&p.s, Method::PATCH, &uri, &patch)
            .await
            .map(|_| done(&format!("/groups/{}", seg(&name)), "Permissions saved."))
    };
    changed::<GroupPage>(&ui, &p, &name, result).await
}

//! `/nodes` and `/nodes/{id}`: the node registry; add, configure, decommission.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::Response;
use bcm_api::{NewNode, UpdateNode};
use bcm_web_ui::model::Member;
use bcm_web_ui::pages::{Listing, NodePage, NodesPage};
use bcm_web_ui::{Chrome, Draft};

use super::session::Posted;
use super::{
    changed, created, done, lines, number, seg, DetailPage, ListPage, Session, Ui, UiError, UiState,
};

impl ListPage for NodesPage {
    type Item = Member;
    const API: &'static str = "/api/v1/nodes";

    async fn build(_: &Ui, _: &Session, chrome: Chrome, listing: Listing<Member>) -> Self {
        NodesPage { chrome, listing }
    }
}

impl DetailPage for NodePage {
    type List = NodesPage;

    fn title(node: &Member) -> String {
        format!("Node {}", node.name)
    }

    async fn build(_: &Ui, _: &Session, chrome: Chrome, node: Member, _: Option<Draft>) -> Self {
        NodePage { chrome, node }
    }
}

pub async fn add(State(ui): State<UiState>, p: Posted) -> Response {
    let f = &p.form;
    let result = match number(f, "id") {
        Ok(id) => {
            let name = f.get("name").trim();
            let node = NewNode {
                id,
                name: (!name.is_empty()).then(|| name.into()),
                api_addr: f.get("api_addr").into(),
                rpc_addr: f.get("rpc_addr").into(),
                roles: f.all("roles"),
            };
            ui.send(&p.s, Method::POST, NodesPage::API, &node)
                .await
                .map(|_| done(&format!("/nodes/{id}"), format!("Node {id} registered.")))
        }
        Err(e) => Err(e),
    };
    created::<NodesPage>(&ui, &p, result).await
}

fn labels(text: &str) -> Result<BTreeMap<String, String>, UiError> {
    let mut out = BTreeMap::new();
    for line in lines(text) {
        let Some((k, v)) = line.split_once('=') else {
            return Err(UiError::of_field(
                "labels",
                format!("labels: {line:?} is not key=value"),
            ));
        };
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

pub async fn change(State(ui): State<UiState>, Path(id): Path<String>, p: Posted) -> Response {
    let f = &p.form;
    let uri = NodePage::api_uri(&id);
    let back = format!("/nodes/{}", seg(&id));
    let result = match f.get("op") {
        "decommission" => ui
            .delete(&p.s, &uri)
            .await
            .map(|_| done(&back, format!("Node {id} decommissioned."))),
        op @ ("drain" | "undrain") => {
            let on = op == "drain";
            let update = UpdateNode {
                roles: None,
                enabled: None,
                labels: None,
                maintenance: Some(on),
            };
            ui.send(&p.s, Method::PATCH, &uri, &update)
                .await
                .map(|_| {
                    let said = if on {
                        format!("Node {id} is draining: leadership and the backup-manager role move to other nodes.")
                    } else {
                        format!("Node {id} is out of maintenance.")
                    };
                    done(&back, said)
                })
        }
        _ => match labels(f.get("labels")) {
            Ok(labels) => {
                let update = UpdateNode {
                    roles: Some(f.all("roles")),
                    enabled: Some(f.get("enabled") == "true"),
                    labels: Some(labels),
                    maintenance: None,
                };
                ui.send(&p.s, Method::PATCH, &uri, &update)
                    .await
                    .map(|_| done(&back, "Node configuration saved."))
            }
            Err(e) => Err(e),
        },
    };
    changed::<NodePage>(&ui, &p, &id, result).await
}

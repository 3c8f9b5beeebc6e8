//! One struct per page (template), filled by the node's UI handlers.

use std::collections::BTreeSet;

use askama::Template;
use bcm_api::Role;

use crate::events::RecentEvent;
#[allow(unused_imports)] // the templates call the traits' methods
use crate::model::{
    AuditRecord, AuditText, Backup, BackupText, Cluster, ClusterText, ConfigEntry, ConfigText,
    Group, GroupText, JobText, List, Member, MemberText, Plan, PlanText, ProgressText, Restore,
    User, UserText,
};
use crate::{Chrome, Draft, Pager};

/// An option of a `<select>`.
#[derive(Debug, Clone)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

impl Choice {
    pub fn new(value: impl ToString, label: impl Into<String>) -> Choice {
        Choice {
            value: value.to_string(),
            label: label.into(),
        }
    }
}

pub const ROLES: &[&str] = &["manager", "backup-manager", "storage"];
pub const NODE_STATUSES: &[&str] = &["up", "down", "joining", "removed"];
pub const JOB_STATUSES: &[&str] = &["pending", "running", "succeeded", "failed", "cancelled"];
/// The choices of an `enabled` filter.
pub const ENABLED: &[(&str, &str)] = &[("true", "enabled"), ("false", "disabled")];

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub chrome: Chrome,
    /// The login form's CSRF value (also in a cookie: double submit).
    pub nonce: String,
    /// Where to go after logging in.
    pub next: String,
    pub username: String,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub heading: String,
    pub text: String,
    pub back: String,
}

/// One member placed on the dashboard's picture.
#[derive(Debug, Clone)]
pub struct Placed {
    pub m: Member,
    pub x: i32,
    pub y: i32,
    pub leader: bool,
    /// Short role marks drawn under the name: `M BM·e3 S`.
    pub badges: String,
    /// Roles in words, with the backup manager's epoch.
    pub roles: String,
    pub lag: String,
}

/// The part of the dashboard that is redrawn when something happens.
#[derive(Debug, Clone, Default)]
pub struct DashboardLive {
    pub cluster: Option<Cluster>,
    /// Why the cluster could not be read, in plain words.
    pub problem: Option<String>,
    /// The events this node saw lately; None when the viewer may not read
    /// events (`events.read`), as the API's event stream refuses them too.
    pub recent: Option<Vec<RecentEvent>>,
    pub placed: Vec<Placed>,
    pub leader_at: Option<(i32, i32)>,
}

impl DashboardLive {
    pub fn new(
        cluster: Option<Cluster>,
        problem: Option<String>,
        recent: Option<Vec<RecentEvent>>,
    ) -> Self {
        let mut placed = Vec::new();
        let mut leader_at = None;
        if let Some(c) = &cluster {
            let n = c.members.len().max(1) as f64;
            let (cx, cy, r) = (210.0, 165.0, if c.members.len() <= 1 { 0.0 } else { 112.0 });
            for (i, m) in c.members.iter().enumerate() {
                let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
                let x = (cx + r * a.cos()).round() as i32;
                let y = (cy + r * a.sin()).round() as i32;
                let leader = c.is_leader(m);
                if leader {
                    leader_at = Some((x, y));
                }
                let mut badges = Vec::new();
                let mut roles = Vec::new();
                if m.has_role("manager") {
                    badges.push("M".to_string());
                    roles.push(if leader {
                        "manager (cluster manager)".to_string()
                    } else {
                        "manager".to_string()
                    });
                }
                if m.has_role("backup-manager") {
                    match c.backup_manager {
                        Some(b) if b.node_id == m.id => {
                            badges.push(format!("BM·e{}", b.epoch));
                            roles.push(format!("backup manager (epoch {})", b.epoch));
                        }
                        _ => roles.push("backup-manager eligible".into()),
                    }
                }
                if m.has_role("storage") {
                    badges.push("S".into());
                    roles.push("storage".into());
                }
                let lag = if leader {
                    "leader".into()
                } else {
                    c.lag_text(m)
                };
                placed.push(Placed {
                    m: m.clone(),
                    x,
                    y,
                    leader,
                    badges: badges.join(" "),
                    roles: roles.join(", "),
                    lag,
                });
            }
        }
        DashboardLive {
            cluster,
            problem,
            recent,
            placed,
            leader_at,
        }
    }

    /// What the picture shows, for screen readers.
    pub fn picture_title(&self) -> String {
        let parts: Vec<String> = self
            .placed
            .iter()
            .map(|p| {
                format!(
                    "{} {}{}",
                    p.m.name,
                    p.m.status.as_str(),
                    if p.leader { " (leader)" } else { "" }
                )
            })
            .collect();
        format!("Cluster members: {}", parts.join(", "))
    }
}

#[derive(Template)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    pub chrome: Chrome,
    pub live: DashboardLive,
}

/// The dashboard's live part alone, fetched by `bcm.js` when an event arrives.
#[derive(Template)]
#[template(path = "dashboard_live.html")]
pub struct DashboardPartial<'a> {
    pub live: &'a DashboardLive,
}

/// What every list page shows: one page of the API's list, the links to the
/// other pages, the filters as given, and the create form's values (its defaults,
/// or what was last submitted).
#[derive(Debug, Clone)]
pub struct Listing<T> {
    pub list: List<T>,
    pub pager: Pager,
    pub filter: Draft,
    pub draft: Draft,
}

/// What the list layout (`list.html`) draws around a page's rows.
pub trait ListView {
    /// The page's path, where its filter form goes.
    const PATH: &'static str;
    /// The browser's title for the page.
    const TITLE: &'static str;
    const HEADING: &'static str = Self::TITLE;
    /// A row, in words: the caption counts them, an empty table says none matches.
    const NOUN: &'static str;
    const COLUMNS: &'static [&'static str];
    /// The events after which `bcm.js` redraws the table (`data-live-on`).
    const LIVE_ON: &'static str;
}

/// An option of a filter's `<select>`: its value and what it reads as.
pub trait ChoiceText {
    fn value(&self) -> &str;
    fn label(&self) -> &str;
}

impl ChoiceText for Choice {
    fn value(&self) -> &str {
        &self.value
    }

    fn label(&self) -> &str {
        &self.label
    }
}

/// A value that reads as itself (`up`, a group's name).
impl ChoiceText for str {
    fn value(&self) -> &str {
        self
    }

    fn label(&self) -> &str {
        self
    }
}

impl ChoiceText for (&str, &str) {
    fn value(&self) -> &str {
        self.0
    }

    fn label(&self) -> &str {
        self.1
    }
}

/// The values a set of checkboxes shows checked (the `checks` macro).
pub trait Checked {
    fn checks(&self, value: &str) -> bool;
}

impl Checked for [String] {
    fn checks(&self, value: &str) -> bool {
        self.iter().any(|v| v == value)
    }
}

impl Checked for BTreeSet<String> {
    fn checks(&self, value: &str) -> bool {
        self.contains(value)
    }
}

impl Checked for [Role] {
    fn checks(&self, value: &str) -> bool {
        self.iter().any(|r| r.as_str() == value)
    }
}

#[derive(Template)]
#[template(path = "nodes.html")]
pub struct NodesPage {
    pub chrome: Chrome,
    pub listing: Listing<Member>,
}

impl ListView for NodesPage {
    const PATH: &'static str = "/nodes";
    const TITLE: &'static str = "Nodes";
    const NOUN: &'static str = "node";
    const COLUMNS: &'static [&'static str] =
        &["Node", "Status", "Raft", "Roles", "Enabled", "API address"];
    const LIVE_ON: &'static str =
        "node_registered node_updated node_status_changed leader_changed backup_manager_assigned";
}

#[derive(Template)]
#[template(path = "node.html")]
pub struct NodePage {
    pub chrome: Chrome,
    pub node: Member,
}

#[derive(Template)]
#[template(path = "users.html")]
pub struct UsersPage {
    pub chrome: Chrome,
    pub listing: Listing<User>,
    /// Every group's name, for the filter and the create form.
    pub groups: Vec<String>,
}

impl ListView for UsersPage {
    const PATH: &'static str = "/users";
    const TITLE: &'static str = "Users";
    const NOUN: &'static str = "user";
    const COLUMNS: &'static [&'static str] = &["Name", "Id", "Groups", "State", "Created"];
    const LIVE_ON: &'static str = "user_changed user_deleted group_changed";
}

#[derive(Template)]
#[template(path = "user.html")]
pub struct UserPage {
    pub chrome: Chrome,
    pub user: User,
    pub groups: Vec<String>,
}

#[derive(Template)]
#[template(path = "groups.html")]
pub struct GroupsPage {
    pub chrome: Chrome,
    pub listing: Listing<Group>,
    pub permissions: Vec<String>,
}

impl ListView for GroupsPage {
    const PATH: &'static str = "/groups";
    const TITLE: &'static str = "Groups";
    const NOUN: &'static str = "group";
    const COLUMNS: &'static [&'static str] = &["Name", "Kind", "Permissions"];
    const LIVE_ON: &'static str = "group_changed";
}

#[derive(Template)]
#[template(path = "group.html")]
pub struct GroupPage {
    pub chrome: Chrome,
    pub group: Group,
    pub permissions: Vec<String>,
}

#[derive(Template)]
#[template(path = "config.html")]
pub struct ConfigPage {
    pub chrome: Chrome,
    pub listing: Listing<ConfigEntry>,
}

impl ListView for ConfigPage {
    const PATH: &'static str = "/config";
    const TITLE: &'static str = "Configuration";
    const NOUN: &'static str = "setting";
    const COLUMNS: &'static [&'static str] = &["Key", "Value", "Version"];
    const LIVE_ON: &'static str = "config_changed config_deleted";
}

#[derive(Template)]
#[template(path = "config_entry.html")]
pub struct ConfigEntryPage {
    pub chrome: Chrome,
    pub entry: ConfigEntry,
}

#[derive(Template)]
#[template(path = "plans.html")]
pub struct PlansPage {
    pub chrome: Chrome,
    pub listing: Listing<Plan>,
    pub nodes: Vec<Choice>,
}

impl ListView for PlansPage {
    const PATH: &'static str = "/plans";
    const TITLE: &'static str = "Plans";
    const HEADING: &'static str = "Backup plans";
    const NOUN: &'static str = "plan";
    const COLUMNS: &'static [&'static str] =
        &["Name", "Source", "Paths", "Schedule", "Keep", "Enabled"];
    const LIVE_ON: &'static str = "plan_changed";
}

impl PlansPage {
    /// An empty create form with the API's defaults.
    pub fn default_form() -> Draft {
        Draft(vec![
            ("keep_last".into(), "7".into()),
            ("replicas".into(), "1".into()),
            ("enabled".into(), "true".into()),
        ])
    }
}

#[derive(Template)]
#[template(path = "plan.html")]
pub struct PlanPage {
    pub chrome: Chrome,
    pub plan: Plan,
    /// The edit form's values (the plan's, or what was last submitted).
    pub form: Draft,
    pub nodes: Vec<Choice>,
}

impl PlanPage {
    /// The edit form filled from the plan.
    pub fn form_of(p: &Plan) -> Draft {
        let mut d = vec![
            ("name".to_string(), p.name.clone()),
            ("source_node".to_string(), p.source_node.to_string()),
            ("paths".to_string(), p.paths_text()),
            ("schedule".to_string(), p.schedule_text()),
            ("keep_last".to_string(), p.keep_last.to_string()),
            ("replicas".to_string(), p.replicas.to_string()),
        ];
        if p.enabled {
            d.push(("enabled".into(), "true".into()));
        }
        Draft(d)
    }
}

#[derive(Template)]
#[template(path = "backups.html")]
pub struct BackupsPage {
    pub chrome: Chrome,
    pub listing: Listing<Backup>,
    pub plans: Vec<Choice>,
    pub nodes: Vec<Choice>,
}

impl ListView for BackupsPage {
    const PATH: &'static str = "/backups";
    const TITLE: &'static str = "Backups";
    const NOUN: &'static str = "backup";
    const COLUMNS: &'static [&'static str] = &[
        "Backup", "Plan", "Source", "Status", "Size", "Replicas", "Started",
    ];
    const LIVE_ON: &'static str = "backup_changed backup_deleted";
}

#[derive(Template)]
#[template(path = "backup.html")]
pub struct BackupPage {
    pub chrome: Chrome,
    pub backup: Backup,
    pub restores: Vec<Restore>,
    pub nodes: Vec<Choice>,
    pub draft: Draft,
}

#[derive(Template)]
#[template(path = "restores.html")]
pub struct RestoresPage {
    pub chrome: Chrome,
    pub listing: Listing<Restore>,
    pub nodes: Vec<Choice>,
}

impl ListView for RestoresPage {
    const PATH: &'static str = "/restores";
    const TITLE: &'static str = "Restores";
    const NOUN: &'static str = "restore";
    const COLUMNS: &'static [&'static str] = &["Restore", "Backup", "Target", "Status", "Started"];
    const LIVE_ON: &'static str = "restore_changed";
}

#[derive(Template)]
#[template(path = "restore.html")]
pub struct RestorePage {
    pub chrome: Chrome,
    pub restore: Restore,
}

/// The audit log (`/audit`), newest first; only for holders of `audit.read`.
#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub chrome: Chrome,
    pub listing: Listing<AuditRecord>,
}

impl ListView for AuditPage {
    const PATH: &'static str = "/audit";
    const TITLE: &'static str = "Audit log";
    const NOUN: &'static str = "record";
    const COLUMNS: &'static [&'static str] = &[
        "Time", "Actor", "Address", "Action", "Target", "Outcome", "Detail",
    ];
    /// Records come with every write: the page is read as it was loaded.
    const LIVE_ON: &'static str = "";
}

#[cfg(test)]
mod tests {
    //! Every template rendered with realistic data: what an operator would see.

    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::{Flash, Viewer};

    fn chrome(perms: &[&str]) -> Chrome {
        Chrome {
            title: "Users".into(),
            section: "/users".into(),
            viewer: Some(Viewer {
                name: "alice".into(),
                groups: vec!["operator".into()],
                permissions: perms.iter().map(|p| p.to_string()).collect::<BTreeSet<_>>(),
            }),
            csrf: "csrf-token-123".into(),
            serving_id: 2,
            serving_addr: "http://10.0.0.2:8080".into(),
            leader_id: Some(1),
            term: 7,
            members: vec![
                "http://10.0.0.1:8080".into(),
                "http://10.0.0.2:8080".into(),
                "http://10.0.0.3:8080".into(),
            ],
            flash: None,
        }
    }

    const ADMIN: &[&str] = &[
        "cluster.read",
        "nodes.read",
        "nodes.write",
        "users.read",
        "users.write",
        "groups.read",
        "groups.write",
        "config.read",
        "config.write",
        "plans.read",
        "plans.write",
        "backups.read",
        "backups.write",
        "restores.read",
        "restores.write",
        "audit.read",
    ];
    const VIEWER: &[&str] = &[
        "cluster.read",
        "nodes.read",
        "users.read",
        "groups.read",
        "config.read",
        "plans.read",
        "backups.read",
        "restores.read",
    ];

    fn cluster() -> Cluster {
        serde_json::from_value(json!({
            "cluster_id": "c0ffee", "leader_id": 1, "term": 7, "commit_index": 120,
            "this_node_id": 2, "backup_manager": {"node_id": 3, "epoch": 4, "since_ms": 1795000000000u64},
            "members": [
                {"id": 1, "name": "node-1", "api_addr": "http://10.0.0.1:8080", "rpc_addr": "http://10.0.0.1:9080",
                 "voter": true, "roles": ["manager", "backup-manager", "storage"], "status": "up",
                 "enabled": true, "labels": {"rack": "a"}, "last_contact_ms": 0, "matched_index": 120},
                {"id": 2, "name": "node-2", "api_addr": "http://10.0.0.2:8080", "rpc_addr": "http://10.0.0.2:9080",
                 "voter": true, "roles": ["manager", "storage"], "status": "up",
                 "enabled": true, "labels": {}, "last_contact_ms": 40, "matched_index": 118},
                {"id": 3, "name": "node-3", "api_addr": "http://10.0.0.3:8080", "rpc_addr": "http://10.0.0.3:9080",
                 "voter": true, "roles": ["manager", "backup-manager", "storage"], "status": "down",
                 "enabled": true, "labels": {}, "last_contact_ms": 5300, "matched_index": 97},
                {"id": 4, "name": "store-4", "api_addr": "http://10.0.0.4:8080", "rpc_addr": "http://10.0.0.4:9080",
                 "voter": false, "roles": ["storage"], "status": "joining",
                 "enabled": true, "labels": {}, "last_contact_ms": null, "matched_index": null}
            ]
        }))
        .unwrap()
    }

    fn users() -> List<User> {
        serde_json::from_value(json!({"total": 60, "items": [
            {"id": 1, "name": "admin", "enabled": true, "groups": ["admin"], "created_at_ms": 1795000000000u64},
            {"id": 7, "name": "alice", "enabled": false, "groups": ["operator", "night-shift"], "created_at_ms": 1795000100000u64}
        ]}))
        .unwrap()
    }

    fn plan() -> Plan {
        serde_json::from_value(json!({"id": 3, "name": "etc-nightly", "source_node": 2,
            "paths": ["/etc", "/var/lib/app"], "schedule": "0 3 * * *", "keep_last": 7,
            "replicas": 2, "enabled": true, "created_at_ms": 1795000000000u64}))
        .unwrap()
    }

    fn backup(status: &str) -> Backup {
        serde_json::from_value(json!({"id": 41, "plan": 3, "plan_name": "etc-nightly",
            "source_node": 2, "paths": ["/etc"], "status": status, "size_bytes": 3_500_000,
            "storage_nodes": [1, 3], "error": if status == "failed" { json!("disk full on node 3") } else { json!(null) },
            "created_at_ms": 1795000000000u64, "updated_at_ms": 1795000060000u64}))
        .unwrap()
    }

    fn restore() -> Restore {
        serde_json::from_value(json!({"id": 5, "backup": 41, "target_node": 1,
            "target_path": "/restore/etc", "status": "running", "error": null,
            "created_at_ms": 1795000000000u64, "updated_at_ms": 1795000000000u64}))
        .unwrap()
    }

    fn nodes() -> Vec<Choice> {
        vec![Choice::new(1, "node-1 (#1)"), Choice::new(2, "node-2 (#2)")]
    }

    /// The first page of `list`, with its pager.
    fn listing<T>(list: List<T>, filter: Draft, draft: Draft) -> Listing<T> {
        Listing {
            pager: Pager::new(
                "/x",
                &[],
                0,
                crate::DEFAULT_PAGE,
                list.items.len(),
                list.total,
            ),
            list,
            filter,
            draft,
        }
    }

    #[test]
    fn dashboard_draws_every_member_with_status_leader_and_roles() {
        let recent = vec![RecentEvent {
            at_ms: 1795000000000,
            kind: "node_status_changed".into(),
            text: "node 3 is down".into(),
        }];
        let live = DashboardLive::new(Some(cluster()), None, Some(recent));
        let html = DashboardPage {
            chrome: chrome(ADMIN),
            live: live.clone(),
        }
        .render()
        .unwrap();
        for (id, status) in [(1, "up"), (2, "up"), (3, "down"), (4, "joining")] {
            assert!(
                html.contains(&format!("data-node-id=\"{id}\" data-status=\"{status}\"")),
                "member {id}"
            );
        }
        assert!(html.contains("member st-up leader"), "the leader is marked");
        assert!(html.contains("learner"), "a learner is marked");
        assert!(
            html.contains("BM·e4"),
            "the backup manager's epoch is drawn"
        );
        assert!(html.contains("backup manager (epoch 4)"));
        assert!(html.contains("23 entries behind"), "replication lag");
        assert!(html.contains("node 3 is down"), "recent events");
        assert!(
            html.contains("Served by <strong id=\"serving\" data-serving=\"2\">node 2</strong>")
        );
        assert!(html.contains(
            "data-members=\"http://10.0.0.1:8080 http://10.0.0.2:8080 http://10.0.0.3:8080\""
        ));
        // The partial is the same live region, alone.
        let part = DashboardPartial { live: &live }.render().unwrap();
        assert!(part.trim_start().starts_with("<div id=\"live\" data-live"));
        assert!(!part.contains("<html"));
        assert!(part.contains("data-node-id=\"3\" data-status=\"down\""));
        // Without a cluster answer, the reason shows.
        // Without events.read, no events: the page says why.
        let hidden = DashboardLive::new(Some(cluster()), None, None);
        let html = DashboardPartial { live: &hidden }.render().unwrap();
        assert!(!html.contains("<li class=\"ev-"), "{html}");
        assert!(html.contains("permission events.read"), "{html}");
        let none = DashboardLive::new(
            None,
            Some("The cluster cannot do this right now".into()),
            Some(vec![]),
        );
        let html = DashboardPartial { live: &none }.render().unwrap();
        assert!(html.contains("The cluster cannot do this right now"));
    }

    #[test]
    fn login_and_error_pages() {
        let mut c = chrome(&[]);
        // As the node fills it without a session: no member's address.
        c.viewer = None;
        c.serving_addr.clear();
        c.members.clear();
        c.flash = Some(Flash::error(
            "Unknown user, wrong password or disabled user.",
            None,
        ));
        let html = LoginPage {
            chrome: c.clone(),
            nonce: "n0nce".into(),
            next: "/users?q=al".into(),
            username: "alice".into(),
        }
        .render()
        .unwrap();
        assert!(html.contains("name=\"csrf\" value=\"n0nce\""));
        assert!(html.contains("value=\"/users?q=al\""));
        assert!(html.contains("<label for=\"password\">"));
        assert!(html.contains("role=\"alert\""));
        assert!(
            !html.contains("action=\"/logout\""),
            "no logout without a session"
        );
        assert!(!html.contains("10.0.0."), "no member's address: {html}");
        assert!(html.contains("data-serving=\"2\">node 2</strong>"));
        let html = ErrorPage {
            chrome: chrome(VIEWER),
            heading: "Not found".into(),
            text: "Not found: user 99 does not exist.".into(),
            back: "/users".into(),
        }
        .render()
        .unwrap();
        assert!(html.contains("user 99 does not exist"));
    }

    #[test]
    fn users_pages_show_forms_only_to_who_may_use_them() {
        let mut filter = Draft::default();
        filter.0.push(("enabled".into(), "false".into()));
        let page = |perms: &[&str]| UsersPage {
            chrome: chrome(perms),
            listing: listing(
                users(),
                filter.clone(),
                Draft(vec![
                    ("name".into(), "bob<script>".into()),
                    ("groups".into(), "night-shift".into()),
                ]),
            ),
            groups: vec![
                "admin".into(),
                "operator".into(),
                "viewer".into(),
                "night-shift".into(),
            ],
        };
        let html = page(ADMIN).render().unwrap();
        assert!(html.contains("data-user=\"alice\""));
        assert!(html.contains("operator, night-shift"));
        assert!(html.contains("<option value=\"false\" selected>disabled</option>"));
        assert!(html.contains("name=\"csrf\" value=\"csrf-token-123\""));
        assert!(html.contains("id=\"u-name\""));
        assert!(html.contains("bob&#60;script&#62;"), "drafts are escaped");
        assert!(html.contains("value=\"night-shift\" checked"), "and kept");
        assert!(html.contains("rel=\"next\""), "pagination");
        let html = page(VIEWER).render().unwrap();
        assert!(
            !html.contains("id=\"u-name\""),
            "no create form for a viewer"
        );

        let user = users().items[1].clone();
        let one = |perms: &[&str]| UserPage {
            chrome: chrome(perms),
            user: user.clone(),
            groups: vec!["admin".into(), "operator".into(), "night-shift".into()],
        };
        let html = one(ADMIN).render().unwrap();
        assert!(
            html.contains("value=\"enable\""),
            "a disabled user can be enabled"
        );
        assert!(html.contains("value=\"night-shift\" checked"));
        assert!(html.contains("data-confirm"));
        let html = one(VIEWER).render().unwrap();
        assert!(
            !html.contains("name=\"op\""),
            "no edit controls for a viewer"
        );
    }

    #[test]
    fn groups_pages() {
        let list: List<Group> = serde_json::from_value(json!({"total": 2, "items": [
            {"name": "admin", "permissions": ["users.read", "users.write"], "builtin": true},
            {"name": "night-shift", "permissions": ["backups.read"], "builtin": false}
        ]}))
        .unwrap();
        let perms: Vec<String> = ADMIN.iter().map(|p| p.to_string()).collect();
        let html = GroupsPage {
            chrome: chrome(ADMIN),
            listing: listing(list.clone(), Draft::default(), Draft::default()),
            permissions: perms.clone(),
        }
        .render()
        .unwrap();
        assert!(html.contains("predefined") && html.contains("custom"));
        assert!(html.contains("name=\"permissions\" value=\"restores.write\""));
        let html = GroupPage {
            chrome: chrome(ADMIN),
            group: list.items[1].clone(),
            permissions: perms.clone(),
        }
        .render()
        .unwrap();
        assert!(html.contains("value=\"backups.read\" checked"));
        let html = GroupPage {
            chrome: chrome(ADMIN),
            group: list.items[0].clone(),
            permissions: perms,
        }
        .render()
        .unwrap();
        assert!(html.contains("cannot be changed"));
        assert!(
            !html.contains("name=\"op\""),
            "predefined groups have no edit form"
        );
    }

    #[test]
    fn nodes_pages() {
        let c = cluster();
        let html = NodesPage {
            chrome: chrome(ADMIN),
            listing: listing(
                List {
                    items: c.members.clone(),
                    total: 4,
                },
                Draft(vec![("status".into(), "down".into())]),
                Draft::default(),
            ),
        }
        .render()
        .unwrap();
        assert!(html.contains("data-node-row=\"3\""));
        assert!(html.contains("<option value=\"down\" selected>down</option>"));
        assert!(html.contains("Add a node"));
        let html = NodePage {
            chrome: chrome(ADMIN),
            node: c.members[0].clone(),
        }
        .render()
        .unwrap();
        assert!(html.contains("rack=a"));
        assert!(html.contains("value=\"decommission\""));
        assert!(html.contains("value=\"storage\" checked"));
    }

    #[test]
    fn config_pages() {
        let entry: ConfigEntry = serde_json::from_value(
            json!({"key": "backup/window", "value": {"start": "01:00", "hours": 4}, "version": 42}),
        )
        .unwrap();
        let html = ConfigPage {
            chrome: chrome(ADMIN),
            listing: listing(
                List {
                    items: vec![entry.clone()],
                    total: 1,
                },
                Draft::default(),
                Draft::default(),
            ),
        }
        .render()
        .unwrap();
        assert!(html.contains("href=\"/config/backup/window\""));
        assert!(html.contains("&#34;hours&#34;: 4"));
        let html = ConfigEntryPage {
            chrome: chrome(ADMIN),
            entry,
        }
        .render()
        .unwrap();
        assert!(
            html.contains("name=\"version\" value=\"42\""),
            "compare-and-set"
        );
    }

    #[test]
    fn plans_pages() {
        let p = plan();
        let html = PlansPage {
            chrome: chrome(ADMIN),
            listing: listing(
                List {
                    items: vec![p.clone()],
                    total: 1,
                },
                Draft::default(),
                PlansPage::default_form(),
            ),
            nodes: nodes(),
        }
        .render()
        .unwrap();
        assert!(html.contains("<code>0 3 * * *</code>"));
        assert!(html
            .contains("name=\"keep_last\" inputmode=\"numeric\" pattern=\"[0-9]+\" value=\"7\""));
        let html = PlanPage {
            chrome: chrome(ADMIN),
            form: PlanPage::form_of(&p),
            plan: p,
            nodes: nodes(),
        }
        .render()
        .unwrap();
        assert!(html.contains("<option value=\"2\" selected>node-2 (#2)</option>"));
        assert!(html.contains("/etc\n/var/lib/app"));
        assert!(html.contains("Back up now"));
    }

    #[test]
    fn backups_and_restores_pages() {
        let html = BackupsPage {
            chrome: chrome(ADMIN),
            listing: listing(
                List {
                    items: vec![backup("failed"), backup("running")],
                    total: 2,
                },
                Draft(vec![
                    ("status".into(), "failed".into()),
                    ("plan".into(), "3".into()),
                ]),
                Draft::default(),
            ),
            plans: vec![Choice::new(3, "etc-nightly (#3)")],
            nodes: nodes(),
        }
        .render()
        .unwrap();
        assert!(html.contains("<option value=\"failed\" selected>failed</option>"));
        assert!(html.contains("<option value=\"3\" selected>etc-nightly (#3)</option>"));
        assert!(html.contains("data-backup=\"41\" data-status=\"failed\""));
        assert!(html.contains("3.3 MiB"));
        let html = BackupPage {
            chrome: chrome(ADMIN),
            backup: backup("failed"),
            restores: vec![restore()],
            nodes: nodes(),
            draft: Draft::default(),
        }
        .render()
        .unwrap();
        assert!(html.contains("disk full on node 3"));
        assert!(html.contains("node 1, node 3"));
        assert!(html.contains("Restore #5"));
        assert!(
            html.contains("id=\"restore-note\""),
            "a failed backup cannot be restored"
        );
        let html = BackupPage {
            chrome: chrome(ADMIN),
            backup: backup("succeeded"),
            restores: vec![],
            nodes: nodes(),
            draft: Draft::default(),
        }
        .render()
        .unwrap();
        assert!(html.contains("name=\"target_path\""));
        let html = BackupPage {
            chrome: chrome(VIEWER),
            backup: backup("succeeded"),
            restores: vec![],
            nodes: nodes(),
            draft: Draft::default(),
        }
        .render()
        .unwrap();
        assert!(
            !html.contains("name=\"target_path\""),
            "a viewer cannot restore"
        );
        let html = RestoresPage {
            chrome: chrome(VIEWER),
            listing: listing(
                List {
                    items: vec![restore()],
                    total: 1,
                },
                Draft::default(),
                Draft::default(),
            ),
            nodes: nodes(),
        }
        .render()
        .unwrap();
        assert!(html.contains("/restore/etc"));
        let html = RestorePage {
            chrome: chrome(VIEWER),
            restore: restore(),
        }
        .render()
        .unwrap();
        assert!(html.contains("job-running"));
    }

    #[test]
    fn the_audit_page_lists_records_and_is_in_the_navigation_only_with_audit_read() {
        let records = vec![
            AuditRecord {
                id: 12,
                at_ms: 1_795_000_000_000,
                actor: "alice".into(),
                addr: Some("192.0.2.7".into()),
                action: "users.create".into(),
                target: "bob".into(),
                detail: "groups: viewer".into(),
                outcome: "ok".into(),
                reason: None,
            },
            AuditRecord {
                id: 11,
                at_ms: 1_794_999_999_000,
                actor: "anonymous".into(),
                addr: None,
                action: "login.failed".into(),
                target: "anonymous".into(),
                detail: String::new(),
                outcome: "refused".into(),
                reason: Some("unknown user".into()),
            },
        ];
        let mut filter = Draft::default();
        filter.0.push(("action".into(), "users.".into()));
        let html = AuditPage {
            chrome: chrome(ADMIN),
            listing: listing(
                List {
                    items: records,
                    total: 2,
                },
                filter,
                Draft::default(),
            ),
        }
        .render()
        .unwrap();
        assert!(html.contains(r#"data-audit-id="12""#), "{html}");
        assert!(html.contains("2026-11-18 11:06:40 UTC"));
        assert!(html.contains("192.0.2.7") && html.contains("groups: viewer"));
        assert!(html.contains("unknown user"));
        assert!(html.contains(r#"value="users.""#), "the filter is kept");
        assert!(html.contains(r#"href="/audit""#), "in the navigation");
        let others = UsersPage {
            chrome: chrome(VIEWER),
            listing: listing(List::default(), Draft::default(), Draft::default()),
            groups: vec![],
        }
        .render()
        .unwrap();
        assert!(!others.contains(r#"href="/audit""#), "not for a viewer");
    }
}

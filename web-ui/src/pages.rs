//! One struct per page (template), filled by the node's UI handlers.

use askama::Template;

use crate::events::RecentEvent;
use crate::model::{Backup, Cluster, ConfigEntry, Group, List, Member, Plan, Restore, User};
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
    pub recent: Vec<RecentEvent>,
    pub placed: Vec<Placed>,
    pub leader_at: Option<(i32, i32)>,
}

impl DashboardLive {
    pub fn new(
        cluster: Option<Cluster>,
        problem: Option<String>,
        recent: Vec<RecentEvent>,
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
                    p.m.status,
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

#[derive(Template)]
#[template(path = "nodes.html")]
pub struct NodesPage {
    pub chrome: Chrome,
    pub list: List<Member>,
    pub pager: Pager,
    pub filter: Draft,
    pub draft: Draft,
    pub roles: &'static [&'static str],
    pub statuses: &'static [&'static str],
}

#[derive(Template)]
#[template(path = "node.html")]
pub struct NodePage {
    pub chrome: Chrome,
    pub node: Member,
    pub roles: &'static [&'static str],
}

#[derive(Template)]
#[template(path = "users.html")]
pub struct UsersPage {
    pub chrome: Chrome,
    pub list: List<User>,
    pub pager: Pager,
    pub filter: Draft,
    pub draft: Draft,
    /// Every group's name, for the filter and the create form.
    pub groups: Vec<String>,
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
    pub list: List<Group>,
    pub pager: Pager,
    pub filter: Draft,
    pub draft: Draft,
    pub permissions: Vec<String>,
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
    pub list: List<ConfigEntry>,
    pub pager: Pager,
    pub filter: Draft,
    pub draft: Draft,
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
    pub list: List<Plan>,
    pub pager: Pager,
    pub filter: Draft,
    /// The create form's values (defaults, or what was last submitted).
    pub form: Draft,
    pub nodes: Vec<Choice>,
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
#[template(path = "backups.html")]
pub struct BackupsPage {
    pub chrome: Chrome,
    pub list: List<Backup>,
    pub pager: Pager,
    pub filter: Draft,
    pub draft: Draft,
    pub plans: Vec<Choice>,
    pub nodes: Vec<Choice>,
    pub statuses: &'static [&'static str],
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
    pub list: List<Restore>,
    pub pager: Pager,
    pub filter: Draft,
    pub nodes: Vec<Choice>,
    pub statuses: &'static [&'static str],
}

#[derive(Template)]
#[template(path = "restore.html")]
pub struct RestorePage {
    pub chrome: Chrome,
    pub restore: Restore,
}

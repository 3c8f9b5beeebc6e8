//! The bcm web UI: server-rendered pages (askama templates), their view models and
//! the static assets, all compiled into the binary. This crate knows nothing of Raft
//! or of the node: `node` fills the view models from the same API the CLI uses and
//! serves the pages.
//!
//! One template and one view struct per page; every page extends `base.html`, a list
//! page through `list.html` (its filters, table, pager and live region, described by
//! its `ListView`); pieces several pages share are macros in `parts.html`. Views
//! that update in place have a partial (the dashboard's live part); list pages mark
//! their live region with `data-live`, which `bcm.js` swaps when an event arrives.

pub mod assets;
pub mod events;
pub mod model;
pub mod pages;

pub use askama::Template;

use std::collections::BTreeSet;

/// One entry of the main navigation: (path, label, permission needed to see it).
pub const NAV: &[(&str, &str, &str)] = &[
    ("/", "Dashboard", "cluster.read"),
    ("/nodes", "Nodes", "nodes.read"),
    ("/users", "Users", "users.read"),
    ("/groups", "Groups", "groups.read"),
    ("/config", "Config", "config.read"),
    ("/plans", "Plans", "plans.read"),
    ("/backups", "Backups", "backups.read"),
    ("/restores", "Restores", "restores.read"),
    ("/audit", "Audit", "audit.read"),
];

/// The user a page is shown to.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    pub name: String,
    pub groups: Vec<String>,
    pub permissions: BTreeSet<String>,
}

/// A message at the top of a page: the outcome of the last action.
#[derive(Debug, Clone)]
pub struct Flash {
    /// `ok` or `error`.
    pub kind: &'static str,
    pub text: String,
    /// The form field the error is about, when it is about one.
    pub field: Option<String>,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Flash {
        Flash {
            kind: "ok",
            text: text.into(),
            field: None,
        }
    }

    pub fn error(text: impl Into<String>, field: Option<String>) -> Flash {
        Flash {
            kind: "error",
            text: text.into(),
            field,
        }
    }

    pub fn is_error(&self) -> bool {
        self.kind == "error"
    }
}

/// What every page's frame shows: who is looking, which node serves the page, which
/// node leads, where the other members are (for failover), the CSRF token.
#[derive(Debug, Clone, Default)]
pub struct Chrome {
    pub title: String,
    /// The navigation entry to mark current (`/users`, ...).
    pub section: String,
    pub viewer: Option<Viewer>,
    pub csrf: String,
    pub serving_id: u64,
    pub serving_addr: String,
    pub leader_id: Option<u64>,
    pub term: u64,
    /// Every member's API address, this node's included.
    pub members: Vec<String>,
    pub flash: Option<Flash>,
}

impl Chrome {
    /// May the viewer do `permission`? (The server checks again on every request.)
    pub fn can(&self, permission: &str) -> bool {
        self.viewer
            .as_ref()
            .is_some_and(|v| v.permissions.contains(permission))
    }

    pub fn nav(&self) -> Vec<(&'static str, &'static str, bool)> {
        NAV.iter()
            .filter(|(_, _, p)| self.can(p))
            .map(|(href, label, _)| (*href, *label, self.section == *href))
            .collect()
    }

    pub fn members_attr(&self) -> String {
        self.members.join(" ")
    }

    pub fn leader_text(&self) -> String {
        match self.leader_id {
            Some(id) if id == self.serving_id => format!("node {id} (this node)"),
            Some(id) => format!("node {id}"),
            None => "none (election under way)".into(),
        }
    }

    pub fn error_for(&self, field: &str) -> bool {
        self.flash
            .as_ref()
            .is_some_and(|f| f.is_error() && f.field.as_deref() == Some(field))
    }
}

/// Values a form was last submitted with, so a refused form keeps what was typed.
#[derive(Debug, Clone, Default)]
pub struct Draft(pub Vec<(String, String)>);

impl Draft {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn has(&self, name: &str, value: &str) -> bool {
        self.0.iter().any(|(k, v)| k == name && v == value)
    }

    /// Every value of a field that may repeat (checkboxes).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A copy without the named fields (passwords are never sent back).
    pub fn without(&self, names: &[&str]) -> Draft {
        Draft(
            self.0
                .iter()
                .filter(|(k, _)| !names.contains(&k.as_str()))
                .cloned()
                .collect(),
        )
    }
}

/// Links to the previous and next page of a list, keeping its filters.
#[derive(Debug, Clone, Default)]
pub struct Pager {
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub shown: usize,
    pub prev: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    /// `base` is the path; `params` the filters without `limit` and `offset`.
    pub fn new(
        base: &str,
        params: &[(String, String)],
        offset: usize,
        limit: usize,
        shown: usize,
        total: usize,
    ) -> Pager {
        let link = |off: usize| {
            let mut q: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                .collect();
            if off > 0 {
                q.push(format!("offset={off}"));
            }
            if limit != DEFAULT_PAGE {
                q.push(format!("limit={limit}"));
            }
            if q.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", q.join("&"))
            }
        };
        Pager {
            total,
            offset,
            limit,
            shown,
            prev: (offset > 0).then(|| link(offset.saturating_sub(limit))),
            next: (offset + shown < total).then(|| link(offset + limit)),
        }
    }

    pub fn range_text(&self) -> String {
        if self.shown == 0 {
            format!("0 of {}", self.total)
        } else {
            format!(
                "{}–{} of {}",
                self.offset + 1,
                self.offset + self.shown,
                self.total
            )
        }
    }
}

/// Rows per page when the URL does not say.
pub const DEFAULT_PAGE: usize = 25;

/// Percent-encodes a query component.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pager_keeps_filters() {
        let p = Pager::new("/users", &[("q".into(), "al ice".into())], 25, 25, 25, 80);
        assert_eq!(p.prev.as_deref(), Some("/users?q=al%20ice"));
        assert_eq!(p.next.as_deref(), Some("/users?q=al%20ice&offset=50"));
        assert_eq!(p.range_text(), "26–50 of 80");
        let last = Pager::new("/users", &[], 75, 25, 5, 80);
        assert!(last.next.is_none());
    }
}

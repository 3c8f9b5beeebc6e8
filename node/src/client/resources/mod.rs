//! `bcm users|groups|nodes|config|plans|backups|restores|audit`: the API's resources, as tables or JSON.

use std::fmt::Display;

use bcm_api::{Page, Window};
use clap::Args;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::client::{servers, token, Request, ServerArgs};

mod audit;
mod backups;
mod config;
mod follow;
mod groups;
mod nodes;
mod plans;
mod restores;
mod users;

pub use audit::{audit, AuditArgs};
pub use backups::{backups, BackupsArgs};
pub use config::{config, ConfigArgs};
pub use groups::{groups, GroupsArgs};
pub use nodes::{nodes, NodesArgs};
pub use plans::{plans, PlansArgs};
pub use restores::{restores, RestoresArgs};
pub use users::{users, UsersArgs};

#[derive(Args)]
pub struct Common {
    #[command(flatten)]
    pub server: ServerArgs,
    /// `table` (default) or `json`.
    #[arg(long, short, global = true, default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
}

/// A view shown as a table: its column names and one row per value.
pub trait Table {
    fn header() -> &'static [&'static str];
    fn row(&self) -> Vec<String>;
}

/// A plain text table: one header line, then one line per item, columns aligned.
pub fn table<T: Table>(items: &[T]) -> String {
    let header = T::header();
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    rows.extend(items.iter().map(Table::row));
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A cell for a value that may be absent: `-` when it is.
pub fn or_dash(v: Option<impl Display>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A cell for several values: comma-separated.
pub fn joined<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A list's query string, `?`-prefixed (empty when nothing is set): the filter's
/// fields, then the window's.
fn query(filter: &impl Serialize, window: Window) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct ListQuery<'a, F> {
        #[serde(flatten)]
        filter: &'a F,
        #[serde(flatten)]
        window: Window,
    }
    let qs = serde_urlencoded::to_string(ListQuery { filter, window })?;
    Ok(if qs.is_empty() { qs } else { format!("?{qs}") })
}

/// One segment of a request path (a group name, a part of a config key),
/// percent-encoded. Not serde_urlencoded: form encoding writes a space as `+`,
/// which a path keeps as a plus.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where a resource command sends its requests, with which token, and how it
/// prints the answers.
struct Api {
    servers: Vec<String>,
    token: String,
    json: bool,
}

impl Api {
    async fn new(common: &Common) -> anyhow::Result<Api> {
        let servers = servers(&common.server);
        let token = token(&servers).await?;
        Ok(Api {
            servers,
            token,
            json: common.output == "json",
        })
    }

    /// A request carrying this session's token.
    fn request(&self, method: Method, path: impl Into<String>) -> Request<'_> {
        Request::new(method, path).token(&self.token)
    }

    /// Sends `req`; the answer decoded as `T`.
    async fn call<T: DeserializeOwned>(&self, req: Request<'_>) -> anyhow::Result<T> {
        req.call(&self.servers).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(self.request(Method::GET, path)).await
    }

    /// The first page (the server's default window) of what `filter` matches;
    /// [`Api::show_page`] says when there is more.
    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        filter: &impl Serialize,
    ) -> anyhow::Result<Page<T>> {
        let qs = query(filter, Window::default())?;
        self.get(&format!("{path}{qs}")).await
    }

    /// `POST`, `PATCH` or `PUT` of a request body; the answer decoded as `T`.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.call(self.request(method, path).json(body)).await
    }

    /// Sends a `DELETE`; says what went, unless the output is JSON.
    async fn delete(&self, req: Request<'_>, what: &str) -> anyhow::Result<()> {
        req.send(&self.servers).await?;
        if !self.json {
            println!("{what} deleted");
        }
        Ok(())
    }

    /// Prints one value: a one-row table, or its JSON.
    fn show<T: Table + Serialize>(&self, item: &T) -> anyhow::Result<()> {
        if self.json {
            return print_json(item);
        }
        print!("{}", table(std::slice::from_ref(item)));
        Ok(())
    }

    /// Prints a page: a table and, when it is not all, how much it shows; or its JSON.
    fn show_page<T: Table + Serialize>(&self, page: &Page<T>) -> anyhow::Result<()> {
        if self.json {
            return print_json(page);
        }
        print!("{}", table(&page.items));
        if page.total > page.items.len() {
            println!(
                "({} of {} shown; use --output json with limit/offset for more)",
                page.items.len(),
                page.total
            );
        }
        Ok(())
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcm_api::{BackupFilter, UserFilter, UserView};

    #[test]
    fn tables_align() {
        let users = [
            UserView {
                id: 1,
                name: "admin".into(),
                enabled: true,
                groups: vec!["admin".into()],
                created_at_ms: 0,
            },
            UserView {
                id: 12,
                name: "al".into(),
                enabled: false,
                groups: vec!["viewer".into(), "ops".into()],
                created_at_ms: 0,
            },
        ];
        let t = table(&users);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "ID  NAME   ENABLED  GROUPS");
        assert_eq!(lines[1], "1   admin  true     admin");
        assert_eq!(lines[2], "12  al     false    viewer,ops");
        assert_eq!(table::<UserView>(&[]), "ID  NAME  ENABLED  GROUPS\n");
    }

    #[test]
    fn query_strings_hold_the_filter_and_the_window() {
        let filter = UserFilter {
            q: Some("a b&c".into()),
            enabled: Some(false),
            group: None,
        };
        assert_eq!(
            query(&filter, Window::default()).unwrap(),
            "?q=a+b%26c&enabled=false"
        );
        let window = Window {
            limit: Some(5),
            offset: Some(10),
        };
        let filter = BackupFilter {
            plan: Some(3),
            ..Default::default()
        };
        assert_eq!(query(&filter, window).unwrap(), "?plan=3&limit=5&offset=10");
        assert_eq!(
            query(&UserFilter::default(), Window::default()).unwrap(),
            ""
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("ops.team-1"), "ops.team-1");
        assert_eq!(path_segment("a b/c+d"), "a%20b%2Fc%2Bd");
    }
}

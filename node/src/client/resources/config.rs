//! `bcm config ...`: cluster-wide settings, with compare-and-set on their version.

use bcm_api::{ConfigFilter, ConfigValue, ConfigView, Page};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::{path_segment, Api, Common, Table};
use crate::client::Request;

#[derive(Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: ConfigCmd,
}

#[derive(Subcommand)]
enum ConfigCmd {
    List {
        #[arg(long)]
        q: Option<String>,
    },
    Get {
        key: String,
    },
    /// Set KEY to VALUE (JSON; a bare word is taken as a string).
    Set {
        key: String,
        value: String,
        /// Only if the current version is this (compare-and-set; 0: only if absent).
        #[arg(long)]
        if_version: Option<u64>,
    },
    Delete {
        key: String,
        #[arg(long)]
        if_version: Option<u64>,
    },
}

impl Table for ConfigView {
    fn header() -> &'static [&'static str] {
        &["KEY", "VERSION", "VALUE"]
    }

    fn row(&self) -> Vec<String> {
        vec![
            self.key.clone(),
            self.version.to_string(),
            value_cell(&self.value),
        ]
    }
}

/// A setting's value (any JSON) in one cell: a string without quotes, a list
/// comma-separated, an object as `k=v,...`, null as `-`.
fn value_cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(value_cell).collect::<Vec<_>>().join(","),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k}={}", value_cell(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// `--if-version`: 0 creates only (`If-None-Match: *`), any other version is
/// compare-and-set (`If-Match`).
fn if_version<'a>(req: Request<'a>, version: Option<u64>) -> Request<'a> {
    match version {
        None => req,
        Some(0) => req.header("if-none-match", "*".into()),
        Some(v) => req.header("if-match", format!("\"{v}\"")),
    }
}

pub async fn config(args: ConfigArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.common).await?;
    // A key with slashes is a path of its own: each part encoded, the slashes kept.
    let path = |key: &str| {
        let parts: Vec<String> = key.split('/').map(path_segment).collect();
        format!("/api/v1/config/{}", parts.join("/"))
    };
    match args.command {
        ConfigCmd::List { q } => {
            let page: Page<ConfigView> = api.list("/api/v1/config", &ConfigFilter { q }).await?;
            api.show_page(&page)
        }
        ConfigCmd::Get { key } => {
            let setting: ConfigView = api.get(&path(&key)).await?;
            api.show(&setting)
        }
        ConfigCmd::Set {
            key,
            value,
            if_version: version,
        } => {
            let value = serde_json::from_str(&value).unwrap_or(Value::String(value));
            let req = api
                .request(Method::PUT, path(&key))
                .json(&ConfigValue { value });
            let setting: ConfigView = api.call(if_version(req, version)).await?;
            api.show(&setting)
        }
        ConfigCmd::Delete {
            key,
            if_version: version,
        } => {
            let req = api.request(Method::DELETE, path(&key));
            api.delete(if_version(req, version), &key).await
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn values_fit_in_a_cell() {
        assert_eq!(super::value_cell(&json!("lab")), "lab");
        assert_eq!(super::value_cell(&json!(30)), "30");
        assert_eq!(super::value_cell(&json!(null)), "-");
        assert_eq!(super::value_cell(&json!(["a", 1])), "a,1");
        assert_eq!(
            super::value_cell(&json!({"b": [1, 2], "a": true})),
            "a=true,b=1,2"
        );
    }
}

//! Backups and restores as a test drives them: start one, wait for its end.

use std::time::Duration;

use bcm_api::{BackupView, RestoreView};
use serde_json::{json, Value};

use super::Api;
use crate::wait_until;

impl Api {
    /// `POST /api/v1/backups` with `body` on `node`: the backup, `Err` unless 202.
    pub fn start_backup(&self, node: u64, body: &Value) -> Result<BackupView, String> {
        let reply = self.post(node, "/api/v1/backups", body)?;
        if reply.status != 202 {
            return Err(format!("POST /backups {body}: {reply}"));
        }
        reply.parse()
    }

    /// A plan of `paths` on `source` with `replicas`, its id.
    pub fn create_plan(
        &self,
        node: u64,
        name: &str,
        source: u64,
        paths: &[&str],
        replicas: u32,
    ) -> u64 {
        let body =
            json!({"name": name, "source_node": source, "paths": paths, "replicas": replicas});
        let reply = self.post(node, "/api/v1/plans", &body).unwrap();
        assert_eq!(reply.status, 201, "{reply}");
        reply.json()["id"].as_u64().unwrap()
    }

    /// Waits until backup `id` has ended (succeeded, failed or cancelled).
    pub fn wait_backup(&self, node: u64, id: u64, timeout: Duration) -> BackupView {
        wait_until(timeout, &format!("backup {id} to end"), || {
            let b: BackupView = self.get_as(node, &format!("/api/v1/backups/{id}"))?;
            match b.status.as_str() {
                "pending" | "running" => Err(format!("{} {:?}", b.status.as_str(), b.progress)),
                _ => Ok(b),
            }
        })
    }

    /// `POST /api/v1/backups/{backup}/restore` with `body`: `Err` unless 202.
    pub fn start_restore(
        &self,
        node: u64,
        backup: u64,
        body: &Value,
    ) -> Result<RestoreView, String> {
        let reply = self.post(node, &format!("/api/v1/backups/{backup}/restore"), body)?;
        if reply.status != 202 {
            return Err(format!("POST /backups/{backup}/restore {body}: {reply}"));
        }
        reply.parse()
    }

    /// Waits until restore `id` has ended.
    pub fn wait_restore(&self, node: u64, id: u64, timeout: Duration) -> RestoreView {
        wait_until(timeout, &format!("restore {id} to end"), || {
            let r: RestoreView = self.get_as(node, &format!("/api/v1/restores/{id}"))?;
            match r.status.as_str() {
                "pending" | "running" => Err(format!("{} {:?}", r.status.as_str(), r.progress)),
                _ => Ok(r),
            }
        })
    }
}

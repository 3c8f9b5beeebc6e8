//! Events of `GET /api/v1/events` in plain words, for the dashboard's recent events.

use serde_json::Value;

/// One event as the dashboard lists it.
#[derive(Debug, Clone)]
pub struct RecentEvent {
    pub at_ms: u64,
    pub kind: String,
    pub text: String,
}

impl RecentEvent {
    pub fn time(&self) -> String {
        let t = bcm_api::time::utc(self.at_ms);
        // "YYYY-MM-DD HH:MM:SS UTC" -> "HH:MM:SS"
        t.get(11..19).unwrap_or(&t).to_string()
    }
}

fn num(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "?".into(),
    }
}

/// `kind` is the SSE event name; `data` its JSON body.
pub fn describe(kind: &str, data: &Value) -> String {
    match kind {
        "leader_changed" => match data.get("leader_id").and_then(Value::as_u64) {
            Some(id) => format!("node {id} leads (term {})", num(data, "term")),
            None => format!("no leader (term {}): election under way", num(data, "term")),
        },
        "cluster_initialized" => "the cluster was formed".into(),
        "node_registered" => format!("node {} registered", num(data, "node_id")),
        "node_updated" => format!("node {} reconfigured", num(data, "node_id")),
        "node_status_changed" => format!(
            "node {} is {}",
            num(data, "node_id"),
            data.get("status").and_then(Value::as_str).unwrap_or("?")
        ),
        "backup_manager_assigned" => format!(
            "node {} is the backup manager (epoch {})",
            num(data, "node_id"),
            num(data, "epoch")
        ),
        "config_changed" => format!(
            "config {} set (version {})",
            data.get("key").and_then(Value::as_str).unwrap_or("?"),
            num(data, "version")
        ),
        "config_deleted" => format!(
            "config {} deleted",
            data.get("key").and_then(Value::as_str).unwrap_or("?")
        ),
        "user_changed" => format!("user {} changed", num(data, "user_id")),
        "user_deleted" => format!("user {} removed", num(data, "user_id")),
        "group_changed" => format!(
            "group {} changed",
            data.get("name").and_then(Value::as_str).unwrap_or("?")
        ),
        "plan_changed" => format!("plan {} changed", num(data, "plan_id")),
        "backup_changed" => format!(
            "backup {} is {}",
            num(data, "backup_id"),
            data.get("status").and_then(Value::as_str).unwrap_or("?")
        ),
        "backup_deleted" => format!("backup {} deleted", num(data, "backup_id")),
        "restore_changed" => format!(
            "restore {} is {}",
            num(data, "restore_id"),
            data.get("status").and_then(Value::as_str).unwrap_or("?")
        ),
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn plain_words() {
        assert_eq!(
            super::describe(
                "node_status_changed",
                &json!({"node_id": 3, "status": "down"})
            ),
            "node 3 is down"
        );
        assert_eq!(
            super::describe("leader_changed", &json!({"leader_id": null, "term": 4})),
            "no leader (term 4): election under way"
        );
        assert_eq!(
            super::describe(
                "backup_manager_assigned",
                &json!({"node_id": 2, "epoch": 5})
            ),
            "node 2 is the backup manager (epoch 5)"
        );
    }
}

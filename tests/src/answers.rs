//! Reading values out of API answers: a body as a `bcm_api` type, cluster members,
//! list item ids, Prometheus samples.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A JSON body as a `bcm_api` type; the error names the type and shows the body.
pub(crate) fn decode<T: DeserializeOwned>(body: Value) -> Result<T, String> {
    let what = std::any::type_name::<T>();
    serde_json::from_value(body.clone()).map_err(|e| format!("not a {what}: {e}; in {body}"))
}

/// The member with `id` in a `/api/v1/cluster` answer.
pub fn member(cluster: &Value, id: u64) -> Option<&Value> {
    cluster
        .get("members")?
        .as_array()?
        .iter()
        .find(|m| m.get("id").and_then(Value::as_u64) == Some(id))
}

/// The ids of the items of a `{items: [{id, ...}], total}` answer, in order.
pub fn item_ids(list: &Value) -> Vec<u64> {
    list.get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("id").and_then(Value::as_u64))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn metric_samples_are_read_by_exact_name() {
        let text = "# HELP bcm_raft_term Current Raft term.\n# TYPE bcm_raft_term gauge\n\
                    bcm_raft_term 3\nbcm_raft_term_x 9\n\
                    bcm_http_request_duration_seconds_count{route=\"/x\"} 2\n";
        assert_eq!(metric(text, "bcm_raft_term"), Some(3.0));
        assert_eq!(metric(text, "bcm_raft_leader_id"), None);
        assert_eq!(
            metric(text, "bcm_http_request_duration_seconds_count"),
            None
        );
    }
}

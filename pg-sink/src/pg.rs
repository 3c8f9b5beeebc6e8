//! The Postgres snapshot sink: where operators find the cluster's state with SQL,
//! and where a cluster that lost every disk comes back from.
//!
//! The leader exports the applied state in one transaction: a row in `snapshots`
//! (the encoded state, as in a Raft snapshot) and the relational tables replaced to
//! match it. Exports of one cluster are serialised by an advisory lock and never go
//! backwards: a deposed leader that finishes late finds a newer export and writes
//! nothing. The schema is in `migrations/`, applied at start-up under sqlx's
//! advisory lock, so nodes starting together do not race.

use std::time::Duration;

use bcm_model::{codec, ClusterState};
use bcm_raft_store::StateMachineData;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool, Postgres, Row, Transaction};

/// The schema migrations, embedded from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot reach PostgreSQL: {0}")]
    Connect(String),
    #[error("applying the schema migrations: {0}")]
    Migrate(String),
    #[error("PostgreSQL: {0}")]
    Query(String),
    #[error("{0}")]
    Invalid(String),
}

fn query_err(e: sqlx::Error) -> PgError {
    PgError::Query(e.to_string())
}

/// A pool of connections to the database named by `[postgres] url`.
#[derive(Clone)]
pub struct PgSink {
    pool: PgPool,
}

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exported {
    /// A new snapshot row (its id) and the tables replaced.
    Written { id: i64 },
    /// Postgres already holds an export at this index or later: nothing written.
    AlreadyNewer { index: u64 },
}

/// The newest exported snapshot.
#[derive(Debug, Clone)]
pub struct StoredExport {
    pub id: i64,
    pub cluster_id: String,
    pub node_id: u64,
    pub term: u64,
    pub last_log_index: u64,
    pub created_at: String,
    /// The encoded [`bcm_model::ClusterState`].
    pub data: Vec<u8>,
}

impl PgSink {
    /// Connects (one attempt, bounded by `timeout`).
    pub async fn connect(url: &str, timeout: Duration) -> Result<PgSink, PgError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(timeout)
            .connect(url)
            .await
            .map_err(|e| PgError::Connect(e.to_string()))?;
        Ok(PgSink { pool })
    }

    /// Applies the migrations not applied yet (idempotent; safe when several nodes
    /// start at once: sqlx holds an advisory lock while migrating).
    pub async fn migrate(&self) -> Result<(), PgError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| PgError::Migrate(e.to_string()))
    }

    /// Writes `state` as cluster `cluster_id`'s newest snapshot, exported by node
    /// `node_id`, and keeps the newest `keep` snapshot rows.
    pub async fn export(
        &self,
        cluster_id: &str,
        node_id: u64,
        state: &StateMachineData,
        keep: u32,
    ) -> Result<Exported, PgError> {
        let last = state
            .last_applied
            .ok_or_else(|| PgError::Invalid("nothing applied yet: nothing to export".into()))?;
        let data = codec::encode(&state.state).map_err(|e| PgError::Invalid(e.to_string()))?;
        let membership = serde_json::to_string(&state.last_membership)
            .map_err(|e| PgError::Invalid(e.to_string()))?;

        let mut tx = self.pool.begin().await.map_err(query_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('bcm-export/' || $1, 0))")
            .bind(cluster_id)
            .execute(&mut *tx)
            .await
            .map_err(query_err)?;
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(last_log_index) FROM snapshots WHERE cluster_id = $1")
                .bind(cluster_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(query_err)?;
        if let Some(newest) = newest.filter(|n| *n >= last.index as i64) {
            tx.rollback().await.map_err(query_err)?;
            return Ok(Exported::AlreadyNewer {
                index: newest as u64,
            });
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO snapshots (cluster_id, node_id, term, last_log_index, membership, data) \
             VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING id",
        )
        .bind(cluster_id)
        .bind(node_id as i64)
        .bind(last.leader_id.term as i64)
        .bind(last.index as i64)
        .bind(membership)
        .bind(data)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_err)?;
        replace_tables(&mut tx, cluster_id, state).await?;
        append_audit(&mut tx, cluster_id, &state.state).await?;
        sqlx::query(
            "DELETE FROM snapshots WHERE cluster_id = $1 AND id NOT IN \
             (SELECT id FROM snapshots WHERE cluster_id = $1 \
              ORDER BY last_log_index DESC, id DESC LIMIT $2)",
        )
        .bind(cluster_id)
        .bind(i64::from(keep.max(1)))
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
        tx.commit().await.map_err(query_err)?;
        Ok(Exported::Written { id })
    }

    /// The clusters with snapshots here.
    pub async fn cluster_ids(&self) -> Result<Vec<String>, PgError> {
        sqlx::query_scalar("SELECT DISTINCT cluster_id FROM snapshots ORDER BY cluster_id")
            .fetch_all(&self.pool)
            .await
            .map_err(query_err)
    }

    /// The newest exported snapshot (of `cluster_id`, or of any cluster).
    pub async fn latest(&self, cluster_id: Option<&str>) -> Result<Option<StoredExport>, PgError> {
        let row = sqlx::query(
            "SELECT id, cluster_id, node_id, term, last_log_index, created_at::text, data \
             FROM snapshots WHERE $1::text IS NULL OR cluster_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(cluster_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let get_u64 = |name: &str| -> Result<u64, PgError> {
            row.try_get::<i64, _>(name)
                .map(|v| v as u64)
                .map_err(query_err)
        };
        Ok(Some(StoredExport {
            id: row.try_get("id").map_err(query_err)?,
            cluster_id: row.try_get("cluster_id").map_err(query_err)?,
            node_id: get_u64("node_id")?,
            term: get_u64("term")?,
            last_log_index: get_u64("last_log_index")?,
            created_at: row.try_get("created_at").map_err(query_err)?,
            data: row.try_get("data").map_err(query_err)?,
        }))
    }
}

/// Replaces one cluster's rows in every relational table. Each table is loaded
/// with one statement from a JSON array (`jsonb_to_recordset`).
async fn replace_tables(
    tx: &mut Transaction<'_, Postgres>,
    cluster_id: &str,
    data: &StateMachineData,
) -> Result<(), PgError> {
    // The statements are built from the constants in `tables` only; data goes in binds.
    for (table, columns, select, record, rows) in tables(&data.state) {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE cluster_id = $1"
        )))
        .bind(cluster_id)
        .execute(&mut **tx)
        .await
        .map_err(query_err)?;
        if rows.is_empty() {
            continue;
        }
        let rows = Value::Array(rows).to_string();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (cluster_id, {columns}) \
             SELECT $1, {select} FROM jsonb_to_recordset($2::jsonb) AS r({record})"
        )))
        .bind(cluster_id)
        .bind(rows)
        .execute(&mut **tx)
        .await
        .map_err(query_err)?;
    }
    Ok(())
}

/// Adds the state's audit records newer than the newest already exported (rows
/// of `audit` are never replaced nor deleted: the table keeps the history the
/// state forgets). Inside the export's transaction, under its lock.
async fn append_audit(
    tx: &mut Transaction<'_, Postgres>,
    cluster_id: &str,
    state: &ClusterState,
) -> Result<(), PgError> {
    let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM audit WHERE cluster_id = $1")
        .bind(cluster_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(query_err)?;
    let rows = audit_rows(state, newest.map_or(0, |n| n as u64));
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO audit (cluster_id, id, at, actor, addr, action, target, detail, outcome, reason) \
         SELECT $1, r.id, to_timestamp(r.at_ms / 1000.0), r.actor, r.addr, r.action, r.target, \
                r.detail, r.outcome, r.reason \
         FROM jsonb_to_recordset($2::jsonb) AS r(id bigint, at_ms bigint, actor text, addr text, \
              action text, target text, detail text, outcome text, reason text) \
         ON CONFLICT (cluster_id, id) DO NOTHING",
    )
    .bind(cluster_id)
    .bind(Value::Array(rows).to_string())
    .execute(&mut **tx)
    .await
    .map_err(query_err)?;
    Ok(())
}

/// The audit records of `s` with an id above `after`, as JSON records.
fn audit_rows(s: &ClusterState, after: u64) -> Vec<Value> {
    s.audit
        .after(after)
        .map(|r| {
            let e = &r.entry;
            json!({"id": r.id, "at_ms": e.at, "actor": e.actor, "addr": e.addr,
                   "action": e.action, "target": e.target, "detail": e.detail,
                   "outcome": r.outcome.as_str(), "reason": r.outcome.reason()})
        })
        .collect()
}

/// A relational table: its name, its columns, the select of a row from a JSON
/// record, the record's fields and types, and the state's rows as records.
type Table = (&'static str, &'static str, String, &'static str, Vec<Value>);

/// Every relational table, with the rows of state `s`.
fn tables(s: &ClusterState) -> [Table; 8] {
    let users = rows(s.users.values(), |u| {
        json!({"id": u.id, "name": u.name, "enabled": u.enabled, "groups": u.groups,
               "password_hash": u.password_hash, "created_at_ms": u.created_at})
    });
    let groups = rows(
        s.groups.values(),
        |g| json!({"name": g.name, "permissions": g.permissions, "builtin": g.builtin}),
    );
    let nodes = rows(s.nodes.values(), |n| {
        json!({"id": n.id, "name": n.name, "api_addr": n.api_addr, "rpc_addr": n.rpc_addr,
               "roles": n.roles, "enabled": n.enabled, "labels": n.labels,
               "status": n.status.as_str(), "registered_at_ms": n.registered_at})
    });
    let config = rows(s.config.values(), |e| {
        let value: Value = serde_json::from_str(&e.value_json).unwrap_or(Value::Null);
        json!({"key": e.key, "value": value, "version": e.version, "updated_at_ms": e.updated_at})
    });
    let plans = rows(s.plans.values(), |p| {
        let spec = &p.spec;
        json!({"id": p.id, "name": spec.name, "source_node": spec.source_node,
               "paths": spec.paths, "schedule": spec.schedule, "keep_last": spec.keep_last,
               "replicas": spec.replicas, "enabled": spec.enabled, "created_at_ms": p.created_at})
    });
    let backups = rows(s.backups.values(), |b| {
        json!({"id": b.id, "plan": b.plan, "plan_name": b.plan_name,
               "source_node": b.source_node, "paths": b.paths, "status": b.status.as_str(),
               "size_bytes": b.size_bytes, "storage_nodes": b.storage_nodes,
               "error": b.error, "created_at_ms": b.created_at, "updated_at_ms": b.updated_at,
               "replicas": b.replicas, "files": b.files, "stored_bytes": b.stored_bytes,
               "attempt": b.attempt.number, "finished_at_ms": b.finished_at})
    });
    let replicas: Vec<Value> = s
        .backups
        .values()
        .flat_map(|b| {
            b.storage_nodes
                .iter()
                .map(move |n| json!({"backup": b.id, "node_id": n}))
        })
        .collect();
    let restores = rows(s.restores.values(), |r| {
        json!({"id": r.id, "backup": r.backup, "target_node": r.target_node,
               "target_path": r.target_path, "status": r.status.as_str(), "error": r.error,
               "created_at_ms": r.created_at, "updated_at_ms": r.updated_at,
               "overwrite": r.overwrite, "include": r.include, "files": r.files,
               "bytes": r.bytes, "finished_at_ms": r.finished_at})
    });

    const MS: &str = "to_timestamp(r.{} / 1000.0)";
    let ts = |col: &str| MS.replace("{}", col);
    [
        (
            "users",
            "id, name, enabled, groups, password_hash, created_at",
            format!("r.id, r.name, r.enabled, r.groups, r.password_hash, {}", ts("created_at_ms")),
            "id bigint, name text, enabled boolean, groups text[], password_hash text, created_at_ms bigint",
            users,
        ),
        (
            "groups",
            "name, permissions, builtin",
            "r.name, r.permissions, r.builtin".into(),
            "name text, permissions text[], builtin boolean",
            groups,
        ),
        (
            "nodes",
            "id, name, api_addr, rpc_addr, roles, enabled, labels, status, registered_at",
            format!(
                "r.id, r.name, r.api_addr, r.rpc_addr, r.roles, r.enabled, r.labels, r.status, {}",
                ts("registered_at_ms")
            ),
            "id bigint, name text, api_addr text, rpc_addr text, roles text[], enabled boolean, \
             labels jsonb, status text, registered_at_ms bigint",
            nodes,
        ),
        (
            "config",
            "key, value, version, updated_at",
            format!("r.key, r.value, r.version, {}", ts("updated_at_ms")),
            "key text, value jsonb, version bigint, updated_at_ms bigint",
            config,
        ),
        (
            "plans",
            "id, name, source_node, paths, schedule, keep_last, replicas, enabled, created_at",
            format!(
                "r.id, r.name, r.source_node, r.paths, r.schedule, r.keep_last, r.replicas, r.enabled, {}",
                ts("created_at_ms")
            ),
            "id bigint, name text, source_node bigint, paths text[], schedule text, \
             keep_last integer, replicas integer, enabled boolean, created_at_ms bigint",
            plans,
        ),
        (
            "backups",
            "id, plan, plan_name, source_node, paths, status, size_bytes, storage_nodes, error, \
             created_at, updated_at, replicas, files, stored_bytes, attempt, finished_at",
            format!(
                "r.id, r.plan, r.plan_name, r.source_node, r.paths, r.status, r.size_bytes, \
                 r.storage_nodes, r.error, {}, {}, r.replicas, r.files, r.stored_bytes, \
                 r.attempt, {}",
                ts("created_at_ms"),
                ts("updated_at_ms"),
                ts("finished_at_ms")
            ),
            "id bigint, plan bigint, plan_name text, source_node bigint, paths text[], status text, \
             size_bytes bigint, storage_nodes bigint[], error text, created_at_ms bigint, \
             updated_at_ms bigint, replicas integer, files bigint, stored_bytes bigint, \
             attempt integer, finished_at_ms bigint",
            backups,
        ),
        (
            "backup_replicas",
            "backup, node_id",
            "r.backup, r.node_id".into(),
            "backup bigint, node_id bigint",
            replicas,
        ),
        (
            "restores",
            "id, backup, target_node, target_path, status, error, created_at, updated_at, \
             overwrite, include, files, bytes, finished_at",
            format!(
                "r.id, r.backup, r.target_node, r.target_path, r.status, r.error, {}, {}, \
                 r.overwrite, r.include, r.files, r.bytes, {}",
                ts("created_at_ms"),
                ts("updated_at_ms"),
                ts("finished_at_ms")
            ),
            "id bigint, backup bigint, target_node bigint, target_path text, status text, \
             error text, created_at_ms bigint, updated_at_ms bigint, overwrite boolean, \
             include text, files bigint, bytes bigint, finished_at_ms bigint",
            restores,
        ),
    ]
}

/// The JSON record of each of `records`.
fn rows<'a, T: 'a>(records: impl Iterator<Item = &'a T>, row: impl Fn(&T) -> Value) -> Vec<Value> {
    records.map(row).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bcm_model::{AuditEntry, AuditOutcome, Command, JobStatus, NodeInfo, PlanSpec, Role};

    use super::*;

    /// A state with a row in every table.
    fn example() -> ClusterState {
        let mut s = ClusterState::default();
        let commands = [
            Command::InitCluster {
                cluster_id: "c1".into(),
                token_key: vec![7; 32],
                admin_password_hash: "$argon2id$v=19$x".into(),
                at: 1,
            },
            Command::RegisterNode {
                info: NodeInfo {
                    id: 1,
                    name: "node-1".into(),
                    api_addr: "http://127.0.0.1:8081".into(),
                    rpc_addr: "http://127.0.0.1:9081".into(),
                    roles: vec![Role::Storage],
                },
                at: 2,
            },
            Command::PutConfig {
                key: "a".into(),
                value_json: "{\"b\":1}".into(),
                if_version: None,
                at: 3,
            },
            Command::CreatePlan {
                spec: PlanSpec {
                    name: "etc".into(),
                    source_node: 1,
                    paths: vec!["/etc".into()],
                    schedule: Some("0 3 * * *".into()),
                    keep_last: 3,
                    replicas: 1,
                    enabled: true,
                },
                at: 4,
            },
            Command::CreateBackup {
                plan: Some(1),
                source_node: None,
                paths: vec![],
                at: 5,
            },
            Command::SetBackupStatus {
                id: 1,
                status: JobStatus::Running,
                size_bytes: None,
                storage_nodes: None,
                error: None,
                at: 6,
            },
            Command::SetBackupStatus {
                id: 1,
                status: JobStatus::Succeeded,
                size_bytes: Some(10),
                storage_nodes: Some(vec![1]),
                error: None,
                at: 7,
            },
            Command::CreateRestore {
                backup: 1,
                target_node: 1,
                target_path: "/restore".into(),
                at: 8,
            },
            Command::Audited {
                entry: AuditEntry {
                    at: 9,
                    actor: "admin".into(),
                    addr: Some("192.0.2.7".into()),
                    action: "config.set".into(),
                    target: "b".into(),
                    detail: String::new(),
                },
                inner: Box::new(Command::PutConfig {
                    key: "b".into(),
                    value_json: "2".into(),
                    if_version: None,
                    at: 9,
                }),
            },
            Command::Audit {
                entry: AuditEntry {
                    at: 10,
                    actor: "anonymous".into(),
                    addr: Some("192.0.2.8".into()),
                    action: "login.failed".into(),
                    target: "anonymous".into(),
                    detail: String::new(),
                },
                outcome: AuditOutcome::Refused("unknown user".into()),
            },
        ];
        for (i, c) in commands.iter().enumerate() {
            let applied = s.apply(i as u64 + 1, c);
            assert!(
                !matches!(applied.response, bcm_model::Response::Rejected(_)),
                "{c:?}: {:?}",
                applied.response
            );
        }
        s
    }

    #[test]
    fn every_row_has_exactly_the_fields_of_its_record() {
        for (table, _, _, record, rows) in tables(&example()) {
            let fields: BTreeSet<&str> = record
                .split(',')
                .map(|f| f.split_whitespace().next().unwrap())
                .collect();
            assert!(!rows.is_empty(), "{table}: no rows in the example");
            for row in rows {
                let keys: BTreeSet<&str> = row
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(keys, fields, "{table}");
            }
        }
    }

    #[test]
    fn audit_rows_are_the_records_after_the_newest_exported() {
        let s = example();
        let rows = audit_rows(&s, 0);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            json!({"id": 1, "at_ms": 9, "actor": "admin", "addr": "192.0.2.7",
                   "action": "config.set", "target": "b", "detail": "",
                   "outcome": "ok", "reason": null})
        );
        assert_eq!(rows[1]["reason"], "unknown user");
        assert_eq!(rows[1]["outcome"], "refused");
        let after: Vec<&Value> = rows.iter().filter(|r| r["id"] == 2).collect();
        assert_eq!(
            audit_rows(&s, 1),
            after.into_iter().cloned().collect::<Vec<_>>()
        );
        assert!(audit_rows(&s, 2).is_empty());
    }
}

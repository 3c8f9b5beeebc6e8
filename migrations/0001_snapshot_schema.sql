-- bcm's snapshot export: the cluster's replicated state, written by the Raft leader
-- after each snapshot and at least every postgres.export_interval when something
-- changed. Every export replaces one cluster's rows in one transaction, so a reader
-- always sees one complete snapshot. One database may hold several clusters: every
-- table is keyed by cluster_id.

-- The encoded snapshots themselves: what `bcm node --restore-from-postgres` reads.
CREATE TABLE snapshots (
    id             BIGSERIAL   PRIMARY KEY,
    cluster_id     TEXT        NOT NULL,
    node_id        BIGINT      NOT NULL,   -- the leader that exported it
    term           BIGINT      NOT NULL,   -- term of the last applied entry
    last_log_index BIGINT      NOT NULL,   -- index of the last applied entry
    membership     JSONB       NOT NULL,   -- voters and nodes at that index
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    data           BYTEA       NOT NULL    -- the state machine, encoded (postcard)
);
CREATE INDEX snapshots_latest ON snapshots (cluster_id, last_log_index DESC);

-- The relational view of the latest snapshot, for SQL. No secrets but password
-- hashes: the token signing key and the cluster secret are never written here.
CREATE TABLE users (
    cluster_id    TEXT        NOT NULL,
    id            BIGINT      NOT NULL,
    name          TEXT        NOT NULL,
    enabled       BOOLEAN     NOT NULL,
    groups        TEXT[]      NOT NULL,
    password_hash TEXT        NOT NULL,   -- argon2id PHC string
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cluster_id, id)
);

CREATE TABLE groups (
    cluster_id  TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    permissions TEXT[]  NOT NULL,
    builtin     BOOLEAN NOT NULL,
    PRIMARY KEY (cluster_id, name)
);

CREATE TABLE nodes (
    cluster_id    TEXT        NOT NULL,
    id            BIGINT      NOT NULL,
    name          TEXT        NOT NULL,
    api_addr      TEXT        NOT NULL,
    rpc_addr      TEXT        NOT NULL,
    roles         TEXT[]      NOT NULL,
    enabled       BOOLEAN     NOT NULL,
    labels        JSONB       NOT NULL,
    status        TEXT        NOT NULL,   -- up, down, joining, removed
    registered_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cluster_id, id)
);

CREATE TABLE config (
    cluster_id TEXT        NOT NULL,
    key        TEXT        NOT NULL,
    value      JSONB       NOT NULL,
    version    BIGINT      NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cluster_id, key)
);

CREATE TABLE plans (
    cluster_id  TEXT        NOT NULL,
    id          BIGINT      NOT NULL,
    name        TEXT        NOT NULL,
    source_node BIGINT      NOT NULL,
    paths       TEXT[]      NOT NULL,
    schedule    TEXT,                     -- cron expression, NULL: on demand only
    keep_last   INTEGER     NOT NULL,
    replicas    INTEGER     NOT NULL,
    enabled     BOOLEAN     NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cluster_id, id)
);

CREATE TABLE backups (
    cluster_id    TEXT        NOT NULL,
    id            BIGINT      NOT NULL,
    plan          BIGINT,                 -- NULL: ad hoc
    plan_name     TEXT,
    source_node   BIGINT      NOT NULL,
    paths         TEXT[]      NOT NULL,
    status        TEXT        NOT NULL,   -- pending, running, succeeded, failed, cancelled
    size_bytes    BIGINT,
    storage_nodes BIGINT[]    NOT NULL,
    error         TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cluster_id, id)
);

CREATE TABLE restores (
    cluster_id  TEXT        NOT NULL,
    id          BIGINT      NOT NULL,
    backup      BIGINT      NOT NULL,
    target_node BIGINT      NOT NULL,
    target_path TEXT        NOT NULL,
    status      TEXT        NOT NULL,
    error       TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cluster_id, id)
);

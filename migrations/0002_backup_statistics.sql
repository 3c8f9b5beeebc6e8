-- The data plane's numbers and placement, queryable in SQL: each backup's
-- statistics, each restore's options and results, and which storage node holds
-- a replica of which backup (one row per replica).

ALTER TABLE backups
    ADD COLUMN replicas     INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN files        BIGINT,               -- regular files backed up
    ADD COLUMN stored_bytes BIGINT,               -- new bytes it added after dedup and compression
    ADD COLUMN attempt      INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN finished_at  TIMESTAMPTZ;

ALTER TABLE restores
    ADD COLUMN overwrite   BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN include     TEXT,
    ADD COLUMN files       BIGINT,
    ADD COLUMN bytes       BIGINT,
    ADD COLUMN finished_at TIMESTAMPTZ;

CREATE TABLE backup_replicas (
    cluster_id TEXT   NOT NULL,
    backup     BIGINT NOT NULL,
    node_id    BIGINT NOT NULL,   -- a storage node (see nodes)
    PRIMARY KEY (cluster_id, backup, node_id)
);
CREATE INDEX backup_replicas_by_node ON backup_replicas (cluster_id, node_id);

-- The audit log: who did what, when, from which address, and how it ended.
-- Unlike the tables replaced by every export, rows here are only ever added:
-- each export appends the records newer than the newest one already here, so
-- the table keeps the whole history while the cluster keeps only its newest
-- records (10 000). Never a password, a hash, a token or a config value.
CREATE TABLE audit (
    cluster_id TEXT        NOT NULL,
    id         BIGINT      NOT NULL,   -- grows by one per record, per cluster
    at         TIMESTAMPTZ NOT NULL,   -- the clock of the node that took the request
    actor      TEXT        NOT NULL,   -- a user name, `node N`, or `anonymous`
    addr       TEXT,                   -- the client's address
    action     TEXT        NOT NULL,   -- login, login.failed, users.create, nodes.drain, ...
    target     TEXT        NOT NULL,   -- a user or group name, `node 3`, a config key, ...
    detail     TEXT        NOT NULL,   -- what was asked, in short
    outcome    TEXT        NOT NULL,   -- ok, refused
    reason     TEXT,                   -- why it was refused
    PRIMARY KEY (cluster_id, id)
);
CREATE INDEX audit_by_time ON audit (cluster_id, at DESC);
CREATE INDEX audit_by_actor ON audit (cluster_id, actor, at DESC);

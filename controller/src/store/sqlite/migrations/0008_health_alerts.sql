-- coloc controller schema, version 8: node health and alerts
-- (docs/HEALTH.md).

-- Each node's last accepted health report, as the agent sent it
-- (coloc.agent.v1.HealthReport, protobuf), so that a restart of colocd
-- keeps the last known health. Written in batches by `health-flush`.
CREATE TABLE node_health (
    node          TEXT    NOT NULL PRIMARY KEY REFERENCES nodes (name),
    received_unix INTEGER NOT NULL,
    report        BLOB    NOT NULL
) STRICT;

-- The alerts colocd's rules raise. subject_node and subject_tenant are
-- empty strings rather than NULL when the subject has none, so that the
-- deduplication index below compares them.
CREATE TABLE alerts (
    id                  INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    rule                TEXT    NOT NULL,
    severity            TEXT    NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    subject_kind        TEXT    NOT NULL,
    subject_node        TEXT    NOT NULL,
    subject_name        TEXT    NOT NULL,
    subject_tenant      TEXT    NOT NULL,
    state               TEXT    NOT NULL CHECK (state IN ('firing', 'resolved')),
    summary             TEXT    NOT NULL,
    started_unix        INTEGER NOT NULL,
    ended_unix          INTEGER,
    acked_by            TEXT,
    acked_unix          INTEGER,
    ack_comment         TEXT,
    silenced_until_unix INTEGER,
    silenced_by         TEXT,
    silence_comment     TEXT,
    CHECK ((state = 'firing') = (ended_unix IS NULL))
) STRICT;

-- At most one firing alert per rule and subject.
CREATE UNIQUE INDEX alerts_firing ON alerts (rule, subject_kind, subject_node, subject_name)
    WHERE state = 'firing';
CREATE INDEX alerts_node ON alerts (subject_node, id);
CREATE INDEX alerts_tenant ON alerts (subject_tenant, id);

-- The notifier's outbox: one row per firing and resolution, written in the
-- transaction that changes the alert; notified_unix is set once the
-- notifier has sent (or deliberately skipped) it.
CREATE TABLE alert_events (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    alert_id      INTEGER NOT NULL REFERENCES alerts (id),
    kind          TEXT    NOT NULL CHECK (kind IN ('firing', 'resolved')),
    created_unix  INTEGER NOT NULL,
    silenced      INTEGER NOT NULL CHECK (silenced IN (0, 1)),
    notified_unix INTEGER
) STRICT;

CREATE INDEX alert_events_pending ON alert_events (id) WHERE notified_unix IS NULL;

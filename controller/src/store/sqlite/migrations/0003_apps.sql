-- coloc controller schema, version 3: app requests, their discussion, and
-- app instances (docs/APPS.md).

CREATE TABLE app_requests (
    id           INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    tenant       TEXT    NOT NULL REFERENCES tenants (name),
    -- Catalog name; the catalog may change, the request keeps its name.
    app          TEXT    NOT NULL,
    node         TEXT    NOT NULL REFERENCES nodes (name),
    volume_id    TEXT    NOT NULL REFERENCES volumes (id),
    requested_by TEXT    NOT NULL,
    created_unix INTEGER NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    decided_by   TEXT,
    decided_unix INTEGER,
    CHECK ((state = 'pending') = (decided_by IS NULL)),
    CHECK ((decided_by IS NULL) = (decided_unix IS NULL))
) STRICT;

-- One open request per tenant and app.
CREATE UNIQUE INDEX app_requests_pending ON app_requests (tenant, app)
    WHERE state = 'pending';
CREATE INDEX app_requests_tenant ON app_requests (tenant, id);

-- The request's own comment first, then the discussion, then the decision.
CREATE TABLE app_request_comments (
    request_id INTEGER NOT NULL REFERENCES app_requests (id),
    seq        INTEGER NOT NULL CHECK (seq >= 0),
    author     TEXT    NOT NULL,
    at_unix    INTEGER NOT NULL,
    text       TEXT    NOT NULL,
    PRIMARY KEY (request_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE app_instances (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    tenant        TEXT    NOT NULL REFERENCES tenants (name),
    app           TEXT    NOT NULL,
    node          TEXT    NOT NULL REFERENCES nodes (name),
    volume_id     TEXT    NOT NULL REFERENCES volumes (id),
    -- 127.0.0.1:<port> on the node.
    port          INTEGER NOT NULL CHECK (port BETWEEN 20000 AND 65535),
    state         TEXT    NOT NULL CHECK (state IN ('running', 'stopped', 'removed')),
    restart_nonce INTEGER NOT NULL DEFAULT 0 CHECK (restart_nonce >= 0),
    request_id    INTEGER NOT NULL UNIQUE REFERENCES app_requests (id),
    created_unix  INTEGER NOT NULL,
    -- Removed, and the agent reported the unit gone (or a newer instance
    -- of the same app took the unit over): out of the desired
    -- configuration, kept for the record.
    gone          INTEGER NOT NULL DEFAULT 0 CHECK (gone IN (0, 1)),
    -- coloc.agent.v1.AppStatus, protobuf-encoded; NULL before a report.
    observed      BLOB,
    CHECK (gone = 0 OR state = 'removed')
) STRICT;

-- "<tenant>/<app>" names one instance cooperative-wide: its host name
-- "<app>.<tenant>.<domain>" must be unique.
CREATE UNIQUE INDEX app_instances_live ON app_instances (tenant, app)
    WHERE state <> 'removed';
-- One unit per tenant and app on a node.
CREATE UNIQUE INDEX app_instances_unit ON app_instances (node, tenant, app)
    WHERE gone = 0;
-- A port serves one instance on its node until that one is gone.
CREATE UNIQUE INDEX app_instances_port ON app_instances (node, port)
    WHERE gone = 0;

-- coloc controller schema, version 1.
--
-- Tables are STRICT so that a value of the wrong type is refused instead of
-- silently stored. Timestamps are Unix seconds (audit: milliseconds).
-- Names are the validated slugs of coloc_proto::domain; the store does not
-- re-check them on write, and refuses a row that does not parse on read.

CREATE TABLE sites (
    name         TEXT    NOT NULL PRIMARY KEY,
    country      TEXT    NOT NULL,
    city         TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    created_unix INTEGER NOT NULL
) STRICT;

CREATE TABLE join_tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    site         TEXT    NOT NULL REFERENCES sites (name),
    secret_hash  TEXT    NOT NULL UNIQUE,
    created_unix INTEGER NOT NULL,
    expires_unix INTEGER NOT NULL,
    created_by   TEXT    NOT NULL,
    -- History, not a reference: the token keeps naming the node it enrolled
    -- even if that node is removed one day.
    used_by_node TEXT,
    used_unix    INTEGER,
    CHECK ((used_by_node IS NULL) = (used_unix IS NULL))
) STRICT;

CREATE TABLE nodes (
    name               TEXT    NOT NULL PRIMARY KEY,
    site               TEXT    NOT NULL REFERENCES sites (name),
    enrolled_unix      INTEGER NOT NULL,
    last_seen_unix     INTEGER,
    conn_state         TEXT    NOT NULL
        CHECK (conn_state IN ('enrolling', 'connected', 'disconnected', 'unreachable')),
    conn_changed_unix  INTEGER NOT NULL,
    draining           INTEGER NOT NULL DEFAULT 0 CHECK (draining IN (0, 1)),
    -- JSON object of string to string.
    labels             TEXT    NOT NULL DEFAULT '{}',
    desired_generation INTEGER NOT NULL CHECK (desired_generation >= 0),
    applied_generation INTEGER NOT NULL CHECK (applied_generation >= 0),
    last_outcome       INTEGER NOT NULL DEFAULT 0,
    last_message       TEXT    NOT NULL DEFAULT '',
    -- coloc.agent.v1.NodeFacts, protobuf-encoded.
    facts              BLOB,
    cert_fingerprint   TEXT    NOT NULL
) STRICT;

CREATE INDEX nodes_site ON nodes (site);
-- A certificate authenticates exactly one node.
CREATE UNIQUE INDEX nodes_cert_fingerprint ON nodes (cert_fingerprint);
-- mark_unreachable scans disconnected nodes by age.
CREATE INDEX nodes_conn ON nodes (conn_state, conn_changed_unix);

CREATE TABLE tenants (
    name               TEXT    NOT NULL PRIMARY KEY,
    display_name       TEXT    NOT NULL,
    offer              TEXT    NOT NULL CHECK (offer IN ('responsable', 'participatif')),
    membership_expires TEXT    NOT NULL,
    created_unix       INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    name         TEXT    NOT NULL PRIMARY KEY,
    -- NULL for the cooperative's admins.
    tenant       TEXT    REFERENCES tenants (name),
    role         TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'member')),
    display_name TEXT    NOT NULL,
    created_unix INTEGER NOT NULL
) STRICT;

CREATE INDEX users_tenant ON users (tenant);

CREATE TABLE node_grants (
    user_name TEXT NOT NULL REFERENCES users (name),
    node_name TEXT NOT NULL REFERENCES nodes (name),
    PRIMARY KEY (user_name, node_name)
) STRICT, WITHOUT ROWID;

-- Foreign keys need an index on the child side, or every parent check scans.
CREATE INDEX node_grants_node ON node_grants (node_name);

CREATE TABLE api_tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    user_name    TEXT    NOT NULL REFERENCES users (name),
    description  TEXT    NOT NULL,
    secret_hash  TEXT    NOT NULL,
    created_unix INTEGER NOT NULL,
    expires_unix INTEGER NOT NULL,
    revoked_unix INTEGER
) STRICT;

CREATE UNIQUE INDEX api_tokens_secret_hash ON api_tokens (secret_hash);
CREATE INDEX api_tokens_user ON api_tokens (user_name);

CREATE TABLE user_certs (
    fingerprint  TEXT    NOT NULL PRIMARY KEY,
    user_name    TEXT    NOT NULL REFERENCES users (name),
    created_unix INTEGER NOT NULL,
    expires_unix INTEGER NOT NULL
) STRICT;

CREATE INDEX user_certs_user ON user_certs (user_name);

-- AUTOINCREMENT: an id is never reused, so "id < before" paging stays
-- stable and a gap in ids is visible.
-- No foreign key on tenant: a denied request about a tenant that does not
-- exist is still recorded.
CREATE TABLE audit (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at_unix_ms INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    tenant     TEXT,
    outcome    TEXT    NOT NULL CHECK (outcome IN ('allowed', 'denied', 'failed')),
    detail     TEXT    NOT NULL
) STRICT;

CREATE INDEX audit_tenant ON audit (tenant, id);
CREATE INDEX audit_actor ON audit (actor, id);

-- The audit log is append-only, whatever the code above it does.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit log is append-only: DELETE refused');
END;

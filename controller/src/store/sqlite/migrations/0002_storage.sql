-- coloc controller schema, version 2: storage pools and volumes
-- (docs/STORAGE.md), and the tenants' storage settings.

-- 100 GiB: colocd's default_tenant_quota_bytes when this migration was
-- written; new tenants get the configured value.
ALTER TABLE tenants ADD COLUMN storage_quota_bytes INTEGER NOT NULL DEFAULT 107374182400
    CHECK (storage_quota_bytes >= 0);
ALTER TABLE tenants ADD COLUMN volume_grace_days INTEGER NOT NULL DEFAULT 30
    CHECK (volume_grace_days BETWEEN 1 AND 3650);
-- uid = gid of the tenant's files on every node. Nullable only because
-- SQLite cannot add a NOT NULL column without a default; the store always
-- sets it and refuses a row without one on read.
ALTER TABLE tenants ADD COLUMN posix_id INTEGER CHECK (posix_id >= 200000);

-- Existing tenants get ids in name order.
UPDATE tenants SET posix_id = 200000
    + (SELECT count(*) FROM tenants AS earlier WHERE earlier.name < tenants.name);

CREATE UNIQUE INDEX tenants_posix_id ON tenants (posix_id);

CREATE TABLE pools (
    node         TEXT    NOT NULL REFERENCES nodes (name),
    name         TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('zfs', 'lvm-thin')),
    layout       TEXT    NOT NULL CHECK (layout IN ('single', 'mirror', 'raidz1', 'raidz2')),
    -- JSON array of "serial:..." / "id:..." strings.
    disks        TEXT    NOT NULL,
    force        INTEGER NOT NULL CHECK (force IN (0, 1)),
    created_unix INTEGER NOT NULL,
    -- coloc.agent.v1.PoolStatus, protobuf-encoded; NULL before a report.
    observed     BLOB,
    -- coloc.agent.v1.OrphanVolume messages, each length-delimited.
    orphans      BLOB,
    PRIMARY KEY (node, name)
) STRICT;

CREATE TABLE volumes (
    id                TEXT    NOT NULL PRIMARY KEY,
    tenant            TEXT    NOT NULL REFERENCES tenants (name),
    name              TEXT    NOT NULL,
    node              TEXT    NOT NULL,
    pool              TEXT    NOT NULL,
    size_bytes        INTEGER NOT NULL CHECK (size_bytes > 0),
    reservation_bytes INTEGER NOT NULL CHECK (reservation_bytes BETWEEN 0 AND size_bytes),
    encrypted         INTEGER NOT NULL CHECK (encrypted IN (0, 1)),
    lifecycle         TEXT    NOT NULL
        CHECK (lifecycle IN ('active', 'retained', 'purging', 'destroyed')),
    created_unix      INTEGER NOT NULL,
    deleted_unix      INTEGER,
    purge_after_unix  INTEGER,
    -- JSON array of snapshot names, oldest first.
    snapshots         TEXT    NOT NULL DEFAULT '[]',
    allow_shrink      INTEGER NOT NULL DEFAULT 0 CHECK (allow_shrink IN (0, 1)),
    -- coloc.agent.v1.VolumeStatus, protobuf-encoded; NULL before a report.
    observed          BLOB,
    FOREIGN KEY (node, pool) REFERENCES pools (node, name),
    CHECK ((lifecycle = 'active') = (deleted_unix IS NULL)),
    CHECK ((deleted_unix IS NULL) = (purge_after_unix IS NULL))
) STRICT;

-- "<tenant>/<name>" names one volume among those not destroyed.
CREATE UNIQUE INDEX volumes_tenant_name ON volumes (tenant, name)
    WHERE lifecycle <> 'destroyed';
CREATE INDEX volumes_node ON volumes (node, lifecycle);
-- The background task looks for retained volumes by purge time.
CREATE INDEX volumes_purge ON volumes (lifecycle, purge_after_unix);

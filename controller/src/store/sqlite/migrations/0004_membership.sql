-- coloc controller schema, version 4: what the membership task last
-- recorded for each tenant, and admins' suspension of a tenant's apps
-- (docs/DECISIONS.md, "Issue 10 — security", membership).

-- The membership phase the `membership` background task last wrote to the
-- audit log, so that each transition is recorded once. The phase itself is
-- computed from membership_expires, colocd.toml's grace and the clock;
-- this column only remembers what was said. Existing tenants start
-- 'current': an expired one gets its entry at the task's first pass.
ALTER TABLE tenants ADD COLUMN membership_noted TEXT NOT NULL DEFAULT 'current'
    CHECK (membership_noted IN ('current', 'expired', 'frozen'));

-- Suspended by an admin (all three set) or not (all three NULL/empty): the
-- tenant's app instances are sent stopped to their nodes.
ALTER TABLE tenants ADD COLUMN suspended_unix INTEGER;
ALTER TABLE tenants ADD COLUMN suspended_by TEXT
    CHECK ((suspended_by IS NULL) = (suspended_unix IS NULL));
ALTER TABLE tenants ADD COLUMN suspended_reason TEXT NOT NULL DEFAULT '';

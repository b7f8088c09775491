-- coloc controller schema, version 6: node certificates with their
-- lifetime and the one waiting to replace them, and removed nodes
-- (docs/DECISIONS.md, "Issue 10 — security", "Node removal and
-- certificates").

-- The certificate a node uses: valid until cert_not_after_unix, due for
-- renewal from cert_renew_after_unix (rules::certs::renew_after). Nodes
-- enrolled before this version hold a five-year certificate signed at
-- enrollment, which is exactly what is written here.
ALTER TABLE nodes ADD COLUMN cert_not_after_unix INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN cert_renew_after_unix INTEGER NOT NULL DEFAULT 0;
UPDATE nodes SET cert_not_after_unix = enrolled_unix + 5 * 365 * 86400,
    cert_renew_after_unix = enrolled_unix + (2 * 5 * 365 * 86400) / 3;

-- A renewed certificate the node has not used yet. The current one stays
-- valid until the node opens a session with this one, which then replaces
-- it (and the old one is refused from then on).
ALTER TABLE nodes ADD COLUMN next_cert_fingerprint TEXT;
ALTER TABLE nodes ADD COLUMN next_cert_not_after_unix INTEGER;
ALTER TABLE nodes ADD COLUMN next_cert_renew_after_unix INTEGER;

-- Decommissioned by an admin (`coloc node remove`): the row stays, with
-- its history; its certificates are refused; its volumes and instances
-- are orphans until an admin deletes them.
ALTER TABLE nodes ADD COLUMN removed_unix INTEGER;
ALTER TABLE nodes ADD COLUMN removed_by TEXT;

-- A certificate authenticates exactly one node, current or next.
CREATE UNIQUE INDEX nodes_next_cert_fingerprint ON nodes (next_cert_fingerprint)
    WHERE next_cert_fingerprint IS NOT NULL;
-- The renewal task looks for live nodes whose certificate is due.
CREATE INDEX nodes_cert_renew ON nodes (cert_renew_after_unix) WHERE removed_unix IS NULL;

-- coloc controller schema, version 5: which credential minted each token
-- and certificate, certificate serials and revocation, disabled and
-- deleted users (docs/DECISIONS.md, "Issue 10 — security").

-- A minted credential names its minter: a token (minted_by_token) or a
-- certificate (minted_by_cert, its serial), never both; neither for the
-- roots colocd mints itself (the first admin's token from colocd init) and for the
-- credentials of schema version 4, whose minter was not recorded. History,
-- not a reference: the minter's row goes when its user is deleted, after
-- everything it minted was revoked.
ALTER TABLE api_tokens ADD COLUMN minted_by_token TEXT;
ALTER TABLE api_tokens ADD COLUMN minted_by_cert TEXT
    CHECK (minted_by_cert IS NULL OR minted_by_token IS NULL);

-- Revocation walks down from a credential to what it minted.
CREATE INDEX api_tokens_minted_by_token ON api_tokens (minted_by_token);
CREATE INDEX api_tokens_minted_by_cert ON api_tokens (minted_by_cert);

-- The serial is how people name a certificate. Certificates issued before
-- this version have no recorded serial: theirs is their fingerprint (64
-- hex digits, never the 32 of a serial colocd chooses).
ALTER TABLE user_certs ADD COLUMN serial TEXT NOT NULL DEFAULT '';
UPDATE user_certs SET serial = fingerprint;
CREATE UNIQUE INDEX user_certs_serial ON user_certs (serial);
ALTER TABLE user_certs ADD COLUMN revoked_unix INTEGER;
ALTER TABLE user_certs ADD COLUMN minted_by_token TEXT;
ALTER TABLE user_certs ADD COLUMN minted_by_cert TEXT
    CHECK (minted_by_cert IS NULL OR minted_by_token IS NULL);

CREATE INDEX user_certs_minted_by_token ON user_certs (minted_by_token);
CREATE INDEX user_certs_minted_by_cert ON user_certs (minted_by_cert);

-- A disabled user's every credential is refused; NULL: enabled.
ALTER TABLE users ADD COLUMN disabled_unix INTEGER;

-- Names of deleted users, never given again: the audit log, requests and
-- comments keep naming the person who had it.
CREATE TABLE deleted_users (
    name         TEXT    NOT NULL PRIMARY KEY,
    deleted_unix INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

//! The database file: WAL, reopening, schema versions and migrations of
//! existing data.

use rusqlite::Connection;

use super::fixtures::*;
use crate::store::prelude::*;
use crate::store::sqlite::{MIGRATIONS, SCHEMA_VERSION, SqliteStore, user_version};
use crate::store::{AuditFilter, AuditOutcome, StoreError};

#[tokio::test]
async fn a_file_database_uses_wal_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("colocd.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.path(), Some(path.as_path()));
        store.create_site(site("paris-1")).await.unwrap();
        store
            .create_join_token(join_token("jt-1", "paris-1", NOW + 3600))
            .await
            .unwrap();
        store
            .enroll_node("hash-of-jt-1", new_node("n1"), NOW)
            .await
            .unwrap();
        store
            .append_audit(audit(1000, "user:alice", None, AuditOutcome::Allowed))
            .await
            .unwrap();
        let conn = store.conn.lock().unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "synchronous=NORMAL");
        let fk: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert!(fk);
    }

    // Reopening runs no migration again and loses nothing.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.list_sites().await.unwrap(), [site("paris-1")]);
    let node = store.get_node(&node_name("n1")).await.unwrap();
    assert_eq!(node.facts, Some(facts("n1")));
    assert_eq!(
        store
            .list_audit(AuditFilter::default())
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
    let err = store
        .enroll_node("hash-of-jt-1", new_node("n2"), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::JoinTokenUsed { .. }), "{err:?}");
    let version = user_version(&store.conn.lock().unwrap()).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[tokio::test]
async fn a_database_from_a_newer_colocd_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("colocd.db");
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err:?}"
    );
}

#[test]
fn in_memory_schema_is_at_the_current_version() {
    let store = SqliteStore::open_in_memory().unwrap();
    let version = user_version(&store.conn.lock().unwrap()).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[tokio::test]
async fn the_storage_migration_gives_existing_tenants_ids_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("colocd.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        for name in ["asso-b", "asso-a", "asso-c"] {
            conn.execute(
                "INSERT INTO tenants (name, display_name, offer, membership_expires, \
                 created_unix) VALUES (?1, '', 'participatif', '2099-12-31', 0)",
                [name],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    let tenants = store.list_tenants().await.unwrap();
    let ids: Vec<u32> = tenants.iter().map(|t| t.posix_id).collect();
    assert_eq!(ids, [200_000, 200_001, 200_002], "in name order");
    assert!(tenants.iter().all(|t| t.storage_quota_bytes == 100 * GIB
        && t.volume_grace_days == 30
        && t.storage_used_bytes == 0));
    let d = store.create_tenant(tenant("asso-d")).await.unwrap();
    assert_eq!(d.posix_id, 200_003);
}

#[tokio::test]
async fn the_credentials_migration_keeps_existing_credentials_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("colocd.db");
    let fingerprint = "ab".repeat(32);
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO users (name, tenant, role, display_name, created_unix) \
             VALUES ('root', NULL, 'admin', '', 0); \
             INSERT INTO api_tokens (id, user_name, description, secret_hash, created_unix, \
             expires_unix, revoked_unix) VALUES ('tok-1', 'root', '', 'h1', 0, {NOW}, NULL); \
             INSERT INTO user_certs (fingerprint, user_name, created_unix, expires_unix) \
             VALUES ('{fingerprint}', 'root', 0, {NOW});"
        ))
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let root = store.get_user(&user_name("root")).await.unwrap();
    assert_eq!(root.disabled_unix, None);
    let token = store.get_api_token("tok-1").await.unwrap();
    assert_eq!((token.minted_by, token.revoked_unix), (None, None));
    // A certificate from before goes by its fingerprint, and is revocable.
    let cert = store
        .user_cert_by_fingerprint(&fingerprint)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cert.serial.as_str(), fingerprint);
    assert_eq!((cert.minted_by, cert.revoked_unix), (None, None));
    let revoked = store.revoke_user_cert(&cert.serial, 5).await.unwrap();
    assert_eq!(revoked.record.revoked_unix, Some(5));
}

#[tokio::test]
async fn the_node_lifecycle_migration_dates_existing_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("colocd.db");
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 5).unwrap();
        conn.execute_batch(
            "INSERT INTO sites (name, country, city, description, created_unix) \
             VALUES ('paris-1', 'FR', '', '', 0); \
             INSERT INTO nodes (name, site, enrolled_unix, conn_state, conn_changed_unix, \
             desired_generation, applied_generation, cert_fingerprint) \
             VALUES ('n1', 'paris-1', 1800000000, 'enrolling', 1800000000, 1, 0, 'fp-n1');",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let n1 = store.get_node(&node_name("n1")).await.unwrap();
    // Signed at enrollment for five years, as colocd did before.
    let five_years = 5 * 365 * 86_400;
    assert_eq!(n1.cert.fingerprint, "fp-n1");
    assert_eq!(n1.cert.not_after_unix, 1_800_000_000 + five_years);
    assert_eq!(n1.cert.renew_after_unix, 1_800_000_000 + five_years * 2 / 3);
    assert_eq!((n1.next_cert, n1.removed), (None, None));
}

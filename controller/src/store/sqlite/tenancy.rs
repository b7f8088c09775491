//! Tenants, users, node grants, API tokens and user certificates in
//! SQLite.
//!
//! A tenant's record carries what its volumes use (the sum over the
//! storage area's `volumes` table, in [`TENANT_SELECT`]), because the
//! quota is a tenant's figure; [`load_tenant`] is what the storage and
//! apps areas read inside their transactions.

use async_trait::async_trait;
use coloc_proto::domain::{NodeName, TenantName, UserName};
use rusqlite::{Connection, Row, params};

use super::nodes::{node_exists, require_live_node};
use super::{
    Db, SqliteStore, immediate, insert_err, not_found, parsed, parsed_opt, query_all, query_opt,
    small, to_i64, unsigned,
};
use crate::store::{
    ApiTokenRecord, FIRST_POSIX_ID, StoreResult, TenancyStore, TenantRecord, TenantStorageChange,
    UnixSecs, UserCertRecord, UserRecord,
};

fn tenant_from_row(row: &Row<'_>) -> rusqlite::Result<TenantRecord> {
    Ok(TenantRecord {
        name: parsed(row, 0, TenantName::new)?,
        display_name: row.get(1)?,
        offer: parsed(row, 2, |s| s.parse())?,
        membership_expires: row.get(3)?,
        created_unix: row.get(4)?,
        storage_quota_bytes: unsigned(row, 5)?,
        volume_grace_days: small(row, 6)?,
        // NULL (a row the migration did not fill) fails here, as it should.
        posix_id: small(row, 7)?,
        storage_used_bytes: unsigned(row, 8)?,
    })
}

/// The last column is what counts against the quota
/// ([`crate::rules::quota`]): the tenant's volumes in use or restorable,
/// both still on disk (docs/STORAGE.md).
const TENANT_SELECT: &str = "SELECT name, display_name, offer, membership_expires, created_unix, \
     storage_quota_bytes, volume_grace_days, posix_id, \
     (SELECT coalesce(sum(v.size_bytes), 0) FROM volumes AS v \
      WHERE v.tenant = tenants.name AND v.lifecycle IN ('active', 'retained')) \
     FROM tenants";

pub(super) fn load_tenant(conn: &Connection, name: &str) -> StoreResult<TenantRecord> {
    query_opt(
        conn,
        &format!("{TENANT_SELECT} WHERE name = ?1"),
        [name],
        tenant_from_row,
    )?
    .ok_or_else(|| not_found("tenant", name))
}

/// A user without its grants; see [`with_grants`].
fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: parsed(row, 0, UserName::new)?,
        tenant: parsed_opt(row, 1, TenantName::new)?,
        role: parsed(row, 2, |s| s.parse())?,
        display_name: row.get(3)?,
        created_unix: row.get(4)?,
        node_grants: Vec::new(),
    })
}

const USER_SELECT: &str = "SELECT name, tenant, role, display_name, created_unix FROM users";

fn with_grants(conn: &Connection, mut user: UserRecord) -> StoreResult<UserRecord> {
    user.node_grants = query_all(
        conn,
        "SELECT node_name FROM node_grants WHERE user_name = ?1 ORDER BY node_name",
        [user.name.as_str()],
        |row| parsed(row, 0, NodeName::new),
    )?;
    Ok(user)
}

fn load_user(conn: &Connection, name: &str) -> StoreResult<UserRecord> {
    let user = query_opt(
        conn,
        &format!("{USER_SELECT} WHERE name = ?1"),
        [name],
        user_from_row,
    )?
    .ok_or_else(|| not_found("user", name))?;
    with_grants(conn, user)
}

fn user_exists(conn: &Connection, name: &str) -> StoreResult<bool> {
    conn.prepare_cached("SELECT 1 FROM users WHERE name = ?1")
        .db()?
        .exists([name])
        .db()
}

fn api_token_from_row(row: &Row<'_>) -> rusqlite::Result<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: row.get(0)?,
        user: parsed(row, 1, UserName::new)?,
        description: row.get(2)?,
        secret_hash: row.get(3)?,
        created_unix: row.get(4)?,
        expires_unix: row.get(5)?,
        revoked_unix: row.get(6)?,
    })
}

const API_TOKEN_SELECT: &str = "SELECT id, user_name, description, secret_hash, created_unix, \
     expires_unix, revoked_unix FROM api_tokens";

fn load_api_token(conn: &Connection, id: &str) -> StoreResult<ApiTokenRecord> {
    query_opt(
        conn,
        &format!("{API_TOKEN_SELECT} WHERE id = ?1"),
        [id],
        api_token_from_row,
    )?
    .ok_or_else(|| not_found("api token", id))
}

fn user_cert_from_row(row: &Row<'_>) -> rusqlite::Result<UserCertRecord> {
    Ok(UserCertRecord {
        fingerprint: row.get(0)?,
        user: parsed(row, 1, UserName::new)?,
        created_unix: row.get(2)?,
        expires_unix: row.get(3)?,
    })
}

#[async_trait]
impl TenancyStore for SqliteStore {
    // ---- tenants

    async fn create_tenant(&self, tenant: TenantRecord) -> StoreResult<TenantRecord> {
        self.write(move |tx| {
            // Inside the write transaction: two creations cannot pick the
            // same id. Ids are never reused (tenants are never deleted
            // today; max + 1 stays right if they are one day).
            let posix_id: i64 = tx
                .prepare_cached("SELECT max(?1, coalesce(max(posix_id) + 1, ?1)) FROM tenants")
                .db()?
                .query_row([i64::from(FIRST_POSIX_ID)], |row| row.get(0))
                .db()?;
            tx.prepare_cached(
                "INSERT INTO tenants (name, display_name, offer, membership_expires, \
                 created_unix, storage_quota_bytes, volume_grace_days, posix_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .db()?
            .execute(params![
                tenant.name.as_str(),
                tenant.display_name,
                tenant.offer.as_str(),
                tenant.membership_expires,
                tenant.created_unix,
                to_i64("storage quota", tenant.storage_quota_bytes)?,
                tenant.volume_grace_days,
                posix_id
            ])
            .map_err(|e| insert_err(e, ("tenant", tenant.name.as_str()), ("tenant", "")))?;
            let record = load_tenant(tx, tenant.name.as_str())?;
            Ok(record)
        })
        .await
    }

    async fn get_tenant(&self, name: &TenantName) -> StoreResult<TenantRecord> {
        let name = name.clone();
        self.run(move |conn| load_tenant(conn, name.as_str())).await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        self.run(|conn| {
            query_all(
                conn,
                &format!("{TENANT_SELECT} ORDER BY name"),
                [],
                tenant_from_row,
            )
        })
        .await
    }

    async fn set_tenant_storage(
        &self,
        name: &TenantName,
        change: TenantStorageChange,
    ) -> StoreResult<TenantRecord> {
        let name = name.clone();
        let quota = change
            .storage_quota_bytes
            .map(|q| to_i64("storage quota", q))
            .transpose()?;
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE tenants SET storage_quota_bytes = coalesce(?2, storage_quota_bytes), \
                     volume_grace_days = coalesce(?3, volume_grace_days) WHERE name = ?1",
                )
                .db()?
                .execute(params![name.as_str(), quota, change.volume_grace_days])
                .db()?;
            if changed == 0 {
                return Err(not_found("tenant", name.as_str()));
            }
            let record = load_tenant(tx, name.as_str())?;
            Ok(record)
        })
        .await
    }

    // ---- users

    async fn create_user(&self, user: UserRecord) -> StoreResult<()> {
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let name = user.name.as_str();
            let tenant = user.tenant.as_ref().map(TenantName::as_str);
            tx.prepare_cached(
                "INSERT INTO users (name, tenant, role, display_name, created_unix) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .db()?
            .execute(params![
                name,
                tenant,
                user.role.as_str(),
                user.display_name,
                user.created_unix
            ])
            .map_err(|e| insert_err(e, ("user", name), ("tenant", tenant.unwrap_or_default())))?;
            // The record may arrive with its grants; they are part of it.
            for node in &user.node_grants {
                if !node_exists(&tx, node.as_str())? {
                    return Err(not_found("node", node.as_str()));
                }
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO node_grants (user_name, node_name) VALUES (?1, ?2)",
                )
                .db()?
                .execute(params![name, node.as_str()])
                .db()?;
            }
            tx.commit().db()
        })
        .await
    }

    async fn get_user(&self, name: &UserName) -> StoreResult<UserRecord> {
        let name = name.clone();
        self.run(move |conn| load_user(conn, name.as_str())).await
    }

    async fn list_users(&self, tenant: Option<&TenantName>) -> StoreResult<Vec<UserRecord>> {
        let tenant = tenant.cloned();
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            let users = query_all(
                &tx,
                &format!("{USER_SELECT} WHERE ?1 IS NULL OR tenant = ?1 ORDER BY name"),
                [tenant.as_ref().map(TenantName::as_str)],
                user_from_row,
            )?;
            let users = users
                .into_iter()
                .map(|user| with_grants(&tx, user))
                .collect::<StoreResult<Vec<_>>>()?;
            tx.commit().db()?;
            Ok(users)
        })
        .await
    }

    async fn grant_node(&self, user: &UserName, node: &NodeName) -> StoreResult<UserRecord> {
        let user = user.clone();
        let node = node.clone();
        self.write(move |tx| {
            if !user_exists(tx, user.as_str())? {
                return Err(not_found("user", user.as_str()));
            }
            require_live_node(tx, node.as_str())?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO node_grants (user_name, node_name) VALUES (?1, ?2)",
            )
            .db()?
            .execute(params![user.as_str(), node.as_str()])
            .db()?;
            let record = load_user(tx, user.as_str())?;
            Ok(record)
        })
        .await
    }

    async fn revoke_node_grant(&self, user: &UserName, node: &NodeName) -> StoreResult<UserRecord> {
        let user = user.clone();
        let node = node.clone();
        self.write(move |tx| {
            if !user_exists(tx, user.as_str())? {
                return Err(not_found("user", user.as_str()));
            }
            tx.prepare_cached("DELETE FROM node_grants WHERE user_name = ?1 AND node_name = ?2")
                .db()?
                .execute(params![user.as_str(), node.as_str()])
                .db()?;
            let record = load_user(tx, user.as_str())?;
            Ok(record)
        })
        .await
    }

    // ---- API tokens and user certificates

    async fn create_api_token(&self, token: ApiTokenRecord) -> StoreResult<()> {
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO api_tokens (id, user_name, description, secret_hash, created_unix, \
                 expires_unix, revoked_unix) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .db()?
            .execute(params![
                token.id,
                token.user.as_str(),
                token.description,
                token.secret_hash,
                token.created_unix,
                token.expires_unix,
                token.revoked_unix
            ])
            .map_err(|e| insert_err(e, ("api token", &token.id), ("user", token.user.as_str())))?;
            Ok(())
        })
        .await
    }

    async fn api_token_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let secret_hash = secret_hash.to_owned();
        self.run(move |conn| {
            query_opt(
                conn,
                &format!("{API_TOKEN_SELECT} WHERE secret_hash = ?1"),
                [&secret_hash],
                api_token_from_row,
            )
        })
        .await
    }

    async fn get_api_token(&self, id: &str) -> StoreResult<ApiTokenRecord> {
        let id = id.to_owned();
        self.run(move |conn| load_api_token(conn, &id)).await
    }

    async fn list_api_tokens(&self, user: Option<&UserName>) -> StoreResult<Vec<ApiTokenRecord>> {
        let user = user.cloned();
        self.run(move |conn| {
            query_all(
                conn,
                &format!("{API_TOKEN_SELECT} WHERE ?1 IS NULL OR user_name = ?1 ORDER BY id"),
                [user.as_ref().map(UserName::as_str)],
                api_token_from_row,
            )
        })
        .await
    }

    async fn revoke_api_token(&self, id: &str, now: UnixSecs) -> StoreResult<ApiTokenRecord> {
        let id = id.to_owned();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE api_tokens SET revoked_unix = coalesce(revoked_unix, ?2) \
                     WHERE id = ?1",
                )
                .db()?
                .execute(params![id, now])
                .db()?;
            if changed == 0 {
                return Err(not_found("api token", id));
            }
            let record = load_api_token(tx, &id)?;
            Ok(record)
        })
        .await
    }

    async fn add_user_cert(&self, cert: UserCertRecord) -> StoreResult<()> {
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO user_certs (fingerprint, user_name, created_unix, expires_unix) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .db()?
            .execute(params![
                cert.fingerprint,
                cert.user.as_str(),
                cert.created_unix,
                cert.expires_unix
            ])
            .map_err(|e| {
                insert_err(
                    e,
                    ("user certificate", &cert.fingerprint),
                    ("user", cert.user.as_str()),
                )
            })?;
            Ok(())
        })
        .await
    }

    async fn user_cert_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> StoreResult<Option<UserCertRecord>> {
        let fingerprint = fingerprint.to_owned();
        self.run(move |conn| {
            query_opt(
                conn,
                "SELECT fingerprint, user_name, created_unix, expires_unix FROM user_certs \
                 WHERE fingerprint = ?1",
                [&fingerprint],
                user_cert_from_row,
            )
        })
        .await
    }
}

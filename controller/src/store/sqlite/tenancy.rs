//! Tenants, users and node grants in SQLite, and the trait of the
//! tenancy area, whose API tokens and user certificates are
//! [`super::credentials`]'.
//!
//! A tenant's record carries what its volumes use (the sum over the
//! storage area's `volumes` table, in [`TENANT_SELECT`]), because the
//! quota is a tenant's figure; [`load_tenant`] is what the storage and
//! apps areas read inside their transactions.

use async_trait::async_trait;
use coloc_proto::domain::{CertSerial, NodeName, TenantName, UserName};
use rusqlite::{Connection, Row, params};

use super::credentials;
use super::nodes::{bump_generation, node_exists, require_live_node};
use super::{
    Db, SqliteStore, conflict, corrupt, immediate, insert_err, not_found, parsed, parsed_opt,
    query_all, query_opt, small, to_i64, unsigned,
};
use crate::rules::users::{AdminLoss, keeps_an_admin, operator_offer, role_change};
use crate::store::{
    ApiTokenRecord, CredentialRef, DeletedUser, FIRST_POSIX_ID, MembershipPhase, Revoked,
    RoleChange, StoreError, StoreResult, Suspension, TenancyStore, TenantRecord,
    TenantStorageChange, UnixSecs, UserCertRecord, UserRecord,
};
use crate::time::parse_date;

fn tenant_from_row(row: &Row<'_>) -> rusqlite::Result<TenantRecord> {
    let since: Option<UnixSecs> = row.get(10)?;
    let by = parsed_opt(row, 11, UserName::new)?;
    let suspension = match (since, by) {
        (Some(since_unix), Some(by)) => Some(Suspension {
            since_unix,
            by,
            reason: row.get(12)?,
        }),
        // The table's CHECK keeps both set or both NULL.
        _ => None,
    };
    Ok(TenantRecord {
        name: parsed(row, 0, TenantName::new)?,
        display_name: row.get(1)?,
        offer: parsed(row, 2, |s| s.parse())?,
        membership_expires: parsed(row, 3, |s| {
            parse_date(&s).ok_or_else(|| corrupt("tenants.membership_expires", s))
        })?,
        created_unix: row.get(4)?,
        storage_quota_bytes: unsigned(row, 5)?,
        volume_grace_days: small(row, 6)?,
        // NULL (a row the migration did not fill) fails here, as it should.
        posix_id: small(row, 7)?,
        storage_used_bytes: unsigned(row, 8)?,
        membership_noted: parsed(row, 9, |s| {
            MembershipPhase::parse(&s).ok_or_else(|| corrupt("tenants.membership_noted", s))
        })?,
        suspension,
    })
}

/// Column 8 is what counts against the quota ([`crate::rules::quota`]):
/// the tenant's volumes in use or restorable, both still on disk
/// (docs/STORAGE.md).
const TENANT_SELECT: &str = "SELECT name, display_name, offer, membership_expires, created_unix, \
     storage_quota_bytes, volume_grace_days, posix_id, \
     (SELECT coalesce(sum(v.size_bytes), 0) FROM volumes AS v \
      WHERE v.tenant = tenants.name AND v.lifecycle IN ('active', 'retained')), \
     membership_noted, suspended_unix, suspended_by, suspended_reason \
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
        disabled_unix: row.get(5)?,
    })
}

const USER_SELECT: &str =
    "SELECT name, tenant, role, display_name, created_unix, disabled_unix FROM users";

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

/// A refusal of one of [`crate::rules::users`]' rules about `user`.
fn refused(user: &UserName, why: impl ToString) -> StoreError {
    conflict("user", user.as_str(), why.to_string())
}

/// Enabled admins other than `name`.
fn other_enabled_admins(conn: &Connection, name: &str) -> StoreResult<usize> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM users WHERE role = 'admin' AND disabled_unix IS NULL \
             AND name <> ?1",
        )
        .db()?
        .query_row([name], |row| row.get(0))
        .db()?;
    Ok(usize::try_from(n).unwrap_or(0))
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
                tenant.membership_expires.to_string(),
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

    async fn renew_membership(
        &self,
        name: &TenantName,
        expires: time::Date,
    ) -> StoreResult<TenantRecord> {
        let name = name.clone();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached("UPDATE tenants SET membership_expires = ?2 WHERE name = ?1")
                .db()?
                .execute(params![name.as_str(), expires.to_string()])
                .db()?;
            if changed == 0 {
                return Err(not_found("tenant", name.as_str()));
            }
            load_tenant(tx, name.as_str())
        })
        .await
    }

    async fn note_membership(
        &self,
        name: &TenantName,
        from: MembershipPhase,
        to: MembershipPhase,
    ) -> StoreResult<bool> {
        let name = name.clone();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE tenants SET membership_noted = ?3 \
                     WHERE name = ?1 AND membership_noted = ?2",
                )
                .db()?
                .execute(params![name.as_str(), from.as_str(), to.as_str()])
                .db()?;
            Ok(changed == 1)
        })
        .await
    }

    async fn set_suspension(
        &self,
        name: &TenantName,
        suspension: Option<Suspension>,
    ) -> StoreResult<(TenantRecord, Vec<NodeName>)> {
        let name = name.clone();
        self.write(move |tx| {
            let before = load_tenant(tx, name.as_str())?;
            if before.suspension.is_some() == suspension.is_some() {
                return Ok((before, Vec::new()));
            }
            let (since, by, reason) = match &suspension {
                Some(s) => (Some(s.since_unix), Some(s.by.as_str()), s.reason.as_str()),
                None => (None, None, ""),
            };
            tx.prepare_cached(
                "UPDATE tenants SET suspended_unix = ?2, suspended_by = ?3, \
                 suspended_reason = ?4 WHERE name = ?1",
            )
            .db()?
            .execute(params![name.as_str(), since, by, reason])
            .db()?;
            // Every node told about one of its instances (removed ones
            // included, until they are gone) renders them again.
            let nodes: Vec<NodeName> = query_all(
                tx,
                "SELECT DISTINCT node FROM app_instances \
                 WHERE tenant = ?1 AND gone = 0 ORDER BY node",
                [name.as_str()],
                |row| parsed(row, 0, NodeName::new),
            )?;
            for node in &nodes {
                bump_generation(tx, node.as_str())?;
            }
            Ok((load_tenant(tx, name.as_str())?, nodes))
        })
        .await
    }

    // ---- users

    async fn create_user(&self, user: UserRecord) -> StoreResult<()> {
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let name = user.name.as_str();
            let tenant = user.tenant.as_ref().map(TenantName::as_str);
            let deleted = tx
                .prepare_cached("SELECT 1 FROM deleted_users WHERE name = ?1")
                .db()?
                .exists([name])
                .db()?;
            if deleted {
                return Err(conflict(
                    "user",
                    name,
                    "was a deleted user's name, which is never given again (the audit log and \
                     requests keep naming that person)",
                ));
            }
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

    async fn set_user_role(&self, name: &UserName, change: RoleChange) -> StoreResult<UserRecord> {
        let name = name.clone();
        self.write(move |tx| {
            let user = load_user(tx, name.as_str())?;
            let outcome = role_change(&user, &change).map_err(|e| refused(&name, e))?;
            if let Some(t) = &outcome.tenant {
                let tenant = load_tenant(tx, t.as_str())?;
                operator_offer(outcome.role, &tenant).map_err(|e| refused(&name, e))?;
            }
            let others = other_enabled_admins(tx, name.as_str())?;
            keeps_an_admin(&user, AdminLoss::Demoted(outcome.role), others)
                .map_err(|e| refused(&name, e))?;
            tx.prepare_cached("UPDATE users SET role = ?2, tenant = ?3 WHERE name = ?1")
                .db()?
                .execute(params![
                    name.as_str(),
                    outcome.role.as_str(),
                    outcome.tenant.as_ref().map(TenantName::as_str)
                ])
                .db()?;
            if outcome.drops_grants {
                tx.prepare_cached("DELETE FROM node_grants WHERE user_name = ?1")
                    .db()?
                    .execute([name.as_str()])
                    .db()?;
            }
            load_user(tx, name.as_str())
        })
        .await
    }

    async fn set_user_disabled(
        &self,
        name: &UserName,
        disabled: Option<UnixSecs>,
    ) -> StoreResult<UserRecord> {
        let name = name.clone();
        self.write(move |tx| {
            let user = load_user(tx, name.as_str())?;
            if disabled.is_some() {
                let others = other_enabled_admins(tx, name.as_str())?;
                keeps_an_admin(&user, AdminLoss::Disabled, others)
                    .map_err(|e| refused(&name, e))?;
            }
            tx.prepare_cached(
                "UPDATE users SET disabled_unix = \
                 CASE WHEN ?2 IS NULL THEN NULL ELSE coalesce(disabled_unix, ?2) END \
                 WHERE name = ?1",
            )
            .db()?
            .execute(params![name.as_str(), disabled])
            .db()?;
            load_user(tx, name.as_str())
        })
        .await
    }

    async fn delete_user(&self, name: &UserName, now: UnixSecs) -> StoreResult<DeletedUser> {
        let name = name.clone();
        self.write(move |tx| {
            let user = load_user(tx, name.as_str())?;
            let others = other_enabled_admins(tx, name.as_str())?;
            keeps_an_admin(&user, AdminLoss::Deleted, others).map_err(|e| refused(&name, e))?;
            let (deleted, also_revoked) = credentials::delete_credentials_of(tx, &name, now)?;
            tx.prepare_cached("DELETE FROM node_grants WHERE user_name = ?1")
                .db()?
                .execute([name.as_str()])
                .db()?;
            tx.prepare_cached("DELETE FROM users WHERE name = ?1")
                .db()?
                .execute([name.as_str()])
                .db()?;
            tx.prepare_cached("INSERT INTO deleted_users (name, deleted_unix) VALUES (?1, ?2)")
                .db()?
                .execute(params![name.as_str(), now])
                .db()?;
            Ok(DeletedUser {
                user,
                deleted,
                also_revoked,
            })
        })
        .await
    }

    // ---- API tokens and user certificates

    async fn create_api_token(&self, token: ApiTokenRecord) -> StoreResult<()> {
        self.write(move |tx| credentials::insert_api_token(tx, &token))
            .await
    }

    async fn api_token_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let secret_hash = secret_hash.to_owned();
        self.run(move |conn| credentials::api_token_by_hash(conn, &secret_hash))
            .await
    }

    async fn get_api_token(&self, id: &str) -> StoreResult<ApiTokenRecord> {
        let id = id.to_owned();
        self.run(move |conn| credentials::load_api_token(conn, &id))
            .await
    }

    async fn list_api_tokens(&self, user: Option<&UserName>) -> StoreResult<Vec<ApiTokenRecord>> {
        let user = user.cloned();
        self.run(move |conn| credentials::list_api_tokens(conn, user.as_ref()))
            .await
    }

    async fn revoke_api_token(
        &self,
        id: &str,
        now: UnixSecs,
    ) -> StoreResult<Revoked<ApiTokenRecord>> {
        let id = id.to_owned();
        self.write(move |tx| {
            credentials::load_api_token(tx, &id)?;
            let also_revoked = credentials::revoke(tx, &CredentialRef::Token(id.clone()), now)?;
            Ok(Revoked {
                record: credentials::load_api_token(tx, &id)?,
                also_revoked,
            })
        })
        .await
    }

    async fn add_user_cert(&self, cert: UserCertRecord) -> StoreResult<()> {
        self.write(move |tx| credentials::insert_user_cert(tx, &cert))
            .await
    }

    async fn user_cert_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> StoreResult<Option<UserCertRecord>> {
        let fingerprint = fingerprint.to_owned();
        self.run(move |conn| credentials::user_cert_by_fingerprint(conn, &fingerprint))
            .await
    }

    async fn get_user_cert(&self, serial: &CertSerial) -> StoreResult<UserCertRecord> {
        let serial = serial.clone();
        self.run(move |conn| credentials::load_user_cert(conn, serial.as_str()))
            .await
    }

    async fn list_user_certs(&self, user: Option<&UserName>) -> StoreResult<Vec<UserCertRecord>> {
        let user = user.cloned();
        self.run(move |conn| credentials::list_user_certs(conn, user.as_ref()))
            .await
    }

    async fn revoke_user_cert(
        &self,
        serial: &CertSerial,
        now: UnixSecs,
    ) -> StoreResult<Revoked<UserCertRecord>> {
        let serial = serial.clone();
        self.write(move |tx| {
            credentials::load_user_cert(tx, serial.as_str())?;
            let root = CredentialRef::Certificate(serial.clone());
            let also_revoked = credentials::revoke(tx, &root, now)?;
            Ok(Revoked {
                record: credentials::load_user_cert(tx, serial.as_str())?,
                also_revoked,
            })
        })
        .await
    }
}

//! API tokens and user certificates in SQLite, the credentials of the
//! tenancy area ([`super::tenancy`] implements the trait and calls these).
//!
//! Credentials are trees: each row names the credential that minted it
//! (`minted_by_token` or `minted_by_cert`). A new one is recorded only
//! while its minter is live and outlives it ([`check_mint`], with
//! [`crate::rules::credentials::within_minter`]); a revocation walks down
//! the tree from the credential revoked ([`revoke_tree`]), all in the
//! transaction of the call, so that nothing minted from a revoked
//! credential is left valid, even one minted while it was being revoked.

use std::collections::{BTreeSet, VecDeque};

use coloc_proto::domain::{CertSerial, UserName};
use rusqlite::{Connection, Row, params};

use super::{Db, conflict, insert_err, not_found, parsed, query_all, query_opt};
use crate::rules::credentials::{Minter, within_minter};
use crate::store::{ApiTokenRecord, CredentialRef, StoreResult, UnixSecs, UserCertRecord};

/// The minter in columns `token` and `cert` of `row`.
fn minted_by(row: &Row<'_>, token: usize, cert: usize) -> rusqlite::Result<Option<CredentialRef>> {
    let by_token: Option<String> = row.get(token)?;
    let by_cert: Option<String> = row.get(cert)?;
    Ok(match (by_token, by_cert) {
        (Some(id), _) => Some(CredentialRef::Token(id)),
        (None, Some(_)) => Some(CredentialRef::Certificate(parsed(
            row,
            cert,
            CertSerial::new,
        )?)),
        (None, None) => None,
    })
}

/// `minted_by_token`, `minted_by_cert` for `minter`.
fn minter_columns(minter: Option<&CredentialRef>) -> (Option<&str>, Option<&str>) {
    match minter {
        Some(CredentialRef::Token(id)) => (Some(id.as_str()), None),
        Some(CredentialRef::Certificate(serial)) => (None, Some(serial.as_str())),
        None => (None, None),
    }
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
        minted_by: minted_by(row, 7, 8)?,
    })
}

const API_TOKEN_SELECT: &str = "SELECT id, user_name, description, secret_hash, created_unix, \
     expires_unix, revoked_unix, minted_by_token, minted_by_cert FROM api_tokens";

fn user_cert_from_row(row: &Row<'_>) -> rusqlite::Result<UserCertRecord> {
    Ok(UserCertRecord {
        serial: parsed(row, 0, CertSerial::new)?,
        fingerprint: row.get(1)?,
        user: parsed(row, 2, UserName::new)?,
        created_unix: row.get(3)?,
        expires_unix: row.get(4)?,
        revoked_unix: row.get(5)?,
        minted_by: minted_by(row, 6, 7)?,
    })
}

const USER_CERT_SELECT: &str = "SELECT serial, fingerprint, user_name, created_unix, \
     expires_unix, revoked_unix, minted_by_token, minted_by_cert FROM user_certs";

pub(super) fn load_api_token(conn: &Connection, id: &str) -> StoreResult<ApiTokenRecord> {
    query_opt(
        conn,
        &format!("{API_TOKEN_SELECT} WHERE id = ?1"),
        [id],
        api_token_from_row,
    )?
    .ok_or_else(|| not_found("api token", id))
}

pub(super) fn api_token_by_hash(
    conn: &Connection,
    secret_hash: &str,
) -> StoreResult<Option<ApiTokenRecord>> {
    query_opt(
        conn,
        &format!("{API_TOKEN_SELECT} WHERE secret_hash = ?1"),
        [secret_hash],
        api_token_from_row,
    )
}

pub(super) fn list_api_tokens(
    conn: &Connection,
    user: Option<&UserName>,
) -> StoreResult<Vec<ApiTokenRecord>> {
    query_all(
        conn,
        &format!("{API_TOKEN_SELECT} WHERE ?1 IS NULL OR user_name = ?1 ORDER BY id"),
        [user.map(UserName::as_str)],
        api_token_from_row,
    )
}

pub(super) fn load_user_cert(conn: &Connection, serial: &str) -> StoreResult<UserCertRecord> {
    query_opt(
        conn,
        &format!("{USER_CERT_SELECT} WHERE serial = ?1"),
        [serial],
        user_cert_from_row,
    )?
    .ok_or_else(|| not_found("user certificate", serial))
}

pub(super) fn user_cert_by_fingerprint(
    conn: &Connection,
    fingerprint: &str,
) -> StoreResult<Option<UserCertRecord>> {
    query_opt(
        conn,
        &format!("{USER_CERT_SELECT} WHERE fingerprint = ?1"),
        [fingerprint],
        user_cert_from_row,
    )
}

pub(super) fn list_user_certs(
    conn: &Connection,
    user: Option<&UserName>,
) -> StoreResult<Vec<UserCertRecord>> {
    query_all(
        conn,
        &format!(
            "{USER_CERT_SELECT} WHERE ?1 IS NULL OR user_name = ?1 \
             ORDER BY user_name, created_unix, serial"
        ),
        [user.map(UserName::as_str)],
        user_cert_from_row,
    )
}

/// Whether a credential for `user` expiring at `expires_unix` may be
/// minted with `minter` at `now`: the user exists and is enabled, and the
/// minter is live and outlives it.
fn check_mint(
    conn: &Connection,
    user: &UserName,
    expires_unix: UnixSecs,
    minter: Option<&CredentialRef>,
    now: UnixSecs,
) -> StoreResult<()> {
    let disabled: Option<Option<UnixSecs>> = query_opt(
        conn,
        "SELECT disabled_unix FROM users WHERE name = ?1",
        [user.as_str()],
        |row| row.get(0),
    )?;
    match disabled {
        None => return Err(not_found("user", user.as_str())),
        Some(Some(_)) => {
            return Err(conflict(
                "user",
                user.as_str(),
                "disabled: no credential is minted for a disabled user",
            ));
        }
        Some(None) => {}
    }
    let Some(minter) = minter else {
        return Ok(());
    };
    let (expires, revoked) = match minter {
        CredentialRef::Token(id) => {
            let t = load_api_token(conn, id)?;
            (t.expires_unix, t.revoked_unix)
        }
        CredentialRef::Certificate(serial) => {
            let c = load_user_cert(conn, serial.as_str())?;
            (c.expires_unix, c.revoked_unix)
        }
    };
    let facts = Minter {
        credential: minter.clone(),
        expires_unix: expires,
        revoked_unix: revoked,
    };
    within_minter(expires_unix, &facts, now)
        .map_err(|refusal| conflict("user", user.as_str(), refusal.to_string()))
}

pub(super) fn insert_api_token(conn: &Connection, token: &ApiTokenRecord) -> StoreResult<()> {
    check_mint(
        conn,
        &token.user,
        token.expires_unix,
        token.minted_by.as_ref(),
        token.created_unix,
    )?;
    let (by_token, by_cert) = minter_columns(token.minted_by.as_ref());
    conn.prepare_cached(
        "INSERT INTO api_tokens (id, user_name, description, secret_hash, created_unix, \
         expires_unix, revoked_unix, minted_by_token, minted_by_cert) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .db()?
    .execute(params![
        token.id,
        token.user.as_str(),
        token.description,
        token.secret_hash,
        token.created_unix,
        token.expires_unix,
        token.revoked_unix,
        by_token,
        by_cert
    ])
    .map_err(|e| insert_err(e, ("api token", &token.id), ("user", token.user.as_str())))?;
    Ok(())
}

pub(super) fn insert_user_cert(conn: &Connection, cert: &UserCertRecord) -> StoreResult<()> {
    check_mint(
        conn,
        &cert.user,
        cert.expires_unix,
        cert.minted_by.as_ref(),
        cert.created_unix,
    )?;
    let (by_token, by_cert) = minter_columns(cert.minted_by.as_ref());
    conn.prepare_cached(
        "INSERT INTO user_certs (serial, fingerprint, user_name, created_unix, expires_unix, \
         revoked_unix, minted_by_token, minted_by_cert) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .db()?
    .execute(params![
        cert.serial.as_str(),
        cert.fingerprint,
        cert.user.as_str(),
        cert.created_unix,
        cert.expires_unix,
        cert.revoked_unix,
        by_token,
        by_cert
    ])
    .map_err(|e| {
        insert_err(
            e,
            ("user certificate", cert.serial.as_str()),
            ("user", cert.user.as_str()),
        )
    })?;
    Ok(())
}

/// One credential met on the way down a tree, with its owner and whether
/// it was still unrevoked.
struct Reached {
    credential: CredentialRef,
    user: UserName,
    was_live: bool,
}

/// The credentials `minter` minted directly.
fn children(conn: &Connection, minter: &CredentialRef) -> StoreResult<Vec<Reached>> {
    let (column, key) = match minter {
        CredentialRef::Token(id) => ("minted_by_token", id.as_str()),
        CredentialRef::Certificate(serial) => ("minted_by_cert", serial.as_str()),
    };
    let mut out = query_all(
        conn,
        &format!("SELECT id, user_name, revoked_unix IS NULL FROM api_tokens WHERE {column} = ?1"),
        [key],
        |row| {
            Ok(Reached {
                credential: CredentialRef::Token(row.get(0)?),
                user: parsed(row, 1, UserName::new)?,
                was_live: row.get(2)?,
            })
        },
    )?;
    out.extend(query_all(
        conn,
        &format!(
            "SELECT serial, user_name, revoked_unix IS NULL FROM user_certs WHERE {column} = ?1"
        ),
        [key],
        |row| {
            Ok(Reached {
                credential: CredentialRef::Certificate(parsed(row, 0, CertSerial::new)?),
                user: parsed(row, 1, UserName::new)?,
                was_live: row.get(2)?,
            })
        },
    )?);
    Ok(out)
}

/// Marks `credential` revoked at `now` (keeping an earlier revocation).
fn mark_revoked(conn: &Connection, credential: &CredentialRef, now: UnixSecs) -> StoreResult<()> {
    let (sql, key) = match credential {
        CredentialRef::Token(id) => (
            "UPDATE api_tokens SET revoked_unix = coalesce(revoked_unix, ?2) WHERE id = ?1",
            id.as_str(),
        ),
        CredentialRef::Certificate(serial) => (
            "UPDATE user_certs SET revoked_unix = coalesce(revoked_unix, ?2) WHERE serial = ?1",
            serial.as_str(),
        ),
    };
    conn.prepare_cached(sql)
        .db()?
        .execute(params![key, now])
        .db()?;
    Ok(())
}

/// Revokes `root` and everything minted from it, directly or not; returns
/// the credentials below `root` this revoked (not those revoked before),
/// with their owners, in the order met.
fn revoke_tree(
    conn: &Connection,
    root: &CredentialRef,
    now: UnixSecs,
) -> StoreResult<Vec<(CredentialRef, UserName)>> {
    mark_revoked(conn, root, now)?;
    let mut revoked = Vec::new();
    // A credential is minted after its minter, so the tree has no cycle;
    // `seen` keeps a corrupt row from looping anyway.
    let mut seen = BTreeSet::from([root.clone()]);
    let mut queue = VecDeque::from([root.clone()]);
    while let Some(minter) = queue.pop_front() {
        for child in children(conn, &minter)? {
            if !seen.insert(child.credential.clone()) {
                continue;
            }
            // Already revoked or not, what it minted is walked: revoking
            // is idempotent, and a branch is never left half revoked.
            if child.was_live {
                mark_revoked(conn, &child.credential, now)?;
                revoked.push((child.credential.clone(), child.user));
            }
            queue.push_back(child.credential);
        }
    }
    Ok(revoked)
}

/// [`revoke_tree`] for a revocation people asked for.
pub(super) fn revoke(
    conn: &Connection,
    root: &CredentialRef,
    now: UnixSecs,
) -> StoreResult<Vec<CredentialRef>> {
    Ok(revoke_tree(conn, root, now)?
        .into_iter()
        .map(|(credential, _)| credential)
        .collect())
}

/// Deletes `user`'s tokens and certificates after revoking everything
/// minted from them; returns those deleted, and the other users'
/// credentials revoked.
pub(super) fn delete_credentials_of(
    conn: &Connection,
    user: &UserName,
    now: UnixSecs,
) -> StoreResult<(Vec<CredentialRef>, Vec<CredentialRef>)> {
    let mut own: Vec<CredentialRef> = list_api_tokens(conn, Some(user))?
        .into_iter()
        .map(|t| CredentialRef::Token(t.id))
        .collect();
    own.extend(
        list_user_certs(conn, Some(user))?
            .into_iter()
            .map(|c| CredentialRef::Certificate(c.serial)),
    );
    let mut others = Vec::new();
    for credential in &own {
        for (reached, owner) in revoke_tree(conn, credential, now)? {
            if &owner != user {
                others.push(reached);
            }
        }
    }
    for table in ["api_tokens", "user_certs"] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE user_name = ?1"))
            .db()?
            .execute([user.as_str()])
            .db()?;
    }
    Ok((own, others))
}

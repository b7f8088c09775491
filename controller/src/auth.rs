//! Who is calling, and what they may do.
//!
//! Authentication: a bearer token (`authorization: Bearer cat_…`, stored
//! as its sha256) or a user certificate signed by the cooperative's CA
//! (matched by fingerprint). Node certificates never authenticate a user.
//!
//! Authorization is role-based and scoped: admins (the cooperative's
//! sysadmins) may do everything; operators (members of a participatory
//! association) read their tenant and act on the nodes they are granted;
//! members read their own tenant. The helpers here are the only place
//! those rules are written down; the API handlers call them before doing
//! anything.

use std::sync::Arc;

use coloc_proto::domain::{NodeName, Role, TenantName, UserName};
use sha2::{Digest, Sha256};
use tonic::Request;

use crate::ca::fingerprint_der;
use crate::error::{ApiError, ApiResult};
use crate::store::{Store, UserRecord};
use crate::time::Clock;

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token { id: String },
    Certificate { fingerprint: String },
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserRecord,
    pub credential: Credential,
}

impl Caller {
    /// The actor string written to the audit log.
    pub fn actor(&self) -> String {
        format!("user:{}", self.user.name)
    }
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
    pub fn tenant(&self) -> Option<&TenantName> {
        self.user.tenant.as_ref()
    }
}

/// Prefix of API token secrets, so that a leaked one is recognisable.
pub const API_TOKEN_PREFIX: &str = "cat_";
/// Prefix of join token secrets.
pub const JOIN_TOKEN_PREFIX: &str = "cjt_";

/// A new random secret with its prefix, and a short public id.
pub fn new_secret(prefix: &str, id_prefix: &str) -> (String, String) {
    let secret: [u8; 32] = rand::random();
    let id: [u8; 6] = rand::random();
    (
        format!("{prefix}{}", hex::encode(secret)),
        format!("{id_prefix}{}", hex::encode(id)),
    )
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Longest credential accepted before hashing, to bound work on garbage.
const MAX_SECRET_LEN: usize = 256;

pub async fn authenticate<T>(
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    req: &Request<T>,
) -> ApiResult<Caller> {
    let now = clock.now();
    if let Some(value) = req.metadata().get("authorization") {
        let value = value
            .to_str()
            .map_err(|_| ApiError::Unauthenticated("authorization header is not text".into()))?;
        let secret = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::Unauthenticated("authorization must be \"Bearer <token>\"".into())
            })?
            .trim();
        if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
            return Err(ApiError::Unauthenticated("malformed token".into()));
        }
        let token = store
            .api_token_by_hash(&hash_secret(secret))
            .await?
            .ok_or_else(|| ApiError::Unauthenticated("unknown token".into()))?;
        if token.revoked_unix.is_some() {
            return Err(ApiError::Unauthenticated(format!(
                "token {} has been revoked",
                token.id
            )));
        }
        if token.expires_unix <= now {
            return Err(ApiError::Unauthenticated(format!(
                "token {} has expired",
                token.id
            )));
        }
        let user = store.get_user(&token.user).await?;
        return Ok(Caller {
            user,
            credential: Credential::Token { id: token.id },
        });
    }
    if let Some(certs) = req.peer_certs()
        && let Some(first) = certs.first()
    {
        {
            let fingerprint = fingerprint_der(first.as_ref());
            let Some(cert) = store.user_cert_by_fingerprint(&fingerprint).await? else {
                if store.node_by_fingerprint(&fingerprint).await?.is_some() {
                    return Err(ApiError::Unauthenticated(
                        "a node certificate cannot call the public API".into(),
                    ));
                }
                return Err(ApiError::Unauthenticated(
                    "client certificate is not registered to any user".into(),
                ));
            };
            if cert.expires_unix <= now {
                return Err(ApiError::Unauthenticated(
                    "client certificate has expired".into(),
                ));
            }
            let user = store.get_user(&cert.user).await?;
            return Ok(Caller {
                user,
                credential: Credential::Certificate { fingerprint },
            });
        }
    }
    Err(ApiError::Unauthenticated(
        "no credentials: send a bearer token or a user certificate".into(),
    ))
}

// ---- policy

pub fn require_admin(caller: &Caller, what: &str) -> ApiResult<()> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "{what} is reserved to the cooperative's admins"
        )))
    }
}

/// Reading anything that belongs to a tenant.
pub fn require_tenant_read(caller: &Caller, tenant: &TenantName) -> ApiResult<()> {
    if caller.is_admin() || caller.tenant() == Some(tenant) {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "user {} cannot see tenant {tenant}",
            caller.user.name
        )))
    }
}

/// Seeing a node: admins, and operators granted that node.
pub fn can_see_node(caller: &Caller, node: &NodeName) -> bool {
    caller.is_admin()
        || (caller.user.role == Role::Operator && caller.user.node_grants.contains(node))
}

pub fn require_node_read(caller: &Caller, node: &NodeName) -> ApiResult<()> {
    if can_see_node(caller, node) {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "user {} holds no grant on node {node}",
            caller.user.name
        )))
    }
}

/// Acting on one's own account (tokens, certificates), or an admin on
/// anyone's.
pub fn require_self_or_admin(caller: &Caller, user: &UserName) -> ApiResult<()> {
    if caller.is_admin() || &caller.user.name == user {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "user {} cannot act on behalf of user {user}",
            caller.user.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, tenant: Option<&str>, grants: &[&str]) -> Caller {
        Caller {
            user: UserRecord {
                name: UserName::new("u").unwrap(),
                tenant: tenant.map(|t| TenantName::new(t).unwrap()),
                role,
                display_name: String::new(),
                created_unix: 0,
                node_grants: grants.iter().map(|g| NodeName::new(*g).unwrap()).collect(),
            },
            credential: Credential::Token { id: "t".into() },
        }
    }

    #[test]
    fn secrets_are_random_and_prefixed() {
        let (a, ida) = new_secret(API_TOKEN_PREFIX, "tok-");
        let (b, _) = new_secret(API_TOKEN_PREFIX, "tok-");
        assert!(a.starts_with("cat_") && ida.starts_with("tok-"));
        assert_ne!(a, b);
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), hash_secret(&b));
    }

    #[test]
    fn policy_matrix() {
        let asso = TenantName::new("asso-a").unwrap();
        let other = TenantName::new("asso-b").unwrap();
        let n1 = NodeName::new("n1").unwrap();
        let n2 = NodeName::new("n2").unwrap();
        let admin = user(Role::Admin, None, &[]);
        let op = user(Role::Operator, Some("asso-a"), &["n1"]);
        let member = user(Role::Member, Some("asso-a"), &[]);

        assert!(require_admin(&admin, "x").is_ok());
        assert!(require_admin(&op, "x").is_err());
        assert!(require_admin(&member, "x").is_err());

        for c in [&admin, &op, &member] {
            assert!(require_tenant_read(c, &asso).is_ok());
        }
        assert!(require_tenant_read(&admin, &other).is_ok());
        assert!(require_tenant_read(&op, &other).is_err());
        assert!(require_tenant_read(&member, &other).is_err());

        assert!(can_see_node(&admin, &n2));
        assert!(can_see_node(&op, &n1));
        assert!(!can_see_node(&op, &n2));
        // A member holds no grants even if one were recorded.
        let odd = user(Role::Member, Some("asso-a"), &["n1"]);
        assert!(!can_see_node(&odd, &n1));
    }
}

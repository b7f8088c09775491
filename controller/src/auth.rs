//! Who is calling, and what they may do.
//!
//! Authentication: a bearer token (`authorization: Bearer cat_…`, stored
//! as its sha256) or a user certificate signed by the cooperative's CA
//! (matched by fingerprint). Node certificates never authenticate a user.
//! A credential is accepted only if it is neither revoked nor expired and
//! its user is enabled, checked at every call, so that a revocation or a
//! disabled user takes effect at once.
//!
//! Authorization is role-based and scoped: admins (the cooperative's
//! sysadmins) may do everything; operators (members of a participatory
//! association) read their tenant and act on the nodes they are granted;
//! members read their own tenant. The helpers here are the only place
//! those rules are written down; the API handlers call them before doing
//! anything.

use std::sync::Arc;

use coloc_proto::domain::{NodeName, Offer, Role, TenantName, UserName};
use sha2::{Digest, Sha256};
use tonic::Request;

use crate::ca::fingerprint_der;
use crate::error::{ApiError, ApiResult};
use crate::rules::standing::Membership;
use crate::store::{
    CredentialRef, SiteRecord, Store, StoreError, TenantRecord, UnixSecs, UserRecord,
};
use crate::time::Clock;

#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserRecord,
    /// The credential of this call: what a token or certificate minted
    /// during it is minted with.
    pub credential: CredentialRef,
    /// When that credential expires; nothing minted with it lives longer.
    pub credential_expires_unix: UnixSecs,
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

/// A credential found in the store, before the checks every kind shares.
struct Presented {
    credential: CredentialRef,
    user: UserName,
    expires_unix: UnixSecs,
    revoked: bool,
}

pub async fn authenticate<T>(
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    req: &Request<T>,
) -> ApiResult<Caller> {
    let presented = if let Some(value) = req.metadata().get("authorization") {
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
        Presented {
            credential: CredentialRef::Token(token.id),
            user: token.user,
            expires_unix: token.expires_unix,
            revoked: token.revoked_unix.is_some(),
        }
    } else if let Some(first) = req.peer_certs().as_deref().and_then(|c| c.first()) {
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
        Presented {
            credential: CredentialRef::Certificate(cert.serial),
            user: cert.user,
            expires_unix: cert.expires_unix,
            revoked: cert.revoked_unix.is_some(),
        }
    } else {
        return Err(ApiError::Unauthenticated(
            "no credentials: send a bearer token or a user certificate".into(),
        ));
    };
    let Presented {
        credential,
        user,
        expires_unix,
        revoked,
    } = presented;
    if revoked {
        return Err(ApiError::Unauthenticated(format!(
            "{credential} has been revoked"
        )));
    }
    if expires_unix <= clock.now() {
        return Err(ApiError::Unauthenticated(format!(
            "{credential} has expired"
        )));
    }
    let user = match store.get_user(&user).await {
        Ok(user) => user,
        // Deleted meanwhile: its credentials went with it.
        Err(StoreError::NotFound { .. }) => {
            return Err(ApiError::Unauthenticated(format!(
                "user {user} no longer exists"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if user.disabled_unix.is_some() {
        return Err(ApiError::Unauthenticated(format!(
            "user {} is disabled",
            user.name
        )));
    }
    Ok(Caller {
        user,
        credential,
        credential_expires_unix: expires_unix,
    })
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

/// Something a tenant's operators decide for their association on any
/// node and either offer (the login in front of its apps): admins, and the
/// tenant's own operators. Members read.
pub fn require_tenant_operator(caller: &Caller, tenant: &TenantName, what: &str) -> ApiResult<()> {
    if caller.is_admin() || (caller.tenant() == Some(tenant) && caller.user.role == Role::Operator)
    {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "user {} is a {}; only admins and the operators of tenant {tenant} {what}",
            caller.user.name, caller.user.role
        )))
    }
}

/// A non-admin's own tenant (every operator and member has one).
pub fn own_tenant(caller: &Caller) -> ApiResult<TenantName> {
    caller.tenant().cloned().ok_or_else(|| {
        ApiError::PermissionDenied(format!("user {} belongs to no tenant", caller.user.name))
    })
}

/// The tenant a listing covers: the one an admin asks for (`None`: every
/// tenant); for anyone else their own, another one asked for being
/// refused.
pub fn listing_tenant(caller: &Caller, asked: Option<TenantName>) -> ApiResult<Option<TenantName>> {
    if caller.is_admin() {
        return Ok(asked);
    }
    if let Some(t) = &asked {
        require_tenant_read(caller, t)?;
    }
    own_tenant(caller).map(Some)
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

/// What a tenant's operators may change on the nodes they are granted,
/// under one rule ([`require_tenant_change_on_node`]); it names the thing in
/// the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantChange {
    /// Creating, resizing, deleting, restoring, snapshotting and rolling
    /// back a volume (docs/STORAGE.md).
    Volumes,
    /// Starting, stopping and restarting an app instance (docs/APPS.md).
    Apps,
}

impl TenantChange {
    /// "only admins and operators {…}".
    fn verb(self) -> &'static str {
        match self {
            TenantChange::Volumes => "change volumes",
            TenantChange::Apps => "start or stop apps",
        }
    }

    /// "user u cannot {…} of tenant t".
    fn of_tenant(self) -> &'static str {
        match self {
            TenantChange::Volumes => "change volumes",
            TenantChange::Apps => "control apps",
        }
    }

    /// "the cooperative's admins {…}".
    fn admins_do(self) -> &'static str {
        match self {
            TenantChange::Volumes => "manage its volumes",
            TenantChange::Apps => "run its apps",
        }
    }
}

/// The tenant half of [`require_tenant_change_on_node`], for a handler
/// that must refuse another tenant's caller before it even looks the
/// tenant up (so that they learn nothing, not even whether it exists).
pub fn require_own_tenant_for_change(
    caller: &Caller,
    tenant: &TenantName,
    what: TenantChange,
) -> ApiResult<()> {
    if caller.is_admin() || caller.tenant() == Some(tenant) {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "user {} cannot {} of tenant {tenant}",
            caller.user.name,
            what.of_tenant()
        )))
    }
}

/// Changing a tenant's volumes or apps on a node: admins, and operators
/// of a participatif tenant for their own tenant on nodes they are
/// granted. Operators of a responsable tenant and members only read.
pub fn require_tenant_change_on_node(
    caller: &Caller,
    tenant: &TenantRecord,
    node: &NodeName,
    what: TenantChange,
) -> ApiResult<()> {
    if caller.is_admin() {
        return Ok(());
    }
    let user = &caller.user;
    let deny = |why: String| Err(ApiError::PermissionDenied(why));
    if user.role != Role::Operator {
        return deny(format!(
            "user {} is a {}; only admins and operators {}",
            user.name,
            user.role,
            what.verb()
        ));
    }
    require_own_tenant_for_change(caller, &tenant.name, what)?;
    if tenant.offer != Offer::Participatif {
        return deny(format!(
            "tenant {} is on the {} offer: the cooperative's admins {}",
            tenant.name,
            tenant.offer,
            what.admins_do()
        ));
    }
    if !user.node_grants.contains(node) {
        return deny(format!("user {} holds no grant on node {node}", user.name));
    }
    Ok(())
}

/// Asking for an app (docs/APPS.md): admins, and the tenant's operators
/// and members, on either offer (members of a managed tenant ask too).
pub fn require_app_request(caller: &Caller, tenant: &TenantName) -> ApiResult<()> {
    if caller.is_admin() || caller.tenant() == Some(tenant) {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "user {} cannot ask for apps for tenant {tenant}",
            caller.user.name
        )))
    }
}

/// Listing pools: admins, and operators (the pools of their granted
/// nodes, filtered by the caller with [`can_see_node`]).
pub fn require_pool_read(caller: &Caller) -> ApiResult<()> {
    match caller.user.role {
        Role::Admin | Role::Operator => Ok(()),
        Role::Member => Err(ApiError::PermissionDenied(format!(
            "user {} is a member; pools are for admins and operators",
            caller.user.name
        ))),
    }
}

/// A tenant's grace period for deleted volumes: admins set any value, the
/// tenant's operators may only lengthen it (a shorter one could destroy a
/// deleted volume sooner than its owners expected).
pub fn require_grace_change(caller: &Caller, tenant: &TenantRecord, days: u32) -> ApiResult<()> {
    if caller.is_admin() {
        return Ok(());
    }
    let user = &caller.user;
    if user.role != Role::Operator || caller.tenant() != Some(&tenant.name) {
        return Err(ApiError::PermissionDenied(format!(
            "user {} cannot change the grace period of tenant {}",
            user.name, tenant.name
        )));
    }
    if days <= tenant.volume_grace_days {
        return Err(ApiError::PermissionDenied(format!(
            "operators may only lengthen the grace period of tenant {} (now {} days)",
            tenant.name, tenant.volume_grace_days
        )));
    }
    Ok(())
}

/// Nodes are only in France: a join token is made, and a node enrolls,
/// only at a site there (sites elsewhere are refused when created; this
/// also covers a database written by hand).
pub fn require_site_in_france(site: &SiteRecord) -> ApiResult<()> {
    if site.country == "FR" {
        Ok(())
    } else {
        Err(ApiError::Policy(format!(
            "site {} is not in France",
            site.name
        )))
    }
}

/// A check on an object found by an identifier the caller may have read
/// or guessed (a volume id, a request number, a token id), before the
/// caller may see it: its refusal becomes [`ApiError::Hidden`], which the
/// caller reads as `kind` `name` not found, the answer for an identifier
/// that names nothing. So the refusal tells them neither that the object
/// exists nor whose it is; the audit log records the refusal itself.
pub fn unseen(kind: &'static str, name: impl ToString, check: ApiResult<()>) -> ApiResult<()> {
    check.map_err(|e| match e {
        ApiError::PermissionDenied(reason) => ApiError::Hidden {
            kind,
            name: name.to_string(),
            reason,
        },
        other => other,
    })
}

/// What the users of a frozen association may still change: only what
/// takes access away, so that a leaked token can be cut off. Everything
/// else that changes something (volumes, apps, requests and their
/// comments, storage settings, new tokens and certificates) waits for the
/// renewal; reads are not changes and always work.
const ALLOWED_WHILE_FROZEN: &[&str] = &["token.revoke", "user.cert.revoke"];

/// A change (`action`, the audit action of a mutation) by a user of a
/// frozen association is refused; admins belong to none and are never
/// frozen. `membership` is the caller's association's
/// ([`crate::rules::standing`]).
pub fn require_not_frozen(caller: &Caller, membership: &Membership, action: &str) -> ApiResult<()> {
    let Some(tenant) = caller.tenant() else {
        return Ok(());
    };
    if caller.is_admin() || ALLOWED_WHILE_FROZEN.contains(&action) {
        return Ok(());
    }
    match membership.frozen(tenant) {
        Some(refusal) => Err(refusal.into()),
        None => Ok(()),
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
                disabled_unix: None,
            },
            credential: CredentialRef::Token("t".into()),
            credential_expires_unix: i64::MAX,
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

        assert_eq!(listing_tenant(&admin, None).unwrap(), None);
        assert_eq!(
            listing_tenant(&admin, Some(other.clone())).unwrap(),
            Some(other.clone())
        );
        for c in [&op, &member] {
            assert_eq!(listing_tenant(c, None).unwrap(), Some(asso.clone()));
            assert_eq!(
                listing_tenant(c, Some(asso.clone())).unwrap(),
                Some(asso.clone())
            );
            assert!(listing_tenant(c, Some(other.clone())).is_err());
        }
        let lost = user(Role::Member, None, &[]);
        assert!(own_tenant(&lost).is_err());
        assert!(listing_tenant(&lost, None).is_err());

        assert!(can_see_node(&admin, &n2));
        assert!(can_see_node(&op, &n1));
        assert!(!can_see_node(&op, &n2));
        // A member holds no grants even if one were recorded.
        let odd = user(Role::Member, Some("asso-a"), &["n1"]);
        assert!(!can_see_node(&odd, &n1));
    }

    fn tenant(name: &str, offer: Offer) -> TenantRecord {
        TenantRecord {
            name: TenantName::new(name).unwrap(),
            display_name: String::new(),
            offer,
            membership_expires: time::macros::date!(2099 - 12 - 31),
            membership_noted: crate::store::MembershipPhase::Current,
            suspension: None,
            created_unix: 0,
            storage_quota_bytes: 1 << 30,
            volume_grace_days: 30,
            posix_id: 200_000,
            storage_used_bytes: 0,
        }
    }

    #[test]
    fn pool_and_grace_policy_matrix() {
        let a = tenant("asso-a", Offer::Participatif);
        let b = tenant("asso-b", Offer::Participatif);
        let admin = user(Role::Admin, None, &[]);
        let op_a = user(Role::Operator, Some("asso-a"), &["n1"]);
        let mem_a = user(Role::Member, Some("asso-a"), &["n1"]);

        assert!(require_pool_read(&admin).is_ok());
        assert!(require_pool_read(&op_a).is_ok());
        assert!(require_pool_read(&mem_a).is_err());

        assert!(require_grace_change(&admin, &a, 1).is_ok());
        assert!(require_grace_change(&op_a, &a, 31).is_ok());
        assert!(require_grace_change(&op_a, &a, 30).is_err(), "not longer");
        assert!(require_grace_change(&op_a, &a, 7).is_err(), "shorter");
        assert!(require_grace_change(&op_a, &b, 60).is_err(), "other tenant");
        assert!(require_grace_change(&mem_a, &a, 60).is_err(), "member");
    }

    #[test]
    fn app_request_policy_matrix() {
        let a = tenant("asso-a", Offer::Participatif);
        let b = tenant("asso-b", Offer::Participatif);
        let r = tenant("asso-r", Offer::Responsable);
        let admin = user(Role::Admin, None, &[]);
        let op_a = user(Role::Operator, Some("asso-a"), &["n1"]);
        let mem_a = user(Role::Member, Some("asso-a"), &[]);
        let mem_r = user(Role::Member, Some("asso-r"), &[]);

        for c in [&admin, &op_a, &mem_a] {
            assert!(require_app_request(c, &a.name).is_ok());
        }
        assert!(
            require_app_request(&mem_r, &r.name).is_ok(),
            "responsable asks too"
        );
        assert!(require_app_request(&op_a, &b.name).is_err(), "other tenant");
        assert!(
            require_app_request(&mem_r, &a.name).is_err(),
            "other tenant"
        );
    }

    #[test]
    fn frozen_users_change_nothing_but_may_cut_off_a_token() {
        use crate::rules::standing::membership;
        use crate::store::MembershipPhase;
        use time::macros::date;
        let paid = date!(2026 - 01 - 31);
        let frozen = membership(paid, 30, date!(2026 - 06 - 01));
        let expired = membership(paid, 30, date!(2026 - 02 - 01));
        let current = membership(paid, 30, date!(2026 - 01 - 01));
        assert_eq!(frozen.phase, MembershipPhase::Frozen);
        let admin = user(Role::Admin, None, &[]);
        let op = user(Role::Operator, Some("asso-a"), &["n1"]);
        let member = user(Role::Member, Some("asso-a"), &[]);
        for action in [
            "volume.create",
            "app.start",
            "token.create",
            "user.cert.issue",
        ] {
            assert!(require_not_frozen(&admin, &frozen, action).is_ok());
            for c in [&op, &member] {
                assert!(require_not_frozen(c, &current, action).is_ok());
                assert!(
                    require_not_frozen(c, &expired, action).is_ok(),
                    "only warned"
                );
                match require_not_frozen(c, &frozen, action) {
                    Err(e @ ApiError::Frozen(_)) => {
                        assert!(e.is_denial());
                        assert_eq!(e.to_status().code(), tonic::Code::FailedPrecondition);
                        assert!(e.to_string().starts_with("association asso-a is frozen"));
                    }
                    other => panic!("{action}: expected a freeze, got {other:?}"),
                }
            }
        }
        for c in [&op, &member] {
            assert!(require_not_frozen(c, &frozen, "token.revoke").is_ok());
        }
    }

    /// Each refusal of the one rule, for both things it guards, with the
    /// sentence the caller reads.
    #[test]
    fn tenant_change_on_node_refusals() {
        let a = tenant("asso-a", Offer::Participatif);
        let b = tenant("asso-b", Offer::Participatif);
        let r = tenant("asso-r", Offer::Responsable);
        let n1 = NodeName::new("n1").unwrap();
        let n2 = NodeName::new("n2").unwrap();
        let admin = user(Role::Admin, None, &[]);
        let op_a = user(Role::Operator, Some("asso-a"), &["n1"]);
        let op_r = user(Role::Operator, Some("asso-r"), &["n1"]);
        let mem_a = user(Role::Member, Some("asso-a"), &["n1"]);
        let refusal =
            |c: &Caller, t: &TenantRecord, n: &NodeName, what| match require_tenant_change_on_node(
                c, t, n, what,
            ) {
                Err(ApiError::PermissionDenied(why)) => why,
                other => panic!("expected a refusal, got {other:?}"),
            };
        use TenantChange::{Apps, Volumes};
        for what in [Volumes, Apps] {
            assert!(require_tenant_change_on_node(&admin, &b, &n2, what).is_ok());
            assert!(require_tenant_change_on_node(&admin, &r, &n1, what).is_ok());
            assert!(require_tenant_change_on_node(&op_a, &a, &n1, what).is_ok());
            assert_eq!(
                refusal(&op_a, &a, &n2, what),
                "user u holds no grant on node n2"
            );
        }
        assert_eq!(
            refusal(&mem_a, &a, &n1, Volumes),
            "user u is a member; only admins and operators change volumes"
        );
        assert_eq!(
            refusal(&mem_a, &a, &n1, Apps),
            "user u is a member; only admins and operators start or stop apps"
        );
        assert_eq!(
            refusal(&op_a, &b, &n1, Volumes),
            "user u cannot change volumes of tenant asso-b"
        );
        assert_eq!(
            refusal(&op_a, &b, &n1, Apps),
            "user u cannot control apps of tenant asso-b"
        );
        assert_eq!(
            refusal(&op_r, &r, &n1, Volumes),
            "tenant asso-r is on the responsable offer: the cooperative's admins manage its volumes"
        );
        assert_eq!(
            refusal(&op_r, &r, &n1, Apps),
            "tenant asso-r is on the responsable offer: the cooperative's admins run its apps"
        );
    }
}

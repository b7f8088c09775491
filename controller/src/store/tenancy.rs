//! The people's area of the store: tenants (associations) with their
//! storage settings, users and their node grants, API tokens and user
//! certificates.
//!
//! Credentials form trees: each token and certificate records the
//! credential that minted it ([`CredentialRef`]), expires no later than
//! it, and is revoked with it. The backend applies
//! [`crate::rules::credentials`] and [`crate::rules::users`] inside its
//! transactions, so that a credential revoked meanwhile mints nothing and
//! the last enabled admin stays.
//!
//! This module declares records and the trait; it holds no SQL and no
//! policy (who may do what is [`crate::auth`]'s).

use std::fmt;

use async_trait::async_trait;
use coloc_proto::domain::{CertSerial, NodeName, Offer, Role, TenantName, UserName};

use super::{StoreResult, UnixSecs};

/// The first POSIX uid/gid handed to a tenant; below are the system's and
/// people's accounts.
pub const FIRST_POSIX_ID: u32 = 200_000;

/// Where an association's membership stands: paid ([`Current`]), past
/// its last day ([`Expired`]: its users are warned), past the grace
/// period too ([`Frozen`]: its users read but change nothing). Computed
/// by [`crate::rules::standing`]; the store only remembers the phase last
/// written to the audit log ([`TenantRecord::membership_noted`]).
///
/// [`Current`]: MembershipPhase::Current
/// [`Expired`]: MembershipPhase::Expired
/// [`Frozen`]: MembershipPhase::Frozen
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipPhase {
    Current,
    Expired,
    Frozen,
}

impl MembershipPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipPhase::Current => "current",
            MembershipPhase::Expired => "expired",
            MembershipPhase::Frozen => "frozen",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "current" => Some(MembershipPhase::Current),
            "expired" => Some(MembershipPhase::Expired),
            "frozen" => Some(MembershipPhase::Frozen),
            _ => None,
        }
    }
}

/// An admin's suspension of a tenant's apps (`coloc tenant suspend`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub since_unix: UnixSecs,
    pub by: UserName,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TenantRecord {
    pub name: TenantName,
    pub display_name: String,
    pub offer: Offer,
    /// The membership's last paid day (UTC).
    pub membership_expires: time::Date,
    /// The phase the `membership` background task last recorded in the
    /// audit log; `create_tenant` stores `Current` whatever it is given.
    pub membership_noted: MembershipPhase,
    /// Set while an admin has the tenant's apps suspended;
    /// `create_tenant` ignores it.
    pub suspension: Option<Suspension>,
    pub created_unix: UnixSecs,
    pub storage_quota_bytes: u64,
    pub volume_grace_days: u32,
    /// uid = gid owning the tenant's volumes. Allocated by the store on
    /// creation (the value passed to `create_tenant` is ignored).
    pub posix_id: u32,
    /// Sum of the sizes of its active and retained volumes. Computed by
    /// the store (ignored by `create_tenant`).
    pub storage_used_bytes: u64,
}

/// A change to a tenant's storage settings; None leaves a value as is.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantStorageChange {
    pub storage_quota_bytes: Option<u64>,
    pub volume_grace_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub name: UserName,
    /// None for the cooperative's admins.
    pub tenant: Option<TenantName>,
    pub role: Role,
    pub display_name: String,
    pub created_unix: UnixSecs,
    /// Nodes this user (an operator) holds rights on, sorted.
    pub node_grants: Vec<NodeName>,
    /// When the user was disabled: every credential of theirs is refused.
    /// Ignored by `create_user` (a user is created enabled).
    pub disabled_unix: Option<UnixSecs>,
}

/// One credential, as another names it (its minter) or a revocation
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialRef {
    /// An API token, by id.
    Token(String),
    /// A user certificate, by serial.
    Certificate(CertSerial),
}

impl fmt::Display for CredentialRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialRef::Token(id) => write!(f, "token {id}"),
            CredentialRef::Certificate(serial) => write!(f, "certificate {serial}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiTokenRecord {
    /// Public identifier, e.g. "tok-8c1d...".
    pub id: String,
    pub user: UserName,
    pub description: String,
    /// sha256 of the secret, hex.
    pub secret_hash: String,
    pub created_unix: UnixSecs,
    pub expires_unix: UnixSecs,
    pub revoked_unix: Option<UnixSecs>,
    /// The credential it was minted with; None for the roots colocd mints
    /// itself (and the tokens of an older colocd, which did not record it).
    pub minted_by: Option<CredentialRef>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserCertRecord {
    /// How people name it (see [`CertSerial`]).
    pub serial: CertSerial,
    /// sha256 of the certificate's DER, hex: how TLS finds it.
    pub fingerprint: String,
    pub user: UserName,
    pub created_unix: UnixSecs,
    pub expires_unix: UnixSecs,
    pub revoked_unix: Option<UnixSecs>,
    /// As [`ApiTokenRecord::minted_by`].
    pub minted_by: Option<CredentialRef>,
}

/// A credential revoked, and everything minted from it, directly or not,
/// that this revocation revoked (what was revoked before is not listed).
#[derive(Debug, Clone, PartialEq)]
pub struct Revoked<T> {
    pub record: T,
    pub also_revoked: Vec<CredentialRef>,
}

/// A user deleted: the record as it was, their credentials (deleted with
/// them) and other users' credentials minted from those (revoked).
#[derive(Debug, Clone, PartialEq)]
pub struct DeletedUser {
    pub user: UserRecord,
    pub deleted: Vec<CredentialRef>,
    pub also_revoked: Vec<CredentialRef>,
}

/// A user's new role; `tenant` only for an admin who becomes an operator
/// or a member (see [`crate::rules::users::role_change`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    pub role: Role,
    pub tenant: Option<TenantName>,
}

#[async_trait]
pub trait TenancyStore: Send + Sync + 'static {
    // ---- tenants
    /// Allocates the tenant's POSIX id (the next one from
    /// [`FIRST_POSIX_ID`]) and returns the stored record.
    async fn create_tenant(&self, tenant: TenantRecord) -> StoreResult<TenantRecord>;
    async fn get_tenant(&self, name: &TenantName) -> StoreResult<TenantRecord>;
    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>>;
    async fn set_tenant_storage(
        &self,
        name: &TenantName,
        change: TenantStorageChange,
    ) -> StoreResult<TenantRecord>;
    /// Sets the membership's last paid day. NotFound for an unknown
    /// tenant.
    async fn renew_membership(
        &self,
        name: &TenantName,
        expires: time::Date,
    ) -> StoreResult<TenantRecord>;
    /// Records that the phase `to` was written to the audit log, if the
    /// recorded one is still `from`; false when it was not (another pass
    /// got there first, or the tenant is unknown), so that each transition
    /// is audited once.
    async fn note_membership(
        &self,
        name: &TenantName,
        from: MembershipPhase,
        to: MembershipPhase,
    ) -> StoreResult<bool>;
    /// Suspends the tenant's apps (`Some`) or resumes them (`None`). When
    /// that changes anything, the generation of every node with an
    /// instance of the tenant that is not gone is bumped in the same
    /// transaction and those nodes are returned, to be told; suspending a
    /// suspended tenant keeps the first suspension and changes nothing.
    /// NotFound for an unknown tenant.
    async fn set_suspension(
        &self,
        name: &TenantName,
        suspension: Option<Suspension>,
    ) -> StoreResult<(TenantRecord, Vec<NodeName>)>;

    // ---- users
    /// NotFound if the tenant does not exist; AlreadyExists if the name is
    /// taken or was a deleted user's.
    async fn create_user(&self, user: UserRecord) -> StoreResult<()>;
    async fn get_user(&self, name: &UserName) -> StoreResult<UserRecord>;
    async fn list_users(&self, tenant: Option<&TenantName>) -> StoreResult<Vec<UserRecord>>;
    /// Idempotent. NotFound for an unknown user or node.
    async fn grant_node(&self, user: &UserName, node: &NodeName) -> StoreResult<UserRecord>;
    /// Idempotent. NotFound for an unknown user.
    async fn revoke_node_grant(&self, user: &UserName, node: &NodeName) -> StoreResult<UserRecord>;
    /// Changes a user's role under [`crate::rules::users::role_change`]
    /// (an operator who stops being one loses their node grants), refused
    /// if it would leave no enabled admin. Setting the role a user has
    /// changes nothing.
    async fn set_user_role(&self, name: &UserName, change: RoleChange) -> StoreResult<UserRecord>;
    /// `Some(now)` disables (keeping the first time if already disabled),
    /// refused if it would leave no enabled admin; `None` enables.
    async fn set_user_disabled(
        &self,
        name: &UserName,
        disabled: Option<UnixSecs>,
    ) -> StoreResult<UserRecord>;
    /// Revokes everything minted from the user's credentials, deletes
    /// those credentials, the grants and the user, and keeps the name from
    /// being given again; refused if it would leave no enabled admin.
    async fn delete_user(&self, name: &UserName, now: UnixSecs) -> StoreResult<DeletedUser>;

    // ---- API tokens and user certificates
    /// Inside one transaction with the insertion: the owner is enabled,
    /// and the minter (if any) exists, is not revoked and expires no
    /// earlier than the token ([`crate::rules::credentials::within_minter`]).
    async fn create_api_token(&self, token: ApiTokenRecord) -> StoreResult<()>;
    async fn api_token_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiTokenRecord>>;
    async fn get_api_token(&self, id: &str) -> StoreResult<ApiTokenRecord>;
    /// None: every token.
    async fn list_api_tokens(&self, user: Option<&UserName>) -> StoreResult<Vec<ApiTokenRecord>>;
    /// Revokes the token and, in the same transaction, every credential
    /// minted from it, directly or not. Idempotent: revoking twice keeps
    /// the first revocation time.
    async fn revoke_api_token(
        &self,
        id: &str,
        now: UnixSecs,
    ) -> StoreResult<Revoked<ApiTokenRecord>>;
    /// Checked as [`TenancyStore::create_api_token`].
    async fn add_user_cert(&self, cert: UserCertRecord) -> StoreResult<()>;
    async fn user_cert_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> StoreResult<Option<UserCertRecord>>;
    async fn get_user_cert(&self, serial: &CertSerial) -> StoreResult<UserCertRecord>;
    /// None: every certificate.
    async fn list_user_certs(&self, user: Option<&UserName>) -> StoreResult<Vec<UserCertRecord>>;
    /// As [`TenancyStore::revoke_api_token`].
    async fn revoke_user_cert(
        &self,
        serial: &CertSerial,
        now: UnixSecs,
    ) -> StoreResult<Revoked<UserCertRecord>>;
}

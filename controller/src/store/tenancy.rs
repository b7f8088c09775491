//! The people's area of the store: tenants (associations) with their
//! storage settings, users and their node grants, API tokens and user
//! certificates.
//!
//! This module declares records and the trait; it holds no SQL and no
//! policy (who may do what is [`crate::auth`]'s).

use async_trait::async_trait;
use coloc_proto::domain::{NodeName, Offer, Role, TenantName, UserName};

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
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserCertRecord {
    /// sha256 of the certificate's DER, hex.
    pub fingerprint: String,
    pub user: UserName,
    pub created_unix: UnixSecs,
    pub expires_unix: UnixSecs,
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
    /// NotFound if the tenant does not exist.
    async fn create_user(&self, user: UserRecord) -> StoreResult<()>;
    async fn get_user(&self, name: &UserName) -> StoreResult<UserRecord>;
    async fn list_users(&self, tenant: Option<&TenantName>) -> StoreResult<Vec<UserRecord>>;
    /// Idempotent. NotFound for an unknown user or node.
    async fn grant_node(&self, user: &UserName, node: &NodeName) -> StoreResult<UserRecord>;
    /// Idempotent. NotFound for an unknown user.
    async fn revoke_node_grant(&self, user: &UserName, node: &NodeName) -> StoreResult<UserRecord>;

    // ---- API tokens and user certificates
    async fn create_api_token(&self, token: ApiTokenRecord) -> StoreResult<()>;
    async fn api_token_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiTokenRecord>>;
    async fn get_api_token(&self, id: &str) -> StoreResult<ApiTokenRecord>;
    /// None: every token.
    async fn list_api_tokens(&self, user: Option<&UserName>) -> StoreResult<Vec<ApiTokenRecord>>;
    /// Idempotent: revoking twice keeps the first revocation time.
    async fn revoke_api_token(&self, id: &str, now: UnixSecs) -> StoreResult<ApiTokenRecord>;
    async fn add_user_cert(&self, cert: UserCertRecord) -> StoreResult<()>;
    async fn user_cert_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> StoreResult<Option<UserCertRecord>>;
}

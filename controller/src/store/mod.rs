//! The controller's source of truth, behind one trait.
//!
//! [`Store`] is what the API layer and the session manager use; the
//! embedded SQLite backend ([`sqlite::SqliteStore`]) is the default, and a
//! PostgreSQL backend for several controllers can implement the same trait
//! later. Every method is one transaction: enrollment in particular
//! consumes the join token and creates the node atomically, so a token can
//! never be used twice even under concurrent enrollments.
//!
//! The store validates nothing about names (the API layer hands it domain
//! types) but enforces uniqueness, referential integrity and the
//! append-only audit log.

pub mod sqlite;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use coloc_proto::agent::v1::{
    AppStatus, NodeFacts, OrphanVolume, PoolKind, PoolLayout, PoolStatus, VolumeStatus,
};
use coloc_proto::domain::{InvalidInput, NodeName, Offer, Role, SiteName, TenantName, UserName};
use coloc_proto::storage::{DiskRef, PoolName, SnapshotName, VolumeId, VolumeName};

/// Seconds since the Unix epoch.
pub type UnixSecs = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("join token is not valid")]
    JoinTokenUnknown,
    #[error("join token has expired")]
    JoinTokenExpired,
    #[error("join token was already used by node {node:?}")]
    JoinTokenUsed { node: String },
    /// The object exists but its state forbids the change (a retained
    /// volume resized, a snapshot that would be the 65th, ...).
    #[error("{kind} {name}: {reason}")]
    Conflict {
        kind: &'static str,
        name: String,
        reason: String,
    },
    /// The change would take the tenant's volumes past its quota.
    #[error(
        "tenant {tenant} would use {} of its {} storage quota ({} in use, {} more asked)",
        coloc_proto::storage::format_size(used.saturating_add(*asked)),
        coloc_proto::storage::format_size(*quota),
        coloc_proto::storage::format_size(*used),
        coloc_proto::storage::format_size(*asked)
    )]
    QuotaExceeded {
        tenant: String,
        quota: u64,
        used: u64,
        asked: u64,
    },
    #[error("database error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database schema version {found} is newer than this colocd understands ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq)]
pub struct SiteRecord {
    pub name: SiteName,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
    pub city: String,
    pub description: String,
    pub created_unix: UnixSecs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinTokenRecord {
    /// Public identifier, e.g. "jt-3f2a9c".
    pub id: String,
    pub site: SiteName,
    /// sha256 of the secret, hex. The secret itself is never stored.
    pub secret_hash: String,
    pub created_unix: UnixSecs,
    pub expires_unix: UnixSecs,
    /// "user:alice".
    pub created_by: String,
    pub used_by_node: Option<NodeName>,
    pub used_unix: Option<UnixSecs>,
}

/// Connection state as the session manager last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Certificate issued, never connected.
    Enrolling,
    Connected,
    /// Session dropped; not yet past the unreachable delay.
    Disconnected,
    Unreachable,
}

impl ConnState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Enrolling => "enrolling",
            ConnState::Connected => "connected",
            ConnState::Disconnected => "disconnected",
            ConnState::Unreachable => "unreachable",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enrolling" => Some(ConnState::Enrolling),
            "connected" => Some(ConnState::Connected),
            "disconnected" => Some(ConnState::Disconnected),
            "unreachable" => Some(ConnState::Unreachable),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub name: NodeName,
    pub site: SiteName,
    pub enrolled_unix: UnixSecs,
    pub last_seen_unix: Option<UnixSecs>,
    pub conn_state: ConnState,
    /// When conn_state last changed.
    pub conn_changed_unix: UnixSecs,
    pub draining: bool,
    pub labels: BTreeMap<String, String>,
    /// Generation of the desired configuration; bumped by every change.
    pub desired_generation: u64,
    /// Generation the agent last reported as held in its ledger.
    pub applied_generation: u64,
    /// coloc.agent.v1.ReconcileOutcome as i32.
    pub last_outcome: i32,
    pub last_message: String,
    pub facts: Option<NodeFacts>,
    /// sha256 of the node certificate's DER, hex.
    pub cert_fingerprint: String,
}

/// A new node, created by [`Store::enroll_node`].
#[derive(Debug, Clone)]
pub struct NewNode {
    pub name: NodeName,
    pub cert_fingerprint: String,
    pub facts: Option<NodeFacts>,
}

/// Days a deleted volume is kept when nobody said otherwise.
pub const DEFAULT_VOLUME_GRACE_DAYS: u32 = 30;
/// The first POSIX uid/gid handed to a tenant; below are the system's and
/// people's accounts.
pub const FIRST_POSIX_ID: u32 = 200_000;
/// Snapshots one volume may have.
pub const MAX_SNAPSHOTS_PER_VOLUME: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct TenantRecord {
    pub name: TenantName,
    pub display_name: String,
    pub offer: Offer,
    /// "YYYY-MM-DD".
    pub membership_expires: String,
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

/// A storage pool declared on a node.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRecord {
    pub node: NodeName,
    pub name: PoolName,
    pub kind: PoolKind,
    pub layout: PoolLayout,
    pub disks: Vec<DiskRef>,
    pub force: bool,
    pub created_unix: UnixSecs,
    /// As the agent last reported it; None before the first report.
    pub observed: Option<PoolStatus>,
    /// Orphans the agent last reported in this pool.
    pub orphans: Vec<OrphanVolume>,
}

/// Where a volume stands in its life; see docs/STORAGE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeLifecycle {
    Active,
    /// Deleted, kept until `purge_after_unix`.
    Retained,
    /// Past its grace period; the agent is told to destroy it.
    Purging,
    /// The agent reported it destroyed; kept as a record.
    Destroyed,
}

impl VolumeLifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeLifecycle::Active => "active",
            VolumeLifecycle::Retained => "retained",
            VolumeLifecycle::Purging => "purging",
            VolumeLifecycle::Destroyed => "destroyed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(VolumeLifecycle::Active),
            "retained" => Some(VolumeLifecycle::Retained),
            "purging" => Some(VolumeLifecycle::Purging),
            "destroyed" => Some(VolumeLifecycle::Destroyed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRecord {
    pub id: VolumeId,
    pub tenant: TenantName,
    pub name: VolumeName,
    pub node: NodeName,
    pub pool: PoolName,
    /// The pool's kind (read from the pool; ignored by `create_volume`).
    pub pool_kind: PoolKind,
    pub size_bytes: u64,
    pub reservation_bytes: u64,
    pub encrypted: bool,
    pub lifecycle: VolumeLifecycle,
    pub created_unix: UnixSecs,
    /// Set once deleted (retained, purging, destroyed).
    pub deleted_unix: Option<UnixSecs>,
    pub purge_after_unix: Option<UnixSecs>,
    /// Snapshot names wanted, oldest first.
    pub snapshots: Vec<SnapshotName>,
    /// The last resize was a forced shrink (ZFS): the agent may shrink.
    pub allow_shrink: bool,
    /// As the agent last reported it; None before the first report.
    pub observed: Option<VolumeStatus>,
}

#[derive(Debug, Clone, Default)]
pub struct VolumeFilter {
    pub tenant: Option<TenantName>,
    pub node: Option<NodeName>,
    pub include_destroyed: bool,
}

/// A volume as it goes into a node's desired configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredVolume {
    pub volume: VolumeRecord,
    /// The tenant's POSIX id, owner of the volume's root directory.
    pub owner: u32,
}

/// Everything a node's desired configuration is made of, read in one
/// transaction so that the generation matches the content.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDesired {
    pub node: NodeRecord,
    pub pools: Vec<PoolRecord>,
    /// Every volume of the node that is not destroyed, by id.
    pub volumes: Vec<DesiredVolume>,
    /// Every instance of the node that is not gone, by tenant then app.
    pub apps: Vec<DesiredApp>,
}

/// An instance as it goes into a node's desired configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredApp {
    pub instance: InstanceRecord,
    /// The tenant's POSIX id: the unit's User= and Group=.
    pub owner: u32,
}

/// What an agent reported about its storage after a pass.
#[derive(Debug, Clone, Default)]
pub struct ObservedStorage {
    pub pools: Vec<PoolStatus>,
    pub volumes: Vec<VolumeStatus>,
    pub orphans: Vec<OrphanVolume>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    Allowed,
    Denied,
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allowed => "allowed",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Assigned by the store; ignored by `append_audit`.
    pub id: u64,
    pub at_unix_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// Tenant the target belongs to; None for cooperative-wide objects.
    pub tenant: Option<TenantName>,
    pub outcome: AuditOutcome,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries with id < before.
    pub before: Option<u64>,
    /// Newest first, at most this many.
    pub limit: u32,
    pub tenant: Option<TenantName>,
    pub actor: Option<String>,
}

// ---- apps

/// The first port handed to an instance on a node (127.0.0.1:<port>);
/// the ones below are left to the system and the proxy.
pub const FIRST_APP_PORT: u16 = 20_000;

/// A catalog app's name (`[a-z][a-z0-9]{0,30}`, docs/APPS.md). Checked
/// like every other name, so that it can go into a unit name, a path and a
/// host name as it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppName(String);

impl AppName {
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidInput> {
        let value = value.into();
        crate::catalog::check_app_name(&value)?;
        Ok(AppName(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<AppName> for String {
    fn from(a: AppName) -> String {
        a.0
    }
}

/// Where an install request stands. A request is decided once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Pending,
    Approved,
    Rejected,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(RequestState::Pending),
            "approved" => Some(RequestState::Approved),
            "rejected" => Some(RequestState::Rejected),
            _ => None,
        }
    }
}

/// One message of a request's discussion.
#[derive(Debug, Clone, PartialEq)]
pub struct CommentRecord {
    pub author: UserName,
    pub at_unix: UnixSecs,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppRequestRecord {
    pub id: u64,
    pub tenant: TenantName,
    pub app: AppName,
    pub node: NodeName,
    pub volume_id: VolumeId,
    /// The volume's name (read from the volume).
    pub volume_name: VolumeName,
    pub requested_by: UserName,
    pub created_unix: UnixSecs,
    pub state: RequestState,
    pub decided_by: Option<UserName>,
    pub decided_unix: Option<UnixSecs>,
    /// The request's own comment first (when it had one), then the
    /// discussion, then the decision's.
    pub comments: Vec<CommentRecord>,
}

/// A request as a tenant's user makes it.
#[derive(Debug, Clone)]
pub struct NewAppRequest {
    pub tenant: TenantName,
    pub app: AppName,
    pub node: NodeName,
    pub volume_id: VolumeId,
    pub requested_by: UserName,
    /// Stored as the first comment when not empty.
    pub comment: String,
}

/// What an instance should be doing, as decided by people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Running,
    Stopped,
    /// Unit and route removed on the node, data kept.
    Removed,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Running => "running",
            InstanceState::Stopped => "stopped",
            InstanceState::Removed => "removed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(InstanceState::Running),
            "stopped" => Some(InstanceState::Stopped),
            "removed" => Some(InstanceState::Removed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    pub tenant: TenantName,
    pub app: AppName,
    pub node: NodeName,
    pub volume_id: VolumeId,
    /// The volume's name and lifecycle (read from the volume).
    pub volume_name: VolumeName,
    pub volume_lifecycle: VolumeLifecycle,
    pub port: u16,
    pub state: InstanceState,
    /// Bumped by each restart; a new value restarts the unit.
    pub restart_nonce: u64,
    /// The approved request that created it.
    pub request_id: u64,
    pub created_unix: UnixSecs,
    /// Removed and reported gone by the agent (or superseded by a newer
    /// instance of the same app on the node): no longer sent to the node.
    pub gone: bool,
    /// As the agent last reported it; None before the first report.
    pub observed: Option<AppStatus>,
}

#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    pub tenant: Option<TenantName>,
    pub node: Option<NodeName>,
}

/// What `coloc app start|stop|restart|remove` asks of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceChange {
    Start,
    Stop,
    /// Running, with a new restart nonce.
    Restart,
    Remove,
}

impl InstanceChange {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceChange::Start => "start",
            InstanceChange::Stop => "stop",
            InstanceChange::Restart => "restart",
            InstanceChange::Remove => "remove",
        }
    }
}

/// A change to the labels of nodes; each touched node gets a new
/// desired generation.
#[derive(Debug, Clone, Default)]
pub struct LabelChange {
    /// Empty: every node.
    pub nodes: Vec<NodeName>,
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- sites
    async fn create_site(&self, site: SiteRecord) -> StoreResult<()>;
    async fn get_site(&self, name: &SiteName) -> StoreResult<SiteRecord>;
    async fn list_sites(&self) -> StoreResult<Vec<SiteRecord>>;

    // ---- join tokens and enrollment
    async fn create_join_token(&self, token: JoinTokenRecord) -> StoreResult<()>;
    async fn list_join_tokens(&self) -> StoreResult<Vec<JoinTokenRecord>>;
    /// In one transaction: find the unused, unexpired token with this
    /// hash, mark it used by `node.name`, and create the node at the
    /// token's site (conn_state Enrolling, generation 1). Errors:
    /// JoinTokenUnknown / JoinTokenExpired / JoinTokenUsed, or
    /// AlreadyExists if a node of that name exists (the token then stays
    /// unused).
    async fn enroll_node(
        &self,
        secret_hash: &str,
        node: NewNode,
        now: UnixSecs,
    ) -> StoreResult<NodeRecord>;

    // ---- nodes
    async fn get_node(&self, name: &NodeName) -> StoreResult<NodeRecord>;
    async fn node_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Option<NodeRecord>>;
    async fn list_nodes(&self, site: Option<&SiteName>) -> StoreResult<Vec<NodeRecord>>;
    /// Sets draining and bumps the desired generation if it changed.
    async fn set_draining(&self, name: &NodeName, draining: bool) -> StoreResult<NodeRecord>;
    /// Applies the change to every named node (all nodes when empty) in
    /// one transaction, bumping each one's generation. NotFound if a named
    /// node does not exist (nothing is changed then).
    async fn change_labels(&self, change: LabelChange) -> StoreResult<Vec<NodeRecord>>;
    async fn set_conn_state(
        &self,
        name: &NodeName,
        state: ConnState,
        now: UnixSecs,
    ) -> StoreResult<()>;
    /// Nodes Disconnected since before `cutoff` become Unreachable;
    /// returns their names.
    async fn mark_unreachable(&self, cutoff: UnixSecs, now: UnixSecs)
    -> StoreResult<Vec<NodeName>>;
    /// Batched last-seen updates from heartbeats (one transaction).
    async fn record_seen(&self, seen: Vec<(NodeName, UnixSecs)>) -> StoreResult<()>;
    async fn record_observed(
        &self,
        name: &NodeName,
        applied_generation: u64,
        outcome: i32,
        message: &str,
    ) -> StoreResult<()>;
    async fn record_facts(&self, name: &NodeName, facts: &NodeFacts) -> StoreResult<()>;

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

    // ---- storage
    /// Declares a pool; bumps the node's generation. NotFound for an
    /// unknown node, AlreadyExists for a pool of that name on the node.
    async fn create_pool(&self, pool: PoolRecord) -> StoreResult<PoolRecord>;
    async fn get_pool(&self, node: &NodeName, name: &PoolName) -> StoreResult<PoolRecord>;
    /// Sorted by node then name.
    async fn list_pools(&self, node: Option<&NodeName>) -> StoreResult<Vec<PoolRecord>>;
    /// In one transaction: checks the pool exists on the node, the name is
    /// free among the tenant's volumes that are not destroyed and the
    /// tenant's quota; inserts the volume as active; bumps the node's
    /// generation. The record's lifecycle, dates, snapshots and observed
    /// status are ignored.
    async fn create_volume(&self, volume: VolumeRecord, now: UnixSecs)
    -> StoreResult<VolumeRecord>;
    async fn get_volume(&self, id: &VolumeId) -> StoreResult<VolumeRecord>;
    /// The tenant's volume of that name that is not destroyed, or else the
    /// one destroyed last.
    async fn find_volume(
        &self,
        tenant: &TenantName,
        name: &VolumeName,
    ) -> StoreResult<VolumeRecord>;
    /// Sorted by tenant, name, then creation.
    async fn list_volumes(&self, filter: VolumeFilter) -> StoreResult<Vec<VolumeRecord>>;
    /// New size of an active volume, quota checked; `allow_shrink` is
    /// recorded for the agent. Bumps the generation when the size changes.
    async fn resize_volume(
        &self,
        id: &VolumeId,
        size_bytes: u64,
        allow_shrink: bool,
    ) -> StoreResult<VolumeRecord>;
    /// Active to retained, purge after now + the tenant's grace period.
    async fn delete_volume(&self, id: &VolumeId, now: UnixSecs) -> StoreResult<VolumeRecord>;
    /// Retained (and not yet due) back to active, quota re-checked.
    async fn restore_volume(&self, id: &VolumeId, now: UnixSecs) -> StoreResult<VolumeRecord>;
    /// Appends a snapshot to an active volume's list.
    async fn add_snapshot(&self, id: &VolumeId, name: &SnapshotName) -> StoreResult<VolumeRecord>;
    async fn remove_snapshot(
        &self,
        id: &VolumeId,
        name: &SnapshotName,
    ) -> StoreResult<VolumeRecord>;
    /// Records a status the agent returned outside a pass (rollback).
    async fn set_volume_observed(
        &self,
        id: &VolumeId,
        status: &VolumeStatus,
    ) -> StoreResult<VolumeRecord>;
    /// Records a node's storage report. Purging volumes reported
    /// DESTROYED become destroyed (bumping the generation, so they leave
    /// the desired configuration) and are returned for the audit log.
    /// Statuses of volumes on other nodes are ignored.
    async fn record_storage(
        &self,
        node: &NodeName,
        observed: ObservedStorage,
    ) -> StoreResult<Vec<VolumeRecord>>;
    /// Retained volumes whose purge time has come become purging (bumping
    /// their nodes' generations); returned for the audit log.
    async fn purge_due(&self, now: UnixSecs) -> StoreResult<Vec<VolumeRecord>>;
    /// The desired configuration of each named node, one transaction per
    /// call. NotFound if one does not exist.
    async fn desired_configs(&self, nodes: &[NodeName]) -> StoreResult<Vec<NodeDesired>>;

    // ---- apps
    /// In one transaction: checks the tenant and node exist, the volume is
    /// the tenant's, active and on that node, the tenant has no live
    /// instance of the app and no pending request for it (Conflict), then
    /// inserts the request as pending with its comment.
    async fn create_app_request(
        &self,
        request: NewAppRequest,
        now: UnixSecs,
    ) -> StoreResult<AppRequestRecord>;
    async fn get_app_request(&self, id: u64) -> StoreResult<AppRequestRecord>;
    /// Sorted by id.
    async fn list_app_requests(
        &self,
        tenant: Option<&TenantName>,
        state: Option<RequestState>,
    ) -> StoreResult<Vec<AppRequestRecord>>;
    /// Appends to the discussion, whatever the request's state.
    async fn comment_app_request(
        &self,
        id: u64,
        comment: CommentRecord,
    ) -> StoreResult<AppRequestRecord>;
    /// In one transaction: the request must be pending and the tenant have
    /// no live instance of the app (Conflict otherwise), its volume still
    /// active; a removed instance of the app still on the node is taken
    /// over (marked gone); the instance is created running on the lowest
    /// free port from [`FIRST_APP_PORT`] on the node, the decision (and its
    /// comment, when not empty) recorded, the node's generation bumped.
    async fn approve_app_request(
        &self,
        id: u64,
        by: &UserName,
        comment: &str,
        now: UnixSecs,
    ) -> StoreResult<(AppRequestRecord, InstanceRecord)>;
    /// A pending request becomes rejected, with its comment.
    async fn reject_app_request(
        &self,
        id: u64,
        by: &UserName,
        comment: &str,
        now: UnixSecs,
    ) -> StoreResult<AppRequestRecord>;
    /// The tenant's live instance of the app, or else its latest removed
    /// one.
    async fn get_instance(&self, tenant: &TenantName, app: &AppName)
    -> StoreResult<InstanceRecord>;
    /// Instances that are not gone, by tenant, app, then age.
    async fn list_instances(&self, filter: InstanceFilter) -> StoreResult<Vec<InstanceRecord>>;
    /// Applies the change to the tenant's live instance of the app,
    /// bumping its node's generation when something changed (starting a
    /// running instance changes nothing). NotFound without any instance,
    /// Conflict when the latest one is removed.
    async fn change_instance(
        &self,
        tenant: &TenantName,
        app: &AppName,
        change: InstanceChange,
    ) -> StoreResult<InstanceRecord>;
    /// Records a node's app statuses on its instances that are not gone.
    /// Removed instances reported "removed" become gone (bumping the
    /// generation, so they leave the desired configuration) and are
    /// returned for the audit log. Statuses naming no instance of this
    /// node are ignored.
    async fn record_apps(
        &self,
        node: &NodeName,
        statuses: Vec<AppStatus>,
    ) -> StoreResult<Vec<InstanceRecord>>;

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

    // ---- audit (append-only)
    async fn append_audit(&self, entry: AuditRecord) -> StoreResult<u64>;
    async fn list_audit(&self, filter: AuditFilter) -> StoreResult<Vec<AuditRecord>>;
}

//! The apps' area of the store: install requests with their discussion
//! and decision, and the app instances approvals create (docs/APPS.md).
//!
//! This module declares records and the trait; it holds no SQL. The port
//! choice, the request decision and what a change does to an instance are
//! in [`crate::rules::ports`], [`crate::rules::requests`] and
//! [`crate::rules::instances`].

use async_trait::async_trait;
use coloc_proto::agent::v1::AppStatus;
use coloc_proto::apps::WebLogin;
use coloc_proto::domain::{NodeName, TenantName, UserName};
use coloc_proto::storage::{VolumeId, VolumeName};

use super::{StoreResult, UnixSecs, VolumeLifecycle};

/// The first port handed to an instance on a node (`127.0.0.1:<port>`);
/// the ones below are left to the system, the proxy and the ports apps
/// open to the outside (proto's rule, which the node applies too).
pub use coloc_proto::apps::FIRST_APP_PORT;

pub use coloc_proto::apps::AppName;

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
    /// The tenant's apps are suspended by an admin (read from the tenant):
    /// the node is told to keep the instance stopped.
    pub tenant_suspended: bool,
    /// Its node was removed: an orphan ([`crate::rules::orphans`]).
    pub node_removed: bool,
    /// The login the node's proxy asks for, when the tenant set one (apps
    /// the catalog marks `web.auth = "proxy"`). Only the bcrypt hash.
    pub web_login: Option<WebLogin>,
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

/// An instance as it goes into a node's desired configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredApp {
    pub instance: InstanceRecord,
    /// The tenant's POSIX id: the unit's User= and Group=.
    pub owner: u32,
}

#[async_trait]
pub trait AppStore: Send + Sync + 'static {
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
    /// Conflict when the latest one is removed. On a removed node only
    /// Remove is accepted, and releases the instance (removed and gone at
    /// once, even one removed before and never reported gone).
    async fn change_instance(
        &self,
        tenant: &TenantName,
        app: &AppName,
        change: InstanceChange,
    ) -> StoreResult<InstanceRecord>;
    /// Sets the login the node's proxy asks for in front of the tenant's
    /// live instance of the app (replacing any earlier one) and bumps its
    /// node's generation. NotFound without a live instance, Conflict on a
    /// removed node. Whether the app is one the proxy protects is the
    /// caller's check (the catalog is not in the store).
    async fn set_instance_web_login(
        &self,
        tenant: &TenantName,
        app: &AppName,
        login: WebLogin,
    ) -> StoreResult<InstanceRecord>;
    /// Records a node's app statuses on its instances that are not gone
    /// (Conflict for a removed node).
    /// Removed instances reported "removed" become gone (bumping the
    /// generation, so they leave the desired configuration) and are
    /// returned for the audit log. Statuses naming no instance of this
    /// node are ignored.
    async fn record_apps(
        &self,
        node: &NodeName,
        statuses: Vec<AppStatus>,
    ) -> StoreResult<Vec<InstanceRecord>>;
}

//! What colocd knows of the fleet at one instant, as the metrics endpoint
//! renders it. The health store, the session registry and the alert
//! rules fill it in through [`FleetSource`]; this module owns no state.

use std::sync::Arc;

use async_trait::async_trait;
use coloc_proto::agent::v1::HealthReport;

/// The whole fleet at one instant. Names are unique where the store makes
/// them so (a node by name; a volume by tenant, node and volume; an app by
/// tenant, app and node); the renderer drops repeated label sets from a
/// node's own report (two sensors with the same label, for instance).
#[derive(Debug, Clone, Default)]
pub struct FleetSnapshot {
    pub nodes: Vec<NodeMetrics>,
    pub volumes: Vec<VolumeMetrics>,
    pub apps: Vec<AppMetrics>,
    /// Every alert rule colocd evaluates, with 0 when none of its alerts
    /// is firing, so that a query on a rule always finds its series.
    pub alerts: Vec<AlertCount>,
    pub colocd: ColocdStatus,
}

#[derive(Debug, Clone)]
pub struct NodeMetrics {
    pub name: String,
    pub site: String,
    /// An agent session is open now.
    pub connected: bool,
    /// Last heartbeat, UTC seconds; None when the node never connected.
    pub last_seen_unix: Option<i64>,
    pub desired_generation: u64,
    pub applied_generation: u64,
    /// The latest health report; None when the node never sent one.
    pub health: Option<NodeHealth>,
}

#[derive(Debug, Clone)]
pub struct NodeHealth {
    /// When colocd received the report, UTC seconds.
    pub received_unix: i64,
    pub report: Arc<HealthReport>,
}

#[derive(Debug, Clone)]
pub struct VolumeMetrics {
    pub tenant: String,
    pub node: String,
    pub volume: String,
    pub size_bytes: u64,
    /// From the node's latest health report; None when it has not said.
    pub used_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct AppMetrics {
    pub tenant: String,
    pub app: String,
    pub node: String,
    pub state: AppState,
    /// The health probe's last result; None before the first probe.
    pub healthy: Option<bool>,
    pub memory_bytes: Option<u64>,
    pub restarts: u32,
}

/// An app unit's state as systemd's ActiveState names it, plus `Removed`
/// (the agent's word once the unit is gone) and `Unknown` for anything
/// else, so that a new systemd state shows up rather than breaking the
/// endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    Active,
    Reloading,
    Inactive,
    Failed,
    Activating,
    Deactivating,
    Maintenance,
    Refreshing,
    Removed,
    Unknown,
}

impl AppState {
    /// Every state, in the order the `coloc_app_state` series are written.
    pub const ALL: [AppState; 10] = [
        AppState::Active,
        AppState::Reloading,
        AppState::Inactive,
        AppState::Failed,
        AppState::Activating,
        AppState::Deactivating,
        AppState::Maintenance,
        AppState::Refreshing,
        AppState::Removed,
        AppState::Unknown,
    ];

    /// From the agent's `AppStatus.active_state`.
    pub fn from_active_state(active_state: &str) -> Self {
        match active_state {
            "active" => AppState::Active,
            "reloading" => AppState::Reloading,
            "inactive" => AppState::Inactive,
            "failed" => AppState::Failed,
            "activating" => AppState::Activating,
            "deactivating" => AppState::Deactivating,
            "maintenance" => AppState::Maintenance,
            "refreshing" => AppState::Refreshing,
            "removed" => AppState::Removed,
            _ => AppState::Unknown,
        }
    }

    /// The `state` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Active => "active",
            AppState::Reloading => "reloading",
            AppState::Inactive => "inactive",
            AppState::Failed => "failed",
            AppState::Activating => "activating",
            AppState::Deactivating => "deactivating",
            AppState::Maintenance => "maintenance",
            AppState::Refreshing => "refreshing",
            AppState::Removed => "removed",
            AppState::Unknown => "unknown",
        }
    }
}

/// How many alerts of one rule are firing now.
#[derive(Debug, Clone)]
pub struct AlertCount {
    /// The rule's name ("disk-nvme-critical-warning").
    pub rule: String,
    /// "warning" or "critical".
    pub severity: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ColocdStatus {
    /// Agent sessions open now.
    pub sessions: usize,
}

/// Why a snapshot could not be taken (the store failed, for instance).
/// The endpoint answers 503 and logs the cause.
#[derive(Debug, thiserror::Error)]
#[error("cannot take a snapshot of the fleet")]
pub struct SnapshotError {
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl SnapshotError {
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

/// Where the endpoint takes the fleet from, once per render (at most
/// about once a second, however many scrapes come).
#[async_trait]
pub trait FleetSource: Send + Sync {
    async fn snapshot(&self) -> Result<FleetSnapshot, SnapshotError>;
}

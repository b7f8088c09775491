//! The health and alerts area of the store: each node's last accepted
//! health report (so that a restart of colocd keeps the last known
//! health), the alerts colocd's rules raise ([`crate::alerts`]), what
//! people do with them (acknowledge, silence), and the outbox the notifier
//! reads ([`AlertEvent`]).
//!
//! An alert is identified for deduplication by its rule and its subject
//! (kind, node, name): at most one alert per such key is firing, whatever
//! the callers do (a backend enforces it below the trait). Every change of
//! an alert's state is written together with its audit entry and, for
//! firing and resolution, its outbox event, in one transaction: the
//! notifier never sees an event whose alert does not say the same.

use async_trait::async_trait;
use coloc_proto::agent::v1::HealthReport;
use coloc_proto::domain::{NodeName, TenantName};

use super::{StoreResult, UnixSecs};

/// A node's last accepted health report and when colocd received it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredHealth {
    pub node: NodeName,
    pub received_unix: UnixSecs,
    /// Shared with colocd's health book: writing a fleet's reports copies
    /// none of them.
    pub report: std::sync::Arc<HealthReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertSeverity {
    /// Worth knowing, nothing to do now (a reboot pending).
    Info,
    Warning,
    Critical,
}

impl AlertSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(AlertSeverity::Info),
            "warning" => Some(AlertSeverity::Warning),
            "critical" => Some(AlertSeverity::Critical),
            _ => None,
        }
    }
}

/// What an alert is about (coloc.controller.v1.AlertSubjectKind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubjectKind {
    /// The node itself; name: the node, or the health source that could
    /// not be read ("zfs", "units").
    Node,
    /// name: the disk's serial, its device path when it has none.
    Disk,
    Pool,
    /// name: "<volume group>/<thin pool>".
    ThinPool,
    /// name: the volume's name, tenant set.
    Volume,
    /// name: the app, tenant set.
    App,
    Unit,
    /// name: the mount path.
    Filesystem,
    Sensor,
    /// name: "node" or "colocd".
    Certificate,
    /// The tenant's membership; node empty.
    Tenant,
}

impl SubjectKind {
    pub const ALL: [SubjectKind; 11] = [
        SubjectKind::Node,
        SubjectKind::Disk,
        SubjectKind::Pool,
        SubjectKind::ThinPool,
        SubjectKind::Volume,
        SubjectKind::App,
        SubjectKind::Unit,
        SubjectKind::Filesystem,
        SubjectKind::Sensor,
        SubjectKind::Certificate,
        SubjectKind::Tenant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Node => "node",
            SubjectKind::Disk => "disk",
            SubjectKind::Pool => "pool",
            SubjectKind::ThinPool => "thin-pool",
            SubjectKind::Volume => "volume",
            SubjectKind::App => "app",
            SubjectKind::Unit => "unit",
            SubjectKind::Filesystem => "filesystem",
            SubjectKind::Sensor => "sensor",
            SubjectKind::Certificate => "certificate",
            SubjectKind::Tenant => "tenant",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What an alert is about: the node it is on (None for a tenant and for
/// colocd itself), the object's name, and the tenant it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertSubject {
    pub kind: SubjectKind,
    pub node: Option<NodeName>,
    pub name: String,
    pub tenant: Option<TenantName>,
}

impl AlertSubject {
    /// `disk n1/S3X9`, `volume n1/asso/data`, `tenant asso`: for
    /// summaries, logs and audit targets.
    pub fn describe(&self) -> String {
        let mut s = format!("{} ", self.kind.as_str());
        if let Some(n) = &self.node {
            s.push_str(n.as_str());
            s.push('/');
        }
        if let Some(t) = self
            .tenant
            .as_ref()
            .filter(|_| self.kind != SubjectKind::Tenant)
        {
            s.push_str(t.as_str());
            s.push('/');
        }
        s.push_str(&self.name);
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// Someone said they are on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertAck {
    pub by: String,
    pub at_unix: UnixSecs,
    pub comment: String,
}

/// No notification until `until_unix` (a silence in the past no longer
/// holds; it is kept as a record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSilence {
    pub until_unix: UnixSecs,
    pub by: String,
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    pub id: u64,
    /// The rule that raised it ("disk-nvme-critical-warning").
    pub rule: String,
    pub severity: AlertSeverity,
    pub subject: AlertSubject,
    pub state: AlertState,
    /// One line for people: what is wrong, with the value measured.
    pub summary: String,
    pub started_unix: UnixSecs,
    /// Set once resolved.
    pub ended_unix: Option<UnixSecs>,
    pub ack: Option<AlertAck>,
    pub silence: Option<AlertSilence>,
}

impl AlertRecord {
    /// Whether a silence holds at `now`.
    pub fn silenced_at(&self, now: UnixSecs) -> bool {
        self.silence.as_ref().is_some_and(|s| s.until_unix > now)
    }
}

/// A condition a rule sees now, as the `alerts` task hands it to the
/// store: the alert it fires when no alert of the same rule and subject
/// is firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub rule: String,
    pub severity: AlertSeverity,
    pub subject: AlertSubject,
    pub summary: String,
}

/// One pass of the `alerts` task: what fires, what resolves, and firing
/// alerts whose severity changed (warning to critical and back), which
/// keep their id, start and acknowledgement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertChanges {
    pub fire: Vec<NewAlert>,
    pub resolve: Vec<u64>,
    /// (id, new severity, new summary).
    pub update: Vec<(u64, AlertSeverity, String)>,
}

impl AlertChanges {
    pub fn is_empty(&self) -> bool {
        self.fire.is_empty() && self.resolve.is_empty() && self.update.is_empty()
    }
}

/// What a pass changed: the alerts now firing that were not, and those
/// resolved (firing ones already, or already resolved meanwhile, are
/// left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedAlerts {
    pub fired: Vec<AlertRecord>,
    pub resolved: Vec<AlertRecord>,
    pub updated: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Firing only unless set.
    pub include_resolved: bool,
    pub node: Option<NodeName>,
    pub tenant: Option<TenantName>,
    /// Only alerts whose subject belongs to a tenant (what users other
    /// than admins may see).
    pub tenant_subjects_only: bool,
    /// Newest first, at most this many.
    pub limit: u32,
}

/// Listing: default and largest number of alerts.
pub const ALERTS_DEFAULT_LIMIT: u32 = 200;
pub const ALERTS_MAX_LIMIT: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertEventKind {
    Firing,
    Resolved,
}

impl AlertEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEventKind::Firing => "firing",
            AlertEventKind::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "firing" => Some(AlertEventKind::Firing),
            "resolved" => Some(AlertEventKind::Resolved),
            _ => None,
        }
    }
}

/// One entry of the notifier's outbox: an alert fired or resolved, with
/// the alert as it is now (rule, severity, subject, summary, times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    pub id: i64,
    pub alert_id: u64,
    pub kind: AlertEventKind,
    pub created_unix: UnixSecs,
    /// The alert was silenced when this happened: the notifier skips it.
    pub silenced: bool,
    pub alert: AlertRecord,
}

#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Writes these nodes' latest reports, each replacing the node's
    /// previous one (reports of nodes unknown to the store are skipped).
    async fn save_node_health(&self, reports: Vec<StoredHealth>) -> StoreResult<()>;
    /// Every node's last saved report.
    async fn load_node_health(&self) -> StoreResult<Vec<StoredHealth>>;

    /// Applies one pass of the rules at `now`, in one transaction: new
    /// alerts fire (one whose rule and subject already fire is skipped),
    /// alerts resolve (with `now` as their end), severities change; each
    /// firing and resolution gets its audit entry (actor "system") and
    /// its outbox event.
    async fn apply_alert_changes(
        &self,
        changes: AlertChanges,
        now: UnixSecs,
    ) -> StoreResult<AppliedAlerts>;
    /// Every firing alert.
    async fn firing_alerts(&self) -> StoreResult<Vec<AlertRecord>>;
    async fn list_alerts(&self, filter: AlertFilter) -> StoreResult<Vec<AlertRecord>>;
    async fn get_alert(&self, id: u64) -> StoreResult<AlertRecord>;
    /// Acknowledges an alert (again, replacing a previous acknowledgement).
    async fn ack_alert(&self, id: u64, ack: AlertAck) -> StoreResult<AlertRecord>;
    /// Silences an alert until `silence.until_unix`; None lifts a silence.
    async fn silence_alert(
        &self,
        id: u64,
        silence: Option<AlertSilence>,
    ) -> StoreResult<AlertRecord>;

    /// The notifier's outbox: events with an id above `after_id` not yet
    /// notified, oldest first, at most `limit`.
    async fn pending_alert_events(
        &self,
        after_id: i64,
        limit: usize,
    ) -> StoreResult<Vec<AlertEvent>>;
    /// Marks these events notified at `now`.
    async fn mark_alert_events_notified(&self, ids: &[i64], now: UnixSecs) -> StoreResult<()>;
}

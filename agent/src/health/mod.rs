//! The health loop: collect the node's [`HealthReport`] on the period of
//! colocd's policy and at once when something changes, send it on the
//! open session, and start the maintenance that keeps it true (see
//! [`schedule`]) or that colocd asks for.
//!
//! Decisions, in one place:
//! - Its own task, apart from the reconciliation worker: reading every
//!   disk's SMART may take a minute and must never hold up a desired
//!   configuration, and a stuck reconciliation must not silence health.
//! - The policy is the last one colocd sent, kept in the state directory
//!   with the maintenance history (`health.json`), so a node whose
//!   controller is away keeps its schedule (the defaults until colocd
//!   ever sent one).
//! - Collected at once (after [`DEBOUNCE`], so a burst of changes is one
//!   collection) when a disk appears or vanishes, when maintenance was
//!   started, and when a session opens without a report to send yet;
//!   a new session otherwise gets the latest report at once.
//! - Reports are sent with `try_send`: a session that does not keep up
//!   loses a report, never the agent's time; the next period sends again.
//! - A run colocd asked for is marked `on_demand` in the reports until it
//!   is reported finished.

pub mod schedule;
mod state;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coloc_proto::agent::v1::{
    AgentMessage, HealthPolicy, HealthReport, MaintenanceKind, MaintenanceRun, MaintenanceState,
    agent_message,
};
use coloc_proto::health::HealthSchedule;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::host::Host;
use crate::host::health::{DeviceEvent, DeviceEvents, HealthInputs, UeventError};
use crate::reconcile::Reconciler;
use crate::shutdown::Shutdown;
use crate::supervisor::SessionLink;
use coloc_proto::error_chain;

pub use state::{HEALTH_STATE_FILE, HealthState};

#[cfg(test)]
mod tests;

/// How long the loop waits after a change before collecting, so that a
/// burst of changes gives one collection.
pub const DEBOUNCE: Duration = Duration::from_secs(2);

/// What the session and the loop share. Cheap to clone.
#[derive(Clone)]
pub struct HealthHub {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    policy: watch::Sender<HealthSchedule>,
    state: Mutex<HealthState>,
    state_file: PathBuf,
    last: Mutex<Option<HealthReport>>,
    /// Runs colocd asked for, by (kind, subject), until reported finished.
    on_demand: Mutex<BTreeSet<(i32, String)>>,
    wake: Notify,
    host: Host,
}

impl HealthHub {
    /// The hub of an agent whose state directory is `state_dir`: the
    /// policy and history kept there are loaded (a missing or unreadable
    /// file is a fresh start, logged).
    pub fn new(node: &str, host: Host, state_dir: PathBuf) -> HealthHub {
        let state_file = state_dir.join(HEALTH_STATE_FILE);
        let state = HealthState::load(&state_file).unwrap_or_else(|e| {
            tracing::warn!(node, file = %state_file.display(), error = %e, "health state unreadable; starting with the default policy and no maintenance history");
            HealthState::default()
        });
        let (policy, _) = watch::channel(HealthSchedule::from_policy(state.policy().as_ref()));
        HealthHub {
            inner: Arc::new(Inner {
                node: node.to_string(),
                policy,
                state: Mutex::new(state),
                state_file,
                last: Mutex::new(None),
                on_demand: Mutex::new(BTreeSet::new()),
                wake: Notify::new(),
                host,
            }),
        }
    }

    /// Adopts the policy colocd sent in `SessionParams`; kept on disk.
    pub fn set_policy(&self, policy: Option<HealthPolicy>) {
        let schedule = HealthSchedule::from_policy(policy.as_ref());
        let changed = {
            let mut state = lock(&self.inner.state);
            let changed = state.policy() != policy;
            state.set_policy(policy);
            changed
        };
        if changed {
            tracing::info!(node = %self.inner.node, period_secs = schedule.period.as_secs(), "health policy adopted");
            self.save();
        }
        self.inner.policy.send_if_modified(|current| {
            let modified = *current != schedule;
            *current = schedule;
            modified
        });
    }

    /// The schedule in force.
    pub fn schedule(&self) -> HealthSchedule {
        *self.inner.policy.borrow()
    }

    /// The latest report, if one was collected.
    pub fn last(&self) -> Option<HealthReport> {
        lock(&self.inner.last).clone()
    }

    /// A session opened on `tx`: it gets the latest report at once, or one
    /// is collected now.
    pub fn session_opened(&self, tx: &tokio::sync::mpsc::Sender<AgentMessage>) {
        match self.last() {
            Some(report) => {
                if tx.try_send(health_message(report)).is_err() {
                    tracing::debug!(node = %self.inner.node, "health report not sent on the new session: queue full");
                }
            }
            None => self.inner.wake.notify_one(),
        }
    }

    /// Starts the maintenance colocd asked for: `Ok` with what was started,
    /// or why not. Recorded, and reported `on_demand` until finished.
    pub async fn run_on_demand(
        &self,
        kind: MaintenanceKind,
        subject: &str,
    ) -> Result<String, String> {
        if kind == MaintenanceKind::Unspecified {
            return Err("maintenance kind not given".into());
        }
        let started = self
            .inner
            .host
            .health
            .start_maintenance(kind, subject)
            .await
            .map_err(|e| error_chain(&e))?;
        tracing::info!(node = %self.inner.node, kind = ?kind, subject, "maintenance started on demand");
        // Reports name the run by what it was started on (the device
        // path when colocd gave a serial).
        lock(&self.inner.on_demand).insert((kind as i32, started.clone()));
        self.record_start(kind, &started);
        self.inner.wake.notify_one();
        Ok(started)
    }

    /// Records a start under the subject's stable key (a disk's serial
    /// when the last report knows it).
    fn record_start(&self, kind: MaintenanceKind, subject: &str) {
        let id = match kind {
            MaintenanceKind::Scrub => subject.to_string(),
            _ => self
                .last()
                .and_then(|r| {
                    r.disks
                        .iter()
                        .find(|d| d.device == subject)
                        .map(|d| schedule::disk_id(d).to_string())
                })
                .unwrap_or_else(|| subject.to_string()),
        };
        lock(&self.inner.state)
            .started
            .record_start(&schedule::key(kind, &id), unix_now());
        self.save();
    }

    fn save(&self) {
        let state = lock(&self.inner.state).clone();
        if let Err(e) = state.save(&self.inner.state_file) {
            tracing::warn!(node = %self.inner.node, file = %self.inner.state_file.display(), error = %e, "cannot keep the health state; the maintenance history may repeat a run after a restart");
        }
    }

    /// One collection: the report with on-demand runs marked, after
    /// starting what the schedule says is due.
    async fn collect(&self, inputs: &HealthInputs) -> (HealthReport, bool) {
        let mut report = self.inner.host.health.report(inputs).await;
        let now = unix_now();
        let planned = {
            let mut state = lock(&self.inner.state);
            state.started.observe(&report, now);
            schedule::plan(
                &self.schedule(),
                &self.inner.node,
                &report,
                &state.started,
                now,
            )
        };
        let mut started_any = false;
        for p in planned {
            match self
                .inner
                .host
                .health
                .start_maintenance(p.kind, &p.subject)
                .await
            {
                Ok(what) => {
                    tracing::info!(node = %self.inner.node, kind = ?p.kind, subject = %p.subject, started = %what, "scheduled maintenance started");
                    lock(&self.inner.state).started.record_start(&p.key, now);
                    started_any = true;
                }
                Err(e) => {
                    let detail = error_chain(&e);
                    tracing::warn!(node = %self.inner.node, kind = ?p.kind, subject = %p.subject, error = %detail, "scheduled maintenance not started");
                    report.maintenance.push(MaintenanceRun {
                        kind: p.kind as i32,
                        subject: p.subject,
                        state: MaintenanceState::NotStarted as i32,
                        started_unix: now,
                        finished_unix: now,
                        detail: detail.chars().take(512).collect(),
                        on_demand: false,
                    });
                }
            }
        }
        self.save();
        self.mark_on_demand(&mut report);
        crate::host::health::trim_report(&mut report);
        *lock(&self.inner.last) = Some(report.clone());
        (report, started_any)
    }

    fn mark_on_demand(&self, report: &mut HealthReport) {
        let mut asked = lock(&self.inner.on_demand);
        for run in &mut report.maintenance {
            let key = (run.kind, run.subject.clone());
            if asked.contains(&key) {
                run.on_demand = true;
                if run.state != MaintenanceState::Running as i32 {
                    asked.remove(&key);
                }
            }
        }
    }
}

/// Runs the health loop until `shutdown`: collects on the policy's
/// period and after changes, and sends each report on the open session.
/// Device events (a disk added or removed, an NVMe asynchronous event)
/// make it collect soon; without them (a simulated agent, a kernel that
/// refused the socket) it keeps to the period.
pub async fn run(
    hub: HealthHub,
    reconciler: Arc<Reconciler>,
    link: SessionLink,
    mut events: Option<Box<dyn DeviceEvents>>,
    mut shutdown: Shutdown,
) {
    let node = hub.inner.node.clone();
    let mut policy = hub.inner.policy.subscribe();
    // The first collection soon after start, not a whole period later.
    let mut next = Instant::now() + DEBOUNCE;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = hub.inner.wake.notified() => {
                next = next.min(Instant::now() + DEBOUNCE);
                continue;
            }
            event = next_event(&mut events) => {
                match event {
                    Ok(event) => {
                        tracing::debug!(node = %node, event = ?event, "device event; collecting health soon");
                        next = next.min(Instant::now() + DEBOUNCE);
                    }
                    Err(e) => {
                        tracing::warn!(node = %node, error = %error_chain(&e), "device events lost; health is collected on the period only");
                        events = None;
                    }
                }
                continue;
            }
            changed = policy.changed() => {
                if changed.is_ok() {
                    let period = policy.borrow_and_update().period;
                    next = next.min(Instant::now() + period);
                }
                continue;
            }
            _ = shutdown.wait() => return,
        }
        let inputs = volume_inputs(&reconciler);
        let (report, started) = hub.collect(&inputs).await;
        if let Some(tx) = link.current()
            && tx.try_send(health_message(report)).is_err()
        {
            tracing::debug!(node = %node, "health report not sent: session busy or gone");
        }
        let period = hub.schedule().period;
        // A run just started shows in the next report, soon.
        next = Instant::now()
            + if started {
                DEBOUNCE.max(Duration::from_secs(5))
            } else {
                period
            };
    }
}

/// The next device event; pending forever without a listener.
async fn next_event(
    events: &mut Option<Box<dyn DeviceEvents>>,
) -> Result<DeviceEvent, UeventError> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

/// The mounted volumes the last reconciliation found.
fn volume_inputs(reconciler: &Reconciler) -> HealthInputs {
    let volumes = reconciler
        .last_report()
        .map(|r| {
            r.volumes
                .into_iter()
                .filter(|v| v.mounted && !v.mount_path.is_empty())
                .map(|v| (v.id, PathBuf::from(v.mount_path)))
                .collect()
        })
        .unwrap_or_default();
    HealthInputs { volumes }
}

fn health_message(report: HealthReport) -> AgentMessage {
    AgentMessage {
        body: Some(agent_message::Body::Health(Box::new(report))),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

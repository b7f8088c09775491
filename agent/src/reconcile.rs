//! The reconciler: makes the host match the ledger's desired configuration.
//!
//! A pass is small and boring: check that the configuration is meant for
//! this node and well formed, apply each step idempotently, observe the
//! host, and report. The steps: record identity, draining and labels in
//! the agent's status; refresh the host's facts through
//! [`Health`](crate::host::Health); bring pools and volumes to their
//! desired state ([`crate::storage`]); then bring app instances and the
//! reverse proxy to theirs ([`crate::apps`]), knowing from the storage
//! step which volumes are READY. A step that fails makes the pass
//! FAILED but never stops the steps after it. App files are written
//! under the reconciler's root (`/` unless set with
//! [`Reconciler::with_root`]). Passes (and volume
//! rollbacks) never overlap: the reconciler holds a lock for each, so
//! callers may ask from several tasks. The reconciler never talks to the
//! controller and never writes the ledger; it only reads it to find the
//! volume a rollback names.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use coloc_proto::agent::v1::{
    AppStatus, DesiredConfig, NodeFacts, ObservedState, OrphanVolume, PoolStatus, VolumeStatus,
};
use coloc_proto::domain::NodeName;
use coloc_proto::storage::VolumeDecl;

use crate::apps::{self, AppsReport};
use crate::desired::{Desired, DesiredError};
use crate::host::Host;
use crate::ledger::LedgerStore;
use crate::logging::ids;
use crate::status::{Outcome, Persist, StatusHub};
use crate::storage::{self, StorageError, StorageReport};
use coloc_proto::error_chain;

/// Why a desired configuration cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("desired configuration is for node {got:?}, this is node {expected:?}")]
    WrongNode { expected: String, got: String },
    #[error("desired configuration refused")]
    Invalid(#[from] DesiredError),
    #[error("cannot observe the host")]
    Observe(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What a pass did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileReport {
    pub generation: u64,
    pub outcome: Outcome,
    /// What failed, empty on success.
    pub message: String,
    pub draining: bool,
    /// Pools and volumes as found after the pass; empty (and
    /// `storage_observed` false) when storage was not looked at.
    pub pools: Vec<PoolStatus>,
    pub volumes: Vec<VolumeStatus>,
    pub orphans: Vec<OrphanVolume>,
    pub storage_observed: bool,
    /// One status per app instance of the configuration; empty when the
    /// configuration was refused before any step.
    pub apps: Vec<AppStatus>,
    /// Instances running but not healthy yet, probed again shortly by the
    /// worker (not part of the observed state).
    pub settling: Vec<apps::Settling>,
}

impl ReconcileReport {
    pub fn to_observed(&self) -> ObservedState {
        ObservedState {
            generation: self.generation,
            outcome: self.outcome.to_proto().into(),
            message: self.message.clone(),
            draining: self.draining,
            pools: self.pools.clone(),
            volumes: self.volumes.clone(),
            orphans: self.orphans.clone(),
            storage_observed: self.storage_observed,
            apps: self.apps.clone(),
        }
    }
}

/// What the steps of a pass produced; `None` for the steps that did not
/// run because the configuration was refused.
struct Applied {
    failures: Vec<String>,
    storage: Option<StorageReport>,
    apps: Option<AppsReport>,
}

pub struct Reconciler {
    node_name: NodeName,
    host: Host,
    status: StatusHub,
    /// Where app units, configuration and the Caddyfile are written: `/`
    /// on a node, a private directory for tests and simulated agents.
    root: PathBuf,
    /// Facts seen by the last pass, for the steps that will need them
    /// (disks for storage, for instance).
    observed: Mutex<Option<NodeFacts>>,
    last_report: Mutex<Option<ReconcileReport>>,
    /// Held for the whole of a pass or a rollback: two of them acting on
    /// the same volume at once could undo each other's steps.
    pass_lock: tokio::sync::Mutex<()>,
}

impl Reconciler {
    pub fn new(node_name: NodeName, host: Host, status: StatusHub) -> Reconciler {
        Reconciler {
            node_name,
            host,
            status,
            root: apps::default_root(),
            observed: Mutex::new(None),
            last_report: Mutex::new(None),
            pass_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Writes the app pass's files under `root` instead of `/`.
    pub fn with_root(mut self, root: impl Into<PathBuf>) -> Reconciler {
        self.root = root.into();
        self
    }

    /// Where the app pass writes its files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn node_name(&self) -> &NodeName {
        &self.node_name
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn status(&self) -> &StatusHub {
        &self.status
    }

    /// The facts observed by the last successful pass.
    pub fn observed_facts(&self) -> Option<NodeFacts> {
        self.observed.lock().ok().and_then(|o| o.clone())
    }

    /// The report of the last pass, if any pass ran.
    pub fn last_report(&self) -> Option<ReconcileReport> {
        self.last_report.lock().ok().and_then(|r| r.clone())
    }

    /// Converts `desired` into domain values, refusing as a whole a
    /// configuration that must not be applied (nor ledgered): another
    /// node's, or one with a malformed or contradictory entry.
    pub fn check(&self, desired: &DesiredConfig) -> Result<Desired, ReconcileError> {
        if desired.node_name != self.node_name.as_str() {
            return Err(ReconcileError::WrongNode {
                expected: self.node_name.to_string(),
                got: desired.node_name.chars().take(80).collect(),
            });
        }
        Ok(Desired::try_from(desired)?)
    }

    /// One pass against `desired`. Never fails: what went wrong is in the
    /// report, and in the status. Waits for a pass or rollback in progress.
    pub async fn reconcile(&self, desired: &DesiredConfig) -> ReconcileReport {
        let _pass = self.pass_lock.lock().await;
        let Applied {
            failures,
            storage,
            apps,
        } = self.apply(desired).await;
        let storage = storage.unwrap_or_default();
        let apps = apps.unwrap_or_default();
        let report = ReconcileReport {
            generation: desired.generation,
            outcome: if failures.is_empty() {
                Outcome::Applied
            } else {
                Outcome::Failed
            },
            message: failures.join("; "),
            draining: self.status.snapshot().draining,
            pools: storage.pools,
            volumes: storage.volumes,
            orphans: storage.orphans,
            storage_observed: storage.observed,
            apps: apps.statuses,
            settling: apps.settling,
        };
        self.log_pass(&report);
        self.status.update(Persist::Yes, |s| {
            s.reconcile_passes += 1;
            s.last_outcome = Some(report.outcome);
            s.last_message = report.message.clone();
            if report.outcome == Outcome::Applied {
                s.applied_generation = desired.generation;
            }
        });
        if let Ok(mut last) = self.last_report.lock() {
            *last = Some(report.clone());
        }
        report
    }

    /// The steps of a pass.
    async fn apply(&self, desired: &DesiredConfig) -> Applied {
        let desired = match self.check(desired) {
            Ok(desired) => desired,
            Err(e) => {
                return Applied {
                    failures: vec![error_chain(&e)],
                    storage: None,
                    apps: None,
                };
            }
        };
        let mut failures = Vec::new();
        // Draining and labels take effect as soon as they are known, even
        // if the steps below fail: a node told to drain must not take new
        // work because `lsblk` timed out.
        self.status.update(Persist::Yes, |s| {
            s.draining = desired.draining;
            s.labels = desired.labels.clone();
            if let Some(site) = &desired.site {
                s.site = site.to_string();
            }
        });
        match self.host.health.facts().await {
            Ok(facts) => {
                if let Ok(mut observed) = self.observed.lock() {
                    *observed = Some(facts);
                }
            }
            Err(e) => failures.push(error_chain(&ReconcileError::Observe(Box::new(e)))),
        }
        let storage =
            storage::reconcile_storage(&self.host.volumes, &desired.pools, &desired.volumes).await;
        if storage.failed() {
            failures.push(format!("storage: {}", storage.summary()));
        }
        // The firewall first: an instance's loopback and outbound rules
        // are in force before its unit starts.
        if let Err(e) = crate::firewall::reconcile_firewall(&self.host, &desired.apps).await {
            failures.push(format!("firewall: {}", error_chain(&e)));
        }
        let apps = apps::reconcile_apps(
            &self.host,
            &self.root,
            &desired.apps,
            desired.proxy.as_ref(),
            &storage.volumes,
        )
        .await;
        if apps.failed() {
            failures.push(format!("apps: {}", apps.summary()));
        }
        Applied {
            failures,
            storage: Some(storage),
            apps: Some(apps),
        }
    }

    /// Logs what a pass changed, once: a generation applied for the first
    /// time (or again after failures) at info, a failure that is new or
    /// different at error, each orphan when first seen at warn; a pass
    /// that changed nothing at debug. Reads the previous pass's report, so
    /// it runs before that is replaced.
    fn log_pass(&self, report: &ReconcileReport) {
        let previous = self.last_report();
        let same = previous.as_ref().is_some_and(|p| {
            p.generation == report.generation
                && p.outcome == report.outcome
                && p.message == report.message
        });
        let node = &self.node_name;
        let generation = report.generation;
        match (report.outcome == Outcome::Applied, same) {
            (true, false) => tracing::info!(
                message_id = ids::CONFIG_APPLIED,
                node = %node,
                generation,
                draining = report.draining,
                volumes = report.volumes.len(),
                apps = report.apps.len(),
                "desired configuration applied"
            ),
            (true, true) => tracing::debug!(
                node = %node,
                generation,
                "desired configuration still applied; nothing changed"
            ),
            (false, false) => tracing::error!(
                message_id = ids::PASS_FAILED,
                node = %node,
                generation,
                error = %report.message,
                "reconciliation failed"
            ),
            (false, true) => tracing::debug!(
                node = %node,
                generation,
                error = %report.message,
                "reconciliation failed again, as in the previous pass"
            ),
        }
        for orphan in &report.orphans {
            let known = previous
                .as_ref()
                .is_some_and(|p| p.orphans.contains(orphan));
            if !known {
                tracing::warn!(
                    message_id = ids::ORPHAN_FOUND,
                    node = %node,
                    pool = %orphan.pool,
                    object = %orphan.object,
                    volume = %orphan.volume_id,
                    "orphan volume: carries a coloc id the configuration does not name; left alone"
                );
            }
        }
    }

    /// Rolls volume `volume_id` back to `snapshot`, its most recent
    /// snapshot (the `RollbackVolume` request). The volume must be ACTIVE
    /// in the configuration the ledger holds. Waits for a pass in progress.
    pub async fn rollback_volume(
        &self,
        ledger: &Arc<dyn LedgerStore>,
        volume_id: &str,
        snapshot: &str,
    ) -> Result<VolumeStatus, StorageError> {
        let _pass = self.pass_lock.lock().await;
        let held = {
            let ledger = Arc::clone(ledger);
            tokio::task::spawn_blocking(move || ledger.load()).await
        };
        let desired = held
            .map_err(StorageError::LedgerTask)?
            .map_err(StorageError::Ledger)?;
        let spec = desired
            .as_ref()
            .and_then(|d| d.volumes.iter().find(|v| v.id == volume_id))
            .ok_or_else(|| StorageError::UnknownVolume {
                id: volume_id.chars().take(80).collect(),
            })?;
        // The ledger holds wire messages: converted on the way out, as
        // everything that comes from outside the process.
        let decl = VolumeDecl::try_from(spec).map_err(|source| StorageError::InvalidVolume {
            id: spec.id.chars().take(80).collect(),
            source,
        })?;
        let result = storage::rollback(&self.host.volumes, &decl, snapshot).await;
        match &result {
            Ok(_) => {
                tracing::info!(message_id = ids::VOLUME_ROLLED_BACK, node = %self.node_name, volume = volume_id, snapshot, "volume rolled back")
            }
            Err(e) => {
                tracing::warn!(node = %self.node_name, volume = %spec.id, snapshot, error = %error_chain(e), "volume rollback refused or failed")
            }
        }
        result
    }
}

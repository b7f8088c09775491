//! The reconciler: makes the host match the ledger's desired configuration.
//!
//! A pass is small and boring: check that the configuration is meant for
//! this node and well formed, apply each step idempotently, observe the
//! host, and report. Today the desired configuration carries identity,
//! draining and labels, so applying means recording them in the agent's
//! status and refreshing the host's facts through [`Health`]; storage and
//! units become further steps of [`Reconciler::reconcile`] as the contract
//! grows. The reconciler never talks to the controller and never touches
//! the ledger: callers decide what to reconcile and serialise passes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use coloc_proto::agent::v1::{DesiredConfig, NodeFacts, ObservedState};
use coloc_proto::domain::{InvalidInput, NodeName, SiteName, check_label};

use crate::error_chain;
use crate::host::Host;
use crate::status::{Outcome, Persist, StatusHub};

/// Why a desired configuration cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("desired configuration is for node {got:?}, this is node {expected:?}")]
    WrongNode { expected: String, got: String },
    #[error("invalid site in desired configuration")]
    Site(#[source] InvalidInput),
    #[error("invalid label {key:?} in desired configuration")]
    Label {
        key: String,
        #[source]
        source: InvalidInput,
    },
    #[error("cannot observe the host")]
    Observe(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What a pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub generation: u64,
    pub outcome: Outcome,
    /// What failed, empty on success.
    pub message: String,
    pub draining: bool,
}

impl ReconcileReport {
    pub fn to_observed(&self) -> ObservedState {
        ObservedState {
            generation: self.generation,
            outcome: self.outcome.to_proto().into(),
            message: self.message.clone(),
            draining: self.draining,
        }
    }
}

pub struct Reconciler {
    node_name: NodeName,
    host: Host,
    status: StatusHub,
    /// Facts seen by the last pass, for the steps that will need them
    /// (disks for storage, for instance).
    observed: Mutex<Option<NodeFacts>>,
    last_report: Mutex<Option<ReconcileReport>>,
}

impl Reconciler {
    pub fn new(node_name: NodeName, host: Host, status: StatusHub) -> Reconciler {
        Reconciler {
            node_name,
            host,
            status,
            observed: Mutex::new(None),
            last_report: Mutex::new(None),
        }
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

    /// Refuses a configuration that must not be applied (nor ledgered):
    /// another node's, or one with malformed values.
    pub fn check(&self, desired: &DesiredConfig) -> Result<(), ReconcileError> {
        if desired.node_name != self.node_name.as_str() {
            return Err(ReconcileError::WrongNode {
                expected: self.node_name.to_string(),
                got: desired.node_name.chars().take(80).collect(),
            });
        }
        if !desired.site.is_empty() {
            SiteName::new(desired.site.as_str()).map_err(ReconcileError::Site)?;
        }
        for (key, value) in &desired.labels {
            check_label(key, value).map_err(|source| ReconcileError::Label {
                key: key.chars().take(80).collect(),
                source,
            })?;
        }
        Ok(())
    }

    /// One pass against `desired`. Never fails: what went wrong is in the
    /// report, and in the status.
    pub async fn reconcile(&self, desired: &DesiredConfig) -> ReconcileReport {
        let result = self.apply(desired).await;
        let report = match &result {
            Ok(()) => ReconcileReport {
                generation: desired.generation,
                outcome: Outcome::Applied,
                message: String::new(),
                draining: desired.draining,
            },
            Err(e) => ReconcileReport {
                generation: desired.generation,
                outcome: Outcome::Failed,
                message: error_chain(e),
                draining: self.status.snapshot().draining,
            },
        };
        match &result {
            Ok(()) => tracing::info!(
                node = %self.node_name,
                generation = desired.generation,
                draining = desired.draining,
                "desired configuration applied"
            ),
            Err(e) => tracing::error!(
                node = %self.node_name,
                generation = desired.generation,
                error = %report.message,
                "reconciliation failed: {e}"
            ),
        }
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

    async fn apply(&self, desired: &DesiredConfig) -> Result<(), ReconcileError> {
        self.check(desired)?;
        // Draining and labels take effect as soon as they are known, even
        // if observing the host fails below: a node told to drain must not
        // take new work because `lsblk` timed out.
        let labels: BTreeMap<String, String> = desired
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.status.update(Persist::Yes, |s| {
            s.draining = desired.draining;
            s.labels = labels;
            if !desired.site.is_empty() {
                s.site = desired.site.clone();
            }
        });
        let facts = self
            .host
            .health
            .facts()
            .await
            .map_err(|e| ReconcileError::Observe(Box::new(e)))?;
        if let Ok(mut observed) = self.observed.lock() {
            *observed = Some(facts);
        }
        Ok(())
    }
}

//! What the agent is doing, for people and for tests.
//!
//! One [`AgentStatus`] value per agent, published through a
//! `tokio::sync::watch` channel (tests and simulations wait on it) and, for
//! the real daemon, written as JSON to `<state_dir>/status.json` whenever
//! something that matters changes, so that `coloc-agent status` answers at
//! 3 a.m. with the controller down. Counters that move on every heartbeat
//! are published but do not trigger a file write on their own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use coloc_proto::agent::v1::ReconcileOutcome;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::durable;

/// File name of the status snapshot inside the state directory.
pub const STATUS_FILE: &str = "status.json";

/// The result of the last reconciliation or desired-configuration push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    Failed,
    StaleRejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Failed => "failed",
            Outcome::StaleRejected => "stale_rejected",
        }
    }

    pub fn to_proto(self) -> ReconcileOutcome {
        match self {
            Outcome::Applied => ReconcileOutcome::Applied,
            Outcome::Failed => ReconcileOutcome::Failed,
            Outcome::StaleRejected => ReconcileOutcome::StaleRejected,
        }
    }
}

/// A snapshot of the agent's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub node_name: String,
    /// Empty until enrolled.
    pub site: String,
    pub enrolled: bool,
    /// A session with the controller is open.
    pub connected: bool,
    /// The ledger has been loaded and reconciled (or found empty): the node
    /// works from its own state, whatever the controller does.
    pub ready: bool,
    /// Generation held in the ledger (0 when empty).
    pub ledger_generation: u64,
    /// Last generation reconciled successfully (0 when none).
    pub applied_generation: u64,
    pub last_outcome: Option<Outcome>,
    /// What failed, empty on success.
    pub last_message: String,
    pub draining: bool,
    pub labels: BTreeMap<String, String>,
    pub heartbeat_interval_secs: u32,
    pub reconcile_passes: u64,
    pub sessions_opened: u64,
    pub heartbeats_sent: u64,
    /// Why the ledger on disk could not be used at start (corrupted,
    /// unreadable); cleared once a configuration is ledgered again.
    pub ledger_error: Option<String>,
    /// The last error worth a sysadmin's attention; cleared once a session
    /// opens.
    pub last_error: Option<String>,
    /// When this snapshot was taken (Unix milliseconds).
    pub updated_unix_ms: u64,
}

/// Why the status file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read {path} (has the agent run on this machine?)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid status file")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Whether a change must reach `status.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    Yes,
    /// A counter that moves too often to be worth a disk write.
    No,
}

/// The single writer of an agent's status.
#[derive(Debug, Clone)]
pub struct StatusHub {
    tx: Arc<watch::Sender<AgentStatus>>,
    dirty: Arc<Notify>,
}

impl StatusHub {
    pub fn new(initial: AgentStatus) -> StatusHub {
        let (tx, _rx) = watch::channel(initial);
        StatusHub {
            tx: Arc::new(tx),
            dirty: Arc::new(Notify::new()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<AgentStatus> {
        self.tx.subscribe()
    }

    /// A copy of the current status.
    pub fn snapshot(&self) -> AgentStatus {
        self.tx.borrow().clone()
    }

    /// Applies `change` and publishes the result.
    pub fn update(&self, persist: Persist, change: impl FnOnce(&mut AgentStatus)) {
        self.tx.send_modify(|status| {
            change(status);
            status.updated_unix_ms = unix_ms_now();
        });
        if persist == Persist::Yes {
            self.dirty.notify_one();
        }
    }

    /// Writes `status.json` after each persisting change until `stop`
    /// fires, then once more so the file shows the final state.
    pub async fn write_file_until(&self, path: PathBuf, mut stop: crate::shutdown::Shutdown) {
        loop {
            tokio::select! {
                _ = self.dirty.notified() => self.write_file(&path).await,
                _ = stop.wait() => break,
            }
        }
        self.write_file(&path).await;
    }

    async fn write_file(&self, path: &Path) {
        let snapshot = self.snapshot();
        let path = path.to_path_buf();
        let result = tokio::task::spawn_blocking(move || write_status(&path, &snapshot)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write status file"),
            Err(e) => tracing::warn!(error = %e, "status writer task failed"),
        }
    }
}

/// Writes a status snapshot atomically.
pub fn write_status(path: &Path, status: &AgentStatus) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    json.push(b'\n');
    durable::write_atomic(path, &json, 0o644)
}

/// Reads the status the daemon last wrote in `state_dir`.
pub fn read_status(state_dir: &Path) -> Result<AgentStatus, StatusError> {
    let path = state_dir.join(STATUS_FILE);
    let bytes = std::fs::read(&path).map_err(|source| StatusError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| StatusError::Parse { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_file_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = AgentStatus {
            node_name: "n1".into(),
            ledger_generation: 7,
            last_outcome: Some(Outcome::Applied),
            labels: BTreeMap::from([("rack".into(), "b2".into())]),
            ..AgentStatus::default()
        };
        write_status(&dir.path().join(STATUS_FILE), &status).expect("write");
        assert_eq!(read_status(dir.path()).expect("read"), status);
    }

    #[test]
    fn heartbeat_counters_do_not_mark_dirty() {
        let hub = StatusHub::new(AgentStatus::default());
        let mut rx = hub.subscribe();
        hub.update(Persist::No, |s| s.heartbeats_sent += 1);
        assert!(rx.has_changed().expect("open"));
        assert_eq!(rx.borrow_and_update().heartbeats_sent, 1);
        // Nothing is pending for the file writer.
        let pending = hub.dirty.notified();
        futures::pin_mut!(pending);
        assert!(
            futures::FutureExt::now_or_never(pending.as_mut()).is_none(),
            "a heartbeat must not trigger a status write"
        );
    }
}

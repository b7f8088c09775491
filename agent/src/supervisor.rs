//! One agent's life: the tasks it runs and the order they start in.
//!
//! At start the agent reconciles from its ledger and, at the same time,
//! makes sure it is enrolled; neither waits for the other, so a node whose
//! controller is down keeps running what it was last told. Once enrolled
//! (and once the ledger pass is done, so `Hello` carries the right
//! generation) the session loop runs until shutdown. Desired
//! configurations from every session go through one worker task, so
//! ledger writes and reconciliation passes never overlap. Everything is a
//! tokio task on the caller's runtime: no thread per agent, so thousands of
//! simulated agents fit in one process.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::AgentConfig;
use crate::host::Host;
use crate::ledger::{LedgerError, LedgerStore};
use crate::reconcile::Reconciler;
use crate::session::{DEFAULT_HEARTBEAT_SECS, DesiredJob, SessionRunner, handle_desired};
use crate::status::{AgentStatus, Persist, STATUS_FILE, StatusHub};
use crate::{Shutdown, durable, enroll, error_chain};

/// Desired configurations waiting for the worker. The controller pushes
/// one at a time; a deep queue would only hide a stuck worker.
const DESIRED_QUEUE: usize = 16;

/// What an agent is made of.
pub struct AgentOptions {
    pub config: AgentConfig,
    pub host: Host,
    pub ledger: Arc<dyn LedgerStore>,
    /// Write `status.json` in the state directory (the real daemon does;
    /// simulated agents need not).
    pub write_state_files: bool,
}

/// A running agent. Dropping the handle stops the agent too, without
/// waiting for it.
pub struct AgentHandle {
    status: watch::Receiver<AgentStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AgentHandle {
    /// The agent's status, updated as it changes.
    pub fn status(&self) -> watch::Receiver<AgentStatus> {
        self.status.clone()
    }

    /// Asks the agent to stop and waits until all its tasks have ended.
    pub async fn shutdown(self) {
        // An error means every receiver is gone: the agent already ended.
        if self.stop.send(true).is_err() {
            tracing::debug!("agent had already stopped");
        }
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "agent task failed");
        }
    }
}

/// Starts an agent on the current tokio runtime: enrollment, the ledger
/// pass and the session loop. Must be called from within a runtime.
pub fn spawn_agent(opts: AgentOptions) -> AgentHandle {
    let initial = AgentStatus {
        node_name: opts.config.node_name.to_string(),
        heartbeat_interval_secs: DEFAULT_HEARTBEAT_SECS,
        ..AgentStatus::default()
    };
    let status = StatusHub::new(initial);
    let (stop, stop_rx) = watch::channel(false);
    let receiver = status.subscribe();
    let task = tokio::spawn(run_agent(opts, status, Shutdown::new(stop_rx)));
    AgentHandle {
        status: receiver,
        stop,
        task,
    }
}

async fn run_agent(opts: AgentOptions, status: StatusHub, shutdown: Shutdown) {
    let AgentOptions {
        config,
        host,
        ledger,
        write_state_files,
    } = opts;
    let node = config.node_name.clone();

    let state_dir = config.state_dir.clone();
    match tokio::task::spawn_blocking(move || durable::ensure_private_dir(&state_dir)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(node = %node, state_dir = %config.state_dir.display(), error = %e, "cannot create the state directory");
        }
        Err(e) => tracing::error!(node = %node, error = %e, "state directory task failed"),
    }
    // The writer has its own stop signal, fired after the last status
    // change below, so that the file ends with the agent's final state.
    let (writer_stop, writer_stop_rx) = watch::channel(false);
    let writer = write_state_files.then(|| {
        let status = status.clone();
        let path = config.state_dir.join(STATUS_FILE);
        let stop = Shutdown::new(writer_stop_rx);
        tokio::spawn(async move { status.write_file_until(path, stop).await })
    });

    let reconciler = Arc::new(Reconciler::new(node.clone(), host, status.clone()));
    let (identity, ()) = tokio::join!(
        enroll::ensure_enrolled(&config, reconciler.host(), &status, shutdown.clone()),
        reconcile_from_ledger(&ledger, &reconciler),
    );

    if let Some(identity) = identity {
        let (desired_tx, desired_rx) = mpsc::channel(DESIRED_QUEUE);
        let worker = tokio::spawn(desired_worker(
            Arc::clone(&ledger),
            Arc::clone(&reconciler),
            desired_rx,
            shutdown.clone(),
        ));
        SessionRunner {
            config,
            identity,
            reconciler: Arc::clone(&reconciler),
            desired_tx,
        }
        .run(shutdown.clone())
        .await;
        if let Err(e) = worker.await {
            tracing::error!(node = %node, error = %e, "desired-configuration worker failed");
        }
    }

    status.update(Persist::Yes, |s| s.connected = false);
    if let Some(writer) = writer {
        if writer_stop.send(true).is_err() {
            tracing::debug!(node = %node, "status writer already stopped");
        }
        if let Err(e) = writer.await {
            tracing::error!(node = %node, error = %e, "status writer failed");
        }
    }
    tracing::info!(node = %node, "agent stopped");
}

/// The start-up pass: apply what the ledger holds, before and without the
/// controller. Marks the agent ready whatever happens, since a node
/// without a usable ledger still has to wait for its controller.
async fn reconcile_from_ledger(ledger: &Arc<dyn LedgerStore>, reconciler: &Reconciler) {
    let node = reconciler.node_name();
    let status = reconciler.status();
    let loaded = {
        let ledger = Arc::clone(ledger);
        tokio::task::spawn_blocking(move || ledger.load()).await
    };
    match loaded {
        Ok(Ok(Some(desired))) => {
            tracing::info!(node = %node, generation = desired.generation, "reconciling from the ledger");
            status.update(Persist::Yes, |s| s.ledger_generation = desired.generation);
            reconciler.reconcile(&desired).await;
        }
        Ok(Ok(None)) => {
            tracing::info!(node = %node, "ledger empty; waiting for the controller's configuration");
        }
        Ok(Err(e)) => {
            let message = error_chain(&e);
            match e {
                LedgerError::Corrupt { .. } | LedgerError::UnsupportedVersion { .. } => {
                    tracing::error!(node = %node, error = %message, "ledger unusable; the node waits for the controller's configuration");
                }
                _ => tracing::error!(node = %node, error = %message, "cannot read the ledger"),
            }
            status.update(Persist::Yes, |s| {
                s.ledger_error = Some(message.clone());
                s.last_error = Some(message);
            });
        }
        Err(e) => {
            tracing::error!(node = %node, error = %e, "ledger task failed");
            status.update(Persist::Yes, |s| s.ledger_error = Some(e.to_string()));
        }
    }
    status.update(Persist::Yes, |s| s.ready = true);
}

/// Handles desired configurations one at a time, in arrival order, and
/// answers on the session they came from.
async fn desired_worker(
    ledger: Arc<dyn LedgerStore>,
    reconciler: Arc<Reconciler>,
    mut jobs: mpsc::Receiver<DesiredJob>,
    mut shutdown: Shutdown,
) {
    loop {
        let (desired, reply) = tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => job,
                None => return,
            },
            _ = shutdown.wait() => return,
        };
        let generation = desired.generation;
        let observed = handle_desired(&ledger, &reconciler, desired).await;
        let message = coloc_proto::agent::v1::AgentMessage {
            body: Some(coloc_proto::agent::v1::agent_message::Body::Observed(
                observed,
            )),
        };
        if reply.send(message).await.is_err() {
            // The session that asked is gone; the next one's Hello carries
            // the ledger generation, and the controller resends if needed.
            tracing::debug!(node = %reconciler.node_name(), generation, "session ended before the observed state was sent");
        }
    }
}

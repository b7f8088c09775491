//! One agent's life: the tasks it runs and the order they start in.
//!
//! At start the agent reconciles from its ledger and, at the same time,
//! makes sure it is enrolled; neither waits for the other, so a node whose
//! controller is down keeps running what it was last told. Once enrolled
//! (and once the ledger pass is done, so `Hello` carries the right
//! generation) the session loop runs until shutdown. Desired
//! configurations from every session go through one worker task, which
//! also re-runs the reconciliation from the ledger every
//! `resync_interval` (so usage figures stay fresh and a pool that comes
//! back is picked up) and reports it on the open session, if any; ledger
//! writes and reconciliation passes never overlap. Everything is a
//! tokio task on the caller's runtime: no thread per agent, so thousands of
//! simulated agents fit in one process.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coloc_proto::agent::v1::{AgentMessage, agent_message};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::AgentConfig;
use crate::health::{self, HealthHub};
use crate::host::Host;
use crate::host::health::DeviceEvents;
use crate::ledger::{LedgerError, LedgerStore};
use crate::reconcile::Reconciler;
use crate::renewal::Renewal;
use crate::session::{DEFAULT_HEARTBEAT_SECS, DesiredJob, SessionRunner, handle_desired};
use crate::settle::{self, SettleWatch};
use crate::status::{AgentStatus, Persist, STATUS_FILE, StatusHub};
use coloc_proto::error_chain;

use crate::shutdown::Shutdown;
use crate::{durable, enroll};

/// Desired configurations waiting for the worker. The controller pushes
/// one at a time; a deep queue would only hide a stuck worker.
const DESIRED_QUEUE: usize = 16;

/// The open session's outbound queue, if a session is open: how messages
/// not answering the controller (the periodic pass's observed state) reach
/// it. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SessionLink(Arc<Mutex<Option<mpsc::Sender<AgentMessage>>>>);

impl SessionLink {
    pub fn open(&self, tx: mpsc::Sender<AgentMessage>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    pub fn close(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The open session's queue.
    pub fn current(&self) -> Option<mpsc::Sender<AgentMessage>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What an agent is made of.
pub struct AgentOptions {
    pub config: AgentConfig,
    pub host: Host,
    pub ledger: Arc<dyn LedgerStore>,
    /// Write `status.json` in the state directory (the real daemon does;
    /// simulated agents need not).
    pub write_state_files: bool,
    /// The kernel's device events, which make the health loop collect at
    /// once; `None` keeps it to its period.
    pub device_events: Option<Box<dyn DeviceEvents>>,
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
        device_events,
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

    let reconciler = Arc::new(
        Reconciler::new(node.clone(), host, status.clone()).with_root(config.host_root.clone()),
    );
    let link = SessionLink::default();
    let health = HealthHub::new(
        node.as_str(),
        reconciler.host().clone(),
        config.state_dir.clone(),
    );
    let health_loop = tokio::spawn(health::run(
        health.clone(),
        Arc::clone(&reconciler),
        link.clone(),
        device_events,
        shutdown.clone(),
    ));
    // Started before enrollment: a node that cannot reach its controller
    // still resyncs from its ledger. Its first periodic pass comes one
    // interval after start, and waits for the ledger pass below anyway.
    let (desired_tx, desired_rx) = mpsc::channel(DESIRED_QUEUE);
    let worker = tokio::spawn(desired_worker(
        Worker {
            ledger: Arc::clone(&ledger),
            reconciler: Arc::clone(&reconciler),
            link: link.clone(),
            resync: config.resync_interval,
        },
        desired_rx,
        shutdown.clone(),
    ));
    let (identity, ()) = tokio::join!(
        enroll::ensure_enrolled(&config, reconciler.host(), &status, shutdown.clone()),
        reconcile_from_ledger(&ledger, &reconciler),
    );

    if let Some(identity) = identity {
        let renewal = Arc::new(Renewal::new(
            config.state_dir.clone(),
            identity.node_name.clone(),
        ));
        SessionRunner {
            config,
            identity,
            reconciler: Arc::clone(&reconciler),
            ledger: Arc::clone(&ledger),
            desired_tx,
            link,
            renewal,
            health,
        }
        .run(shutdown.clone())
        .await;
    } else {
        drop(desired_tx);
    }
    if let Err(e) = worker.await {
        tracing::error!(node = %node, error = %e, "desired-configuration worker failed");
    }
    if let Err(e) = health_loop.await {
        tracing::error!(node = %node, error = %e, "health loop failed");
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

/// What the desired-configuration worker works with.
struct Worker {
    ledger: Arc<dyn LedgerStore>,
    reconciler: Arc<Reconciler>,
    link: SessionLink,
    resync: Duration,
}

/// Handles desired configurations one at a time, in arrival order (the
/// newest of those waiting superseding the others), and answers on the
/// session they came from; in between, re-runs the
/// reconciliation from the ledger every `resync` and reports it on the
/// open session. Being one task, it never runs two of these at once.
async fn desired_worker(
    worker: Worker,
    mut jobs: mpsc::Receiver<DesiredJob>,
    mut shutdown: Shutdown,
) {
    let Worker {
        ledger,
        reconciler,
        link,
        resync,
    } = worker;
    let mut timer = tokio::time::interval_at(Instant::now() + resync, resync);
    // After a long pass, one catch-up pass is enough.
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut jobs_open = true;
    // Instances that run but did not answer yet (settle.rs).
    let mut settle = SettleWatch::default();
    let mut settle_at = Instant::now();
    loop {
        tokio::select! {
            job = jobs.recv(), if jobs_open => match job {
                Some((mut desired, mut reply)) => {
                    // Configurations that queued up while the last pass
                    // ran are superseded by the newest: each carries the
                    // whole desired state, so only the newest is applied
                    // (a burst of 100 volume creations is one pass, not
                    // 100).
                    let mut superseded = 0u32;
                    while let Ok((next, next_reply)) = jobs.try_recv() {
                        superseded += 1;
                        desired = next;
                        reply = next_reply;
                    }
                    if superseded > 0 {
                        tracing::debug!(node = %reconciler.node_name(), generation = desired.generation, superseded, "queued desired configurations superseded by a newer one");
                    }
                    let generation = desired.generation;
                    let observed = handle_desired(&ledger, &reconciler, desired).await;
                    // A pass just ran: the next periodic one can wait a
                    // whole interval.
                    timer.reset();
                    let message = AgentMessage {
                        body: Some(agent_message::Body::Observed(observed)),
                    };
                    if reply.send(message).await.is_err() {
                        // The session that asked is gone; the next one's
                        // Hello carries the ledger generation, and the
                        // controller resends if needed.
                        tracing::debug!(node = %reconciler.node_name(), generation, "session ended before the observed state was sent");
                    }
                }
                // No session will ever send more (never enrolled, or
                // shutting down): keep resyncing until shutdown.
                None => jobs_open = false,
            },
            _ = timer.tick() => resync_pass(&ledger, &reconciler, &link).await,
            () = tokio::time::sleep_until(settle_at), if settle.active() => {
                if settle::any_answers(settle.due(Instant::now())).await {
                    resync_pass(&ledger, &reconciler, &link).await;
                    timer.reset();
                } else {
                    settle.due(Instant::now());
                    settle_at = Instant::now() + settle::PROBE_EVERY;
                    continue;
                }
            }
            _ = shutdown.wait() => return,
        }
        // After every pass: watch what it found running but not healthy.
        let settling = reconciler
            .last_report()
            .map(|r| r.settling)
            .unwrap_or_default();
        let now = Instant::now();
        settle.after_pass(&settling, now);
        settle_at = now + settle::PROBE_EVERY;
    }
}

/// The periodic pass: reconcile what the ledger holds and tell the
/// controller, when a session is open.
async fn resync_pass(ledger: &Arc<dyn LedgerStore>, reconciler: &Reconciler, link: &SessionLink) {
    let node = reconciler.node_name();
    let loaded = {
        let ledger = Arc::clone(ledger);
        tokio::task::spawn_blocking(move || ledger.load()).await
    };
    let desired = match loaded {
        Ok(Ok(Some(desired))) => desired,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!(node = %node, error = %error_chain(&e), "periodic pass skipped: cannot read the ledger");
            return;
        }
        Err(e) => {
            tracing::warn!(node = %node, error = %e, "periodic pass skipped: ledger task failed");
            return;
        }
    };
    tracing::debug!(node = %node, generation = desired.generation, "periodic reconciliation");
    let observed = reconciler.reconcile(&desired).await.to_observed();
    if let Some(tx) = link.current() {
        let message = AgentMessage {
            body: Some(agent_message::Body::Observed(observed)),
        };
        // Never wait on a slow controller here: the heartbeat notices a
        // session that stopped reading, and the next pass reports again.
        if tx.try_send(message).is_err() {
            tracing::debug!(node = %node, "periodic observed state not sent: session busy or gone");
        }
    }
}

//! The registry of live agent sessions: who is connected right now, the
//! channels to each session (desired configuration, imperative requests),
//! the requests waiting for their result, and the heartbeats waiting to be
//! written to the store.
//!
//! Desired configuration is level-triggered: only the latest generation
//! matters, so it travels through a `watch` channel and a slow agent simply
//! skips intermediate generations. Imperative requests (ping, facts,
//! rollback, logs, certificate renewal) go through an `mpsc` queue and are
//! matched with their result by id.
//!
//! This is memory only, per controller process: it never reads or writes
//! the store (the agent service and the background tasks do, with what it
//! hands them) and knows nothing of the public API.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coloc_proto::agent::v1 as pb;
use coloc_proto::domain::{NodeName, TenantName};
use coloc_proto::storage::{SnapshotName, VolumeId};
use futures::Stream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tonic::Status;

use crate::error::{ApiError, ApiResult};
use crate::store::AppName;

/// How long an imperative request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A rollback unmounts, rolls back (or merges a thin snapshot) and
/// remounts: longer than a ping, still bounded.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(120);
/// Queue of imperative requests per session.
const REQUEST_QUEUE: usize = 64;

struct SessionEntry {
    id: u64,
    desired: watch::Sender<Option<pb::DesiredConfig>>,
    requests: mpsc::Sender<Result<pb::ControllerMessage, Status>>,
    /// Last message from the agent, ms on the registry's monotonic clock
    /// ([`SessionRegistry::monotonic_ms`]): a step of the wall clock (or a
    /// test moving the controller's clock by days) must not make every
    /// session look silent.
    last_message_ms: Arc<AtomicI64>,
}

/// Counters for operators and benchmarks.
#[derive(Debug, Default)]
pub struct SessionStats {
    pub sessions_opened: AtomicU64,
    pub heartbeats: AtomicU64,
    pub observed: AtomicU64,
}

/// The live sessions of this colocd process, by node; one per node (a new
/// session of the same node replaces the old one).
pub struct SessionRegistry {
    started_unix: i64,
    epoch: std::time::Instant,
    sessions: Mutex<HashMap<NodeName, SessionEntry>>,
    /// Last-seen times waiting to be flushed to the store.
    seen: Mutex<HashMap<NodeName, i64>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<pb::RequestResult>>>,
    next_id: AtomicU64,
    pub stats: SessionStats,
}

impl std::fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRegistry")
            .field("sessions", &self.connected_count())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves plain maps
    // behind, still consistent enough to keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the controller sends on one session.
pub type OutStream = Pin<Box<dyn Stream<Item = Result<pb::ControllerMessage, Status>> + Send>>;

impl SessionRegistry {
    pub fn new(started_unix: i64) -> Self {
        Self {
            started_unix,
            epoch: std::time::Instant::now(),
            sessions: Mutex::default(),
            seen: Mutex::default(),
            pending: Mutex::default(),
            next_id: AtomicU64::new(0),
            stats: SessionStats::default(),
        }
    }

    pub fn started_unix(&self) -> i64 {
        self.started_unix
    }

    /// Milliseconds since this registry was made, on a monotonic clock.
    pub(super) fn monotonic_ms(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    pub fn connected_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_connected(&self, node: &NodeName) -> bool {
        lock(&self.sessions).contains_key(node)
    }

    /// Sends a node's new desired configuration to its session, if any.
    /// Never goes backwards: an older generation arriving late is dropped.
    pub fn push_desired(&self, node: &NodeName, cfg: pb::DesiredConfig) {
        let sessions = lock(&self.sessions);
        if let Some(entry) = sessions.get(node) {
            entry.desired.send_if_modified(|cur| match cur {
                Some(c) if c.generation >= cfg.generation => false,
                _ => {
                    *cur = Some(cfg);
                    true
                }
            });
        }
    }

    /// Registers a new session for `node`, replacing any previous one
    /// (whose streams then end). Returns the session id and its outbound
    /// stream.
    pub(super) fn open(
        &self,
        node: &NodeName,
        params: pb::SessionParams,
        desired: pb::DesiredConfig,
    ) -> (u64, Arc<AtomicI64>, OutStream) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (desired_tx, desired_rx) = watch::channel(Some(desired));
        let (req_tx, req_rx) = mpsc::channel(REQUEST_QUEUE);
        // Cannot fail: the queue is empty and its receiver is right here.
        let _ = req_tx.try_send(Ok(pb::ControllerMessage {
            body: Some(pb::controller_message::Body::Params(params)),
        }));
        let last = Arc::new(AtomicI64::new(self.monotonic_ms()));
        let entry = SessionEntry {
            id,
            desired: desired_tx,
            requests: req_tx,
            last_message_ms: last.clone(),
        };
        if lock(&self.sessions).insert(node.clone(), entry).is_some() {
            tracing::info!(node = %node, "new session replaces the previous one");
        }
        self.stats.sessions_opened.fetch_add(1, Ordering::Relaxed);
        let desired_stream = WatchStream::new(desired_rx).filter_map(|d| {
            d.map(|cfg| {
                Ok(pb::ControllerMessage {
                    body: Some(pb::controller_message::Body::Desired(cfg)),
                })
            })
        });
        let out = ReceiverStream::new(req_rx).merge(desired_stream);
        (id, last, Box::pin(out))
    }

    /// Removes the session if it is still the current one for the node.
    pub(crate) fn close(&self, node: &NodeName, id: u64) -> bool {
        let mut sessions = lock(&self.sessions);
        match sessions.get(node) {
            Some(e) if e.id == id => {
                sessions.remove(node);
                true
            }
            _ => false,
        }
    }

    /// Ends the node's session, whichever it is (the node was removed, its
    /// certificate renewed or expired): its outbound stream finishes and
    /// the agent's next message finds it closed. Whether one was open.
    pub fn close_node(&self, node: &NodeName) -> bool {
        lock(&self.sessions).remove(node).is_some()
    }

    /// Ends every session (controller shutdown): the outbound streams
    /// finish, and agents reconnect to whichever controller comes next.
    pub fn close_all(&self) {
        lock(&self.sessions).clear();
    }

    pub(super) fn is_current(&self, node: &NodeName, id: u64) -> bool {
        lock(&self.sessions).get(node).is_some_and(|e| e.id == id)
    }

    pub(super) fn note_seen(&self, node: &NodeName, now: i64) {
        lock(&self.seen).insert(node.clone(), now);
    }

    pub(crate) fn take_seen(&self) -> Vec<(NodeName, i64)> {
        std::mem::take(&mut *lock(&self.seen)).into_iter().collect()
    }

    /// Sessions that sent nothing for `silence_ms`.
    pub(crate) fn silent_for(&self, silence_ms: i64) -> Vec<(NodeName, u64)> {
        let cutoff_ms = self.monotonic_ms() - silence_ms;
        lock(&self.sessions)
            .iter()
            .filter(|(_, e)| e.last_message_ms.load(Ordering::Relaxed) < cutoff_ms)
            .map(|(n, e)| (n.clone(), e.id))
            .collect()
    }

    async fn request(
        &self,
        node: &NodeName,
        kind: pb::request::Kind,
        timeout: Duration,
    ) -> ApiResult<pb::RequestResult> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let sender = lock(&self.sessions)
            .get(node)
            .map(|e| e.requests.clone())
            .ok_or_else(|| ApiError::NodeOffline(node.to_string()))?;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let msg = pb::ControllerMessage {
            body: Some(pb::controller_message::Body::Request(pb::Request {
                id,
                kind: Some(kind),
            })),
        };
        let outcome = async {
            sender
                .send(Ok(msg))
                .await
                .map_err(|_| ApiError::NodeOffline(node.to_string()))?;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(res)) => Ok(res),
                Ok(Err(_)) => Err(ApiError::NodeOffline(node.to_string())),
                Err(_) => Err(ApiError::NodeTimeout {
                    node: node.to_string(),
                    secs: timeout.as_secs(),
                }),
            }
        }
        .await;
        lock(&self.pending).remove(&id);
        let res = outcome?;
        if res.ok {
            Ok(res)
        } else {
            Err(ApiError::Conflict(format!(
                "node {node} could not carry out the request: {}",
                res.error
            )))
        }
    }

    pub async fn ping(&self, node: &NodeName) -> ApiResult<u64> {
        let res = self
            .request(node, pb::request::Kind::Ping(pb::Ping {}), REQUEST_TIMEOUT)
            .await?;
        match res.payload {
            Some(pb::request_result::Payload::Pong(p)) => Ok(p.agent_unix_ms),
            _ => Err(ApiError::Conflict(format!(
                "node {node} answered a ping with something else"
            ))),
        }
    }

    pub async fn refresh_facts(&self, node: &NodeName) -> ApiResult<pb::NodeFacts> {
        let res = self
            .request(
                node,
                pb::request::Kind::RefreshFacts(pb::RefreshFacts {}),
                REQUEST_TIMEOUT,
            )
            .await?;
        match res.payload {
            Some(pb::request_result::Payload::Facts(f)) => Ok(f),
            _ => Err(ApiError::Conflict(format!(
                "node {node} answered a facts request with something else"
            ))),
        }
    }

    /// Rolls a volume back to `snapshot` on its node; returns the status
    /// the agent reports afterwards.
    pub async fn rollback_volume(
        &self,
        node: &NodeName,
        volume: &VolumeId,
        snapshot: &SnapshotName,
    ) -> ApiResult<pb::VolumeStatus> {
        let res = self
            .request(
                node,
                pb::request::Kind::RollbackVolume(pb::RollbackVolume {
                    volume_id: volume.to_string(),
                    snapshot: snapshot.to_string(),
                }),
                ROLLBACK_TIMEOUT,
            )
            .await?;
        match res.payload {
            Some(pb::request_result::Payload::Volume(v)) if v.id == volume.as_str() => Ok(v),
            _ => Err(ApiError::Conflict(format!(
                "node {node} answered a rollback of volume {volume} with something else"
            ))),
        }
    }

    /// The last `lines` journal lines of an instance's unit, after
    /// `after_cursor` when not empty, read on its node.
    pub async fn app_logs(
        &self,
        node: &NodeName,
        tenant: &TenantName,
        app: &AppName,
        lines: u32,
        after_cursor: &str,
    ) -> ApiResult<pb::AppLogs> {
        let res = self
            .request(
                node,
                pb::request::Kind::AppLogs(pb::GetAppLogs {
                    tenant: tenant.to_string(),
                    app: app.to_string(),
                    lines,
                    after_cursor: after_cursor.to_string(),
                }),
                REQUEST_TIMEOUT,
            )
            .await?;
        match res.payload {
            Some(pb::request_result::Payload::Logs(l)) => Ok(l),
            _ => Err(ApiError::Conflict(format!(
                "node {node} answered a logs request for {tenant}/{app} with something else"
            ))),
        }
    }

    /// Asks the node for a new key and a CSR for it; returns the CSR, PEM.
    pub async fn certificate_request(&self, node: &NodeName) -> ApiResult<String> {
        let res = self
            .request(
                node,
                pb::request::Kind::RenewCertificate(pb::RenewCertificate {}),
                REQUEST_TIMEOUT,
            )
            .await?;
        match res.payload {
            Some(pb::request_result::Payload::Csr(c)) => Ok(c.csr_pem),
            _ => Err(ApiError::Conflict(format!(
                "node {node} answered a certificate renewal with something else"
            ))),
        }
    }

    /// Sends the node the certificate signed for its new key; Ok once the
    /// node says it stored it.
    pub async fn install_certificate(
        &self,
        node: &NodeName,
        certificate_pem: String,
        not_after_unix: i64,
    ) -> ApiResult<()> {
        self.request(
            node,
            pb::request::Kind::InstallCertificate(pb::InstallCertificate {
                certificate_pem,
                not_after_unix,
            }),
            REQUEST_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    pub(super) fn resolve(&self, result: pb::RequestResult) {
        if let Some(tx) = lock(&self.pending).remove(&result.request_id) {
            // The requester may have timed out meanwhile; nothing to do then.
            let _ = tx.send(result);
        }
    }
}

//! The registry of live agent sessions: who is connected right now, the
//! channels to each session (desired configuration, imperative requests),
//! the requests waiting for their result, and the heartbeats waiting to be
//! written to the store.
//!
//! Desired configuration is level-triggered: only the latest generation
//! matters, so it travels through a `watch` channel and a slow agent simply
//! skips intermediate generations. Imperative requests (ping, facts,
//! rollback, logs, certificate renewal, maintenance) go through an `mpsc` queue and are matched with their
//! result by id, within the session they were sent on: each session holds
//! its own requests waiting for an answer, so a node can only ever answer
//! what it was asked. A result from any other session (another node
//! answering with an id it read or guessed, or a late answer after the
//! asker gave up) resolves nothing; it is dropped and counted
//! ([`SessionStats::unmatched_results`]). Request ids are random, not a
//! counter, so that one node cannot even predict the ids sent to others.
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
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A rollback unmounts, rolls back (or merges a thin snapshot) and
/// remounts: longer than a ping, still bounded.
pub(crate) const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(120);
/// Queue of imperative requests per session.
const REQUEST_QUEUE: usize = 64;

struct SessionEntry {
    id: u64,
    desired: watch::Sender<Option<pb::DesiredConfig>>,
    requests: mpsc::Sender<Result<pb::ControllerMessage, Status>>,
    /// Requests sent on this session and not answered yet, by id. Dropped
    /// with the session, which tells their askers at once that the node
    /// went away.
    pending: HashMap<u64, oneshot::Sender<pb::RequestResult>>,
    /// Results of this session that matched none of its requests.
    unmatched: u64,
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
    /// Request results that answered nothing this node was asked (late,
    /// or forged): dropped.
    pub unmatched_results: AtomicU64,
    /// Health reports accepted.
    pub health_reports: AtomicU64,
}

/// The live sessions of this colocd process, by node; one per node (a new
/// session of the same node replaces the old one).
pub struct SessionRegistry {
    started_unix: i64,
    epoch: std::time::Instant,
    sessions: Mutex<HashMap<NodeName, SessionEntry>>,
    /// Last-seen times waiting to be flushed to the store.
    seen: Mutex<HashMap<NodeName, i64>>,
    /// Session ids (internal, never sent to a node).
    next_session: AtomicU64,
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
            next_session: AtomicU64::new(0),
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

    /// The nodes with a session open now.
    pub fn connected_nodes(&self) -> std::collections::HashSet<NodeName> {
        lock(&self.sessions).keys().cloned().collect()
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
        let id = self.next_session.fetch_add(1, Ordering::Relaxed) + 1;
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
            pending: HashMap::new(),
            unmatched: 0,
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

    /// Sends `kind` to the node's current session and waits for that
    /// session's answer to it.
    async fn request(
        &self,
        node: &NodeName,
        kind: pb::request::Kind,
        timeout: Duration,
    ) -> ApiResult<pb::RequestResult> {
        let (session, id, sender, rx) = {
            let mut sessions = lock(&self.sessions);
            let entry = sessions
                .get_mut(node)
                .ok_or_else(|| ApiError::NodeOffline(node.to_string()))?;
            let id = loop {
                let id: u64 = rand::random();
                if !entry.pending.contains_key(&id) {
                    break id;
                }
            };
            let (tx, rx) = oneshot::channel();
            entry.pending.insert(id, tx);
            (entry.id, id, entry.requests.clone(), rx)
        };
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
                // The session ended, and its waiting requests with it.
                Ok(Err(_)) => Err(ApiError::NodeOffline(node.to_string())),
                Err(_) => Err(ApiError::NodeTimeout {
                    node: node.to_string(),
                    secs: timeout.as_secs(),
                }),
            }
        }
        .await;
        if let Some(entry) = lock(&self.sessions).get_mut(node)
            && entry.id == session
        {
            entry.pending.remove(&id);
        }
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

    /// Asks the node to start a scrub or a SMART self-test now; Ok once
    /// the agent says it started (its result comes in its health reports).
    pub async fn run_maintenance(
        &self,
        node: &NodeName,
        kind: pb::MaintenanceKind,
        subject: &str,
    ) -> ApiResult<()> {
        self.request(
            node,
            pb::request::Kind::RunMaintenance(pb::RunMaintenance {
                kind: kind as i32,
                subject: subject.to_string(),
            }),
            REQUEST_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    /// Hands a result that arrived on session `session` of `node` to
    /// whoever asked that session for it. A result matching no request of
    /// that very session is dropped and counted: it is either late (its
    /// asker gave up) or an answer to something this node was never asked.
    /// Returns whether it matched.
    pub(super) fn resolve(&self, node: &NodeName, session: u64, result: pb::RequestResult) -> bool {
        let request_id = result.request_id;
        // None: the session was replaced meanwhile, and nobody waits for
        // what it answers.
        let unmatched_in_session = {
            let mut sessions = lock(&self.sessions);
            match sessions.get_mut(node).filter(|e| e.id == session) {
                Some(entry) => match entry.pending.remove(&request_id) {
                    Some(tx) => {
                        // The asker may have timed out meanwhile; nothing
                        // to do then.
                        let _ = tx.send(result);
                        return true;
                    }
                    None => {
                        entry.unmatched += 1;
                        Some(entry.unmatched)
                    }
                },
                None => None,
            }
        };
        self.stats.unmatched_results.fetch_add(1, Ordering::Relaxed);
        // At warn once per session: a node can send these as fast as it
        // likes, and the counter keeps the total.
        if unmatched_in_session == Some(1) {
            tracing::warn!(
                node = %node,
                request_id,
                "request result matching nothing this node was asked: dropped"
            );
        } else {
            tracing::debug!(node = %node, request_id, "request result matching nothing: dropped");
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeName {
        NodeName::new(name).unwrap()
    }

    fn open(reg: &SessionRegistry, name: &str) -> (u64, OutStream) {
        let (id, _, out) = reg.open(
            &node(name),
            pb::SessionParams::default(),
            pb::DesiredConfig::default(),
        );
        (id, out)
    }

    /// The next imperative request on a session's outbound stream.
    async fn next_request(out: &mut OutStream) -> pb::Request {
        loop {
            let msg = out.next().await.expect("session open").expect("no error");
            if let Some(pb::controller_message::Body::Request(r)) = msg.body {
                return r;
            }
        }
    }

    fn pong(id: u64, agent_unix_ms: u64) -> pb::RequestResult {
        pb::RequestResult {
            request_id: id,
            ok: true,
            error: String::new(),
            payload: Some(pb::request_result::Payload::Pong(pb::Pong {
                agent_unix_ms,
            })),
        }
    }

    #[tokio::test]
    async fn a_result_resolves_only_a_request_of_its_own_session() {
        let reg = Arc::new(SessionRegistry::new(0));
        let (a, mut out_a) = open(&reg, "n-a");
        let (b, _out_b) = open(&reg, "n-b");
        let asker = tokio::spawn({
            let reg = reg.clone();
            async move { reg.ping(&node("n-a")).await }
        });
        let asked = next_request(&mut out_a).await;
        // n-b answers with the id it read, and with ids around it.
        for id in [
            asked.id,
            asked.id.wrapping_add(1),
            asked.id.wrapping_sub(1),
            1,
        ] {
            assert!(!reg.resolve(&node("n-b"), b, pong(id, 666)));
        }
        // n-a's own previous session (replaced) answers nothing either.
        assert!(!reg.resolve(&node("n-a"), a + 100, pong(asked.id, 666)));
        assert_eq!(reg.stats.unmatched_results.load(Ordering::Relaxed), 5);
        assert!(!asker.is_finished());
        assert!(reg.resolve(&node("n-a"), a, pong(asked.id, 42)));
        assert_eq!(asker.await.unwrap().unwrap(), 42);
        // Answered once: the same result again matches nothing.
        assert!(!reg.resolve(&node("n-a"), a, pong(asked.id, 42)));
    }

    #[tokio::test]
    async fn request_ids_are_not_a_sequence() {
        let reg = Arc::new(SessionRegistry::new(0));
        let (a, mut out) = open(&reg, "n-a");
        let mut ids = Vec::new();
        for _ in 0..3 {
            let asker = tokio::spawn({
                let reg = reg.clone();
                async move { reg.ping(&node("n-a")).await }
            });
            let asked = next_request(&mut out).await;
            ids.push(asked.id);
            assert!(reg.resolve(&node("n-a"), a, pong(asked.id, 1)));
            asker.await.unwrap().unwrap();
        }
        // Random 64-bit ids: consecutive ones are not a step apart (a false
        // failure has odds of about 2^-62).
        assert!(ids.windows(2).all(|w| w[1].abs_diff(w[0]) > 1), "{ids:?}");
    }

    #[tokio::test]
    async fn a_closed_session_fails_its_waiting_requests_at_once() {
        let reg = Arc::new(SessionRegistry::new(0));
        let (a, mut out) = open(&reg, "n-a");
        let asker = tokio::spawn({
            let reg = reg.clone();
            async move { reg.ping(&node("n-a")).await }
        });
        let asked = next_request(&mut out).await;
        assert!(reg.close(&node("n-a"), a));
        assert!(matches!(
            asker.await.unwrap(),
            Err(ApiError::NodeOffline(n)) if n == "n-a"
        ));
        // Its answer, arriving after the session closed, matches nothing.
        assert!(!reg.resolve(&node("n-a"), a, pong(asked.id, 1)));
    }
}

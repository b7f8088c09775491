//! The agent-facing service (coloc.agent.v1) and the registry of live
//! sessions.
//!
//! Each connected agent holds one session: a bidirectional stream on which
//! the controller sends session parameters, the node's desired
//! configuration (level-triggered: only the latest generation matters, so
//! it travels through a `watch` channel and a slow agent simply skips
//! intermediate generations) and imperative requests (an `mpsc` queue).
//! The agent answers with heartbeats, observed state and request results.
//!
//! Heartbeats are folded in memory and written to the store in batches by
//! [`run_background`], which also closes sessions that went silent (a
//! power-cut server sends no FIN), marks nodes unreachable once their
//! session has been gone for the configured delay, and moves deleted
//! volumes past their grace period to purging.
//!
//! A desired configuration is always built from one store read
//! ([`Store::desired_configs`](crate::store::Store::desired_configs)), so
//! its generation matches its pools, volumes and app instances; instances
//! are rendered through the catalog loaded at start (docs/APPS.md).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coloc_proto::agent::v1 as pb;
use coloc_proto::agent::v1::agent_service_server::AgentService;
use coloc_proto::domain::{NodeName, TenantName};
use coloc_proto::storage::{SnapshotName, VolumeId, format_size, mount_path};
use futures::Stream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tonic::{Request, Response, Status, Streaming};

use crate::api::Ctx;
use crate::auth;
use crate::ca::fingerprint_der;
use crate::catalog::{Catalog, RenderContext};
use crate::config::ControllerConfig;
use crate::error::{ApiError, ApiResult};
use crate::store::{
    AppName, AuditOutcome, AuditRecord, ConnState, DesiredApp, InstanceRecord, InstanceState,
    NewNode, NodeDesired, ObservedStorage, StoreError, VolumeLifecycle, VolumeRecord,
};

/// Lifetime of a node certificate. Renewal arrives with a later issue;
/// until then a node re-enrolls with a new join token.
const NODE_CERT_TTL_SECS: i64 = 5 * 365 * 86400;
/// The agent must say Hello this quickly after opening a session.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an imperative request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A rollback unmounts, rolls back (or merges a thin snapshot) and
/// remounts: longer than a ping, still bounded.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(120);
/// How often retained volumes are checked for the end of their grace
/// period.
const PURGE_INTERVAL: Duration = Duration::from_secs(2);
const MAX_CSR_BYTES: usize = 16 * 1024;
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

fn volume_state(l: VolumeLifecycle) -> Option<pb::VolumeState> {
    match l {
        VolumeLifecycle::Active => Some(pb::VolumeState::Active),
        VolumeLifecycle::Retained => Some(pb::VolumeState::Retained),
        VolumeLifecycle::Purging => Some(pb::VolumeState::Purged),
        // Gone from disk: absent from the configuration (absence never
        // means "destroy" to the agent).
        VolumeLifecycle::Destroyed => None,
    }
}

/// What an instance is told to be on its node. An instance whose volume
/// is not active (deleted, being destroyed) is sent STOPPED whatever its
/// recorded state: its data directory is unmounted or read-only, and it
/// comes back by itself if the volume is restored.
fn app_state(i: &InstanceRecord) -> pb::AppState {
    match (i.state, i.volume_lifecycle) {
        (InstanceState::Removed, _) => pb::AppState::Removed,
        (InstanceState::Stopped, _) => pb::AppState::Stopped,
        (InstanceState::Running, VolumeLifecycle::Active) => pb::AppState::Running,
        (
            InstanceState::Running,
            VolumeLifecycle::Retained | VolumeLifecycle::Purging | VolumeLifecycle::Destroyed,
        ) => pb::AppState::Stopped,
    }
}

/// One instance rendered through the catalog. A removed instance the
/// catalog cannot render (its app left the catalog) still goes out with
/// what the agent needs to remove its unit and route; any other instance
/// that does not render is left out and logged.
fn app_spec(da: &DesiredApp, catalog: &Catalog, config: &ControllerConfig) -> Option<pb::AppSpec> {
    let i = &da.instance;
    let state = app_state(i);
    let rendered = match catalog.get(i.app.as_str()) {
        Some(app) => app
            .render(&RenderContext {
                tenant: i.tenant.clone(),
                uid: da.owner,
                gid: da.owner,
                port: i.port,
                volume_id: i.volume_id.to_string(),
                volume_mount: mount_path(i.tenant.as_str(), i.volume_name.as_str()),
                domain: config.apps_domain.clone(),
                state,
                restart_nonce: i.restart_nonce,
            })
            .map_err(|e| e.to_string()),
        None => Err("the app is not in the catalog".to_string()),
    };
    match rendered {
        Ok(spec) => Some(spec),
        Err(_) if state == pb::AppState::Removed => Some(pb::AppSpec {
            tenant: i.tenant.to_string(),
            app: i.app.to_string(),
            state: state as i32,
            port: u32::from(i.port),
            hostname: crate::api::convert::app_hostname(
                i.tenant.as_str(),
                i.app.as_str(),
                &config.apps_domain,
            ),
            restart_nonce: i.restart_nonce,
            volume_id: i.volume_id.to_string(),
            uid: da.owner,
            gid: da.owner,
            ..Default::default()
        }),
        Err(error) => {
            tracing::error!(node = %i.node, tenant = %i.tenant, app = %i.app, error = %error, "cannot render app instance; left out of the node's configuration");
            None
        }
    }
}

/// The node's whole desired configuration.
pub fn desired_of(
    d: &NodeDesired,
    catalog: &Catalog,
    config: &ControllerConfig,
) -> pb::DesiredConfig {
    let rec = &d.node;
    let apps: Vec<pb::AppSpec> = d
        .apps
        .iter()
        .filter_map(|da| app_spec(da, catalog, config))
        .collect();
    // The proxy serves deployed apps; a node whose instances are all being
    // removed has none left to serve.
    let proxy = d
        .apps
        .iter()
        .any(|da| da.instance.state != InstanceState::Removed)
        .then(|| pb::ProxySpec {
            domain: config.apps_domain.clone(),
            acme_email: config.acme_email.clone(),
        });
    pb::DesiredConfig {
        generation: rec.desired_generation,
        node_name: rec.name.to_string(),
        site: rec.site.to_string(),
        draining: rec.draining,
        labels: rec.labels.clone().into_iter().collect(),
        pools: d
            .pools
            .iter()
            .map(|p| pb::PoolSpec {
                name: p.name.to_string(),
                kind: p.kind as i32,
                layout: p.layout as i32,
                disks: p.disks.iter().map(ToString::to_string).collect(),
                force: p.force,
            })
            .collect(),
        volumes: d
            .volumes
            .iter()
            .filter_map(|dv| {
                let v = &dv.volume;
                let state = volume_state(v.lifecycle)?;
                Some(pb::VolumeSpec {
                    id: v.id.to_string(),
                    tenant: v.tenant.to_string(),
                    name: v.name.to_string(),
                    pool: v.pool.to_string(),
                    pool_kind: v.pool_kind as i32,
                    size_bytes: v.size_bytes,
                    reservation_bytes: v.reservation_bytes,
                    encrypted: v.encrypted,
                    state: state as i32,
                    owner_uid: dv.owner,
                    owner_gid: dv.owner,
                    snapshots: v.snapshots.iter().map(ToString::to_string).collect(),
                    allow_shrink: v.allow_shrink,
                })
            })
            .collect(),
        apps,
        proxy,
    }
}

/// Sends the current desired configuration to each of these nodes that
/// has a session (one store read for all of them). A failure is logged:
/// the change is stored, and the node gets it at its next session.
pub async fn push_nodes(ctx: &Ctx, nodes: &[NodeName]) {
    let connected: Vec<NodeName> = nodes
        .iter()
        .filter(|n| ctx.sessions.is_connected(n))
        .cloned()
        .collect();
    if connected.is_empty() {
        return;
    }
    match ctx.store.desired_configs(&connected).await {
        Ok(configs) => {
            for d in &configs {
                ctx.sessions
                    .push_desired(&d.node.name, desired_of(d, &ctx.catalog, &ctx.config));
            }
        }
        Err(err) => {
            tracing::error!(nodes = connected.len(), error = %err, "cannot read desired configurations to push");
        }
    }
}

/// Writes an audit entry for something colocd did by itself.
async fn audit_system_entry(
    ctx: &Ctx,
    action: &str,
    target: String,
    tenant: &TenantName,
    detail: String,
) {
    let entry = AuditRecord {
        id: 0,
        at_unix_ms: ctx.clock.now_ms(),
        actor: "system".into(),
        action: action.into(),
        target: target.clone(),
        tenant: Some(tenant.clone()),
        outcome: AuditOutcome::Allowed,
        detail,
    };
    if let Err(err) = ctx.store.append_audit(entry).await {
        tracing::error!(action, target = %target, error = %err, "cannot write audit entry");
    }
}

/// Writes an audit entry for something colocd did by itself to a volume.
pub async fn audit_system(ctx: &Ctx, action: &str, v: &VolumeRecord, detail: String) {
    audit_system_entry(
        ctx,
        action,
        format!("volume:{}/{}", v.tenant, v.name),
        &v.tenant,
        detail,
    )
    .await;
}

type OutStream = Pin<Box<dyn Stream<Item = Result<pb::ControllerMessage, Status>> + Send>>;

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
    fn monotonic_ms(&self) -> i64 {
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
    fn open(
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
    fn close(&self, node: &NodeName, id: u64) -> bool {
        let mut sessions = lock(&self.sessions);
        match sessions.get(node) {
            Some(e) if e.id == id => {
                sessions.remove(node);
                true
            }
            _ => false,
        }
    }

    /// Ends every session (controller shutdown): the outbound streams
    /// finish, and agents reconnect to whichever controller comes next.
    pub fn close_all(&self) {
        lock(&self.sessions).clear();
    }

    fn is_current(&self, node: &NodeName, id: u64) -> bool {
        lock(&self.sessions).get(node).is_some_and(|e| e.id == id)
    }

    fn note_seen(&self, node: &NodeName, now: i64) {
        lock(&self.seen).insert(node.clone(), now);
    }

    fn take_seen(&self) -> Vec<(NodeName, i64)> {
        std::mem::take(&mut *lock(&self.seen)).into_iter().collect()
    }

    /// Sessions that sent nothing for `silence_ms`.
    fn silent_for(&self, silence_ms: i64) -> Vec<(NodeName, u64)> {
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

    fn resolve(&self, result: pb::RequestResult) {
        if let Some(tx) = lock(&self.pending).remove(&result.request_id) {
            // The requester may have timed out meanwhile; nothing to do then.
            let _ = tx.send(result);
        }
    }
}

#[derive(Debug, Clone)]
pub struct AgentApi(pub Ctx);

impl AgentApi {
    async fn audit_enroll(&self, actor: String, node: &str, outcome: AuditOutcome, detail: String) {
        let entry = AuditRecord {
            id: 0,
            at_unix_ms: self.0.clock.now_ms(),
            actor,
            action: "node.enroll".into(),
            target: format!("node:{}", node.chars().take(63).collect::<String>()),
            tenant: None,
            outcome,
            detail,
        };
        if let Err(err) = self.0.store.append_audit(entry).await {
            tracing::error!(error = %err, "cannot write audit entry");
        }
    }

    async fn enroll_inner(&self, r: pb::EnrollRequest) -> ApiResult<pb::EnrollResponse> {
        let ctx = &self.0;
        let name = NodeName::new(r.node_name)?;
        if r.join_token.is_empty() || r.join_token.len() > 256 {
            return Err(StoreError::JoinTokenUnknown.into());
        }
        if r.csr_pem.len() > MAX_CSR_BYTES {
            return Err(
                coloc_proto::domain::InvalidInput::field("csr", "larger than 16 KiB").into(),
            );
        }
        let now = ctx.clock.now();
        // Signing first is harmless: the certificate is worthless until its
        // fingerprint is stored, which happens only if the token is good.
        let issued =
            ctx.ca
                .sign_client_csr(&r.csr_pem, name.as_str(), "node", now, NODE_CERT_TTL_SECS)?;
        let rec = ctx
            .store
            .enroll_node(
                &auth::hash_secret(&r.join_token),
                NewNode {
                    name: name.clone(),
                    cert_fingerprint: issued.fingerprint.clone(),
                    facts: r.facts,
                },
                now,
            )
            .await?;
        let site = ctx.store.get_site(&rec.site).await?;
        if site.country != "FR" {
            return Err(ApiError::Policy(format!(
                "site {} is not in France",
                site.name
            )));
        }
        tracing::info!(node = %name, site = %rec.site, "node enrolled");
        Ok(pb::EnrollResponse {
            node_name: name.to_string(),
            site: rec.site.to_string(),
            certificate_pem: issued.pem,
            ca_certificate_pem: ctx.ca.cert_pem().to_string(),
        })
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn enroll(
        &self,
        req: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let r = req.into_inner();
        let node = r.node_name.clone();
        match self.enroll_inner(r).await {
            Ok(resp) => {
                self.audit_enroll(
                    format!("node:{}", resp.node_name),
                    &node,
                    AuditOutcome::Allowed,
                    format!("site {}", resp.site),
                )
                .await;
                Ok(Response::new(resp))
            }
            Err(e) => {
                let outcome = match &e {
                    ApiError::Store(
                        StoreError::JoinTokenUnknown
                        | StoreError::JoinTokenExpired
                        | StoreError::JoinTokenUsed { .. },
                    ) => AuditOutcome::Denied,
                    _ => AuditOutcome::Failed,
                };
                self.audit_enroll("anonymous".into(), &node, outcome, e.to_string())
                    .await;
                tracing::warn!(node = %node.chars().take(63).collect::<String>(), error = %e, "enrollment refused");
                Err(e.to_status())
            }
        }
    }

    type SessionStream = OutStream;

    async fn session(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let ctx = self.0.clone();
        let fingerprint = req
            .peer_certs()
            .and_then(|c| c.first().map(|c| fingerprint_der(c.as_ref())))
            .ok_or_else(|| {
                Status::unauthenticated("a session needs the node's client certificate")
            })?;
        let node = ctx
            .store
            .node_by_fingerprint(&fingerprint)
            .await
            .map_err(|e| ApiError::from(e).to_status())?
            .ok_or_else(|| {
                Status::unauthenticated(
                    "this certificate belongs to no node (removed, or re-enrolled since)",
                )
            })?;
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(pb::AgentMessage {
                body: Some(pb::agent_message::Body::Hello(h)),
            }))) => h,
            Ok(Ok(_)) => return Err(Status::invalid_argument("the first message must be Hello")),
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no Hello received")),
        };
        let name = node.name.clone();
        if let Some(facts) = &hello.facts {
            ctx.store
                .record_facts(&name, facts)
                .await
                .map_err(|e| ApiError::from(e).to_status())?;
        }
        ctx.store
            .set_conn_state(&name, ConnState::Connected, ctx.clock.now())
            .await
            .map_err(|e| ApiError::from(e).to_status())?;
        // Re-read: the node may have changed between the lookup and now.
        let desired = ctx
            .store
            .desired_configs(std::slice::from_ref(&name))
            .await
            .map_err(|e| ApiError::from(e).to_status())?
            .pop()
            .ok_or_else(|| Status::internal("the node vanished while opening its session"))?;
        let node = &desired.node;
        let params = pb::SessionParams {
            heartbeat_interval_secs: ctx.config.heartbeat_interval_secs,
            controller_unix_ms: ctx.clock.now_ms() as u64,
        };
        let (id, last, out) = ctx.sessions.open(
            &name,
            params,
            desired_of(&desired, &ctx.catalog, &ctx.config),
        );
        // Recorded now rather than at the next flush, so that a node shown
        // as ready also shows when it was seen.
        ctx.store
            .record_seen(vec![(name.clone(), ctx.clock.now())])
            .await
            .map_err(|e| ApiError::from(e).to_status())?;
        tracing::info!(
            node = %name,
            agent_version = %hello.agent_version,
            ledger_generation = hello.ledger_generation,
            desired_generation = node.desired_generation,
            "session opened"
        );
        tokio::spawn(async move {
            read_inbound(ctx, name, id, last, inbound).await;
        });
        Ok(Response::new(out))
    }
}

async fn read_inbound(
    ctx: Ctx,
    name: NodeName,
    id: u64,
    last: Arc<AtomicI64>,
    mut inbound: Streaming<pb::AgentMessage>,
) {
    let reason = loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break "agent closed the session".to_string(),
            Err(status) => break format!("session error: {}", status.message()),
        };
        if !ctx.sessions.is_current(&name, id) {
            break "replaced by a newer session".to_string();
        }
        last.store(ctx.sessions.monotonic_ms(), Ordering::Relaxed);
        let result = match msg.body {
            Some(pb::agent_message::Body::Heartbeat(_)) => {
                ctx.sessions
                    .stats
                    .heartbeats
                    .fetch_add(1, Ordering::Relaxed);
                ctx.sessions.note_seen(&name, ctx.clock.now());
                Ok(())
            }
            Some(pb::agent_message::Body::Observed(mut o)) => {
                ctx.sessions.stats.observed.fetch_add(1, Ordering::Relaxed);
                ctx.sessions.note_seen(&name, ctx.clock.now());
                if o.outcome != pb::ReconcileOutcome::Applied as i32 {
                    tracing::warn!(node = %name, generation = o.generation, outcome = o.outcome, message = %o.message, "node did not apply its configuration");
                }
                let apps = std::mem::take(&mut o.apps);
                let recorded = ctx
                    .store
                    .record_observed(&name, o.generation, o.outcome, &o.message)
                    .await;
                let recorded = if recorded.is_ok() && o.storage_observed {
                    record_storage(&ctx, &name, o).await
                } else {
                    recorded
                };
                // Most nodes run no app: their reports cost no write here.
                if recorded.is_ok() && !apps.is_empty() {
                    record_apps(&ctx, &name, apps).await
                } else {
                    recorded
                }
            }
            Some(pb::agent_message::Body::Facts(f)) => ctx.store.record_facts(&name, &f).await,
            Some(pb::agent_message::Body::Result(r)) => {
                ctx.sessions.resolve(r);
                Ok(())
            }
            Some(pb::agent_message::Body::Hello(_)) | None => {
                break "protocol error: unexpected message".to_string();
            }
        };
        if let Err(err) = result {
            tracing::error!(node = %name, error = %err, "cannot record message from agent");
        }
    };
    if ctx.sessions.close(&name, id) {
        tracing::info!(node = %name, reason = %reason, "session closed");
        if let Err(err) = ctx
            .store
            .set_conn_state(&name, ConnState::Disconnected, ctx.clock.now())
            .await
        {
            tracing::error!(node = %name, error = %err, "cannot record disconnection");
        }
    }
}

/// Stores a node's storage report; volumes it destroyed on the
/// controller's order leave its desired configuration and the audit log
/// says so.
async fn record_storage(
    ctx: &Ctx,
    name: &NodeName,
    o: pb::ObservedState,
) -> Result<(), StoreError> {
    let destroyed = ctx
        .store
        .record_storage(
            name,
            ObservedStorage {
                pools: o.pools,
                volumes: o.volumes,
                orphans: o.orphans,
            },
        )
        .await?;
    if destroyed.is_empty() {
        return Ok(());
    }
    for v in &destroyed {
        tracing::info!(node = %name, tenant = %v.tenant, volume = %v.name, id = %v.id, "volume destroyed");
        audit_system(
            ctx,
            "volume.destroy",
            v,
            format!(
                "volume {} ({}) destroyed on node {} pool {}",
                v.id,
                format_size(v.size_bytes),
                v.node,
                v.pool
            ),
        )
        .await;
    }
    push_nodes(ctx, std::slice::from_ref(name)).await;
    Ok(())
}

/// Stores a node's app statuses; removed instances whose unit is gone
/// leave its desired configuration and the audit log says so.
async fn record_apps(
    ctx: &Ctx,
    name: &NodeName,
    statuses: Vec<pb::AppStatus>,
) -> Result<(), StoreError> {
    let gone = ctx.store.record_apps(name, statuses).await?;
    if gone.is_empty() {
        return Ok(());
    }
    for i in &gone {
        tracing::info!(node = %name, tenant = %i.tenant, app = %i.app, "app instance removed from its node");
        audit_system_entry(
            ctx,
            "app.removed",
            format!("app:{}/{}", i.tenant, i.app),
            &i.tenant,
            format!(
                "unit and route of {}/{} gone from node {} (port {} freed); data kept on volume {}",
                i.tenant, i.app, i.node, i.port, i.volume_name
            ),
        )
        .await;
    }
    push_nodes(ctx, std::slice::from_ref(name)).await;
    Ok(())
}

/// Retained volumes past their grace period become purging; their nodes
/// are told to destroy them.
async fn purge_due(ctx: &Ctx) {
    let due = match ctx.store.purge_due(ctx.clock.now()).await {
        Ok(due) => due,
        Err(err) => {
            tracing::error!(error = %err, "cannot look for volumes to purge");
            return;
        }
    };
    if due.is_empty() {
        return;
    }
    let mut nodes: Vec<NodeName> = due.iter().map(|v| v.node.clone()).collect();
    nodes.sort();
    nodes.dedup();
    push_nodes(ctx, &nodes).await;
    for v in &due {
        tracing::info!(node = %v.node, tenant = %v.tenant, volume = %v.name, id = %v.id, "grace period over; purging volume");
        audit_system(
            ctx,
            "volume.purge",
            v,
            format!(
                "grace period over: volume {} ({}) on node {} pool {} is destroyed",
                v.id,
                format_size(v.size_bytes),
                v.node,
                v.pool
            ),
        )
        .await;
    }
}

/// Flushes heartbeats, closes silent sessions, marks nodes unreachable and
/// purges volumes past their grace period, until `shutdown` fires.
pub async fn run_background(ctx: Ctx, mut shutdown: watch::Receiver<bool>) {
    let flush = Duration::from_millis(ctx.config.seen_flush_ms);
    let mut tick = tokio::time::interval(flush);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Three missed heartbeats, plus slack for a busy controller.
    let silence_ms = (3 * ctx.config.heartbeat_interval_secs as i64 + 5) * 1000;
    let mut purge_tick = tokio::time::interval(PURGE_INTERVAL);
    purge_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = purge_tick.tick() => {
                purge_due(&ctx).await;
                continue;
            }
            _ = shutdown.changed() => break,
        }
        let seen = ctx.sessions.take_seen();
        if !seen.is_empty()
            && let Err(err) = ctx.store.record_seen(seen).await
        {
            tracing::error!(error = %err, "cannot record heartbeats");
        }
        for (name, id) in ctx.sessions.silent_for(silence_ms) {
            if ctx.sessions.close(&name, id) {
                tracing::warn!(node = %name, "session silent for too long; closing it");
                if let Err(err) = ctx
                    .store
                    .set_conn_state(&name, ConnState::Disconnected, ctx.clock.now())
                    .await
                {
                    tracing::error!(node = %name, error = %err, "cannot record disconnection");
                }
            }
        }
        let now = ctx.clock.now();
        match ctx
            .store
            .mark_unreachable(now - ctx.config.unreachable_after_secs as i64, now)
            .await
        {
            Ok(names) => {
                for n in names {
                    tracing::warn!(node = %n, "node unreachable");
                }
            }
            Err(err) => tracing::error!(error = %err, "cannot mark unreachable nodes"),
        }
    }
    // Last flush so a clean shutdown loses no heartbeat.
    let seen = ctx.sessions.take_seen();
    if !seen.is_empty()
        && let Err(err) = ctx.store.record_seen(seen).await
    {
        tracing::error!(error = %err, "cannot record heartbeats");
    }
}

#[cfg(test)]
mod tests {
    use coloc_proto::domain::{SiteName, TenantName};
    use coloc_proto::storage::{VolumeId, VolumeName};

    use super::*;
    use crate::store::NodeRecord;

    const NOTES: &str = r#"
name = "notes"
description = "Shared notes"
replaces = "Google Keep"
packages = ["notes-server"]
offers = ["participatif"]

[service]
exec = "/usr/bin/notes-server"
args = ["--listen", "127.0.0.1:{port}"]

[health]
tcp = true

[resources]
memory = "64M"
cpu_percent = 10
"#;

    fn catalog() -> Catalog {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.toml"), NOTES).unwrap();
        Catalog::from_dir(dir.path()).unwrap()
    }

    fn node() -> NodeRecord {
        NodeRecord {
            name: NodeName::new("n1").unwrap(),
            site: SiteName::new("paris-1").unwrap(),
            enrolled_unix: 0,
            last_seen_unix: None,
            conn_state: ConnState::Connected,
            conn_changed_unix: 0,
            draining: false,
            labels: Default::default(),
            desired_generation: 7,
            applied_generation: 0,
            last_outcome: 0,
            last_message: String::new(),
            facts: None,
            cert_fingerprint: String::new(),
        }
    }

    fn instance(app: &str, state: InstanceState, volume: VolumeLifecycle) -> DesiredApp {
        DesiredApp {
            instance: InstanceRecord {
                tenant: TenantName::new("asso-a").unwrap(),
                app: AppName::new(app).unwrap(),
                node: NodeName::new("n1").unwrap(),
                volume_id: VolumeId::new("00000000000000aa").unwrap(),
                volume_name: VolumeName::new("data").unwrap(),
                volume_lifecycle: volume,
                port: 20_001,
                state,
                restart_nonce: 3,
                request_id: 1,
                created_unix: 0,
                gone: false,
                observed: None,
            },
            owner: 200_000,
        }
    }

    fn desired(apps: Vec<DesiredApp>) -> pb::DesiredConfig {
        let d = NodeDesired {
            node: node(),
            pools: Vec::new(),
            volumes: Vec::new(),
            apps,
        };
        let config = ControllerConfig {
            apps_domain: "encommun.org".into(),
            acme_email: "admins@encommun.org".into(),
            ..ControllerConfig::default()
        };
        desired_of(&d, &catalog(), &config)
    }

    #[test]
    fn instances_are_rendered_with_their_state_and_the_proxy() {
        use InstanceState::*;
        use VolumeLifecycle::*;
        for (state, volume, sent) in [
            (Running, Active, pb::AppState::Running),
            (Stopped, Active, pb::AppState::Stopped),
            (Removed, Active, pb::AppState::Removed),
            (Running, Retained, pb::AppState::Stopped),
            (Running, Purging, pb::AppState::Stopped),
            (Running, Destroyed, pb::AppState::Stopped),
            (Removed, Retained, pb::AppState::Removed),
        ] {
            let d = desired(vec![instance("notes", state, volume)]);
            assert_eq!(d.apps.len(), 1);
            let s = &d.apps[0];
            assert_eq!(s.state, sent as i32, "{state:?} on a {volume:?} volume");
            assert_eq!(s.args, ["--listen", "127.0.0.1:20001"]);
            assert_eq!(s.hostname, "notes.asso-a.encommun.org");
            assert_eq!((s.uid, s.gid, s.restart_nonce), (200_000, 200_000, 3));
            assert_eq!(s.data_dir, "/srv/tenants/asso-a/data/apps/notes");
            assert_eq!(d.proxy.is_some(), state != Removed, "{state:?}");
        }
        let d = desired(vec![instance("notes", Running, Active)]);
        let proxy = d.proxy.unwrap();
        assert_eq!(
            (proxy.domain.as_str(), proxy.acme_email.as_str()),
            ("encommun.org", "admins@encommun.org")
        );
        assert!(desired(Vec::new()).proxy.is_none());
    }

    #[test]
    fn an_app_gone_from_the_catalog_is_still_removed_but_never_started() {
        let d = desired(vec![
            instance("gone", InstanceState::Removed, VolumeLifecycle::Active),
            instance("other", InstanceState::Running, VolumeLifecycle::Active),
        ]);
        assert_eq!(d.apps.len(), 1, "the running one cannot be rendered");
        let s = &d.apps[0];
        assert_eq!(
            (s.app.as_str(), s.state),
            ("gone", pb::AppState::Removed as i32)
        );
        assert_eq!(s.hostname, "gone.asso-a.encommun.org");
        assert_eq!(s.port, 20_001);
        assert!(s.exec.is_empty() && s.packages.is_empty());
    }
}

//! The agent against a small stand-in for colocd speaking the real
//! protocol over real mTLS: enrollment, the session, desired
//! configurations, requests, heartbeats, reconnection, refusals. The real
//! controller is tested with these agents elsewhere; this checks the
//! agent's side of the contract on its own.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coloc_agent::status::AgentStatus;
use coloc_agent::{AGENT_VERSION, AgentHandle, SimAgentSpec, spawn_sim_agent};
use coloc_proto::agent::v1::agent_service_server::{AgentService, AgentServiceServer};
use coloc_proto::agent::v1::{
    AgentMessage, ControllerMessage, DesiredConfig, EnrollRequest, EnrollResponse, Ping,
    ReconcileOutcome, RefreshFacts, Request, SessionParams, agent_message, controller_message,
    request, request_result,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, IsCa, Issuer, KeyPair,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Response, Status};

const DEADLINE: Duration = Duration::from_secs(30);
const GOOD_TOKEN: &str = "join-ok-123";

type Outbound = mpsc::Sender<Result<ControllerMessage, Status>>;

struct FakeController {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    events: mpsc::UnboundedSender<AgentMessage>,
    /// The latest session's way to the agent.
    session: Mutex<Option<Outbound>>,
    reject_sessions: AtomicBool,
    enroll_attempts: AtomicU32,
    session_attempts: AtomicU32,
}

#[tonic::async_trait]
impl AgentService for FakeController {
    async fn enroll(
        &self,
        request: tonic::Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        self.enroll_attempts.fetch_add(1, Ordering::SeqCst);
        if request.peer_certs().is_some_and(|c| !c.is_empty()) {
            return Err(Status::invalid_argument(
                "enroll without a client certificate",
            ));
        }
        let req = request.into_inner();
        if req.join_token != GOOD_TOKEN {
            return Err(Status::unauthenticated(
                "join token unknown, expired or already used",
            ));
        }
        let facts = req.facts.unwrap_or_default();
        if facts.agent_version.is_empty() {
            return Err(Status::invalid_argument("facts missing"));
        }
        let csr = CertificateSigningRequestParams::from_pem(&req.csr_pem)
            .map_err(|e| Status::invalid_argument(format!("bad CSR: {e}")))?;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(EnrollResponse {
            node_name: req.node_name,
            site: "paris-1".into(),
            certificate_pem: cert.pem(),
            ca_certificate_pem: self.ca_pem.clone(),
        }))
    }

    type SessionStream = ReceiverStream<Result<ControllerMessage, Status>>;

    async fn session(
        &self,
        request: tonic::Request<tonic::Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        self.session_attempts.fetch_add(1, Ordering::SeqCst);
        if self.reject_sessions.load(Ordering::SeqCst) {
            return Err(Status::permission_denied(
                "node n1 was removed from the fleet",
            ));
        }
        if request.peer_certs().is_none_or(|c| c.is_empty()) {
            return Err(Status::unauthenticated("client certificate required"));
        }
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        *self.session.lock().expect("lock") = Some(tx);
        let events = self.events.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                if events.send(message).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct Harness {
    controller: Arc<FakeController>,
    url: String,
    events: mpsc::UnboundedReceiver<AgentMessage>,
}

impl Harness {
    async fn start() -> Harness {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "coloc test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let server_params =
            CertificateParams::new(vec![coloc_proto::CONTROLLER_TLS_NAME.to_owned()])
                .expect("server params");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("server cert");

        let (events_tx, events) = mpsc::unbounded_channel();
        let controller = Arc::new(FakeController {
            issuer,
            ca_pem: ca_cert.pem(),
            events: events_tx,
            session: Mutex::new(None),
            reject_sessions: AtomicBool::new(false),
            enroll_attempts: AtomicU32::new(0),
            session_attempts: AtomicU32::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                server_cert.pem(),
                server_key.serialize_pem(),
            ))
            .client_ca_root(Certificate::from_pem(controller.ca_pem.clone()))
            .client_auth_optional(true);
        let server = Server::builder()
            .tls_config(tls)
            .expect("server TLS")
            .add_service(AgentServiceServer::from_arc(Arc::clone(&controller)))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(async move {
            if let Err(e) = server.await {
                panic!("fake controller failed: {e}");
            }
        });
        Harness {
            controller,
            // An IP address on purpose: the agent must verify the
            // certificate under the name "colocd" whatever it dials.
            url: format!("https://127.0.0.1:{}", addr.port()),
            events,
        }
    }

    fn spec(&self, node: &str, token: &str, state_dir: &Path) -> SimAgentSpec {
        SimAgentSpec {
            node_name: node.into(),
            controller: self.url.clone(),
            ca_pem: self.controller.ca_pem.clone(),
            join_token: token.into(),
            state_dir: state_dir.to_path_buf(),
            backoff_initial_ms: 20,
            backoff_max_ms: 300,
        }
    }

    async fn push(&self, body: controller_message::Body) {
        let tx = self
            .controller
            .session
            .lock()
            .expect("lock")
            .clone()
            .expect("no session open");
        tx.send(Ok(ControllerMessage { body: Some(body) }))
            .await
            .expect("session gone");
    }

    async fn end_session(&self, status: Status) {
        let tx = self.controller.session.lock().expect("lock").take();
        let tx = tx.expect("no session open");
        tx.send(Err(status)).await.expect("session gone");
    }

    /// The next agent message matching `pick`, skipping others.
    async fn expect<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&agent_message::Body) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("controller gone");
            if let AgentMessage { body: Some(body) } = event
                && let Some(found) = pick(&body)
            {
                return found;
            }
        }
    }
}

async fn wait_status(
    agent: &AgentHandle,
    what: &str,
    cond: impl FnMut(&AgentStatus) -> bool,
) -> AgentStatus {
    let mut rx: watch::Receiver<AgentStatus> = agent.status();
    let waited = tokio::time::timeout(DEADLINE, rx.wait_for(cond))
        .await
        .map(|r| r.map(|status| status.clone()));
    match waited {
        Ok(Ok(status)) => status,
        Ok(Err(_)) => panic!("agent stopped while waiting for {what}"),
        Err(_) => panic!(
            "timed out waiting for {what}; last status: {:#?}",
            *rx.borrow()
        ),
    }
}

fn desired(generation: u64, draining: bool) -> DesiredConfig {
    DesiredConfig {
        generation,
        node_name: "n1".into(),
        site: "paris-1".into(),
        draining,
        labels: HashMap::from([("rack".into(), "b2".into())]),
        ..Default::default()
    }
}

fn hello(body: &agent_message::Body) -> Option<coloc_proto::agent::v1::Hello> {
    match body {
        agent_message::Body::Hello(h) => Some(h.clone()),
        _ => None,
    }
}

fn observed(body: &agent_message::Body) -> Option<coloc_proto::agent::v1::ObservedState> {
    match body {
        agent_message::Body::Observed(o) => Some(o.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_enrolls_then_serves_its_controller() {
    let mut h = Harness::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("n1");
    let agent = spawn_sim_agent(h.spec("n1", GOOD_TOKEN, &state));

    // First contact: enrollment, then Hello on the mTLS session.
    let first = h.expect("Hello", hello).await;
    assert_eq!(first.ledger_generation, 0);
    assert_eq!(first.agent_version, AGENT_VERSION);
    let facts = first.facts.expect("facts in Hello");
    assert!(!facts.hostname.is_empty());
    assert_eq!(h.controller.enroll_attempts.load(Ordering::SeqCst), 1);
    let status = wait_status(&agent, "the session", |s| s.connected).await;
    assert!(status.enrolled);
    assert_eq!(status.site, "paris-1");
    assert_eq!(status.sessions_opened, 1);

    // The identity is on disk, the key private.
    let key_mode = std::fs::metadata(state.join("node.key"))
        .expect("node.key")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert!(state.join("node.crt").is_file());
    assert_eq!(
        std::fs::read_to_string(state.join("ca.pem")).expect("ca.pem"),
        h.controller.ca_pem
    );
    let node_toml = std::fs::read_to_string(state.join("node.toml")).expect("node.toml");
    assert!(node_toml.contains("paris-1"), "{node_toml}");

    // Session parameters, then a desired configuration.
    h.push(controller_message::Body::Params(SessionParams {
        heartbeat_interval_secs: 1,
        controller_unix_ms: 0,
        health: None,
    }))
    .await;
    h.push(controller_message::Body::Desired(desired(3, true)))
        .await;
    let obs = h.expect("ObservedState for 3", observed).await;
    assert_eq!(obs.generation, 3);
    assert_eq!(obs.outcome(), ReconcileOutcome::Applied);
    assert!(obs.draining);
    let status = wait_status(&agent, "generation 3 applied", |s| {
        s.applied_generation == 3
    })
    .await;
    assert_eq!(status.ledger_generation, 3);
    assert!(status.draining);

    // An older generation is refused, naming the one held.
    h.push(controller_message::Body::Desired(desired(2, false)))
        .await;
    let obs = h.expect("ObservedState for 2", observed).await;
    assert_eq!(obs.outcome(), ReconcileOutcome::StaleRejected);
    assert_eq!(obs.generation, 3);

    // Requests are answered with their id.
    h.push(controller_message::Body::Request(Request {
        id: 42,
        kind: Some(request::Kind::Ping(Ping {})),
    }))
    .await;
    let result = h
        .expect("ping result", |b| match b {
            agent_message::Body::Result(r) if r.request_id == 42 => Some(r.clone()),
            _ => None,
        })
        .await;
    assert!(result.ok);
    assert!(matches!(
        result.payload,
        Some(request_result::Payload::Pong(_))
    ));
    h.push(controller_message::Body::Request(Request {
        id: 43,
        kind: Some(request::Kind::RefreshFacts(RefreshFacts {})),
    }))
    .await;
    let result = h
        .expect("facts result", |b| match b {
            agent_message::Body::Result(r) if r.request_id == 43 => Some(r.clone()),
            _ => None,
        })
        .await;
    assert!(result.ok, "{}", result.error);
    assert!(matches!(
        result.payload,
        Some(request_result::Payload::Facts(_))
    ));

    // Heartbeats at the interval asked for, carrying the applied generation.
    let beat = h
        .expect("a heartbeat", |b| match b {
            agent_message::Body::Heartbeat(hb) => Some(*hb),
            _ => None,
        })
        .await;
    assert!(beat.sequence >= 1);
    assert_eq!(beat.applied_generation, 3);
    assert!(beat.sent_unix_ms > 0);
    let status = wait_status(&agent, "a counted heartbeat", |s| s.heartbeats_sent >= 1).await;
    assert_eq!(status.heartbeat_interval_secs, 1);

    // The controller restarts: the agent comes back with its ledger
    // generation and reports what it applied.
    h.end_session(Status::unavailable("controller restarting"))
        .await;
    let again = h.expect("a second Hello", hello).await;
    assert_eq!(again.ledger_generation, 3);
    let obs = h.expect("the last report after Hello", observed).await;
    assert_eq!(
        (obs.generation, obs.outcome()),
        (3, ReconcileOutcome::Applied)
    );
    wait_status(&agent, "the second session", |s| {
        s.sessions_opened == 2 && s.connected
    })
    .await;
    tokio::time::timeout(DEADLINE, agent.shutdown())
        .await
        .expect("prompt shutdown");

    // A restart reuses the identity: no second enrollment, even with a
    // token that would now be refused.
    let agent = spawn_sim_agent(h.spec("n1", "already-used", &state));
    let third = h.expect("Hello after restart", hello).await;
    assert_eq!(third.ledger_generation, 3);
    assert_eq!(h.controller.enroll_attempts.load(Ordering::SeqCst), 1);
    let status = wait_status(&agent, "the ledger pass", |s| s.reconcile_passes >= 1).await;
    assert!(status.draining);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_token_is_reported_and_retried_slowly() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("n1");
    let agent = spawn_sim_agent(h.spec("n1", "wrong-token", &state));
    let status = wait_status(&agent, "the refusal", |s| s.last_error.is_some()).await;
    let error = status.last_error.expect("error");
    assert!(error.contains("join token unknown"), "{error}");
    assert!(error.contains("Unauthenticated"), "{error}");
    assert!(!status.enrolled);
    // Still trying: the sysadmin may fix the seed.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while h.controller.enroll_attempts.load(Ordering::SeqCst) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no second attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!state.join("node.crt").exists());
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_node_keeps_trying_and_says_why() {
    let h = Harness::start().await;
    h.controller.reject_sessions.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = spawn_sim_agent(h.spec("n1", GOOD_TOKEN, &dir.path().join("n1")));
    let status = wait_status(&agent, "the refusal", |s| {
        s.enrolled
            && s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("removed"))
    })
    .await;
    assert!(!status.connected);
    assert!(
        status
            .last_error
            .unwrap_or_default()
            .contains("PermissionDenied")
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while h.controller.session_attempts.load(Ordering::SeqCst) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no second attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Re-admitted: the next attempt opens the session.
    h.controller.reject_sessions.store(false, Ordering::SeqCst);
    wait_status(&agent, "the session", |s| s.connected).await;
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_simulated_agents_share_one_runtime() {
    const AGENTS: usize = 25;
    let h = Harness::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agents: Vec<AgentHandle> = (0..AGENTS)
        .map(|i| {
            let node = format!("sim-{i}");
            spawn_sim_agent(h.spec(&node, GOOD_TOKEN, &dir.path().join(&node)))
        })
        .collect();
    for agent in &agents {
        wait_status(agent, "every session", |s| s.connected).await;
    }
    assert_eq!(
        h.controller.enroll_attempts.load(Ordering::SeqCst) as usize,
        AGENTS
    );
    for agent in agents {
        agent.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_is_reported_resynced_and_rolled_back_over_the_session() {
    use coloc_agent::host::FakeHost;
    use coloc_agent::spawn_sim_agent_with;
    use coloc_proto::agent::v1::{
        PoolKind, PoolLayout, PoolSpec, RollbackVolume, VolumePhase, VolumeSpec, VolumeState,
    };

    let mut h = Harness::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = h
        .spec("n1", GOOD_TOKEN, &dir.path().join("n1"))
        .config()
        .expect("config");
    config.resync_interval = Duration::from_millis(200);
    let host = FakeHost::new("n1");
    let agent = spawn_sim_agent_with(config, &host);
    h.expect("Hello", hello).await;

    let volume_id = "00000000000000aa";
    let mut config = desired(1, false);
    config.pools = vec![PoolSpec {
        name: "tank".into(),
        kind: PoolKind::Zfs.into(),
        layout: PoolLayout::Mirror.into(),
        disks: vec!["serial:SIM-n1-1".into(), "serial:SIM-n1-2".into()],
        force: false,
    }];
    config.volumes = vec![VolumeSpec {
        id: volume_id.into(),
        tenant: "acme".into(),
        name: "data".into(),
        pool: "tank".into(),
        pool_kind: PoolKind::Zfs.into(),
        size_bytes: 1 << 30,
        state: VolumeState::Active.into(),
        owner_uid: 200_000,
        owner_gid: 200_000,
        snapshots: vec!["monday".into(), "tuesday".into()],
        ..VolumeSpec::default()
    }];
    h.push(controller_message::Body::Desired(config)).await;
    let obs = h.expect("ObservedState for 1", observed).await;
    assert_eq!(obs.outcome(), ReconcileOutcome::Applied, "{}", obs.message);
    assert!(obs.storage_observed);
    assert!(obs.pools[0].present);
    assert_eq!(obs.volumes[0].phase(), VolumePhase::Ready);

    // Without any push, the periodic pass reports fresh usage.
    host.zfs.set_used_bytes(volume_id, 5 << 20);
    let fresh = h
        .expect("a periodic ObservedState", |b| match b {
            agent_message::Body::Observed(o)
                if o.volumes.first().is_some_and(|v| v.used_bytes == 5 << 20) =>
            {
                Some(o.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(fresh.generation, 1);

    let rollback = |id: u64, snapshot: &str| Request {
        id,
        kind: Some(request::Kind::RollbackVolume(RollbackVolume {
            volume_id: volume_id.into(),
            snapshot: snapshot.into(),
        })),
    };
    let result_of = |wanted: u64| {
        move |b: &agent_message::Body| match b {
            agent_message::Body::Result(r) if r.request_id == wanted => Some(r.clone()),
            _ => None,
        }
    };
    h.push(controller_message::Body::Request(rollback(50, "monday")))
        .await;
    let refused = h.expect("refused rollback", result_of(50)).await;
    assert!(!refused.ok);
    assert!(refused.error.contains("tuesday is"), "{}", refused.error);

    h.push(controller_message::Body::Request(rollback(51, "tuesday")))
        .await;
    let done = h.expect("rollback", result_of(51)).await;
    assert!(done.ok, "{}", done.error);
    match done.payload {
        Some(request_result::Payload::Volume(v)) => {
            assert_eq!(v.id, volume_id);
            assert_eq!(v.phase(), VolumePhase::Ready);
            assert_eq!(v.used_bytes, 0);
        }
        other => panic!("{other:?}"),
    }
    agent.shutdown().await;
}

//! Test and benchmark harness for coloc: a real colocd on a temporary data
//! directory (real SQLite, real CA, real mTLS on loopback), typed clients
//! with a bearer token, raw enrollment helpers, and condition waits with
//! deadlines.
//!
//! It never fakes the controller; simulated agents come from
//! `coloc_agent::sim` and run the real agent logic over in-memory hosts.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coloc_controller::config::ControllerConfig;
use coloc_controller::server::{self, InitOptions, Running};
use coloc_controller::time::{Clock, OffsetClock};
use coloc_proto::agent::v1 as apb;
use coloc_proto::agent::v1::agent_service_client::AgentServiceClient;
use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::apps_client::AppsClient;
use coloc_proto::controller::v1::audit_client::AuditClient;
use coloc_proto::controller::v1::nodes_client::NodesClient;
use coloc_proto::controller::v1::sites_client::SitesClient;
use coloc_proto::controller::v1::storage_client::StorageClient;
use coloc_proto::controller::v1::tenants_client::TenantsClient;
use coloc_proto::controller::v1::tokens_client::TokensClient;
use coloc_proto::controller::v1::users_client::UsersClient;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

pub use anyhow::{Context, Result, anyhow, bail};

/// Polls `check` every 25 ms until it returns `Some`, or fails after
/// `deadline` naming what was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Svc = InterceptedService<Channel, Bearer>;

/// One client of every public service, sharing a channel and credential.
#[derive(Clone)]
pub struct Api {
    pub sites: SitesClient<Svc>,
    pub nodes: NodesClient<Svc>,
    pub tenants: TenantsClient<Svc>,
    pub users: UsersClient<Svc>,
    pub tokens: TokensClient<Svc>,
    pub audit: AuditClient<Svc>,
    pub storage: StorageClient<Svc>,
    pub apps: AppsClient<Svc>,
}

impl Api {
    pub fn new(channel: Channel, token: Option<&str>) -> Self {
        let b = Bearer(token.map(|t| format!("Bearer {t}").parse().expect("a token is ASCII")));
        Self {
            sites: SitesClient::with_interceptor(channel.clone(), b.clone()),
            nodes: NodesClient::with_interceptor(channel.clone(), b.clone()),
            tenants: TenantsClient::with_interceptor(channel.clone(), b.clone()),
            users: UsersClient::with_interceptor(channel.clone(), b.clone()),
            tokens: TokensClient::with_interceptor(channel.clone(), b.clone()),
            audit: AuditClient::with_interceptor(channel.clone(), b.clone()),
            storage: StorageClient::with_interceptor(channel.clone(), b.clone()),
            apps: AppsClient::with_interceptor(channel, b),
        }
    }
}

/// A TLS endpoint for colocd at `url`, verified against the cooperative CA.
pub fn endpoint(url: &str, ca_pem: &str, identity: Option<Identity>) -> Result<Endpoint> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(coloc_proto::CONTROLLER_TLS_NAME);
    if let Some(id) = identity {
        tls = tls.identity(id);
    }
    Ok(Endpoint::from_shared(url.to_string())?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10)))
}

/// A colocd elsewhere, reached with the CLI configuration `colocd init`
/// writes (`admin.toml`).
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub ca_pem: String,
    pub token: String,
}

impl Remote {
    pub fn from_admin_config(path: &std::path::Path) -> Result<Self> {
        #[derive(serde::Deserialize)]
        struct AdminToml {
            server: String,
            ca_file: PathBuf,
            token: String,
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cfg: AdminToml =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        let ca = if cfg.ca_file.is_relative() {
            path.parent()
                .unwrap_or(std::path::Path::new("."))
                .join(&cfg.ca_file)
        } else {
            cfg.ca_file
        };
        Ok(Self {
            url: cfg.server,
            ca_pem: std::fs::read_to_string(&ca)
                .with_context(|| format!("cannot read {}", ca.display()))?,
            token: cfg.token,
        })
    }

    pub async fn api(&self) -> Result<Api> {
        let ch = endpoint(&self.url, &self.ca_pem, None)?.connect().await?;
        Ok(Api::new(ch, Some(&self.token)))
    }
}

/// Every node, following pages.
pub async fn all_nodes(api: &mut Api) -> Result<Vec<pb::Node>> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = api
            .nodes
            .list_nodes(pb::ListNodesRequest {
                site: String::new(),
                after,
                limit: 1000,
            })
            .await?
            .into_inner();
        out.extend(page.nodes);
        if page.next_after.is_empty() {
            return Ok(out);
        }
        after = page.next_after;
    }
}

/// Settings that make time-based behaviour quick to observe in tests.
pub fn fast_config() -> ControllerConfig {
    ControllerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls_names: Vec::new(),
        unreachable_after_secs: 2,
        heartbeat_interval_secs: 1,
        seen_flush_ms: 100,
        default_tenant_quota_bytes: 100 << 30,
        ..ControllerConfig::default()
    }
}

/// A colocd running in this process on a temporary data directory.
pub struct TestController {
    pub dir: tempfile::TempDir,
    pub clock: Arc<OffsetClock>,
    pub admin_token: String,
    pub ca_pem: String,
    addr: SocketAddr,
    running: Option<Running>,
}

impl TestController {
    pub async fn start() -> Result<Self> {
        Self::start_with(fast_config()).await
    }

    pub async fn start_with(config: ControllerConfig) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let clock = Arc::new(OffsetClock::default());
        let out = server::init(
            dir.path(),
            InitOptions {
                config,
                admin: "admin".into(),
                // Long enough to survive tests that move the clock by days
                // (grace periods).
                admin_token_ttl_secs: 365 * 86400,
            },
            clock.clone(),
        )
        .await?;
        let running = server::start(dir.path(), None, clock.clone()).await?;
        let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem"))?;
        Ok(Self {
            addr: running.addr,
            dir,
            clock,
            admin_token: out.admin_token,
            ca_pem,
            running: Some(running),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("controller is running")
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub async fn stop(&mut self) -> Result<()> {
        if let Some(r) = self.running.take() {
            r.stop().await?;
        }
        Ok(())
    }

    /// Starts again on the same address and data directory.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        let running = server::start(self.dir.path(), Some(self.addr), self.clock.clone()).await?;
        self.running = Some(running);
        Ok(())
    }

    fn endpoint(&self, identity: Option<Identity>) -> Result<Endpoint> {
        endpoint(&self.url(), &self.ca_pem, identity)
    }

    pub async fn channel(&self) -> Result<Channel> {
        Ok(self.endpoint(None)?.connect().await?)
    }

    pub async fn channel_with_identity(&self, cert_pem: &str, key_pem: &str) -> Result<Channel> {
        Ok(self
            .endpoint(Some(Identity::from_pem(cert_pem, key_pem)))?
            .connect()
            .await?)
    }

    pub async fn api(&self, token: &str) -> Result<Api> {
        Ok(Api::new(self.channel().await?, Some(token)))
    }

    pub async fn admin(&self) -> Result<Api> {
        self.api(&self.admin_token).await
    }

    pub async fn anonymous(&self) -> Result<Api> {
        Ok(Api::new(self.channel().await?, None))
    }

    pub async fn agent_client(&self) -> Result<AgentServiceClient<Channel>> {
        Ok(AgentServiceClient::new(self.channel().await?))
    }
}

// ---- fixtures

pub async fn create_site(api: &mut Api, name: &str) -> Result<pb::Site> {
    Ok(api
        .sites
        .create_site(pb::CreateSiteRequest {
            name: name.into(),
            country: "FR".into(),
            city: "Paris".into(),
            description: String::new(),
        })
        .await?
        .into_inner())
}

pub async fn join_token(api: &mut Api, site: &str, ttl_secs: u64) -> Result<String> {
    Ok(api
        .nodes
        .create_join_token(pb::CreateJoinTokenRequest {
            site: site.into(),
            ttl_secs,
        })
        .await?
        .into_inner()
        .secret)
}

pub async fn create_tenant(api: &mut Api, name: &str, offer: pb::Offer) -> Result<pb::Tenant> {
    Ok(api
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: name.into(),
            display_name: format!("Association {name}"),
            offer: offer as i32,
            membership_expires: "2099-12-31".into(),
        })
        .await?
        .into_inner())
}

/// Creates a user and returns a token for them.
pub async fn create_user(
    api: &mut Api,
    name: &str,
    tenant: &str,
    role: pb::Role,
) -> Result<String> {
    api.users
        .create_user(pb::CreateUserRequest {
            name: name.into(),
            tenant: tenant.into(),
            role: role as i32,
            display_name: String::new(),
        })
        .await?;
    Ok(api
        .tokens
        .create_token(pb::CreateTokenRequest {
            user: name.into(),
            description: "test".into(),
            ttl_secs: 0,
        })
        .await?
        .into_inner()
        .secret)
}

/// A key and CSR as an agent would make them.
pub fn key_and_csr(cn: &str) -> Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key.serialize_pem(), csr))
}

/// Enrolls a node with the raw protocol; returns (key, certificate).
pub async fn enroll_raw(
    ctl: &TestController,
    token: &str,
    node: &str,
) -> std::result::Result<(String, String), Status> {
    let (key, csr) = key_and_csr(node).map_err(|e| Status::internal(e.to_string()))?;
    let mut client = ctl
        .agent_client()
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let resp = client
        .enroll(apb::EnrollRequest {
            join_token: token.into(),
            node_name: node.into(),
            csr_pem: csr,
            facts: Some(apb::NodeFacts {
                hostname: node.into(),
                cpu_count: 2,
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    Ok((key, resp.certificate_pem))
}

/// The newest audit entries, as the admin sees them.
pub async fn audit_entries(api: &mut Api, actor: &str) -> Result<Vec<pb::AuditEntry>> {
    Ok(api
        .audit
        .list_audit(pb::ListAuditRequest {
            before: 0,
            limit: 1000,
            tenant: String::new(),
            actor: actor.into(),
        })
        .await?
        .into_inner()
        .entries)
}

/// An agent session driven by hand: the test sees every desired
/// configuration and request the controller sends, and decides what the
/// agent reports. Heartbeats are sent in the background so the session
/// stays open.
pub struct RawAgent {
    pub node: String,
    key_pem: String,
    cert_pem: String,
    tx: tokio::sync::mpsc::Sender<apb::AgentMessage>,
    desired: tokio::sync::watch::Receiver<Option<apb::DesiredConfig>>,
    requests: tokio::sync::mpsc::UnboundedReceiver<apb::Request>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RawAgent {
    /// Enrolls `node` with `token` and opens its session.
    pub async fn enroll(ctl: &TestController, token: &str, node: &str) -> Result<Self> {
        let (key, cert) = enroll_raw(ctl, token, node)
            .await
            .map_err(|s| anyhow!("enrollment of {node} failed: {s}"))?;
        Self::connect(ctl, node, key, cert).await
    }

    async fn connect(
        ctl: &TestController,
        node: &str,
        key_pem: String,
        cert_pem: String,
    ) -> Result<Self> {
        let ch = ctl.channel_with_identity(&cert_pem, &key_pem).await?;
        let mut client = AgentServiceClient::new(ch);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tx.send(apb::AgentMessage {
            body: Some(apb::agent_message::Body::Hello(apb::Hello {
                agent_version: "raw-test-agent".into(),
                ledger_generation: 0,
                facts: None,
            })),
        })
        .await?;
        let mut inbound = client
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let (desired_tx, desired) = tokio::sync::watch::channel(None);
        let (req_tx, requests) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                match msg.body {
                    Some(apb::controller_message::Body::Desired(d)) => {
                        let _ = desired_tx.send(Some(d));
                    }
                    Some(apb::controller_message::Body::Request(r)) => {
                        let _ = req_tx.send(r);
                    }
                    Some(apb::controller_message::Body::Params(_)) | None => {}
                }
            }
        });
        let beat = tx.clone();
        let heartbeat = tokio::spawn(async move {
            let mut sequence = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                sequence += 1;
                let msg = apb::AgentMessage {
                    body: Some(apb::agent_message::Body::Heartbeat(apb::Heartbeat {
                        sequence,
                        ..Default::default()
                    })),
                };
                if beat.send(msg).await.is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            node: node.into(),
            key_pem,
            cert_pem,
            tx,
            desired,
            requests,
            tasks: vec![reader, heartbeat],
        })
    }

    /// Closes this session and opens a new one with the same certificate.
    pub async fn reconnect(self, ctl: &TestController) -> Result<Self> {
        let (node, key, cert) = (
            self.node.clone(),
            self.key_pem.clone(),
            self.cert_pem.clone(),
        );
        drop(self);
        Self::connect(ctl, &node, key, cert).await
    }

    /// The latest desired configuration received, if any.
    pub fn desired(&self) -> Option<apb::DesiredConfig> {
        self.desired.borrow().clone()
    }

    /// Waits for a desired configuration for which `cond` holds.
    pub async fn wait_desired(
        &self,
        what: &str,
        cond: impl Fn(&apb::DesiredConfig) -> bool,
    ) -> Result<apb::DesiredConfig> {
        let got = wait_for(what, Duration::from_secs(20), || {
            let d = self.desired().filter(|d| cond(d));
            async move { d }
        })
        .await;
        got.with_context(|| format!("last desired configuration: {:#?}", self.desired()))
    }

    pub async fn send(&self, body: apb::agent_message::Body) -> Result<()> {
        self.tx
            .send(apb::AgentMessage { body: Some(body) })
            .await
            .map_err(|_| anyhow!("the session of {} is closed", self.node))
    }

    /// Reports a reconciliation pass that looked at storage.
    pub async fn report_storage(
        &self,
        generation: u64,
        pools: Vec<apb::PoolStatus>,
        volumes: Vec<apb::VolumeStatus>,
        orphans: Vec<apb::OrphanVolume>,
    ) -> Result<()> {
        self.send(apb::agent_message::Body::Observed(apb::ObservedState {
            generation,
            outcome: apb::ReconcileOutcome::Applied as i32,
            message: String::new(),
            draining: false,
            pools,
            volumes,
            orphans,
            storage_observed: true,
            apps: Vec::new(),
        }))
        .await
    }

    /// Reports a reconciliation pass with these app statuses (storage not
    /// looked at).
    pub async fn report_apps(&self, generation: u64, apps: Vec<apb::AppStatus>) -> Result<()> {
        self.send(apb::agent_message::Body::Observed(apb::ObservedState {
            generation,
            outcome: apb::ReconcileOutcome::Applied as i32,
            apps,
            ..Default::default()
        }))
        .await
    }

    /// The next imperative request from the controller.
    pub async fn next_request(&mut self) -> Result<apb::Request> {
        tokio::time::timeout(Duration::from_secs(20), self.requests.recv())
            .await
            .map_err(|_| anyhow!("no request reached {} within 20 s", self.node))?
            .ok_or_else(|| anyhow!("the session of {} is closed", self.node))
    }

    /// A request already received and not yet taken, if any (to check
    /// that nothing reached the node).
    pub fn try_next_request(&mut self) -> Option<apb::Request> {
        self.requests.try_recv().ok()
    }

    pub async fn answer(&self, result: apb::RequestResult) -> Result<()> {
        self.send(apb::agent_message::Body::Result(result)).await
    }
}

impl Drop for RawAgent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

//! Agents driven by hand over the real protocol: enrollment with a key and
//! CSR made as an agent makes them, and [`RawAgent`], a session whose every
//! message the test decides, for checking exactly what colocd sends a node
//! and what it records of the node's answers.
//!
//! The real agent logic over in-memory hosts is `coloc_agent::sim`; this
//! module never runs any of it.

use std::time::Duration;

use coloc_proto::agent::v1 as apb;
use coloc_proto::agent::v1::agent_service_client::AgentServiceClient;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use crate::controller::TestController;
use crate::fixtures::join_token;
use crate::{Context, Result, anyhow, bail, wait_for};

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

/// Enrolls one raw agent per name at `site` (which must exist) and waits
/// for each one's first desired configuration.
pub async fn raw_fleet(ctl: &TestController, site: &str, names: &[&str]) -> Result<Vec<RawAgent>> {
    let mut admin = ctl.admin().await?;
    let mut agents = Vec::with_capacity(names.len());
    for name in names {
        let token = join_token(&mut admin, site, 600).await?;
        let agent = RawAgent::enroll(ctl, &token, name).await?;
        agent
            .wait_desired("first configuration", |d| d.generation >= 1)
            .await?;
        agents.push(agent);
    }
    Ok(agents)
}

/// The status an agent reports for an app instance in these systemd
/// states, under the unit name the agent gives it; the rest left empty.
pub fn app_status(tenant: &str, app: &str, active: &str, sub: &str) -> apb::AppStatus {
    apb::AppStatus {
        tenant: tenant.into(),
        app: app.into(),
        unit: format!("coloc-app-{tenant}-{app}.service"),
        active_state: active.into(),
        sub_state: sub.into(),
        ..Default::default()
    }
}

/// An agent session driven by hand: the test sees every desired
/// configuration and request the controller sends, and decides what the
/// agent reports. Heartbeats are sent in the background so the session
/// stays open.
pub struct RawAgent {
    pub node: String,
    key_pem: String,
    cert_pem: String,
    tx: mpsc::Sender<apb::AgentMessage>,
    desired: watch::Receiver<Option<apb::DesiredConfig>>,
    /// None once [`RawAgent::answer_requests`] took them over.
    requests: Option<mpsc::UnboundedReceiver<apb::Request>>,
    /// True once colocd ended the session (its stream finished or failed).
    ended: watch::Receiver<bool>,
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

    /// Opens a session for `node` with this key and certificate (one a
    /// renewal gave, or one colocd should refuse).
    pub async fn connect(
        ctl: &TestController,
        node: &str,
        key_pem: String,
        cert_pem: String,
    ) -> Result<Self> {
        let ch = ctl.channel_with_identity(&cert_pem, &key_pem).await?;
        let mut client = AgentServiceClient::new(ch);
        let (tx, rx) = mpsc::channel(64);
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
        let (desired_tx, desired) = watch::channel(None);
        let (req_tx, requests) = mpsc::unbounded_channel();
        let (ended_tx, ended) = watch::channel(false);
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
            let _ = ended_tx.send(true);
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
            requests: Some(requests),
            ended,
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

    /// The key and certificate this session was opened with.
    pub fn identity(&self) -> (&str, &str) {
        (&self.key_pem, &self.cert_pem)
    }

    /// Waits until colocd ends this session.
    pub async fn wait_ended(&self) -> Result<()> {
        let mut ended = self.ended.clone();
        tokio::time::timeout(Duration::from_secs(20), ended.wait_for(|e| *e))
            .await
            .map_err(|_| anyhow!("the session of {} was not ended within 20 s", self.node))?
            .map_err(|_| anyhow!("the session of {} lost its reader", self.node))?;
        Ok(())
    }

    /// Whether colocd has ended this session.
    pub fn is_ended(&self) -> bool {
        *self.ended.borrow()
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

    /// Reports the node's hardware, as an agent does after a change.
    pub async fn report_facts(&self, facts: apb::NodeFacts) -> Result<()> {
        self.send(apb::agent_message::Body::Facts(facts)).await
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

    fn requests(&mut self) -> Result<&mut mpsc::UnboundedReceiver<apb::Request>> {
        let node = &self.node;
        self.requests
            .as_mut()
            .with_context(|| format!("the requests to {node} are answered in the background"))
    }

    /// The next imperative request from the controller.
    pub async fn next_request(&mut self) -> Result<apb::Request> {
        let node = self.node.clone();
        tokio::time::timeout(Duration::from_secs(20), self.requests()?.recv())
            .await
            .map_err(|_| anyhow!("no request reached {node} within 20 s"))?
            .ok_or_else(|| anyhow!("the session of {node} is closed"))
    }

    /// A request already received and not yet taken, if any (to check
    /// that nothing reached the node).
    pub fn try_next_request(&mut self) -> Option<apb::Request> {
        self.requests().ok()?.try_recv().ok()
    }

    pub async fn answer(&self, result: apb::RequestResult) -> Result<()> {
        self.send(apb::agent_message::Body::Result(result)).await
    }

    /// From now on answers every imperative request in the background, as
    /// `answer` decides, for tests where a command waits on the node (a
    /// rollback, a journal read, `coloc app logs -f` polling). Requests are
    /// then no longer returned by [`RawAgent::next_request`].
    pub fn answer_requests<F>(&mut self, mut answer: F) -> Result<()>
    where
        F: FnMut(&apb::Request) -> apb::RequestResult + Send + 'static,
    {
        let Some(mut requests) = self.requests.take() else {
            bail!("the requests to {} are already answered", self.node);
        };
        let tx = self.tx.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(request) = requests.recv().await {
                let body = apb::agent_message::Body::Result(answer(&request));
                if tx
                    .send(apb::AgentMessage { body: Some(body) })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
        Ok(())
    }
}

impl Drop for RawAgent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

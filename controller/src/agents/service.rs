//! The agent-facing gRPC service (coloc.agent.v1.AgentService):
//! enrollment (a join token and a CSR in, a node certificate out, all in
//! the audit log) and the session each connected agent holds.
//!
//! A session opens with Hello, gets its parameters and desired
//! configuration, and then the agent answers with heartbeats, observed
//! state and request results, which are recorded here: heartbeats folded
//! in the registry (written in batches by a background task), observed
//! state, storage and app reports written to the store at once. Volumes and
//! instances that a report shows gone leave the node's configuration, which
//! is pushed again.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use coloc_proto::agent::v1 as pb;
use coloc_proto::agent::v1::agent_service_server::AgentService;
use coloc_proto::domain::NodeName;
use coloc_proto::storage::format_size;
use tonic::{Request, Response, Status, Streaming};

use super::node_certs::{MAX_CSR_BYTES, admit, node_cert};
use super::push::push_nodes;
use super::registry::OutStream;
use super::render::desired_of;
use super::system_audit::{audit_system, audit_system_entry};
use crate::auth;
use crate::ca::fingerprint_der;
use crate::context::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::limiter::Peer;
use crate::store::{
    AuditFields, AuditOutcome, AuditRecord, ConnState, NewNode, ObservedStorage, StoreError,
};

/// The agent must say Hello this quickly after opening a session.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct AgentApi(pub Ctx);

impl AgentApi {
    async fn audit_enroll(&self, actor: String, node: &str, outcome: AuditOutcome, detail: String) {
        let entry = AuditRecord::new(AuditFields {
            at_unix_ms: self.0.clock.now_ms(),
            actor,
            action: "node.enroll".into(),
            target: format!("node:{}", node.chars().take(63).collect::<String>()),
            tenant: None,
            outcome,
            detail,
        });
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
        let secret_hash = auth::hash_secret(&r.join_token);
        // The token first: without a usable one, nothing else the caller
        // sent is looked at (the CSR is not even parsed).
        let token = ctx.store.usable_join_token(&secret_hash, now).await?;
        // The cooperative's rule before the token is spent, so that a
        // refused enrollment leaves it usable once the site is fixed.
        auth::require_site_in_france(&ctx.store.get_site(&token.site).await?)?;
        let issued = ctx.ca.sign_client_csr(
            &r.csr_pem,
            name.as_str(),
            "node",
            now,
            ctx.config.node_cert_ttl_secs(),
        )?;
        // The token is checked again, and spent, in the transaction that
        // creates the node: a certificate signed for a token spent
        // meanwhile matches no node and opens nothing.
        let rec = ctx
            .store
            .enroll_node(
                &secret_hash,
                NewNode {
                    name: name.clone(),
                    cert: node_cert(&issued),
                    facts: r.facts,
                },
                now,
            )
            .await?;
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
        // Anyone can try: attempts are limited per address before any work.
        let peer = Peer::of(req.remote_addr());
        let limiter = &self.0.limits.enrollments;
        limiter
            .admit(peer, self.0.clock.now_ms())
            .map_err(|limited| limited.error("enrollment attempts", peer).to_status())?;
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
                // A few refusals per address and minute are written one by
                // one, the rest summed up (`refusal-summaries`).
                if limiter.refusal(peer, self.0.clock.now_ms()) {
                    self.audit_enroll(
                        "anonymous".into(),
                        &node,
                        outcome,
                        format!("{e} (from {peer})"),
                    )
                    .await;
                    tracing::warn!(node = %node.chars().take(63).collect::<String>(), error = %e, "enrollment refused");
                }
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
        let node = admit(&ctx, &fingerprint).await?;
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
            health: Some(ctx.config.health.policy()),
        };
        let (id, last, out) = ctx.sessions.open(
            &name,
            params,
            desired_of(&desired, &ctx.catalog, &ctx.config),
        );
        // A removal closes the node's session after marking it removed;
        // this reads the mark after registering the session, so a session
        // opening at that moment cannot slip between the two.
        let removed = match ctx.store.get_node(&name).await {
            Ok(n) => n.removed.is_some(),
            Err(e) => {
                ctx.sessions.close(&name, id);
                return Err(ApiError::from(e).to_status());
            }
        };
        if removed {
            ctx.sessions.close(&name, id);
            return Err(Status::permission_denied(format!(
                "node {name} was removed while its session opened"
            )));
        }
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
        ctx.health.poke();
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
            Some(pb::agent_message::Body::Health(report)) => {
                ctx.sessions.note_seen(&name, ctx.clock.now());
                record_health(&ctx, &name, *report).await;
                Ok(())
            }
            Some(pb::agent_message::Body::Result(r)) => {
                // Matched within this session only: a node answers for
                // itself.
                ctx.sessions.resolve(&name, id, r);
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
        ctx.health.poke();
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

/// Keeps a node's health report once checked; a refused one changes
/// nothing (the previous report stays), is logged, and audited once per
/// node per hour.
async fn record_health(ctx: &Ctx, name: &NodeName, report: pb::HealthReport) {
    let now = ctx.clock.now();
    match crate::health::check_report(&report) {
        Ok(()) => {
            ctx.health.accept(name, report, now);
            ctx.sessions
                .stats
                .health_reports
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Err(refused) => {
            if ctx.health.refusal_to_audit(name, now) {
                tracing::warn!(node = %name, reason = %refused, "health report refused");
                let entry = AuditRecord::new(AuditFields {
                    at_unix_ms: ctx.clock.now_ms(),
                    actor: format!("node:{name}"),
                    action: "node.health".into(),
                    target: format!("node:{name}"),
                    tenant: None,
                    outcome: AuditOutcome::Denied,
                    detail: format!(
                        "{refused}; the previous report is kept (further refusals of this \
                         node are not audited for an hour)"
                    ),
                });
                if let Err(err) = ctx.store.append_audit(entry).await {
                    tracing::error!(error = %err, "cannot write audit entry");
                }
            } else {
                tracing::debug!(node = %name, reason = %refused, "health report refused");
            }
        }
    }
}

//! The session with colocd: one long-lived mTLS stream, reopened forever.
//!
//! The agent dials out (nodes may sit behind NAT), sends `Hello` with its
//! ledger generation and facts, then serves the controller: heartbeats at
//! the interval `SessionParams` asks for, desired configurations (handed to
//! the agent's single desired-configuration worker, which answers with
//! `ObservedState`), and one-off requests (ping, facts, volume rollback,
//! an app's journal, certificate renewal: [`crate::renewal`]; the session
//! after a renewal opens with the new certificate). When the stream breaks the agent
//! reconnects with exponential backoff and full jitter, back to the initial
//! delay after a session in which the controller actually spoke;
//! `Unauthenticated`/`PermissionDenied` (node removed, certificate revoked)
//! are logged at error and retried at the maximum delay. Nothing here
//! applies a configuration by itself: [`handle_desired`] decides between
//! the ledger and the controller, the reconciler applies (and answers
//! `RollbackVolume` requests). While a session is open it is published in
//! the agent's [`SessionLink`], through which the periodic pass reports.

use std::sync::Arc;
use std::time::Duration;

use coloc_proto::agent::v1::{
    AgentMessage, CertificateRequest, ControllerMessage, DesiredConfig, Heartbeat, Hello,
    MaintenanceKind, ObservedState, Pong, Request, RequestResult, agent_message,
    controller_message, request, request_result,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::backoff::{Backoff, Retry};
use crate::config::{AgentConfig, CaSource, ConfigError};
use crate::enroll::NodeIdentity;
use crate::health::HealthHub;
use crate::ledger::{LedgerError, LedgerStore};
use crate::logging::ids;
use crate::reconcile::Reconciler;
use crate::renewal::Renewal;
use crate::shutdown::Shutdown;
use crate::status::{Outcome, Persist, unix_ms_now};
use crate::supervisor::SessionLink;
use crate::tls::{self, TlsError};
use crate::version::AGENT_VERSION;
use crate::{apps, facts};
use coloc_proto::error_chain;

/// Heartbeat interval until the controller says otherwise.
pub const DEFAULT_HEARTBEAT_SECS: u32 = 10;
/// Bounds on the interval the controller may ask for.
pub const HEARTBEAT_SECS_RANGE: std::ops::RangeInclusive<u32> = 1..=3600;
/// Messages queued towards the controller. Heartbeats and answers are
/// tiny; a full queue means the controller stopped reading.
const OUTBOUND_CAPACITY: usize = 64;

/// A desired configuration to handle, and where to send the answer.
pub(crate) type DesiredJob = (DesiredConfig, mpsc::Sender<AgentMessage>);

/// Decides what to do with a desired configuration from the controller,
/// and does it: refuse it if it is older than the ledger's; otherwise
/// persist it first (if newer), then reconcile. Returns the answer for the
/// controller. Callers must not run two of these at once for one agent
/// (the agent has a single worker for this).
pub async fn handle_desired(
    ledger: &Arc<dyn LedgerStore>,
    reconciler: &Reconciler,
    desired: DesiredConfig,
) -> ObservedState {
    let node = reconciler.node_name().clone();
    let status = reconciler.status();
    let held = {
        let ledger = Arc::clone(ledger);
        tokio::task::spawn_blocking(move || ledger.load()).await
    };
    let held = match held {
        Ok(Ok(held)) => held,
        Ok(Err(e @ (LedgerError::Corrupt { .. } | LedgerError::UnsupportedVersion { .. }))) => {
            // The controller's configuration is what repairs a damaged
            // ledger; refusing it would leave the node stuck.
            tracing::warn!(node = %node, error = %error_chain(&e), "ledger unreadable; replacing it");
            None
        }
        Ok(Err(e)) => {
            let held = status.snapshot().ledger_generation;
            return failed(
                reconciler,
                held,
                format!("cannot read the ledger: {}", error_chain(&e)),
            );
        }
        Err(e) => {
            let held = status.snapshot().ledger_generation;
            return failed(reconciler, held, format!("ledger task failed: {e}"));
        }
    };
    let held_generation = held.as_ref().map_or(0, |h| h.generation);

    if desired.generation < held_generation {
        let message = format!(
            "desired generation {} is older than the ledger's {}; keeping {}",
            desired.generation, held_generation, held_generation
        );
        tracing::warn!(message_id = ids::CONFIG_REFUSED, node = %node, generation = desired.generation, ledger_generation = held_generation, "stale desired configuration rejected");
        status.update(Persist::Yes, |s| {
            s.last_outcome = Some(Outcome::StaleRejected);
            s.last_message = message.clone();
        });
        return ObservedState {
            generation: held_generation,
            outcome: Outcome::StaleRejected.to_proto().into(),
            message,
            draining: held.as_ref().is_some_and(|h| h.draining),
            ..Default::default()
        };
    }

    // Refused before it reaches the ledger: a configuration that can never
    // apply must not become what the node falls back to after a reboot.
    if let Err(e) = reconciler.check(&desired) {
        let message = error_chain(&e);
        tracing::error!(message_id = ids::CONFIG_REFUSED, node = %node, generation = desired.generation, error = %message, "desired configuration refused");
        return failed(reconciler, held_generation, message);
    }

    let target = match held {
        Some(held) if held.generation == desired.generation => {
            if held != desired {
                tracing::warn!(node = %node, generation = held.generation, "controller resent a generation with different content; keeping the ledger's");
            }
            held
        }
        _ => {
            let stored = {
                let ledger = Arc::clone(ledger);
                let desired = desired.clone();
                tokio::task::spawn_blocking(move || ledger.store(&desired)).await
            };
            match stored {
                Ok(Ok(())) => {
                    tracing::info!(node = %node, generation = desired.generation, "desired configuration ledgered");
                    status.update(Persist::Yes, |s| {
                        s.ledger_generation = desired.generation;
                        s.ledger_error = None;
                    });
                }
                Ok(Err(LedgerError::Stale { held, offered })) => {
                    let message = format!(
                        "desired generation {offered} is older than the ledger's {held}; keeping {held}"
                    );
                    status.update(Persist::Yes, |s| {
                        s.last_outcome = Some(Outcome::StaleRejected);
                        s.last_message = message.clone();
                    });
                    return ObservedState {
                        generation: held,
                        outcome: Outcome::StaleRejected.to_proto().into(),
                        message,
                        draining: status.snapshot().draining,
                        ..Default::default()
                    };
                }
                Ok(Err(e)) => {
                    let message = format!("cannot write the ledger: {}", error_chain(&e));
                    tracing::error!(node = %node, generation = desired.generation, error = %message, "desired configuration not applied");
                    return failed(reconciler, held_generation, message);
                }
                Err(e) => {
                    return failed(
                        reconciler,
                        held_generation,
                        format!("ledger task failed: {e}"),
                    );
                }
            }
            desired
        }
    };
    reconciler.reconcile(&target).await.to_observed()
}

fn failed(reconciler: &Reconciler, generation: u64, message: String) -> ObservedState {
    let status = reconciler.status();
    status.update(Persist::Yes, |s| {
        s.last_outcome = Some(Outcome::Failed);
        s.last_message = message.clone();
    });
    ObservedState {
        generation,
        outcome: Outcome::Failed.to_proto().into(),
        message,
        draining: status.snapshot().draining,
        ..Default::default()
    }
}

/// The heartbeat interval to adopt for a `SessionParams` value: `None`
/// keeps the current one (0 is proto3's "not set"), anything else is
/// clamped to [`HEARTBEAT_SECS_RANGE`].
pub fn heartbeat_interval(requested_secs: u32) -> Option<u32> {
    if requested_secs == 0 {
        return None;
    }
    Some(requested_secs.clamp(*HEARTBEAT_SECS_RANGE.start(), *HEARTBEAT_SECS_RANGE.end()))
}

/// How a session ended.
#[derive(Debug)]
enum SessionEnd {
    Shutdown,
    Ended {
        /// The controller sent at least one message: the link worked.
        heard_from_controller: bool,
        retry: Retry,
        reason: String,
    },
}

impl SessionEnd {
    fn failed(retry: Retry, reason: String) -> SessionEnd {
        SessionEnd::Ended {
            heard_from_controller: false,
            retry,
            reason,
        }
    }

    fn status(status: &tonic::Status, heard_from_controller: bool) -> SessionEnd {
        SessionEnd::Ended {
            heard_from_controller,
            retry: Retry::for_code(status.code()),
            reason: format!("{:?}: {}", status.code(), status.message()),
        }
    }
}

/// Everything one agent's sessions need.
pub(crate) struct SessionRunner {
    pub config: AgentConfig,
    pub identity: NodeIdentity,
    pub reconciler: Arc<Reconciler>,
    pub ledger: Arc<dyn LedgerStore>,
    pub desired_tx: mpsc::Sender<DesiredJob>,
    /// Where the periodic pass finds the open session, if any.
    pub link: SessionLink,
    /// A certificate renewal colocd asked for (`crate::renewal`).
    pub renewal: Arc<Renewal>,
    /// The health loop's policy, reports and on-demand maintenance.
    pub health: HealthHub,
}

impl SessionRunner {
    /// Opens sessions until `shutdown` fires.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let node = self.identity.node_name.clone();
        let session = self.config.session;
        let mut backoff = Backoff::new(session.backoff_initial, session.backoff_max);
        let Some(mut endpoint) = self.endpoint(&mut backoff, &mut shutdown).await else {
            return;
        };
        loop {
            let (heard, retry, reason) = match self.one_session(&endpoint, &mut shutdown).await {
                SessionEnd::Shutdown => return,
                SessionEnd::Ended {
                    heard_from_controller,
                    retry,
                    reason,
                } => (heard_from_controller, retry, reason),
            };
            let status = self.reconciler.status();
            status.update(Persist::Yes, |s| {
                s.connected = false;
                s.last_error = Some(reason.clone());
            });
            if heard {
                backoff.reset();
            }
            // A renewed certificate was installed during that session:
            // the next one opens with it (colocd ended this one for that).
            if let Some(client) = self.renewal.take_installed() {
                tracing::info!(node = %node, "opening the next session with the renewed certificate");
                self.identity.client = client;
                match self.endpoint(&mut backoff, &mut shutdown).await {
                    Some(renewed) => endpoint = renewed,
                    None => return,
                }
            }
            let delay = match retry {
                Retry::Soon => {
                    let delay = backoff.next_delay();
                    tracing::warn!(node = %node, reason = %reason, retry_in_ms = millis(delay), "session with the controller ended");
                    delay
                }
                Retry::Slowly => {
                    let delay = backoff.slow_delay();
                    tracing::error!(node = %node, reason = %reason, retry_in_ms = millis(delay), "the controller refuses this node (removed? certificate revoked?); retrying slowly");
                    delay
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// The mutual-TLS endpoint, built once; retried slowly while the CA or
    /// the node's files are unusable, since a person has to fix them.
    async fn endpoint(&self, backoff: &mut Backoff, shutdown: &mut Shutdown) -> Option<Endpoint> {
        loop {
            let built = self.trust().map_err(|e| error_chain(&e)).and_then(|ca| {
                tls::endpoint(
                    &self.config.controller,
                    &ca,
                    Some(&self.identity.client),
                    self.config.session.connect_timeout,
                )
                .map_err(|e: TlsError| error_chain(&e))
            });
            match built {
                Ok(endpoint) => return Some(endpoint),
                Err(message) => {
                    let delay = backoff.slow_delay();
                    tracing::error!(node = %self.identity.node_name, error = %message, retry_in_ms = millis(delay), "cannot set up the session's TLS");
                    self.reconciler
                        .status()
                        .update(Persist::Yes, |s| s.last_error = Some(message));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait() => return None,
                    }
                }
            }
        }
    }

    /// The CA trusted for the controller: the configured one; the CA saved
    /// at enrollment only if the configured file has gone missing, so that
    /// a node whose seed was cleaned up keeps its link.
    fn trust(&self) -> Result<Vec<u8>, ConfigError> {
        match self.config.ca.read() {
            Ok(pem) => Ok(pem),
            Err(e) => match (&self.config.ca, &self.identity.ca_pem) {
                (CaSource::File(path), Some(saved)) => {
                    tracing::warn!(node = %self.identity.node_name, ca_file = %path.display(), error = %error_chain(&e), "configured CA unreadable; trusting the CA saved at enrollment");
                    Ok(saved.as_bytes().to_vec())
                }
                _ => Err(e),
            },
        }
    }

    async fn one_session(&self, endpoint: &Endpoint, shutdown: &mut Shutdown) -> SessionEnd {
        let node = &self.identity.node_name;
        let status = self.reconciler.status();
        let connect_timeout = self.config.session.connect_timeout;
        let channel = tokio::select! {
            connected = endpoint.connect() => match connected {
                Ok(channel) => channel,
                Err(e) => return SessionEnd::failed(Retry::Soon, format!("cannot connect: {}", error_chain(&e))),
            },
            _ = shutdown.wait() => return SessionEnd::Shutdown,
        };

        let facts = facts::gather_facts(self.reconciler.host(), node).await;
        let (out_tx, out_rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let hello = AgentMessage {
            body: Some(agent_message::Body::Hello(Hello {
                agent_version: AGENT_VERSION.to_owned(),
                ledger_generation: status.snapshot().ledger_generation,
                facts: Some(facts),
            })),
        };
        // The queue is empty and its receiver alive: these cannot fail.
        let mut opening = vec![hello];
        // A pass that ran while disconnected (the ledger at start) has not
        // been reported yet; the controller learns it right away.
        if let Some(report) = self.reconciler.last_report() {
            opening.push(AgentMessage {
                body: Some(agent_message::Body::Observed(report.to_observed())),
            });
        }
        for message in opening {
            if out_tx.try_send(message).is_err() {
                return SessionEnd::failed(Retry::Soon, "outbound queue unusable".into());
            }
        }

        let mut client = tls::client(channel);
        let open =
            tokio::time::timeout(connect_timeout, client.session(ReceiverStream::new(out_rx)));
        let mut inbound = tokio::select! {
            opened = open => match opened {
                Ok(Ok(response)) => response.into_inner(),
                Ok(Err(s)) => return SessionEnd::status(&s, false),
                Err(_) => return SessionEnd::failed(Retry::Soon, format!("session not opened within {connect_timeout:?}")),
            },
            _ = shutdown.wait() => return SessionEnd::Shutdown,
        };

        tracing::info!(node = %node, controller = %self.config.controller, "session open");
        status.update(Persist::Yes, |s| {
            s.connected = true;
            s.sessions_opened += 1;
            s.heartbeat_interval_secs = DEFAULT_HEARTBEAT_SECS;
            s.last_error = None;
        });

        self.link.open(out_tx.clone());
        self.health.session_opened(&out_tx);
        let end = self.serve(&mut inbound, &out_tx, shutdown).await;
        self.link.close();
        end
    }

    /// Serves an open session until it ends.
    async fn serve(
        &self,
        inbound: &mut tonic::Streaming<ControllerMessage>,
        out_tx: &mpsc::Sender<AgentMessage>,
        shutdown: &mut Shutdown,
    ) -> SessionEnd {
        let status = self.reconciler.status();
        let mut heard = false;
        let mut sequence = 0u64;
        let mut heartbeat = heartbeat_timer(DEFAULT_HEARTBEAT_SECS);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return SessionEnd::Shutdown,
                received = inbound.message() => match received {
                    Ok(Some(message)) => {
                        heard = true;
                        if let Some(end) = self.dispatch(message, out_tx, &mut heartbeat).await {
                            return end;
                        }
                    }
                    Ok(None) => return SessionEnd::Ended {
                        heard_from_controller: heard,
                        retry: Retry::Soon,
                        reason: "the controller closed the session".into(),
                    },
                    Err(s) => return SessionEnd::status(&s, heard),
                },
                _ = heartbeat.tick() => {
                    sequence += 1;
                    let beat = AgentMessage {
                        body: Some(agent_message::Body::Heartbeat(Heartbeat {
                            sequence,
                            applied_generation: status.snapshot().applied_generation,
                            sent_unix_ms: unix_ms_now(),
                        })),
                    };
                    match out_tx.try_send(beat) {
                        Ok(()) => status.update(Persist::No, |s| s.heartbeats_sent += 1),
                        Err(mpsc::error::TrySendError::Full(_)) => return SessionEnd::Ended {
                            heard_from_controller: heard,
                            retry: Retry::Soon,
                            reason: "the controller stopped reading the session".into(),
                        },
                        Err(mpsc::error::TrySendError::Closed(_)) => return SessionEnd::Ended {
                            heard_from_controller: heard,
                            retry: Retry::Soon,
                            reason: "the session's outbound stream closed".into(),
                        },
                    }
                }
            }
        }
    }

    /// Handles one controller message; `Some` ends the session.
    async fn dispatch(
        &self,
        message: ControllerMessage,
        out_tx: &mpsc::Sender<AgentMessage>,
        heartbeat: &mut tokio::time::Interval,
    ) -> Option<SessionEnd> {
        let node = &self.identity.node_name;
        match message.body {
            Some(controller_message::Body::Params(params)) => {
                self.health.set_policy(params.health);
                if let Some(secs) = heartbeat_interval(params.heartbeat_interval_secs) {
                    tracing::debug!(node = %node, heartbeat_interval_secs = secs, "session parameters");
                    *heartbeat = heartbeat_timer(secs);
                    self.reconciler
                        .status()
                        .update(Persist::No, |s| s.heartbeat_interval_secs = secs);
                }
                None
            }
            Some(controller_message::Body::Desired(desired)) => {
                tracing::debug!(node = %node, generation = desired.generation, "desired configuration received");
                match self.desired_tx.send((desired, out_tx.clone())).await {
                    Ok(()) => None,
                    // The worker only stops when the agent shuts down.
                    Err(_) => Some(SessionEnd::Shutdown),
                }
            }
            Some(controller_message::Body::Request(request)) => {
                self.answer(request, out_tx.clone());
                None
            }
            None => {
                tracing::debug!(node = %node, "controller message of an unknown kind ignored");
                None
            }
        }
    }

    /// Answers a request on its own task, so a slow host probe never
    /// delays heartbeats.
    fn answer(&self, request: Request, out_tx: mpsc::Sender<AgentMessage>) {
        let reconciler = Arc::clone(&self.reconciler);
        let ledger = Arc::clone(&self.ledger);
        let renewal = Arc::clone(&self.renewal);
        let health = self.health.clone();
        tokio::spawn(async move {
            let node = reconciler.node_name().clone();
            let result = match request.kind {
                Some(request::Kind::Ping(_)) => RequestResult {
                    request_id: request.id,
                    ok: true,
                    error: String::new(),
                    payload: Some(request_result::Payload::Pong(Pong {
                        agent_unix_ms: unix_ms_now(),
                    })),
                },
                Some(request::Kind::RefreshFacts(_)) => {
                    match facts::host_facts(reconciler.host()).await {
                        Ok(facts) => RequestResult {
                            request_id: request.id,
                            ok: true,
                            error: String::new(),
                            payload: Some(request_result::Payload::Facts(facts)),
                        },
                        Err(e) => RequestResult {
                            request_id: request.id,
                            ok: false,
                            error: error_chain(&e),
                            payload: None,
                        },
                    }
                }
                Some(request::Kind::AppLogs(logs)) => {
                    match apps::app_logs(reconciler.host(), &logs).await {
                        Ok(page) => RequestResult {
                            request_id: request.id,
                            ok: true,
                            error: String::new(),
                            payload: Some(request_result::Payload::Logs(page)),
                        },
                        Err(e) => RequestResult {
                            request_id: request.id,
                            ok: false,
                            error: error_chain(&e),
                            payload: None,
                        },
                    }
                }
                Some(request::Kind::RollbackVolume(rollback)) => {
                    match reconciler
                        .rollback_volume(&ledger, &rollback.volume_id, &rollback.snapshot)
                        .await
                    {
                        Ok(volume) => RequestResult {
                            request_id: request.id,
                            ok: true,
                            error: String::new(),
                            payload: Some(request_result::Payload::Volume(volume)),
                        },
                        Err(e) => RequestResult {
                            request_id: request.id,
                            ok: false,
                            error: error_chain(&e),
                            payload: None,
                        },
                    }
                }
                Some(request::Kind::RenewCertificate(_)) => {
                    let renewal = Arc::clone(&renewal);
                    let made = tokio::task::spawn_blocking(move || renewal.request()).await;
                    match made {
                        Ok(Ok(csr_pem)) => {
                            tracing::info!(node = %node, "new node key made for a certificate renewal");
                            RequestResult {
                                request_id: request.id,
                                ok: true,
                                error: String::new(),
                                payload: Some(request_result::Payload::Csr(CertificateRequest {
                                    csr_pem,
                                })),
                            }
                        }
                        Ok(Err(e)) => refused(request.id, &node, error_chain(&e)),
                        Err(e) => refused(request.id, &node, format!("renewal task failed: {e}")),
                    }
                }
                Some(request::Kind::InstallCertificate(install)) => {
                    let renewal = Arc::clone(&renewal);
                    let cert = install.certificate_pem;
                    let stored = tokio::task::spawn_blocking(move || renewal.install(&cert)).await;
                    match stored {
                        Ok(Ok(())) => {
                            tracing::info!(node = %node, not_after_unix = install.not_after_unix, "renewed node certificate stored; the next session uses it");
                            RequestResult {
                                request_id: request.id,
                                ok: true,
                                error: String::new(),
                                payload: None,
                            }
                        }
                        Ok(Err(e)) => refused(request.id, &node, error_chain(&e)),
                        Err(e) => refused(request.id, &node, format!("renewal task failed: {e}")),
                    }
                }
                Some(request::Kind::RunMaintenance(run)) => {
                    let kind =
                        MaintenanceKind::try_from(run.kind).unwrap_or(MaintenanceKind::Unspecified);
                    match health.run_on_demand(kind, &run.subject).await {
                        Ok(started) => {
                            tracing::info!(node = %node, started = %started, "maintenance started for the controller");
                            RequestResult {
                                request_id: request.id,
                                ok: true,
                                error: String::new(),
                                payload: None,
                            }
                        }
                        Err(error) => {
                            tracing::warn!(node = %node, error = %error, "maintenance refused");
                            RequestResult {
                                request_id: request.id,
                                ok: false,
                                error,
                                payload: None,
                            }
                        }
                    }
                }
                None => RequestResult {
                    request_id: request.id,
                    ok: false,
                    error: "unknown request kind (is the controller newer than this agent?)".into(),
                    payload: None,
                },
            };
            let message = AgentMessage {
                body: Some(agent_message::Body::Result(result)),
            };
            if out_tx.send(message).await.is_err() {
                tracing::debug!(node = %node, request_id = request.id, "session ended before the answer was sent");
            }
        });
    }
}

/// A certificate renewal step that failed: the node keeps its current
/// certificate, and colocd tries again later.
fn refused(request_id: u64, node: &coloc_proto::domain::NodeName, error: String) -> RequestResult {
    tracing::warn!(node = %node, error = %error, "certificate renewal step failed");
    RequestResult {
        request_id,
        ok: false,
        error,
        payload: None,
    }
}

fn heartbeat_timer(secs: u32) -> tokio::time::Interval {
    let period = Duration::from_secs(u64::from(secs));
    let mut timer = tokio::time::interval_at(Instant::now() + period, period);
    // After a stall, one heartbeat is enough; a burst would tell the
    // controller nothing more.
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_interval_is_clamped() {
        assert_eq!(heartbeat_interval(0), None);
        assert_eq!(heartbeat_interval(1), Some(1));
        assert_eq!(heartbeat_interval(10), Some(10));
        assert_eq!(heartbeat_interval(3600), Some(3600));
        assert_eq!(heartbeat_interval(100_000), Some(3600));
    }
}

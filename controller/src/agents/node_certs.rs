//! Node certificates on colocd's side: which certificate may open a
//! session ([`admit`]), and renewing one over the session ([`renew`]).
//!
//! A session is admitted when its certificate is the node's current or
//! next one, unexpired at colocd's clock, and the node is not removed
//! ([`crate::rules::certs::check_presented`]); the first session with the
//! next certificate makes it current, and the old one is refused from
//! then on. A renewal asks the node for a CSR for a new key, signs it
//! (the node's name, colocd's lifetime, whatever the CSR asked), records
//! it as the node's next certificate, sends it, and once the node says it
//! stored it ends the session so that the node reconnects with it. The
//! `node-certificates` background task decides when
//! ([`crate::background`]).

use coloc_proto::domain::NodeName;
use tonic::Status;

use super::system_audit::audit_system_node;
use crate::ca::{CaError, Issued};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::rules::certs::{self, Presented, SessionRefused};
use crate::store::{ConnState, NodeCert, NodeRecord, StoreError};
use crate::time::date_of;

/// Longest CSR a node may send (the same bound as at enrollment).
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// What the store records of a certificate colocd signed for a node.
pub fn node_cert(issued: &Issued) -> NodeCert {
    NodeCert {
        fingerprint: issued.fingerprint.clone(),
        not_after_unix: issued.not_after_unix,
        renew_after_unix: certs::renew_after(issued.not_before_unix, issued.not_after_unix),
    }
}

/// The first 16 hex digits of a fingerprint, for logs and the audit log.
fn short(fingerprint: &str) -> &str {
    fingerprint.get(..16).unwrap_or(fingerprint)
}

/// The node a session's certificate (by `fingerprint`) lets in, or the
/// refusal to answer it with.
pub async fn admit(ctx: &Ctx, fingerprint: &str) -> Result<NodeRecord, Status> {
    let store_error = |e: StoreError| ApiError::from(e).to_status();
    let node = ctx
        .store
        .node_by_fingerprint(fingerprint)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            Status::unauthenticated(
                "this certificate belongs to no node (removed, or replaced since)",
            )
        })?;
    let presented = certs::check_presented(&node, fingerprint, ctx.clock.now()).map_err(|e| {
        tracing::warn!(node = %node.name, certificate = short(fingerprint), reason = %e, "session refused");
        match e {
            SessionRefused::Removed { .. } => Status::permission_denied(e.to_string()),
            SessionRefused::Expired { .. } | SessionRefused::NotItsCertificate { .. } => {
                Status::unauthenticated(e.to_string())
            }
        }
    })?;
    match presented {
        Presented::Current => Ok(node),
        Presented::Next => {
            let old = node.cert.fingerprint.clone();
            let node = ctx
                .store
                .promote_next_cert(&node.name, fingerprint)
                .await
                .map_err(store_error)?;
            tracing::info!(node = %node.name, certificate = short(fingerprint), replaced = short(&old), "node uses its renewed certificate");
            audit_system_node(
                ctx,
                "node.certificate.use",
                &node.name,
                format!(
                    "node {} uses its renewed certificate {} (valid until {}); the old one {} \
                     is refused from now on",
                    node.name,
                    short(fingerprint),
                    date_of(node.cert.not_after_unix),
                    short(&old)
                ),
            )
            .await;
            Ok(node)
        }
    }
}

/// Why a renewal did not go through; the node keeps its current
/// certificate, and the renewal is tried again later.
#[derive(Debug, thiserror::Error)]
pub enum RenewalError {
    #[error("the node did not give a certificate request")]
    Request(#[source] ApiError),
    #[error("the node's certificate request is larger than {MAX_CSR_BYTES} bytes")]
    CsrTooLarge,
    #[error("cannot sign the node's certificate request")]
    Sign(#[source] CaError),
    #[error("cannot record the renewed certificate")]
    Store(#[source] StoreError),
    #[error("the node did not store its renewed certificate")]
    Install(#[source] ApiError),
}

/// Renews `node`'s certificate over its session; returns the new one.
pub async fn renew(ctx: &Ctx, node: &NodeName) -> Result<NodeCert, RenewalError> {
    let csr = ctx
        .sessions
        .certificate_request(node)
        .await
        .map_err(RenewalError::Request)?;
    if csr.len() > MAX_CSR_BYTES {
        return Err(RenewalError::CsrTooLarge);
    }
    let issued = ctx
        .ca
        .sign_client_csr(
            &csr,
            node.as_str(),
            "node",
            ctx.clock.now(),
            ctx.config.node_cert_ttl_secs(),
        )
        .map_err(RenewalError::Sign)?;
    let cert = node_cert(&issued);
    let before = ctx
        .store
        .set_next_cert(node, cert.clone())
        .await
        .map_err(RenewalError::Store)?;
    ctx.sessions
        .install_certificate(node, issued.pem, issued.not_after_unix)
        .await
        .map_err(RenewalError::Install)?;
    tracing::info!(node = %node, certificate = short(&cert.fingerprint), not_after = %date_of(cert.not_after_unix), "node certificate renewed");
    audit_system_node(
        ctx,
        "node.certificate.renew",
        node,
        format!(
            "certificate {} issued to node {node}, valid until {}, renewal from {}; its \
             current one {} (valid until {}) is accepted until the new one is used",
            short(&cert.fingerprint),
            date_of(cert.not_after_unix),
            date_of(cert.renew_after_unix),
            short(&before.cert.fingerprint),
            date_of(before.cert.not_after_unix)
        ),
    )
    .await;
    // The node stored it: it reconnects with it at once.
    close_session(ctx, node, "certificate renewed").await;
    Ok(cert)
}

/// Ends the node's session, if any, and records it disconnected (its
/// unreachable delay starts, as for any session that ends) unless it has
/// already opened a new one.
pub async fn close_session(ctx: &Ctx, node: &NodeName, reason: &str) {
    if !ctx.sessions.close_node(node) {
        return;
    }
    tracing::info!(node = %node, reason, "session closed by colocd");
    if ctx.sessions.is_connected(node) {
        return;
    }
    if let Err(err) = ctx
        .store
        .set_conn_state(node, ConnState::Disconnected, ctx.clock.now())
        .await
    {
        tracing::error!(node = %node, error = %err, "cannot record disconnection");
    }
}

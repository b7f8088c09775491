//! `server-certificate`: renews colocd's own server certificate once two
//! thirds of its lifetime have passed, and says how long the CA has left.
//!
//! The new certificate carries the names of the one it replaces (every
//! client was checked against those), with a new key; it is written to
//! the data directory first (so a restart serves it too), then presented
//! from the next handshake on (`crate::tls`): connections already open
//! keep theirs. A renewal that fails leaves the current certificate in
//! place, a third of its lifetime still ahead, and is tried at the next
//! run. The CA itself is not rotated: from [`CA_WARNING_SECS`] before its
//! end every run fails with what a sysadmin has to do.

use std::path::PathBuf;

use super::driver::{BackgroundTask, TaskError};
use crate::agents::system_audit::audit_system_controller;
use crate::ca;
use crate::context::Ctx;
use crate::rules::certs;
use crate::time::date_of;

/// How long before the CA's end its runs start failing: a server
/// certificate's lifetime, since none is signed past the CA's end.
pub const CA_WARNING_SECS: i64 = ca::SERVER_CERT_TTL_SECS;

pub(super) struct ServerCertificate {
    ctx: Ctx,
    data_dir: PathBuf,
}

impl ServerCertificate {
    pub(super) fn new(ctx: Ctx, data_dir: PathBuf) -> Self {
        Self { ctx, data_dir }
    }

    fn failed(action: &str) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> TaskError {
        let action = action.to_string();
        move |source| TaskError::Other { action, source }
    }

    /// Signs, writes and presents a new certificate; what it says.
    async fn renew(&self, names: Vec<String>, now: i64) -> Result<ca::CertInfo, TaskError> {
        let ctx = &self.ctx;
        let identity = ctx
            .ca
            .sign_server(names, now)
            .map_err(|e| Self::failed("sign a new server certificate")(e.into()))?;
        let dir = self.data_dir.clone();
        let written = identity.clone();
        tokio::task::spawn_blocking(move || ca::write_server_identity(&dir, &written))
            .await
            .map_err(|e| Self::failed("write the new server certificate")(e.into()))?
            .map_err(|e| Self::failed("write the new server certificate")(e.into()))?;
        ctx.server_cert
            .replace(&identity)
            .map_err(|e| Self::failed("present the new server certificate")(e.into()))
    }
}

#[async_trait::async_trait]
impl BackgroundTask for ServerCertificate {
    async fn activate(&mut self) -> Result<String, TaskError> {
        let ctx = &self.ctx;
        let now = ctx.clock.now();
        let current = ctx.server_cert.info();
        let renew_after = certs::renew_after(current.not_before_unix, current.not_after_unix);
        let summary = if certs::is_due(renew_after, now) {
            let renewed = self.renew(current.names.clone(), now).await?;
            tracing::info!(
                not_after = %date_of(renewed.not_after_unix),
                replaced_not_after = %date_of(current.not_after_unix),
                "server certificate renewed"
            );
            let detail = format!(
                "server certificate renewed for {}: valid until {} (the one it replaces was \
                 valid until {})",
                current.names.join(", "),
                date_of(renewed.not_after_unix),
                date_of(current.not_after_unix)
            );
            audit_system_controller(ctx, "controller.certificate.renew", detail).await;
            format!(
                "renewed: valid until {} (was until {})",
                date_of(renewed.not_after_unix),
                date_of(current.not_after_unix)
            )
        } else {
            format!(
                "valid until {}, renewed from {}",
                date_of(current.not_after_unix),
                date_of(renew_after)
            )
        };
        let ca_end = ctx.ca.not_after_unix();
        if ca_end - now < CA_WARNING_SECS {
            return Err(TaskError::NeedsAdmin(format!(
                "{summary}; the cooperative's CA ends on {}: every certificate it signs ends \
                 then too, so every node and client must be given a new CA before that \
                 (docs/DECISIONS.md, \"Node removal and certificates\")",
                date_of(ca_end)
            )));
        }
        Ok(format!("{summary}; CA valid until {}", date_of(ca_end)))
    }
}

//! The request context: what every handler of the public API and of the
//! agent service holds ([`Ctx`]: store, CA, clock, configuration, live
//! sessions, catalog, background task statuses, the server certificate),
//! the frame every public API handler runs in ([`Ctx::mutation`],
//! [`Ctx::read`]: authenticate,
//! open the audit entry, run the handler's body, write the entry), and the
//! audit entry of a call in the making ([`AuditScope`]).
//!
//! It sits below both `api/` and `agents/` so that neither has to import
//! the other to reach the shared state. It decides nothing: policy is in
//! [`crate::auth`], persistence behind [`Store`].

use std::sync::Arc;

use coloc_proto::domain::TenantName;
use tonic::{Request, Response, Status};

use crate::agents::registry::SessionRegistry;
use crate::auth::{self, Caller};
use crate::background::status::TaskBoard;
use crate::ca::CertificateAuthority;
use crate::catalog::Catalog;
use crate::config::ControllerConfig;
use crate::error::{ApiError, ApiResult};
use crate::store::{AuditOutcome, AuditRecord, Store};
use crate::time::Clock;
use crate::tls::ServerCertificate;

/// Everything a handler needs, shared by all services.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub ca: Arc<CertificateAuthority>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ControllerConfig>,
    pub sessions: Arc<SessionRegistry>,
    /// The app catalog, loaded once at start.
    pub catalog: Arc<Catalog>,
    /// What colocd's background tasks did last (`coloc tasks`).
    pub tasks: Arc<TaskBoard>,
    /// The certificate colocd's TLS endpoint presents (renewed in place).
    pub server_cert: Arc<ServerCertificate>,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Ctx {
    /// Serves a public API call that changes something, audited whatever
    /// its outcome.
    ///
    /// The caller is authenticated, then the audit entry opened with
    /// `action` and what `target` reads from the request as sent; `body`
    /// runs only for an authenticated caller, with the caller, the request
    /// and the entry, where it may fill in the tenant, a better target and
    /// a detail as it learns them. The entry records the outcome of `body`
    /// (or the refused authentication).
    pub async fn mutation<W, T, A>(
        &self,
        req: Request<W>,
        action: &'static str,
        target: impl FnOnce(&W) -> A,
        body: impl AsyncFnOnce(Caller, W, &mut AuditScope<'_>) -> ApiResult<T>,
    ) -> Result<Response<T>, Status>
    where
        A: Into<AuditTarget>,
    {
        self.serve(req, action, target, body, true).await
    }

    /// Like [`Ctx::mutation`] for a read: only a refusal is logged.
    pub async fn read<W, T, A>(
        &self,
        req: Request<W>,
        action: &'static str,
        target: impl FnOnce(&W) -> A,
        body: impl AsyncFnOnce(Caller, W, &mut AuditScope<'_>) -> ApiResult<T>,
    ) -> Result<Response<T>, Status>
    where
        A: Into<AuditTarget>,
    {
        self.serve(req, action, target, body, false).await
    }

    async fn serve<W, T, A>(
        &self,
        req: Request<W>,
        action: &'static str,
        target: impl FnOnce(&W) -> A,
        body: impl AsyncFnOnce(Caller, W, &mut AuditScope<'_>) -> ApiResult<T>,
        mutation: bool,
    ) -> Result<Response<T>, Status>
    where
        A: Into<AuditTarget>,
    {
        let caller = auth::authenticate(&self.store, &self.clock, &req).await;
        let r = req.into_inner();
        let AuditTarget { target, tenant } = target(&r).into();
        let mut audit = AuditScope {
            ctx: self,
            actor: match &caller {
                Ok(c) => c.actor(),
                Err(_) => "anonymous".to_string(),
            },
            action,
            target,
            tenant,
            detail: String::new(),
            mutation,
        };
        let result = match caller {
            // Unauthenticated: refused before anything else.
            Ok(caller) => body(caller, r, &mut audit).await,
            Err(e) => Err(e),
        };
        audit.finish(result).await.map(Response::new)
    }
}

/// What an API call's audit entry names before the call runs, read from
/// the request as sent: its target and, where the request names one, its
/// tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditTarget {
    target: String,
    tenant: Option<TenantName>,
}

impl AuditTarget {
    /// A target in `tenant`'s audit log too.
    pub fn new(target: impl Into<String>, tenant: Option<TenantName>) -> Self {
        Self {
            target: target.into(),
            tenant,
        }
    }
}

impl From<String> for AuditTarget {
    fn from(target: String) -> Self {
        Self::new(target, None)
    }
}

impl From<&'static str> for AuditTarget {
    fn from(target: &'static str) -> Self {
        Self::new(target, None)
    }
}

/// One audit entry in the making. Handlers may fill in the tenant and a
/// detail as they learn them.
pub struct AuditScope<'a> {
    ctx: &'a Ctx,
    actor: String,
    action: &'static str,
    pub target: String,
    pub tenant: Option<TenantName>,
    pub detail: String,
    mutation: bool,
}

impl AuditScope<'_> {
    /// Writes the entry, for a mutation or a refusal, and turns the
    /// outcome into what the API answers.
    async fn finish<T>(self, result: ApiResult<T>) -> Result<T, Status> {
        let (outcome, detail) = match &result {
            Ok(_) => (AuditOutcome::Allowed, self.detail),
            Err(e) if e.is_denial() => (AuditOutcome::Denied, e.to_string()),
            Err(e) => (AuditOutcome::Failed, e.to_string()),
        };
        if self.mutation || outcome == AuditOutcome::Denied {
            let entry = AuditRecord {
                id: 0,
                at_unix_ms: self.ctx.clock.now_ms(),
                actor: self.actor,
                action: self.action.to_string(),
                target: self.target,
                tenant: self.tenant,
                outcome,
                detail: detail.chars().take(500).collect(),
            };
            if let Err(err) = self.ctx.store.append_audit(entry).await {
                // The action itself already happened (or was refused); a
                // lost audit entry is reported loudly rather than undone.
                tracing::error!(action = self.action, error = %err, "cannot write audit entry");
                if result.is_ok() {
                    return Err(ApiError::Store(err).to_status());
                }
            }
        }
        if let Err(e) = &result {
            tracing::info!(action = self.action, error = %e, "request refused");
        }
        result.map_err(|e| e.to_status())
    }
}

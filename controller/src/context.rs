//! The request context: what every handler of the public API and of the
//! agent service holds ([`Ctx`]: store, CA, clock, configuration, live
//! sessions, catalog, background task statuses), and the audit entry of a
//! public API call in the making ([`AuditScope`]).
//!
//! It sits below both `api/` and `agents/` so that neither has to import
//! the other to reach the shared state. It decides nothing: policy is in
//! [`crate::auth`], persistence behind [`Store`].

use std::sync::Arc;

use coloc_proto::domain::TenantName;
use tonic::{Request, Status};

use crate::agents::registry::SessionRegistry;
use crate::auth::{self, Caller};
use crate::background::status::TaskBoard;
use crate::ca::CertificateAuthority;
use crate::catalog::Catalog;
use crate::config::ControllerConfig;
use crate::error::{ApiError, ApiResult};
use crate::store::{AuditOutcome, AuditRecord, Store};
use crate::time::Clock;

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
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Ctx {
    pub async fn caller<T>(&self, req: &Request<T>) -> ApiResult<Caller> {
        auth::authenticate(&self.store, &self.clock, req).await
    }

    /// Starts the audit entry of a mutation.
    pub fn audit(
        &self,
        caller: &ApiResult<Caller>,
        action: &'static str,
        target: impl Into<String>,
    ) -> AuditScope<'_> {
        AuditScope {
            ctx: self,
            actor: match caller {
                Ok(c) => c.actor(),
                Err(_) => "anonymous".to_string(),
            },
            action,
            target: target.into(),
            tenant: None,
            detail: String::new(),
            mutation: true,
        }
    }

    /// Like [`Ctx::audit`] for a read: only a refusal is logged.
    pub fn audit_read(
        &self,
        caller: &ApiResult<Caller>,
        action: &'static str,
        target: impl Into<String>,
    ) -> AuditScope<'_> {
        let mut scope = self.audit(caller, action, target);
        scope.mutation = false;
        scope
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
    pub async fn finish<T>(self, result: ApiResult<T>) -> Result<T, Status> {
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

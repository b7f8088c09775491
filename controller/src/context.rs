//! The request context: what every handler of the public API and of the
//! agent service holds ([`Ctx`]: store, CA, clock, configuration, live
//! sessions, catalog, background task statuses, the server certificate), the frame every public
//! API handler runs in ([`Ctx::mutation`], [`Ctx::read`]: authenticate,
//! open the audit entry, refuse a frozen association's changes, run the
//! handler's body, write the entry, add the caller's association's
//! notices to the answer), and the audit entry of a call in the making
//! ([`AuditScope`]). Calls refused for want of a valid credential are
//! limited per address here ([`crate::limiter`]): a few are written each
//! minute, the rest counted into one summary entry, and past the
//! allowance refused at once.
//!
//! It sits below both `api/` and `agents/` so that neither has to import
//! the other to reach the shared state. It decides nothing: policy is in
//! [`crate::auth`], persistence behind [`Store`].

use std::sync::Arc;

use coloc_proto::TENANT_NOTICE_HEADER;
use coloc_proto::domain::TenantName;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use crate::agents::registry::SessionRegistry;
use crate::auth::{self, Caller};
use crate::background::status::TaskBoard;
use crate::ca::CertificateAuthority;
use crate::catalog::Catalog;
use crate::config::ControllerConfig;
use crate::error::{ApiError, ApiResult};
use crate::health::HealthBook;
use crate::limiter::{Limiters, Peer};
use crate::rules::standing::{self, Membership};
use crate::store::{AuditFields, AuditOutcome, AuditRecord, Store};
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
    /// Per-address limits on what callers without credentials can do.
    pub limits: Arc<Limiters>,
    /// The certificate colocd's TLS endpoint presents (renewed in place).
    pub server_cert: Arc<ServerCertificate>,
    /// Each node's latest health report.
    pub health: Arc<HealthBook>,
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
    /// (or the refused authentication). A user of a frozen association
    /// is refused here, before `body`, whatever the handler
    /// ([`auth::require_not_frozen`]); every answer to a user of an
    /// expired, frozen or suspended association, refusals included,
    /// carries its notices ([`TENANT_NOTICE_HEADER`]).
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
        let peer = Peer::of(req.remote_addr());
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
            anonymous_from: None,
        };
        let mut notices = Vec::new();
        let result = match caller {
            Ok(caller) => match self.standing(&caller).await {
                Ok(standing) => {
                    let frozen = match &standing {
                        Some(s) if mutation => {
                            auth::require_not_frozen(&caller, &s.membership, action)
                                .inspect_err(|_| audit.tenant = Some(s.tenant.clone()))
                        }
                        _ => Ok(()),
                    };
                    notices = standing.map(|s| s.notices).unwrap_or_default();
                    match frozen {
                        Ok(()) => body(caller, r, &mut audit).await,
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
            // Unauthenticated: refused before anything else.
            Err(e) => {
                let now = self.clock.now_ms();
                let limiter = &self.limits.api_refusals;
                match limiter.admit(peer, now) {
                    Err(limited) => {
                        audit.anonymous_from = Some((peer, false));
                        Err(limited.error("calls without valid credentials", peer))
                    }
                    Ok(()) => {
                        audit.anonymous_from = Some((peer, limiter.refusal(peer, now)));
                        Err(e)
                    }
                }
            }
        };
        let mut answer = audit.finish(result).await.map(Response::new);
        match &mut answer {
            Ok(response) => add_notices(response.metadata_mut(), &notices),
            Err(status) => add_notices(status.metadata_mut(), &notices),
        }
        answer
    }

    /// Where the caller's association stands (None for admins, who
    /// belong to none): read once per call, for the freeze and the
    /// notices.
    async fn standing(&self, caller: &Caller) -> ApiResult<Option<CallerStanding>> {
        let Some(name) = caller.tenant().filter(|_| !caller.is_admin()) else {
            return Ok(None);
        };
        let tenant = self.store.get_tenant(name).await?;
        let membership =
            Membership::of(&tenant, self.config.membership_grace_days, self.clock.now());
        Ok(Some(CallerStanding {
            notices: standing::notices(&tenant, &membership),
            tenant: tenant.name,
            membership,
        }))
    }
}

/// The caller's association, its membership today and what its users are
/// told on every answer.
struct CallerStanding {
    tenant: TenantName,
    membership: Membership,
    notices: Vec<String>,
}

/// One [`TENANT_NOTICE_HEADER`] per notice, on an answer or a refusal.
fn add_notices(metadata: &mut MetadataMap, notices: &[String]) {
    for notice in notices {
        match MetadataValue::try_from(notice.as_str()) {
            Ok(value) => {
                metadata.append(TENANT_NOTICE_HEADER, value);
            }
            // The rules word notices in ASCII; one that is not is a bug
            // worth a log line, not a failed call.
            Err(_) => {
                tracing::error!(notice = %notice, "tenant notice is not a valid header value")
            }
        }
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
    /// For a call refused for want of a valid credential: where it came
    /// from, and whether it gets an entry of its own (the limiter's
    /// answer; the others are summed up per address).
    anonymous_from: Option<(Peer, bool)>,
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
        let (detail, written) = match self.anonymous_from {
            Some((peer, written)) => (format!("{detail} (from {peer})"), written),
            None => (detail, true),
        };
        if written && (self.mutation || outcome == AuditOutcome::Denied) {
            let entry = AuditRecord::new(AuditFields {
                at_unix_ms: self.ctx.clock.now_ms(),
                actor: self.actor,
                action: self.action.to_string(),
                target: self.target,
                tenant: self.tenant,
                outcome,
                detail,
            });
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
            // Refusals the limiter sums up are not logged one by one
            // either: the log would fill as the database would have.
            if written {
                tracing::info!(action = self.action, error = %e, "request refused");
            } else {
                tracing::debug!(action = self.action, error = %e, "request refused");
            }
        }
        result.map_err(|e| e.to_status())
    }
}

//! The audit log as callers read it: admins every entry, others their own
//! tenant's. Entries are written elsewhere (by [`crate::context::AuditScope`]
//! for API calls, by the agent service and colocd's own tasks); this module
//! only reads, and the store refuses any change to an entry.

use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::audit_server::Audit;
use coloc_proto::domain::{InvalidInput, TenantName, check_text};
use tonic::{Request, Response, Status};

use super::convert;
use crate::auth;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::store::AuditFilter;

#[derive(Debug, Clone)]
pub struct AuditApi(pub Ctx);

#[tonic::async_trait]
impl Audit for AuditApi {
    async fn list_audit(
        &self,
        req: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let audit = ctx.audit_read(&caller, "audit.list", format!("tenant:{}", r.tenant));
        let result = async {
            let caller = caller?;
            let tenant = match r.tenant.as_str() {
                "" => None,
                t => Some(TenantName::new(t)?),
            };
            // Non-admins read their own tenant's entries only.
            let tenant = if caller.is_admin() {
                tenant
            } else {
                if let Some(t) = &tenant {
                    auth::require_tenant_read(&caller, t)?;
                }
                Some(caller.tenant().cloned().ok_or_else(|| {
                    ApiError::PermissionDenied("caller belongs to no tenant".into())
                })?)
            };
            if r.limit > 1000 {
                return Err(InvalidInput::field("limit", "at most 1000").into());
            }
            check_text("actor", &r.actor, 100)?;
            let entries = ctx
                .store
                .list_audit(AuditFilter {
                    before: (r.before > 0).then_some(r.before),
                    limit: r.limit,
                    tenant,
                    actor: (!r.actor.is_empty()).then_some(r.actor),
                })
                .await?;
            Ok(pb::ListAuditResponse {
                entries: entries.into_iter().map(convert::audit).collect(),
            })
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }
}

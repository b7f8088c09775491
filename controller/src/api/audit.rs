//! The audit log as callers read it: admins every entry, others their own
//! tenant's. Entries are written elsewhere (by [`crate::context::AuditScope`]
//! for API calls, by the agent service and colocd's own tasks); this module
//! only reads, and the store refuses any change to an entry.

use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::audit_server::Audit;
use tonic::{Request, Response, Status};

use super::convert;
use super::wire::shown;
use crate::auth;
use crate::context::Ctx;
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
        ctx.read(
            req,
            "audit.list",
            |r| format!("tenant:{}", shown(&r.tenant)),
            async |caller, r, _| {
                let mut filter = AuditFilter::try_from(r)?;
                // Non-admins read their own tenant's entries only.
                filter.tenant = auth::listing_tenant(&caller, filter.tenant)?;
                let entries = ctx.store.list_audit(filter).await?;
                Ok(pb::ListAuditResponse {
                    entries: entries.into_iter().map(convert::audit).collect(),
                })
            },
        )
        .await
    }
}

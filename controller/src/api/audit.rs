//! The audit log as callers read it: admins every entry, others their own
//! tenant's. Entries are written elsewhere (by [`crate::context::AuditScope`]
//! for API calls, by the agent service and colocd's own tasks); this module
//! only reads, and the store refuses any change to an entry. A page is
//! bounded in bytes as well as in entries, with the cursor of the next
//! one, so that a listing always fits in a message.

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
                let page = ctx.store.list_audit(filter).await?;
                Ok(pb::ListAuditResponse {
                    entries: page.entries.into_iter().map(convert::audit).collect(),
                    next_before: page.next_before.unwrap_or(0),
                })
            },
        )
        .await
    }
}

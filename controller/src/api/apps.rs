//! Apps (docs/APPS.md): the catalog, install requests with their
//! discussion, and the instances approved requests create.
//!
//! A tenant's users ask, the cooperative's admins decide; approval creates
//! the instance and bumps its node's generation in one store transaction,
//! and the node gets the rendered unit through its desired configuration
//! ([`crate::agents::desired_of`]). Every request is converted into
//! validated values first ([`super::wire::apps`]), so that nothing a
//! caller wrote reaches the store, a unit file, a path or a host name
//! unchecked.

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::apps_server::Apps;
use coloc_proto::domain::{InvalidInput, NodeName, TenantName};
use coloc_proto::storage::{VolumeName, mount_path};
use tonic::{Request, Response, Status};

use super::convert;
use super::wire::apps::{
    Approval, CommentRequest, InstanceArg, InstanceLogs, ListRequests, Rejection, RequestApp,
    SetPassword,
};
use super::wire::{audit_tenant, shown};
use crate::agents::push_nodes;
use crate::auth::{self, Caller, TenantChange};
use crate::catalog::RenderContext;
use crate::context::{AuditScope, AuditTarget, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::rules::standing::check_apps_may_run;
use crate::store::{
    AppName, CommentRecord, FIRST_APP_PORT, InstanceChange, InstanceFilter, InstanceRecord,
    NewAppRequest, RequestState, StoreError, VolumeFilter, VolumeLifecycle, VolumeRecord,
};
use coloc_proto::apps::WebProtection;

/// The volume picked when a tenant has several on the node and names none.
const DEFAULT_VOLUME: &str = "data";

#[derive(Debug, Clone)]
pub struct AppsApi(pub Ctx);

fn app_target(tenant: &str, app: &str) -> String {
    format!("app:{}/{}", shown(tenant), shown(app))
}

/// The tenant's active volume on the node an app's data goes to: the one
/// named, else its only one, else the one called `data`.
fn pick_volume(
    tenant: &TenantName,
    node: &NodeName,
    named: Option<&VolumeName>,
    volumes: Vec<VolumeRecord>,
) -> ApiResult<VolumeRecord> {
    let mut active: Vec<VolumeRecord> = volumes
        .into_iter()
        .filter(|v| {
            v.lifecycle == VolumeLifecycle::Active && &v.tenant == tenant && &v.node == node
        })
        .collect();
    if let Some(name) = named {
        return active.into_iter().find(|v| &v.name == name).ok_or_else(|| {
            ApiError::Conflict(format!(
                "tenant {tenant} has no active volume {name} on node {node}"
            ))
        });
    }
    match active.len() {
        0 => Err(ApiError::Conflict(format!(
            "tenant {tenant} has no active volume on node {node}; an app keeps its data on one \
             (coloc volume create)"
        ))),
        1 => Ok(active.remove(0)),
        _ => {
            let names: Vec<String> = active.iter().map(|v| v.name.to_string()).collect();
            active
                .into_iter()
                .find(|v| v.name.as_str() == DEFAULT_VOLUME)
                .ok_or_else(|| {
                    InvalidInput::field(
                        "volume",
                        format!(
                            "tenant {tenant} has several volumes on node {node} ({}): name one",
                            names.join(", ")
                        ),
                    )
                    .into()
                })
        }
    }
}

fn instance_label(i: &InstanceRecord) -> String {
    format!(
        "{}/{} on node {} port {}, volume {}",
        i.tenant, i.app, i.node, i.port, i.volume_name
    )
}

impl AppsApi {
    fn instance(&self, i: InstanceRecord) -> pb::AppInstance {
        let web = self.0.catalog.get(i.app.as_str()).map(|a| a.web);
        convert::instance(i, &self.0.config.apps_domain, web)
    }

    /// Renders what approving a request would send to the node, so that an
    /// app the catalog no longer offers to the tenant, or cannot render for
    /// it, is refused before an instance exists.
    async fn check_renders(
        &self,
        tenant: &TenantName,
        app: &AppName,
        volume: &VolumeRecord,
    ) -> ApiResult<()> {
        let ctx = &self.0;
        let entry = ctx
            .catalog
            .get(app.as_str())
            .ok_or_else(|| ApiError::Conflict(format!("app {app} is no longer in the catalog")))?;
        let t = ctx.store.get_tenant(tenant).await?;
        // The catalog may have changed since the request was made.
        if !entry.allows(t.offer) {
            return Err(ApiError::Policy(format!(
                "{app} is no longer offered to tenants on the {} offer",
                t.offer
            )));
        }
        entry.render(&RenderContext {
            tenant: tenant.clone(),
            uid: t.posix_id,
            gid: t.posix_id,
            port: FIRST_APP_PORT,
            volume_id: volume.id.to_string(),
            volume_mount: mount_path(volume.tenant.as_str(), volume.name.as_str()),
            domain: ctx.config.apps_domain.clone(),
            state: apb::AppState::Running,
            restart_nonce: 0,
            web_login: None,
        })?;
        Ok(())
    }

    /// Finds the instance a request names, checking the caller may read
    /// it; the audit entry gets its tenant.
    async fn resolve(
        &self,
        caller: &Caller,
        InstanceArg { tenant, app }: &InstanceArg,
        audit: &mut AuditScope<'_>,
    ) -> ApiResult<InstanceRecord> {
        audit.tenant = Some(tenant.clone());
        audit.target = format!("app:{tenant}/{app}");
        // Another tenant's users learn nothing, not even whether it exists.
        auth::require_tenant_read(caller, tenant)?;
        Ok(self.0.store.get_instance(tenant, app).await?)
    }

    /// Shared shape of start, stop, restart and remove.
    async fn change(
        &self,
        req: Request<pb::InstanceRef>,
        action: &'static str,
        change: InstanceChange,
    ) -> Result<Response<pb::AppInstance>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            action,
            |r| format!("app:{}", shown(&r.instance)),
            async |caller, r, audit| {
                let arg = InstanceArg::try_from(r)?;
                let i = self.resolve(&caller, &arg, audit).await?;
                match change {
                    InstanceChange::Remove => auth::require_admin(&caller, "removing an app")?,
                    InstanceChange::Start | InstanceChange::Stop | InstanceChange::Restart => {
                        let tenant = ctx.store.get_tenant(&i.tenant).await?;
                        auth::require_tenant_change_on_node(
                            &caller,
                            &tenant,
                            &i.node,
                            TenantChange::Apps,
                        )?;
                        // The node keeps a suspended tenant's apps
                        // stopped: say so rather than accept a start that
                        // does nothing.
                        if change != InstanceChange::Stop {
                            check_apps_may_run(&tenant)
                                .map_err(|e| ApiError::Conflict(e.to_string()))?;
                        }
                    }
                }
                let before = i.state;
                let i = ctx.store.change_instance(&i.tenant, &i.app, change).await?;
                push_nodes(ctx, std::slice::from_ref(&i.node)).await;
                let restart = if change == InstanceChange::Restart {
                    format!(" (restart {})", i.restart_nonce)
                } else {
                    String::new()
                };
                audit.detail = format!(
                    "{}: {} -> {}{restart}",
                    instance_label(&i),
                    before.as_str(),
                    i.state.as_str(),
                );
                Ok(self.instance(i))
            },
        )
        .await
    }
}

#[tonic::async_trait]
impl Apps for AppsApi {
    async fn list_catalog(
        &self,
        req: Request<pb::ListCatalogRequest>,
    ) -> Result<Response<pb::ListCatalogResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "app.catalog",
            |_| "catalog",
            async |caller, _, audit| {
                // Tenant users see what their offer allows; admins everything.
                let offer = if caller.is_admin() {
                    None
                } else {
                    let tenant = auth::own_tenant(&caller)?;
                    audit.tenant = Some(tenant.clone());
                    Some(ctx.store.get_tenant(&tenant).await?.offer)
                };
                Ok(pb::ListCatalogResponse {
                    apps: ctx
                        .catalog
                        .apps()
                        .filter(|a| offer.is_none_or(|o| a.allows(o)))
                        .map(|a| a.to_proto())
                        .collect(),
                })
            },
        )
        .await
    }

    async fn request_app(
        &self,
        req: Request<pb::RequestAppRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "app.request",
            |r| AuditTarget::new(app_target(&r.tenant, &r.app), audit_tenant(&r.tenant)),
            async |caller, r, audit| {
                let r: RequestApp = r.try_into()?;
                auth::require_app_request(&caller, &r.tenant)?;
                let tenant = ctx.store.get_tenant(&r.tenant).await?;
                let app = &r.app;
                let entry = ctx
                    .catalog
                    .get(app.as_str())
                    .ok_or_else(|| StoreError::NotFound {
                        kind: "app",
                        name: format!("{app} (see coloc app catalog)"),
                    })?;
                if !entry.allows(tenant.offer) {
                    return Err(ApiError::Policy(format!(
                        "{app} is not offered to tenants on the {} offer",
                        tenant.offer
                    )));
                }
                // Whether a node exists is for those who may see it: anyone
                // else reads the same answer (no volume of theirs there) for
                // a node that exists and for one that does not.
                if auth::can_see_node(&caller, &r.node) {
                    ctx.store.get_node(&r.node).await?;
                }
                let volumes = ctx
                    .store
                    .list_volumes(VolumeFilter {
                        tenant: Some(r.tenant.clone()),
                        node: Some(r.node.clone()),
                        include_destroyed: false,
                    })
                    .await?;
                let v = pick_volume(&r.tenant, &r.node, r.volume.as_ref(), volumes)?;
                let new = NewAppRequest {
                    tenant: r.tenant,
                    app: r.app,
                    node: r.node,
                    volume_id: v.id,
                    requested_by: caller.user.name.clone(),
                    comment: r.comment,
                };
                let rec = ctx.store.create_app_request(new, ctx.clock.now()).await?;
                audit.detail = format!(
                    "request {}: {} on node {}, volume {}",
                    rec.id, rec.app, rec.node, rec.volume_name
                );
                Ok(convert::app_request(rec))
            },
        )
        .await
    }

    async fn list_requests(
        &self,
        req: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "app.request.list",
            |r| AuditTarget::new("requests", audit_tenant(&r.tenant)),
            async |caller, r, _| {
                let ListRequests { tenant, state } = r.try_into()?;
                let tenant = auth::listing_tenant(&caller, tenant)?;
                let requests = ctx.store.list_app_requests(tenant.as_ref(), state).await?;
                Ok(pb::ListRequestsResponse {
                    requests: requests.into_iter().map(convert::app_request).collect(),
                })
            },
        )
        .await
    }

    async fn get_request(
        &self,
        req: Request<pb::GetRequestRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "app.request.show",
            |r| format!("request:{}", r.id),
            async |caller, r, audit| {
                // Any id is well-formed: an unknown one is not found, and so
                // is another tenant's (numbers are sequential).
                let rec = ctx.store.get_app_request(r.id).await?;
                audit.tenant = Some(rec.tenant.clone());
                auth::unseen(
                    "request",
                    r.id,
                    auth::require_tenant_read(&caller, &rec.tenant),
                )?;
                Ok(convert::app_request(rec))
            },
        )
        .await
    }

    async fn comment_request(
        &self,
        req: Request<pb::CommentRequestRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "app.request.comment",
            |r| format!("request:{}", r.id),
            async |caller, r, audit| {
                let CommentRequest { id, text } = r.try_into()?;
                let rec = ctx.store.get_app_request(id).await?;
                audit.tenant = Some(rec.tenant.clone());
                auth::unseen(
                    "request",
                    id,
                    auth::require_tenant_read(&caller, &rec.tenant),
                )?;
                let comment = CommentRecord {
                    author: caller.user.name.clone(),
                    at_unix: ctx.clock.now(),
                    text,
                };
                let rec = ctx.store.comment_app_request(id, comment).await?;
                audit.detail = format!("{}/{} ({})", rec.tenant, rec.app, rec.state.as_str());
                Ok(convert::app_request(rec))
            },
        )
        .await
    }

    async fn approve_request(
        &self,
        req: Request<pb::DecideRequestRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "app.request.approve",
            |r| format!("request:{}", r.id),
            async |caller, r, audit| {
                let Approval { id, comment } = r.try_into()?;
                let rec = ctx.store.get_app_request(id).await;
                if let Ok(rec) = &rec {
                    audit.tenant = Some(rec.tenant.clone());
                }
                auth::require_admin(&caller, "approving an app request")?;
                let rec = rec?;
                if rec.state == RequestState::Pending {
                    let volume = ctx.store.get_volume(&rec.volume_id).await?;
                    self.check_renders(&rec.tenant, &rec.app, &volume).await?;
                }
                let (rec, instance) = ctx
                    .store
                    .approve_app_request(id, &caller.user.name, &comment, ctx.clock.now())
                    .await?;
                push_nodes(ctx, std::slice::from_ref(&instance.node)).await;
                audit.detail = format!("{}/{}: {}", rec.tenant, rec.app, instance_label(&instance));
                Ok(convert::app_request(rec))
            },
        )
        .await
    }

    async fn reject_request(
        &self,
        req: Request<pb::DecideRequestRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "app.request.reject",
            |r| format!("request:{}", r.id),
            async |caller, r, audit| {
                let Rejection { id, comment } = r.try_into()?;
                if let Ok(rec) = ctx.store.get_app_request(id).await {
                    audit.tenant = Some(rec.tenant.clone());
                }
                auth::require_admin(&caller, "rejecting an app request")?;
                let rec = ctx
                    .store
                    .reject_app_request(id, &caller.user.name, &comment, ctx.clock.now())
                    .await?;
                audit.detail = format!("{}/{} on node {}", rec.tenant, rec.app, rec.node);
                Ok(convert::app_request(rec))
            },
        )
        .await
    }

    async fn list_instances(
        &self,
        req: Request<pb::ListInstancesRequest>,
    ) -> Result<Response<pb::ListInstancesResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "app.list",
            |r| AuditTarget::new("apps", audit_tenant(&r.tenant)),
            async |caller, r, _| {
                let mut filter = InstanceFilter::try_from(r)?;
                filter.tenant = auth::listing_tenant(&caller, filter.tenant)?;
                let instances = ctx.store.list_instances(filter).await?;
                Ok(pb::ListInstancesResponse {
                    instances: instances.into_iter().map(|i| self.instance(i)).collect(),
                })
            },
        )
        .await
    }

    async fn get_instance(
        &self,
        req: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "app.show",
            |r| format!("app:{}", shown(&r.instance)),
            async |caller, r, audit| {
                let arg = InstanceArg::try_from(r)?;
                let i = self.resolve(&caller, &arg, audit).await?;
                Ok(self.instance(i))
            },
        )
        .await
    }

    async fn start_instance(
        &self,
        req: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        self.change(req, "app.start", InstanceChange::Start).await
    }

    async fn stop_instance(
        &self,
        req: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        self.change(req, "app.stop", InstanceChange::Stop).await
    }

    async fn restart_instance(
        &self,
        req: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        self.change(req, "app.restart", InstanceChange::Restart)
            .await
    }

    async fn remove_instance(
        &self,
        req: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        self.change(req, "app.remove", InstanceChange::Remove).await
    }

    async fn get_instance_logs(
        &self,
        req: Request<pb::GetInstanceLogsRequest>,
    ) -> Result<Response<pb::InstanceLogs>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "app.logs",
            |r| format!("app:{}", shown(&r.instance)),
            async |caller, r, audit| {
                let r: InstanceLogs = r.try_into()?;
                let i = self.resolve(&caller, &r.instance, audit).await?;
                let logs = ctx
                    .sessions
                    .app_logs(&i.node, &i.tenant, &i.app, r.lines, &r.after_cursor)
                    .await
                    .map_err(|e| match e {
                        ApiError::NodeOffline(node) => ApiError::Unavailable(format!(
                            "node {node} is not connected: the logs of {}/{} are read on the \
                         node itself; try again once its agent is back",
                            i.tenant, i.app
                        )),
                        other => other,
                    })?;
                // The agent is trusted with the journal, not with the count.
                // Its answer fitted the session's message limit, so what is
                // passed on fits the caller's.
                let skip = logs.lines.len().saturating_sub(r.lines as usize);
                Ok(pb::InstanceLogs {
                    lines: logs.lines.into_iter().skip(skip).collect(),
                    cursor: logs.cursor,
                    truncated: logs.truncated,
                })
            },
        )
        .await
    }

    async fn set_instance_password(
        &self,
        req: Request<pb::SetInstancePasswordRequest>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "app.password.set",
            |r| format!("app:{}", shown(&r.instance)),
            async |caller, r, audit| {
                let SetPassword { instance, login } = r.try_into()?;
                let i = self.resolve(&caller, &instance, audit).await?;
                auth::require_tenant_operator(&caller, &i.tenant, "set an app's password")?;
                let web = ctx.catalog.get(i.app.as_str()).map(|a| a.web);
                match web {
                    Some(WebProtection::Proxy) => {}
                    Some(WebProtection::Own) => {
                        return Err(ApiError::Conflict(format!(
                            "{} asks for logins of its own: the proxy does not ask for a \
                             password in front of it",
                            i.app
                        )));
                    }
                    Some(WebProtection::Public) => {
                        return Err(ApiError::Conflict(format!(
                            "{} is public by design (a website): the proxy asks for no password",
                            i.app
                        )));
                    }
                    None => {
                        return Err(ApiError::Conflict(format!(
                            "app {} is no longer in the catalog",
                            i.app
                        )));
                    }
                }
                let replaced = i.web_login.is_some();
                let i = ctx
                    .store
                    .set_instance_web_login(&i.tenant, &i.app, login)
                    .await?;
                push_nodes(ctx, std::slice::from_ref(&i.node)).await;
                let user = i
                    .web_login
                    .as_ref()
                    .map(|l| l.user.to_string())
                    .unwrap_or_default();
                audit.detail = format!(
                    "{}: proxy login for user {user} {} (bcrypt hash only)",
                    instance_label(&i),
                    if replaced { "replaced" } else { "set" },
                );
                Ok(self.instance(i))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_targets_escape_control_characters() {
        assert_eq!(
            app_target("asso-a", "x\nExecStart"),
            "app:asso-a/x\\nExecStart"
        );
    }
}

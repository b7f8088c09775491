//! Apps (docs/APPS.md): the catalog, install requests with their
//! discussion, and the instances approved requests create.
//!
//! A tenant's users ask, the cooperative's admins decide; approval creates
//! the instance and bumps its node's generation in one store transaction,
//! and the node gets the rendered unit through its desired configuration
//! ([`crate::agents::desired_of`]). Every string of a request (tenant, app,
//! node and volume names, comments, journal cursors) is validated here
//! before anything is stored or sent to a node: a value that could end up
//! in a unit file, a path or a host name is a strict name, free text is
//! bounded and free of control characters.

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::apps_server::Apps;
use coloc_proto::domain::{InvalidInput, NodeName, TenantName, check_text};
use coloc_proto::storage::{VolumeName, mount_path};
use tonic::{Request, Response, Status};

use super::convert;
use crate::agents::push_nodes;
use crate::auth::{self, Caller, TenantChange};
use crate::catalog::RenderContext;
use crate::context::{AuditScope, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::store::{
    AppName, FIRST_APP_PORT, InstanceChange, InstanceFilter, InstanceRecord, NewAppRequest,
    RequestState, StoreError, VolumeFilter, VolumeLifecycle, VolumeRecord,
};

/// Longest comment of a request's discussion.
pub const MAX_COMMENT_CHARS: usize = 2000;
/// Journal lines returned when the caller asks for 0.
pub const DEFAULT_LOG_LINES: u32 = 100;
/// Most journal lines one call returns.
pub const MAX_LOG_LINES: u32 = 1000;
/// Longest journal cursor accepted (systemd's are about 150 characters).
const MAX_CURSOR_LEN: usize = 1024;
/// The volume picked when a tenant has several on the node and names none.
const DEFAULT_VOLUME: &str = "data";

#[derive(Debug, Clone)]
pub struct AppsApi(pub Ctx);

/// What the caller wrote, cut short and with control characters masked,
/// for an audit target: a crafted value must not forge a line there either.
fn shown(text: &str) -> String {
    text.chars()
        .take(100)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn app_target(tenant: &str, app: &str) -> String {
    format!("app:{}/{}", shown(tenant), shown(app))
}

/// An instance reference: "<tenant>/<app>".
pub fn parse_instance(text: &str) -> Result<(TenantName, AppName), InvalidInput> {
    let (tenant, app) = text.split_once('/').ok_or_else(|| {
        InvalidInput::field(
            "instance",
            "must be \"<tenant>/<app>\", e.g. asso-x/radicale",
        )
    })?;
    Ok((TenantName::new(tenant)?, AppName::new(app)?))
}

/// A comment's text: bounded, no control characters, not blank when
/// `required`. Returned trimmed.
fn comment_text(field: &'static str, text: &str, required: bool) -> Result<String, InvalidInput> {
    check_text(field, text, MAX_COMMENT_CHARS)?;
    let text = text.trim();
    if required && text.is_empty() {
        return Err(InvalidInput::field(field, "must not be empty"));
    }
    Ok(text.to_owned())
}

/// How many journal lines: 0 means the default.
fn log_lines(lines: u32) -> Result<u32, InvalidInput> {
    match lines {
        0 => Ok(DEFAULT_LOG_LINES),
        1..=MAX_LOG_LINES => Ok(lines),
        _ => Err(InvalidInput::field(
            "lines",
            format!("{lines} is more than {MAX_LOG_LINES}"),
        )),
    }
}

/// A journal cursor ("s=...;i=...;b=...") goes to `journalctl
/// --after-cursor` on the node: printable ASCII without spaces only.
fn check_cursor(cursor: &str) -> Result<(), InvalidInput> {
    if cursor.len() > MAX_CURSOR_LEN {
        return Err(InvalidInput::field(
            "after_cursor",
            format!("longer than {MAX_CURSOR_LEN} characters"),
        ));
    }
    if !cursor.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidInput::field(
            "after_cursor",
            "is not a journal cursor (printable ASCII without spaces)",
        ));
    }
    Ok(())
}

/// The `volume` of a request: "<name>" or "<tenant>/<name>" of that
/// tenant; empty for the default.
fn requested_volume(tenant: &TenantName, text: &str) -> Result<Option<VolumeName>, InvalidInput> {
    match text.split_once('/') {
        None if text.is_empty() => Ok(None),
        None => Ok(Some(VolumeName::new(text)?)),
        Some((t, name)) => {
            let t = TenantName::new(t)?;
            if &t != tenant {
                return Err(InvalidInput::field(
                    "volume",
                    format!("{text:?} is a volume of tenant {t}, not {tenant}"),
                ));
            }
            Ok(Some(VolumeName::new(name)?))
        }
    }
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

/// A non-admin's tenant, for listings scoped to it.
fn own_tenant(caller: &Caller) -> ApiResult<TenantName> {
    caller.tenant().cloned().ok_or_else(|| {
        ApiError::PermissionDenied(format!("user {} belongs to no tenant", caller.user.name))
    })
}

fn request_state_filter(value: i32) -> Result<Option<RequestState>, InvalidInput> {
    match pb::RequestState::try_from(value) {
        Ok(pb::RequestState::Unspecified) => Ok(None),
        Ok(pb::RequestState::Pending) => Ok(Some(RequestState::Pending)),
        Ok(pb::RequestState::Approved) => Ok(Some(RequestState::Approved)),
        Ok(pb::RequestState::Rejected) => Ok(Some(RequestState::Rejected)),
        Err(_) => Err(InvalidInput::field(
            "state",
            "must be pending, approved or rejected",
        )),
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
        convert::instance(i, &self.0.config.apps_domain)
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
        })?;
        Ok(())
    }

    /// Finds the instance a request names, checking the caller may read
    /// it; the audit entry gets its tenant.
    async fn resolve(
        &self,
        caller: &Caller,
        instance: &str,
        audit: &mut AuditScope<'_>,
    ) -> ApiResult<InstanceRecord> {
        let (tenant, app) = parse_instance(instance)?;
        audit.tenant = Some(tenant.clone());
        audit.target = format!("app:{tenant}/{app}");
        // Another tenant's users learn nothing, not even whether it exists.
        auth::require_tenant_read(caller, &tenant)?;
        Ok(self.0.store.get_instance(&tenant, &app).await?)
    }

    /// Shared shape of start, stop, restart and remove.
    async fn change(
        &self,
        req: Request<pb::InstanceRef>,
        action: &'static str,
        change: InstanceChange,
    ) -> Result<Response<pb::AppInstance>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(&caller, action, format!("app:{}", shown(&r.instance)));
        let result = async {
            let caller = caller?;
            let i = self.resolve(&caller, &r.instance, &mut audit).await?;
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
                }
            }
            let before = i.state;
            let i = ctx.store.change_instance(&i.tenant, &i.app, change).await?;
            push_nodes(ctx, std::slice::from_ref(&i.node)).await;
            audit.detail = format!(
                "{}: {} -> {}{}",
                instance_label(&i),
                before.as_str(),
                i.state.as_str(),
                if change == InstanceChange::Restart {
                    format!(" (restart {})", i.restart_nonce)
                } else {
                    String::new()
                }
            );
            Ok(self.instance(i))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }
}

#[tonic::async_trait]
impl Apps for AppsApi {
    async fn list_catalog(
        &self,
        req: Request<pb::ListCatalogRequest>,
    ) -> Result<Response<pb::ListCatalogResponse>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let mut audit = ctx.audit_read(&caller, "app.catalog", "catalog");
        let result = async {
            let caller = caller?;
            // Tenant users see what their offer allows; admins everything.
            let offer = if caller.is_admin() {
                None
            } else {
                let tenant = own_tenant(&caller)?;
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
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn request_app(
        &self,
        req: Request<pb::RequestAppRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(&caller, "app.request", app_target(&r.tenant, &r.app));
        audit.tenant = TenantName::new(r.tenant.clone()).ok();
        let result = async {
            let caller = caller?;
            let tenant = TenantName::new(r.tenant)?;
            let app = AppName::new(r.app)?;
            let node = NodeName::new(r.node)?;
            let volume = requested_volume(&tenant, &r.volume)?;
            let comment = comment_text("comment", &r.comment, false)?;
            auth::require_app_request(&caller, &tenant)?;
            let tenant_rec = ctx.store.get_tenant(&tenant).await?;
            let entry = ctx
                .catalog
                .get(app.as_str())
                .ok_or_else(|| StoreError::NotFound {
                    kind: "app",
                    name: format!("{app} (see coloc app catalog)"),
                })?;
            if !entry.allows(tenant_rec.offer) {
                return Err(ApiError::Policy(format!(
                    "{app} is not offered to tenants on the {} offer",
                    tenant_rec.offer
                )));
            }
            ctx.store.get_node(&node).await?;
            let volumes = ctx
                .store
                .list_volumes(VolumeFilter {
                    tenant: Some(tenant.clone()),
                    node: Some(node.clone()),
                    include_destroyed: false,
                })
                .await?;
            let v = pick_volume(&tenant, &node, volume.as_ref(), volumes)?;
            let rec = ctx
                .store
                .create_app_request(
                    NewAppRequest {
                        tenant,
                        app,
                        node,
                        volume_id: v.id.clone(),
                        requested_by: caller.user.name.clone(),
                        comment,
                    },
                    ctx.clock.now(),
                )
                .await?;
            audit.detail = format!(
                "request {}: {} on node {}, volume {}",
                rec.id, rec.app, rec.node, rec.volume_name
            );
            Ok(convert::app_request(rec))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn list_requests(
        &self,
        req: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit_read(&caller, "app.request.list", "requests");
        audit.tenant = TenantName::new(r.tenant.clone()).ok();
        let result = async {
            let caller = caller?;
            let mut tenant = match r.tenant.as_str() {
                "" => None,
                t => Some(TenantName::new(t)?),
            };
            let state = request_state_filter(r.state)?;
            if !caller.is_admin() {
                if let Some(t) = &tenant {
                    auth::require_tenant_read(&caller, t)?;
                }
                tenant = Some(own_tenant(&caller)?);
            }
            let requests = ctx.store.list_app_requests(tenant.as_ref(), state).await?;
            Ok(pb::ListRequestsResponse {
                requests: requests.into_iter().map(convert::app_request).collect(),
            })
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn get_request(
        &self,
        req: Request<pb::GetRequestRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let id = req.get_ref().id;
        let mut audit = ctx.audit_read(&caller, "app.request.show", format!("request:{id}"));
        let result = async {
            let caller = caller?;
            let rec = ctx.store.get_app_request(id).await?;
            audit.tenant = Some(rec.tenant.clone());
            auth::require_tenant_read(&caller, &rec.tenant)?;
            Ok(convert::app_request(rec))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn comment_request(
        &self,
        req: Request<pb::CommentRequestRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(&caller, "app.request.comment", format!("request:{}", r.id));
        let result = async {
            let caller = caller?;
            let text = comment_text("text", &r.text, true)?;
            let rec = ctx.store.get_app_request(r.id).await?;
            audit.tenant = Some(rec.tenant.clone());
            auth::require_tenant_read(&caller, &rec.tenant)?;
            let rec = ctx
                .store
                .comment_app_request(
                    r.id,
                    crate::store::CommentRecord {
                        author: caller.user.name.clone(),
                        at_unix: ctx.clock.now(),
                        text,
                    },
                )
                .await?;
            audit.detail = format!("{}/{} ({})", rec.tenant, rec.app, rec.state.as_str());
            Ok(convert::app_request(rec))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn approve_request(
        &self,
        req: Request<pb::DecideRequestRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(&caller, "app.request.approve", format!("request:{}", r.id));
        let result = async {
            let caller = caller?;
            let comment = comment_text("comment", &r.comment, false)?;
            let rec = ctx.store.get_app_request(r.id).await;
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
                .approve_app_request(r.id, &caller.user.name, &comment, ctx.clock.now())
                .await?;
            push_nodes(ctx, std::slice::from_ref(&instance.node)).await;
            audit.detail = format!("{}/{}: {}", rec.tenant, rec.app, instance_label(&instance));
            Ok(convert::app_request(rec))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn reject_request(
        &self,
        req: Request<pb::DecideRequestRequest>,
    ) -> Result<Response<pb::AppRequest>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(&caller, "app.request.reject", format!("request:{}", r.id));
        let result = async {
            let caller = caller?;
            let comment = comment_text("comment", &r.comment, true)?;
            if let Ok(rec) = ctx.store.get_app_request(r.id).await {
                audit.tenant = Some(rec.tenant.clone());
            }
            auth::require_admin(&caller, "rejecting an app request")?;
            let rec = ctx
                .store
                .reject_app_request(r.id, &caller.user.name, &comment, ctx.clock.now())
                .await?;
            audit.detail = format!("{}/{} on node {}", rec.tenant, rec.app, rec.node);
            Ok(convert::app_request(rec))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn list_instances(
        &self,
        req: Request<pb::ListInstancesRequest>,
    ) -> Result<Response<pb::ListInstancesResponse>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit_read(&caller, "app.list", "apps");
        audit.tenant = TenantName::new(r.tenant.clone()).ok();
        let result = async {
            let caller = caller?;
            let mut filter = InstanceFilter {
                tenant: match r.tenant.as_str() {
                    "" => None,
                    t => Some(TenantName::new(t)?),
                },
                node: match r.node.as_str() {
                    "" => None,
                    n => Some(NodeName::new(n)?),
                },
            };
            if !caller.is_admin() {
                if let Some(t) = &filter.tenant {
                    auth::require_tenant_read(&caller, t)?;
                }
                filter.tenant = Some(own_tenant(&caller)?);
            }
            let instances = ctx.store.list_instances(filter).await?;
            Ok(pb::ListInstancesResponse {
                instances: instances.into_iter().map(|i| self.instance(i)).collect(),
            })
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn get_instance(
        &self,
        req: Request<pb::InstanceRef>,
    ) -> Result<Response<pb::AppInstance>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit_read(&caller, "app.show", format!("app:{}", shown(&r.instance)));
        let result = async {
            let caller = caller?;
            let i = self.resolve(&caller, &r.instance, &mut audit).await?;
            Ok(self.instance(i))
        }
        .await;
        audit.finish(result).await.map(Response::new)
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
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit_read(&caller, "app.logs", format!("app:{}", shown(&r.instance)));
        let result = async {
            let caller = caller?;
            let lines = log_lines(r.lines)?;
            check_cursor(&r.after_cursor)?;
            let i = self.resolve(&caller, &r.instance, &mut audit).await?;
            let logs = ctx
                .sessions
                .app_logs(&i.node, &i.tenant, &i.app, lines, &r.after_cursor)
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
            let skip = logs.lines.len().saturating_sub(lines as usize);
            Ok(pb::InstanceLogs {
                lines: logs.lines.into_iter().skip(skip).collect(),
                cursor: logs.cursor,
            })
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_refs_are_tenant_slash_app() {
        let (t, a) = parse_instance("asso-a/radicale").unwrap();
        assert_eq!((t.as_str(), a.as_str()), ("asso-a", "radicale"));
        for bad in [
            "",
            "radicale",
            "asso-a/",
            "/radicale",
            "asso-a/radicale/x",
            "asso-a/../x",
            "../..",
            "a;reboot",
            "asso-a/a;reboot",
            "asso-a/x\nExecStart=/bin/sh",
            "asso-a/Radicale",
            "asso-a/my-app",
            "Asso-a/radicale",
        ] {
            assert!(parse_instance(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn comments_are_bounded_single_line_text() {
        assert_eq!(comment_text("c", "  hello  ", true).unwrap(), "hello");
        assert_eq!(comment_text("c", "", false).unwrap(), "");
        assert!(comment_text("c", "   ", true).is_err());
        assert!(comment_text("c", "x\nExecStart=/bin/sh", false).is_err());
        assert!(comment_text("c", "bell\u{7}", false).is_err());
        assert!(comment_text("c", &"é".repeat(MAX_COMMENT_CHARS), true).is_ok());
        assert!(comment_text("c", &"é".repeat(MAX_COMMENT_CHARS + 1), true).is_err());
    }

    #[test]
    fn log_lines_and_cursors_are_bounded() {
        assert_eq!(log_lines(0).unwrap(), DEFAULT_LOG_LINES);
        assert_eq!(log_lines(1).unwrap(), 1);
        assert_eq!(log_lines(MAX_LOG_LINES).unwrap(), MAX_LOG_LINES);
        assert!(log_lines(MAX_LOG_LINES + 1).is_err());
        assert!(check_cursor("").is_ok());
        assert!(check_cursor("s=0b1c;i=2a;b=9f;m=1c;t=5f;x=77").is_ok());
        assert!(check_cursor("s=1 --since=yesterday").is_err());
        assert!(check_cursor("x\n").is_err());
        assert!(check_cursor(&"a".repeat(MAX_CURSOR_LEN + 1)).is_err());
    }

    #[test]
    fn requested_volumes_belong_to_the_tenant() {
        let t = TenantName::new("asso-a").unwrap();
        assert_eq!(requested_volume(&t, "").unwrap(), None);
        assert_eq!(
            requested_volume(&t, "data").unwrap().unwrap().as_str(),
            "data"
        );
        assert_eq!(
            requested_volume(&t, "asso-a/web")
                .unwrap()
                .unwrap()
                .as_str(),
            "web"
        );
        for bad in ["asso-b/data", "../..", "a;reboot", "data/x", "x\ny"] {
            assert!(requested_volume(&t, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn audit_targets_mask_control_characters() {
        assert_eq!(
            app_target("asso-a", "x\nExecStart"),
            "app:asso-a/x?ExecStart"
        );
        assert_eq!(shown(&"a".repeat(300)).len(), 100);
    }
}

//! Associations and their people: tenants, users with their roles, node
//! grants, and whether they may sign in at all. Their credentials (tokens,
//! certificates) are [`super::credentials`]'.

use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::tenants_server::Tenants;
use coloc_proto::controller::v1::users_server::Users;
use coloc_proto::domain::{InvalidInput, NodeName, Role};
use tonic::{Request, Response, Status};

use super::wire::tenancy::{
    CreateTenant, CreateUser, GetTenant, ListUsers, NodeGrant, RenewMembership, ResumeTenant,
    SetUserRole, SuspendTenant, UserRef,
};
use super::wire::{audit_tenant, shown};
use super::{convert, credentials};
use crate::agents::push_nodes;
use crate::auth;
use crate::context::{AuditTarget, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::rules::users::operator_offer;
use crate::store::{
    DEFAULT_VOLUME_GRACE_DAYS, MembershipPhase, Suspension, TenantRecord, UserRecord,
};
use crate::time::{date_of, day_of};

#[derive(Debug, Clone)]
pub struct TenantsApi(pub Ctx);

#[tonic::async_trait]
impl Tenants for TenantsApi {
    async fn create_tenant(
        &self,
        req: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "tenant.create",
            |r| AuditTarget::new(format!("tenant:{}", shown(&r.name)), audit_tenant(&r.name)),
            async |caller, r, _| {
                auth::require_admin(&caller, "creating a tenant")?;
                let r: CreateTenant = r.try_into()?;
                let now = ctx.clock.now();
                not_past(r.membership_expires, now)?;
                let rec = TenantRecord {
                    name: r.name,
                    display_name: r.display_name,
                    offer: r.offer,
                    membership_expires: r.membership_expires,
                    membership_noted: MembershipPhase::Current,
                    suspension: None,
                    created_unix: now,
                    storage_quota_bytes: ctx.config.default_tenant_quota_bytes,
                    volume_grace_days: DEFAULT_VOLUME_GRACE_DAYS,
                    // Both filled in by the store.
                    posix_id: 0,
                    storage_used_bytes: 0,
                };
                let rec = ctx.store.create_tenant(rec).await?;
                Ok(tenant_view(ctx, rec))
            },
        )
        .await
    }

    async fn list_tenants(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "tenant.list",
            |_| "tenants",
            async |caller, _, _| {
                let tenants = ctx.store.list_tenants().await?;
                Ok(pb::ListTenantsResponse {
                    tenants: tenants
                        .into_iter()
                        .filter(|t| caller.is_admin() || caller.tenant() == Some(&t.name))
                        .map(|t| tenant_view(ctx, t))
                        .collect(),
                })
            },
        )
        .await
    }

    async fn get_tenant(
        &self,
        req: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "tenant.show",
            |r| AuditTarget::new(format!("tenant:{}", shown(&r.name)), audit_tenant(&r.name)),
            async |caller, r, _| {
                let GetTenant { name } = r.try_into()?;
                auth::require_tenant_read(&caller, &name)?;
                Ok(tenant_view(ctx, ctx.store.get_tenant(&name).await?))
            },
        )
        .await
    }

    async fn renew_membership(
        &self,
        req: Request<pb::RenewMembershipRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "tenant.renew",
            |r| AuditTarget::new(format!("tenant:{}", shown(&r.name)), audit_tenant(&r.name)),
            async |caller, r, audit| {
                auth::require_admin(&caller, "renewing a membership")?;
                let r: RenewMembership = r.try_into()?;
                not_past(r.membership_expires, ctx.clock.now())?;
                let before = ctx.store.get_tenant(&r.name).await?;
                let rec = ctx
                    .store
                    .renew_membership(&r.name, r.membership_expires)
                    .await?;
                audit.detail = format!(
                    "membership paid until {} (was {})",
                    rec.membership_expires, before.membership_expires
                );
                Ok(tenant_view(ctx, rec))
            },
        )
        .await
    }

    async fn suspend_tenant(
        &self,
        req: Request<pb::SuspendTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "tenant.suspend",
            |r| AuditTarget::new(format!("tenant:{}", shown(&r.name)), audit_tenant(&r.name)),
            async |caller, r, audit| {
                auth::require_admin(&caller, "suspending a tenant")?;
                let r: SuspendTenant = r.try_into()?;
                let suspension = Suspension {
                    since_unix: ctx.clock.now(),
                    by: caller.user.name.clone(),
                    reason: r.reason,
                };
                let (rec, nodes) = ctx.store.set_suspension(&r.name, Some(suspension)).await?;
                push_nodes(ctx, &nodes).await;
                audit.detail = suspension_detail(&rec, &nodes, "stopped");
                Ok(tenant_view(ctx, rec))
            },
        )
        .await
    }

    async fn resume_tenant(
        &self,
        req: Request<pb::ResumeTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "tenant.resume",
            |r| AuditTarget::new(format!("tenant:{}", shown(&r.name)), audit_tenant(&r.name)),
            async |caller, r, audit| {
                auth::require_admin(&caller, "resuming a tenant")?;
                let ResumeTenant { name } = r.try_into()?;
                let (rec, nodes) = ctx.store.set_suspension(&name, None).await?;
                push_nodes(ctx, &nodes).await;
                audit.detail = suspension_detail(&rec, &nodes, "started again");
                Ok(tenant_view(ctx, rec))
            },
        )
        .await
    }
}

/// Refuses a membership that would already be over.
fn not_past(expires: time::Date, now: i64) -> ApiResult<()> {
    if expires < day_of(now) {
        return Err(
            InvalidInput::field("membership expiry", format!("{expires} is in the past")).into(),
        );
    }
    Ok(())
}

/// The audit detail of a suspension or a resumption: what the nodes were
/// told, or that nothing changed.
fn suspension_detail(rec: &TenantRecord, nodes: &[NodeName], apps: &str) -> String {
    let names: Vec<&str> = nodes.iter().map(NodeName::as_str).collect();
    let on_nodes = if names.is_empty() {
        "no node hosts its apps".to_string()
    } else {
        format!("its apps are {apps} on nodes {}", names.join(", "))
    };
    match &rec.suspension {
        Some(s) => format!(
            "suspended since {} by {} ({}); {on_nodes}",
            date_of(s.since_unix),
            s.by,
            s.reason
        ),
        None => format!("not suspended; {on_nodes}"),
    }
}

/// A tenant as the API shows it, with its membership today.
pub(super) fn tenant_view(ctx: &Ctx, rec: TenantRecord) -> pb::Tenant {
    convert::tenant(rec, ctx.config.membership_grace_days, ctx.clock.now())
}

#[derive(Debug, Clone)]
pub struct UsersApi(pub Ctx);

impl UsersApi {
    async fn grant(
        &self,
        req: Request<pb::GrantNodeRequest>,
        grant: bool,
    ) -> Result<Response<pb::User>, Status> {
        let ctx = &self.0;
        let action = if grant {
            "user.grant"
        } else {
            "user.revoke-grant"
        };
        ctx.mutation(
            req,
            action,
            |r| format!("user:{}", shown(&r.user)),
            async |caller, r, audit| {
                audit.detail = format!("node {}", shown(&r.node));
                auth::require_admin(&caller, "granting node rights")?;
                let NodeGrant { user, node } = r.try_into()?;
                let target = ctx.store.get_user(&user).await?;
                if grant && target.role != Role::Operator {
                    return Err(ApiError::Conflict(format!(
                        "user {user} is a {}; only operators hold node grants",
                        target.role
                    )));
                }
                let updated = if grant {
                    ctx.store.grant_node(&user, &node).await?
                } else {
                    ctx.store.revoke_node_grant(&user, &node).await?
                };
                audit.tenant = updated.tenant.clone();
                Ok(convert::user(updated))
            },
        )
        .await
    }
}

impl UsersApi {
    /// `DisableUser` (every credential refused from the next call on) and
    /// `EnableUser`.
    async fn set_disabled(
        &self,
        req: Request<pb::UserRef>,
        disable: bool,
    ) -> Result<Response<pb::User>, Status> {
        let ctx = &self.0;
        let action = if disable {
            "user.disable"
        } else {
            "user.enable"
        };
        ctx.mutation(
            req,
            action,
            |r| format!("user:{}", shown(&r.name)),
            async |caller, r, audit| {
                auth::require_admin(&caller, "disabling or enabling a user")?;
                let UserRef { name } = r.try_into()?;
                audit.tenant = ctx.store.get_user(&name).await?.tenant;
                let at = disable.then(|| ctx.clock.now());
                let user = ctx.store.set_user_disabled(&name, at).await?;
                Ok(convert::user(user))
            },
        )
        .await
    }
}

#[tonic::async_trait]
impl Users for UsersApi {
    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "user.create",
            |r| AuditTarget::new(format!("user:{}", shown(&r.name)), audit_tenant(&r.tenant)),
            async |caller, r, _| {
                auth::require_admin(&caller, "creating a user")?;
                let r: CreateUser = r.try_into()?;
                if let Some(t) = &r.tenant {
                    let t = ctx.store.get_tenant(t).await?;
                    operator_offer(r.role, &t).map_err(|e| ApiError::Policy(e.to_string()))?;
                }
                let rec = UserRecord {
                    name: r.name,
                    tenant: r.tenant,
                    role: r.role,
                    display_name: r.display_name,
                    created_unix: ctx.clock.now(),
                    node_grants: Vec::new(),
                    disabled_unix: None,
                };
                ctx.store.create_user(rec.clone()).await?;
                Ok(convert::user(rec))
            },
        )
        .await
    }

    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "user.list",
            |r| {
                AuditTarget::new(
                    format!("tenant:{}", shown(&r.tenant)),
                    audit_tenant(&r.tenant),
                )
            },
            async |caller, r, _| {
                let ListUsers { tenant } = r.try_into()?;
                let tenant = auth::listing_tenant(&caller, tenant)?;
                let users = ctx.store.list_users(tenant.as_ref()).await?;
                Ok(pb::ListUsersResponse {
                    users: users.into_iter().map(convert::user).collect(),
                })
            },
        )
        .await
    }

    async fn grant_node(
        &self,
        req: Request<pb::GrantNodeRequest>,
    ) -> Result<Response<pb::User>, Status> {
        self.grant(req, true).await
    }

    async fn revoke_node_grant(
        &self,
        req: Request<pb::GrantNodeRequest>,
    ) -> Result<Response<pb::User>, Status> {
        self.grant(req, false).await
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "user.whoami",
            |_| "self",
            async |caller, _, _| Ok(convert::user(caller.user)),
        )
        .await
    }

    async fn issue_user_certificate(
        &self,
        req: Request<pb::IssueUserCertificateRequest>,
    ) -> Result<Response<pb::IssueUserCertificateResponse>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "user.cert.issue",
            |r| format!("user:{}", shown(&r.user)),
            async |caller, r, audit| {
                credentials::issue_user_certificate(ctx, caller, r, audit).await
            },
        )
        .await
    }

    async fn list_user_certificates(
        &self,
        req: Request<pb::ListUserCertificatesRequest>,
    ) -> Result<Response<pb::ListUserCertificatesResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "user.cert.list",
            |r| format!("user:{}", shown(&r.user)),
            async |caller, r, _| credentials::list_user_certificates(ctx, caller, r).await,
        )
        .await
    }

    async fn revoke_user_certificate(
        &self,
        req: Request<pb::RevokeUserCertificateRequest>,
    ) -> Result<Response<pb::UserCertificate>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "user.cert.revoke",
            |r| format!("certificate:{}", shown(&r.serial)),
            async |caller, r, audit| {
                credentials::revoke_user_certificate(ctx, caller, r, audit).await
            },
        )
        .await
    }

    async fn set_user_role(
        &self,
        req: Request<pb::SetUserRoleRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "user.set-role",
            |r| format!("user:{}", shown(&r.user)),
            async |caller, r, audit| {
                auth::require_admin(&caller, "changing a user's role")?;
                let SetUserRole { user, change } = r.try_into()?;
                let before = ctx.store.get_user(&user).await?;
                audit.tenant = change.tenant.clone().or(before.tenant.clone());
                audit.detail = format!("from {} to {}", before.role, change.role);
                let after = ctx.store.set_user_role(&user, change).await?;
                audit.tenant = after.tenant.clone().or(before.tenant);
                let dropped: Vec<String> = before
                    .node_grants
                    .iter()
                    .filter(|n| !after.node_grants.contains(n))
                    .map(ToString::to_string)
                    .collect();
                if !dropped.is_empty() {
                    audit.detail += &format!("; node grants dropped: {}", dropped.join(", "));
                }
                Ok(convert::user(after))
            },
        )
        .await
    }

    async fn disable_user(&self, req: Request<pb::UserRef>) -> Result<Response<pb::User>, Status> {
        self.set_disabled(req, true).await
    }

    async fn enable_user(&self, req: Request<pb::UserRef>) -> Result<Response<pb::User>, Status> {
        self.set_disabled(req, false).await
    }

    async fn delete_user(
        &self,
        req: Request<pb::UserRef>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "user.delete",
            |r| format!("user:{}", shown(&r.name)),
            async |caller, r, audit| {
                auth::require_admin(&caller, "deleting a user")?;
                let UserRef { name } = r.try_into()?;
                audit.tenant = ctx.store.get_user(&name).await?.tenant;
                let gone = ctx.store.delete_user(&name, ctx.clock.now()).await?;
                audit.detail = format!(
                    "{} role, {} credentials deleted, {} credentials of other users minted \
                     from them revoked",
                    gone.user.role,
                    gone.deleted.len(),
                    gone.also_revoked.len()
                );
                Ok(pb::DeleteUserResponse {
                    user: Some(convert::user(gone.user)),
                    deleted: convert::credentials(gone.deleted),
                    also_revoked: convert::credentials(gone.also_revoked),
                })
            },
        )
        .await
    }
}

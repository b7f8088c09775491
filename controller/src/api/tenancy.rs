//! Associations, their people and their credentials.

use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::tenants_server::Tenants;
use coloc_proto::controller::v1::tokens_server::Tokens;
use coloc_proto::controller::v1::users_server::Users;
use coloc_proto::domain::{InvalidInput, NodeName, Offer, Role};
use tonic::{Request, Response, Status};

use super::convert;
use super::wire::tenancy::{
    CreateTenant, CreateToken, CreateUser, GetTenant, IssueUserCertificate, ListTokens, ListUsers,
    NodeGrant, RenewMembership, ResumeTenant, RevokeToken, SuspendTenant,
};
use super::wire::{audit_tenant, shown};
use crate::agents::push_nodes;
use crate::auth::{self, API_TOKEN_PREFIX};
use crate::context::{AuditTarget, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::store::{
    ApiTokenRecord, DEFAULT_VOLUME_GRACE_DAYS, MembershipPhase, Suspension, TenantRecord,
    UserCertRecord, UserRecord,
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
                    if r.role == Role::Operator && t.offer != Offer::Participatif {
                        return Err(ApiError::Policy(format!(
                            "tenant {} has the {} offer; operators exist only in participatif \
                         tenants",
                            t.name, t.offer
                        )));
                    }
                }
                let rec = UserRecord {
                    name: r.name,
                    tenant: r.tenant,
                    role: r.role,
                    display_name: r.display_name,
                    created_unix: ctx.clock.now(),
                    node_grants: Vec::new(),
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
                let r: IssueUserCertificate = r.try_into()?;
                let user = r.user.unwrap_or_else(|| caller.user.name.clone());
                auth::require_self_or_admin(&caller, &user)?;
                let rec = ctx.store.get_user(&user).await?;
                let now = ctx.clock.now();
                let ttl = r.ttl_secs as i64;
                let issued = ctx
                    .ca
                    .sign_client_csr(&r.csr_pem, user.as_str(), "user", now, ttl)?;
                ctx.store
                    .add_user_cert(UserCertRecord {
                        fingerprint: issued.fingerprint.clone(),
                        user,
                        created_unix: now,
                        expires_unix: issued.not_after_unix,
                    })
                    .await?;
                audit.tenant = rec.tenant;
                audit.detail = format!("certificate {}", issued.fingerprint);
                Ok(pb::IssueUserCertificateResponse {
                    certificate_pem: issued.pem,
                    ca_certificate_pem: ctx.ca.cert_pem().to_string(),
                    fingerprint: issued.fingerprint,
                    expires_unix: issued.not_after_unix,
                })
            },
        )
        .await
    }
}

#[derive(Debug, Clone)]
pub struct TokensApi(pub Ctx);

#[tonic::async_trait]
impl Tokens for TokensApi {
    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::ApiToken>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "token.create",
            |r| format!("user:{}", shown(&r.user)),
            async |caller, r, audit| {
                let r: CreateToken = r.try_into()?;
                let user = r.user.unwrap_or_else(|| caller.user.name.clone());
                auth::require_self_or_admin(&caller, &user)?;
                let owner = ctx.store.get_user(&user).await?;
                let (secret, id) = auth::new_secret(API_TOKEN_PREFIX, "tok-");
                let now = ctx.clock.now();
                let rec = ApiTokenRecord {
                    id,
                    user,
                    description: r.description,
                    secret_hash: auth::hash_secret(&secret),
                    created_unix: now,
                    expires_unix: now + r.ttl_secs as i64,
                    revoked_unix: None,
                };
                ctx.store.create_api_token(rec.clone()).await?;
                let mut out = convert::api_token(rec);
                out.secret = secret;
                audit.tenant = owner.tenant;
                audit.target = format!("token:{}", out.id);
                audit.detail = format!("for user {}", out.user);
                Ok(out)
            },
        )
        .await
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "token.list",
            |r| format!("user:{}", shown(&r.user)),
            async |caller, r, _| {
                let filter = match ListTokens::try_from(r)? {
                    ListTokens::All => {
                        auth::require_admin(&caller, "listing every token")?;
                        None
                    }
                    ListTokens::Own => Some(caller.user.name.clone()),
                    ListTokens::Of(u) => {
                        auth::require_self_or_admin(&caller, &u)?;
                        Some(u)
                    }
                };
                let tokens = ctx.store.list_api_tokens(filter.as_ref()).await?;
                Ok(pb::ListTokensResponse {
                    tokens: tokens.into_iter().map(convert::api_token).collect(),
                })
            },
        )
        .await
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::ApiToken>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "token.revoke",
            |r| format!("token:{}", shown(&r.id)),
            async |caller, r, audit| {
                let RevokeToken { id } = r.try_into()?;
                let token = ctx.store.get_api_token(&id).await?;
                // Known before the policy check, so that a refusal is visible
                // in the owner's tenant's audit log too.
                audit.tenant = ctx.store.get_user(&token.user).await?.tenant;
                // Another user's token is not found, as an unknown id is:
                // the caller learns neither that it exists nor whose it is.
                auth::unseen(
                    "api token",
                    &id,
                    auth::require_self_or_admin(&caller, &token.user),
                )?;
                let rec = ctx.store.revoke_api_token(&id, ctx.clock.now()).await?;
                Ok(convert::api_token(rec))
            },
        )
        .await
    }
}

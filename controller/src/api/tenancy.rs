//! Associations, their people and their credentials.

use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::tenants_server::Tenants;
use coloc_proto::controller::v1::tokens_server::Tokens;
use coloc_proto::controller::v1::users_server::Users;
use coloc_proto::domain::{InvalidInput, NodeName, Offer, Role, TenantName, UserName, check_text};
use tonic::{Request, Response, Status};

use super::convert;
use crate::auth::{self, API_TOKEN_PREFIX};
use crate::context::Ctx;
use crate::error::ApiError;
use crate::store::{
    ApiTokenRecord, DEFAULT_VOLUME_GRACE_DAYS, TenantRecord, UserCertRecord, UserRecord,
};
use crate::time::{date_of, parse_date};

const API_TOKEN_DEFAULT_TTL: u64 = 30 * 86400;
const USER_CERT_DEFAULT_TTL: u64 = 90 * 86400;
const MAX_CREDENTIAL_TTL: u64 = 365 * 86400;
/// A P-256 CSR is well under 1 KiB; this leaves room for RSA.
const MAX_CSR_BYTES: usize = 16 * 1024;

fn ttl(field: &'static str, asked: u64, default: u64) -> Result<u64, InvalidInput> {
    match asked {
        0 => Ok(default),
        t if (60..=MAX_CREDENTIAL_TTL).contains(&t) => Ok(t),
        t => Err(InvalidInput::field(
            field,
            format!("{t} s is outside 60 s to 365 days"),
        )),
    }
}

#[derive(Debug, Clone)]
pub struct TenantsApi(pub Ctx);

#[tonic::async_trait]
impl Tenants for TenantsApi {
    async fn create_tenant(
        &self,
        req: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(&caller, "tenant.create", format!("tenant:{}", r.name));
        audit.tenant = TenantName::new(r.name.clone()).ok();
        let result = async {
            let caller = caller?;
            auth::require_admin(&caller, "creating a tenant")?;
            let name = TenantName::new(r.name)?;
            let offer = Offer::try_from(r.offer)?;
            check_text("display name", &r.display_name, 100)?;
            let Some(expires) = parse_date(&r.membership_expires) else {
                return Err(InvalidInput::field(
                    "membership expiry",
                    format!("{:?} is not a date YYYY-MM-DD", r.membership_expires),
                )
                .into());
            };
            let now = ctx.clock.now();
            if expires.to_string() < date_of(now) {
                return Err(InvalidInput::field(
                    "membership expiry",
                    format!("{expires} is in the past"),
                )
                .into());
            }
            let rec = TenantRecord {
                name,
                display_name: r.display_name,
                offer,
                membership_expires: r.membership_expires,
                created_unix: now,
                storage_quota_bytes: ctx.config.default_tenant_quota_bytes,
                volume_grace_days: DEFAULT_VOLUME_GRACE_DAYS,
                // Both filled in by the store.
                posix_id: 0,
                storage_used_bytes: 0,
            };
            let rec = ctx.store.create_tenant(rec).await?;
            Ok(convert::tenant(rec, now))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn list_tenants(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let audit = ctx.audit_read(&caller, "tenant.list", "tenants");
        let result = async {
            let caller = caller?;
            let now = ctx.clock.now();
            let tenants = ctx.store.list_tenants().await?;
            Ok(pb::ListTenantsResponse {
                tenants: tenants
                    .into_iter()
                    .filter(|t| caller.is_admin() || caller.tenant() == Some(&t.name))
                    .map(|t| convert::tenant(t, now))
                    .collect(),
            })
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn get_tenant(
        &self,
        req: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit_read(&caller, "tenant.show", format!("tenant:{}", r.name));
        audit.tenant = TenantName::new(r.name.clone()).ok();
        let result = async {
            let caller = caller?;
            let name = TenantName::new(r.name)?;
            auth::require_tenant_read(&caller, &name)?;
            Ok(convert::tenant(
                ctx.store.get_tenant(&name).await?,
                ctx.clock.now(),
            ))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }
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
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let action = if grant {
            "user.grant"
        } else {
            "user.revoke-grant"
        };
        let mut audit = ctx.audit(&caller, action, format!("user:{}", r.user));
        audit.detail = format!("node {}", r.node.chars().take(63).collect::<String>());
        let result = async {
            let caller = caller?;
            auth::require_admin(&caller, "granting node rights")?;
            let user = UserName::new(r.user)?;
            let node = NodeName::new(r.node)?;
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
            Ok(updated)
        }
        .await;
        if let Ok(u) = &result {
            audit.tenant = u.tenant.clone();
        }
        audit
            .finish(result.map(convert::user))
            .await
            .map(Response::new)
    }
}

#[tonic::async_trait]
impl Users for UsersApi {
    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(&caller, "user.create", format!("user:{}", r.name));
        audit.tenant = TenantName::new(r.tenant.clone()).ok();
        let result = async {
            let caller = caller?;
            auth::require_admin(&caller, "creating a user")?;
            let name = UserName::new(r.name)?;
            let role = Role::try_from(r.role)?;
            check_text("display name", &r.display_name, 100)?;
            let tenant = match (role, r.tenant.as_str()) {
                (Role::Admin, "") => None,
                (Role::Admin, _) => {
                    return Err(InvalidInput::field(
                        "tenant",
                        "admins are the cooperative's and belong to no tenant",
                    )
                    .into());
                }
                (_, "") => {
                    return Err(InvalidInput::field(
                        "tenant",
                        "operators and members belong to a tenant",
                    )
                    .into());
                }
                (_, t) => {
                    let t = ctx.store.get_tenant(&TenantName::new(t)?).await?;
                    if role == Role::Operator && t.offer != Offer::Participatif {
                        return Err(ApiError::Policy(format!(
                            "tenant {} has the {} offer; operators exist only in participatif tenants",
                            t.name, t.offer
                        )));
                    }
                    Some(t.name)
                }
            };
            let rec = UserRecord {
                name,
                tenant,
                role,
                display_name: r.display_name,
                created_unix: ctx.clock.now(),
                node_grants: Vec::new(),
            };
            ctx.store.create_user(rec.clone()).await?;
            Ok(convert::user(rec))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn list_users(
        &self,
        req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit_read(&caller, "user.list", format!("tenant:{}", r.tenant));
        audit.tenant = TenantName::new(r.tenant.clone()).ok();
        let result = async {
            let caller = caller?;
            let filter = match r.tenant.as_str() {
                "" => None,
                t => Some(TenantName::new(t)?),
            };
            let filter = if caller.is_admin() {
                filter
            } else {
                let own = caller.tenant().cloned().ok_or_else(|| {
                    ApiError::PermissionDenied("caller belongs to no tenant".into())
                })?;
                if let Some(f) = &filter {
                    auth::require_tenant_read(&caller, f)?;
                }
                Some(own)
            };
            let users = ctx.store.list_users(filter.as_ref()).await?;
            Ok(pb::ListUsersResponse {
                users: users.into_iter().map(convert::user).collect(),
            })
        }
        .await;
        audit.finish(result).await.map(Response::new)
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
        let caller = ctx.caller(&req).await;
        let audit = ctx.audit_read(&caller, "user.whoami", "self");
        let result = caller.map(|c| convert::user(c.user));
        audit.finish(result).await.map(Response::new)
    }

    async fn issue_user_certificate(
        &self,
        req: Request<pb::IssueUserCertificateRequest>,
    ) -> Result<Response<pb::IssueUserCertificateResponse>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(&caller, "user.cert.issue", format!("user:{}", r.user));
        let result = async {
            let caller = caller?;
            let user = if r.user.is_empty() {
                caller.user.name.clone()
            } else {
                UserName::new(r.user)?
            };
            auth::require_self_or_admin(&caller, &user)?;
            let rec = ctx.store.get_user(&user).await?;
            if r.csr_pem.len() > MAX_CSR_BYTES {
                return Err(InvalidInput::field("csr", "larger than 16 KiB").into());
            }
            let ttl = ttl("ttl", r.ttl_secs, USER_CERT_DEFAULT_TTL)?;
            let now = ctx.clock.now();
            let issued =
                ctx.ca
                    .sign_client_csr(&r.csr_pem, user.as_str(), "user", now, ttl as i64)?;
            ctx.store
                .add_user_cert(UserCertRecord {
                    fingerprint: issued.fingerprint.clone(),
                    user,
                    created_unix: now,
                    expires_unix: issued.not_after_unix,
                })
                .await?;
            Ok((
                rec.tenant,
                pb::IssueUserCertificateResponse {
                    certificate_pem: issued.pem,
                    ca_certificate_pem: ctx.ca.cert_pem().to_string(),
                    fingerprint: issued.fingerprint,
                    expires_unix: issued.not_after_unix,
                },
            ))
        }
        .await;
        let result = match result {
            Ok((tenant, resp)) => {
                audit.tenant = tenant;
                audit.detail = format!("certificate {}", resp.fingerprint);
                Ok(resp)
            }
            Err(e) => Err(e),
        };
        audit.finish(result).await.map(Response::new)
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
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(&caller, "token.create", format!("user:{}", r.user));
        let result = async {
            let caller = caller?;
            let user = if r.user.is_empty() {
                caller.user.name.clone()
            } else {
                UserName::new(r.user)?
            };
            auth::require_self_or_admin(&caller, &user)?;
            let owner = ctx.store.get_user(&user).await?;
            check_text("description", &r.description, 200)?;
            let ttl = ttl("ttl", r.ttl_secs, API_TOKEN_DEFAULT_TTL)?;
            let (secret, id) = auth::new_secret(API_TOKEN_PREFIX, "tok-");
            let now = ctx.clock.now();
            let rec = ApiTokenRecord {
                id,
                user,
                description: r.description,
                secret_hash: auth::hash_secret(&secret),
                created_unix: now,
                expires_unix: now + ttl as i64,
                revoked_unix: None,
            };
            ctx.store.create_api_token(rec.clone()).await?;
            let mut out = convert::api_token(rec);
            out.secret = secret;
            Ok((owner.tenant, out))
        }
        .await;
        let result = match result {
            Ok((tenant, t)) => {
                audit.tenant = tenant;
                audit.target = format!("token:{}", t.id);
                audit.detail = format!("for user {}", t.user);
                Ok(t)
            }
            Err(e) => Err(e),
        };
        audit.finish(result).await.map(Response::new)
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let audit = ctx.audit_read(&caller, "token.list", format!("user:{}", r.user));
        let result = async {
            let caller = caller?;
            let filter = if r.all {
                auth::require_admin(&caller, "listing every token")?;
                None
            } else if r.user.is_empty() {
                Some(caller.user.name.clone())
            } else {
                let u = UserName::new(r.user)?;
                auth::require_self_or_admin(&caller, &u)?;
                Some(u)
            };
            let tokens = ctx.store.list_api_tokens(filter.as_ref()).await?;
            Ok(pb::ListTokensResponse {
                tokens: tokens.into_iter().map(convert::api_token).collect(),
            })
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::ApiToken>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(
            &caller,
            "token.revoke",
            format!("token:{}", r.id.chars().take(40).collect::<String>()),
        );
        let result = async {
            let caller = caller?;
            if r.id.is_empty()
                || r.id.len() > 40
                || !r.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(
                    InvalidInput::field("token id", "not a token id such as tok-1a2b3c").into(),
                );
            }
            let token = ctx.store.get_api_token(&r.id).await?;
            // Known before the policy check, so that a refusal is visible
            // in the owner's tenant's audit log too.
            audit.tenant = ctx.store.get_user(&token.user).await?.tenant;
            auth::require_self_or_admin(&caller, &token.user)?;
            let rec = ctx.store.revoke_api_token(&r.id, ctx.clock.now()).await?;
            Ok(convert::api_token(rec))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }
}

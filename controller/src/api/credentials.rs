//! People's credentials: API tokens (the `Tokens` service) and user
//! certificates (issued, listed and revoked through `Users`, whose
//! handlers call the functions here).
//!
//! Every token and certificate is minted with the credential of the call
//! that asks for it: it records that minter, expires no later than it
//! ([`crate::rules::credentials::lifetime`]) and is revoked with it. Who
//! may mint, list and revoke for whom is [`auth::require_self_or_admin`]:
//! one's own, or an admin for anyone, so that no credential is minted for
//! another user, let alone a higher role, except by an admin.

use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::tokens_server::Tokens;
use coloc_proto::domain::{CertSerial, UserName};
use tonic::{Request, Response, Status};

use super::convert;
use super::wire::shown;
use super::wire::tenancy::{
    CreateToken, IssueUserCertificate, RevokeToken, RevokeUserCertificate, Whose,
};
use crate::auth::{self, API_TOKEN_PREFIX, Caller};
use crate::context::{AuditScope, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::rules::credentials::{Lifetime, lifetime};
use crate::store::{ApiTokenRecord, CredentialRef, UserCertRecord};

/// When a credential `caller` mints for `ttl_secs` expires: at the latest
/// with the caller's own.
fn minted_lifetime(ctx: &Ctx, caller: &Caller, ttl_secs: u64) -> ApiResult<Lifetime> {
    lifetime(
        ctx.clock.now(),
        ttl_secs,
        Some(caller.credential_expires_unix),
    )
    .map_err(|refusal| ApiError::Conflict(refusal.to_string()))
}

/// The audit detail of a minting.
fn minted_detail(owner: &UserName, caller: &Caller, life: Lifetime) -> String {
    let limited = if life.limited_by_minter {
        ", expiring with it (shorter than asked)"
    } else {
        ""
    };
    format!(
        "for user {owner}, minted with {}{limited}",
        caller.credential
    )
}

/// Whose credentials a listing covers: one's own, or (admins) anyone's.
fn listing_owner(caller: &Caller, whose: Whose, all: &str) -> ApiResult<Option<UserName>> {
    match whose {
        Whose::All => {
            auth::require_admin(caller, all)?;
            Ok(None)
        }
        Whose::Own => Ok(Some(caller.user.name.clone())),
        Whose::Of(u) => {
            auth::require_self_or_admin(caller, &u)?;
            Ok(Some(u))
        }
    }
}

/// Most credentials a revocation's audit detail names one by one.
const SHOWN_REVOKED: usize = 10;

/// "also revoked …" for the credentials a revocation took with it.
fn revoked_detail(also: &[CredentialRef]) -> String {
    if also.is_empty() {
        return String::new();
    }
    let mut names: Vec<String> = also
        .iter()
        .take(SHOWN_REVOKED)
        .map(ToString::to_string)
        .collect();
    if also.len() > SHOWN_REVOKED {
        names.push(format!("{} more", also.len() - SHOWN_REVOKED));
    }
    format!("also revoked, minted from it: {}", names.join(", "))
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
                audit.tenant = owner.tenant;
                let life = minted_lifetime(ctx, &caller, r.ttl_secs)?;
                let (secret, id) = auth::new_secret(API_TOKEN_PREFIX, "tok-");
                let rec = ApiTokenRecord {
                    id,
                    user,
                    description: r.description,
                    secret_hash: auth::hash_secret(&secret),
                    created_unix: ctx.clock.now(),
                    expires_unix: life.expires_unix,
                    revoked_unix: None,
                    minted_by: Some(caller.credential.clone()),
                };
                audit.target = format!("token:{}", rec.id);
                audit.detail = minted_detail(&rec.user, &caller, life);
                ctx.store.create_api_token(rec.clone()).await?;
                let mut out = convert::api_token(rec);
                out.secret = secret;
                out.expiry_limited_by_minter = life.limited_by_minter;
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
                let owner = listing_owner(&caller, r.try_into()?, "listing every token")?;
                let tokens = ctx.store.list_api_tokens(owner.as_ref()).await?;
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
                let revoked = ctx.store.revoke_api_token(&id, ctx.clock.now()).await?;
                audit.detail = revoked_detail(&revoked.also_revoked);
                let mut out = convert::api_token(revoked.record);
                out.also_revoked = convert::credentials(revoked.also_revoked);
                Ok(out)
            },
        )
        .await
    }
}

/// `Users.IssueUserCertificate`: the CA signs the caller's CSR for the
/// certificate's user, for the lifetime [`minted_lifetime`] allows; the
/// certificate is handed out only once recorded with its minter, so one
/// whose minter was revoked meanwhile never leaves colocd.
pub async fn issue_user_certificate(
    ctx: &Ctx,
    caller: Caller,
    r: pb::IssueUserCertificateRequest,
    audit: &mut AuditScope<'_>,
) -> ApiResult<pb::IssueUserCertificateResponse> {
    let r: IssueUserCertificate = r.try_into()?;
    let user = r.user.unwrap_or_else(|| caller.user.name.clone());
    auth::require_self_or_admin(&caller, &user)?;
    let owner = ctx.store.get_user(&user).await?;
    audit.tenant = owner.tenant;
    let now = ctx.clock.now();
    let life = minted_lifetime(ctx, &caller, r.ttl_secs)?;
    let issued = ctx.ca.sign_client_csr(
        &r.csr_pem,
        user.as_str(),
        "user",
        now,
        life.expires_unix - now,
    )?;
    // The CA's serials are 32 hex digits: this never refuses.
    let serial = CertSerial::new(issued.serial.clone())?;
    audit.detail = format!(
        "certificate {serial} (sha256 {}) {}",
        issued.fingerprint,
        minted_detail(&user, &caller, life)
    );
    ctx.store
        .add_user_cert(UserCertRecord {
            serial,
            fingerprint: issued.fingerprint.clone(),
            user,
            created_unix: now,
            expires_unix: issued.not_after_unix,
            revoked_unix: None,
            minted_by: Some(caller.credential.clone()),
        })
        .await?;
    Ok(pb::IssueUserCertificateResponse {
        certificate_pem: issued.pem,
        ca_certificate_pem: ctx.ca.cert_pem().to_string(),
        fingerprint: issued.fingerprint,
        expires_unix: issued.not_after_unix,
        serial: issued.serial,
        minted_by: Some(convert::credential(caller.credential)),
        expiry_limited_by_minter: life.limited_by_minter,
    })
}

/// `Users.ListUserCertificates`.
pub async fn list_user_certificates(
    ctx: &Ctx,
    caller: Caller,
    r: pb::ListUserCertificatesRequest,
) -> ApiResult<pb::ListUserCertificatesResponse> {
    let owner = listing_owner(&caller, r.try_into()?, "listing every user certificate")?;
    let certs = ctx.store.list_user_certs(owner.as_ref()).await?;
    Ok(pb::ListUserCertificatesResponse {
        certificates: certs.into_iter().map(convert::user_certificate).collect(),
    })
}

/// `Users.RevokeUserCertificate`: the certificate and everything minted
/// from it, at once.
pub async fn revoke_user_certificate(
    ctx: &Ctx,
    caller: Caller,
    r: pb::RevokeUserCertificateRequest,
    audit: &mut AuditScope<'_>,
) -> ApiResult<pb::UserCertificate> {
    let RevokeUserCertificate { serial } = r.try_into()?;
    let cert = ctx.store.get_user_cert(&serial).await?;
    // As for tokens: a refusal lands in the owner's tenant's log too.
    audit.tenant = ctx.store.get_user(&cert.user).await?.tenant;
    auth::require_self_or_admin(&caller, &cert.user)?;
    let revoked = ctx.store.revoke_user_cert(&serial, ctx.clock.now()).await?;
    audit.detail = revoked_detail(&revoked.also_revoked);
    let mut out = convert::user_certificate(revoked.record);
    out.also_revoked = convert::credentials(revoked.also_revoked);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_details_are_bounded() {
        assert_eq!(revoked_detail(&[]), "");
        let one = [CredentialRef::Token("tok-b".into())];
        assert_eq!(
            revoked_detail(&one),
            "also revoked, minted from it: token tok-b"
        );
        let many: Vec<_> = (0..25)
            .map(|i| CredentialRef::Token(format!("tok-{i}")))
            .collect();
        let text = revoked_detail(&many);
        assert!(text.ends_with("token tok-9, 15 more"), "{text}");
    }
}

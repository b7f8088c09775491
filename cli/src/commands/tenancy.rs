//! `coloc tenant`, `coloc user` (with `coloc user cert`), `coloc token`
//! and `coloc whoami`.

use coloc_proto::controller::v1 as pb;
use coloc_proto::domain::{self, Role};

use super::{call, connect, now_unix, print_secret};
use crate::args::GlobalArgs;
use crate::args::tenancy::{CertCommand, TenantCommand, TokenCommand, UserCommand};
use crate::certs;
use crate::error::Failure;
use crate::input::check_delete_confirm;
use crate::output::tenancy::{
    also_revoked_text, api_token_details, api_token_json, api_tokens_table, deleted_user_json,
    deleted_user_text, limited_note, tenant_details, tenant_json, tenants_table, user_cert_details,
    user_cert_json, user_certs_table, user_details, user_json, users_table,
};
use crate::output::{self, Printer};

pub async fn tenant(
    global: &GlobalArgs,
    out: Printer,
    command: TenantCommand,
) -> Result<(), Failure> {
    match command {
        TenantCommand::Create {
            name,
            offer,
            expires,
            display_name,
        } => {
            let request = pb::CreateTenantRequest {
                name: name.into(),
                display_name: display_name.unwrap_or_default(),
                offer: pb::Offer::from(domain::Offer::from(offer)) as i32,
                membership_expires: expires,
            };
            let api = connect(global).await?;
            let tenant = call(&api, api.tenants().create_tenant(request)).await?;
            out.emit(tenant_json(&tenant), || {
                format!("Created tenant:\n{}", tenant_details(&tenant))
            })
        }
        TenantCommand::List => {
            let api = connect(global).await?;
            let list = call(&api, api.tenants().list_tenants(pb::ListTenantsRequest {})).await?;
            out.list(&list.tenants, tenant_json, tenants_table)
        }
        TenantCommand::Show { name } => {
            let api = connect(global).await?;
            let tenant = call(
                &api,
                api.tenants()
                    .get_tenant(pb::GetTenantRequest { name: name.into() }),
            )
            .await?;
            out.emit(tenant_json(&tenant), || tenant_details(&tenant))
        }
        TenantCommand::SetStorage {
            name,
            quota,
            grace_days,
        } => {
            if quota.is_none() && grace_days.is_none() {
                return Err(Failure::usage(
                    "nothing to change: give --quota SIZE and/or --grace-days N",
                ));
            }
            let request = pb::SetTenantStorageRequest {
                name: name.into(),
                storage_quota_bytes: quota,
                volume_grace_days: grace_days,
            };
            let api = connect(global).await?;
            let tenant = call(&api, api.storage().set_tenant_storage(request)).await?;
            out.emit(tenant_json(&tenant), || {
                format!("Updated tenant storage:\n{}", tenant_details(&tenant))
            })
        }
        TenantCommand::Renew { name, expires } => {
            let request = pb::RenewMembershipRequest {
                name: name.into(),
                membership_expires: expires,
            };
            let api = connect(global).await?;
            let tenant = call(&api, api.tenants().renew_membership(request)).await?;
            out.emit(tenant_json(&tenant), || {
                format!("Renewed membership:\n{}", tenant_details(&tenant))
            })
        }
        TenantCommand::Suspend { name, reason } => {
            let request = pb::SuspendTenantRequest {
                name: name.into(),
                reason,
            };
            let api = connect(global).await?;
            let tenant = call(&api, api.tenants().suspend_tenant(request)).await?;
            out.emit(tenant_json(&tenant), || {
                format!(
                    "Suspended tenant (its apps are stopped on their nodes; nothing is deleted):\n{}",
                    tenant_details(&tenant)
                )
            })
        }
        TenantCommand::Resume { name } => {
            let request = pb::ResumeTenantRequest { name: name.into() };
            let api = connect(global).await?;
            let tenant = call(&api, api.tenants().resume_tenant(request)).await?;
            out.emit(tenant_json(&tenant), || {
                format!(
                    "Resumed tenant (its apps that were running start again):\n{}",
                    tenant_details(&tenant)
                )
            })
        }
    }
}

/// Admins belong to the cooperative, everyone else to one tenant.
fn check_role_tenant(role: Role, tenant: Option<&domain::TenantName>) -> Result<(), Failure> {
    match (role, tenant) {
        (Role::Admin, Some(t)) => Err(Failure::invalid(format!(
            "admins belong to the cooperative, not to a tenant: drop --tenant {t}"
        ))),
        (Role::Operator | Role::Member, None) => Err(Failure::invalid(format!(
            "a {role} belongs to a tenant: add --tenant NAME"
        ))),
        (Role::Admin, None) | (Role::Operator | Role::Member, Some(_)) => Ok(()),
    }
}

pub async fn user(global: &GlobalArgs, out: Printer, command: UserCommand) -> Result<(), Failure> {
    match command {
        UserCommand::Create {
            name,
            role,
            tenant,
            display_name,
        } => {
            let role = Role::from(role);
            check_role_tenant(role, tenant.as_ref())?;
            let request = pb::CreateUserRequest {
                name: name.into(),
                tenant: tenant.map(String::from).unwrap_or_default(),
                role: pb::Role::from(role) as i32,
                display_name: display_name.unwrap_or_default(),
            };
            let api = connect(global).await?;
            let user = call(&api, api.users().create_user(request)).await?;
            out.emit(user_json(&user), || {
                format!("Created user:\n{}", user_details(&user))
            })
        }
        UserCommand::List { tenant } => {
            let request = pb::ListUsersRequest {
                tenant: tenant.map(String::from).unwrap_or_default(),
            };
            let api = connect(global).await?;
            let list = call(&api, api.users().list_users(request)).await?;
            out.list(&list.users, user_json, users_table)
        }
        UserCommand::Grant { user, node } => {
            let request = pb::GrantNodeRequest {
                user: user.into(),
                node: node.into(),
            };
            let api = connect(global).await?;
            let user = call(&api, api.users().grant_node(request)).await?;
            out.emit(user_json(&user), || user_details(&user))
        }
        UserCommand::RevokeGrant { user, node } => {
            let request = pb::GrantNodeRequest {
                user: user.into(),
                node: node.into(),
            };
            let api = connect(global).await?;
            let user = call(&api, api.users().revoke_node_grant(request)).await?;
            out.emit(user_json(&user), || user_details(&user))
        }
        UserCommand::Cert { command } => cert(global, out, command).await,
        UserCommand::SetRole { user, role, tenant } => {
            let request = pb::SetUserRoleRequest {
                user: user.into(),
                role: pb::Role::from(Role::from(role)) as i32,
                tenant: tenant.map(String::from).unwrap_or_default(),
            };
            let api = connect(global).await?;
            let user = call(&api, api.users().set_user_role(request)).await?;
            out.emit(user_json(&user), || {
                format!("Changed role:\n{}", user_details(&user))
            })
        }
        UserCommand::Disable { user } => {
            let api = connect(global).await?;
            let request = pb::UserRef { name: user.into() };
            let user = call(&api, api.users().disable_user(request)).await?;
            out.emit(user_json(&user), || {
                format!(
                    "Disabled: every credential of {} is refused from now on.\n{}",
                    output::clean(&user.name),
                    user_details(&user)
                )
            })
        }
        UserCommand::Enable { user } => {
            let api = connect(global).await?;
            let request = pb::UserRef { name: user.into() };
            let user = call(&api, api.users().enable_user(request)).await?;
            out.emit(user_json(&user), || {
                format!(
                    "Enabled: the credentials of {} that are neither revoked nor expired work again.\n{}",
                    output::clean(&user.name),
                    user_details(&user)
                )
            })
        }
        UserCommand::Delete { user, confirm } => {
            check_delete_confirm(&user, confirm.as_deref())?;
            let api = connect(global).await?;
            let request = pb::UserRef { name: user.into() };
            let gone = call(&api, api.users().delete_user(request)).await?;
            out.emit(deleted_user_json(&gone), || deleted_user_text(&gone))
        }
    }
}

/// `coloc user cert issue|list|revoke`.
async fn cert(global: &GlobalArgs, out: Printer, command: CertCommand) -> Result<(), Failure> {
    match command {
        CertCommand::Issue {
            user,
            out_dir,
            ttl,
            force,
        } => {
            let paths = certs::cert_paths(&out_dir, &user);
            certs::check_writable(&paths, force)?;
            let fresh = certs::make_csr(&user)?;
            let request = pb::IssueUserCertificateRequest {
                user: user.to_string(),
                csr_pem: fresh.csr_pem.clone(),
                ttl_secs: ttl.map_or(0, |t| t.secs()),
            };
            let api = connect(global).await?;
            let issued = call(&api, api.users().issue_user_certificate(request)).await?;
            if issued.certificate_pem.trim().is_empty() {
                return Err(Failure::generic(
                    "colocd answered without a certificate; nothing written",
                ));
            }
            certs::write_files(
                &out_dir,
                &paths,
                &fresh.key_pem,
                &issued.certificate_pem,
                force,
            )?;
            let json = serde_json::json!({
                "user": user.as_str(),
                "key_file": paths.key,
                "cert_file": paths.cert,
                "serial": issued.serial,
                "fingerprint": issued.fingerprint,
                "expires_unix": issued.expires_unix,
                "expiry_limited_by_minter": issued.expiry_limited_by_minter,
            });
            if let Some(note) =
                limited_note(issued.expiry_limited_by_minter, issued.minted_by.as_ref())
            {
                out.note(&note);
            }
            out.emit(json, || {
                format!(
                    "Wrote {} (private key, mode 0600) and {} for {user}.\n\
                     Serial {}, valid until {} UTC, sha256 {}.\n\
                     Use them with --cert {} --key {}, or cert_file and key_file in the config file.\n",
                    paths.key.display(),
                    paths.cert.display(),
                    output::clean(&issued.serial),
                    output::fmt_time(issued.expires_unix),
                    output::clean(&issued.fingerprint),
                    paths.cert.display(),
                    paths.key.display(),
                )
            })
        }
        CertCommand::List { user, all } => {
            let request = pb::ListUserCertificatesRequest {
                user: user.map(String::from).unwrap_or_default(),
                all,
            };
            let api = connect(global).await?;
            let list = call(&api, api.users().list_user_certificates(request)).await?;
            let now = now_unix();
            out.list(&list.certificates, user_cert_json, |x| {
                user_certs_table(x, now)
            })
        }
        CertCommand::Revoke { serial } => {
            let request = pb::RevokeUserCertificateRequest {
                serial: serial.into(),
            };
            let api = connect(global).await?;
            let cert = call(&api, api.users().revoke_user_certificate(request)).await?;
            let now = now_unix();
            out.emit(user_cert_json(&cert), || {
                format!(
                    "Revoked certificate:\n{}{}",
                    user_cert_details(&cert, now),
                    also_revoked_text(&cert.also_revoked)
                )
            })
        }
    }
}

pub async fn token(
    global: &GlobalArgs,
    out: Printer,
    command: TokenCommand,
) -> Result<(), Failure> {
    match command {
        TokenCommand::Create {
            user,
            description,
            ttl,
        } => {
            let request = pb::CreateTokenRequest {
                user: user.map(String::from).unwrap_or_default(),
                description: description.unwrap_or_default(),
                ttl_secs: ttl.map_or(0, |t| t.secs()),
            };
            let api = connect(global).await?;
            let token = call(&api, api.tokens().create_token(request)).await?;
            let mut about = format!(
                "Token {} for {}, valid until {} UTC.",
                output::clean(&token.id),
                output::clean(&token.user),
                output::fmt_time(token.expires_unix)
            );
            if let Some(note) =
                limited_note(token.expiry_limited_by_minter, token.minted_by.as_ref())
            {
                about = format!("{about}\n{note}");
            }
            print_secret(out, api_token_json(&token), &token.secret, about)
        }
        TokenCommand::List { user, all } => {
            let request = pb::ListTokensRequest {
                user: user.map(String::from).unwrap_or_default(),
                all,
            };
            let api = connect(global).await?;
            let list = call(&api, api.tokens().list_tokens(request)).await?;
            let now = now_unix();
            out.list(&list.tokens, api_token_json, |x| api_tokens_table(x, now))
        }
        TokenCommand::Revoke { id } => {
            let api = connect(global).await?;
            let token = call(
                &api,
                api.tokens().revoke_token(pb::RevokeTokenRequest { id }),
            )
            .await?;
            let now = now_unix();
            out.emit(api_token_json(&token), || {
                format!(
                    "Revoked token:\n{}{}",
                    api_token_details(&token, now),
                    also_revoked_text(&token.also_revoked)
                )
            })
        }
    }
}

/// Who colocd thinks the caller is.
pub async fn whoami(global: &GlobalArgs, out: Printer) -> Result<(), Failure> {
    let api = connect(global).await?;
    let me = call(&api, api.users().who_am_i(pb::WhoAmIRequest {})).await?;
    out.emit(user_json(&me), || user_details(&me))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Exit;

    #[test]
    fn role_and_tenant_must_agree() {
        let t = domain::TenantName::new("asso-x").unwrap();
        assert!(check_role_tenant(Role::Admin, None).is_ok());
        assert!(check_role_tenant(Role::Operator, Some(&t)).is_ok());
        assert!(check_role_tenant(Role::Member, Some(&t)).is_ok());
        assert_eq!(
            check_role_tenant(Role::Admin, Some(&t)).unwrap_err().exit,
            Exit::InvalidArgument
        );
        let err = check_role_tenant(Role::Member, None).unwrap_err();
        assert_eq!(err.exit, Exit::InvalidArgument);
        assert!(err.message.contains("--tenant"));
    }
}

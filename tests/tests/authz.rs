//! The authorization matrix: each role x each API family x its own or
//! another association, checking both the answer and the audit entry.

use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use tonic::Code;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Admin,
    Operator,
    Member,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    SiteCreate,
    SiteList,
    JoinTokenCreate,
    NodeDrain,
    NodeGet,
    TenantCreate,
    TenantGet,
    UserCreate,
    UserList,
    TokenCreateFor,
    TokenRevoke,
    AuditList,
    UserSetRole,
    UserDisable,
    UserEnable,
    UserDelete,
    CertIssue,
    CertList,
    CertRevoke,
}

impl Op {
    fn family(self) -> &'static str {
        match self {
            Op::SiteCreate | Op::SiteList => "sites",
            Op::JoinTokenCreate | Op::NodeDrain | Op::NodeGet => "nodes",
            Op::TenantCreate | Op::TenantGet => "tenants",
            Op::UserCreate
            | Op::UserList
            | Op::UserSetRole
            | Op::UserDisable
            | Op::UserEnable
            | Op::UserDelete => "users",
            Op::CertIssue | Op::CertList | Op::CertRevoke => "certificates",
            Op::TokenCreateFor | Op::TokenRevoke => "tokens",
            Op::AuditList => "audit",
        }
    }
    /// Audit action name, and whether it is a mutation (always audited).
    fn action(self) -> (&'static str, bool) {
        match self {
            Op::SiteCreate => ("site.create", true),
            Op::SiteList => ("site.list", false),
            Op::JoinTokenCreate => ("node.token.create", true),
            Op::NodeDrain => ("node.drain", true),
            Op::NodeGet => ("node.show", false),
            Op::TenantCreate => ("tenant.create", true),
            Op::TenantGet => ("tenant.show", false),
            Op::UserCreate => ("user.create", true),
            Op::UserList => ("user.list", false),
            Op::TokenCreateFor => ("token.create", true),
            Op::TokenRevoke => ("token.revoke", true),
            Op::AuditList => ("audit.list", false),
            Op::UserSetRole => ("user.set-role", true),
            Op::UserDisable => ("user.disable", true),
            Op::UserEnable => ("user.enable", true),
            Op::UserDelete => ("user.delete", true),
            Op::CertIssue => ("user.cert.issue", true),
            Op::CertList => ("user.cert.list", false),
            Op::CertRevoke => ("user.cert.revoke", true),
        }
    }
}

struct World {
    ctl: TestController,
    admin: Api,
    op_a: Api,
    mem_a: Api,
    op_b_token_ids: Vec<String>,
    own_token_ids: std::collections::HashMap<&'static str, Vec<String>>,
    op_b_cert_serials: Vec<String>,
    own_cert_serials: std::collections::HashMap<&'static str, Vec<String>>,
}

/// A user certificate for `user`, issued by the admin; returns its serial.
async fn issue_cert(admin: &mut Api, user: &str) -> Result<String> {
    let (_, csr) = key_and_csr(user)?;
    Ok(admin
        .users
        .issue_user_certificate(pb::IssueUserCertificateRequest {
            user: user.into(),
            csr_pem: csr,
            ttl_secs: 0,
        })
        .await?
        .into_inner()
        .serial)
}

async fn world() -> Result<World> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
    create_tenant(&mut admin, "asso-b", pb::Offer::Participatif).await?;
    let op_a = create_user(&mut admin, "op-a", "asso-a", pb::Role::Operator).await?;
    let mem_a = create_user(&mut admin, "mem-a", "asso-a", pb::Role::Member).await?;
    create_user(&mut admin, "op-b", "asso-b", pb::Role::Operator).await?;
    create_user(&mut admin, "mem-b", "asso-b", pb::Role::Member).await?;
    for n in ["n-a", "n-b"] {
        let t = join_token(&mut admin, "paris-1", 600).await?;
        enroll_raw(&ctl, &t, n).await?;
    }
    for (u, n) in [("op-a", "n-a"), ("op-b", "n-b")] {
        admin
            .users
            .grant_node(pb::GrantNodeRequest {
                user: u.into(),
                node: n.into(),
            })
            .await?;
    }
    // Tokens of op-b (other tenant) and of mem-a (own tenant) to try revoking.
    let mut op_b_token_ids = Vec::new();
    let mut own_token_ids = std::collections::HashMap::new();
    for user in ["op-b", "admin", "op-a", "mem-a"] {
        for _ in 0..3 {
            let t = admin
                .tokens
                .create_token(pb::CreateTokenRequest {
                    user: user.into(),
                    description: "to revoke".into(),
                    ttl_secs: 0,
                })
                .await?
                .into_inner();
            if user == "op-b" {
                op_b_token_ids.push(t.id);
            } else {
                own_token_ids
                    .entry(user)
                    .or_insert_with(Vec::new)
                    .push(t.id);
            }
        }
    }
    // Their certificates, likewise.
    let mut op_b_cert_serials = Vec::new();
    let mut own_cert_serials = std::collections::HashMap::new();
    for user in ["op-b", "admin", "op-a", "mem-a"] {
        for _ in 0..3 {
            let serial = issue_cert(&mut admin, user).await?;
            if user == "op-b" {
                op_b_cert_serials.push(serial);
            } else {
                own_cert_serials
                    .entry(user)
                    .or_insert_with(Vec::new)
                    .push(serial);
            }
        }
    }
    let op_a = ctl.api(&op_a).await?;
    let mem_a = ctl.api(&mem_a).await?;
    Ok(World {
        ctl,
        admin,
        op_a,
        mem_a,
        op_b_token_ids,
        own_token_ids,
        op_b_cert_serials,
        own_cert_serials,
    })
}

/// Runs one call; Ok(()) when allowed, Err(code) when refused.
async fn call(
    w: &mut World,
    who: Who,
    op: Op,
    own: bool,
    n: usize,
) -> std::result::Result<(), Code> {
    let tag = format!(
        "{}-{}-{n}",
        who_name(who),
        if own { "own" } else { "other" }
    );
    let (tenant, node, user) = if own {
        ("asso-a", "n-a", who_name(who))
    } else {
        ("asso-b", "n-b", "op-b")
    };
    let token_id = match (op, own) {
        (Op::TokenRevoke, true) => w
            .own_token_ids
            .get_mut(who_name(who))
            .and_then(Vec::pop)
            .expect("enough tokens to revoke"),
        (Op::TokenRevoke, false) => w.op_b_token_ids.pop().expect("enough tokens to revoke"),
        _ => String::new(),
    };
    let serial = match (op, own) {
        (Op::CertRevoke, true) => w
            .own_cert_serials
            .get_mut(who_name(who))
            .and_then(Vec::pop)
            .expect("enough certificates to revoke"),
        (Op::CertRevoke, false) => w
            .op_b_cert_serials
            .pop()
            .expect("enough certificates to revoke"),
        _ => String::new(),
    };
    // Accounts to change are made for each call, in the tenant it is
    // about, so that no call changes a user another one relies on.
    let victim = format!("v-{tag}");
    if matches!(
        op,
        Op::UserSetRole | Op::UserDisable | Op::UserEnable | Op::UserDelete
    ) {
        create_user(&mut w.admin, &victim, tenant, pb::Role::Member)
            .await
            .expect("a victim account");
        if let Op::UserEnable = op {
            w.admin
                .users
                .disable_user(pb::UserRef {
                    name: victim.clone(),
                })
                .await
                .expect("disabled first");
        }
    }
    let api = match who {
        Who::Admin => &mut w.admin,
        Who::Operator => &mut w.op_a,
        Who::Member => &mut w.mem_a,
    };
    let r = match op {
        Op::SiteCreate => api
            .sites
            .create_site(pb::CreateSiteRequest {
                name: format!("s-{tag}"),
                country: "FR".into(),
                city: String::new(),
                description: String::new(),
            })
            .await
            .map(drop),
        Op::SiteList => api
            .sites
            .list_sites(pb::ListSitesRequest {})
            .await
            .map(drop),
        Op::JoinTokenCreate => api
            .nodes
            .create_join_token(pb::CreateJoinTokenRequest {
                site: "paris-1".into(),
                ttl_secs: 0,
            })
            .await
            .map(drop),
        Op::NodeDrain => api
            .nodes
            .drain_node(pb::DrainNodeRequest {
                name: node.into(),
                drain: true,
            })
            .await
            .map(drop),
        Op::NodeGet => api
            .nodes
            .get_node(pb::GetNodeRequest { name: node.into() })
            .await
            .map(drop),
        Op::TenantCreate => api
            .tenants
            .create_tenant(pb::CreateTenantRequest {
                name: format!("t-{tag}"),
                display_name: String::new(),
                offer: pb::Offer::Responsable as i32,
                membership_expires: "2099-01-01".into(),
            })
            .await
            .map(drop),
        Op::TenantGet => api
            .tenants
            .get_tenant(pb::GetTenantRequest {
                name: tenant.into(),
            })
            .await
            .map(drop),
        Op::UserCreate => api
            .users
            .create_user(pb::CreateUserRequest {
                name: format!("u-{tag}"),
                tenant: tenant.into(),
                role: pb::Role::Member as i32,
                display_name: String::new(),
            })
            .await
            .map(drop),
        Op::UserList => api
            .users
            .list_users(pb::ListUsersRequest {
                tenant: tenant.into(),
            })
            .await
            .map(drop),
        Op::TokenCreateFor => api
            .tokens
            .create_token(pb::CreateTokenRequest {
                user: user.into(),
                description: String::new(),
                ttl_secs: 0,
            })
            .await
            .map(drop),
        Op::TokenRevoke => api
            .tokens
            .revoke_token(pb::RevokeTokenRequest { id: token_id })
            .await
            .map(drop),
        Op::AuditList => api
            .audit
            .list_audit(pb::ListAuditRequest {
                tenant: tenant.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        Op::UserSetRole => api
            .users
            .set_user_role(pb::SetUserRoleRequest {
                user: victim,
                role: pb::Role::Operator as i32,
                tenant: String::new(),
            })
            .await
            .map(drop),
        Op::UserDisable => api
            .users
            .disable_user(pb::UserRef { name: victim })
            .await
            .map(drop),
        Op::UserEnable => api
            .users
            .enable_user(pb::UserRef { name: victim })
            .await
            .map(drop),
        Op::UserDelete => api
            .users
            .delete_user(pb::UserRef { name: victim })
            .await
            .map(drop),
        Op::CertIssue => {
            let (_, csr) = key_and_csr(user).expect("a CSR");
            api.users
                .issue_user_certificate(pb::IssueUserCertificateRequest {
                    user: user.into(),
                    csr_pem: csr,
                    ttl_secs: 0,
                })
                .await
                .map(drop)
        }
        Op::CertList => api
            .users
            .list_user_certificates(pb::ListUserCertificatesRequest {
                user: user.into(),
                all: false,
            })
            .await
            .map(drop),
        Op::CertRevoke => api
            .users
            .revoke_user_certificate(pb::RevokeUserCertificateRequest { serial })
            .await
            .map(drop),
    };
    r.map_err(|s| s.code())
}

fn who_name(w: Who) -> &'static str {
    match w {
        Who::Admin => "admin",
        Who::Operator => "op-a",
        Who::Member => "mem-a",
    }
}

/// The policy, written independently of the controller's code.
fn expected(who: Who, op: Op, own: bool) -> bool {
    match (who, op) {
        (Who::Admin, _) => true,
        (_, Op::SiteList) => true,
        (
            _,
            Op::SiteCreate
            | Op::JoinTokenCreate
            | Op::NodeDrain
            | Op::TenantCreate
            | Op::UserCreate
            | Op::UserSetRole
            | Op::UserDisable
            | Op::UserEnable
            | Op::UserDelete,
        ) => false,
        (Who::Operator, Op::NodeGet) => own,
        (Who::Member, Op::NodeGet) => false,
        (_, Op::TenantGet | Op::UserList | Op::AuditList) => own,
        // One's own tokens and certificates: yes; another user's: admin work.
        (
            _,
            Op::TokenCreateFor | Op::TokenRevoke | Op::CertIssue | Op::CertList | Op::CertRevoke,
        ) => own,
    }
}

#[tokio::test]
async fn every_role_family_and_tenant() -> Result<()> {
    let mut w = world().await?;
    let ops = [
        Op::SiteCreate,
        Op::SiteList,
        Op::JoinTokenCreate,
        Op::NodeDrain,
        Op::NodeGet,
        Op::TenantCreate,
        Op::TenantGet,
        Op::UserCreate,
        Op::UserList,
        Op::TokenCreateFor,
        Op::TokenRevoke,
        Op::AuditList,
        Op::UserSetRole,
        Op::UserDisable,
        Op::UserEnable,
        Op::UserDelete,
        Op::CertIssue,
        Op::CertList,
        Op::CertRevoke,
    ];
    let mut families = std::collections::BTreeSet::new();
    let mut n = 0;
    for who in [Who::Admin, Who::Operator, Who::Member] {
        for op in ops {
            for own in [true, false] {
                n += 1;
                families.insert(op.family());
                let allowed = expected(who, op, own);
                let got = call(&mut w, who, op, own, n).await;
                let ctx = format!("{who:?} {op:?} own={own}");
                if allowed {
                    assert_eq!(got, Ok(()), "{ctx} should be allowed");
                } else {
                    assert_eq!(got, Err(Code::PermissionDenied), "{ctx} should be denied");
                }
                let (action, mutation) = op.action();
                let entries =
                    audit_entries(&mut w.admin, &format!("user:{}", who_name(who))).await?;
                let newest = entries.iter().find(|e| e.action == action);
                if allowed && !mutation {
                    continue;
                }
                let e = newest.unwrap_or_else(|| panic!("{ctx}: no audit entry {action}"));
                let want = if allowed {
                    pb::AuditOutcome::Allowed
                } else {
                    pb::AuditOutcome::Denied
                } as i32;
                assert_eq!(e.outcome, want, "{ctx}: audit outcome of {e:?}");
                assert_eq!(e.actor, format!("user:{}", who_name(who)));
                if !allowed {
                    assert!(e.detail.contains("permission denied"), "{ctx}: {e:?}");
                }
            }
        }
    }
    assert_eq!(families.len(), 7);
    Ok(())
}

#[tokio::test]
async fn a_member_never_sees_another_association() -> Result<()> {
    let mut w = world().await?;
    let tenants = w
        .mem_a
        .tenants
        .list_tenants(pb::ListTenantsRequest {})
        .await?
        .into_inner()
        .tenants;
    assert_eq!(
        tenants.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["asso-a"]
    );
    let users = w
        .mem_a
        .users
        .list_users(pb::ListUsersRequest::default())
        .await?
        .into_inner()
        .users;
    assert!(users.iter().all(|u| u.tenant == "asso-a"), "{users:?}");
    assert!(!users.is_empty());
    let nodes = w
        .mem_a
        .nodes
        .list_nodes(pb::ListNodesRequest::default())
        .await?
        .into_inner()
        .nodes;
    assert!(nodes.is_empty(), "members hold no node grants");
    let nodes = w
        .op_a
        .nodes
        .list_nodes(pb::ListNodesRequest::default())
        .await?
        .into_inner()
        .nodes;
    assert_eq!(
        nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["n-a"]
    );

    // Something happens in asso-b; asso-a's audit view does not show it.
    create_user(&mut w.admin, "new-b", "asso-b", pb::Role::Member).await?;
    let entries = w
        .mem_a
        .audit
        .list_audit(pb::ListAuditRequest::default())
        .await?
        .into_inner()
        .entries;
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e.tenant == "asso-a"), "{entries:?}");
    let all = audit_entries(&mut w.admin, "").await?;
    assert!(all.iter().any(|e| e.tenant == "asso-b"));
    // Tokens: one's own only.
    let toks = w
        .mem_a
        .tokens
        .list_tokens(pb::ListTokensRequest::default())
        .await?
        .into_inner()
        .tokens;
    assert!(toks.iter().all(|t| t.user == "mem-a"));
    let err = w
        .mem_a
        .tokens
        .list_tokens(pb::ListTokensRequest {
            user: String::new(),
            all: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    drop(w.ctl);
    Ok(())
}

#[tokio::test]
async fn role_rules_for_accounts() -> Result<()> {
    let mut w = world().await?;
    create_tenant(&mut w.admin, "asso-r", pb::Offer::Responsable).await?;
    // Operators exist only in participatory tenants.
    let err = w
        .admin
        .users
        .create_user(pb::CreateUserRequest {
            name: "op-r".into(),
            tenant: "asso-r".into(),
            role: pb::Role::Operator as i32,
            display_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Admins belong to no tenant; others must.
    let err = w
        .admin
        .users
        .create_user(pb::CreateUserRequest {
            name: "x".into(),
            tenant: "asso-a".into(),
            role: pb::Role::Admin as i32,
            display_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = w
        .admin
        .users
        .create_user(pb::CreateUserRequest {
            name: "y".into(),
            tenant: String::new(),
            role: pb::Role::Member as i32,
            display_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Only operators hold node grants.
    let err = w
        .admin
        .users
        .grant_node(pb::GrantNodeRequest {
            user: "mem-a".into(),
            node: "n-a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Revoking the grant removes the operator's view of the node.
    w.admin
        .users
        .revoke_node_grant(pb::GrantNodeRequest {
            user: "op-a".into(),
            node: "n-a".into(),
        })
        .await?;
    let err = w
        .op_a
        .nodes
        .get_node(pb::GetNodeRequest { name: "n-a".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    Ok(())
}

/// Every call on accounts and credentials, tried by `api` against mem-b
/// and one of mem-b's certificates; the codes it got, by action.
async fn try_account_calls(api: &mut Api, serial: &str) -> Vec<(&'static str, Code)> {
    let (_, csr) = key_and_csr("mem-b").expect("a CSR");
    let mut got = Vec::new();
    let mut note = |action, r: std::result::Result<(), tonic::Status>| {
        got.push((action, r.map_or_else(|s| s.code(), |()| Code::Ok)));
    };
    let victim = || pb::UserRef {
        name: "mem-b".into(),
    };
    note(
        "user.whoami",
        api.users.who_am_i(pb::WhoAmIRequest {}).await.map(drop),
    );
    note(
        "token.create",
        api.tokens
            .create_token(pb::CreateTokenRequest {
                user: "mem-b".into(),
                description: String::new(),
                ttl_secs: 0,
            })
            .await
            .map(drop),
    );
    note(
        "user.cert.issue",
        api.users
            .issue_user_certificate(pb::IssueUserCertificateRequest {
                user: "mem-b".into(),
                csr_pem: csr,
                ttl_secs: 0,
            })
            .await
            .map(drop),
    );
    note(
        "user.cert.list",
        api.users
            .list_user_certificates(pb::ListUserCertificatesRequest {
                user: String::new(),
                all: true,
            })
            .await
            .map(drop),
    );
    note(
        "user.cert.revoke",
        api.users
            .revoke_user_certificate(pb::RevokeUserCertificateRequest {
                serial: serial.into(),
            })
            .await
            .map(drop),
    );
    note(
        "user.set-role",
        api.users
            .set_user_role(pb::SetUserRoleRequest {
                user: "mem-b".into(),
                role: pb::Role::Admin as i32,
                tenant: String::new(),
            })
            .await
            .map(drop),
    );
    note(
        "user.enable",
        api.users.enable_user(victim()).await.map(drop),
    );
    note(
        "user.disable",
        api.users.disable_user(victim()).await.map(drop),
    );
    note(
        "user.delete",
        api.users.delete_user(victim()).await.map(drop),
    );
    got
}

/// Anonymous callers, a revoked token, a disabled user's token, an expired
/// token, a member and another association's operator: none of them
/// issues, lists or revokes another user's credentials or changes an
/// account, and mem-b and her certificate are untouched afterwards.
#[tokio::test]
async fn account_calls_refuse_everyone_but_admins() -> Result<()> {
    let mut w = world().await?;
    let serial = issue_cert(&mut w.admin, "mem-b").await?;

    // A token revoked, a user disabled, a token expired.
    let revoked = create_user(&mut w.admin, "gone-a", "asso-a", pb::Role::Operator).await?;
    let id = w
        .admin
        .tokens
        .list_tokens(pb::ListTokensRequest {
            user: "gone-a".into(),
            all: false,
        })
        .await?
        .into_inner()
        .tokens[0]
        .id
        .clone();
    w.admin
        .tokens
        .revoke_token(pb::RevokeTokenRequest { id })
        .await?;
    let disabled = create_user(&mut w.admin, "off-a", "asso-a", pb::Role::Operator).await?;
    w.admin
        .users
        .disable_user(pb::UserRef {
            name: "off-a".into(),
        })
        .await?;
    create_user(&mut w.admin, "old-a", "asso-a", pb::Role::Operator).await?;
    let expiring = w
        .admin
        .tokens
        .create_token(pb::CreateTokenRequest {
            user: "old-a".into(),
            description: "short".into(),
            ttl_secs: 60,
        })
        .await?
        .into_inner()
        .secret;
    let mut anonymous = w.ctl.anonymous().await?;
    let mut revoked = w.ctl.api(&revoked).await?;
    let mut disabled = w.ctl.api(&disabled).await?;
    let mut expired = w.ctl.api(&expiring).await?;
    w.ctl.set_now(w.ctl.now() + 61);

    for (who, api) in [
        ("anonymous", &mut anonymous),
        ("revoked", &mut revoked),
        ("disabled", &mut disabled),
        ("expired", &mut expired),
    ] {
        for (action, code) in try_account_calls(api, &serial).await {
            assert_eq!(code, Code::Unauthenticated, "{who} {action}");
        }
    }
    for (who, api) in [("member", &mut w.mem_a), ("other tenant", &mut w.op_a)] {
        for (action, code) in try_account_calls(api, &serial).await {
            let want = if action == "user.whoami" {
                Code::Ok
            } else {
                Code::PermissionDenied
            };
            assert_eq!(code, want, "{who} {action}");
        }
    }

    // Nothing changed: mem-b is an enabled member, her certificate active
    // and alone.
    let users = w
        .admin
        .users
        .list_users(pb::ListUsersRequest {
            tenant: "asso-b".into(),
        })
        .await?
        .into_inner()
        .users;
    let mem_b = users
        .iter()
        .find(|u| u.name == "mem-b")
        .context("mem-b still exists")?;
    assert_eq!(mem_b.role, pb::Role::Member as i32);
    assert!(!mem_b.disabled);
    let certs = w
        .admin
        .users
        .list_user_certificates(pb::ListUserCertificatesRequest {
            user: "mem-b".into(),
            all: false,
        })
        .await?
        .into_inner()
        .certificates;
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert!(!certs[0].revoked);
    Ok(())
}

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
    NodeRemove,
    NodeGet,
    TenantCreate,
    TenantGet,
    UserCreate,
    UserList,
    TokenCreateFor,
    TokenRevoke,
    AuditList,
}

impl Op {
    fn family(self) -> &'static str {
        match self {
            Op::SiteCreate | Op::SiteList => "sites",
            Op::JoinTokenCreate | Op::NodeDrain | Op::NodeRemove | Op::NodeGet => "nodes",
            Op::TenantCreate | Op::TenantGet => "tenants",
            Op::UserCreate | Op::UserList => "users",
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
            Op::NodeRemove => ("node.remove", true),
            Op::NodeGet => ("node.show", false),
            Op::TenantCreate => ("tenant.create", true),
            Op::TenantGet => ("tenant.show", false),
            Op::UserCreate => ("user.create", true),
            Op::UserList => ("user.list", false),
            Op::TokenCreateFor => ("token.create", true),
            Op::TokenRevoke => ("token.revoke", true),
            Op::AuditList => ("audit.list", false),
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
    // Nodes to remove: one granted to each association's operator (which
    // members and operators try, and must fail, to remove), and two for
    // the admin's removals, so that the others stay live for the matrix.
    for n in ["rm-a", "rm-b", "rm-admin-a", "rm-admin-b"] {
        let t = join_token(&mut admin, "paris-1", 600).await?;
        enroll_raw(&ctl, &t, n).await?;
    }
    for (u, n) in [
        ("op-a", "n-a"),
        ("op-b", "n-b"),
        ("op-a", "rm-a"),
        ("op-b", "rm-b"),
    ] {
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
    let op_a = ctl.api(&op_a).await?;
    let mem_a = ctl.api(&mem_a).await?;
    Ok(World {
        ctl,
        admin,
        op_a,
        mem_a,
        op_b_token_ids,
        own_token_ids,
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
        Op::NodeRemove => {
            let node = match (who, own) {
                (Who::Admin, true) => "rm-admin-a",
                (Who::Admin, false) => "rm-admin-b",
                (_, true) => "rm-a",
                (_, false) => "rm-b",
            };
            api.nodes
                .remove_node(pb::RemoveNodeRequest {
                    name: node.into(),
                    // Confirmed as asked: only the role may refuse it.
                    confirm: node.into(),
                })
                .await
                .map(drop)
        }
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
            | Op::NodeRemove
            | Op::TenantCreate
            | Op::UserCreate,
        ) => false,
        (Who::Operator, Op::NodeGet) => own,
        (Who::Member, Op::NodeGet) => false,
        (_, Op::TenantGet | Op::UserList | Op::AuditList) => own,
        // One's own tokens: yes; another user's: admin work.
        (_, Op::TokenCreateFor | Op::TokenRevoke) => own,
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
        Op::NodeRemove,
        Op::NodeGet,
        Op::TenantCreate,
        Op::TenantGet,
        Op::UserCreate,
        Op::UserList,
        Op::TokenCreateFor,
        Op::TokenRevoke,
        Op::AuditList,
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
    assert_eq!(families.len(), 6);
    // The refused removals changed nothing; the admin's went through.
    for (name, removed) in [
        ("rm-a", false),
        ("rm-b", false),
        ("rm-admin-a", true),
        ("rm-admin-b", true),
    ] {
        let n = node(&mut w.admin, name).await?;
        assert_eq!(n.removed_unix > 0, removed, "{name}: {n:?}");
        assert_eq!(
            n.status == pb::NodeStatus::Removed as i32,
            removed,
            "{name}: {n:?}"
        );
    }
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
        ["n-a", "rm-a"]
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

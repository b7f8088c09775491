//! The authorization matrix: each role (and a caller without credentials)
//! x each API family x its own or another association, checking both the
//! answer and the audit entry; and what a refusal tells: nothing about
//! another association (an object of theirs found by id reads as one that
//! does not exist).

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use tonic::Code;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Admin,
    Operator,
    Member,
    /// No credential at all.
    Anonymous,
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
    TenantRenew,
    TenantSuspend,
    TenantResume,
    UserCreate,
    UserList,
    TokenCreateFor,
    TokenRevoke,
    AuditList,
    VolumeGetById,
    RequestGet,
    RequestComment,
    UserSetRole,
    UserDisable,
    UserEnable,
    UserDelete,
    CertIssue,
    CertList,
    CertRevoke,
}

/// What the policy answers a call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Allowed,
    /// PermissionDenied, for a refusal decided on what the caller sent.
    Denied,
    /// NotFound, word for word what a missing object gives: the object
    /// was found by an id and belongs to someone the caller may not see.
    Hidden,
    /// Unauthenticated: no credential, refused before any policy.
    Unauthenticated,
}

impl Op {
    fn family(self) -> &'static str {
        match self {
            Op::SiteCreate | Op::SiteList => "sites",
            Op::JoinTokenCreate | Op::NodeDrain | Op::NodeRemove | Op::NodeGet => "nodes",
            Op::TenantCreate
            | Op::TenantGet
            | Op::TenantRenew
            | Op::TenantSuspend
            | Op::TenantResume => "tenants",
            Op::UserCreate
            | Op::UserList
            | Op::UserSetRole
            | Op::UserDisable
            | Op::UserEnable
            | Op::UserDelete => "users",
            Op::CertIssue | Op::CertList | Op::CertRevoke => "certificates",
            Op::TokenCreateFor | Op::TokenRevoke => "tokens",
            Op::AuditList => "audit",
            Op::VolumeGetById => "storage",
            Op::RequestGet | Op::RequestComment => "apps",
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
            Op::TenantRenew => ("tenant.renew", true),
            Op::TenantSuspend => ("tenant.suspend", true),
            Op::TenantResume => ("tenant.resume", true),
            Op::UserCreate => ("user.create", true),
            Op::UserList => ("user.list", false),
            Op::TokenCreateFor => ("token.create", true),
            Op::TokenRevoke => ("token.revoke", true),
            Op::AuditList => ("audit.list", false),
            Op::VolumeGetById => ("volume.show", false),
            Op::RequestGet => ("app.request.show", false),
            Op::RequestComment => ("app.request.comment", true),
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
    anon: Api,
    op_b_token_ids: Vec<String>,
    own_token_ids: std::collections::HashMap<&'static str, Vec<String>>,
    /// Volume asso-a/data on n-a and asso-b/data on n-b, by id.
    volume_ids: Own<String>,
    /// A pending request of each tenant for the site app.
    request_ids: Own<u64>,
    op_b_cert_serials: Vec<String>,
    own_cert_serials: std::collections::HashMap<&'static str, Vec<String>>,
}

/// One for the caller's own association (asso-a), one for the other.
struct Own<T> {
    own: T,
    other: T,
}

impl<T: Clone> Own<T> {
    fn pick(&self, own: bool) -> T {
        if own {
            self.own.clone()
        } else {
            self.other.clone()
        }
    }
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
    let mut volume_ids = Vec::new();
    let mut request_ids = Vec::new();
    for (tenant, node) in [("asso-a", "n-a"), ("asso-b", "n-b")] {
        create_pool(&mut admin, node, "tank", apb::PoolKind::Zfs, "serial:d1").await?;
        let v = create_volume(
            &mut admin,
            NewVolume {
                tenant,
                name: "data",
                node,
                pool: "tank",
                size_bytes: 1 << 30,
                encrypted: false,
            },
        )
        .await?;
        volume_ids.push(v.id);
        let r = admin
            .apps
            .request_app(pb::RequestAppRequest {
                tenant: tenant.into(),
                app: "site".into(),
                node: node.into(),
                volume: String::new(),
                comment: String::new(),
            })
            .await?
            .into_inner();
        request_ids.push(r.id);
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
    let anon = ctl.anonymous().await?;
    Ok(World {
        ctl,
        admin,
        op_a,
        mem_a,
        anon,
        op_b_token_ids,
        own_token_ids,
        volume_ids: Own {
            own: volume_ids[0].clone(),
            other: volume_ids[1].clone(),
        },
        request_ids: Own {
            own: request_ids[0],
            other: request_ids[1],
        },
        op_b_cert_serials,
        own_cert_serials,
    })
}

/// Runs one call; Ok(()) when allowed, the refusal otherwise.
async fn call(
    w: &mut World,
    who: Who,
    op: Op,
    own: bool,
    n: usize,
) -> std::result::Result<(), tonic::Status> {
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
        // Refused before it is looked at.
        (Op::TokenRevoke, _) if who == Who::Anonymous => "tok-anything".to_string(),
        (Op::TokenRevoke, true) => w
            .own_token_ids
            .get_mut(who_name(who))
            .and_then(Vec::pop)
            .expect("enough tokens to revoke"),
        (Op::TokenRevoke, false) => w.op_b_token_ids.pop().expect("enough tokens to revoke"),
        _ => String::new(),
    };
    let volume_id = w.volume_ids.pick(own);
    let request_id = w.request_ids.pick(own);
    let serial = match (op, own) {
        // Refused before it is looked at.
        (Op::CertRevoke, _) if who == Who::Anonymous => "abcd".to_string(),
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
        Who::Anonymous => &mut w.anon,
    };
    match op {
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
        Op::TenantRenew => api
            .tenants
            .renew_membership(pb::RenewMembershipRequest {
                name: tenant.into(),
                membership_expires: "2099-06-30".into(),
            })
            .await
            .map(drop),
        Op::TenantSuspend => api
            .tenants
            .suspend_tenant(pb::SuspendTenantRequest {
                name: tenant.into(),
                reason: format!("matrix {tag}"),
            })
            .await
            .map(drop),
        Op::TenantResume => api
            .tenants
            .resume_tenant(pb::ResumeTenantRequest {
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
        Op::VolumeGetById => api
            .storage
            .get_volume(pb::VolumeRef { volume: volume_id })
            .await
            .map(drop),
        Op::RequestGet => api
            .apps
            .get_request(pb::GetRequestRequest { id: request_id })
            .await
            .map(drop),
        Op::RequestComment => api
            .apps
            .comment_request(pb::CommentRequestRequest {
                id: request_id,
                text: format!("comment {tag}"),
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
    }
}

/// The name a missing object of `op` has in its NotFound answer.
fn missing_name(w: &World, op: Op, own: bool, token_id: &str) -> String {
    match op {
        Op::TokenRevoke => format!("api token {token_id:?}"),
        Op::VolumeGetById => format!("volume {:?}", w.volume_ids.pick(own)),
        Op::RequestGet | Op::RequestComment => format!("request \"{}\"", w.request_ids.pick(own)),
        _ => unreachable!("{op:?} hides nothing"),
    }
}

fn who_name(w: Who) -> &'static str {
    match w {
        Who::Admin => "admin",
        Who::Operator => "op-a",
        Who::Member => "mem-a",
        Who::Anonymous => "anonymous",
    }
}

/// The actor its audit entries name.
fn actor(w: Who) -> String {
    match w {
        Who::Anonymous => "anonymous".to_string(),
        _ => format!("user:{}", who_name(w)),
    }
}

/// The policy, written independently of the controller's code.
fn expected(who: Who, op: Op, own: bool) -> Expect {
    let own_only = if own { Expect::Allowed } else { Expect::Denied };
    // Found by id, someone else's reads as missing.
    let own_or_hidden = if own { Expect::Allowed } else { Expect::Hidden };
    match (who, op) {
        (Who::Anonymous, _) => Expect::Unauthenticated,
        (Who::Admin, _) => Expect::Allowed,
        (_, Op::SiteList) => Expect::Allowed,
        (
            _,
            Op::SiteCreate
            | Op::JoinTokenCreate
            | Op::NodeDrain
            | Op::NodeRemove
            | Op::TenantCreate
            | Op::TenantRenew
            | Op::TenantSuspend
            | Op::TenantResume
            | Op::UserCreate
            | Op::UserSetRole
            | Op::UserDisable
            | Op::UserEnable
            | Op::UserDelete,
        ) => Expect::Denied,
        (Who::Operator, Op::NodeGet) => own_only,
        (Who::Member, Op::NodeGet) => Expect::Denied,
        (_, Op::TenantGet | Op::UserList | Op::AuditList) => own_only,
        // One's own tokens and certificates: yes; another user's: admin work.
        (_, Op::TokenCreateFor | Op::CertIssue | Op::CertList | Op::CertRevoke) => own_only,
        (_, Op::TokenRevoke | Op::VolumeGetById | Op::RequestGet | Op::RequestComment) => {
            own_or_hidden
        }
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
        Op::TenantRenew,
        Op::TenantSuspend,
        Op::TenantResume,
        Op::UserCreate,
        Op::UserList,
        Op::TokenCreateFor,
        Op::TokenRevoke,
        Op::AuditList,
        Op::VolumeGetById,
        Op::RequestGet,
        Op::RequestComment,
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
    for who in [Who::Admin, Who::Operator, Who::Member, Who::Anonymous] {
        for op in ops {
            for own in [true, false] {
                n += 1;
                families.insert(op.family());
                let expect = expected(who, op, own);
                let allowed = expect == Expect::Allowed;
                let (action, mutation) = op.action();
                let before = audit_entries(&mut w.admin, &actor(who)).await?;
                let written_before = before.iter().filter(|e| e.action == action).count();
                if who == Who::Anonymous {
                    // Each in a minute of its own: a few refusals per
                    // address and minute get an entry each (tests/limits.rs
                    // has the rest).
                    w.ctl.clock.advance_secs(61);
                }
                // Read before the call: a revocation pops the token it uses.
                let token_id = match (op, own) {
                    (Op::TokenRevoke, true) => w
                        .own_token_ids
                        .get(who_name(who))
                        .and_then(|ids| ids.last().cloned()),
                    (Op::TokenRevoke, false) => w.op_b_token_ids.last().cloned(),
                    _ => None,
                }
                .unwrap_or_default();
                let got = call(&mut w, who, op, own, n).await;
                let ctx = format!("{who:?} {op:?} own={own}");
                match (expect, got) {
                    (Expect::Allowed, Ok(())) => {}
                    (Expect::Denied, Err(s)) if s.code() == Code::PermissionDenied => {}
                    (Expect::Unauthenticated, Err(s)) if s.code() == Code::Unauthenticated => {}
                    (Expect::Hidden, Err(s)) if s.code() == Code::NotFound => {
                        let missing = missing_name(&w, op, own, &token_id);
                        assert_eq!(s.message(), format!("{missing} not found"), "{ctx}");
                    }
                    (expect, got) => panic!("{ctx}: expected {expect:?}, got {got:?}"),
                }
                let entries = audit_entries(&mut w.admin, &actor(who)).await?;
                if allowed && !mutation {
                    continue;
                }
                let written = entries.iter().filter(|e| e.action == action).count();
                assert_eq!(written, written_before + 1, "{ctx}: one new entry {action}");
                let e = entries
                    .iter()
                    .find(|e| e.action == action)
                    .unwrap_or_else(|| panic!("{ctx}: no audit entry {action}"));
                let want = if allowed {
                    pb::AuditOutcome::Allowed
                } else {
                    pb::AuditOutcome::Denied
                } as i32;
                assert_eq!(e.outcome, want, "{ctx}: audit outcome of {e:?}");
                assert_eq!(e.actor, actor(who));
                if who == Who::Anonymous {
                    assert!(e.detail.contains("not authenticated"), "{ctx}: {e:?}");
                    assert!(e.detail.ends_with("(from 127.0.0.1)"), "{ctx}: {e:?}");
                } else if !allowed {
                    assert!(e.detail.contains("permission denied"), "{ctx}: {e:?}");
                }
            }
        }
    }
    assert_eq!(families.len(), 9);
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

/// The answer to `found` (something of asso-b's, or a node op-a and mem-a
/// may not see) must be the answer to `missing` (an identifier naming
/// nothing), word for word but for the identifier itself.
fn same_refusal<T: std::fmt::Debug>(
    what: &str,
    found: (&str, std::result::Result<T, tonic::Status>),
    missing: (&str, std::result::Result<T, tonic::Status>),
) -> tonic::Status {
    let refused = found.1.expect_err(what);
    let unknown = missing.1.expect_err(what);
    assert_eq!(
        refused.code(),
        unknown.code(),
        "{what}: {refused} / {unknown}"
    );
    assert_eq!(
        refused.message(),
        unknown.message().replace(missing.0, found.0),
        "{what}"
    );
    for secret in ["asso-b", "op-b", "mem-b"] {
        assert!(!refused.message().contains(secret), "{what}: {refused}");
    }
    refused
}

#[tokio::test]
async fn refusals_tell_nothing_of_another_association() -> Result<()> {
    let mut w = world().await?;
    let op_b_token = w.op_b_token_ids[0].clone();
    let other_volume = w.volume_ids.other.clone();
    let other_request = w.request_ids.other;
    for api in [w.mem_a.clone(), w.op_a.clone()] {
        let mut api = api;
        // Another user's API token, by id: not who holds it, not even that
        // it exists.
        let found = api
            .tokens
            .revoke_token(pb::RevokeTokenRequest {
                id: op_b_token.clone(),
            })
            .await;
        let missing = api
            .tokens
            .revoke_token(pb::RevokeTokenRequest {
                id: "tok-000000000000".into(),
            })
            .await;
        let s = same_refusal("token", (&op_b_token, found), ("tok-000000000000", missing));
        assert_eq!(s.code(), Code::NotFound);
        // Another association's volume, by id.
        let found = api
            .storage
            .get_volume(pb::VolumeRef {
                volume: other_volume.clone(),
            })
            .await;
        let missing = api
            .storage
            .get_volume(pb::VolumeRef {
                volume: "0123456789abcdef".into(),
            })
            .await;
        same_refusal(
            "volume",
            (&other_volume, found),
            ("0123456789abcdef", missing),
        );
        // Another association's install request, by its number (they
        // are sequential, so the next one is easy to guess).
        let found = api
            .apps
            .get_request(pb::GetRequestRequest { id: other_request })
            .await;
        let missing = api
            .apps
            .get_request(pb::GetRequestRequest { id: 999_999 })
            .await;
        same_refusal(
            "request",
            (&other_request.to_string(), found),
            ("999999", missing),
        );
        let found = api
            .apps
            .comment_request(pb::CommentRequestRequest {
                id: other_request,
                text: "hello".into(),
            })
            .await;
        let missing = api
            .apps
            .comment_request(pb::CommentRequestRequest {
                id: 999_999,
                text: "hello".into(),
            })
            .await;
        same_refusal(
            "comment",
            (&other_request.to_string(), found),
            ("999999", missing),
        );
        // A node they may not see: the same answer as no node at all.
        let found = api
            .nodes
            .get_node(pb::GetNodeRequest { name: "n-b".into() })
            .await;
        let missing = api
            .nodes
            .get_node(pb::GetNodeRequest {
                name: "ghost".into(),
            })
            .await;
        same_refusal("node", ("n-b", found), ("ghost", missing));
        // Asking for an app on a node: whether it exists is not told either.
        let ask = |node: &str| pb::RequestAppRequest {
            tenant: "asso-a".into(),
            app: "site".into(),
            node: node.into(),
            volume: String::new(),
            comment: String::new(),
        };
        let found = api.apps.request_app(ask("n-b")).await;
        let missing = api.apps.request_app(ask("ghost")).await;
        same_refusal("app request", ("n-b", found), ("ghost", missing));
    }
    // The refusals are in asso-b's audit log, where its people and the
    // admins read them; asso-a's shows none of it.
    let b = tenant_audit(&mut w.admin, "asso-b").await?;
    for action in ["token.revoke", "app.request.comment"] {
        assert!(
            has_audit_entry(&b, "user:mem-a", action, pb::AuditOutcome::Denied),
            "{action}: {b:#?}"
        );
    }
    let own_view = w
        .mem_a
        .audit
        .list_audit(pb::ListAuditRequest::default())
        .await?
        .into_inner()
        .entries;
    assert!(
        own_view.iter().all(|e| e.tenant == "asso-a"),
        "{own_view:#?}"
    );
    drop(w.ctl);
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

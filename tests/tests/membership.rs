//! Membership (issue 10, item 8), with the clock moved rather than waited
//! for: an association whose membership expired is warned on every answer
//! and shows as expired to the admins (`tenant list`, the audit log, once
//! per transition); past `membership_grace_days` it is frozen: its users
//! read but change nothing (revoking a token excepted), its apps keep
//! running on their node and nothing is deleted. Only an admin suspends a
//! tenant's apps (sent stopped to the node, kept) and resumes them; a
//! renewal makes it current again. Through the API with a raw agent
//! session, then through the `coloc` binary.

use std::time::Duration;

use coloc_controller::config::ControllerConfig;
use coloc_controller::time::date_of;
use coloc_proto::TENANT_NOTICE_HEADER;
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::cli::{Coloc, cells, row, stderr, text};
use coloc_tests::*;
use tonic::Code;

const DAY: i64 = 86_400;
const GRACE_DAYS: u32 = 10;
const DEADLINE: Duration = Duration::from_secs(20);

const NOTES: &str = r#"
name = "notes"
description = "Shared notes"
replaces = "Google Keep"
packages = ["notes-server"]
offers = ["responsable", "participatif"]

[service]
exec = "/usr/bin/notes-server"
args = ["--listen", "127.0.0.1:{port}", "--data", "{data}"]

[health]
tcp = true

[resources]
memory = "64M"
cpu_percent = 10

[web]
auth = "own"
"#;

/// A controller with `membership_grace_days = 10` and a catalog of
/// `notes`, node n1 (raw session) with a pool, and asso-a (participatif),
/// paid until tomorrow, with volume data on n1, operator op-a granted n1
/// and member mem-a; asso-b, paid for years, with member mem-b.
struct World {
    ctl: TestController,
    _catalog: tempfile::TempDir,
    admin: Api,
    agent: RawAgent,
    op_a: Api,
    mem_a: Api,
    mem_b: Api,
    tokens: Tokens,
    /// When the world was made; the membership ends the day after.
    t0: i64,
}

/// The secrets, for the `coloc` binary.
struct Tokens {
    op_a: String,
    mem_a: String,
}

async fn world() -> Result<World> {
    init_test_logging();
    let catalog = tempfile::tempdir()?;
    std::fs::write(catalog.path().join("notes.toml"), NOTES)?;
    let ctl = TestController::start_with(ControllerConfig {
        catalog_dir: Some(catalog.path().to_owned()),
        membership_grace_days: GRACE_DAYS,
        ..fast_config()
    })
    .await?;
    let t0 = ctl.now();
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 600).await?;
    let agent = RawAgent::enroll(&ctl, &token, "n1").await?;
    agent
        .wait_desired("first configuration", |d| d.generation == 1)
        .await?;
    create_pool(&mut admin, "n1", "tank", apb::PoolKind::Zfs, "serial:n1-1").await?;
    admin
        .tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "asso-a".into(),
            display_name: String::new(),
            offer: pb::Offer::Participatif as i32,
            membership_expires: date_of(t0 + DAY),
        })
        .await?;
    create_tenant(&mut admin, "asso-b", pb::Offer::Participatif).await?;
    admin
        .storage
        .create_volume(pb::CreateVolumeRequest {
            tenant: "asso-a".into(),
            name: "data".into(),
            node: "n1".into(),
            pool: "tank".into(),
            size_bytes: 1 << 30,
            reservation_bytes: 0,
            encrypted: false,
        })
        .await?;
    let op_a_token = create_user(&mut admin, "op-a", "asso-a", pb::Role::Operator).await?;
    admin
        .users
        .grant_node(pb::GrantNodeRequest {
            user: "op-a".into(),
            node: "n1".into(),
        })
        .await?;
    let mem_a_token = create_user(&mut admin, "mem-a", "asso-a", pb::Role::Member).await?;
    let mem_b_token = create_user(&mut admin, "mem-b", "asso-b", pb::Role::Member).await?;
    let w = World {
        op_a: ctl.api(&op_a_token).await?,
        mem_a: ctl.api(&mem_a_token).await?,
        mem_b: ctl.api(&mem_b_token).await?,
        tokens: Tokens {
            op_a: op_a_token,
            mem_a: mem_a_token,
        },
        _catalog: catalog,
        ctl,
        admin,
        agent,
        t0,
    };
    Ok(w)
}

/// The notices colocd attached to an answer or a refusal.
fn notices(metadata: &tonic::metadata::MetadataMap) -> Vec<String> {
    metadata
        .get_all(TENANT_NOTICE_HEADER)
        .iter()
        .map(|v| v.to_str().expect("notices are ASCII").to_string())
        .collect()
}

fn iref(instance: &str) -> pb::InstanceRef {
    pb::InstanceRef {
        instance: instance.into(),
    }
}

fn notes(d: &apb::DesiredConfig) -> Option<&apb::AppSpec> {
    d.apps
        .iter()
        .find(|a| a.tenant == "asso-a" && a.app == "notes")
}

fn is_notes(d: &apb::DesiredConfig, state: apb::AppState) -> bool {
    notes(d).is_some_and(|a| a.state == state as i32)
}

fn new_volume(name: &str) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        tenant: "asso-a".into(),
        name: name.into(),
        node: "n1".into(),
        pool: "tank".into(),
        size_bytes: 1 << 30,
        reservation_bytes: 0,
        encrypted: false,
    }
}

/// How many entries of `action` the audit log holds about asso-a.
async fn count(admin: &mut Api, action: &str) -> Result<usize> {
    Ok(tenant_audit(admin, "asso-a")
        .await?
        .iter()
        .filter(|e| e.action == action)
        .count())
}

/// Waits for the `membership` task's entry `action` about asso-a.
async fn wait_noted(admin: &Api, action: &str) -> Result<pb::AuditEntry> {
    wait_for(action, DEADLINE, || {
        let mut admin = admin.clone();
        async move {
            tenant_audit(&mut admin, "asso-a")
                .await
                .ok()?
                .into_iter()
                .find(|e| e.action == action && e.actor == "system")
        }
    })
    .await
}

/// Waits until the `membership` task has run `n` more times.
async fn wait_task_runs(admin: &Api, n: u64) -> Result<()> {
    let runs = |admin: Api| async move {
        let mut admin = admin;
        let all = admin.tasks.list_tasks(pb::ListTasksRequest {}).await.ok()?;
        all.into_inner()
            .tasks
            .into_iter()
            .find(|t| t.name == "membership")
            .map(|t| t.runs)
    };
    let first = runs(admin.clone()).await.context("no membership task")?;
    wait_for("membership task runs", DEADLINE, || {
        let admin = admin.clone();
        async move { runs(admin).await.filter(|r| *r >= first + n) }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_expired_membership_warns_then_freezes_and_only_admins_suspend() -> Result<()> {
    let mut w = world().await?;
    let frozen_from = date_of(w.t0 + (2 + i64::from(GRACE_DAYS)) * DAY);

    // The app runs; current members are told nothing.
    let r = w
        .op_a
        .apps
        .request_app(pb::RequestAppRequest {
            tenant: "asso-a".into(),
            app: "notes".into(),
            node: "n1".into(),
            volume: "data".into(),
            comment: "please".into(),
        })
        .await?
        .into_inner();
    w.admin
        .apps
        .approve_request(pb::DecideRequestRequest {
            id: r.id,
            comment: String::new(),
        })
        .await?;
    let running = w
        .agent
        .wait_desired("notes running", |d| is_notes(d, apb::AppState::Running))
        .await?;
    let running = notes(&running).cloned().expect("notes");
    let answer = w
        .mem_a
        .tenants
        .get_tenant(pb::GetTenantRequest {
            name: "asso-a".into(),
        })
        .await?;
    assert!(notices(answer.metadata()).is_empty());
    assert_eq!(
        answer.into_inner().membership_state,
        pb::MembershipState::Current as i32
    );
    let spare = w
        .op_a
        .tokens
        .create_token(pb::CreateTokenRequest {
            user: String::new(),
            description: "spare".into(),
            ttl_secs: 0,
        })
        .await?
        .into_inner();
    let (_, csr) = key_and_csr("op-a")?;
    let spare_cert = w
        .op_a
        .users
        .issue_user_certificate(pb::IssueUserCertificateRequest {
            user: "op-a".into(),
            csr_pem: csr.clone(),
            ttl_secs: 0,
        })
        .await?
        .into_inner();

    // ---- Expired: warned on every answer, still allowed to change things.
    w.ctl.set_now(w.t0 + 3 * DAY);
    let answer = w
        .mem_a
        .apps
        .list_instances(pb::ListInstancesRequest::default())
        .await?;
    let said = notices(answer.metadata());
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with(&format!(
            "the membership of association asso-a was paid until {} and has expired: renew it \
             before {frozen_from}",
            date_of(w.t0 + DAY)
        )),
        "{said:?}"
    );
    // A refusal carries it too; another association hears nothing.
    let refused = w
        .mem_a
        .tenants
        .get_tenant(pb::GetTenantRequest {
            name: "asso-b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(notices(refused.metadata()), said);
    let b = w
        .mem_b
        .tenants
        .get_tenant(pb::GetTenantRequest {
            name: "asso-b".into(),
        })
        .await?;
    assert!(notices(b.metadata()).is_empty());
    // Admins see it in the list and, once, in the audit log.
    let list = w
        .admin
        .tenants
        .list_tenants(pb::ListTenantsRequest {})
        .await?;
    assert!(notices(list.metadata()).is_empty(), "admins have no tenant");
    let a = list
        .into_inner()
        .tenants
        .into_iter()
        .find(|t| t.name == "asso-a")
        .expect("asso-a listed");
    assert_eq!(a.membership_state, pb::MembershipState::Expired as i32);
    assert!(a.membership_expired);
    assert_eq!(a.frozen_from, frozen_from);
    let entry = wait_noted(&w.admin, "tenant.membership.expired").await?;
    assert_eq!(entry.target, "tenant:asso-a");
    assert!(
        entry.detail.contains(&format!("frozen from {frozen_from}")),
        "{entry:?}"
    );
    // Still allowed: only warned.
    w.op_a.storage.create_volume(new_volume("extra")).await?;
    // Only admins suspend, resume or renew.
    for api in [&mut w.op_a, &mut w.mem_a] {
        let err = api
            .tenants
            .suspend_tenant(pb::SuspendTenantRequest {
                name: "asso-a".into(),
                reason: "no".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        let err = api
            .tenants
            .resume_tenant(pb::ResumeTenantRequest {
                name: "asso-a".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        let err = api
            .tenants
            .renew_membership(pb::RenewMembershipRequest {
                name: "asso-a".into(),
                membership_expires: "2099-12-31".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    }

    // ---- Frozen: reads work, changes are refused, apps keep running.
    w.ctl.set_now(w.t0 + 14 * DAY);
    let frozen_text = format!(
        "association asso-a is frozen since {frozen_from}: its membership was paid until {} \
         and not renewed; renew it to make changes (reading works and its apps keep running)",
        date_of(w.t0 + DAY)
    );
    let answer = w
        .op_a
        .apps
        .list_instances(pb::ListInstancesRequest::default())
        .await?;
    assert_eq!(
        notices(answer.metadata()),
        std::slice::from_ref(&frozen_text)
    );
    let instances = answer.into_inner().instances;
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].state, pb::InstanceState::Running as i32);
    let volumes_before = w
        .op_a
        .storage
        .list_volumes(pb::ListVolumesRequest::default())
        .await?
        .into_inner()
        .volumes;
    assert_eq!(volumes_before.len(), 2);
    let err = w
        .op_a
        .storage
        .create_volume(new_volume("more"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert_eq!(err.message(), frozen_text);
    let err = w
        .op_a
        .apps
        .stop_instance(iref("asso-a/notes"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let err = w
        .op_a
        .tokens
        .create_token(pb::CreateTokenRequest {
            user: String::new(),
            description: "one more".into(),
            ttl_secs: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let err = w
        .mem_a
        .apps
        .request_app(pb::RequestAppRequest {
            tenant: "asso-a".into(),
            app: "notes".into(),
            node: "n1".into(),
            volume: "extra".into(),
            comment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    // ... but a leaked token can still be cut off.
    let revoked = w
        .op_a
        .tokens
        .revoke_token(pb::RevokeTokenRequest {
            id: spare.id.clone(),
        })
        .await?
        .into_inner();
    assert!(revoked.revoked);
    // A certificate too, while a new one waits for the renewal.
    let err = w
        .op_a
        .users
        .issue_user_certificate(pb::IssueUserCertificateRequest {
            user: "op-a".into(),
            csr_pem: csr,
            ttl_secs: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let revoked = w
        .op_a
        .users
        .revoke_user_certificate(pb::RevokeUserCertificateRequest {
            serial: spare_cert.serial.clone(),
        })
        .await?
        .into_inner();
    assert!(revoked.revoked, "{revoked:?}");
    // Nothing changed: the same volumes, the app still wanted running.
    let volumes_after = w
        .op_a
        .storage
        .list_volumes(pb::ListVolumesRequest::default())
        .await?
        .into_inner()
        .volumes;
    assert_eq!(volumes_after, volumes_before);
    // The refusals are in the audit log, as denials of asso-a.
    let entries = tenant_audit(&mut w.admin, "asso-a").await?;
    assert!(has_audit_entry(
        &entries,
        "user:op-a",
        "volume.create",
        pb::AuditOutcome::Denied
    ));
    let entry = wait_noted(&w.admin, "tenant.membership.frozen").await?;
    assert!(entry.detail.contains("its apps keep running"), "{entry:?}");
    // A node that connects again is told the same: the app runs.
    let agent = w.agent.reconnect(&w.ctl).await?;
    let d = agent
        .wait_desired("notes still running", |d| {
            is_notes(d, apb::AppState::Running)
        })
        .await?;
    assert_eq!(notes(&d), Some(&running));
    // Each transition is audited once, whatever the passes.
    wait_task_runs(&w.admin, 2).await?;
    assert_eq!(count(&mut w.admin, "tenant.membership.expired").await?, 1);
    assert_eq!(count(&mut w.admin, "tenant.membership.frozen").await?, 1);

    // ---- Suspended by an admin: the app is sent stopped, nothing else
    // changes, and its users are told why.
    let err = w
        .op_a
        .tenants
        .suspend_tenant(pb::SuspendTenantRequest {
            name: "asso-a".into(),
            reason: "no".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "frozen first: {err}");
    let err = w
        .admin
        .tenants
        .suspend_tenant(pb::SuspendTenantRequest {
            name: "asso-a".into(),
            reason: "   ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "a reason is required: {err}"
    );
    let t = w
        .admin
        .tenants
        .suspend_tenant(pb::SuspendTenantRequest {
            name: "asso-a".into(),
            reason: "unpaid for two weeks".into(),
        })
        .await?
        .into_inner();
    assert!(t.suspended);
    assert_eq!(t.suspended_by, "admin");
    assert_eq!(t.suspended_reason, "unpaid for two weeks");
    let d = agent
        .wait_desired("notes stopped", |d| is_notes(d, apb::AppState::Stopped))
        .await?;
    let mut stopped = notes(&d).cloned().expect("notes is kept");
    stopped.state = running.state;
    assert_eq!(stopped, running, "only the state changes");
    let answer = w.mem_a.apps.get_instance(iref("asso-a/notes")).await?;
    let said = notices(answer.metadata());
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(said[1].starts_with("the cooperative's admins suspended association asso-a"));
    let i = answer.into_inner();
    assert_eq!(i.state, pb::InstanceState::Running as i32);
    assert!(i.tenant_suspended);
    let entries = tenant_audit(&mut w.admin, "asso-a").await?;
    assert!(has_audit_entry(
        &entries,
        "user:admin",
        "tenant.suspend",
        pb::AuditOutcome::Allowed
    ));
    assert!(has_audit_entry(
        &entries,
        "user:op-a",
        "tenant.suspend",
        pb::AuditOutcome::Denied
    ));

    // ---- Renewed, then resumed: current again, the app runs again.
    let err = w
        .admin
        .tenants
        .renew_membership(pb::RenewMembershipRequest {
            name: "asso-a".into(),
            membership_expires: date_of(w.t0),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "in the past: {err}");
    let renewed_until = date_of(w.t0 + 380 * DAY);
    let t = w
        .admin
        .tenants
        .renew_membership(pb::RenewMembershipRequest {
            name: "asso-a".into(),
            membership_expires: renewed_until.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(t.membership_state, pb::MembershipState::Current as i32);
    // Still suspended: starting the app is refused with the reason.
    let err = w
        .op_a
        .apps
        .start_instance(iref("asso-a/notes"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("suspended"), "{err}");
    assert_eq!(notices(err.metadata()).len(), 1, "the suspension only");
    let err = w
        .mem_a
        .tenants
        .resume_tenant(pb::ResumeTenantRequest {
            name: "asso-a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let t = w
        .admin
        .tenants
        .resume_tenant(pb::ResumeTenantRequest {
            name: "asso-a".into(),
        })
        .await?
        .into_inner();
    assert!(!t.suspended);
    let d = agent
        .wait_desired("notes running again", |d| {
            is_notes(d, apb::AppState::Running)
        })
        .await?;
    assert_eq!(notes(&d), Some(&running));
    let answer = w.op_a.storage.create_volume(new_volume("more")).await?;
    assert!(notices(answer.metadata()).is_empty());
    let entries = tenant_audit(&mut w.admin, "asso-a").await?;
    for action in ["tenant.renew", "tenant.resume"] {
        assert!(
            has_audit_entry(&entries, "user:admin", action, pb::AuditOutcome::Allowed),
            "{action}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn coloc_warns_members_and_shows_admins_the_standing() -> Result<()> {
    let w = world().await?;
    let coloc = Coloc::new(&w.ctl).await?;
    let admin = coloc.user(&w.ctl.admin_token);
    let op_a = coloc.user(&w.tokens.op_a);
    let mem_a = coloc.user(&w.tokens.mem_a);

    let out = mem_a.run(&["whoami"]).await;
    text(&out);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    w.ctl.set_now(w.t0 + 3 * DAY);
    let out = mem_a.run(&["volume", "list"]).await;
    text(&out);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one notice, once: {err}");
    assert!(
        err.starts_with("coloc: notice: the membership of association asso-a was paid until"),
        "{err}"
    );
    let table = admin.ok(&["tenant", "list"]).await;
    assert_eq!(cells(row(&table, "asso-a"))[3], "expired", "{table}");
    assert_eq!(cells(row(&table, "asso-b"))[3], "current", "{table}");
    let err = mem_a
        .fails(&["tenant", "suspend", "asso-a", "--reason", "test"], 4)
        .await;
    assert!(err.contains("permission denied"), "{err}");

    w.ctl.set_now(w.t0 + 14 * DAY);
    let err = op_a
        .fails(
            &[
                "volume", "create", "--tenant", "asso-a", "--name", "more", "--node", "n1",
                "--pool", "tank", "--size", "1G",
            ],
            6,
        )
        .await;
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [format!(
            "coloc: association asso-a is frozen since {}: its membership was paid until {} and \
             not renewed; renew it to make changes (reading works and its apps keep running)",
            date_of(w.t0 + 12 * DAY),
            date_of(w.t0 + DAY)
        )],
        "the refusal alone, not the notice again"
    );
    let shown = admin
        .ok(&["tenant", "suspend", "asso-a", "--reason", "unpaid"])
        .await;
    assert!(shown.contains("Suspended tenant"), "{shown}");
    let table = admin.ok(&["tenant", "list"]).await;
    assert_eq!(
        cells(row(&table, "asso-a"))[3],
        "frozen, suspended",
        "{table}"
    );
    let out = mem_a.run(&["tenant", "show", "asso-a"]).await;
    let shown = text(&out);
    assert!(shown.contains("by admin: unpaid"), "{shown}");
    assert_eq!(stderr(&out).lines().count(), 2, "{}", stderr(&out));
    // Frozen: refused before its role is even looked at.
    mem_a.fails(&["tenant", "resume", "asso-a"], 6).await;
    admin.ok(&["tenant", "resume", "asso-a"]).await;
    let renewed = date_of(w.t0 + 380 * DAY);
    admin
        .ok(&["tenant", "renew", "asso-a", "--expires", &renewed])
        .await;
    let out = mem_a.run(&["tenant", "list"]).await;
    assert!(text(&out).contains("current"));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    Ok(())
}

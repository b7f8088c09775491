//! Apps through a real colocd, with an agent session driven by hand: a
//! tenant asks for an app, the admins discuss and approve, the node's
//! desired configuration carries the rendered unit and the proxy, the
//! node's reports show up on the instance, and people start, stop,
//! restart, remove and read logs, each according to their role, all of it
//! in the audit log. The agent's own work (apt, systemd, Caddy) is tested
//! in agent/ and in the VM tests.

use std::path::Path;
use std::time::Duration;

use coloc_controller::config::ControllerConfig;
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use tonic::Code;

const GIB: u64 = 1 << 30;
const DEADLINE: Duration = Duration::from_secs(20);

/// Offered to both offers; its arguments carry the port, the data path and
/// the host name.
const NOTES: &str = r#"
name = "notes"
description = "Shared notes"
replaces = "Google Keep"
packages = ["notes-server", "python3-notes"]
package_units = ["notes-server.service"]
offers = ["responsable", "participatif"]

[service]
exec = "/usr/bin/notes-server"
args = ["--listen", "127.0.0.1:{port}", "--data", "{data}/db", "--public-url", "https://{hostname}/"]
environment = { HOME = "{data}", NOTES_TENANT = "{tenant}" }
data_dirs = ["db"]

[[files]]
name = "notes.conf"
content = "storage = {data}/db\n"

[health]
http = "/health"

[resources]
memory = "128M"
cpu_percent = 25

[web]
auth = "proxy"
"#;

/// Only for participatif tenants.
const WIKI: &str = r#"
name = "wiki"
description = "A wiki"
replaces = "Notion"
packages = ["wiki-server"]
offers = ["participatif"]

[service]
exec = "/usr/bin/wiki-server"
args = ["--port", "{port}"]

[health]
tcp = true

[resources]
memory = "64M"
cpu_percent = 10

[web]
auth = "own"
"#;

/// A controller on a catalog of `notes` and `wiki`, site paris-1, node n1
/// (raw session) and n2 (enrolled, never connected), a pool on each, and:
/// - asso-a (participatif): volume data on n1, volume web on n2; operator
///   op-a granted n1, member mem-a;
/// - asso-b (participatif): volume data on n1; operator op-b granted n1;
/// - asso-r (responsable, so no operators): volume data on n1; member
///   mem-r.
struct World {
    ctl: TestController,
    _catalog: tempfile::TempDir,
    admin: Api,
    agent: RawAgent,
    op_a: Api,
    mem_a: Api,
    op_b: Api,
    mem_r: Api,
    posix_a: u32,
}

fn write_catalog(dir: &Path, files: &[(&str, &str)]) -> Result<()> {
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// A user of the tenant with a client of their own; operators are granted
/// n1.
async fn user(
    ctl: &TestController,
    admin: &mut Api,
    name: &str,
    tenant: &str,
    role: pb::Role,
) -> Result<Api> {
    let token = create_user(admin, name, tenant, role).await?;
    if role == pb::Role::Operator {
        admin
            .users
            .grant_node(pb::GrantNodeRequest {
                user: name.into(),
                node: "n1".into(),
            })
            .await?;
    }
    ctl.api(&token).await
}

async fn world() -> Result<World> {
    init_test_logging();
    let catalog = tempfile::tempdir()?;
    write_catalog(
        catalog.path(),
        &[("notes.toml", NOTES), ("wiki.toml", WIKI)],
    )?;
    let ctl = TestController::start_with(ControllerConfig {
        catalog_dir: Some(catalog.path().to_owned()),
        ..fast_config()
    })
    .await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 600).await?;
    let agent = RawAgent::enroll(&ctl, &token, "n1").await?;
    let token = join_token(&mut admin, "paris-1", 600).await?;
    enroll_raw(&ctl, &token, "n2").await?;
    agent
        .wait_desired("first configuration", |d| d.generation == 1)
        .await?;
    for node in ["n1", "n2"] {
        let disk = format!("serial:{node}-1");
        create_pool(&mut admin, node, "tank", apb::PoolKind::Zfs, &disk).await?;
    }
    let posix_a = create_tenant(&mut admin, "asso-a", pb::Offer::Participatif)
        .await?
        .posix_id;
    create_tenant(&mut admin, "asso-b", pb::Offer::Participatif).await?;
    create_tenant(&mut admin, "asso-r", pb::Offer::Responsable).await?;
    for (tenant, name, node) in [
        ("asso-a", "data", "n1"),
        ("asso-a", "web", "n2"),
        ("asso-b", "data", "n1"),
        ("asso-r", "data", "n1"),
    ] {
        admin
            .storage
            .create_volume(pb::CreateVolumeRequest {
                tenant: tenant.into(),
                name: name.into(),
                node: node.into(),
                pool: "tank".into(),
                size_bytes: GIB,
                reservation_bytes: 0,
                encrypted: false,
            })
            .await?;
    }
    let op_a = user(&ctl, &mut admin, "op-a", "asso-a", pb::Role::Operator).await?;
    let mem_a = user(&ctl, &mut admin, "mem-a", "asso-a", pb::Role::Member).await?;
    let op_b = user(&ctl, &mut admin, "op-b", "asso-b", pb::Role::Operator).await?;
    let mem_r = user(&ctl, &mut admin, "mem-r", "asso-r", pb::Role::Member).await?;
    Ok(World {
        ctl,
        _catalog: catalog,
        admin,
        agent,
        op_a,
        mem_a,
        op_b,
        mem_r,
        posix_a,
    })
}

fn request(
    tenant: &str,
    app: &str,
    node: &str,
    volume: &str,
    comment: &str,
) -> pb::RequestAppRequest {
    pb::RequestAppRequest {
        tenant: tenant.into(),
        app: app.into(),
        node: node.into(),
        volume: volume.into(),
        comment: comment.into(),
    }
}

fn iref(instance: &str) -> pb::InstanceRef {
    pb::InstanceRef {
        instance: instance.into(),
    }
}

fn decide(id: u64, comment: &str) -> pb::DecideRequestRequest {
    pb::DecideRequestRequest {
        id,
        comment: comment.into(),
    }
}

/// Asks for `app` as `api` and has the admin approve it.
async fn deploy(
    world: &mut World,
    who: &str,
    tenant: &str,
    app: &str,
    node: &str,
    volume: &str,
) -> Result<pb::AppRequest> {
    let api = match who {
        "op-a" => &mut world.op_a,
        "mem-a" => &mut world.mem_a,
        "mem-r" => &mut world.mem_r,
        _ => &mut world.admin,
    };
    let r = api
        .apps
        .request_app(request(tenant, app, node, volume, "please"))
        .await?
        .into_inner();
    Ok(world
        .admin
        .apps
        .approve_request(decide(r.id, "approved"))
        .await?
        .into_inner())
}

fn app_spec<'a>(d: &'a apb::DesiredConfig, tenant: &str, app: &str) -> Option<&'a apb::AppSpec> {
    d.apps.iter().find(|a| a.tenant == tenant && a.app == app)
}

fn status(tenant: &str, app: &str, active: &str, sub: &str) -> apb::AppStatus {
    apb::AppStatus {
        memory_bytes: 12 << 20,
        healthy: active == "active",
        ..app_status(tenant, app, active, sub)
    }
}

fn code<T: std::fmt::Debug>(r: std::result::Result<T, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(s) => s.code(),
    }
}

#[tokio::test]
async fn an_app_goes_from_request_to_a_running_unit_and_back_out() -> Result<()> {
    let mut w = world().await?;

    // The catalog each one sees follows their tenant's offer.
    let names = |r: pb::ListCatalogResponse| -> Vec<String> {
        r.apps.into_iter().map(|a| a.name).collect()
    };
    let all = w.admin.apps.list_catalog(pb::ListCatalogRequest {}).await?;
    assert_eq!(names(all.into_inner()), ["notes", "wiki"]);
    let a = w.mem_a.apps.list_catalog(pb::ListCatalogRequest {}).await?;
    let a = a.into_inner();
    assert_eq!(names(a.clone()), ["notes", "wiki"]);
    assert_eq!(a.apps[0].packages, ["notes-server", "python3-notes"]);
    assert_eq!(a.apps[0].memory_max_bytes, 128 << 20);
    let r = w.mem_r.apps.list_catalog(pb::ListCatalogRequest {}).await?;
    assert_eq!(
        names(r.into_inner()),
        ["notes"],
        "wiki is participatif only"
    );

    // A member asks, with the volume left to its default (the only one on
    // n1); the discussion follows.
    let req = w
        .mem_a
        .apps
        .request_app(request(
            "asso-a",
            "notes",
            "n1",
            "",
            "for the board's minutes",
        ))
        .await?
        .into_inner();
    assert_eq!(req.state, pb::RequestState::Pending as i32);
    assert_eq!(
        (
            req.tenant.as_str(),
            req.app.as_str(),
            req.node.as_str(),
            req.volume.as_str()
        ),
        ("asso-a", "notes", "n1", "data")
    );
    assert_eq!(req.requested_by, "mem-a");
    assert_eq!(req.comments.len(), 1);
    assert_eq!(req.comments[0].text, "for the board's minutes");
    let err = w
        .op_a
        .apps
        .request_app(request("asso-a", "notes", "n1", "data", "again"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("already pending"), "{err}");
    w.op_a
        .apps
        .comment_request(pb::CommentRequestRequest {
            id: req.id,
            text: "+1, we need it before June".into(),
        })
        .await?;
    w.admin
        .apps
        .comment_request(pb::CommentRequestRequest {
            id: req.id,
            text: "fine, 128 MiB will do".into(),
        })
        .await?;
    let seen = w
        .mem_a
        .apps
        .get_request(pb::GetRequestRequest { id: req.id })
        .await?
        .into_inner();
    let thread: Vec<(&str, &str)> = seen
        .comments
        .iter()
        .map(|c| (c.author.as_str(), c.text.as_str()))
        .collect();
    assert_eq!(
        thread,
        [
            ("mem-a", "for the board's minutes"),
            ("op-a", "+1, we need it before June"),
            ("admin", "fine, 128 MiB will do"),
        ]
    );

    // Members do not approve; the admins do, once.
    let err = w
        .mem_a
        .apps
        .approve_request(decide(req.id, "self-service"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let before = w.agent.desired().map(|d| d.generation).unwrap_or(0);
    let approved = w
        .admin
        .apps
        .approve_request(decide(req.id, "deployed on n1"))
        .await?
        .into_inner();
    assert_eq!(approved.state, pb::RequestState::Approved as i32);
    assert_eq!(approved.decided_by, "admin");
    assert_eq!(approved.comments.last().unwrap().text, "deployed on n1");
    let err = w
        .admin
        .apps
        .approve_request(decide(req.id, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");

    // The node gets the rendered unit and the proxy.
    let d = w
        .agent
        .wait_desired("the notes instance", |d| {
            d.generation > before && app_spec(d, "asso-a", "notes").is_some()
        })
        .await?;
    let s = app_spec(&d, "asso-a", "notes").unwrap();
    assert_eq!(s.state, apb::AppState::Running as i32);
    assert_eq!(s.packages, ["notes-server", "python3-notes"]);
    assert_eq!(s.package_units, ["notes-server.service"]);
    assert_eq!(s.exec, "/usr/bin/notes-server");
    assert_eq!(
        s.args,
        [
            "--listen",
            "127.0.0.1:20000",
            "--data",
            "/srv/tenants/asso-a/data/apps/notes/db",
            "--public-url",
            "https://notes.asso-a.coloc.test/",
        ]
    );
    assert_eq!(s.port, 20000);
    assert_eq!(s.data_dir, "/srv/tenants/asso-a/data/apps/notes");
    assert_eq!(s.data_dirs, ["db"]);
    assert_eq!(s.config_dir, "/etc/coloc/apps/asso-a-notes");
    assert_eq!(s.environment["HOME"], "/srv/tenants/asso-a/data/apps/notes");
    assert_eq!(s.environment["NOTES_TENANT"], "asso-a");
    assert_eq!(s.files.len(), 1);
    assert_eq!(
        s.files[0].content,
        "storage = /srv/tenants/asso-a/data/apps/notes/db\n"
    );
    assert_eq!((s.uid, s.gid), (w.posix_a, w.posix_a));
    assert_eq!(s.hostname, "notes.asso-a.coloc.test");
    assert_eq!(s.memory_max_bytes, 128 << 20);
    assert_eq!(s.cpu_quota_percent, 25);
    assert_eq!(
        s.health,
        Some(apb::app_spec::Health::HealthHttpPath("/health".into()))
    );
    assert_eq!(s.restart_nonce, 0);
    let volume = w
        .admin
        .storage
        .get_volume(pb::VolumeRef {
            volume: "asso-a/data".into(),
        })
        .await?
        .into_inner();
    assert_eq!(s.volume_id, volume.id);
    let proxy = d.proxy.clone().expect("a proxy for the node's apps");
    assert_eq!(
        (proxy.domain.as_str(), proxy.acme_email.as_str()),
        ("coloc.test", ""),
        "internal CA when no ACME e-mail is configured"
    );

    // The instance as people see it; the node's report shows up on it.
    let i = w
        .mem_a
        .apps
        .get_instance(iref("asso-a/notes"))
        .await?
        .into_inner();
    assert_eq!(i.url, "https://notes.asso-a.coloc.test/");
    assert_eq!(
        (i.port, i.state),
        (20000, pb::InstanceState::Running as i32)
    );
    assert_eq!((i.node.as_str(), i.volume.as_str()), ("n1", "data"));
    assert_eq!(i.request_id, req.id);
    assert!(i.observed.is_none());
    w.agent
        .report_apps(
            d.generation,
            vec![status("asso-a", "notes", "active", "running")],
        )
        .await?;
    let i = wait_instance(&w.mem_a, "asso-a/notes", "observed status", DEADLINE, |i| {
        i.observed.is_some()
    })
    .await?;
    let o = i.observed.unwrap();
    assert_eq!(
        (o.active_state.as_str(), o.sub_state.as_str()),
        ("active", "running")
    );
    assert!(o.healthy);

    // Its operator stops, starts and restarts it.
    let i = w
        .op_a
        .apps
        .stop_instance(iref("asso-a/notes"))
        .await?
        .into_inner();
    assert_eq!(i.state, pb::InstanceState::Stopped as i32);
    w.agent
        .wait_desired("stopped", |d| {
            app_spec(d, "asso-a", "notes").is_some_and(|s| s.state == apb::AppState::Stopped as i32)
        })
        .await?;
    let i = w
        .op_a
        .apps
        .start_instance(iref("asso-a/notes"))
        .await?
        .into_inner();
    assert_eq!(i.state, pb::InstanceState::Running as i32);
    w.agent
        .wait_desired("running again", |d| {
            app_spec(d, "asso-a", "notes").is_some_and(|s| s.state == apb::AppState::Running as i32)
        })
        .await?;
    w.op_a.apps.restart_instance(iref("asso-a/notes")).await?;
    w.agent
        .wait_desired("restarted", |d| {
            app_spec(d, "asso-a", "notes")
                .is_some_and(|s| s.restart_nonce == 1 && s.state == apb::AppState::Running as i32)
        })
        .await?;

    // Deleting the volume stops the app on the node; restoring it brings
    // it back, while the instance keeps its recorded state.
    w.admin
        .storage
        .delete_volume(pb::VolumeRef {
            volume: "asso-a/data".into(),
        })
        .await?;
    w.agent
        .wait_desired("stopped with its volume", |d| {
            app_spec(d, "asso-a", "notes").is_some_and(|s| s.state == apb::AppState::Stopped as i32)
        })
        .await?;
    let i = w
        .mem_a
        .apps
        .get_instance(iref("asso-a/notes"))
        .await?
        .into_inner();
    assert_eq!(i.state, pb::InstanceState::Running as i32);
    w.admin
        .storage
        .restore_volume(pb::VolumeRef {
            volume: "asso-a/data".into(),
        })
        .await?;
    w.agent
        .wait_desired("running with its volume back", |d| {
            app_spec(d, "asso-a", "notes").is_some_and(|s| s.state == apb::AppState::Running as i32)
        })
        .await?;

    // Logs are read on the node, over the session.
    let mut member = w.mem_a.clone();
    let call = tokio::spawn(async move {
        member
            .apps
            .get_instance_logs(pb::GetInstanceLogsRequest {
                instance: "asso-a/notes".into(),
                lines: 3,
                after_cursor: "s=ab;i=1".into(),
            })
            .await
    });
    let asked = w.agent.next_request().await?;
    let Some(apb::request::Kind::AppLogs(l)) = &asked.kind else {
        bail!("expected a logs request, got {asked:?}");
    };
    assert_eq!(
        (
            l.tenant.as_str(),
            l.app.as_str(),
            l.lines,
            l.after_cursor.as_str()
        ),
        ("asso-a", "notes", 3, "s=ab;i=1")
    );
    w.agent
        .answer(apb::RequestResult {
            request_id: asked.id,
            ok: true,
            error: String::new(),
            payload: Some(apb::request_result::Payload::Logs(apb::AppLogs {
                // One more than asked: colocd keeps the last three.
                lines: vec!["a".into(), "b".into(), "c".into(), "d".into()],
                cursor: "s=ab;i=5".into(),
                truncated: false,
            })),
        })
        .await?;
    let logs = call.await??.into_inner();
    assert_eq!(logs.lines, ["b", "c", "d"]);
    assert_eq!(logs.cursor, "s=ab;i=5");
    // 0 lines means the default.
    let mut member = w.mem_a.clone();
    let call = tokio::spawn(async move {
        member
            .apps
            .get_instance_logs(pb::GetInstanceLogsRequest {
                instance: "asso-a/notes".into(),
                lines: 0,
                after_cursor: String::new(),
            })
            .await
    });
    let asked = w.agent.next_request().await?;
    let Some(apb::request::Kind::AppLogs(l)) = &asked.kind else {
        bail!("expected a logs request, got {asked:?}");
    };
    assert_eq!(l.lines, 100);
    w.agent
        .answer(apb::RequestResult {
            request_id: asked.id,
            ok: false,
            error: "journalctl failed".into(),
            payload: None,
        })
        .await?;
    let err = call.await?.unwrap_err();
    assert!(err.message().contains("journalctl failed"), "{err}");

    // Removal: admins only; the node is told REMOVED until it reports the
    // unit gone, then the instance leaves its configuration.
    assert_eq!(
        code(w.op_a.apps.remove_instance(iref("asso-a/notes")).await),
        Code::PermissionDenied
    );
    let i = w
        .admin
        .apps
        .remove_instance(iref("asso-a/notes"))
        .await?
        .into_inner();
    assert_eq!(i.state, pb::InstanceState::Removed as i32);
    let d = w
        .agent
        .wait_desired("removed", |d| {
            app_spec(d, "asso-a", "notes").is_some_and(|s| s.state == apb::AppState::Removed as i32)
        })
        .await?;
    assert!(d.proxy.is_none(), "no app left to serve on n1");
    assert_eq!(
        code(w.op_a.apps.start_instance(iref("asso-a/notes")).await),
        Code::FailedPrecondition,
        "a removed instance does not come back"
    );
    let listed = w
        .admin
        .apps
        .list_instances(pb::ListInstancesRequest::default())
        .await?
        .into_inner()
        .instances;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, pb::InstanceState::Removed as i32);
    w.agent
        .report_apps(d.generation, vec![status("asso-a", "notes", "removed", "")])
        .await?;
    w.agent
        .wait_desired("instance gone", |d| d.apps.is_empty())
        .await?;
    let i = w
        .mem_a
        .apps
        .get_instance(iref("asso-a/notes"))
        .await?
        .into_inner();
    assert_eq!(i.state, pb::InstanceState::Removed as i32);
    assert_eq!(i.observed.unwrap().active_state, "removed");
    let listed = w
        .admin
        .apps
        .list_instances(pb::ListInstancesRequest::default())
        .await?
        .into_inner()
        .instances;
    assert!(listed.is_empty(), "{listed:?}");

    // And the app may be asked for again.
    let again = deploy(&mut w, "op-a", "asso-a", "notes", "n1", "data").await?;
    assert_eq!(again.state, pb::RequestState::Approved as i32);
    let d = w
        .agent
        .wait_desired("the new instance", |d| {
            app_spec(d, "asso-a", "notes").is_some_and(|s| s.state == apb::AppState::Running as i32)
        })
        .await?;
    assert_eq!(
        app_spec(&d, "asso-a", "notes").unwrap().port,
        20000,
        "port freed"
    );

    // Everything is in the audit log, under the tenant.
    let entries = tenant_audit(&mut w.admin, "asso-a").await?;
    use pb::AuditOutcome::{Allowed, Denied, Failed};
    for (actor, action, outcome) in [
        ("user:mem-a", "app.request", Allowed),
        ("user:op-a", "app.request", Failed),
        ("user:op-a", "app.request.comment", Allowed),
        ("user:admin", "app.request.comment", Allowed),
        ("user:mem-a", "app.request.approve", Denied),
        ("user:admin", "app.request.approve", Allowed),
        ("user:admin", "app.request.approve", Failed),
        ("user:op-a", "app.stop", Allowed),
        ("user:op-a", "app.start", Allowed),
        ("user:op-a", "app.restart", Allowed),
        ("user:op-a", "app.remove", Denied),
        ("user:admin", "app.remove", Allowed),
        ("user:op-a", "app.start", Failed),
        ("system", "app.removed", Allowed),
    ] {
        assert!(
            has_audit_entry(&entries, actor, action, outcome),
            "missing {actor} {action} {outcome:?} in {entries:#?}"
        );
    }
    let approve = entries
        .iter()
        .find(|e| e.action == "app.request.approve" && e.outcome == Allowed as i32)
        .unwrap();
    assert!(approve.detail.contains("port 20000"), "{approve:?}");
    drop(w.ctl);
    Ok(())
}

#[tokio::test]
async fn who_may_do_what_with_apps() -> Result<()> {
    let mut w = world().await?;
    deploy(&mut w, "mem-a", "asso-a", "notes", "n1", "").await?;
    deploy(&mut w, "op-a", "asso-a", "wiki", "n2", "asso-a/web").await?;
    deploy(&mut w, "mem-r", "asso-r", "notes", "n1", "data").await?;

    // Another tenant's operator: no asking, no seeing, no stopping.
    assert_eq!(
        code(
            w.op_b
                .apps
                .request_app(request("asso-a", "wiki", "n1", "", "mine now"))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(w.op_b.apps.stop_instance(iref("asso-a/notes")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(w.op_b.apps.get_instance(iref("asso-a/notes")).await),
        Code::PermissionDenied
    );
    // Another tenant's request, by number, reads as no request at all.
    assert_eq!(
        code(
            w.op_b
                .apps
                .get_request(pb::GetRequestRequest { id: 1 })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            w.op_b
                .apps
                .comment_request(pb::CommentRequestRequest {
                    id: 1,
                    text: "hello".into()
                })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            w.op_b
                .apps
                .list_requests(pb::ListRequestsRequest {
                    tenant: "asso-a".into(),
                    state: 0
                })
                .await
        ),
        Code::PermissionDenied
    );
    let own = w
        .op_b
        .apps
        .list_requests(pb::ListRequestsRequest::default())
        .await?
        .into_inner()
        .requests;
    assert!(own.is_empty(), "only its tenant's: {own:?}");
    let own = w
        .op_b
        .apps
        .list_instances(pb::ListInstancesRequest::default())
        .await?
        .into_inner()
        .instances;
    assert!(own.is_empty(), "only its tenant's: {own:?}");
    let theirs = w
        .mem_a
        .apps
        .list_instances(pb::ListInstancesRequest::default())
        .await?
        .into_inner()
        .instances;
    let names: Vec<&str> = theirs.iter().map(|i| i.app.as_str()).collect();
    assert_eq!(names, ["notes", "wiki"]);
    let all = w
        .admin
        .apps
        .list_instances(pb::ListInstancesRequest {
            tenant: String::new(),
            node: "n1".into(),
        })
        .await?
        .into_inner()
        .instances;
    assert_eq!(all.len(), 2, "asso-a and asso-r on n1: {all:?}");

    // A member reads status but does not act.
    let i = w
        .mem_a
        .apps
        .get_instance(iref("asso-a/notes"))
        .await?
        .into_inner();
    assert_eq!(i.state, pb::InstanceState::Running as i32);
    for r in [
        w.mem_a.apps.stop_instance(iref("asso-a/notes")).await,
        w.mem_a.apps.restart_instance(iref("asso-a/notes")).await,
        w.mem_a.apps.remove_instance(iref("asso-a/notes")).await,
    ] {
        assert_eq!(code(r), Code::PermissionDenied);
    }
    // An operator acts on granted nodes only.
    w.op_a.apps.stop_instance(iref("asso-a/notes")).await?;
    assert_eq!(
        code(w.op_a.apps.stop_instance(iref("asso-a/wiki")).await),
        Code::PermissionDenied,
        "no grant on n2"
    );
    // A responsable tenant's apps are run by the admins (it has no
    // operators; the rule is unit-tested in auth.rs); its members read and
    // ask like anyone, within their offer.
    let i = w
        .mem_r
        .apps
        .get_instance(iref("asso-r/notes"))
        .await?
        .into_inner();
    assert_eq!(i.state, pb::InstanceState::Running as i32);
    assert_eq!(
        code(w.mem_r.apps.stop_instance(iref("asso-r/notes")).await),
        Code::PermissionDenied
    );
    let err = w
        .mem_r
        .apps
        .request_app(request("asso-r", "wiki", "n1", "", "a wiki?"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("responsable"), "{err}");
    w.admin.apps.stop_instance(iref("asso-r/notes")).await?;

    // Deciding is for admins; a rejection says why.
    let r = w
        .op_b
        .apps
        .request_app(request("asso-b", "wiki", "n1", "", "a wiki for asso-b"))
        .await?
        .into_inner();
    assert_eq!(
        code(w.op_b.apps.reject_request(decide(r.id, "no")).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(w.admin.apps.reject_request(decide(r.id, "  ")).await),
        Code::InvalidArgument
    );
    let rejected = w
        .admin
        .apps
        .reject_request(decide(r.id, "n1 is full this month"))
        .await?
        .into_inner();
    assert_eq!(rejected.state, pb::RequestState::Rejected as i32);
    let listed = w
        .op_b
        .apps
        .list_requests(pb::ListRequestsRequest {
            tenant: String::new(),
            state: pb::RequestState::Rejected as i32,
        })
        .await?
        .into_inner()
        .requests;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].comments.last().unwrap().text,
        "n1 is full this month"
    );

    // One instance of an app per tenant, cooperative-wide.
    let err = w
        .op_a
        .apps
        .request_app(request("asso-a", "notes", "n2", "web", "a second one"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");

    // Logs of an instance whose node is not connected.
    let err = w
        .mem_a
        .apps
        .get_instance_logs(pb::GetInstanceLogsRequest {
            instance: "asso-a/wiki".into(),
            lines: 10,
            after_cursor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("node n2 is not connected"), "{err}");

    // The refusals are in the audit log under the tenant they concern.
    use pb::AuditOutcome::Denied;
    let a = tenant_audit(&mut w.admin, "asso-a").await?;
    for (actor, action) in [
        ("user:op-b", "app.request"),
        ("user:op-b", "app.stop"),
        ("user:op-b", "app.show"),
        ("user:op-b", "app.request.show"),
        ("user:op-b", "app.request.comment"),
        ("user:mem-a", "app.stop"),
        ("user:mem-a", "app.restart"),
        ("user:mem-a", "app.remove"),
        ("user:op-a", "app.stop"),
    ] {
        assert!(
            has_audit_entry(&a, actor, action, Denied),
            "missing {actor} {action} denied in {a:#?}"
        );
    }
    let r = tenant_audit(&mut w.admin, "asso-r").await?;
    assert!(
        has_audit_entry(&r, "user:mem-r", "app.stop", Denied),
        "{r:#?}"
    );
    let b = tenant_audit(&mut w.admin, "asso-b").await?;
    assert!(
        has_audit_entry(&b, "user:op-b", "app.request.reject", Denied),
        "{b:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn crafted_values_are_refused_and_nothing_reaches_the_node() -> Result<()> {
    let mut w = world().await?;
    let before = w
        .admin
        .nodes
        .get_node(pb::GetNodeRequest { name: "n1".into() })
        .await?
        .into_inner()
        .desired_generation;
    let crafted = ["a;reboot", "x\nExecStart=/bin/sh", "../..", "", "Notes"];

    let mut cases = Vec::new();
    for bad in crafted {
        cases.push(request(bad, "notes", "n1", "", "hi"));
        cases.push(request("asso-a", "notes", bad, "", "hi"));
    }
    for bad in crafted.into_iter().chain(["no-tes", "notes.x"]) {
        cases.push(request("asso-a", bad, "n1", "", "hi"));
    }
    for bad in [
        "a;reboot",
        "x\nExecStart=/bin/sh",
        "../..",
        "asso-b/data",
        "data/../x",
    ] {
        cases.push(request("asso-a", "notes", "n1", bad, "hi"));
    }
    for bad in [
        "x\nExecStart=/bin/sh",
        "\u{1b}[31mred",
        &"long ".repeat(500),
    ] {
        cases.push(request("asso-a", "notes", "n1", "", bad));
    }
    for case in cases {
        let err = w.admin.apps.request_app(case.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case:?}: {err}");
        // The operator's own tenant: refused for the value, not the role.
        let err = w.op_a.apps.request_app(case.clone()).await.unwrap_err();
        assert!(
            matches!(err.code(), Code::InvalidArgument | Code::PermissionDenied),
            "{case:?}: {err}"
        );
    }
    // Not in the catalog, no such node: refused too.
    assert_eq!(
        code(
            w.admin
                .apps
                .request_app(request("asso-a", "nextcloud", "n1", "", ""))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            w.admin
                .apps
                .request_app(request("asso-a", "notes", "n9", "", ""))
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            w.admin
                .apps
                .request_app(request("asso-a", "notes", "n1", "other", ""))
                .await
        ),
        Code::FailedPrecondition,
        "no such volume on n1"
    );
    let stored = w
        .admin
        .apps
        .list_requests(pb::ListRequestsRequest::default())
        .await?
        .into_inner()
        .requests;
    assert!(stored.is_empty(), "nothing stored: {stored:?}");

    // On a real request and instance, crafted references and texts.
    deploy(&mut w, "op-a", "asso-a", "notes", "n1", "data").await?;
    let d = w
        .agent
        .wait_desired("notes", |d| app_spec(d, "asso-a", "notes").is_some())
        .await?;
    for bad in [
        "asso-a/a;reboot",
        "asso-a/x\nExecStart=/bin/sh",
        "../..",
        "asso-a/../asso-b/notes",
        "asso-a",
        "asso-a/notes/x",
    ] {
        for r in [
            w.admin.apps.get_instance(iref(bad)).await,
            w.admin.apps.stop_instance(iref(bad)).await,
            w.admin.apps.restart_instance(iref(bad)).await,
            w.admin.apps.remove_instance(iref(bad)).await,
        ] {
            assert_eq!(code(r), Code::InvalidArgument, "{bad:?}");
        }
        assert_eq!(
            code(
                w.admin
                    .apps
                    .get_instance_logs(pb::GetInstanceLogsRequest {
                        instance: bad.into(),
                        lines: 10,
                        after_cursor: String::new(),
                    })
                    .await
            ),
            Code::InvalidArgument,
            "{bad:?}"
        );
    }
    for (lines, cursor) in [
        (1001, ""),
        (10, "s=1 --since=yesterday"),
        (10, "s=1\n--output=export"),
    ] {
        let err = w
            .admin
            .apps
            .get_instance_logs(pb::GetInstanceLogsRequest {
                instance: "asso-a/notes".into(),
                lines,
                after_cursor: cursor.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{lines} {cursor:?}: {err}"
        );
    }
    let req = w
        .admin
        .apps
        .list_requests(pb::ListRequestsRequest::default())
        .await?
        .into_inner()
        .requests
        .remove(0);
    for bad in ["x\nExecStart=/bin/sh", "", &"é".repeat(2001)] {
        let err = w
            .op_a
            .apps
            .comment_request(pb::CommentRequestRequest {
                id: req.id,
                text: bad.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}: {err}");
    }
    let after = w
        .admin
        .apps
        .get_request(pb::GetRequestRequest { id: req.id })
        .await?
        .into_inner();
    assert_eq!(after.comments, req.comments, "no comment added");

    // Nothing but the one approval reached the node.
    assert!(w.agent.try_next_request().is_none(), "no request was sent");
    let now = w.agent.desired().unwrap();
    assert_eq!(now.generation, d.generation);
    assert_eq!(d.generation, before + 1, "one change: the approval");
    assert_eq!(now.apps.len(), 1);
    let i = w
        .admin
        .apps
        .get_instance(iref("asso-a/notes"))
        .await?
        .into_inner();
    assert_eq!(i.state, pb::InstanceState::Running as i32);

    // The audit log records the attempts, without their control characters.
    let entries = audit_entries(&mut w.admin, "user:admin").await?;
    let failed = entries
        .iter()
        .filter(|e| e.action == "app.request" && e.outcome == pb::AuditOutcome::Failed as i32)
        .count();
    assert!(failed >= 20, "{failed} failed requests audited");
    assert!(
        entries
            .iter()
            .all(|e| !e.target.chars().any(char::is_control)),
        "a target carries a control character"
    );
    Ok(())
}

#[tokio::test]
async fn colocd_serves_its_built_in_catalog_and_refuses_a_bad_one() -> Result<()> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    let apps = admin
        .apps
        .list_catalog(pb::ListCatalogRequest {})
        .await?
        .into_inner()
        .apps;
    assert!(apps.iter().any(|a| a.name == "radicale"), "{apps:?}");
    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by name");
    let anonymous = ctl.anonymous().await?;
    assert_eq!(
        code(
            anonymous
                .apps
                .clone()
                .list_catalog(pb::ListCatalogRequest {})
                .await
        ),
        Code::Unauthenticated
    );
    drop(ctl);

    let dir = tempfile::tempdir()?;
    write_catalog(
        dir.path(),
        &[
            ("notes.toml", NOTES),
            ("broken.toml", "name = \"broken\"\nexec = 3\n"),
        ],
    )?;
    let err = match TestController::start_with(ControllerConfig {
        catalog_dir: Some(dir.path().to_owned()),
        ..fast_config()
    })
    .await
    {
        Ok(_) => bail!("colocd started on a broken catalog"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("cannot load the app catalog"), "{err}");
    assert!(err.contains("broken.toml"), "names the file: {err}");
    Ok(())
}

mod web_login;

//! Apps through the whole stack in one process: a real colocd and a
//! simulated agent running the real agent logic (session, ledger, storage
//! and app reconcilers) over the in-memory fakes, writing its unit files,
//! app configuration and Caddyfile under its own state directory. The
//! fakes stand in for apt and systemd here; tests/e2e_apps.rs proves the
//! same story on the real node in a VM.

use std::time::Duration;

use coloc_agent::host::{FakeHost, UnitName};
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;

const DEADLINE: Duration = Duration::from_secs(30);
const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn an_approved_request_becomes_a_sandboxed_unit_behind_the_proxy() -> Result<()> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 3600).await?;
    let dir = tempfile::tempdir()?;
    let host = FakeHost::new("n1");
    let root = dir.path().join("n1").join("root");
    let _agent = spawn_sim_node(&ctl, "n1", &token, dir.path(), &host)?;
    wait_node_ready(&admin, "n1", DEADLINE).await?;

    let tenant = create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
    create_pool(
        &mut admin,
        "n1",
        "tank",
        apb::PoolKind::Zfs,
        "serial:SIM-n1-1",
    )
    .await?;
    let volume = NewVolume {
        tenant: "asso-a",
        name: "data",
        node: "n1",
        pool: "tank",
        size_bytes: 128 * MIB,
        encrypted: false,
    };
    create_volume(&mut admin, volume).await?;
    // The fake ZFS "mounts" by recording it; the app pass wants the mount
    // point to exist under the node's root, as it does on a real node.
    std::fs::create_dir_all(root.join("srv/tenants/asso-a/data"))?;

    let member = create_user(&mut admin, "mia", "asso-a", pb::Role::Member).await?;
    let mut mia = ctl.api(&member).await?;
    let request = mia
        .apps
        .request_app(pb::RequestAppRequest {
            tenant: "asso-a".into(),
            app: "site".into(),
            node: "n1".into(),
            volume: String::new(),
            comment: "notre site".into(),
        })
        .await?
        .into_inner();
    admin
        .apps
        .approve_request(pb::DecideRequestRequest {
            id: request.id,
            comment: "ok".into(),
        })
        .await?;

    let unit = UnitName::new("coloc-app-asso-a-site.service").unwrap();
    let instance = wait_instance(&admin, "asso-a/site", "the instance runs", DEADLINE, |i| {
        i.observed
            .as_ref()
            .is_some_and(|o| o.active_state == "active")
    })
    .await?;
    assert!(host.packages.is_installed("nginx-light"));
    assert!(host.packages.is_installed("caddy"));
    assert!(host.units.is_enabled(&unit));
    let text = std::fs::read_to_string(root.join("etc/systemd/system").join(unit.as_str()))?;
    assert!(
        text.contains(&format!("User={}", tenant.posix_id)),
        "{text}"
    );
    assert!(text.contains("ProtectSystem=strict"), "{text}");
    assert!(
        text.contains("ReadWritePaths=/srv/tenants/asso-a/data/apps/site"),
        "{text}"
    );
    let caddy = std::fs::read_to_string(root.join("etc/caddy/Caddyfile"))?;
    assert!(
        caddy.contains(&format!(
            "site.asso-a.coloc.test {{\n\treverse_proxy 127.0.0.1:{}",
            instance.port
        )),
        "{caddy}"
    );

    // Stop, then remove: the unit goes, the data stays.
    admin
        .apps
        .stop_instance(pb::InstanceRef {
            instance: "asso-a/site".into(),
        })
        .await?;
    wait_for("stopped", DEADLINE, || {
        let units = host.units.clone();
        let unit = unit.clone();
        async move { (!units.is_enabled(&unit)).then_some(()) }
    })
    .await?;
    std::fs::write(
        root.join("srv/tenants/asso-a/data/apps/site/keep.txt"),
        "data",
    )?;
    admin
        .apps
        .remove_instance(pb::InstanceRef {
            instance: "asso-a/site".into(),
        })
        .await?;
    let unit_file = root.join("etc/systemd/system").join(unit.as_str());
    wait_for("unit file removed", DEADLINE, || {
        let gone = !unit_file.exists();
        async move { gone.then_some(()) }
    })
    .await?;
    assert!(
        root.join("srv/tenants/asso-a/data/apps/site/keep.txt")
            .exists()
    );
    Ok(())
}

/// Issue 11, item 7: an app that starts listening a moment after its unit
/// started is reported healthy without waiting for the next periodic pass.
/// The node's periodic pass is an hour away here, so only the agent's
/// quick re-probe after a start can report it healthy.
#[tokio::test]
async fn an_app_is_reported_healthy_as_soon_as_it_listens() -> Result<()> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 3600).await?;
    let dir = tempfile::tempdir()?;
    let host = FakeHost::new("n1");
    let root = dir.path().join("n1").join("root");
    let _agent = spawn_sim_node_resyncing(
        &ctl,
        "n1",
        &token,
        dir.path(),
        &host,
        Duration::from_secs(3600),
    )?;
    wait_node_ready(&admin, "n1", DEADLINE).await?;
    create_tenant(&mut admin, "asso-a", pb::Offer::Responsable).await?;
    create_pool(
        &mut admin,
        "n1",
        "tank",
        apb::PoolKind::Zfs,
        "serial:SIM-n1-1",
    )
    .await?;
    create_volume(
        &mut admin,
        NewVolume {
            tenant: "asso-a",
            name: "data",
            node: "n1",
            pool: "tank",
            size_bytes: 128 * MIB,
            encrypted: false,
        },
    )
    .await?;
    std::fs::create_dir_all(root.join("srv/tenants/asso-a/data"))?;
    let request = admin
        .apps
        .request_app(pb::RequestAppRequest {
            tenant: "asso-a".into(),
            app: "site".into(),
            node: "n1".into(),
            volume: String::new(),
            comment: String::new(),
        })
        .await?
        .into_inner();
    admin
        .apps
        .approve_request(pb::DecideRequestRequest {
            id: request.id,
            comment: "ok".into(),
        })
        .await?;

    // The unit runs, but nothing listens on its port yet: not healthy.
    let instance = wait_instance(&admin, "asso-a/site", "the unit runs", DEADLINE, |i| {
        i.observed
            .as_ref()
            .is_some_and(|o| o.active_state == "active")
    })
    .await?;
    let observed = instance.observed.clone().unwrap_or_default();
    assert!(!observed.healthy, "{observed:?}");

    // The app comes up: it answers HTTP on its port.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", instance.port as u16)).await?;
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let healthy = wait_instance(&admin, "asso-a/site", "reported healthy", DEADLINE, |i| {
        i.observed.as_ref().is_some_and(|o| o.healthy)
    })
    .await?;
    assert_eq!(
        healthy.observed.map(|o| o.health_detail).as_deref(),
        Some("HTTP 200")
    );
    server.abort();
    Ok(())
}

//! Health over simulated agents: the real agent's health loop on fake
//! hosts, a real colocd with its alert rules and `/metrics`. A fault set
//! on a simulated node's fake disk reaches colocd in the node's next
//! report, fires an alert the Alerts service lists and `/metrics` counts,
//! and clearing the fault resolves it. No VM: the QEMU test
//! (e2e_health) proves the same on real hardware emulation.

use std::net::SocketAddr;
use std::time::Duration;

use coloc_agent::host::FakeHost;
use coloc_controller::config::{ControllerConfig, HealthConfig};
use coloc_controller::metrics::MetricsConfig;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Two health periods (the shortest colocd allows is 10 s) and the
/// alerts task's pass, with room for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(60);
const RULE: &str = "disk-nvme-critical-warning";

/// `GET /metrics` over plain HTTP/1.1; the body.
async fn scrape(addr: SocketAddr) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: colocd\r\nConnection: close\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header in {text:?}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("/metrics answered {head}");
    }
    Ok(body.to_string())
}

/// The value of the first sample of `family` whose labels contain every
/// `label="value"` of `labels`.
fn sample(body: &str, family: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn alerts_of(api: &Api, node: &str, include_resolved: bool) -> Result<Vec<pb::Alert>> {
    Ok(api
        .alerts
        .clone()
        .list_alerts(pb::ListAlertsRequest {
            include_resolved,
            node: node.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .alerts)
}

#[tokio::test]
async fn a_failing_disk_on_a_simulated_node_fires_an_alert_that_metrics_count_and_clears()
-> Result<()> {
    init_test_logging();
    let ctl = TestController::start_with(ControllerConfig {
        health: HealthConfig {
            period_secs: 10,
            ..HealthConfig::default()
        },
        metrics: Some(MetricsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            bearer_token_file: None,
        }),
        ..fast_config()
    })
    .await?;
    let metrics = ctl
        .running()
        .metrics_addr
        .ok_or_else(|| anyhow!("colocd serves no /metrics"))?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 3600).await?;
    let dir = tempfile::tempdir()?;
    let host = FakeHost::new("n1");
    let _agent = spawn_sim_node(&ctl, "n1", &token, dir.path(), &host)?;
    wait_node_ready(&admin, "n1", DEADLINE).await?;

    // The simulated node reports on its own, healthy.
    let health = wait_for("n1's first health report", DEADLINE, || {
        let mut api = admin.clone();
        async move {
            let h = api
                .health
                .get_node_health(pb::NodeHealthRequest { node: "n1".into() })
                .await
                .ok()?
                .into_inner();
            h.report.is_some().then_some(h)
        }
    })
    .await?;
    assert_eq!(health.period_secs, 10, "the policy colocd gives the node");
    let report = health.report.unwrap();
    assert!(
        report.disks.iter().any(|d| d.serial == "SIM-n1-1"),
        "{report:?}"
    );
    let firing = alerts_of(&admin, "n1", false).await?;
    assert!(firing.is_empty(), "a healthy node has no alert: {firing:?}");
    let body = scrape(metrics).await?;
    assert_eq!(
        sample(&body, "coloc_alerts_firing", &[&format!("rule=\"{RULE}\"")]),
        Some(0.0),
        "every rule is listed with 0: {body}"
    );
    assert_eq!(sample(&body, "coloc_node_up", &["node=\"n1\""]), Some(1.0));

    // The drive raises "reliability degraded" (bit 2).
    host.health.set_critical_warning("/dev/vdb", 0x04);
    let alert = wait_for("the critical-warning alert", DEADLINE, || {
        let api = admin.clone();
        async move {
            alerts_of(&api, "n1", false)
                .await
                .ok()?
                .into_iter()
                .find(|a| a.rule == RULE)
        }
    })
    .await?;
    assert_eq!(
        alert.severity,
        pb::AlertSeverity::Critical as i32,
        "{alert:?}"
    );
    let subject = alert.subject.clone().unwrap();
    assert_eq!(subject.node, "n1");
    assert!(
        subject.name.contains("SIM-n1-1"),
        "the disk by serial: {subject:?}"
    );
    let body = scrape(metrics).await?;
    assert_eq!(
        sample(
            &body,
            "coloc_alerts_firing",
            &[&format!("rule=\"{RULE}\""), "severity=\"critical\""]
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "coloc_disk_nvme_critical_warning",
            &["node=\"n1\"", "serial=\"SIM-n1-1\""]
        ),
        Some(4.0),
        "{body}"
    );

    // Cleared on the drive: the same alert resolves, none fires again.
    host.health.set_critical_warning("/dev/vdb", 0);
    let resolved = wait_for("the alert to resolve", DEADLINE, || {
        let api = admin.clone();
        async move {
            alerts_of(&api, "n1", true)
                .await
                .ok()?
                .into_iter()
                .find(|a| a.id == alert.id && a.state == pb::AlertState::Resolved as i32)
        }
    })
    .await?;
    assert!(resolved.ended_unix >= resolved.started_unix, "{resolved:?}");
    assert!(
        alerts_of(&admin, "n1", false)
            .await?
            .iter()
            .all(|a| a.rule != RULE),
        "nothing fires for the disk any more"
    );
    let body = scrape(metrics).await?;
    assert_eq!(
        sample(
            &body,
            "coloc_alerts_firing",
            &[&format!("rule=\"{RULE}\""), "severity=\"critical\""]
        ),
        Some(0.0),
        "{body}"
    );
    // colocd's own latency is there too, named by service and method.
    assert!(
        body.contains("colocd_rpc_duration_seconds_count{service=\"coloc.controller.v1.Alerts\",method=\"ListAlerts\",code=\"OK\"}"),
        "{body}"
    );
    assert!(
        body.contains("colocd_store_duration_seconds_count{op=\"list_nodes\"}"),
        "{body}"
    );
    Ok(())
}

/// An app of asso-a on a simulated node whose unit restarts in a loop,
/// then fails: the association's member sees both alerts about her app;
/// a member of another association sees neither, and cannot read them
/// by id.
#[tokio::test]
async fn an_app_restarting_in_a_loop_alerts_its_association_and_no_other() -> Result<()> {
    use coloc_agent::host::UnitName;
    use coloc_proto::agent::v1 as apb;

    init_test_logging();
    let ctl = TestController::start_with(ControllerConfig {
        health: HealthConfig {
            period_secs: 10,
            ..HealthConfig::default()
        },
        ..fast_config()
    })
    .await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 3600).await?;
    let dir = tempfile::tempdir()?;
    let host = FakeHost::new("n1");
    let root = dir.path().join("n1").join("root");
    let _agent = spawn_sim_node(&ctl, "n1", &token, dir.path(), &host)?;
    wait_node_ready(&admin, "n1", DEADLINE).await?;
    create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
    create_tenant(&mut admin, "asso-b", pb::Offer::Participatif).await?;
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
            size_bytes: 128 << 20,
            encrypted: false,
        },
    )
    .await?;
    std::fs::create_dir_all(root.join("srv/tenants/asso-a/data"))?;
    let mia = create_user(&mut admin, "mia", "asso-a", pb::Role::Member).await?;
    let mia = ctl.api(&mia).await?;
    let bob = create_user(&mut admin, "bob", "asso-b", pb::Role::Member).await?;
    let bob = ctl.api(&bob).await?;
    let request = mia
        .apps
        .clone()
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
    wait_instance(&admin, "asso-a/site", "the instance runs", DEADLINE, |i| {
        i.observed
            .as_ref()
            .is_some_and(|o| o.active_state == "active")
    })
    .await?;

    // systemd restarts it again and again.
    let unit = UnitName::new("coloc-app-asso-a-site.service").unwrap();
    host.units.set_restarts(&unit, 12);
    let looping = wait_for(
        "app-restart-loop, seen by the association",
        DEADLINE,
        || {
            let mia = mia.clone();
            async move {
                alerts_of(&mia, "", false)
                    .await
                    .ok()?
                    .into_iter()
                    .find(|a| a.rule == "app-restart-loop")
            }
        },
    )
    .await?;
    let subject = looping.subject.clone().unwrap();
    assert_eq!(subject.tenant, "asso-a", "{looping:?}");
    assert!(subject.name.contains("site"), "{looping:?}");

    // Then it gives up: systemd's start limit, the unit failed.
    host.units.set_crash_loop(&unit, true);
    admin
        .apps
        .restart_instance(pb::InstanceRef {
            instance: "asso-a/site".into(),
        })
        .await?;
    let failed = wait_for("app-failed, seen by the association", DEADLINE, || {
        let mia = mia.clone();
        async move {
            alerts_of(&mia, "", false)
                .await
                .ok()?
                .into_iter()
                .find(|a| a.rule == "app-failed")
        }
    })
    .await?;

    // Another association sees none of it, not even by id.
    let theirs = alerts_of(&bob, "", true).await?;
    assert!(
        theirs
            .iter()
            .all(|a| a.subject.as_ref().is_some_and(|s| s.tenant == "asso-b")),
        "asso-b sees only its own alerts: {theirs:?}"
    );
    for id in [looping.id, failed.id] {
        let refused = bob
            .alerts
            .clone()
            .get_alert(pb::AlertRef { id })
            .await
            .expect_err("another association's alert by id");
        assert!(
            matches!(
                refused.code(),
                tonic::Code::PermissionDenied | tonic::Code::NotFound
            ),
            "{refused:?}"
        );
        let refused = bob
            .alerts
            .clone()
            .ack_alert(pb::AckAlertRequest {
                id,
                comment: "not mine".into(),
            })
            .await
            .expect_err("acknowledging another association's alert");
        assert!(
            matches!(
                refused.code(),
                tonic::Code::PermissionDenied | tonic::Code::NotFound
            ),
            "{refused:?}"
        );
    }
    let still = admin
        .alerts
        .get_alert(pb::AlertRef { id: looping.id })
        .await?
        .into_inner();
    assert!(still.acked_by.is_empty(), "nothing changed: {still:?}");
    Ok(())
}

//! What a node reports and what colocd makes of it.

use coloc_proto::agent::v1 as apb;
use coloc_proto::agent::v1::agent_service_client::AgentServiceClient;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;

use crate::{DEADLINE, Watch, fleet, nvme, report, send_report, wait_report};

#[tokio::test]
async fn the_health_policy_reaches_the_agent_in_its_session_parameters() -> Result<()> {
    init_test_logging();
    let mut config = fast_config();
    config.health.period_secs = 15;
    config.health.scrub_period_days = 0;
    config.health.long_self_test_period_days = 60;
    config.health.self_tests = false;
    let ctl = TestController::start_with(config).await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 600).await?;
    let (key, cert) = enroll_raw(&ctl, &token, "n1").await?;
    let mut client = AgentServiceClient::new(ctl.channel_with_identity(&cert, &key).await?);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(apb::AgentMessage {
        body: Some(apb::agent_message::Body::Hello(apb::Hello {
            agent_version: "raw-test-agent".into(),
            ledger_generation: 0,
            facts: None,
        })),
    })
    .await?;
    let mut inbound = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let params = loop {
        let msg = tokio::time::timeout(DEADLINE, inbound.message())
            .await?
            .context("session ended")?
            .context("session ended")?;
        if let Some(apb::controller_message::Body::Params(p)) = msg.body {
            break p;
        }
    };
    let policy = params
        .health
        .context("no health policy in the session parameters")?;
    assert_eq!(policy.period_secs, 15);
    assert!(policy.scrub_disabled);
    assert!(policy.self_tests_disabled);
    assert_eq!(policy.short_self_test_period_days, 7);
    assert_eq!(policy.long_self_test_period_days, 60);
    Ok(())
}

#[tokio::test]
async fn a_critical_warning_fires_once_and_its_clearing_resolves_it() -> Result<()> {
    let (_ctl, agents, mut admin) = fleet(&["n1"]).await?;
    let n1 = &agents[0];
    send_report(n1, report(1, vec![nvme("COLOC0001", 0)])).await?;
    wait_report(&admin, "n1", 1).await?;
    assert!(
        admin.list(true).await?.is_empty(),
        "a healthy disk fires nothing"
    );

    // Reliability degraded (bit 2), as QEMU's NVMe device raises it.
    send_report(n1, report(2, vec![nvme("COLOC0001", 4)])).await?;
    let fired = admin
        .wait_alert("disk-nvme-critical-warning", pb::AlertState::Firing)
        .await?;
    assert_eq!(fired.severity, pb::AlertSeverity::Critical as i32);
    let subject = fired.subject.clone().context("no subject")?;
    assert_eq!(subject.kind, pb::AlertSubjectKind::Disk as i32);
    assert_eq!(
        (subject.node.as_str(), subject.name.as_str()),
        ("n1", "COLOC0001")
    );
    assert!(
        fired.summary.contains("reliability degraded"),
        "{}",
        fired.summary
    );

    // The same condition reported again and again: still one alert.
    for marker in 3..6 {
        send_report(n1, report(marker, vec![nvme("COLOC0001", 4)])).await?;
    }
    wait_report(&admin, "n1", 5).await?;
    let health = admin.node_health("n1").await?;
    assert!(!health.stale);
    assert_eq!(health.period_secs, 60);
    assert_eq!(health.alerts.len(), 1, "{:#?}", health.alerts);
    assert_eq!(health.alerts[0].id, fired.id);

    send_report(n1, report(6, vec![nvme("COLOC0001", 0)])).await?;
    let resolved = admin
        .wait_alert("disk-nvme-critical-warning", pb::AlertState::Resolved)
        .await?;
    assert_eq!(resolved.id, fired.id);
    assert!(resolved.ended_unix >= resolved.started_unix);
    assert!(admin.list(false).await?.is_empty());

    // Both changes are in the audit log, by colocd itself.
    let mut api = _ctl.admin().await?;
    let entries = audit_entries(&mut api, "system").await?;
    for action in ["alert.fire", "alert.resolve"] {
        assert!(
            has_audit_entry(&entries, "system", action, pb::AuditOutcome::Allowed),
            "{action} missing: {entries:#?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_refused_report_changes_nothing_and_is_audited_once() -> Result<()> {
    let (ctl, agents, mut admin) = fleet(&["n1"]).await?;
    let n1 = &agents[0];
    send_report(n1, report(1, vec![nvme("GOOD", 0)])).await?;
    wait_report(&admin, "n1", 1).await?;

    // Past the bounds: 257 disks, each with a critical warning.
    let many = report(2, vec![nvme("MANY", 4); 257]);
    send_report(n1, many).await?;
    let mut api = ctl.admin().await?;
    let refusals = wait_for("the refusal's audit entry", DEADLINE, || {
        let mut api = api.clone();
        async move {
            let entries = audit_entries(&mut api, "node:n1").await.ok()?;
            let refused: Vec<_> = entries
                .into_iter()
                .filter(|e| e.action == "node.health")
                .collect();
            (!refused.is_empty()).then_some(refused)
        }
    })
    .await?;
    assert_eq!(refusals[0].outcome, pb::AuditOutcome::Denied as i32);
    assert!(
        refusals[0].detail.contains("257 disks"),
        "{}",
        refusals[0].detail
    );

    // A control character in a serial (it would reach e-mails and
    // terminals), then a valid report: processed in order.
    send_report(n1, report(3, vec![nvme("EVIL\n[ok] all good", 4)])).await?;
    send_report(n1, report(4, vec![nvme("GOOD", 0)])).await?;
    let held = wait_report(&admin, "n1", 4).await?;
    assert_eq!(held.report.context("no report")?.disks.len(), 1);
    assert!(
        admin.list(true).await?.is_empty(),
        "refused reports fired alerts"
    );
    let entries = audit_entries(&mut api, "node:n1").await?;
    let refused = entries.iter().filter(|e| e.action == "node.health").count();
    assert_eq!(refused, 1, "refusals are audited once per hour per node");
    Ok(())
}

#[tokio::test]
async fn the_last_report_and_its_alerts_survive_a_restart() -> Result<()> {
    let (mut ctl, agents, admin) = fleet(&["n1"]).await?;
    send_report(&agents[0], report(7, vec![nvme("COLOC0001", 8)])).await?;
    let fired = admin
        .wait_alert("disk-nvme-critical-warning", pb::AlertState::Firing)
        .await?;
    drop(agents);
    ctl.restart().await?;
    let mut admin = Watch::new(&ctl, &ctl.admin_token).await?;
    let health = admin.node_health("n1").await?;
    let report = health
        .report
        .context("the report was lost in the restart")?;
    assert_eq!(report.collected_unix_ms, 7);
    assert_eq!(report.disks[0].critical_warning, Some(8));
    assert!(health.received_unix > 0);
    let firing = admin.list(false).await?;
    assert!(
        firing.iter().any(|a| a.id == fired.id),
        "the alert did not survive: {firing:#?}"
    );
    // The node is silent now: once colocd has seen that (node-unreachable),
    // its disk alert has been evaluated without data and still fires.
    admin
        .wait_alert("node-unreachable", pb::AlertState::Firing)
        .await?;
    let still = admin
        .alerts
        .get_alert(pb::AlertRef { id: fired.id })
        .await?
        .into_inner();
    assert_eq!(still.state, pb::AlertState::Firing as i32);
    Ok(())
}

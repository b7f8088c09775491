//! Maintenance on demand (`coloc node scrub`): checked against the node's
//! latest report, sent to its session, answered once the agent started it.

use std::sync::{Arc, Mutex};

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use tonic::Code;

use crate::{fleet, nvme, report, send_report, wait_report};

fn start(node: &str, kind: apb::MaintenanceKind, subject: &str) -> pb::StartMaintenanceRequest {
    pb::StartMaintenanceRequest {
        node: node.into(),
        kind: kind as i32,
        subject: subject.into(),
    }
}

#[tokio::test]
async fn scrubs_and_self_tests_reach_the_node_only_for_what_it_has() -> Result<()> {
    let (ctl, mut agents, mut admin) = fleet(&["n1"]).await?;
    let mut n1 = agents.remove(0);
    let mut r = report(1, vec![nvme("COLOC0001", 0)]);
    r.zfs_pools = vec![apb::ZfsPoolHealth {
        name: "tank".into(),
        state: "ONLINE".into(),
        ..Default::default()
    }];
    send_report(&n1, r).await?;
    wait_report(&admin, "n1", 1).await?;
    let asked: Arc<Mutex<Vec<apb::RunMaintenance>>> = Arc::default();
    let seen = asked.clone();
    n1.answer_requests(move |req| {
        if let Some(apb::request::Kind::RunMaintenance(m)) = &req.kind {
            seen.lock().unwrap().push(m.clone());
        }
        apb::RequestResult {
            request_id: req.id,
            ok: true,
            ..Default::default()
        }
    })?;

    // Refused before anything reaches the node.
    for (req, code) in [
        (
            start("n1", apb::MaintenanceKind::Scrub, "other"),
            Code::NotFound,
        ),
        (
            start("n1", apb::MaintenanceKind::Scrub, ""),
            Code::InvalidArgument,
        ),
        (
            start("n1", apb::MaintenanceKind::SmartShort, "/dev/../etc/passwd"),
            Code::InvalidArgument,
        ),
        (
            start("n1", apb::MaintenanceKind::SmartLong, "NOSUCHSERIAL"),
            Code::NotFound,
        ),
        (
            start("n1", apb::MaintenanceKind::Unspecified, "tank"),
            Code::InvalidArgument,
        ),
        (
            start("n9", apb::MaintenanceKind::Scrub, "tank"),
            Code::NotFound,
        ),
    ] {
        let got = admin.health.start_maintenance(req.clone()).await;
        assert_eq!(got.map(|_| ()).unwrap_err().code(), code, "{req:?}");
    }
    assert!(asked.lock().unwrap().is_empty());

    let scrub = admin
        .health
        .start_maintenance(start("n1", apb::MaintenanceKind::Scrub, "tank"))
        .await?
        .into_inner();
    assert_eq!(scrub.subject, "tank");
    // A serial from the report becomes its device path.
    let test = admin
        .health
        .start_maintenance(start("n1", apb::MaintenanceKind::SmartShort, "COLOC0001"))
        .await?
        .into_inner();
    assert_eq!(test.subject, "/dev/nvme0n1");
    let sent = asked.lock().unwrap().clone();
    assert_eq!(
        sent,
        vec![
            apb::RunMaintenance {
                kind: apb::MaintenanceKind::Scrub as i32,
                subject: "tank".into()
            },
            apb::RunMaintenance {
                kind: apb::MaintenanceKind::SmartShort as i32,
                subject: "/dev/nvme0n1".into()
            },
        ]
    );
    let mut api = ctl.admin().await?;
    let entries = audit_entries(&mut api, "user:admin").await?;
    assert!(has_audit_entry(
        &entries,
        "user:admin",
        "node.maintenance",
        pb::AuditOutcome::Allowed
    ));

    // Offline: refused as such.
    drop(n1);
    let offline = wait_for("n1's session to close", crate::DEADLINE, || {
        let mut admin = admin.clone();
        async move {
            let got = admin
                .health
                .start_maintenance(start("n1", apb::MaintenanceKind::Scrub, "tank"))
                .await;
            match got {
                Err(s) if s.code() == Code::Unavailable => Some(s),
                _ => None,
            }
        }
    })
    .await?;
    assert!(offline.message().contains("not connected"), "{offline:?}");
    Ok(())
}

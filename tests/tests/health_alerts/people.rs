//! What people do with alerts, and what they may see: admins everything;
//! members and operators their own tenant's alerts, nothing of the nodes;
//! operators (not members) may acknowledge and silence them.

use coloc_controller::time::date_of;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use tonic::Code;

use crate::{Watch, fleet, nvme, report, send_report, wait_report};

const DAY: i64 = 86_400;

/// A participatif tenant whose membership ends in ten days.
async fn expiring_tenant(ctl: &TestController, api: &mut Api, name: &str) -> Result<()> {
    api.tenants
        .create_tenant(pb::CreateTenantRequest {
            name: name.into(),
            display_name: format!("Association {name}"),
            offer: pb::Offer::Participatif as i32,
            membership_expires: date_of(ctl.now() + 10 * DAY),
        })
        .await?;
    Ok(())
}

fn code<T: std::fmt::Debug>(r: std::result::Result<T, tonic::Status>) -> Code {
    match r {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(s) => s.code(),
    }
}

fn ack(id: u64, comment: &str) -> pb::AckAlertRequest {
    pb::AckAlertRequest {
        id,
        comment: comment.into(),
    }
}

fn silence(id: u64, duration_secs: u32, comment: &str) -> pb::SilenceAlertRequest {
    pb::SilenceAlertRequest {
        id,
        duration_secs,
        comment: comment.into(),
    }
}

/// The firing membership-expiry alert of `tenant`, as the admin lists it.
async fn membership_alert(admin: &mut Watch, tenant: &str) -> Result<pb::Alert> {
    let wanted = tenant.to_string();
    wait_for(
        &format!("membership alert of {tenant}"),
        crate::DEADLINE,
        || {
            let mut admin = admin.clone();
            let wanted = wanted.clone();
            async move {
                admin.list(false).await.ok()?.into_iter().find(|a| {
                    a.rule == "membership-expiry"
                        && a.subject.as_ref().is_some_and(|s| s.tenant == wanted)
                })
            }
        },
    )
    .await
}

#[tokio::test]
async fn acknowledging_and_silencing_are_checked_and_audited() -> Result<()> {
    let (ctl, agents, mut admin) = fleet(&["n1"]).await?;
    send_report(&agents[0], report(1, vec![nvme("S1", 4)])).await?;
    let disk = admin
        .wait_alert("disk-nvme-critical-warning", pb::AlertState::Firing)
        .await?;

    // Bad input: refused, nothing changed.
    assert_eq!(
        code(admin.alerts.ack_alert(ack(disk.id, "")).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(admin.alerts.ack_alert(ack(disk.id, "two\nlines")).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(admin.alerts.ack_alert(ack(disk.id, &"x".repeat(501))).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(admin.alerts.ack_alert(ack(999_999, "on it")).await),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .alerts
                .silence_alert(silence(disk.id, 31 * 86_400, "long"))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            admin
                .alerts
                .silence_alert(silence(disk.id, 3600, "a\u{1b}[2J"))
                .await
        ),
        Code::InvalidArgument
    );
    let unchanged = admin
        .alerts
        .get_alert(pb::AlertRef { id: disk.id })
        .await?
        .into_inner();
    assert_eq!(unchanged.acked_by, "");
    assert_eq!(unchanged.silenced_until_unix, 0);

    let acked = admin
        .alerts
        .ack_alert(ack(disk.id, "replacing the drive tomorrow"))
        .await?
        .into_inner();
    assert_eq!(acked.acked_by, "user:admin");
    assert_eq!(acked.ack_comment, "replacing the drive tomorrow");
    assert!(acked.acked_unix > 0);
    let now = ctl.now();
    let silenced = admin
        .alerts
        .silence_alert(silence(disk.id, 3600, "known, spare ordered"))
        .await?
        .into_inner();
    assert!((now + 3600..=now + 3610).contains(&silenced.silenced_until_unix));
    assert_eq!(silenced.silenced_by, "user:admin");
    let lifted = admin
        .alerts
        .silence_alert(silence(disk.id, 0, ""))
        .await?
        .into_inner();
    assert_eq!(lifted.silenced_until_unix, 0);
    // Still firing: people do not resolve alerts, reports do.
    assert_eq!(lifted.state, pb::AlertState::Firing as i32);

    let mut api = ctl.admin().await?;
    let entries = audit_entries(&mut api, "user:admin").await?;
    for action in ["alert.ack", "alert.silence", "alert.unsilence"] {
        assert!(
            has_audit_entry(&entries, "user:admin", action, pb::AuditOutcome::Allowed),
            "{action} missing"
        );
    }
    assert!(has_audit_entry(
        &entries,
        "user:admin",
        "alert.ack",
        pb::AuditOutcome::Failed
    ));
    Ok(())
}

#[tokio::test]
async fn a_member_sees_only_their_tenants_alerts_and_cannot_act_on_others() -> Result<()> {
    let (ctl, agents, mut admin) = fleet(&["n1"]).await?;
    let mut api = ctl.admin().await?;
    expiring_tenant(&ctl, &mut api, "asso-a").await?;
    expiring_tenant(&ctl, &mut api, "asso-b").await?;
    let member_a = create_user(&mut api, "member-a", "asso-a", pb::Role::Member).await?;
    let operator_a = create_user(&mut api, "operator-a", "asso-a", pb::Role::Operator).await?;
    send_report(&agents[0], report(1, vec![nvme("S1", 4)])).await?;
    wait_report(&admin, "n1", 1).await?;
    let disk = admin
        .wait_alert("disk-nvme-critical-warning", pb::AlertState::Firing)
        .await?;
    let alert_a = membership_alert(&mut admin, "asso-a").await?;
    let alert_b = membership_alert(&mut admin, "asso-b").await?;
    assert_eq!(alert_a.severity, pb::AlertSeverity::Warning as i32);

    let mut member = Watch::new(&ctl, &member_a).await?;
    // Listed: their own tenant's alert only.
    let seen = member.list(true).await?;
    assert_eq!(
        seen.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![alert_a.id],
        "{seen:#?}"
    );
    // Another tenant's alerts, asked for by name: refused.
    let asked = member
        .alerts
        .list_alerts(pb::ListAlertsRequest {
            tenant: "asso-b".into(),
            include_resolved: true,
            ..Default::default()
        })
        .await;
    assert_eq!(code(asked), Code::PermissionDenied);
    // By id: as if they did not exist.
    for id in [alert_b.id, disk.id] {
        assert_eq!(
            code(member.alerts.get_alert(pb::AlertRef { id }).await),
            Code::NotFound
        );
        assert_eq!(
            code(member.alerts.ack_alert(ack(id, "mine now")).await),
            Code::NotFound
        );
        assert_eq!(
            code(member.alerts.silence_alert(silence(id, 60, "quiet")).await),
            Code::NotFound
        );
    }
    // Their own: seen, but a member does not acknowledge.
    member
        .alerts
        .get_alert(pb::AlertRef { id: alert_a.id })
        .await?;
    assert_eq!(
        code(member.alerts.ack_alert(ack(alert_a.id, "paid")).await),
        Code::PermissionDenied
    );
    // Nothing of the nodes.
    assert_eq!(
        code(
            member
                .node_health("n1")
                .await
                .map_err(|e| { e.downcast::<tonic::Status>().expect("a gRPC status") })
        ),
        Code::PermissionDenied
    );
    let scrub = member
        .health
        .start_maintenance(pb::StartMaintenanceRequest {
            node: "n1".into(),
            kind: coloc_proto::agent::v1::MaintenanceKind::Scrub as i32,
            subject: "tank".into(),
        })
        .await;
    assert_eq!(code(scrub), Code::PermissionDenied);

    // Their operator acknowledges and silences their alert, and only it.
    let mut operator = Watch::new(&ctl, &operator_a).await?;
    let acked = operator
        .alerts
        .ack_alert(ack(alert_a.id, "renewal voted at the general assembly"))
        .await?
        .into_inner();
    assert_eq!(acked.acked_by, "user:operator-a");
    operator
        .alerts
        .silence_alert(silence(alert_a.id, 86_400, "until the treasurer pays"))
        .await?;
    for id in [alert_b.id, disk.id] {
        assert_eq!(
            code(operator.alerts.ack_alert(ack(id, "x")).await),
            Code::NotFound
        );
    }

    // Nothing the refusals touched changed.
    for id in [alert_b.id, disk.id] {
        let a = admin
            .alerts
            .get_alert(pb::AlertRef { id })
            .await?
            .into_inner();
        assert_eq!((a.acked_by.as_str(), a.silenced_until_unix), ("", 0));
    }
    // The refusals are in the audit log.
    let entries = audit_entries(&mut api, "user:member-a").await?;
    assert!(has_audit_entry(
        &entries,
        "user:member-a",
        "alert.ack",
        pb::AuditOutcome::Denied
    ));
    assert!(has_audit_entry(
        &entries,
        "user:member-a",
        "alert.silence",
        pb::AuditOutcome::Denied
    ));
    let entries = tenant_audit(&mut api, "asso-a").await?;
    assert!(has_audit_entry(
        &entries,
        "user:operator-a",
        "alert.silence",
        pb::AuditOutcome::Allowed
    ));
    Ok(())
}

#[tokio::test]
async fn a_volume_filling_up_is_its_tenants_alert_and_theirs_only() -> Result<()> {
    const GIB: u64 = 1 << 30;
    let (ctl, agents, admin) = fleet(&["n1"]).await?;
    let mut api = ctl.admin().await?;
    create_pool(
        &mut api,
        "n1",
        "tank",
        coloc_proto::agent::v1::PoolKind::Zfs,
        "serial:tank-1",
    )
    .await?;
    create_tenant(&mut api, "asso-a", pb::Offer::Participatif).await?;
    create_tenant(&mut api, "asso-b", pb::Offer::Participatif).await?;
    let volume = create_volume(
        &mut api,
        NewVolume {
            tenant: "asso-a",
            name: "data",
            node: "n1",
            pool: "tank",
            size_bytes: GIB,
            encrypted: false,
        },
    )
    .await?;
    let member_a = create_user(&mut api, "member-a", "asso-a", pb::Role::Member).await?;
    let member_b = create_user(&mut api, "member-b", "asso-b", pb::Role::Member).await?;
    let mut r = report(1, vec![]);
    r.filesystems = vec![coloc_proto::agent::v1::FilesystemUse {
        mount_path: "/srv/tenants/asso-a/data".into(),
        volume_id: volume.id.clone(),
        size_bytes: GIB,
        used_bytes: GIB / 100 * 95,
        available_bytes: GIB / 100 * 5,
        unknown: String::new(),
    }];
    send_report(&agents[0], r).await?;
    let full = admin
        .wait_alert("volume-full", pb::AlertState::Firing)
        .await?;
    let subject = full.subject.clone().context("no subject")?;
    assert_eq!(subject.kind, pb::AlertSubjectKind::Volume as i32);
    assert_eq!(
        (
            subject.node.as_str(),
            subject.name.as_str(),
            subject.tenant.as_str()
        ),
        ("n1", "data", "asso-a")
    );
    assert!(full.summary.contains("95 %"), "{}", full.summary);

    let seen_a = Watch::new(&ctl, &member_a).await?.list(true).await?;
    assert_eq!(
        seen_a.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![full.id]
    );
    let mut b = Watch::new(&ctl, &member_b).await?;
    assert!(b.list(true).await?.is_empty());
    assert_eq!(
        code(b.alerts.get_alert(pb::AlertRef { id: full.id }).await),
        Code::NotFound
    );
    Ok(())
}

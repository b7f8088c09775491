//! Health reports and alerts: reports survive a reopening, alerts are
//! deduplicated by rule and subject while firing, every firing and
//! resolution writes its audit entry and its outbox event in the same
//! transaction, and the outbox is read and marked as the notifier does.

use coloc_proto::agent::v1::{DiskHealth, HealthReport};

use super::fixtures::*;
use crate::store::prelude::*;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    AlertAck, AlertChanges, AlertEventKind, AlertFilter, AlertSeverity, AlertSilence, AlertState,
    AlertSubject, AuditFilter, NewAlert, StoredHealth, SubjectKind,
};

fn disk_alert(node: &str, serial: &str, severity: AlertSeverity) -> NewAlert {
    NewAlert {
        rule: "disk-nvme-critical-warning".into(),
        severity,
        subject: AlertSubject {
            kind: SubjectKind::Disk,
            node: Some(node_name(node)),
            name: serial.into(),
            tenant: None,
        },
        summary: format!("disk {serial}: reliability degraded"),
    }
}

fn volume_alert(node: &str, tenant: &str) -> NewAlert {
    NewAlert {
        rule: "volume-full".into(),
        severity: AlertSeverity::Warning,
        subject: AlertSubject {
            kind: SubjectKind::Volume,
            node: Some(node_name(node)),
            name: "data".into(),
            tenant: Some(tenant_name(tenant)),
        },
        summary: "volume data 95 % full".into(),
    }
}

#[tokio::test]
async fn health_reports_survive_reopening_and_unknown_nodes_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create_site(site("paris-1")).await.unwrap();
        store
            .create_join_token(join_token("jt-n1", "paris-1", NOW + 3600))
            .await
            .unwrap();
        store
            .enroll_node("hash-of-jt-n1", new_node("n1"), NOW)
            .await
            .unwrap();
        let report = HealthReport {
            collected_unix_ms: 5,
            disks: vec![DiskHealth {
                serial: "S1".into(),
                ..DiskHealth::default()
            }],
            ..HealthReport::default()
        };
        store
            .save_node_health(vec![
                StoredHealth {
                    node: node_name("n1"),
                    received_unix: 10,
                    report: std::sync::Arc::new(report.clone()),
                },
                StoredHealth {
                    node: node_name("ghost"),
                    received_unix: 10,
                    report: std::sync::Arc::new(report),
                },
            ])
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let loaded = store.load_node_health().await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].node, node_name("n1"));
    assert_eq!(loaded[0].received_unix, 10);
    assert_eq!(loaded[0].report.disks[0].serial, "S1");
}

#[tokio::test]
async fn alerts_fire_once_resolve_with_events_and_audit() {
    let store = SqliteStore::open_in_memory().unwrap();
    let fire = AlertChanges {
        fire: vec![
            disk_alert("n1", "S1", AlertSeverity::Critical),
            disk_alert("n1", "S1", AlertSeverity::Critical),
        ],
        ..AlertChanges::default()
    };
    let applied = store.apply_alert_changes(fire.clone(), 100).await.unwrap();
    assert_eq!(applied.fired.len(), 1, "deduplicated within a pass");
    let id = applied.fired[0].id;
    // Again in a later pass: still one.
    let again = store.apply_alert_changes(fire, 110).await.unwrap();
    assert!(again.fired.is_empty());
    assert_eq!(store.firing_alerts().await.unwrap().len(), 1);

    let resolved = store
        .apply_alert_changes(
            AlertChanges {
                resolve: vec![id, id],
                ..AlertChanges::default()
            },
            200,
        )
        .await
        .unwrap();
    assert_eq!(resolved.resolved.len(), 1);
    let a = store.get_alert(id).await.unwrap();
    assert_eq!(a.state, AlertState::Resolved);
    assert_eq!((a.started_unix, a.ended_unix), (100, Some(200)));
    assert!(store.firing_alerts().await.unwrap().is_empty());

    // The same condition later is a new alert.
    let refired = store
        .apply_alert_changes(
            AlertChanges {
                fire: vec![disk_alert("n1", "S1", AlertSeverity::Critical)],
                ..AlertChanges::default()
            },
            300,
        )
        .await
        .unwrap();
    assert_ne!(refired.fired[0].id, id);

    let events = store.pending_alert_events(0, 100).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| (e.alert_id, e.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (id, AlertEventKind::Firing),
            (id, AlertEventKind::Resolved),
            (refired.fired[0].id, AlertEventKind::Firing)
        ]
    );
    assert_eq!(events[1].alert.ended_unix, Some(200));
    assert_eq!(events[0].alert.rule, "disk-nvme-critical-warning");
    store
        .mark_alert_events_notified(&[events[0].id, events[1].id], 400)
        .await
        .unwrap();
    let left = store.pending_alert_events(0, 100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(
        store
            .pending_alert_events(left[0].id, 100)
            .await
            .unwrap()
            .is_empty()
    );

    let audit = store.list_audit(AuditFilter::default()).await.unwrap();
    let actions: Vec<_> = audit
        .entries
        .iter()
        .map(|e| (e.fields().actor.as_str(), e.fields().action.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("system", "alert.fire"),
            ("system", "alert.resolve"),
            ("system", "alert.fire")
        ]
    );
}

#[tokio::test]
async fn ack_silence_filters_and_silenced_events() {
    let store = SqliteStore::open_in_memory().unwrap();
    let applied = store
        .apply_alert_changes(
            AlertChanges {
                fire: vec![
                    disk_alert("n1", "S1", AlertSeverity::Warning),
                    volume_alert("n1", "asso"),
                    volume_alert("n2", "other"),
                ],
                ..AlertChanges::default()
            },
            100,
        )
        .await
        .unwrap();
    let disk = applied.fired[0].id;
    let acked = store
        .ack_alert(
            disk,
            AlertAck {
                by: "user:admin".into(),
                at_unix: 150,
                comment: "replacing it".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(acked.ack.unwrap().comment, "replacing it");
    assert!(
        store
            .ack_alert(
                9999,
                AlertAck {
                    by: "x".into(),
                    at_unix: 1,
                    comment: "c".into()
                }
            )
            .await
            .is_err()
    );
    let silenced = store
        .silence_alert(
            disk,
            Some(AlertSilence {
                until_unix: 1000,
                by: "user:admin".into(),
                comment: "known".into(),
            }),
        )
        .await
        .unwrap();
    assert!(silenced.silenced_at(999) && !silenced.silenced_at(1000));
    // Resolved while silenced: its event says so.
    store
        .apply_alert_changes(
            AlertChanges {
                resolve: vec![disk],
                update: vec![(
                    applied.fired[1].id,
                    AlertSeverity::Critical,
                    "volume data 99 % full".into(),
                )],
                ..AlertChanges::default()
            },
            200,
        )
        .await
        .unwrap();
    let events = store.pending_alert_events(0, 10).await.unwrap();
    let resolved = events
        .iter()
        .find(|e| e.kind == AlertEventKind::Resolved)
        .unwrap();
    assert!(resolved.silenced);
    assert!(
        events
            .iter()
            .filter(|e| e.kind == AlertEventKind::Firing)
            .all(|e| !e.silenced)
    );
    let lifted = store.silence_alert(disk, None).await.unwrap();
    assert!(lifted.silence.is_none());

    let asso = store
        .list_alerts(AlertFilter {
            tenant: Some(tenant_name("asso")),
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(asso.len(), 1);
    assert_eq!(asso[0].severity, AlertSeverity::Critical);
    assert_eq!(asso[0].summary, "volume data 99 % full");
    let tenants_only = store
        .list_alerts(AlertFilter {
            include_resolved: true,
            tenant_subjects_only: true,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(tenants_only.len(), 2);
    let all = store
        .list_alerts(AlertFilter {
            include_resolved: true,
            node: Some(node_name("n1")),
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    // Newest first.
    assert_eq!(
        all.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![applied.fired[1].id, disk]
    );
}

//! The whole evaluation and the resolution rule: an alert resolves only
//! when what raised it was observed again and found fine.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use coloc_proto::agent::v1::{DiskHealth, HealthReport, SmartVerdict, Unobserved};

use super::testing::{inputs_for, node, node_record, rules};
use super::*;
use crate::store::{AlertState, ConnState, Removal};

const NOW: UnixSecs = 1_800_000_000;

fn disk(bits: u32) -> DiskHealth {
    DiskHealth {
        device: "/dev/nvme0n1".into(),
        serial: "S1".into(),
        smart: SmartVerdict::Passed as i32,
        critical_warning: Some(bits),
        ..DiskHealth::default()
    }
}

fn reports(report: HealthReport, received: UnixSecs) -> HashMap<NodeName, NodeHealth> {
    [(
        node("n1"),
        NodeHealth {
            report: Arc::new(report),
            received_unix: received,
        },
    )]
    .into()
}

fn firing(rule: &str, kind: SubjectKind, name: &str) -> AlertRecord {
    AlertRecord {
        id: 1,
        rule: rule.into(),
        severity: AlertSeverity::Critical,
        subject: on_node(&node("n1"), kind, name),
        state: AlertState::Firing,
        summary: String::new(),
        started_unix: NOW - 100,
        ended_unix: None,
        ack: None,
        silence: None,
    }
}

#[test]
fn a_critical_warning_is_a_condition_and_its_clearing_may_resolve_it() {
    let t = AlertsConfig::default();
    let nodes = vec![node_record("n1")];
    let connected: HashSet<_> = [node("n1")].into();
    let bad = reports(
        HealthReport {
            disks: vec![disk(4)],
            ..HealthReport::default()
        },
        NOW,
    );
    let c = evaluate(&inputs_for(NOW, &t, &nodes, &connected, &bad));
    assert_eq!(rules(&c), vec![disks::NVME_CRITICAL_WARNING]);
    let good = reports(
        HealthReport {
            disks: vec![disk(0)],
            ..HealthReport::default()
        },
        NOW,
    );
    let inputs = inputs_for(NOW, &t, &nodes, &connected, &good);
    assert!(evaluate(&inputs).is_empty());
    let alert = firing(disks::NVME_CRITICAL_WARNING, SubjectKind::Disk, "S1");
    assert!(may_resolve(&inputs, &alert));
}

#[test]
fn missing_data_never_resolves_an_alert() {
    let t = AlertsConfig::default();
    let mut n = node_record("n1");
    // Its session just dropped: not unreachable yet.
    n.last_seen_unix = Some(NOW);
    let nodes = vec![n];
    let connected = HashSet::new();
    let alert = firing(disks::NVME_CRITICAL_WARNING, SubjectKind::Disk, "S1");
    // No report at all, or only a stale one (older than two periods).
    let none = HashMap::new();
    assert!(!may_resolve(
        &inputs_for(NOW, &t, &nodes, &connected, &none),
        &alert
    ));
    let stale = reports(HealthReport::default(), NOW - 121);
    assert!(!may_resolve(
        &inputs_for(NOW, &t, &nodes, &connected, &stale),
        &alert
    ));
    // A fresh report whose disks could not be read.
    let unobserved = reports(
        HealthReport {
            unobserved: vec![Unobserved {
                source: "disks".into(),
                reason: "lsblk timed out".into(),
            }],
            ..HealthReport::default()
        },
        NOW,
    );
    let inputs = inputs_for(NOW, &t, &nodes, &connected, &unobserved);
    assert!(!may_resolve(&inputs, &alert));
    // ... does not hold back an alert of another source.
    let pool = firing(pools::POOL_DEGRADED, SubjectKind::Pool, "tank");
    assert!(may_resolve(&inputs, &pool));
    // A fresh report listing the disk as unknown.
    let unknown = reports(
        HealthReport {
            disks: vec![DiskHealth {
                unknown: "smartctl timed out".into(),
                smart: SmartVerdict::Unknown as i32,
                ..disk(0)
            }],
            ..HealthReport::default()
        },
        NOW,
    );
    let inputs = inputs_for(NOW, &t, &nodes, &connected, &unknown);
    assert!(!may_resolve(&inputs, &alert));
    assert_eq!(rules(&evaluate(&inputs)), vec![node::HEALTH_UNKNOWN]);
    // An app alert waits for the node's session.
    let mut app = firing(tenants::APP_FAILED, SubjectKind::App, "wiki");
    app.subject.tenant = Some(TenantName::new("asso").unwrap());
    assert!(!may_resolve(&inputs, &app));
    let connected: HashSet<_> = [node("n1")].into();
    assert!(may_resolve(
        &inputs_for(NOW, &t, &nodes, &connected, &unknown),
        &app
    ));
}

#[test]
fn a_silent_nodes_last_report_still_stands_and_removed_nodes_resolve() {
    let t = AlertsConfig::default();
    let mut n = node_record("n1");
    n.conn_state = ConnState::Unreachable;
    let nodes = vec![n.clone()];
    let connected = HashSet::new();
    let old = reports(
        HealthReport {
            disks: vec![disk(4)],
            ..HealthReport::default()
        },
        NOW - 3600,
    );
    let c = evaluate(&inputs_for(NOW, &t, &nodes, &connected, &old));
    assert_eq!(
        rules(&c),
        vec![disks::NVME_CRITICAL_WARNING, node::UNREACHABLE]
    );
    n.removed = Some(Removal {
        at_unix: NOW,
        by: "user:admin".into(),
    });
    let nodes = vec![n];
    let inputs = inputs_for(NOW, &t, &nodes, &connected, &old);
    assert!(evaluate(&inputs).is_empty());
    let alert = firing(disks::NVME_CRITICAL_WARNING, SubjectKind::Disk, "S1");
    assert!(may_resolve(&inputs, &alert));
}

#[test]
fn one_condition_per_rule_and_subject_the_most_severe() {
    let s = on_node(&node("n1"), SubjectKind::Sensor, "x");
    let out = dedup(vec![
        condition("temperature", AlertSeverity::Warning, s.clone(), "w".into()),
        condition("temperature", AlertSeverity::Critical, s, "c".into()),
    ]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].severity, AlertSeverity::Critical);
}

#[test]
fn summaries_are_one_bounded_line() {
    assert_eq!(
        one_line("zpool: timed out\n\u{1b}[2Jagain"),
        "zpool: timed out  [2Jagain"
    );
    let long = one_line(&"x".repeat(2000));
    assert_eq!(long.chars().count(), SUMMARY_MAX_CHARS + 1);
    assert!(long.ends_with('…'));
}

#[test]
fn every_rule_is_listed_once_and_documented() {
    let doc = include_str!("../../../docs/HEALTH.md");
    let mut names: Vec<&str> = RULES.iter().map(|(r, _)| *r).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), RULES.len(), "a rule listed twice");
    for (rule, severities) in RULES {
        assert!(!severities.is_empty());
        assert!(
            doc.contains(&format!("`{rule}`")),
            "{rule} missing from docs/HEALTH.md"
        );
    }
}

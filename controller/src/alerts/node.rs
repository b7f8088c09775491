//! Rules about the node as a whole: whether colocd hears from it, its root
//! filesystem, failed units, its clock, a pending reboot, its temperature
//! sensors, and every part of its report the agent could not observe
//! (`health-unknown`: unknown is never healthy).

use coloc_proto::agent::v1::{HealthReport, SmartVerdict};
use coloc_proto::domain::NodeName;

use super::disks::disk_name;
use super::{Condition, Inputs, condition, on_node};
use crate::config::AlertsConfig;
use crate::store::{AlertSeverity, AlertSubject, ConnState, NodeRecord, SubjectKind, VolumeRecord};

pub const UNREACHABLE: &str = "node-unreachable";
pub const FILESYSTEM_FULL: &str = "filesystem-full";
pub const UNITS_FAILED: &str = "units-failed";
pub const CLOCK_UNSYNCHRONISED: &str = "clock-unsynchronised";
pub const REBOOT_REQUIRED: &str = "reboot-required";
pub const TEMPERATURE: &str = "temperature";
pub const HEALTH_UNKNOWN: &str = "health-unknown";

/// How many health periods without a word make a node unreachable, when
/// the store has not marked it so already.
pub const SILENT_PERIODS: i64 = 3;

/// `node-unreachable`: the store marked the node unreachable
/// (`unreachable_after_secs` without a session), or it has no session and
/// was last seen more than three health periods ago. A node never
/// connected yet (enrolling) is not unreachable.
pub fn unreachable(inputs: &Inputs<'_>, n: &NodeRecord) -> Option<Condition> {
    if n.conn_state == ConnState::Enrolling || inputs.connected.contains(&n.name) {
        return None;
    }
    let silent_since = n.last_seen_unix.unwrap_or(n.conn_changed_unix);
    let silent_for = inputs.now.saturating_sub(silent_since);
    if n.conn_state != ConnState::Unreachable && silent_for <= SILENT_PERIODS * inputs.period_secs {
        return None;
    }
    Some(condition(
        UNREACHABLE,
        AlertSeverity::Critical,
        on_node(&n.name, SubjectKind::Node, n.name.as_str()),
        format!(
            "node {} unreachable: no session, last seen {} s ago",
            n.name, silent_for
        ),
    ))
}

/// Percent used as df shows it: used of what is usable (used + available).
pub fn used_percent(used: u64, available: u64) -> Option<f64> {
    let usable = used.checked_add(available)?;
    (usable > 0).then(|| used as f64 * 100.0 / usable as f64)
}

pub fn evaluate(node: &NodeName, r: &HealthReport, t: &AlertsConfig) -> Vec<Condition> {
    let mut out = Vec::new();
    for f in r
        .filesystems
        .iter()
        .filter(|f| f.unknown.is_empty() && f.volume_id.is_empty() && f.mount_path == "/")
    {
        if let Some(p) = used_percent(f.used_bytes, f.available_bytes)
            && p >= f64::from(t.filesystem_percent)
        {
            out.push(condition(
                FILESYSTEM_FULL,
                AlertSeverity::Critical,
                on_node(node, SubjectKind::Filesystem, &f.mount_path),
                format!("root filesystem of {node} {p:.0} % full"),
            ));
        }
    }
    if let Some(units) = r.units.as_ref().filter(|u| u.unknown.is_empty()) {
        for u in &units.failed {
            out.push(condition(
                UNITS_FAILED,
                AlertSeverity::Warning,
                on_node(node, SubjectKind::Unit, &u.name),
                format!("unit {} failed on {node} ({})", u.name, u.result),
            ));
        }
    }
    if let Some(c) = r.clock.as_ref().filter(|c| c.unknown.is_empty())
        && !c.synchronised
    {
        let err = c
            .max_error_secs
            .map(|e| format!(", maximum error {e:.1} s"))
            .unwrap_or_default();
        out.push(condition(
            CLOCK_UNSYNCHRONISED,
            AlertSeverity::Warning,
            on_node(node, SubjectKind::Node, node.as_str()),
            format!("clock of {node} not synchronised{err} (certificates depend on it)"),
        ));
    }
    if let Some(b) = r.reboot.as_ref().filter(|b| b.unknown.is_empty())
        && b.required
    {
        out.push(condition(
            REBOOT_REQUIRED,
            AlertSeverity::Info,
            on_node(node, SubjectKind::Node, node.as_str()),
            format!("{node} needs a reboot: {}", b.reason),
        ));
    }
    for s in r.temperatures.iter().filter(|s| s.unknown.is_empty()) {
        let (limit, severity, whose) = match s.critical_celsius {
            Some(c) if c > 0.0 => (c, AlertSeverity::Critical, "its critical temperature"),
            _ => (
                f64::from(t.sensor_temperature_celsius),
                AlertSeverity::Warning,
                "alerts.sensor_temperature_celsius",
            ),
        };
        if s.celsius > limit {
            out.push(condition(
                TEMPERATURE,
                severity,
                on_node(node, SubjectKind::Sensor, &s.sensor),
                format!(
                    "sensor {} on {node}: {:.0} °C, over {whose} ({limit:.0} °C)",
                    s.sensor, s.celsius
                ),
            ));
        }
    }
    out.extend(unknowns(node, r));
    out
}

/// `health-unknown`: one warning per part the agent could not observe,
/// with its reason.
fn unknowns(node: &NodeName, r: &HealthReport) -> Vec<Condition> {
    let mut found: Vec<(SubjectKind, String, String)> = Vec::new();
    for d in &r.disks {
        if !d.unknown.is_empty() || d.smart == SmartVerdict::Unknown as i32 {
            let reason = if d.unknown.is_empty() {
                "smartctl could not tell"
            } else {
                &d.unknown
            };
            found.push((
                SubjectKind::Disk,
                disk_name(d).to_string(),
                reason.to_string(),
            ));
        }
    }
    for p in r.zfs_pools.iter().filter(|p| !p.unknown.is_empty()) {
        found.push((SubjectKind::Pool, p.name.clone(), p.unknown.clone()));
    }
    for p in r.thin_pools.iter().filter(|p| !p.unknown.is_empty()) {
        found.push((
            SubjectKind::ThinPool,
            format!("{}/{}", p.volume_group, p.name),
            p.unknown.clone(),
        ));
    }
    for f in r.filesystems.iter().filter(|f| !f.unknown.is_empty()) {
        found.push((
            SubjectKind::Filesystem,
            f.mount_path.clone(),
            f.unknown.clone(),
        ));
    }
    for s in r.temperatures.iter().filter(|s| !s.unknown.is_empty()) {
        found.push((SubjectKind::Sensor, s.sensor.clone(), s.unknown.clone()));
    }
    let parts = [
        ("system", r.system.as_ref().map(|s| &s.unknown)),
        ("units", r.units.as_ref().map(|u| &u.unknown)),
        ("clock", r.clock.as_ref().map(|c| &c.unknown)),
        ("reboot", r.reboot.as_ref().map(|b| &b.unknown)),
    ];
    for (source, unknown) in parts {
        if let Some(u) = unknown.filter(|u| !u.is_empty()) {
            found.push((SubjectKind::Node, source.to_string(), u.clone()));
        }
    }
    for u in &r.unobserved {
        found.push((SubjectKind::Node, u.source.clone(), u.reason.clone()));
    }
    found
        .into_iter()
        .map(|(kind, name, reason)| {
            condition(
                HEALTH_UNKNOWN,
                AlertSeverity::Warning,
                on_node(node, kind, &name),
                format!(
                    "{} {name} on {node} could not be observed: {reason}",
                    kind.as_str()
                ),
            )
        })
        .collect()
}

/// Whether the report lists `subject` (or the part `rule` reads) as
/// unknown: its alerts then stay as they are.
pub fn subject_unknown(
    r: &HealthReport,
    volumes: &[VolumeRecord],
    rule: &str,
    subject: &AlertSubject,
) -> bool {
    let name = subject.name.as_str();
    match subject.kind {
        SubjectKind::Disk => r.disks.iter().any(|d| {
            disk_name(d) == name
                && (!d.unknown.is_empty() || d.smart == SmartVerdict::Unknown as i32)
        }),
        SubjectKind::Pool => r
            .zfs_pools
            .iter()
            .any(|p| p.name == name && !p.unknown.is_empty()),
        SubjectKind::ThinPool => r
            .thin_pools
            .iter()
            .any(|p| format!("{}/{}", p.volume_group, p.name) == name && !p.unknown.is_empty()),
        SubjectKind::Filesystem => r
            .filesystems
            .iter()
            .any(|f| f.mount_path == name && !f.unknown.is_empty()),
        SubjectKind::Volume => volumes
            .iter()
            .filter(|v| {
                Some(&v.node) == subject.node.as_ref()
                    && Some(&v.tenant) == subject.tenant.as_ref()
                    && v.name.as_str() == name
            })
            .any(|v| {
                r.filesystems
                    .iter()
                    .any(|f| f.volume_id == v.id.as_str() && !f.unknown.is_empty())
            }),
        SubjectKind::Sensor => r
            .temperatures
            .iter()
            .any(|s| s.sensor == name && !s.unknown.is_empty()),
        SubjectKind::Unit => r.units.as_ref().is_some_and(|u| !u.unknown.is_empty()),
        SubjectKind::Node => match rule {
            CLOCK_UNSYNCHRONISED => r.clock.as_ref().is_none_or(|c| !c.unknown.is_empty()),
            REBOOT_REQUIRED => r.reboot.as_ref().is_none_or(|b| !b.unknown.is_empty()),
            _ => false,
        },
        SubjectKind::App | SubjectKind::Certificate | SubjectKind::Tenant => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use coloc_proto::agent::v1::{
        ClockHealth, DiskHealth, FailedUnit, FilesystemUse, RebootHealth, Temperature, UnitsHealth,
        Unobserved,
    };

    use super::*;
    use crate::alerts::testing::{inputs_for, node, node_record, rules};

    fn eval(r: &HealthReport) -> Vec<Condition> {
        evaluate(&node("n1"), r, &AlertsConfig::default())
    }

    #[test]
    fn unreachable_by_the_store_or_by_silence_never_while_connected() {
        let t = AlertsConfig::default();
        let now = 10_000;
        let mut n = node_record("n1");
        n.conn_state = ConnState::Disconnected;
        n.last_seen_unix = Some(now - 100);
        let nodes = vec![n.clone()];
        let connected = HashSet::new();
        let reports = HashMap::new();
        let inputs = inputs_for(now, &t, &nodes, &connected, &reports);
        assert!(
            unreachable(&inputs, &n).is_none(),
            "100 s is within 3 periods"
        );
        n.last_seen_unix = Some(now - 181);
        assert_eq!(unreachable(&inputs, &n).unwrap().rule, UNREACHABLE);
        n.last_seen_unix = Some(now - 5);
        n.conn_state = ConnState::Unreachable;
        let c = unreachable(&inputs, &n).unwrap();
        assert_eq!(c.severity, AlertSeverity::Critical);
        assert_eq!(c.subject.kind, SubjectKind::Node);
        let connected: HashSet<_> = [node("n1")].into();
        let inputs = inputs_for(now, &t, &nodes, &connected, &reports);
        assert!(unreachable(&inputs, &n).is_none());
        n.conn_state = ConnState::Enrolling;
        n.last_seen_unix = None;
        let nobody = HashSet::new();
        let inputs = inputs_for(now, &t, &nodes, &nobody, &reports);
        assert!(unreachable(&inputs, &n).is_none());
    }

    #[test]
    fn root_filesystem_full_at_90_percent_as_df_counts() {
        let fs = |used, available| HealthReport {
            filesystems: vec![FilesystemUse {
                mount_path: "/".into(),
                size_bytes: 1000,
                used_bytes: used,
                available_bytes: available,
                ..FilesystemUse::default()
            }],
            ..HealthReport::default()
        };
        assert!(eval(&fs(800, 150)).is_empty());
        let c = eval(&fs(900, 100));
        assert_eq!(rules(&c), vec![FILESYSTEM_FULL]);
        assert_eq!(c[0].subject.name, "/");
        assert_eq!(used_percent(0, 0), None);
    }

    #[test]
    fn failed_units_clock_and_reboot() {
        let r = HealthReport {
            units: Some(UnitsHealth {
                failed: vec![
                    FailedUnit {
                        name: "a.service".into(),
                        result: "exit-code".into(),
                    },
                    FailedUnit {
                        name: "b.service".into(),
                        result: "signal".into(),
                    },
                ],
                unknown: String::new(),
            }),
            clock: Some(ClockHealth {
                synchronised: false,
                max_error_secs: Some(16.0),
                unknown: String::new(),
            }),
            reboot: Some(RebootHealth {
                required: true,
                reason: "/run/reboot-required".into(),
                unknown: String::new(),
            }),
            ..HealthReport::default()
        };
        let c = eval(&r);
        assert_eq!(
            rules(&c),
            vec![
                UNITS_FAILED,
                UNITS_FAILED,
                CLOCK_UNSYNCHRONISED,
                REBOOT_REQUIRED
            ]
        );
        assert_eq!(c[1].subject.name, "b.service");
        assert_eq!(c[3].severity, AlertSeverity::Info);
        let fine = HealthReport {
            clock: Some(ClockHealth {
                synchronised: true,
                ..ClockHealth::default()
            }),
            reboot: Some(RebootHealth::default()),
            units: Some(UnitsHealth::default()),
            ..HealthReport::default()
        };
        assert!(eval(&fine).is_empty());
    }

    #[test]
    fn sensors_over_their_critical_or_the_configured_limit() {
        let r = HealthReport {
            temperatures: vec![
                Temperature {
                    sensor: "coretemp Package id 0".into(),
                    celsius: 101.0,
                    critical_celsius: Some(100.0),
                    unknown: String::new(),
                },
                Temperature {
                    sensor: "acpitz".into(),
                    celsius: 91.0,
                    critical_celsius: None,
                    unknown: String::new(),
                },
                Temperature {
                    sensor: "nvme".into(),
                    celsius: 50.0,
                    critical_celsius: Some(80.0),
                    unknown: String::new(),
                },
            ],
            ..HealthReport::default()
        };
        let c = eval(&r);
        assert_eq!(rules(&c), vec![TEMPERATURE, TEMPERATURE]);
        assert_eq!(c[0].severity, AlertSeverity::Critical);
        assert_eq!(c[1].severity, AlertSeverity::Warning);
    }

    #[test]
    fn every_unknown_part_and_unobserved_source_warns_with_its_reason() {
        let r = HealthReport {
            disks: vec![DiskHealth {
                device: "/dev/sdb".into(),
                serial: "WD1".into(),
                smart: SmartVerdict::Unknown as i32,
                unknown: "disk vanished mid-read".into(),
                ..DiskHealth::default()
            }],
            temperatures: vec![Temperature {
                sensor: "bogus".into(),
                celsius: 0.0,
                critical_celsius: None,
                unknown: "reads 3000 °C".into(),
            }],
            unobserved: vec![Unobserved {
                source: "zfs".into(),
                reason: "`zpool status -p` timed out after 20 s".into(),
            }],
            ..HealthReport::default()
        };
        let c = eval(&r);
        assert_eq!(rules(&c), vec![HEALTH_UNKNOWN; 3]);
        assert_eq!(c[0].subject.kind, SubjectKind::Disk);
        assert!(c[0].summary.contains("disk vanished mid-read"));
        assert_eq!(c[2].subject.kind, SubjectKind::Node);
        assert_eq!(c[2].subject.name, "zfs");
        assert!(c[2].summary.contains("timed out"));
        assert!(subject_unknown(&r, &[], "disk-sectors", &c[0].subject));
        assert!(subject_unknown(&r, &[], TEMPERATURE, &c[1].subject));
    }
}

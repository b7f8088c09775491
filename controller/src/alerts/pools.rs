//! ZFS pool and LVM thin pool rules: what zed and `zpool status` tell a
//! sysadmin (state, error counters, scrubs) and how full each pool is. A
//! pool or thin pool listed with `unknown` raises `health-unknown`
//! instead ([`super::node`]).

use coloc_proto::agent::v1::{HealthReport, ScrubState, ThinPoolHealth, ZfsPoolHealth};
use coloc_proto::domain::NodeName;

use super::{Condition, condition, on_node};
use crate::config::AlertsConfig;
use crate::store::{AlertSeverity, SubjectKind, UnixSecs};

pub const POOL_DEGRADED: &str = "pool-degraded";
pub const POOL_ERRORS: &str = "pool-errors";
pub const SCRUB_OVERDUE: &str = "scrub-overdue";
pub const SCRUB_ERRORS: &str = "scrub-errors";
pub const POOL_CAPACITY: &str = "pool-capacity";
pub const THIN_POOL_DATA: &str = "thin-pool-data";
pub const THIN_POOL_METADATA: &str = "thin-pool-metadata";

const DAY: i64 = 86_400;

pub fn evaluate(
    node: &NodeName,
    report: &HealthReport,
    t: &AlertsConfig,
    scrub_period_days: Option<u32>,
    now: UnixSecs,
) -> Vec<Condition> {
    let mut out = Vec::new();
    for p in report.zfs_pools.iter().filter(|p| p.unknown.is_empty()) {
        out.extend(zfs_pool(node, p, t, scrub_period_days, now));
    }
    for tp in report.thin_pools.iter().filter(|p| p.unknown.is_empty()) {
        out.extend(thin_pool(node, tp, t));
    }
    out
}

/// Warning at or above `warning` percent, critical at or above `critical`.
fn level(percent: f64, t: &AlertsConfig) -> Option<AlertSeverity> {
    if percent >= f64::from(t.pool_critical_percent) {
        Some(AlertSeverity::Critical)
    } else if percent >= f64::from(t.pool_warning_percent) {
        Some(AlertSeverity::Warning)
    } else {
        None
    }
}

fn zfs_pool(
    node: &NodeName,
    p: &ZfsPoolHealth,
    t: &AlertsConfig,
    scrub_period_days: Option<u32>,
    now: UnixSecs,
) -> Vec<Condition> {
    let said = |rule, severity, summary: String| {
        condition(
            rule,
            severity,
            on_node(node, SubjectKind::Pool, &p.name),
            format!("pool {} on {node}: {summary}", p.name),
        )
    };
    let mut out = Vec::new();
    let state_severity = match p.state.as_str() {
        "ONLINE" => None,
        "DEGRADED" | "OFFLINE" => Some(AlertSeverity::Warning),
        // FAULTED, UNAVAIL, SUSPENDED, REMOVED and anything zpool may
        // print that this colocd does not know.
        _ => Some(AlertSeverity::Critical),
    };
    if let Some(severity) = state_severity {
        let bad: Vec<String> = p
            .vdevs
            .iter()
            .filter(|v| v.depth > 0 && v.state != "ONLINE" && !v.state.is_empty())
            .take(8)
            .map(|v| format!("{} {}", v.name, v.state))
            .collect();
        let detail = if bad.is_empty() {
            String::new()
        } else {
            format!(" ({})", bad.join(", "))
        };
        out.push(said(
            POOL_DEGRADED,
            severity,
            format!("{}{detail}", p.state),
        ));
    }
    let counted: Vec<String> = p
        .vdevs
        .iter()
        .filter(|v| v.read_errors + v.write_errors + v.checksum_errors > 0)
        .take(8)
        .map(|v| {
            format!(
                "{} read {} write {} cksum {}",
                v.name, v.read_errors, v.write_errors, v.checksum_errors
            )
        })
        .collect();
    if !counted.is_empty() || p.data_errors > 0 {
        let mut parts = counted;
        if p.data_errors > 0 {
            parts.push(format!("{} data errors", p.data_errors));
        }
        let severity = if p.data_errors > 0 {
            AlertSeverity::Critical
        } else {
            AlertSeverity::Warning
        };
        out.push(said(
            POOL_ERRORS,
            severity,
            format!("{} (until `zpool clear`)", parts.join("; ")),
        ));
    }
    if let Some(scrub) = &p.scrub {
        if scrub.state == ScrubState::Finished as i32 && scrub.errors > 0 {
            out.push(said(
                SCRUB_ERRORS,
                AlertSeverity::Warning,
                format!(
                    "the last scrub found {} errors ({} bytes repaired)",
                    scrub.errors, scrub.repaired_bytes
                ),
            ));
        }
        if let Some(days) = scrub_period_days {
            let due = i64::from(days + t.scrub_grace_days) * DAY;
            let last = match ScrubState::try_from(scrub.state) {
                Ok(ScrubState::Finished) => Some(scrub.finished_unix),
                Ok(ScrubState::Canceled) => Some(scrub.started_unix),
                // Running: it is being done. Never scrubbed: colocd does
                // not know how old the pool is, and the agent scrubs it
                // within its first period.
                _ => None,
            };
            if let Some(last) = last.filter(|l| *l > 0)
                && now.saturating_sub(i64::try_from(last).unwrap_or(i64::MAX)) > due
            {
                out.push(said(
                    SCRUB_OVERDUE,
                    AlertSeverity::Warning,
                    format!(
                        "no finished scrub for {} days (period {days} days + {} days grace)",
                        now.saturating_sub(i64::try_from(last).unwrap_or(0)) / DAY,
                        t.scrub_grace_days
                    ),
                ));
            }
        }
    }
    if p.size_bytes > 0 {
        let percent = p.allocated_bytes as f64 * 100.0 / p.size_bytes as f64;
        if let Some(severity) = level(percent, t) {
            out.push(said(
                POOL_CAPACITY,
                severity,
                format!("{percent:.0} % allocated"),
            ));
        }
    }
    out
}

fn thin_pool(node: &NodeName, tp: &ThinPoolHealth, t: &AlertsConfig) -> Vec<Condition> {
    let name = format!("{}/{}", tp.volume_group, tp.name);
    [
        (THIN_POOL_DATA, "data", tp.data_percent),
        (THIN_POOL_METADATA, "metadata", tp.metadata_percent),
    ]
    .into_iter()
    .filter_map(|(rule, what, percent)| {
        level(percent, t).map(|severity| {
            condition(
                rule,
                severity,
                on_node(node, SubjectKind::ThinPool, &name),
                format!("thin pool {name} on {node}: {what} {percent:.0} % full"),
            )
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use coloc_proto::agent::v1::{ScrubStatus, VdevHealth};

    use super::*;
    use crate::alerts::testing::{node, rules};

    const NOW: UnixSecs = 1_800_000_000;

    fn vdev(name: &str, depth: u32, state: &str) -> VdevHealth {
        VdevHealth {
            name: name.into(),
            depth,
            state: state.into(),
            ..VdevHealth::default()
        }
    }

    fn pool() -> ZfsPoolHealth {
        ZfsPoolHealth {
            name: "tank".into(),
            state: "ONLINE".into(),
            size_bytes: 1000,
            allocated_bytes: 100,
            free_bytes: 900,
            vdevs: vec![
                vdev("tank", 0, "ONLINE"),
                vdev("mirror-0", 1, "ONLINE"),
                vdev("sda", 2, "ONLINE"),
                vdev("sdb", 2, "ONLINE"),
            ],
            scrub: Some(ScrubStatus {
                state: ScrubState::Finished as i32,
                started_unix: (NOW - 3 * DAY) as u64,
                finished_unix: (NOW - 3 * DAY + 600) as u64,
                ..ScrubStatus::default()
            }),
            ..ZfsPoolHealth::default()
        }
    }

    fn eval(p: ZfsPoolHealth) -> Vec<Condition> {
        let r = HealthReport {
            zfs_pools: vec![p],
            ..HealthReport::default()
        };
        evaluate(&node("n1"), &r, &AlertsConfig::default(), Some(30), NOW)
    }

    fn severity_of(c: &[Condition], rule: &str) -> AlertSeverity {
        c.iter().find(|c| c.rule == rule).unwrap().severity
    }

    #[test]
    fn a_healthy_pool_raises_nothing() {
        assert!(eval(pool()).is_empty());
    }

    #[test]
    fn degraded_warns_and_faulted_is_critical() {
        let mut p = pool();
        p.state = "DEGRADED".into();
        p.vdevs[1].state = "DEGRADED".into();
        p.vdevs[3].state = "REMOVED".into();
        let c = eval(p.clone());
        assert_eq!(rules(&c), vec![POOL_DEGRADED]);
        assert_eq!(c[0].severity, AlertSeverity::Warning);
        assert!(c[0].summary.contains("sdb REMOVED"), "{}", c[0].summary);
        for state in ["FAULTED", "UNAVAIL", "SUSPENDED"] {
            p.state = state.into();
            assert_eq!(
                severity_of(&eval(p.clone()), POOL_DEGRADED),
                AlertSeverity::Critical
            );
        }
    }

    #[test]
    fn error_counters_fire_while_non_zero() {
        let mut p = pool();
        p.vdevs[2].checksum_errors = 3;
        let c = eval(p.clone());
        assert_eq!(rules(&c), vec![POOL_ERRORS]);
        assert_eq!(c[0].severity, AlertSeverity::Warning);
        assert!(c[0].summary.contains("sda read 0 write 0 cksum 3"));
        p.data_errors = 2;
        assert_eq!(severity_of(&eval(p), POOL_ERRORS), AlertSeverity::Critical);
    }

    #[test]
    fn scrubs_overdue_after_period_and_grace_and_with_errors() {
        let mut p = pool();
        let s = p.scrub.as_mut().unwrap();
        s.finished_unix = (NOW - 36 * DAY) as u64;
        assert!(eval(p.clone()).is_empty(), "36 days is within 30 + 7");
        p.scrub.as_mut().unwrap().finished_unix = (NOW - 38 * DAY) as u64;
        assert_eq!(rules(&eval(p.clone())), vec![SCRUB_OVERDUE]);
        // Scrubs turned off: never overdue.
        let r = HealthReport {
            zfs_pools: vec![p.clone()],
            ..HealthReport::default()
        };
        assert!(evaluate(&node("n1"), &r, &AlertsConfig::default(), None, NOW).is_empty());
        // Running or never: not overdue.
        p.scrub.as_mut().unwrap().state = ScrubState::Running as i32;
        assert!(eval(p.clone()).is_empty());
        p.scrub.as_mut().unwrap().state = ScrubState::Never as i32;
        assert!(eval(p.clone()).is_empty());
        let mut p = pool();
        p.scrub.as_mut().unwrap().errors = 4;
        assert_eq!(rules(&eval(p)), vec![SCRUB_ERRORS]);
    }

    #[test]
    fn capacity_warns_at_80_and_is_critical_at_90() {
        let mut p = pool();
        p.allocated_bytes = 799;
        assert!(eval(p.clone()).is_empty());
        p.allocated_bytes = 800;
        assert_eq!(
            severity_of(&eval(p.clone()), POOL_CAPACITY),
            AlertSeverity::Warning
        );
        p.allocated_bytes = 900;
        assert_eq!(
            severity_of(&eval(p), POOL_CAPACITY),
            AlertSeverity::Critical
        );
    }

    #[test]
    fn thin_pools_data_and_metadata() {
        let r = HealthReport {
            thin_pools: vec![ThinPoolHealth {
                volume_group: "vg0".into(),
                name: "thin".into(),
                size_bytes: 1 << 30,
                data_percent: 85.0,
                metadata_percent: 95.5,
                unknown: String::new(),
            }],
            ..HealthReport::default()
        };
        let c = evaluate(&node("n1"), &r, &AlertsConfig::default(), Some(30), NOW);
        assert_eq!(rules(&c), vec![THIN_POOL_DATA, THIN_POOL_METADATA]);
        assert_eq!(c[0].severity, AlertSeverity::Warning);
        assert_eq!(c[1].severity, AlertSeverity::Critical);
        assert_eq!(c[1].subject.name, "vg0/thin");
    }

    #[test]
    fn an_unknown_pool_raises_no_pool_rule() {
        let mut p = pool();
        p.state = "FAULTED".into();
        p.unknown = "`zpool status -p` printed something unexpected".into();
        assert!(eval(p).is_empty());
    }
}

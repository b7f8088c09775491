//! Health reports and the maintenance schedule (docs/HEALTH.md): the
//! defaults both sides fall back to, the bounds a report must keep (the
//! agent trims to them, colocd refuses beyond them), and the device path
//! rule for self-tests, which colocd checks before asking and the agent
//! again before running `smartctl`.

use std::time::Duration;

use crate::agent::v1::{HealthPolicy, HealthReport};

/// Health period when the policy says 0.
pub const DEFAULT_PERIOD_SECS: u32 = 60;
/// Shortest and longest health period colocd may set.
pub const MIN_PERIOD_SECS: u32 = 10;
pub const MAX_PERIOD_SECS: u32 = 3600;
/// Scrub each ZFS pool monthly, short self-tests weekly, long monthly.
pub const DEFAULT_SCRUB_PERIOD_DAYS: u32 = 30;
pub const DEFAULT_SHORT_SELF_TEST_PERIOD_DAYS: u32 = 7;
pub const DEFAULT_LONG_SELF_TEST_PERIOD_DAYS: u32 = 30;
/// Longest maintenance period (a year).
pub const MAX_MAINTENANCE_PERIOD_DAYS: u32 = 366;

/// Most entries of each list in a report, and most bytes of any string in
/// it. A big server has a few dozen disks and vdevs; past these, a report
/// is a bug or an attack.
pub const MAX_DISKS: usize = 256;
pub const MAX_POOLS: usize = 64;
pub const MAX_VDEVS_PER_POOL: usize = 1024;
pub const MAX_THIN_POOLS: usize = 64;
pub const MAX_FILESYSTEMS: usize = 4096;
pub const MAX_TEMPERATURES: usize = 256;
pub const MAX_FAILED_UNITS: usize = 256;
pub const MAX_NICS: usize = 256;
pub const MAX_UNOBSERVED: usize = 64;
pub const MAX_MAINTENANCE_RUNS: usize = 256;
pub const MAX_FAILING_ATTRIBUTES: usize = 64;
pub const MAX_TEXT_BYTES: usize = 1024;

/// A health policy with its defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSchedule {
    pub period: Duration,
    /// `None`: turned off.
    pub scrub_every: Option<Duration>,
    pub short_self_test_every: Option<Duration>,
    pub long_self_test_every: Option<Duration>,
}

const DAY: u64 = 86_400;

impl HealthSchedule {
    /// The schedule a policy stands for: zero fields take their defaults,
    /// values out of range are brought into it (the agent must keep
    /// watching whatever it was sent).
    pub fn from_policy(policy: Option<&HealthPolicy>) -> HealthSchedule {
        let p = policy.cloned().unwrap_or_default();
        let days = |value: u32, default: u32| {
            let d = if value == 0 { default } else { value };
            Duration::from_secs(u64::from(d.min(MAX_MAINTENANCE_PERIOD_DAYS)) * DAY)
        };
        let period = match p.period_secs {
            0 => DEFAULT_PERIOD_SECS,
            s => s.clamp(MIN_PERIOD_SECS, MAX_PERIOD_SECS),
        };
        HealthSchedule {
            period: Duration::from_secs(u64::from(period)),
            scrub_every: (!p.scrub_disabled)
                .then(|| days(p.scrub_period_days, DEFAULT_SCRUB_PERIOD_DAYS)),
            short_self_test_every: (!p.self_tests_disabled).then(|| {
                days(
                    p.short_self_test_period_days,
                    DEFAULT_SHORT_SELF_TEST_PERIOD_DAYS,
                )
            }),
            long_self_test_every: (!p.self_tests_disabled).then(|| {
                days(
                    p.long_self_test_period_days,
                    DEFAULT_LONG_SELF_TEST_PERIOD_DAYS,
                )
            }),
        }
    }
}

/// Why a device path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device {device:?} refused: {reason}")]
pub struct DeviceRefused {
    pub device: String,
    pub reason: &'static str,
}

/// Longest device path accepted.
const DEVICE_MAX: usize = 255;

/// A disk's device path: absolute, under `/dev/`, made of
/// `[A-Za-z0-9._:+-/]`, without empty, `.` or `..` components, at most
/// 255 bytes. Checked before any tool sees it.
pub fn check_device_path(device: &str) -> Result<(), DeviceRefused> {
    let refuse = |reason| {
        Err(DeviceRefused {
            device: device.chars().take(64).collect(),
            reason,
        })
    };
    if device.len() > DEVICE_MAX {
        return refuse("longer than 255 bytes");
    }
    let Some(rest) = device.strip_prefix("/dev/") else {
        return refuse("not an absolute path under /dev/");
    };
    if !device
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:+-/".contains(&b))
    {
        return refuse("only letters, digits and . _ : + - / are allowed");
    }
    if rest
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return refuse("empty, '.' or '..' path component");
    }
    Ok(())
}

/// Why a report is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("health report refused: {0}")]
pub struct ReportRefused(pub String);

/// Checks a report's bounds: list lengths and string sizes. colocd refuses
/// a report past them (and keeps the previous one); the agent trims its
/// own to them before sending, so this never refuses an honest agent.
pub fn check_report(report: &HealthReport) -> Result<(), ReportRefused> {
    fn list(what: &str, len: usize, max: usize) -> Result<(), ReportRefused> {
        if len > max {
            return Err(ReportRefused(format!("{len} {what}, at most {max}")));
        }
        Ok(())
    }
    fn text<'a>(strings: impl IntoIterator<Item = &'a String>) -> Result<(), ReportRefused> {
        for s in strings {
            if s.len() > MAX_TEXT_BYTES {
                return Err(ReportRefused(format!(
                    "a text of {} bytes, at most {MAX_TEXT_BYTES}",
                    s.len()
                )));
            }
        }
        Ok(())
    }
    let r = report;
    list("disks", r.disks.len(), MAX_DISKS)?;
    list("ZFS pools", r.zfs_pools.len(), MAX_POOLS)?;
    list("thin pools", r.thin_pools.len(), MAX_THIN_POOLS)?;
    list("filesystems", r.filesystems.len(), MAX_FILESYSTEMS)?;
    list("temperatures", r.temperatures.len(), MAX_TEMPERATURES)?;
    list("NICs", r.nics.len(), MAX_NICS)?;
    list("unobserved sources", r.unobserved.len(), MAX_UNOBSERVED)?;
    list(
        "maintenance runs",
        r.maintenance.len(),
        MAX_MAINTENANCE_RUNS,
    )?;
    for d in &r.disks {
        list(
            "failing attributes",
            d.failing_attributes.len(),
            MAX_FAILING_ATTRIBUTES,
        )?;
        text([&d.device, &d.model, &d.serial, &d.transport, &d.unknown])?;
        text(&d.failing_attributes)?;
        if let Some(t) = &d.last_self_test {
            text([&t.status])?;
        }
    }
    for p in &r.zfs_pools {
        list("vdevs in a pool", p.vdevs.len(), MAX_VDEVS_PER_POOL)?;
        text([&p.name, &p.state, &p.status, &p.unknown])?;
        for v in &p.vdevs {
            text([&v.name, &v.state, &v.note])?;
        }
    }
    for t in &r.thin_pools {
        text([&t.volume_group, &t.name, &t.unknown])?;
    }
    for f in &r.filesystems {
        text([&f.mount_path, &f.volume_id, &f.unknown])?;
    }
    for t in &r.temperatures {
        text([&t.sensor, &t.unknown])?;
    }
    for n in &r.nics {
        text([&n.name])?;
    }
    for u in &r.unobserved {
        text([&u.source, &u.reason])?;
    }
    for m in &r.maintenance {
        text([&m.subject, &m.detail])?;
    }
    if let Some(units) = &r.units {
        list("failed units", units.failed.len(), MAX_FAILED_UNITS)?;
        text([&units.unknown])?;
        for u in &units.failed {
            text([&u.name, &u.result])?;
        }
    }
    if let Some(s) = &r.system {
        text([&s.unknown])?;
    }
    if let Some(c) = &r.clock {
        text([&c.unknown])?;
    }
    if let Some(b) = &r.reboot {
        text([&b.reason, &b.unknown])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::v1::{DiskHealth, HealthReport, ZfsPoolHealth};

    #[test]
    fn an_empty_policy_is_the_defaults_and_bounds_hold() {
        let s = HealthSchedule::from_policy(None);
        assert_eq!(s.period, Duration::from_secs(60));
        assert_eq!(s.scrub_every, Some(Duration::from_secs(30 * DAY)));
        assert_eq!(s.short_self_test_every, Some(Duration::from_secs(7 * DAY)));
        assert_eq!(s.long_self_test_every, Some(Duration::from_secs(30 * DAY)));
        let odd = HealthPolicy {
            period_secs: 1,
            scrub_period_days: 100_000,
            self_tests_disabled: true,
            ..HealthPolicy::default()
        };
        let s = HealthSchedule::from_policy(Some(&odd));
        assert_eq!(s.period, Duration::from_secs(10));
        assert_eq!(s.scrub_every, Some(Duration::from_secs(366 * DAY)));
        assert_eq!(s.short_self_test_every, None);
        assert_eq!(s.long_self_test_every, None);
    }

    #[test]
    fn device_paths_that_could_reach_elsewhere_are_refused() {
        for good in ["/dev/sda", "/dev/nvme0n1", "/dev/disk/by-id/ata-X_Y:1"] {
            check_device_path(good).unwrap();
        }
        for bad in [
            "sda",
            "/dev/../etc/passwd",
            "/dev//sda",
            "/dev/sda;reboot",
            "/dev/sda -t long",
            "/etc/passwd",
            "/dev/",
            &format!("/dev/{}", "a".repeat(300)),
        ] {
            assert!(check_device_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn reports_past_their_bounds_are_refused() {
        let ok = HealthReport {
            disks: vec![DiskHealth::default(); MAX_DISKS],
            ..HealthReport::default()
        };
        check_report(&ok).unwrap();
        let many = HealthReport {
            disks: vec![DiskHealth::default(); MAX_DISKS + 1],
            ..HealthReport::default()
        };
        assert!(check_report(&many).unwrap_err().0.contains("257 disks"));
        let long = HealthReport {
            zfs_pools: vec![ZfsPoolHealth {
                status: "x".repeat(MAX_TEXT_BYTES + 1),
                ..ZfsPoolHealth::default()
            }],
            ..HealthReport::default()
        };
        assert!(check_report(&long).is_err());
    }
}

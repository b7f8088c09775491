//! When the agent starts maintenance by itself: a ZFS scrub of each pool
//! and SMART short and long self-tests of each disk, on the periods of
//! colocd's health policy (docs/HEALTH.md, "Maintenance schedule").
//!
//! Decisions, in one place:
//! - Spread, never all at once. Each subject (a pool, or a disk by its
//!   serial) has its own phase in the period, from a stable hash of the
//!   node's name and the subject: the period is cut into windows, and a
//!   subject is due once per window, at its phase. Two nodes or two disks
//!   almost never share a phase, and a fleet installed on one day does not
//!   scrub on one night.
//! - One at a time on a node: at most one scrub and one self-test run at
//!   once, and no long self-test while a scrub runs (nor a scrub while a
//!   long self-test runs): both read whole disks. When several subjects
//!   are due, the one whose window opened first goes first.
//! - What was done counts, whoever did it: a scrub the pool reports
//!   (Debian's monthly cron job, an operator) or a self-test in the
//!   disk's log is as good as one the agent started. A run within half a
//!   period before the window opens counts for that window, so a manual
//!   scrub on the 1st does not bring another on the 2nd.
//! - A subject never seen run gets its first run at its first phase after
//!   the agent first saw it: within one period, spread like the others.
//! - A pool that is not ONLINE is not scrubbed automatically: while it is
//!   degraded or resilvering the surviving disks are the ones that
//!   matter, and the sysadmin decides (an on-demand scrub still works).
//!   Disks without SMART (virtio, some USB bridges) or whose SMART could
//!   not be read are not self-tested.
//! - A run the agent started is taken as running for [`START_GRACE_SECS`]
//!   even before a report shows it, so two passes in a row do not start
//!   two.
//!
//! Everything here is pure: the caller gives the time, the report and
//! what was started before, and persists [`Started`].

use std::collections::BTreeMap;

use coloc_proto::agent::v1::{
    DiskHealth, HealthReport, MaintenanceKind, MaintenanceState, ScrubState, SelfTestKind,
    SmartVerdict,
};
use coloc_proto::health::{HealthSchedule, check_device_path};
use serde::{Deserialize, Serialize};

/// How long a run the agent started counts as running without a report
/// saying so.
pub const START_GRACE_SECS: u64 = 15 * 60;

/// What the agent remembers per subject, kept in its state directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectState {
    /// When the agent first saw the subject (Unix seconds).
    pub first_seen: u64,
    /// When the agent last started this maintenance on it; 0 never.
    pub last_started: u64,
}

/// Per maintenance key ([`key`]), what the agent remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started(pub BTreeMap<String, SubjectState>);

impl Started {
    /// Records that `kind` was started on the subject `key` names.
    pub fn record_start(&mut self, key: &str, now: u64) {
        let entry = self.0.entry(key.to_string()).or_insert(SubjectState {
            first_seen: now,
            last_started: 0,
        });
        entry.last_started = now;
    }

    /// Notes every subject of `report` not seen before; forgets none (a
    /// disk that is away for a while keeps its history).
    pub fn observe(&mut self, report: &HealthReport, now: u64) {
        for pool in &report.zfs_pools {
            self.seen(&key(MaintenanceKind::Scrub, &pool.name), now);
        }
        for disk in &report.disks {
            for kind in [MaintenanceKind::SmartShort, MaintenanceKind::SmartLong] {
                self.seen(&key(kind, disk_id(disk)), now);
            }
        }
    }

    fn seen(&mut self, key: &str, now: u64) {
        self.0.entry(key.to_string()).or_insert(SubjectState {
            first_seen: now,
            last_started: 0,
        });
    }

    fn get(&self, key: &str) -> SubjectState {
        self.0.get(key).copied().unwrap_or_default()
    }
}

/// A maintenance run to start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub kind: MaintenanceKind,
    /// The pool name or the disk's device path, as the host expects it.
    pub subject: String,
    /// The key its start is recorded under.
    pub key: String,
}

/// The state key of `kind` on a subject: the pool name, or the disk's
/// serial (device names move between boots, serials do not).
pub fn key(kind: MaintenanceKind, subject: &str) -> String {
    let prefix = match kind {
        MaintenanceKind::Scrub => "scrub",
        MaintenanceKind::SmartShort => "short",
        MaintenanceKind::SmartLong => "long",
        MaintenanceKind::Unspecified => "unspecified",
    };
    format!("{prefix}:{subject}")
}

/// A disk's stable identity: its serial, or its device path without one.
pub fn disk_id(disk: &DiskHealth) -> &str {
    if disk.serial.is_empty() {
        &disk.device
    } else {
        &disk.serial
    }
}

/// The runs to start now: at most one scrub and one self-test.
pub fn plan(
    schedule: &HealthSchedule,
    node: &str,
    report: &HealthReport,
    started: &Started,
    now: u64,
) -> Vec<Planned> {
    let busy = Busy::of(report, started, now);
    let mut out = Vec::new();

    if let Some(every) = schedule.scrub_every.map(|d| d.as_secs())
        && !busy.scrub
        && !busy.long_self_test
    {
        let mut due: Vec<(i128, Planned)> = report
            .zfs_pools
            .iter()
            .filter(|p| p.state == "ONLINE" && p.unknown.is_empty())
            .filter_map(|pool| {
                let key = key(MaintenanceKind::Scrub, &pool.name);
                let done = match ScrubState::try_from(pool.scrub.as_ref().map_or(0, |s| s.state)) {
                    Ok(ScrubState::Finished | ScrubState::Running) => {
                        pool.scrub.as_ref().map_or(0, |s| s.started_unix)
                    }
                    _ => 0,
                };
                let opened = due_since(node, &key, every, started.get(&key), done, now)?;
                Some((
                    opened,
                    Planned {
                        kind: MaintenanceKind::Scrub,
                        subject: pool.name.clone(),
                        key,
                    },
                ))
            })
            .collect();
        due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.key.cmp(&b.1.key)));
        out.extend(due.into_iter().next().map(|(_, p)| p));
    }

    if !busy.self_test {
        let scrubbing = busy.scrub || out.iter().any(|p| p.kind == MaintenanceKind::Scrub);
        let mut due: Vec<(i128, Planned)> = Vec::new();
        for disk in report.disks.iter().filter(|d| self_testable(d)) {
            let id = disk_id(disk);
            // A long test is a short one too: when both are due, the long
            // one goes (unless a scrub reads the disks meanwhile).
            let long = (!scrubbing)
                .then_some(schedule.long_self_test_every)
                .flatten()
                .and_then(|every| {
                    let key = key(MaintenanceKind::SmartLong, id);
                    let done = self_test_started(disk, SelfTestKind::Long, now);
                    due_since(node, &key, every.as_secs(), started.get(&key), done, now)
                        .map(|opened| (opened, MaintenanceKind::SmartLong, key))
                });
            let short = schedule.short_self_test_every.and_then(|every| {
                let key = key(MaintenanceKind::SmartShort, id);
                let done = self_test_started(disk, SelfTestKind::Short, now);
                due_since(node, &key, every.as_secs(), started.get(&key), done, now)
                    .map(|opened| (opened, MaintenanceKind::SmartShort, key))
            });
            if let Some((opened, kind, key)) = long.or(short) {
                due.push((
                    opened,
                    Planned {
                        kind,
                        subject: disk.device.clone(),
                        key,
                    },
                ));
            }
        }
        due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.key.cmp(&b.1.key)));
        out.extend(due.into_iter().next().map(|(_, p)| p));
    }
    out
}

/// What runs on the node now, by the report and by recent starts.
struct Busy {
    scrub: bool,
    self_test: bool,
    long_self_test: bool,
}

impl Busy {
    fn of(report: &HealthReport, started: &Started, now: u64) -> Busy {
        let running_run = |kinds: &[MaintenanceKind]| {
            report.maintenance.iter().any(|r| {
                r.state == MaintenanceState::Running as i32
                    && kinds.iter().any(|k| r.kind == *k as i32)
            })
        };
        let recent = |prefix: &str| {
            started.0.iter().any(|(k, s)| {
                k.starts_with(prefix)
                    && s.last_started > 0
                    && now.saturating_sub(s.last_started) < START_GRACE_SECS
            })
        };
        let disk_running = |kind: Option<SelfTestKind>| {
            report.disks.iter().any(|d| {
                d.last_self_test
                    .as_ref()
                    .is_some_and(|t| t.running && kind.is_none_or(|k| t.kind == k as i32))
            })
        };
        let scrub = report.zfs_pools.iter().any(|p| {
            p.scrub
                .as_ref()
                .is_some_and(|s| s.state == ScrubState::Running as i32)
        }) || running_run(&[MaintenanceKind::Scrub])
            || recent("scrub:");
        let long_self_test = disk_running(Some(SelfTestKind::Long))
            || running_run(&[MaintenanceKind::SmartLong])
            || recent("long:");
        let self_test = long_self_test
            || disk_running(None)
            || running_run(&[MaintenanceKind::SmartShort])
            || recent("short:");
        Busy {
            scrub,
            self_test,
            long_self_test,
        }
    }
}

fn self_testable(disk: &DiskHealth) -> bool {
    matches!(
        SmartVerdict::try_from(disk.smart),
        Ok(SmartVerdict::Passed | SmartVerdict::Failed)
    ) && disk.unknown.is_empty()
        && check_device_path(&disk.device).is_ok()
}

/// When the disk's newest self-test of `kind` (a long one counts for a
/// short one) started, from its power-on hours; 0 when unknown.
fn self_test_started(disk: &DiskHealth, kind: SelfTestKind, now: u64) -> u64 {
    let Some(test) = &disk.last_self_test else {
        return 0;
    };
    let counts = test.kind == kind as i32
        || (kind == SelfTestKind::Short && test.kind == SelfTestKind::Long as i32);
    match (counts, disk.power_on_hours, test.power_on_hours) {
        (true, Some(disk_hours), Some(test_hours)) if test_hours <= disk_hours => {
            now.saturating_sub((disk_hours - test_hours).saturating_mul(3600))
        }
        _ => 0,
    }
}

/// When the subject's current window opened, if it is due now: its window
/// (at its phase in `every`) has opened, nothing ran since it opened, and
/// nothing ran in the half period before. `None` when not due.
fn due_since(
    node: &str,
    key: &str,
    every: u64,
    state: SubjectState,
    done_unix: u64,
    now: u64,
) -> Option<i128> {
    if every == 0 {
        return None;
    }
    let every = i128::from(every);
    let phase = i128::from(phase(node, key)) % every;
    let now = i128::from(now);
    let opened = phase + (now - phase).div_euclid(every) * every;
    let last = i128::from(state.last_started.max(done_unix));
    if last == 0 {
        // Never run: the first window that opens after the subject was
        // first seen, so that first runs spread like the others.
        let first_seen = if state.first_seen == 0 {
            now
        } else {
            i128::from(state.first_seen)
        };
        return (opened >= first_seen).then_some(opened);
    }
    (last < opened && now - last >= every / 2).then_some(opened)
}

/// A stable hash of the node and the subject (FNV-1a, 64 bits): the same
/// on every build and platform, unlike std's hasher.
fn phase(node: &str, key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node.bytes().chain([0]).chain(key.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests;

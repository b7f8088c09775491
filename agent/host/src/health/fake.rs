//! The health a simulated node reports ([`FakeHealth`]'s
//! [`Health::report`](crate::Health::report)): built from the fake disks,
//! ZFS pools and LVM groups of the [`FakeHost`](crate::FakeHost), healthy
//! in every section by default, with fault setters for tests of colocd's
//! alert rules.
//!
//! Simulated disks answer SMART like a healthy NVMe drive (PASSED, 35 °C
//! against a 70 °C limit, 1 % used, spare 100 % over a 10 % threshold, no
//! media errors); pools report their vdev tree from the devices they were
//! created on and no scrub yet (NEVER, until one runs or a test sets
//! one with `set_last_scrub`); thin pools report the use of their volumes; "/" is 8 of 100 GiB used.
//! Maintenance started with `start_maintenance` shows RUNNING in the next
//! report and finished (PASSED, or FAILED on a disk whose verdict is
//! FAILED or a pool with checksum errors) in the one after, with its
//! times; from then on only the pool's scrub status or the disk's
//! self-test log shows it. Times are the real clock's.

use std::collections::BTreeMap;

use coloc_proto::agent::v1::{
    ClockHealth, DiskHealth, FailedUnit, FilesystemUse, HealthReport, MaintenanceKind,
    MaintenanceRun, MaintenanceState, NicHealth, PoolLayout, RebootHealth, ScrubState, ScrubStatus,
    SelfTestKind, SelfTestResult, SmartVerdict, SystemLoad, Temperature, ThinPoolHealth,
    UnitsHealth, Unobserved, VdevHealth, ZfsPoolHealth,
};

use super::HealthInputs;
use super::maintenance::{Disk, Start, check_start};
use super::system::SANE_CELSIUS;
use crate::fake::{FakeHealth, lock};
use crate::{HostError, volumes::PoolObservation};

const GIB: u64 = 1024 * 1024 * 1024;

/// The root filesystem of a simulated node.
const ROOT_SIZE: u64 = 100 * GIB;
const ROOT_USED: u64 = 8 * GIB;
/// The simulated CPU sensor.
const CPU_SENSOR: &str = "coretemp Package id 0";

/// Faults set by tests, and the maintenance runs in flight.
#[derive(Debug, Default)]
pub(crate) struct FakeHealthState {
    /// When the fake was made (Unix seconds): power-on hours count from it.
    created_unix: u64,
    verdicts: BTreeMap<String, SmartVerdict>,
    critical_warnings: BTreeMap<String, u32>,
    disk_temperatures: BTreeMap<String, i32>,
    disk_unknown: BTreeMap<String, String>,
    /// Pool → the member lost.
    degraded: BTreeMap<String, String>,
    /// (pool, member) → read, write, checksum errors.
    vdev_errors: BTreeMap<(String, String), (u64, u64, u64)>,
    thin_use: BTreeMap<String, (f64, f64)>,
    /// Mount path or volume id → size, used.
    fs_use: BTreeMap<String, (u64, u64)>,
    temperatures: BTreeMap<String, f64>,
    failed_units: Vec<FailedUnit>,
    load: Option<(f64, f64, f64)>,
    clock_unsynchronised: bool,
    reboot: Option<String>,
    unobserved: BTreeMap<String, String>,
    /// Last scrub per pool: the last run finished, or set by a test.
    scrubs: BTreeMap<String, ScrubStatus>,
    /// Newest self-test per device.
    self_tests: BTreeMap<String, SelfTestResult>,
    runs: Vec<FakeRun>,
}

impl FakeHealthState {
    pub(crate) fn new(created_unix: u64) -> FakeHealthState {
        FakeHealthState {
            created_unix,
            ..FakeHealthState::default()
        }
    }

    /// Forgets every fault; maintenance history stays.
    fn clear_faults(&mut self) {
        let keep = FakeHealthState {
            created_unix: self.created_unix,
            scrubs: std::mem::take(&mut self.scrubs),
            self_tests: std::mem::take(&mut self.self_tests),
            runs: std::mem::take(&mut self.runs),
            ..FakeHealthState::default()
        };
        *self = keep;
    }
}

#[derive(Debug, Clone)]
struct FakeRun {
    kind: MaintenanceKind,
    subject: String,
    started_unix: u64,
    /// Reports that showed it: 0, then 1 (RUNNING), then finished.
    shown: u32,
}

/// "vdb" for "/dev/vdb": how zpool names a member.
fn member_name(device: &str) -> &str {
    device.strip_prefix("/dev/").unwrap_or(device)
}

impl FakeHealth {
    /// The overall SMART verdict of `device` (`/dev/vdb`); `None` for the
    /// healthy default.
    pub fn set_smart_verdict(&self, device: &str, verdict: Option<SmartVerdict>) {
        let mut s = lock(&self.health);
        match verdict {
            Some(v) => s.verdicts.insert(device.to_owned(), v),
            None => s.verdicts.remove(device),
        };
    }

    /// NVMe critical-warning bits of `device`; 0 clears them. The verdict
    /// stays as set (a real drive with a critical warning also fails its
    /// self-assessment: set both to mirror that, one to test one rule).
    pub fn set_critical_warning(&self, device: &str, bits: u32) {
        lock(&self.health)
            .critical_warnings
            .insert(device.to_owned(), bits);
    }

    /// The drive temperature of `device`; `None` for the default 35 °C.
    pub fn set_disk_temperature(&self, device: &str, celsius: Option<i32>) {
        let mut s = lock(&self.health);
        match celsius {
            Some(c) => s.disk_temperatures.insert(device.to_owned(), c),
            None => s.disk_temperatures.remove(device),
        };
    }

    /// Makes `device`'s SMART unreadable with `reason` (verdict UNKNOWN),
    /// as a hung smartctl or a vanished disk would; `None` clears it.
    pub fn set_disk_unknown(&self, device: &str, reason: Option<&str>) {
        let mut s = lock(&self.health);
        match reason {
            Some(r) => s.disk_unknown.insert(device.to_owned(), r.to_owned()),
            None => s.disk_unknown.remove(device),
        };
    }

    /// `member` (`vdc` or `/dev/vdc`) of `pool` is gone: the member
    /// REMOVED, the pool DEGRADED (UNAVAIL for a pool without redundancy).
    /// `None` brings it back.
    pub fn set_pool_degraded(&self, pool: &str, member: Option<&str>) {
        let mut s = lock(&self.health);
        match member {
            Some(m) => s
                .degraded
                .insert(pool.to_owned(), member_name(m).to_owned()),
            None => s.degraded.remove(pool),
        };
    }

    /// Error counters of `member` of `pool`; all zero clears them.
    pub fn set_vdev_errors(&self, pool: &str, member: &str, read: u64, write: u64, checksum: u64) {
        let key = (pool.to_owned(), member_name(member).to_owned());
        let mut s = lock(&self.health);
        if read == 0 && write == 0 && checksum == 0 {
            s.vdev_errors.remove(&key);
        } else {
            s.vdev_errors.insert(key, (read, write, checksum));
        }
    }

    /// Data and metadata use (percent) of the thin pool of volume group
    /// `vg`; `None` for the use of its volumes.
    pub fn set_thin_pool_use(&self, vg: &str, percents: Option<(f64, f64)>) {
        let mut s = lock(&self.health);
        match percents {
            Some(p) => s.thin_use.insert(vg.to_owned(), p),
            None => s.thin_use.remove(vg),
        };
    }

    /// Size and use of the filesystem `key` names: "/" , a mount path or
    /// a volume id; `None` for the default.
    pub fn set_filesystem_use(&self, key: &str, size_and_used: Option<(u64, u64)>) {
        let mut s = lock(&self.health);
        match size_and_used {
            Some(v) => s.fs_use.insert(key.to_owned(), v),
            None => s.fs_use.remove(key),
        };
    }

    /// The reading of sensor `label` (added if new; outside −40…150 °C it
    /// is reported as unknown, as the real collection does); `None`
    /// removes a sensor added this way or restores the default one.
    pub fn set_temperature(&self, label: &str, celsius: Option<f64>) {
        let mut s = lock(&self.health);
        match celsius {
            Some(c) => s.temperatures.insert(label.to_owned(), c),
            None => s.temperatures.remove(label),
        };
    }

    /// The failed units the report lists (none by default).
    pub fn set_failed_units(&self, units: Vec<FailedUnit>) {
        lock(&self.health).failed_units = units;
    }

    /// The 1, 5 and 15 minute load averages; `None` for the idle default.
    pub fn set_load(&self, load: Option<(f64, f64, f64)>) {
        lock(&self.health).load = load;
    }

    pub fn set_clock_synchronised(&self, synchronised: bool) {
        lock(&self.health).clock_unsynchronised = !synchronised;
    }

    /// A reboot is needed, for `reason`; `None`: not needed.
    pub fn set_reboot_required(&self, reason: Option<&str>) {
        lock(&self.health).reboot = reason.map(str::to_owned);
    }

    /// Source `source` ("zfs", "units", ...) could not be read, for
    /// `reason`: it is listed unobserved and its section left empty (or
    /// marked unknown); `None` clears it.
    pub fn set_unobserved(&self, source: &str, reason: Option<&str>) {
        let mut s = lock(&self.health);
        match reason {
            Some(r) => s.unobserved.insert(source.to_owned(), r.to_owned()),
            None => s.unobserved.remove(source),
        };
    }

    /// What the pool's scrub status says (e.g. finished long ago, or with
    /// errors); `None`: never scrubbed. A scrub started with
    /// `start_maintenance` replaces it when it finishes.
    pub fn set_last_scrub(&self, pool: &str, scrub: Option<ScrubStatus>) {
        let mut s = lock(&self.health);
        match scrub {
            Some(v) => s.scrubs.insert(pool.to_owned(), v),
            None => s.scrubs.remove(pool),
        };
    }

    /// Every fault back to healthy; maintenance history is kept.
    pub fn clear_faults(&self) {
        lock(&self.health).clear_faults();
    }

    /// The fake's [`Health::report`](crate::Health::report).
    pub(crate) fn fake_report(&self, inputs: &HealthInputs) -> HealthReport {
        let now = unix_now();
        let facts_disks = self.disks.disks();
        let zfs = self.zfs_pools();
        let lvm = self.lvm_pools();
        let (memory_bytes, cpu_count, boot_time, nics) = self.system_facts();
        let mut guard = lock(&self.health);
        let s = &mut *guard;
        let mut report = HealthReport {
            collected_unix_ms: now * 1000,
            ..HealthReport::default()
        };
        let hours = 1000 + now.saturating_sub(s.created_unix) / 3600;

        // Maintenance in flight: RUNNING once, then finished.
        let mut finished_runs = Vec::new();
        for run in &mut s.runs {
            run.shown += 1;
            if run.shown >= 2 {
                finished_runs.push(run.clone());
            }
        }
        s.runs.retain(|r| r.shown < 2);

        for disk in &facts_disks {
            let device = disk.device.clone();
            let verdict = s
                .verdicts
                .get(&device)
                .copied()
                .unwrap_or(SmartVerdict::Passed);
            let mut d = DiskHealth {
                device: device.clone(),
                model: "coloc simulated disk".into(),
                serial: disk.serial.clone().unwrap_or_default(),
                transport: "virtio".into(),
                size_bytes: disk.size_bytes,
                smart: verdict as i32,
                ..DiskHealth::default()
            };
            if let Some(reason) = s.disk_unknown.get(&device) {
                d.smart = SmartVerdict::Unknown as i32;
                d.unknown = reason.clone();
            } else if verdict != SmartVerdict::Unsupported {
                d.temperature_c = Some(s.disk_temperatures.get(&device).copied().unwrap_or(35));
                d.temperature_limit_c = Some(70);
                d.power_on_hours = Some(hours);
                d.critical_warning = Some(s.critical_warnings.get(&device).copied().unwrap_or(0));
                d.percentage_used = Some(1);
                d.available_spare = Some(100);
                d.available_spare_threshold = Some(10);
                d.media_errors = Some(0);
                d.last_self_test = s.self_tests.get(&device).cloned();
            }
            report.disks.push(d);
        }
        // Self-tests: running, or finished now.
        for run in s.runs.iter().chain(&finished_runs) {
            if run.kind == MaintenanceKind::Scrub {
                continue;
            }
            let Some(d) = report.disks.iter_mut().find(|d| d.device == run.subject) else {
                continue;
            };
            let kind = if run.kind == MaintenanceKind::SmartLong {
                SelfTestKind::Long
            } else {
                SelfTestKind::Short
            };
            let running = run.shown < 2;
            let passed = !running && d.smart == SmartVerdict::Passed as i32;
            let test = SelfTestResult {
                kind: kind as i32,
                passed,
                status: match (running, passed) {
                    (true, _) => "Self-test routine in progress",
                    (false, true) => "Completed without error",
                    (false, false) => "Completed: read failure",
                }
                .into(),
                power_on_hours: (!running).then_some(hours),
                running,
            };
            if !running {
                s.self_tests.insert(run.subject.clone(), test.clone());
            }
            d.last_self_test = Some(test);
            report.maintenance.push(MaintenanceRun {
                kind: run.kind as i32,
                subject: run.subject.clone(),
                state: if running {
                    MaintenanceState::Running
                } else if passed {
                    MaintenanceState::Passed
                } else {
                    MaintenanceState::Failed
                } as i32,
                started_unix: run.started_unix,
                finished_unix: if running { 0 } else { now },
                detail: String::new(),
                on_demand: false,
            });
        }

        for (pool, layout, devices) in &zfs {
            let mut p = self.pool_health(s, pool, *layout, devices);
            for run in s.runs.iter().chain(&finished_runs) {
                if run.kind != MaintenanceKind::Scrub || run.subject != pool.name {
                    continue;
                }
                let running = run.shown < 2;
                let errors: u64 = p.vdevs.iter().map(|v| v.checksum_errors).sum();
                let scrub = ScrubStatus {
                    state: if running {
                        ScrubState::Running
                    } else {
                        ScrubState::Finished
                    } as i32,
                    started_unix: run.started_unix,
                    finished_unix: if running { 0 } else { now },
                    errors,
                    repaired_bytes: 0,
                    progress_permille: if running { 500 } else { 0 },
                };
                if !running {
                    s.scrubs.insert(pool.name.clone(), scrub);
                }
                p.scrub = Some(scrub);
                report.maintenance.push(MaintenanceRun {
                    kind: MaintenanceKind::Scrub as i32,
                    subject: pool.name.clone(),
                    state: if running {
                        MaintenanceState::Running
                    } else if errors == 0 {
                        MaintenanceState::Passed
                    } else {
                        MaintenanceState::Failed
                    } as i32,
                    started_unix: run.started_unix,
                    finished_unix: scrub.finished_unix,
                    detail: if errors > 0 {
                        format!("{errors} errors found")
                    } else {
                        String::new()
                    },
                    on_demand: false,
                });
            }
            report.zfs_pools.push(p);
        }
        for pool in &lvm {
            let (data, meta) = s.thin_use.get(&pool.name).copied().unwrap_or_else(|| {
                let used = pool.size_bytes.saturating_sub(pool.free_bytes);
                let data = if pool.size_bytes == 0 {
                    0.0
                } else {
                    used as f64 * 100.0 / pool.size_bytes as f64
                };
                (data, data / 4.0)
            });
            report.thin_pools.push(ThinPoolHealth {
                volume_group: pool.name.clone(),
                name: crate::volumes::LVM_THIN_POOL.to_owned(),
                size_bytes: pool.size_bytes,
                data_percent: data,
                metadata_percent: meta,
                unknown: String::new(),
            });
        }

        report
            .filesystems
            .push(filesystem(s, "/", "", ROOT_SIZE, ROOT_USED));
        for (id, path) in &inputs.volumes {
            let shown = path.display().to_string();
            let object = self.volume_object(id);
            report.filesystems.push(match object {
                Some((size, used)) => filesystem(s, &shown, id, size, used),
                None if s.fs_use.contains_key(id) || s.fs_use.contains_key(&shown) => {
                    filesystem(s, &shown, id, 0, 0)
                }
                None => FilesystemUse {
                    mount_path: shown,
                    volume_id: id.clone(),
                    unknown: format!("no volume {id} is mounted on this simulated node"),
                    ..FilesystemUse::default()
                },
            });
        }

        let (load1, load5, load15) = s.load.unwrap_or((0.2, 0.15, 0.1));
        report.system = Some(SystemLoad {
            memory_total_bytes: memory_bytes,
            memory_available_bytes: memory_bytes / 10 * 6,
            swap_total_bytes: 2 * GIB,
            swap_free_bytes: 2 * GIB,
            load1,
            load5,
            load15,
            cpu_count,
            cpu_busy_ratio: (load1 / f64::from(cpu_count.max(1))).clamp(0.0, 1.0),
            uptime_secs: now.saturating_sub(boot_time),
            unknown: String::new(),
        });
        let mut sensors: BTreeMap<String, f64> = BTreeMap::new();
        sensors.insert(CPU_SENSOR.to_owned(), 45.0);
        sensors.extend(s.temperatures.iter().map(|(k, v)| (k.clone(), *v)));
        report.temperatures = sensors
            .into_iter()
            .map(|(sensor, celsius)| {
                if SANE_CELSIUS.contains(&celsius) {
                    Temperature {
                        sensor,
                        celsius,
                        critical_celsius: Some(100.0),
                        unknown: String::new(),
                    }
                } else {
                    Temperature {
                        unknown: format!("reading {celsius} °C is outside −40…150 °C"),
                        sensor,
                        ..Temperature::default()
                    }
                }
            })
            .collect();
        report.units = Some(UnitsHealth {
            failed: s.failed_units.clone(),
            unknown: String::new(),
        });
        report.nics = nics
            .into_iter()
            .map(|name| NicHealth {
                name,
                up: true,
                speed_mbps: Some(1000),
            })
            .collect();
        report.clock = Some(ClockHealth {
            synchronised: !s.clock_unsynchronised,
            max_error_secs: None,
            unknown: String::new(),
        });
        report.reboot = Some(match &s.reboot {
            Some(reason) => RebootHealth {
                required: true,
                reason: reason.clone(),
                unknown: String::new(),
            },
            None => RebootHealth::default(),
        });
        for (source, reason) in &s.unobserved {
            blank_source(&mut report, source, reason);
            report.unobserved.push(Unobserved {
                source: source.clone(),
                reason: reason.clone(),
            });
        }
        report
    }

    fn pool_health(
        &self,
        s: &mut FakeHealthState,
        pool: &PoolObservation,
        layout: PoolLayout,
        devices: &[String],
    ) -> ZfsPoolHealth {
        let lost = s.degraded.get(&pool.name).cloned();
        let redundant = matches!(
            layout,
            PoolLayout::Mirror | PoolLayout::Raidz1 | PoolLayout::Raidz2
        );
        let mut state = pool.health.clone();
        if lost.is_some() && state == "ONLINE" {
            state = if redundant { "DEGRADED" } else { "UNAVAIL" }.to_owned();
        }
        let group = match layout {
            PoolLayout::Mirror => Some("mirror-0"),
            PoolLayout::Raidz1 => Some("raidz1-0"),
            PoolLayout::Raidz2 => Some("raidz2-0"),
            PoolLayout::Single | PoolLayout::Unspecified => None,
        };
        let mut vdevs = vec![VdevHealth {
            name: pool.name.clone(),
            depth: 0,
            state: state.clone(),
            ..VdevHealth::default()
        }];
        if let Some(group) = group {
            vdevs.push(VdevHealth {
                name: group.to_owned(),
                depth: 1,
                state: if lost.is_some() { "DEGRADED" } else { "ONLINE" }.to_owned(),
                ..VdevHealth::default()
            });
        }
        let depth = if group.is_some() { 2 } else { 1 };
        let mut any_errors = false;
        for device in devices {
            let name = member_name(device).to_owned();
            let gone = lost.as_deref() == Some(name.as_str());
            let (r, w, c) = s
                .vdev_errors
                .get(&(pool.name.clone(), name.clone()))
                .copied()
                .unwrap_or((0, 0, 0));
            any_errors |= r + w + c > 0;
            vdevs.push(VdevHealth {
                name: name.clone(),
                depth,
                state: if gone { "REMOVED" } else { "ONLINE" }.to_owned(),
                read_errors: r,
                write_errors: w,
                checksum_errors: c,
                note: if gone {
                    format!("was {device}")
                } else {
                    String::new()
                },
            });
        }
        let status = if lost.is_some() {
            "One or more devices has been removed by the administrator. Sufficient replicas exist for the pool to continue functioning in a degraded state."
        } else if any_errors {
            "One or more devices has experienced an unrecoverable error. An attempt was made to correct the error. Applications are unaffected."
        } else {
            ""
        };
        let scrub = s.scrubs.get(&pool.name).copied().unwrap_or(ScrubStatus {
            state: ScrubState::Never as i32,
            ..ScrubStatus::default()
        });
        ZfsPoolHealth {
            name: pool.name.clone(),
            state,
            size_bytes: pool.size_bytes,
            allocated_bytes: pool.size_bytes.saturating_sub(pool.free_bytes),
            free_bytes: pool.free_bytes,
            vdevs,
            scrub: Some(scrub),
            status: status.to_owned(),
            data_errors: 0,
            unknown: String::new(),
        }
    }

    /// The fake's `start_maintenance`: checks like the real one, then
    /// records the run. A pool or disk the node does not have, a scrub
    /// already running on the pool or a self-test already running on the
    /// disk, and a disk without SMART are refused.
    pub(crate) fn fake_start(
        &self,
        kind: MaintenanceKind,
        subject: &str,
    ) -> Result<String, HostError> {
        let start = check_start(kind, subject)?;
        let refuse = |object: String, reason: &str| HostError::Refused {
            object,
            reason: reason.to_owned(),
        };
        let resolved = match &start {
            Start::Scrub { pool } => {
                if !self.zfs_pools().iter().any(|(p, ..)| &p.name == pool) {
                    return Err(refuse(format!("pool {pool}"), "no such pool"));
                }
                pool.clone()
            }
            Start::SelfTest { disk, .. } => {
                let disks = self.disks.disks();
                let found = disks.iter().find(|d| match disk {
                    Disk::Path(p) => &d.device == p,
                    Disk::Serial(serial) => d.serial.as_deref() == Some(serial.as_str()),
                });
                let Some(found) = found else {
                    return Err(refuse(
                        format!("disk {subject}"),
                        "no such disk on this node",
                    ));
                };
                let s = lock(&self.health);
                if s.disk_unknown.contains_key(&found.device)
                    || s.verdicts.get(&found.device) == Some(&SmartVerdict::Unsupported)
                {
                    return Err(HostError::SmartUnavailable {
                        device: found.device.clone(),
                    });
                }
                found.device.clone()
            }
        };
        let mut s = lock(&self.health);
        let busy = s.runs.iter().any(|r| {
            r.subject == resolved
                && (r.kind == MaintenanceKind::Scrub) == (kind == MaintenanceKind::Scrub)
        });
        if busy {
            return Err(refuse(
                resolved,
                if kind == MaintenanceKind::Scrub {
                    "currently scrubbing"
                } else {
                    "a self-test is already in progress"
                },
            ));
        }
        s.runs.push(FakeRun {
            kind,
            subject: resolved.clone(),
            started_unix: unix_now(),
            shown: 0,
        });
        Ok(resolved)
    }
}

/// A filesystem entry, with the use a test set for its path or volume.
fn filesystem(s: &FakeHealthState, path: &str, id: &str, size: u64, used: u64) -> FilesystemUse {
    let (size, used) = s
        .fs_use
        .get(path)
        .or_else(|| (!id.is_empty()).then(|| s.fs_use.get(id)).flatten())
        .copied()
        .unwrap_or((size, used));
    FilesystemUse {
        mount_path: path.to_owned(),
        volume_id: id.to_owned(),
        size_bytes: size,
        used_bytes: used.min(size),
        available_bytes: size.saturating_sub(used),
        unknown: String::new(),
    }
}

/// Empties the section of an unobserved source, as the real collection
/// leaves it.
fn blank_source(report: &mut HealthReport, source: &str, reason: &str) {
    match source {
        "disks" => report.disks.clear(),
        "zfs" => report.zfs_pools.clear(),
        "lvm" => report.thin_pools.clear(),
        "temperatures" => report.temperatures.clear(),
        "nics" => report.nics.clear(),
        "filesystems" => report.filesystems.clear(),
        "system" => {
            report.system = Some(SystemLoad {
                unknown: reason.to_owned(),
                ..SystemLoad::default()
            })
        }
        "units" => {
            report.units = Some(UnitsHealth {
                failed: Vec::new(),
                unknown: reason.to_owned(),
            })
        }
        "clock" => {
            report.clock = Some(ClockHealth {
                unknown: reason.to_owned(),
                ..ClockHealth::default()
            })
        }
        "reboot" => {
            report.reboot = Some(RebootHealth {
                unknown: reason.to_owned(),
                ..RebootHealth::default()
            })
        }
        _ => {}
    }
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

//! The health report of the real host: every source of docs/HEALTH.md
//! run side by side, each with its own deadline, none able to stop
//! another. A tool that hangs is killed at its deadline by the runner; a
//! kernel file or bus call that hangs is abandoned at its deadline. What
//! could not be read becomes an `unobserved` entry, or an `unknown`
//! reason on the disk, pool, filesystem or sensor it is about.
//!
//! Tools run through the one [`Runner`], with `LC_ALL=C` (and `TZ=UTC`
//! for `zpool status`, whose dates are local time). A host without ZFS or
//! LVM tools simply has no pools of that kind; a host without `smartctl`
//! has disks whose SMART is unknown.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coloc_proto::agent::v1::{
    ClockHealth, DiskHealth, FilesystemUse, HealthReport, MaintenanceKind, MaintenanceRun,
    MaintenanceState, RebootHealth, ScrubState, SelfTestKind, SmartVerdict, SystemLoad,
    ThinPoolHealth, UnitsHealth, Unobserved, ZfsPoolHealth,
};
use coloc_proto::error_chain;
use futures::StreamExt;

use super::HealthInputs;
use super::dbus::Bus;
use super::lvm::{LVS_THIN_ARGS, parse_lvs_thin_pools};
use super::maintenance::{Disk, Start, check_start};
use super::smart::parse_disk_health;
use super::system::{CpuSample, filesystem_use, read_hwmon, read_nics, read_reboot, read_system};
use super::zpool::parse_zpool_status;
use crate::lsblk::list_disks_with;
use crate::runner::{CommandError, Runner};
use crate::smart::{smartctl_messages, smartctl_statuses};
use crate::volumes::parse_zpool_list;
use crate::{HostError, RealHealth};

/// Disks whose SMART is read at once.
const SMART_CONCURRENCY: usize = 8;

/// Kernel names lsblk calls disks that are not drives: zvols, network
/// block devices.
const NOT_DRIVES: &[&str] = &["zd", "nbd"];

/// The parts of a report, by the name `unobserved` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// `lsblk`, then `smartctl` per disk (the deadline is per run).
    Disks,
    /// `zpool list`, then `zpool status` per pool (per run).
    Zfs,
    /// `lvs`.
    Lvm,
    /// statvfs, per filesystem.
    Filesystems,
    System,
    Temperatures,
    Units,
    Nics,
    Clock,
    Reboot,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Disks => "disks",
            Source::Zfs => "zfs",
            Source::Lvm => "lvm",
            Source::Filesystems => "filesystems",
            Source::System => "system",
            Source::Temperatures => "temperatures",
            Source::Units => "units",
            Source::Nics => "nics",
            Source::Clock => "clock",
            Source::Reboot => "reboot",
        }
    }

    /// How long the source (or each of its tool runs) may take.
    pub fn default_deadline(self) -> Duration {
        Duration::from_secs(match self {
            Source::Disks => 30,
            Source::Zfs | Source::Lvm => 20,
            Source::Units => 10,
            Source::Filesystems
            | Source::System
            | Source::Temperatures
            | Source::Nics
            | Source::Clock
            | Source::Reboot => 5,
        })
    }
}

/// Where the kernel's and the OS's files are; tests point these at a
/// fixture tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPaths {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub run: PathBuf,
    pub boot: PathBuf,
    /// The root filesystem reported first in `filesystems`.
    pub root: PathBuf,
}

impl Default for HealthPaths {
    fn default() -> Self {
        HealthPaths {
            proc: "/proc".into(),
            sys: "/sys".into(),
            run: "/run".into(),
            boot: "/boot".into(),
            root: "/".into(),
        }
    }
}

/// What the collection keeps between reports.
#[derive(Debug, Default)]
struct Memory {
    cpu: Option<CpuSample>,
    /// When the previous report was collected (Unix seconds).
    last_collected: u64,
    /// Self-tests seen running, by device: kind and when first seen.
    self_tests: BTreeMap<String, (i32, u64)>,
    /// Pools whose scrub was seen running.
    scrubs_running: BTreeSet<String>,
    /// The end of the last finished scrub reported, by pool.
    scrubs_reported: BTreeMap<String, u64>,
}

/// The configuration and memory of the real collection, shared by the
/// clones of one [`RealHealth`].
#[derive(Debug, Default)]
pub(crate) struct Collector {
    paths: HealthPaths,
    /// Tool name → program to run (a name or an absolute path).
    tools: BTreeMap<String, String>,
    deadlines: BTreeMap<Source, Duration>,
    memory: Mutex<Memory>,
    bus: Bus,
}

impl Clone for Collector {
    /// The configuration; the memory and the bus connection start afresh.
    fn clone(&self) -> Self {
        Collector {
            paths: self.paths.clone(),
            tools: self.tools.clone(),
            deadlines: self.deadlines.clone(),
            memory: Mutex::default(),
            bus: Bus::at(self.bus.address.clone()),
        }
    }
}

impl RealHealth {
    /// Reads the kernel's files under `paths` instead of `/proc`, `/sys`,
    /// `/run`, `/boot` and `/`.
    pub fn with_paths(mut self, paths: HealthPaths) -> RealHealth {
        Arc::make_mut(&mut self.collector).paths = paths;
        self
    }

    /// Runs `program` (an absolute path) wherever the collection would run
    /// `tool` (`smartctl`, `zpool`, `lvs`, `lsblk`).
    pub fn with_tool(mut self, tool: &str, program: &str) -> RealHealth {
        Arc::make_mut(&mut self.collector)
            .tools
            .insert(tool.to_owned(), program.to_owned());
        self
    }

    /// Asks systemd and timedated on the bus at `address` (a D-Bus
    /// address, `unix:path=...`) instead of the system bus.
    pub fn with_bus_address(mut self, address: &str) -> RealHealth {
        Arc::make_mut(&mut self.collector).bus = Bus::at(Some(address.to_owned()));
        self
    }

    /// The deadline of `source` (of each of its tool runs).
    pub fn with_deadline(mut self, source: Source, deadline: Duration) -> RealHealth {
        Arc::make_mut(&mut self.collector)
            .deadlines
            .insert(source, deadline);
        self
    }

    pub(crate) fn deadline(&self, source: Source) -> Duration {
        self.collector
            .deadlines
            .get(&source)
            .copied()
            .unwrap_or_else(|| source.default_deadline())
    }

    fn tool(&self, tool: &str) -> String {
        self.collector
            .tools
            .get(tool)
            .cloned()
            .unwrap_or_else(|| tool.to_owned())
    }

    fn runner_for(&self, source: Source) -> Runner {
        self.runner.clone().with_timeout(self.deadline(source))
    }

    /// The whole report; never fails.
    pub(crate) async fn collect(&self, inputs: &HealthInputs) -> HealthReport {
        let now_ms = unix_ms();
        let (disks, zfs, lvm, filesystems, system, temperatures, units, nics, clock, reboot) = tokio::join!(
            self.disks(),
            self.zfs(),
            self.lvm(),
            self.filesystems(inputs),
            self.system(),
            self.blocking(Source::Temperatures, {
                let sys = self.collector.paths.sys.clone();
                move || read_hwmon(&sys)
            }),
            self.units(),
            self.blocking(Source::Nics, {
                let sys = self.collector.paths.sys.clone();
                move || read_nics(&sys)
            }),
            self.clock(),
            self.blocking(Source::Reboot, {
                let p = self.collector.paths.clone();
                move || read_reboot(&p.run, &p.proc, &p.boot)
            }),
        );
        let mut report = HealthReport {
            collected_unix_ms: now_ms,
            filesystems,
            ..HealthReport::default()
        };
        let mut unobserved = |source: Source, reason: String| {
            report.unobserved.push(Unobserved {
                source: source.as_str().to_owned(),
                reason,
            });
        };
        match disks {
            Ok(d) => report.disks = d,
            Err(reason) => unobserved(Source::Disks, reason),
        }
        match zfs {
            Ok(p) => report.zfs_pools = p,
            Err(reason) => unobserved(Source::Zfs, reason),
        }
        match lvm {
            Ok(p) => report.thin_pools = p,
            Err(reason) => unobserved(Source::Lvm, reason),
        }
        match system {
            Ok(s) => report.system = Some(s),
            Err(reason) => {
                report.system = Some(SystemLoad {
                    unknown: reason.clone(),
                    ..SystemLoad::default()
                });
                unobserved(Source::System, reason);
            }
        }
        match temperatures {
            Ok(t) => report.temperatures = t,
            Err(reason) => unobserved(Source::Temperatures, reason),
        }
        match units {
            Ok(failed) => {
                report.units = Some(UnitsHealth {
                    failed,
                    unknown: String::new(),
                })
            }
            Err(reason) => {
                report.units = Some(UnitsHealth {
                    failed: Vec::new(),
                    unknown: reason.clone(),
                });
                unobserved(Source::Units, reason);
            }
        }
        match nics {
            Ok(n) => report.nics = n,
            Err(reason) => unobserved(Source::Nics, reason),
        }
        report.clock = Some(match clock {
            Ok(c) => c,
            Err(reason) => {
                unobserved(Source::Clock, reason.clone());
                ClockHealth {
                    unknown: reason,
                    ..ClockHealth::default()
                }
            }
        });
        report.reboot = Some(match reboot {
            Ok(r) => r,
            Err(reason) => {
                unobserved(Source::Reboot, reason.clone());
                RebootHealth {
                    unknown: reason,
                    ..RebootHealth::default()
                }
            }
        });
        self.maintenance_seen(&mut report, now_ms / 1000);
        report
    }

    /// Runs a blocking reader off the runtime, abandoned at its deadline.
    async fn blocking<T: Send + 'static>(
        &self,
        source: Source,
        read: impl FnOnce() -> Result<T, HostError> + Send + 'static,
    ) -> Result<T, String> {
        let deadline = self.deadline(source);
        match tokio::time::timeout(deadline, tokio::task::spawn_blocking(read)).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(error_chain(&e)),
            Ok(Err(join)) => Err(format!("the reader did not complete: {join}")),
            Err(_) => Err(format!(
                "no answer within {} (abandoned)",
                seconds(deadline)
            )),
        }
    }

    async fn disks(&self) -> Result<Vec<DiskHealth>, String> {
        let runner = self.runner_for(Source::Disks);
        let listed = list_disks_with(&runner, &self.tool("lsblk"))
            .await
            .map_err(|e| error_chain(&e))?;
        let smartctl = self.tool("smartctl");
        let disks = listed
            .into_iter()
            .filter(|d| !NOT_DRIVES.iter().any(|p| d.name.starts_with(p)))
            // An empty card reader slot: no medium, nothing to watch.
            .filter(|d| d.size_bytes != Some(0))
            .map(|d| {
                let runner = runner.clone();
                let smartctl = smartctl.clone();
                async move {
                    let mut disk = smart_of(&runner, &smartctl, &d.path).await;
                    if disk.model.is_empty() {
                        disk.model = d.model.clone().unwrap_or_default();
                    }
                    if disk.serial.is_empty() {
                        disk.serial = d.serial.clone().unwrap_or_default();
                    }
                    let transport = d
                        .transport
                        .clone()
                        .or_else(|| d.name.starts_with("vd").then(|| "virtio".to_owned()));
                    if let Some(t) = transport {
                        disk.transport = t;
                    }
                    disk.size_bytes = d.size_bytes.unwrap_or(0);
                    disk
                }
            });
        Ok(futures::stream::iter(disks)
            .buffered(SMART_CONCURRENCY)
            .collect()
            .await)
    }

    async fn zfs(&self) -> Result<Vec<ZfsPoolHealth>, String> {
        let runner = self.runner_for(Source::Zfs);
        let zpool = self.tool("zpool");
        let listed = match runner
            .run(
                &zpool,
                &["list", "-Hp", "-o", "name,size,alloc,free,health"],
            )
            .await
        {
            Ok(out) => parse_zpool_list(&out.stdout).map_err(|e| error_chain(&e))?,
            // No ZFS on this host: no pools, nothing unobserved.
            Err(CommandError::NotFound { .. }) => return Ok(Vec::new()),
            Err(CommandError::Failed { stderr_tail, .. })
                if stderr_tail.contains("modules are not loaded") =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(error_chain(&e)),
        };
        let mut pools = Vec::with_capacity(listed.len());
        for entry in listed {
            let status = runner
                .run_with_env(&zpool, &["status", "-p", &entry.name], &[("TZ", "UTC")])
                .await;
            let mut pool = match status {
                Ok(out) => match parse_zpool_status(&out.stdout) {
                    Ok(pool) if pool.name == entry.name => pool,
                    Ok(other) => ZfsPoolHealth {
                        unknown: format!("zpool status answered about pool {:?}", other.name),
                        ..ZfsPoolHealth::default()
                    },
                    Err(e) => ZfsPoolHealth {
                        unknown: error_chain(&e),
                        ..ZfsPoolHealth::default()
                    },
                },
                Err(e) => ZfsPoolHealth {
                    unknown: error_chain(&e),
                    ..ZfsPoolHealth::default()
                },
            };
            pool.name = entry.name.clone();
            if pool.state.is_empty() {
                pool.state = entry.health.to_string();
            }
            pool.size_bytes = entry.size_bytes;
            pool.allocated_bytes = entry.alloc_bytes;
            pool.free_bytes = entry.free_bytes;
            pools.push(pool);
        }
        Ok(pools)
    }

    async fn lvm(&self) -> Result<Vec<ThinPoolHealth>, String> {
        let runner = self.runner_for(Source::Lvm);
        match runner.run(&self.tool("lvs"), LVS_THIN_ARGS).await {
            Ok(out) => parse_lvs_thin_pools(&out.stdout).map_err(|e| error_chain(&e)),
            Err(CommandError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(error_chain(&e)),
        }
    }

    async fn filesystems(&self, inputs: &HealthInputs) -> Vec<FilesystemUse> {
        let mut targets = vec![(String::new(), self.collector.paths.root.clone())];
        targets.extend(inputs.volumes.iter().map(|(id, p)| (id.clone(), p.clone())));
        let reads = targets.into_iter().map(|(volume_id, path)| async move {
            let shown = path.display().to_string();
            let read = self
                .blocking(Source::Filesystems, {
                    let path = path.clone();
                    move || {
                        filesystem_use(&path).map_err(|source| HostError::Io {
                            what: "statvfs failed",
                            path: path.display().to_string(),
                            source,
                        })
                    }
                })
                .await;
            let mut fs = read.unwrap_or_else(|reason| FilesystemUse {
                unknown: reason,
                ..FilesystemUse::default()
            });
            fs.mount_path = shown;
            fs.volume_id = volume_id;
            fs
        });
        futures::future::join_all(reads).await
    }

    async fn system(&self) -> Result<SystemLoad, String> {
        let previous = lock(&self.collector.memory).cpu;
        let proc = self.collector.paths.proc.clone();
        let (load, sample) = self
            .blocking(Source::System, move || {
                read_system(&proc, previous.as_ref())
            })
            .await?;
        lock(&self.collector.memory).cpu = Some(sample);
        Ok(load)
    }

    async fn units(&self) -> Result<Vec<coloc_proto::agent::v1::FailedUnit>, String> {
        let deadline = self.deadline(Source::Units);
        match tokio::time::timeout(deadline, self.collector.bus.failed_units()).await {
            Ok(Ok(failed)) => Ok(failed),
            Ok(Err(e)) => Err(format!("systemd over the system bus: {}", error_chain(&e))),
            Err(_) => Err(format!(
                "systemd did not answer within {}",
                seconds(deadline)
            )),
        }
    }

    /// timedated's verdict; without it, systemd-timesyncd's flag file.
    async fn clock(&self) -> Result<ClockHealth, String> {
        let deadline = self.deadline(Source::Clock);
        let bus = match tokio::time::timeout(deadline, self.collector.bus.ntp_synchronized()).await
        {
            Ok(Ok(synchronised)) => {
                return Ok(ClockHealth {
                    synchronised,
                    ..ClockHealth::default()
                });
            }
            Ok(Err(e)) => error_chain(&e),
            Err(_) => format!("no answer within {}", seconds(deadline)),
        };
        let run = self.collector.paths.run.clone();
        let timesync = self
            .blocking(Source::Clock, move || timesyncd_flag(&run))
            .await;
        match timesync {
            Ok(Some(synchronised)) => Ok(ClockHealth {
                synchronised,
                ..ClockHealth::default()
            }),
            Ok(None) => Err(format!(
                "timedated: {bus}; and no systemd-timesyncd state under {}",
                self.collector.paths.run.join("systemd/timesync").display()
            )),
            Err(e) => Err(format!("timedated: {bus}; timesyncd: {e}")),
        }
    }

    /// Scrubs and self-tests as the report shows them: what runs now, and
    /// what finished since the previous report.
    fn maintenance_seen(&self, report: &mut HealthReport, now: u64) {
        let mut memory = lock(&self.collector.memory);
        let since = memory.last_collected;
        let mut scrubs_running = BTreeSet::new();
        for pool in &report.zfs_pools {
            let Some(scrub) = &pool.scrub else { continue };
            let run = |state: MaintenanceState, detail: &str| MaintenanceRun {
                kind: MaintenanceKind::Scrub as i32,
                subject: pool.name.clone(),
                state: state as i32,
                started_unix: scrub.started_unix,
                finished_unix: scrub.finished_unix,
                detail: detail.to_owned(),
                on_demand: false,
            };
            let state = ScrubState::try_from(scrub.state);
            if state == Ok(ScrubState::Running) {
                scrubs_running.insert(pool.name.clone());
                report.maintenance.push(run(MaintenanceState::Running, ""));
                continue;
            }
            if !matches!(state, Ok(ScrubState::Finished | ScrubState::Canceled)) {
                continue;
            }
            // Finished since the previous report: seen running then, or
            // ended after it; reported once.
            let new = memory.scrubs_running.contains(&pool.name)
                || (since > 0 && scrub.finished_unix >= since);
            if !new || memory.scrubs_reported.get(&pool.name) == Some(&scrub.finished_unix) {
                continue;
            }
            memory
                .scrubs_reported
                .insert(pool.name.clone(), scrub.finished_unix);
            report
                .maintenance
                .push(if state == Ok(ScrubState::Canceled) {
                    run(MaintenanceState::Failed, "scrub canceled")
                } else if scrub.errors > 0 {
                    run(
                        MaintenanceState::Failed,
                        &format!("{} errors found", scrub.errors),
                    )
                } else {
                    run(MaintenanceState::Passed, "")
                });
        }
        memory.scrubs_running = scrubs_running;
        let mut running_now = BTreeMap::new();
        for disk in &report.disks {
            let Some(test) = &disk.last_self_test else {
                continue;
            };
            let kind = match SelfTestKind::try_from(test.kind) {
                Ok(SelfTestKind::Long) => MaintenanceKind::SmartLong,
                _ => MaintenanceKind::SmartShort,
            } as i32;
            if test.running {
                let (kind, started) = *memory.self_tests.get(&disk.device).unwrap_or(&(kind, now));
                running_now.insert(disk.device.clone(), (kind, started));
                report.maintenance.push(MaintenanceRun {
                    kind,
                    subject: disk.device.clone(),
                    state: MaintenanceState::Running as i32,
                    started_unix: started,
                    finished_unix: 0,
                    detail: test.status.clone(),
                    on_demand: false,
                });
            } else if let Some((kind, started)) = memory.self_tests.get(&disk.device) {
                report.maintenance.push(MaintenanceRun {
                    kind: *kind,
                    subject: disk.device.clone(),
                    state: if test.passed {
                        MaintenanceState::Passed
                    } else {
                        MaintenanceState::Failed
                    } as i32,
                    started_unix: *started,
                    finished_unix: now,
                    detail: test.status.clone(),
                    on_demand: false,
                });
            }
        }
        memory.self_tests = running_now;
        memory.last_collected = now;
    }

    /// Starts a scrub or a self-test; see [`crate::Health::start_maintenance`].
    pub(crate) async fn start(
        &self,
        kind: MaintenanceKind,
        subject: &str,
    ) -> Result<String, HostError> {
        match check_start(kind, subject)? {
            Start::Scrub { pool } => {
                self.runner_for(Source::Zfs)
                    .run(&self.tool("zpool"), &["scrub", &pool])
                    .await
                    .map_err(|e| HostError::storage("scrub", pool.clone(), e))?;
                Ok(pool)
            }
            Start::SelfTest { long, disk } => {
                let runner = self.runner_for(Source::Disks);
                let device = match disk {
                    Disk::Path(path) => path,
                    Disk::Serial(serial) => list_disks_with(&runner, &self.tool("lsblk"))
                        .await?
                        .into_iter()
                        .find(|d| d.serial.as_deref() == Some(serial.as_str()))
                        .map(|d| d.path)
                        .ok_or_else(|| HostError::Refused {
                            object: format!("disk {serial}"),
                            reason: "no disk of this node has that serial".to_owned(),
                        })?,
                };
                let test = if long { "long" } else { "short" };
                let out = runner
                    .run_allow_status(
                        &self.tool("smartctl"),
                        &["--json", "-t", test, &device],
                        &smartctl_statuses(),
                    )
                    .await
                    .map_err(|e| {
                        HostError::from_command(e, |source| HostError::Smart {
                            device: device.clone(),
                            source,
                        })
                    })?;
                // Bits 0-2: bad command line, device not opened, or the
                // command to start the test failed (one already running,
                // no self-test support).
                if out.status & 0b111 != 0 {
                    let messages = serde_json::from_str(&out.stdout)
                        .map(|root| smartctl_messages(&root))
                        .ok()
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| "smartctl gave no message".to_owned());
                    return Err(HostError::SmartFailed {
                        device,
                        status: out.status,
                        messages,
                    });
                }
                Ok(device)
            }
        }
    }
}

/// SMART of one disk: never fails; a run that did not complete makes the
/// disk UNKNOWN with the reason.
async fn smart_of(runner: &Runner, smartctl: &str, device: &str) -> DiskHealth {
    match runner
        .run_allow_status(smartctl, &["--json", "-a", device], &smartctl_statuses())
        .await
    {
        Ok(out) => parse_disk_health(device, out.status, &out.stdout),
        Err(e) => DiskHealth {
            device: device.to_owned(),
            smart: SmartVerdict::Unknown as i32,
            unknown: match &e {
                CommandError::NotFound { .. } => "smartctl is not installed".to_owned(),
                _ => error_chain(&e),
            },
            ..DiskHealth::default()
        },
    }
}

/// systemd-timesyncd's view: `Some(true)` when it has synchronised the
/// clock, `Some(false)` when it runs and has not, `None` when it does not
/// run here.
fn timesyncd_flag(run: &Path) -> Result<Option<bool>, HostError> {
    let dir = run.join("systemd/timesync");
    if !dir.is_dir() {
        return Ok(None);
    }
    Ok(Some(dir.join("synchronized").exists()))
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

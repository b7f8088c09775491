//! In-memory fakes of [`Units`] and [`Health`], and the assembly of a
//! whole fake host with the storage fakes of [`volumes`](crate::volumes)
//! ([`FakeDisks`], [`FakeVolumes`]) and the others ([`FakePackages`],
//! [`FakeJournal`], [`FakeAccounts`], [`FakeFirewall`]), good enough to run a whole simulated
//! agent and to let tests set the host's state.
//!
//! Everything is deterministic: the same node name gives the same facts,
//! disk serials, MAC and address on every run and every machine, so that a
//! simulated fleet is reproducible. The fakes mirror the real host's
//! semantics where callers can observe them (starting an unknown unit is
//! [`HostError::NoSuchUnit`], stopping one succeeds, unknown units read as
//! `not-found`, the facts list the disks the prober sees).
//!
//! [`FakeUnits`] cannot see unit files: what the app reconciler writes
//! under its root directory is not "installed" by [`Units::daemon_reload`]
//! (which only counts calls). Tests install the units they expect the
//! reconciler to have written with [`FakeUnits::install`], and can check
//! the files themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use coloc_proto::agent::v1::{
    Disk, HealthReport, MaintenanceKind, Nic, NodeFacts, PoolKind, PoolLayout,
};

use crate::health::HealthInputs;
use crate::health::fake::{FakeHealthState, unix_now};
use crate::smart::validate_device;
use crate::volumes::{DiskProbe, FakeDisks, FakeVolumes, PoolObservation, Volumes};
use crate::{
    BlockDevice, FakeAccounts, FakeFirewall, FakeJournal, FakePackages, Health, Host, HostError,
    SmartReport, UnitDetails, UnitName, UnitOp, UnitState, Units,
};

const GIB: u64 = 1024 * 1024 * 1024;

/// 2026-01-01T00:00:00Z: simulated nodes booted on new year's day.
const FAKE_BOOT_EPOCH: u64 = 1_767_225_600;

/// Units every simulated node runs.
const FAKE_BASE_UNITS: &[&str] = &["ssh.service", "systemd-journald.service"];

/// The fakes of one simulated node, as concrete types so that tests can
/// reach their setters; [`FakeHost::host`] hands out the trait view.
#[derive(Clone)]
pub struct FakeHost {
    pub units: Arc<FakeUnits>,
    pub health: Arc<FakeHealth>,
    /// The disks the storage reconciler probes and the facts list.
    pub disks: Arc<FakeDisks>,
    /// The ZFS stack, building its pools on `disks`.
    pub zfs: Arc<FakeVolumes>,
    /// The LVM thin stack, building its volume groups on `disks`.
    pub lvm: Arc<FakeVolumes>,
    pub packages: Arc<FakePackages>,
    pub journal: Arc<FakeJournal>,
    pub accounts: Arc<FakeAccounts>,
    pub firewall: Arc<FakeFirewall>,
}

impl FakeHost {
    /// A plausible node called `node_name`: a root SSD `vda` and three
    /// blank 100 GiB data disks `vdb`..`vdd` (serials `SIM-<node>-0` to
    /// `SIM-<node>-3`, see [`FakeDisks::for_node`]), no pools or volume
    /// groups yet, ssh and journald running.
    pub fn new(node_name: &str) -> FakeHost {
        let disks = Arc::new(FakeDisks::for_node(node_name));
        let units = Arc::new(FakeUnits::new());
        for unit in FAKE_BASE_UNITS {
            // Literals, checked by `base_units_run_on_a_fresh_fake_node`.
            let unit = UnitName::new(*unit).expect("built-in fake unit names are valid");
            units.install(&unit);
            units.set_active(&unit);
        }
        // The reverse proxy's unit, as the image ships it, and Debian's
        // caddy.service (inactive until the first app is deployed).
        for proxy in ["coloc-proxy.service", "caddy.service"] {
            units.install(&UnitName::new(proxy).expect("a valid unit name"));
        }
        let zfs = Arc::new(FakeVolumes::with_disks(PoolKind::Zfs, Arc::clone(&disks)));
        let lvm = Arc::new(FakeVolumes::with_disks(
            PoolKind::LvmThin,
            Arc::clone(&disks),
        ));
        let health = Arc::new(FakeHealth::with_storage(
            node_name,
            Arc::clone(&disks),
            Arc::clone(&zfs),
            Arc::clone(&lvm),
        ));
        FakeHost {
            units,
            health,
            disks,
            zfs,
            lvm,
            packages: Arc::default(),
            journal: Arc::default(),
            accounts: Arc::default(),
            firewall: Arc::default(),
        }
    }

    /// The same fakes behind the traits.
    pub fn host(&self) -> Host {
        Host {
            units: self.units.clone(),
            health: self.health.clone(),
            volumes: Volumes::new(self.disks.clone(), vec![self.zfs.clone(), self.lvm.clone()]),
            packages: self.packages.clone(),
            journal: self.journal.clone(),
            accounts: self.accounts.clone(),
            firewall: self.firewall.clone(),
        }
    }

    /// The fake storage stack of `kind`; `None` for an unknown kind.
    pub fn volumes_of(&self, kind: PoolKind) -> Option<&Arc<FakeVolumes>> {
        match kind {
            PoolKind::Zfs => Some(&self.zfs),
            PoolKind::LvmThin => Some(&self.lvm),
            PoolKind::Unspecified => None,
        }
    }
}

impl std::fmt::Debug for FakeHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHost").finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide its own
    // failure behind a poison error in the next call.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// FNV-1a: a stable hash (unlike std's), so fake facts never change
/// between Rust versions.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

// ------------------------------------------------------------------ units

/// systemd's default `StartLimitBurst`: a crash-looping unit has been
/// restarted this many times when it hits the limit.
pub const FAKE_START_LIMIT_BURST: u32 = 5;

#[derive(Debug, Clone)]
struct FakeUnit {
    active_state: &'static str,
    sub_state: &'static str,
    /// The service's `Result` property.
    result: &'static str,
    start_fails: bool,
    crash_loops: bool,
    enabled: bool,
    restarts: u32,
    memory_bytes: Option<u64>,
    starts: u32,
    stops: u32,
    restart_calls: u32,
    reload_or_restart_calls: u32,
}

#[derive(Debug, Default)]
struct UnitsState {
    units: BTreeMap<UnitName, FakeUnit>,
    /// Masking works on any name, installed or not, like the symlink to
    /// /dev/null it is.
    masked: BTreeSet<UnitName>,
    daemon_reloads: u32,
    /// Where daemon_reload finds unit files; None: it only counts.
    unit_root: Option<std::path::PathBuf>,
}

/// In-memory [`Units`]: installed units and their state. Units not
/// installed behave like units with no unit file.
///
/// Failures: [`FakeUnits::set_start_fails`] makes starts end like a
/// service that exits at once (job result "failed", unit `failed`, result
/// `exit-code`); [`FakeUnits::set_crash_loop`] like a service that keeps
/// crashing until systemd gives up (job result "failed", unit `failed`,
/// result `start-limit-hit`, [`FAKE_START_LIMIT_BURST`] restarts). Real
/// systemd may report the start job of a `Type=simple` service done and
/// the crash only later: callers must read [`Units::details`] either way.
/// A masked unit (load state `masked`) refuses start and restart with
/// [`HostError::Refused`].
#[derive(Debug, Default)]
pub struct FakeUnits {
    state: Mutex<UnitsState>,
}

impl FakeUnits {
    /// No units installed.
    pub fn new() -> FakeUnits {
        FakeUnits::default()
    }

    /// Makes [`Units::daemon_reload`] load the unit files found in `dir`
    /// (a simulated node's `<root>/etc/systemd/system`), as systemd does.
    pub fn set_unit_root(&self, dir: std::path::PathBuf) {
        lock(&self.state).unit_root = Some(dir);
    }

    /// Installs the unit, inactive; an installed unit keeps its state.
    pub fn install(&self, unit: &UnitName) {
        lock(&self.state)
            .units
            .entry(unit.clone())
            .or_insert_with(|| FakeUnit {
                active_state: "inactive",
                sub_state: "dead",
                result: "success",
                start_fails: false,
                crash_loops: false,
                enabled: false,
                restarts: 0,
                memory_bytes: None,
                starts: 0,
                stops: 0,
                restart_calls: 0,
                reload_or_restart_calls: 0,
            });
    }

    /// Removes the unit file; the unit then reads as `not-found`.
    pub fn uninstall(&self, unit: &UnitName) {
        lock(&self.state).units.remove(unit);
    }

    /// Marks an installed unit as running without counting a start, as if
    /// it had been started at boot. No effect on a unit not installed.
    pub fn set_active(&self, unit: &UnitName) {
        self.with_unit(unit, |u| {
            u.active_state = "active";
            u.sub_state = "running";
        });
    }

    /// When set, starting the unit leaves it `failed` and reports the job
    /// result "failed", as systemd does for a service that exits at once.
    pub fn set_start_fails(&self, unit: &UnitName, fails: bool) {
        self.with_unit(unit, |u| u.start_fails = fails);
    }

    /// When set, starting (or restarting) the unit ends with it `failed`
    /// on its start limit: job result "failed", `Result`
    /// `start-limit-hit`, `NRestarts` [`FAKE_START_LIMIT_BURST`].
    pub fn set_crash_loop(&self, unit: &UnitName, crash_loops: bool) {
        self.with_unit(unit, |u| u.crash_loops = crash_loops);
    }

    /// `NRestarts` from now on.
    pub fn set_restarts(&self, unit: &UnitName, restarts: u32) {
        self.with_unit(unit, |u| u.restarts = restarts);
    }

    /// `MemoryCurrent` while the unit is active (`None`: not accounted).
    pub fn set_memory(&self, unit: &UnitName, bytes: Option<u64>) {
        self.with_unit(unit, |u| u.memory_bytes = bytes);
    }

    /// Names of the installed units, sorted.
    pub fn installed(&self) -> BTreeSet<UnitName> {
        lock(&self.state).units.keys().cloned().collect()
    }

    /// How many times [`Units::start`] reached this installed unit.
    pub fn start_count(&self, unit: &UnitName) -> u32 {
        self.read_unit(unit, |u| u.starts)
    }

    /// How many times [`Units::stop`] reached this installed unit.
    pub fn stop_count(&self, unit: &UnitName) -> u32 {
        self.read_unit(unit, |u| u.stops)
    }

    /// How many times [`Units::restart`] reached this installed unit.
    pub fn restart_count(&self, unit: &UnitName) -> u32 {
        self.read_unit(unit, |u| u.restart_calls)
    }

    /// How many times [`Units::reload_or_restart`] reached this installed
    /// unit.
    pub fn reload_or_restart_count(&self, unit: &UnitName) -> u32 {
        self.read_unit(unit, |u| u.reload_or_restart_calls)
    }

    /// Whether the installed unit is enabled.
    pub fn is_enabled(&self, unit: &UnitName) -> bool {
        self.read_unit(unit, |u| u.enabled)
    }

    pub fn is_masked(&self, unit: &UnitName) -> bool {
        lock(&self.state).masked.contains(unit)
    }

    /// How many times [`Units::daemon_reload`] was called.
    pub fn daemon_reload_count(&self) -> u32 {
        lock(&self.state).daemon_reloads
    }

    fn with_unit(&self, unit: &UnitName, change: impl FnOnce(&mut FakeUnit)) {
        if let Some(u) = lock(&self.state).units.get_mut(unit) {
            change(u);
        }
    }

    fn read_unit<T: Default>(&self, unit: &UnitName, read: impl FnOnce(&FakeUnit) -> T) -> T {
        lock(&self.state)
            .units
            .get(unit)
            .map(read)
            .unwrap_or_default()
    }

    /// A start, restart or reload-or-restart job on `unit`.
    fn start_job(
        &self,
        unit: &UnitName,
        count: impl FnOnce(&mut FakeUnit),
    ) -> Result<(), HostError> {
        let mut state = lock(&self.state);
        if state.masked.contains(unit) {
            return Err(HostError::Refused {
                object: format!("unit {unit}"),
                reason: "the unit is masked".into(),
            });
        }
        let Some(u) = state.units.get_mut(unit) else {
            return Err(HostError::NoSuchUnit { unit: unit.clone() });
        };
        count(u);
        let failure = if u.crash_loops {
            u.restarts = FAKE_START_LIMIT_BURST;
            Some("start-limit-hit")
        } else if u.start_fails {
            Some("exit-code")
        } else {
            None
        };
        if let Some(result) = failure {
            u.active_state = "failed";
            u.sub_state = "failed";
            u.result = result;
            return Err(HostError::UnitJob {
                unit: unit.clone(),
                op: UnitOp::Start,
                result: "failed".into(),
            });
        }
        u.active_state = "active";
        u.sub_state = "running";
        u.result = "success";
        Ok(())
    }

    fn load_state(state: &UnitsState, unit: &UnitName) -> &'static str {
        if state.masked.contains(unit) {
            "masked"
        } else if state.units.contains_key(unit) {
            "loaded"
        } else {
            "not-found"
        }
    }
}

#[async_trait]
impl Units for FakeUnits {
    async fn unit_state(&self, unit: &UnitName) -> Result<UnitState, HostError> {
        let state = lock(&self.state);
        let load_state = FakeUnits::load_state(&state, unit).to_owned();
        Ok(match state.units.get(unit) {
            Some(u) => UnitState {
                active_state: u.active_state.into(),
                sub_state: u.sub_state.into(),
                load_state,
            },
            None => UnitState {
                active_state: "inactive".into(),
                sub_state: "dead".into(),
                load_state,
            },
        })
    }

    async fn start(&self, unit: &UnitName) -> Result<(), HostError> {
        self.start_job(unit, |u| u.starts += 1)
    }

    async fn stop(&self, unit: &UnitName) -> Result<(), HostError> {
        self.with_unit(unit, |u| {
            u.stops += 1;
            u.active_state = "inactive";
            u.sub_state = "dead";
        });
        Ok(())
    }

    async fn restart(&self, unit: &UnitName) -> Result<(), HostError> {
        self.start_job(unit, |u| u.restart_calls += 1)
    }

    async fn reload_or_restart(&self, unit: &UnitName) -> Result<(), HostError> {
        self.start_job(unit, |u| u.reload_or_restart_calls += 1)
    }

    async fn daemon_reload(&self) -> Result<(), HostError> {
        let dir = {
            let mut state = lock(&self.state);
            state.daemon_reloads += 1;
            state.unit_root.clone()
        };
        // Like systemd, pick up the unit files written since the last
        // reload, and forget the ones deleted (unless still running).
        if let Some(dir) = dir {
            let mut on_disk = BTreeSet::new();
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if let Some(name) = entry.file_name().to_str()
                        && let Ok(unit) = UnitName::new(name)
                    {
                        on_disk.insert(unit);
                    }
                }
            }
            for unit in &on_disk {
                self.install(unit);
            }
            lock(&self.state).units.retain(|name, u| {
                !name.as_str().starts_with("coloc-app-")
                    || on_disk.contains(name)
                    || u.active_state == "active"
            });
        }
        Ok(())
    }

    async fn enable(&self, unit: &UnitName) -> Result<(), HostError> {
        let mut state = lock(&self.state);
        match state.units.get_mut(unit) {
            Some(u) => {
                u.enabled = true;
                Ok(())
            }
            None => Err(HostError::NoSuchUnit { unit: unit.clone() }),
        }
    }

    async fn disable(&self, unit: &UnitName) -> Result<(), HostError> {
        self.with_unit(unit, |u| u.enabled = false);
        Ok(())
    }

    async fn mask(&self, unit: &UnitName) -> Result<(), HostError> {
        lock(&self.state).masked.insert(unit.clone());
        Ok(())
    }

    async fn reset_failed(&self, unit: &UnitName) -> Result<(), HostError> {
        self.with_unit(unit, |u| {
            if u.active_state == "failed" {
                u.active_state = "inactive";
                u.sub_state = "dead";
                u.result = "success";
            }
        });
        Ok(())
    }

    async fn details(&self, unit: &UnitName) -> Result<UnitDetails, HostError> {
        let state = lock(&self.state);
        let load_state = FakeUnits::load_state(&state, unit).to_owned();
        Ok(match state.units.get(unit) {
            Some(u) => UnitDetails {
                active_state: u.active_state.into(),
                sub_state: u.sub_state.into(),
                load_state,
                restarts: u.restarts,
                // No cgroup, no memory: only a running unit has some.
                memory_bytes: u.memory_bytes.filter(|_| u.active_state == "active"),
                result: u.result.into(),
            },
            None => UnitDetails {
                active_state: "inactive".into(),
                sub_state: "dead".into(),
                load_state,
                ..UnitDetails::default()
            },
        })
    }
}

// ----------------------------------------------------------------- health

#[derive(Debug)]
struct HealthState {
    hostname: String,
    cpu_model: String,
    cpu_count: u32,
    memory_bytes: u64,
    nics: Vec<Nic>,
    kernel_version: String,
    os_name: String,
    boot_time_unix: u64,
    smart: BTreeMap<String, SmartReport>,
}

/// In-memory [`Health`]. Its facts list the disks of the [`FakeDisks`]
/// it was built with, as the real facts list what `lsblk` sees; setting
/// those disks changes both what the prober finds and what facts say.
/// Its health reports (see `health::fake` for what they say and the fault
/// setters) describe those disks and the pools of the storage fakes it
/// was built with.
#[derive(Debug)]
pub struct FakeHealth {
    state: Mutex<HealthState>,
    pub(crate) disks: Arc<FakeDisks>,
    /// The ZFS and LVM fakes whose pools the reports describe.
    storage: Option<(Arc<FakeVolumes>, Arc<FakeVolumes>)>,
    pub(crate) health: Mutex<FakeHealthState>,
}

impl FakeHealth {
    /// Facts derived from `node_name`: hostname = node name, 4 CPUs, 8 GiB,
    /// one NIC `eth0` with a locally administered MAC and a 10.x.y.z
    /// address both derived from the name, Debian 12. Every disk of
    /// `disks` answers SMART with a healthy report.
    pub fn new(node_name: &str, disks: Arc<FakeDisks>) -> FakeHealth {
        let h = stable_hash(node_name).to_be_bytes();
        let mac = format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            h[0], h[1], h[2], h[3], h[4]
        );
        // Host part 1..=254: never the network or broadcast address of a /24.
        let address = format!("10.{}.{}.{}", h[5], h[6], 1 + h[7] % 254);
        FakeHealth {
            state: Mutex::new(HealthState {
                hostname: node_name.to_owned(),
                cpu_model: "coloc simulated CPU @ 2.40GHz".into(),
                cpu_count: 4,
                memory_bytes: 8 * GIB,
                nics: vec![Nic {
                    name: "eth0".into(),
                    mac,
                    addresses: vec![address],
                }],
                kernel_version: "6.1.0-sim-amd64".into(),
                os_name: "Debian GNU/Linux 12 (bookworm)".into(),
                boot_time_unix: FAKE_BOOT_EPOCH,
                smart: BTreeMap::new(),
            }),
            disks,
            storage: None,
            health: Mutex::new(FakeHealthState::new(unix_now())),
        }
    }

    /// [`FakeHealth::new`], with reports that describe the pools of `zfs`
    /// and `lvm` too (as [`FakeHost`] builds it).
    pub fn with_storage(
        node_name: &str,
        disks: Arc<FakeDisks>,
        zfs: Arc<FakeVolumes>,
        lvm: Arc<FakeVolumes>,
    ) -> FakeHealth {
        FakeHealth {
            storage: Some((zfs, lvm)),
            ..FakeHealth::new(node_name, disks)
        }
    }

    /// The imported ZFS pools with their layout and devices; none without
    /// ZFS.
    pub(crate) fn zfs_pools(&self) -> Vec<(PoolObservation, PoolLayout, Vec<String>)> {
        self.storage
            .as_ref()
            .and_then(|(zfs, _)| zfs.pools_with_members().ok())
            .unwrap_or_default()
    }

    /// The active LVM volume groups; none without LVM.
    pub(crate) fn lvm_pools(&self) -> Vec<PoolObservation> {
        self.storage
            .as_ref()
            .and_then(|(_, lvm)| lvm.pools_with_members().ok())
            .map(|pools| pools.into_iter().map(|(p, ..)| p).collect())
            .unwrap_or_default()
    }

    /// Size and use of the volume `id`, in either stack.
    pub(crate) fn volume_object(&self, id: &str) -> Option<(u64, u64)> {
        let (zfs, lvm) = self.storage.as_ref()?;
        [zfs, lvm]
            .iter()
            .find_map(|stack| stack.object(id))
            .map(|o| (o.filesystem_bytes.max(o.size_bytes), o.used_bytes))
    }

    /// Memory, CPU count, boot time and NIC names, as the facts say.
    pub(crate) fn system_facts(&self) -> (u64, u32, u64, Vec<String>) {
        let s = lock(&self.state);
        (
            s.memory_bytes,
            s.cpu_count,
            s.boot_time_unix,
            s.nics.iter().map(|n| n.name.clone()).collect(),
        )
    }

    pub fn set_memory_bytes(&self, bytes: u64) {
        lock(&self.state).memory_bytes = bytes;
    }

    pub fn set_cpu_count(&self, count: u32) {
        lock(&self.state).cpu_count = count;
    }

    pub fn set_hostname(&self, hostname: &str) {
        lock(&self.state).hostname = hostname.to_owned();
    }

    pub fn set_nics(&self, nics: Vec<Nic>) {
        lock(&self.state).nics = nics;
    }

    /// Simulates a reboot: a new boot time.
    pub fn set_boot_time_unix(&self, boot_time_unix: u64) {
        lock(&self.state).boot_time_unix = boot_time_unix;
    }

    /// What [`Health::smart`] answers for `report.device` from now on
    /// (e.g. a failing drive with `passed: false`).
    pub fn set_smart(&self, report: SmartReport) {
        lock(&self.state)
            .smart
            .insert(report.device.clone(), report);
    }

    /// The fake's disks as the facts describe them: simulated virtio SSDs.
    fn block_devices(&self) -> Vec<BlockDevice> {
        self.disks
            .disks()
            .iter()
            .map(|d: &DiskProbe| BlockDevice {
                name: d.device.trim_start_matches("/dev/").to_owned(),
                model: Some("coloc simulated disk".into()),
                serial: d.serial.clone(),
                size_bytes: d.size_bytes,
                transport: Some("virtio".into()),
                rotational: false,
            })
            .collect()
    }

    fn healthy_report(disk: &BlockDevice) -> SmartReport {
        SmartReport {
            device: disk.dev_path(),
            model: disk.model.clone(),
            serial: disk.serial.clone(),
            passed: true,
            temperature_c: Some(35),
            power_on_hours: Some(1000),
            media_errors: None,
        }
    }
}

#[async_trait]
impl Health for FakeHealth {
    async fn facts(&self) -> Result<NodeFacts, HostError> {
        let disks = self.block_devices();
        let state = lock(&self.state);
        Ok(NodeFacts {
            hostname: state.hostname.clone(),
            cpu_model: state.cpu_model.clone(),
            cpu_count: state.cpu_count,
            memory_bytes: state.memory_bytes,
            disks: disks.iter().map(Disk::from).collect(),
            nics: state.nics.clone(),
            kernel_version: state.kernel_version.clone(),
            os_name: state.os_name.clone(),
            // The agent stamps its own version: the host cannot know it.
            agent_version: String::new(),
            boot_time_unix: state.boot_time_unix,
        })
    }

    async fn smart(&self, device: &str) -> Result<SmartReport, HostError> {
        validate_device(device)?;
        if let Some(report) = lock(&self.state).smart.get(device) {
            return Ok(report.clone());
        }
        match self.block_devices().iter().find(|d| d.dev_path() == device) {
            Some(disk) => Ok(FakeHealth::healthy_report(disk)),
            // What smartctl answers for a device node that does not exist.
            None => Err(HostError::SmartFailed {
                device: device.to_owned(),
                status: 2,
                messages: format!("Smartctl open device: {device} failed: No such device"),
            }),
        }
    }

    async fn report(&self, inputs: &HealthInputs) -> HealthReport {
        self.fake_report(inputs)
    }

    async fn start_maintenance(
        &self,
        kind: MaintenanceKind,
        subject: &str,
    ) -> Result<String, HostError> {
        self.fake_start(kind, subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str) -> UnitName {
        UnitName::new(name).unwrap()
    }

    #[tokio::test]
    async fn facts_are_derived_from_the_node_name_and_deterministic() {
        let a = Host::fake("node-a").health.facts().await.unwrap();
        let again = Host::fake("node-a").health.facts().await.unwrap();
        let b = Host::fake("node-b").health.facts().await.unwrap();
        assert_eq!(a, again);
        assert_eq!(a.hostname, "node-a");
        assert_eq!(a.cpu_count, 4);
        assert_eq!(a.memory_bytes, 8 * GIB);
        assert_eq!(a.disks.len(), 4);
        assert_eq!(a.disks[0].serial, "SIM-node-a-0");
        assert_eq!(a.disks[0].name, "vda");
        assert_eq!(a.disks[3].serial, "SIM-node-a-3");
        assert_eq!(a.disks[3].name, "vdd");
        assert_eq!(a.agent_version, "", "stamped by the agent, not the host");
        assert_ne!(a.nics[0].mac, b.nics[0].mac);
        assert_ne!(a.disks[0].serial, b.disks[0].serial);
        // The values a name hashes to are part of the simulation's
        // reproducibility: pin one.
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert!(a.nics[0].mac.starts_with("02:"));
        let last: u8 = a.nics[0].addresses[0]
            .rsplit('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=254).contains(&last));
    }

    #[tokio::test]
    async fn setters_change_what_facts_report() {
        let fake = FakeHost::new("n1");
        fake.health.set_memory_bytes(64 * GIB);
        fake.health.set_cpu_count(32);
        fake.disks.set_disks(vec![]);
        let facts = fake.host().health.facts().await.unwrap();
        assert_eq!(facts.memory_bytes, 64 * GIB);
        assert_eq!(facts.cpu_count, 32);
        assert!(facts.disks.is_empty());
    }

    #[tokio::test]
    async fn smart_answers_for_known_disks_and_set_reports() {
        let fake = FakeHost::new("n1");
        let health = fake.host().health;
        let report = health.smart("/dev/vda").await.unwrap();
        assert!(report.passed);
        assert_eq!(report.serial.as_deref(), Some("SIM-n1-0"));

        fake.health.set_smart(SmartReport {
            passed: false,
            media_errors: Some(12),
            ..report
        });
        let failing = health.smart("/dev/vda").await.unwrap();
        assert!(!failing.passed);
        assert_eq!(failing.media_errors, Some(12));

        assert!(matches!(
            health.smart("/dev/sdq").await,
            Err(HostError::SmartFailed { status: 2, .. })
        ));
        assert!(matches!(
            health.smart("vda").await,
            Err(HostError::InvalidDevice { .. })
        ));
    }

    #[tokio::test]
    async fn base_units_run_on_a_fresh_fake_node() {
        let fake = FakeHost::new("n1");
        let units = fake.host().units;
        for name in FAKE_BASE_UNITS {
            let state = units.unit_state(&unit(name)).await.unwrap();
            assert!(state.is_active() && state.is_loaded(), "{name}: {state:?}");
        }
        // Plus the proxy's units, installed but not running.
        assert_eq!(fake.units.installed().len(), FAKE_BASE_UNITS.len() + 2);
        for name in ["coloc-proxy.service", "caddy.service"] {
            let caddy = units.unit_state(&unit(name)).await.unwrap();
            assert!(state_is_inactive_and_loaded(&caddy), "{caddy:?}");
        }
    }

    fn state_is_inactive_and_loaded(state: &UnitState) -> bool {
        state.is_loaded() && !state.is_active()
    }

    #[tokio::test]
    async fn start_and_stop_change_state_idempotently() {
        let fake = FakeUnits::new();
        let app = unit("coloc-app@wiki.service");
        fake.install(&app);
        let state = fake.unit_state(&app).await.unwrap();
        assert_eq!(
            (
                state.active_state.as_str(),
                state.sub_state.as_str(),
                state.load_state.as_str()
            ),
            ("inactive", "dead", "loaded")
        );

        fake.start(&app).await.unwrap();
        fake.start(&app).await.unwrap();
        let state = fake.unit_state(&app).await.unwrap();
        assert!(state.is_active());
        assert_eq!(state.sub_state, "running");
        assert_eq!(fake.start_count(&app), 2);

        fake.stop(&app).await.unwrap();
        fake.stop(&app).await.unwrap();
        let state = fake.unit_state(&app).await.unwrap();
        assert_eq!(state.active_state, "inactive");
        assert_eq!(fake.stop_count(&app), 2);
    }

    #[tokio::test]
    async fn unknown_units_read_not_found_refuse_start_and_accept_stop() {
        let fake = FakeUnits::new();
        let ghost = unit("ghost.service");
        let state = fake.unit_state(&ghost).await.unwrap();
        assert_eq!(state.load_state, "not-found");
        assert!(!state.is_loaded() && !state.is_active());
        match fake.start(&ghost).await {
            Err(HostError::NoSuchUnit { unit }) => assert_eq!(unit, ghost),
            other => panic!("{other:?}"),
        }
        fake.stop(&ghost).await.unwrap();

        fake.install(&ghost);
        fake.uninstall(&ghost);
        assert_eq!(
            fake.unit_state(&ghost).await.unwrap().load_state,
            "not-found"
        );
    }

    #[tokio::test]
    async fn a_unit_whose_start_fails_ends_failed() {
        let fake = FakeUnits::new();
        let bad = unit("bad.service");
        fake.install(&bad);
        fake.set_start_fails(&bad, true);
        match fake.start(&bad).await {
            Err(HostError::UnitJob { unit, op, result }) => {
                assert_eq!(unit, bad);
                assert_eq!(op, UnitOp::Start);
                assert_eq!(result, "failed");
            }
            other => panic!("{other:?}"),
        }
        assert!(fake.unit_state(&bad).await.unwrap().is_failed());
        fake.set_start_fails(&bad, false);
        fake.start(&bad).await.unwrap();
        assert!(fake.unit_state(&bad).await.unwrap().is_active());
    }

    #[tokio::test]
    async fn restart_enable_mask_and_reload_are_recorded() {
        let fake = FakeUnits::new();
        let app = unit("coloc-app-acme-wiki.service");
        let ghost = unit("ghost.service");
        fake.install(&app);

        fake.enable(&app).await.unwrap();
        fake.enable(&app).await.unwrap();
        assert!(fake.is_enabled(&app));
        assert!(matches!(
            fake.enable(&ghost).await,
            Err(HostError::NoSuchUnit { .. })
        ));
        fake.disable(&app).await.unwrap();
        fake.disable(&ghost).await.unwrap();
        assert!(!fake.is_enabled(&app));

        fake.restart(&app).await.unwrap();
        fake.reload_or_restart(&app).await.unwrap();
        assert_eq!(fake.restart_count(&app), 1);
        assert_eq!(fake.reload_or_restart_count(&app), 1);
        assert_eq!(fake.start_count(&app), 0);
        assert!(fake.unit_state(&app).await.unwrap().is_active());
        assert!(matches!(
            fake.restart(&ghost).await,
            Err(HostError::NoSuchUnit { .. })
        ));

        fake.daemon_reload().await.unwrap();
        fake.daemon_reload().await.unwrap();
        assert_eq!(fake.daemon_reload_count(), 2);

        // Package units are masked whether or not their file is there.
        let packaged = unit("redis-server.service");
        fake.mask(&packaged).await.unwrap();
        fake.mask(&packaged).await.unwrap();
        assert!(fake.is_masked(&packaged));
        assert_eq!(fake.details(&packaged).await.unwrap().load_state, "masked");
        fake.install(&packaged);
        assert!(matches!(
            fake.start(&packaged).await,
            Err(HostError::Refused { .. })
        ));
    }

    #[tokio::test]
    async fn details_report_restarts_memory_and_result() {
        let fake = FakeUnits::new();
        let app = unit("coloc-app-acme-wiki.service");
        let ghost = unit("ghost.service");
        assert_eq!(
            fake.details(&ghost).await.unwrap(),
            UnitDetails {
                active_state: "inactive".into(),
                sub_state: "dead".into(),
                load_state: "not-found".into(),
                restarts: 0,
                memory_bytes: None,
                result: String::new(),
            }
        );
        fake.install(&app);
        fake.set_memory(&app, Some(64 << 20));
        fake.set_restarts(&app, 2);
        assert_eq!(
            fake.details(&app).await.unwrap().memory_bytes,
            None,
            "no memory while inactive"
        );
        fake.start(&app).await.unwrap();
        let details = fake.details(&app).await.unwrap();
        assert_eq!(
            details,
            UnitDetails {
                active_state: "active".into(),
                sub_state: "running".into(),
                load_state: "loaded".into(),
                restarts: 2,
                memory_bytes: Some(64 << 20),
                result: "success".into(),
            }
        );
    }

    #[tokio::test]
    async fn a_crash_looping_unit_hits_its_start_limit_until_fixed() {
        let fake = FakeUnits::new();
        let app = unit("coloc-app-acme-wiki.service");
        fake.install(&app);
        fake.set_crash_loop(&app, true);
        for attempt in [fake.start(&app).await, fake.restart(&app).await] {
            match attempt {
                Err(HostError::UnitJob { op, result, .. }) => {
                    assert_eq!(op, UnitOp::Start);
                    assert_eq!(result, "failed");
                }
                other => panic!("{other:?}"),
            }
        }
        let details = fake.details(&app).await.unwrap();
        assert_eq!(details.active_state, "failed");
        assert_eq!(details.result, "start-limit-hit");
        assert_eq!(details.restarts, FAKE_START_LIMIT_BURST);
        assert_eq!(details.memory_bytes, None);

        fake.reset_failed(&app).await.unwrap();
        let details = fake.details(&app).await.unwrap();
        assert_eq!(
            (details.active_state.as_str(), details.result.as_str()),
            ("inactive", "success")
        );
        fake.reset_failed(&unit("ghost.service")).await.unwrap();

        fake.set_crash_loop(&app, false);
        fake.start(&app).await.unwrap();
        assert!(fake.unit_state(&app).await.unwrap().is_active());

        let bad = unit("bad.service");
        fake.install(&bad);
        fake.set_start_fails(&bad, true);
        assert!(fake.start(&bad).await.is_err());
        assert_eq!(fake.details(&bad).await.unwrap().result, "exit-code");
    }

    #[tokio::test]
    async fn fakes_are_shared_between_clones_of_the_host() {
        let fake = FakeHost::new("n1");
        let host = fake.host();
        let clone = host.clone();
        let app = unit("app.service");
        fake.units.install(&app);
        host.units.start(&app).await.unwrap();
        assert!(clone.units.unit_state(&app).await.unwrap().is_active());
    }
}

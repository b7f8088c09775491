//! In-memory [`VolumeBackend`] and [`DiskProber`] for the storage
//! reconciler's tests and for simulated agents.
//!
//! [`FakeVolumes`] keeps pools and volume objects of one [`PoolKind`] in a
//! mutex and mirrors what callers of the real backends can observe:
//! creating an object that exists fails, a snapshot is appended after the
//! existing ones and only the latest can be rolled back to, ZFS shrinks
//! only with `allow_shrink` and never below the space used, LVM thin never
//! shrinks and refuses reservations, a pool that is gone makes every
//! operation on it fail. Tests steer it with setters (`set_used_bytes`,
//! `set_pool_missing`, ...) and inject failures per operation
//! ([`FakeVolumes::fail_next`], [`FakeVolumes::fail_for`]); call counters
//! let them check that a step was not repeated. [`FakeDisks`] holds the
//! disks a probe returns; a [`FakeVolumes`] built with
//! [`FakeVolumes::with_disks`] marks the disks it builds a pool on, as the
//! real tools leave their signatures behind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use coloc_proto::agent::v1::{PoolKind, PoolLayout};
use coloc_proto::storage::{PoolName, SnapshotName};

use super::{
    DiskProbe, DiskProber, PoolObservation, SnapshotObject, VolumeBackend, VolumeObject,
    VolumeParams,
};
use crate::HostError;
use crate::runner::CommandError;

const GIB: u64 = 1024 * 1024 * 1024;

/// Size of a pool device when the fake is not linked to [`FakeDisks`].
const UNLINKED_DEVICE_BYTES: u64 = 100 * GIB;

/// 2026-01-01T00:00:00Z: the fake clock's start, for snapshot times.
const FAKE_EPOCH: u64 = 1_767_225_600;

/// The operations of a [`VolumeBackend`], for [`FakeVolumes`]' failure
/// injection and call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FakeOp {
    ListPools,
    ImportPool,
    CreatePool,
    ListVolumes,
    CreateVolume,
    Prepare,
    /// The whole resize call.
    Resize,
    /// Only the filesystem half of an LVM grow: failing it leaves the LV
    /// grown and ext4 not, like an agent killed between `lvextend` and
    /// `resize2fs`.
    GrowFilesystem,
    SetReadOnly,
    Mount,
    Unmount,
    CreateSnapshot,
    DestroySnapshot,
    Rollback,
    Destroy,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock must not hide its own
    // failure behind a poison error in the next call.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone)]
struct Failure {
    op: FakeOp,
    /// Volume id, object name or pool name the failure applies to; `None`
    /// for any.
    target: Option<String>,
    /// `Some(n)`: fails n more times; `None`: until cleared.
    remaining: Option<u32>,
}

#[derive(Debug, Clone)]
struct PoolState {
    size_bytes: u64,
    health: String,
    imported: bool,
    /// Gone from the host altogether (disks pulled): neither listed nor
    /// importable.
    missing: bool,
    /// How it was built: empty for a pool added with `add_pool`.
    layout: PoolLayout,
    devices: Vec<String>,
}

#[derive(Debug, Clone)]
struct SnapState {
    name: String,
    created_unix: u64,
    used_bytes: u64,
    /// The volume's used bytes when the snapshot was taken, restored by a
    /// rollback.
    data_used: u64,
}

#[derive(Debug, Clone)]
struct VolState {
    pool: String,
    object: String,
    volume_id: String,
    size_bytes: u64,
    reservation_bytes: u64,
    used_bytes: u64,
    read_only: bool,
    encrypted: bool,
    unlocked: bool,
    has_filesystem: bool,
    filesystem_bytes: u64,
    mounted_at: Option<String>,
    owner: Option<(u32, u32)>,
    snapshots: Vec<SnapState>,
}

impl VolState {
    fn snapshot_bytes(&self) -> u64 {
        self.snapshots.iter().map(|s| s.used_bytes).sum()
    }

    /// What the volume takes from its pool.
    fn allocated(&self) -> u64 {
        (self.used_bytes + self.snapshot_bytes()).max(self.reservation_bytes)
    }
}

#[derive(Debug, Default)]
struct State {
    pools: BTreeMap<String, PoolState>,
    /// By object name: ids on objects may be duplicated or malformed.
    volumes: BTreeMap<String, VolState>,
    failures: Vec<Failure>,
    calls: BTreeMap<FakeOp, u32>,
    clock: u64,
    /// The stack's tools are not installed: every operation is
    /// [`HostError::ToolMissing`], as on a host without ZFS or LVM.
    not_installed: bool,
}

impl State {
    fn pool_free(&self, pool: &str) -> u64 {
        let size = self.pools.get(pool).map_or(0, |p| p.size_bytes);
        let used: u64 = self
            .volumes
            .values()
            .filter(|v| v.pool == pool)
            .map(VolState::allocated)
            .sum();
        size.saturating_sub(used)
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        FAKE_EPOCH + self.clock
    }
}

/// An in-memory storage stack of one kind. See the module documentation.
#[derive(Debug)]
pub struct FakeVolumes {
    kind: PoolKind,
    disks: Option<Arc<FakeDisks>>,
    state: Mutex<State>,
}

impl FakeVolumes {
    /// No pools, no volumes; pool devices are taken to be 100 GiB.
    pub fn new(kind: PoolKind) -> FakeVolumes {
        FakeVolumes {
            kind,
            disks: None,
            state: Mutex::new(State::default()),
        }
    }

    /// Like [`FakeVolumes::new`], but pools are built on the disks of
    /// `disks`: their sizes count, a disk that holds data is refused
    /// without `force`, and a pool's disks then hold its signature.
    pub fn with_disks(kind: PoolKind, disks: Arc<FakeDisks>) -> FakeVolumes {
        FakeVolumes {
            kind,
            disks: Some(disks),
            state: Mutex::new(State::default()),
        }
    }

    /// An imported (ZFS) or active (LVM) pool, health ONLINE.
    pub fn add_pool(&self, name: &str, size_bytes: u64) {
        lock(&self.state).pools.insert(
            name.to_owned(),
            PoolState {
                size_bytes,
                health: "ONLINE".into(),
                imported: true,
                missing: false,
                layout: PoolLayout::Unspecified,
                devices: Vec::new(),
            },
        );
    }

    /// A pool that exists on the disks but is not imported: `pools()` does
    /// not list it until `import_pool` brings it in.
    pub fn add_exported_pool(&self, name: &str, size_bytes: u64) {
        lock(&self.state).pools.insert(
            name.to_owned(),
            PoolState {
                size_bytes,
                health: "ONLINE".into(),
                imported: false,
                missing: false,
                layout: PoolLayout::Unspecified,
                devices: Vec::new(),
            },
        );
    }

    /// Makes a pool vanish (its disks pulled) or come back, imported.
    pub fn set_pool_missing(&self, name: &str, missing: bool) {
        if let Some(pool) = lock(&self.state).pools.get_mut(name) {
            pool.missing = missing;
            if !missing {
                pool.imported = true;
            }
        }
    }

    /// The health word `pools()` reports ("DEGRADED", "FAULTED",
    /// "NO-THIN-POOL", ...).
    pub fn set_pool_health(&self, name: &str, health: &str) {
        if let Some(pool) = lock(&self.state).pools.get_mut(name) {
            pool.health = health.to_owned();
        }
    }

    /// Without its tools (`false`), every operation of this stack fails
    /// with [`HostError::ToolMissing`] naming the tool the real backend
    /// would have run first (`zpool` or `vgs` for pools, `zfs` or `lvs`
    /// for volumes): "not installed" is not "no pools".
    pub fn set_installed(&self, installed: bool) {
        lock(&self.state).not_installed = !installed;
    }

    /// The pool as `pools()` would list it, missing or not.
    pub fn pool(&self, name: &str) -> Option<PoolObservation> {
        let state = lock(&self.state);
        state
            .pools
            .get(name)
            .map(|p| self.observe_pool(&state, name, p))
    }

    /// The pools `pools()` lists, with the layout and devices each was
    /// created with (none for a pool added with `add_pool`), for the
    /// health fake: neither counted as a call nor subject to injected
    /// failures. [`HostError::ToolMissing`] when not installed.
    pub fn pools_with_members(
        &self,
    ) -> Result<Vec<(PoolObservation, PoolLayout, Vec<String>)>, HostError> {
        let state = lock(&self.state);
        if state.not_installed {
            return Err(HostError::ToolMissing {
                tool: match self.kind {
                    PoolKind::Zfs => "zpool",
                    _ => "lvs",
                }
                .to_owned(),
            });
        }
        Ok(state
            .pools
            .iter()
            .filter(|(_, p)| p.imported && !p.missing)
            .map(|(name, p)| {
                (
                    self.observe_pool(&state, name, p),
                    p.layout,
                    p.devices.clone(),
                )
            })
            .collect())
    }

    /// Puts an object on the host as if created outside this fake's API
    /// (an orphan, a volume left by another controller). Its pool must
    /// exist for it to be listed. Replaces an object of the same name.
    pub fn insert_object(&self, obj: VolumeObject) {
        let snapshots = obj
            .snapshots
            .iter()
            .map(|s| SnapState {
                name: s.name.clone(),
                created_unix: s.created_unix,
                used_bytes: s.used_bytes,
                data_used: obj.used_bytes,
            })
            .collect();
        lock(&self.state).volumes.insert(
            obj.object.clone(),
            VolState {
                pool: obj.pool,
                object: obj.object,
                volume_id: obj.volume_id,
                size_bytes: obj.size_bytes,
                reservation_bytes: obj.reservation_bytes,
                used_bytes: obj.used_bytes,
                read_only: obj.read_only,
                encrypted: obj.encrypted,
                unlocked: obj.unlocked,
                has_filesystem: obj.has_filesystem,
                filesystem_bytes: obj.filesystem_bytes,
                mounted_at: obj.mounted_at,
                owner: None,
                snapshots,
            },
        );
    }

    /// The object carrying `volume_id`, as `volumes()` would list it.
    pub fn object(&self, volume_id: &str) -> Option<VolumeObject> {
        let state = lock(&self.state);
        state
            .volumes
            .values()
            .find(|v| v.volume_id == volume_id)
            .map(|v| self.observe_volume(&state, v))
    }

    /// Every object, in every pool.
    pub fn objects(&self) -> Vec<VolumeObject> {
        let state = lock(&self.state);
        state
            .volumes
            .values()
            .map(|v| self.observe_volume(&state, v))
            .collect()
    }

    /// Sets the space the tenant's files take on volume `volume_id`.
    pub fn set_used_bytes(&self, volume_id: &str, used_bytes: u64) {
        let mut state = lock(&self.state);
        if let Some(v) = state
            .volumes
            .values_mut()
            .find(|v| v.volume_id == volume_id)
        {
            v.used_bytes = used_bytes;
        }
    }

    /// Sets the space snapshot `snapshot` of `volume_id` holds alone.
    pub fn set_snapshot_used_bytes(&self, volume_id: &str, snapshot: &str, used_bytes: u64) {
        let mut state = lock(&self.state);
        if let Some(s) = state
            .volumes
            .values_mut()
            .find(|v| v.volume_id == volume_id)
            .and_then(|v| v.snapshots.iter_mut().find(|s| s.name == snapshot))
        {
            s.used_bytes = used_bytes;
        }
    }

    /// Simulates an unmount done behind the agent's back (or a reboot).
    pub fn force_unmount(&self, volume_id: &str) {
        let mut state = lock(&self.state);
        if let Some(v) = state
            .volumes
            .values_mut()
            .find(|v| v.volume_id == volume_id)
        {
            v.mounted_at = None;
        }
    }

    /// Owner of the volume's root as last set by `mount`.
    pub fn owner(&self, volume_id: &str) -> Option<(u32, u32)> {
        lock(&self.state)
            .volumes
            .values()
            .find(|v| v.volume_id == volume_id)
            .and_then(|v| v.owner)
    }

    /// Snapshot names of `volume_id`, oldest first.
    pub fn snapshot_names(&self, volume_id: &str) -> Vec<String> {
        lock(&self.state)
            .volumes
            .values()
            .find(|v| v.volume_id == volume_id)
            .map(|v| v.snapshots.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default()
    }

    /// The next call of `op`, whatever its object, fails.
    pub fn fail_next(&self, op: FakeOp) {
        lock(&self.state).failures.push(Failure {
            op,
            target: None,
            remaining: Some(1),
        });
    }

    /// Every call of `op` on `target` (a volume id, object name or pool
    /// name) fails until [`FakeVolumes::clear_failures`].
    pub fn fail_for(&self, op: FakeOp, target: &str) {
        lock(&self.state).failures.push(Failure {
            op,
            target: Some(target.to_owned()),
            remaining: None,
        });
    }

    pub fn clear_failures(&self) {
        lock(&self.state).failures.clear();
    }

    /// How many times `op` was called (failed calls included).
    pub fn calls(&self, op: FakeOp) -> u32 {
        lock(&self.state).calls.get(&op).copied().unwrap_or(0)
    }

    fn tool(&self) -> &'static str {
        match self.kind {
            PoolKind::Zfs => "zfs",
            _ => "lvm",
        }
    }

    /// Counts the call and returns the injected failure, if any, for an
    /// operation on any of `targets`.
    fn enter(&self, state: &mut State, op: FakeOp, targets: &[&str]) -> Result<(), HostError> {
        *state.calls.entry(op).or_default() += 1;
        if state.not_installed {
            let pool_op = matches!(
                op,
                FakeOp::ListPools | FakeOp::ImportPool | FakeOp::CreatePool
            );
            let tool = match (self.kind, pool_op) {
                (PoolKind::Zfs, true) => "zpool",
                (PoolKind::Zfs, false) => "zfs",
                (_, true) => "vgs",
                (_, false) => "lvs",
            };
            return Err(HostError::ToolMissing {
                tool: tool.to_owned(),
            });
        }
        let hit = state
            .failures
            .iter()
            .position(|f| f.op == op && f.target.as_deref().is_none_or(|t| targets.contains(&t)));
        let Some(index) = hit else {
            return Ok(());
        };
        let failure = &mut state.failures[index];
        if let Some(n) = failure.remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                state.failures.remove(index);
            }
        }
        Err(self.tool_error(
            "run (injected failure)",
            targets.first().copied().unwrap_or("host"),
            &format!("injected failure of {op:?}"),
        ))
    }

    fn tool_error(&self, op: &'static str, object: &str, stderr: &str) -> HostError {
        HostError::Storage {
            op,
            object: object.to_owned(),
            source: CommandError::Failed {
                command: format!("/usr/sbin/{} (fake)", self.tool()),
                status: 1,
                stderr_tail: stderr.to_owned(),
            },
        }
    }

    fn usable_pool<'a>(&self, state: &'a State, pool: &str) -> Result<&'a PoolState, HostError> {
        match state.pools.get(pool) {
            Some(p) if p.imported && !p.missing => Ok(p),
            _ => Err(self.tool_error(
                "find pool",
                pool,
                &format!("cannot open '{pool}': no such pool"),
            )),
        }
    }

    fn object_name(&self, pool: &str, id: &str) -> String {
        match self.kind {
            PoolKind::Zfs => format!("{pool}/coloc/{id}"),
            _ => format!("{pool}/coloc-{id}"),
        }
    }

    fn observe_pool(&self, state: &State, name: &str, p: &PoolState) -> PoolObservation {
        PoolObservation {
            name: name.to_owned(),
            kind: self.kind,
            size_bytes: p.size_bytes,
            free_bytes: state.pool_free(name),
            health: p.health.clone(),
        }
    }

    fn observe_volume(&self, state: &State, v: &VolState) -> VolumeObject {
        let room = v.size_bytes.saturating_sub(v.used_bytes);
        VolumeObject {
            pool: v.pool.clone(),
            kind: self.kind,
            object: v.object.clone(),
            volume_id: v.volume_id.clone(),
            size_bytes: v.size_bytes,
            reservation_bytes: v.reservation_bytes,
            used_bytes: v.used_bytes,
            available_bytes: room.min(state.pool_free(&v.pool).max(v.reservation_bytes)),
            snapshot_bytes: v.snapshot_bytes(),
            read_only: v.read_only,
            encrypted: v.encrypted,
            unlocked: v.unlocked,
            has_filesystem: v.has_filesystem,
            filesystem_bytes: v.filesystem_bytes,
            mounted_at: v.mounted_at.clone(),
            snapshots: v
                .snapshots
                .iter()
                .map(|s| SnapshotObject {
                    name: s.name.clone(),
                    created_unix: s.created_unix,
                    used_bytes: s.used_bytes,
                })
                .collect(),
        }
    }

    /// The live state of `obj`, which must still exist in a usable pool.
    fn volume_mut<'a>(
        &self,
        state: &'a mut State,
        obj: &VolumeObject,
    ) -> Result<&'a mut VolState, HostError> {
        self.usable_pool(state, &obj.pool)?;
        state.volumes.get_mut(&obj.object).ok_or_else(|| {
            self.tool_error(
                "find volume",
                &obj.object,
                &format!("cannot open '{}': dataset does not exist", obj.object),
            )
        })
    }
}

#[async_trait]
impl VolumeBackend for FakeVolumes {
    fn kind(&self) -> PoolKind {
        self.kind
    }

    async fn pools(&self) -> Result<Vec<PoolObservation>, HostError> {
        let mut state = lock(&self.state);
        self.enter(&mut state, FakeOp::ListPools, &[])?;
        Ok(state
            .pools
            .iter()
            .filter(|(_, p)| p.imported && !p.missing)
            .map(|(name, p)| self.observe_pool(&state, name, p))
            .collect())
    }

    async fn import_pool(&self, name: &PoolName) -> Result<bool, HostError> {
        let mut state = lock(&self.state);
        self.enter(&mut state, FakeOp::ImportPool, &[name.as_str()])?;
        match state.pools.get_mut(name.as_str()) {
            Some(p) if !p.missing => {
                p.imported = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn create_pool(
        &self,
        name: &PoolName,
        layout: PoolLayout,
        devices: &[String],
        force: bool,
    ) -> Result<(), HostError> {
        let mut state = lock(&self.state);
        self.enter(&mut state, FakeOp::CreatePool, &[name.as_str()])?;
        if state.pools.contains_key(name.as_str()) {
            return Err(self.tool_error(
                "create pool",
                name.as_str(),
                &format!("pool '{name}' already exists"),
            ));
        }
        if self.kind == PoolKind::LvmThin && layout != PoolLayout::Single {
            return Err(HostError::Unsupported {
                object: name.to_string(),
                what: format!("layout {} on LVM thin", layout.as_str_name()),
            });
        }
        let minimum = match layout {
            PoolLayout::Single | PoolLayout::Unspecified => 1,
            PoolLayout::Mirror | PoolLayout::Raidz1 => 2,
            PoolLayout::Raidz2 => 3,
        };
        if devices.len() < minimum {
            return Err(self.tool_error(
                "create pool",
                name.as_str(),
                &format!(
                    "invalid vdev specification: {} needs at least {minimum} devices",
                    layout.as_str_name()
                ),
            ));
        }
        let mut sizes = Vec::with_capacity(devices.len());
        match &self.disks {
            Some(disks) => {
                let probed = disks.disks();
                for device in devices {
                    let Some(disk) = probed.iter().find(|d| &d.device == device) else {
                        return Err(self.tool_error(
                            "create pool",
                            name.as_str(),
                            &format!("cannot open '{device}': no such device"),
                        ));
                    };
                    if let Some(holds) = &disk.holds
                        && !force
                    {
                        return Err(self.tool_error(
                            "create pool",
                            name.as_str(),
                            &format!("{device} contains {holds}; use -f to override"),
                        ));
                    }
                    sizes.push(disk.size_bytes);
                }
            }
            None => sizes.resize(devices.len(), UNLINKED_DEVICE_BYTES),
        }
        let smallest = sizes.iter().copied().min().unwrap_or(0);
        let n = sizes.len() as u64;
        let size_bytes = match layout {
            PoolLayout::Single | PoolLayout::Unspecified => sizes.iter().sum(),
            PoolLayout::Mirror => smallest,
            PoolLayout::Raidz1 => smallest * (n - 1),
            PoolLayout::Raidz2 => smallest * (n - 2),
        };
        if let Some(disks) = &self.disks {
            let signature = match self.kind {
                PoolKind::Zfs => "zfs_member signature",
                _ => "LVM2_member signature",
            };
            for device in devices {
                disks.set_holds(device, Some(signature));
            }
        }
        state.pools.insert(
            name.to_string(),
            PoolState {
                size_bytes,
                health: "ONLINE".into(),
                imported: true,
                missing: false,
                layout,
                devices: devices.to_vec(),
            },
        );
        Ok(())
    }

    async fn volumes(&self, pool: &PoolName) -> Result<Vec<VolumeObject>, HostError> {
        let mut state = lock(&self.state);
        self.enter(&mut state, FakeOp::ListVolumes, &[pool.as_str()])?;
        self.usable_pool(&state, pool.as_str())?;
        Ok(state
            .volumes
            .values()
            .filter(|v| v.pool == pool.as_str())
            .map(|v| self.observe_volume(&state, v))
            .collect())
    }

    async fn create_volume(&self, v: &VolumeParams) -> Result<(), HostError> {
        let mut state = lock(&self.state);
        let object = self.object_name(v.pool.as_str(), v.id.as_str());
        self.enter(
            &mut state,
            FakeOp::CreateVolume,
            &[v.id.as_str(), &object, v.pool.as_str()],
        )?;
        self.usable_pool(&state, v.pool.as_str())?;
        if state.volumes.contains_key(&object) {
            return Err(self.tool_error(
                "create volume",
                &object,
                &format!("cannot create '{object}': dataset already exists"),
            ));
        }
        if self.kind == PoolKind::LvmThin && v.reservation_bytes > 0 {
            return Err(HostError::Unsupported {
                object,
                what: "a reservation on LVM thin".into(),
            });
        }
        if v.reservation_bytes > state.pool_free(v.pool.as_str()) {
            return Err(self.tool_error(
                "create volume",
                &object,
                &format!("cannot create '{object}': out of space"),
            ));
        }
        let zfs = self.kind == PoolKind::Zfs;
        state.volumes.insert(
            object.clone(),
            VolState {
                pool: v.pool.to_string(),
                object,
                volume_id: v.id.to_string(),
                size_bytes: v.size_bytes,
                reservation_bytes: v.reservation_bytes,
                used_bytes: 0,
                read_only: false,
                encrypted: v.encrypted,
                // ZFS loads the key and makes the filesystem as it creates
                // the dataset; an LV needs `prepare` (LUKS, mkfs).
                unlocked: zfs || !v.encrypted,
                has_filesystem: zfs,
                filesystem_bytes: if zfs { v.size_bytes } else { 0 },
                mounted_at: None,
                owner: None,
                snapshots: Vec::new(),
            },
        );
        Ok(())
    }

    async fn prepare(&self, obj: &VolumeObject, _v: &VolumeParams) -> Result<(), HostError> {
        let mut state = lock(&self.state);
        self.enter(
            &mut state,
            FakeOp::Prepare,
            &[&obj.volume_id, &obj.object, &obj.pool],
        )?;
        let vol = self.volume_mut(&mut state, obj)?;
        vol.unlocked = true;
        if !vol.has_filesystem {
            vol.has_filesystem = true;
            vol.filesystem_bytes = vol.size_bytes;
        }
        Ok(())
    }

    async fn resize(
        &self,
        obj: &VolumeObject,
        v: &VolumeParams,
        allow_shrink: bool,
    ) -> Result<(), HostError> {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let targets = [obj.volume_id.as_str(), &obj.object, &obj.pool];
        self.enter(state, FakeOp::Resize, &targets)?;
        let free = state.pool_free(&obj.pool);
        let lvm = self.kind == PoolKind::LvmThin;
        let object = obj.object.clone();
        let (current, used, reservation) = {
            let vol = self.volume_mut(state, obj)?;
            (vol.size_bytes, vol.used_bytes, vol.reservation_bytes)
        };
        if lvm && v.reservation_bytes > 0 {
            return Err(HostError::Unsupported {
                object,
                what: "a reservation on LVM thin".into(),
            });
        }
        if v.size_bytes < current {
            if lvm {
                return Err(HostError::Unsupported {
                    object,
                    what: "shrinking an ext4 volume".into(),
                });
            }
            if !allow_shrink {
                return Err(HostError::Refused {
                    object,
                    reason: "shrinking needs allow_shrink".into(),
                });
            }
            if v.size_bytes < used {
                return Err(HostError::Refused {
                    object,
                    reason: format!(
                        "the new size ({} bytes) is below the space used ({used} bytes)",
                        v.size_bytes
                    ),
                });
            }
        }
        if v.reservation_bytes > reservation && v.reservation_bytes - reservation > free {
            return Err(self.tool_error(
                "set reservation of",
                &object,
                "cannot set property: out of space",
            ));
        }
        {
            let vol = self.volume_mut(state, obj)?;
            vol.size_bytes = v.size_bytes;
            vol.reservation_bytes = v.reservation_bytes;
            if !lvm {
                vol.filesystem_bytes = v.size_bytes;
                return Ok(());
            }
        }
        // LVM: the LV has its size; the filesystem follows in a second
        // command, which may not happen.
        self.enter(state, FakeOp::GrowFilesystem, &targets)?;
        let vol = self.volume_mut(state, obj)?;
        if vol.has_filesystem {
            vol.filesystem_bytes = vol.size_bytes;
        }
        Ok(())
    }

    async fn set_read_only(&self, obj: &VolumeObject, read_only: bool) -> Result<(), HostError> {
        let mut state = lock(&self.state);
        self.enter(
            &mut state,
            FakeOp::SetReadOnly,
            &[&obj.volume_id, &obj.object, &obj.pool],
        )?;
        self.volume_mut(&mut state, obj)?.read_only = read_only;
        Ok(())
    }

    async fn mount(&self, obj: &VolumeObject, v: &VolumeParams) -> Result<(), HostError> {
        let mut state = lock(&self.state);
        self.enter(
            &mut state,
            FakeOp::Mount,
            &[&obj.volume_id, &obj.object, &obj.pool],
        )?;
        let vol = self.volume_mut(&mut state, obj)?;
        if !vol.unlocked || !vol.has_filesystem {
            return Err(HostError::Refused {
                object: obj.object.clone(),
                reason: "not prepared (locked or without a filesystem)".into(),
            });
        }
        vol.mounted_at = Some(v.mount_path.clone());
        vol.owner = Some((v.owner_uid, v.owner_gid));
        Ok(())
    }

    async fn unmount(&self, obj: &VolumeObject) -> Result<(), HostError> {
        let mut state = lock(&self.state);
        self.enter(
            &mut state,
            FakeOp::Unmount,
            &[&obj.volume_id, &obj.object, &obj.pool],
        )?;
        self.volume_mut(&mut state, obj)?.mounted_at = None;
        Ok(())
    }

    async fn create_snapshot(
        &self,
        obj: &VolumeObject,
        name: &SnapshotName,
    ) -> Result<(), HostError> {
        let mut state = lock(&self.state);
        self.enter(
            &mut state,
            FakeOp::CreateSnapshot,
            &[&obj.volume_id, &obj.object, name.as_str()],
        )?;
        let created_unix = state.tick();
        let vol = self.volume_mut(&mut state, obj)?;
        if vol.snapshots.iter().any(|s| s.name == name.as_str()) {
            return Ok(());
        }
        let data_used = vol.used_bytes;
        vol.snapshots.push(SnapState {
            name: name.to_string(),
            created_unix,
            used_bytes: 0,
            data_used,
        });
        Ok(())
    }

    async fn destroy_snapshot(
        &self,
        obj: &VolumeObject,
        name: &SnapshotName,
    ) -> Result<(), HostError> {
        let mut state = lock(&self.state);
        self.enter(
            &mut state,
            FakeOp::DestroySnapshot,
            &[&obj.volume_id, &obj.object, name.as_str()],
        )?;
        self.volume_mut(&mut state, obj)?
            .snapshots
            .retain(|s| s.name != name.as_str());
        Ok(())
    }

    async fn rollback(
        &self,
        obj: &VolumeObject,
        _v: &VolumeParams,
        name: &SnapshotName,
    ) -> Result<(), HostError> {
        let mut state = lock(&self.state);
        self.enter(
            &mut state,
            FakeOp::Rollback,
            &[&obj.volume_id, &obj.object, name.as_str()],
        )?;
        let vol = self.volume_mut(&mut state, obj)?;
        let Some(latest) = vol.snapshots.last() else {
            return Err(HostError::Refused {
                object: obj.object.clone(),
                reason: format!("no snapshot {name}: the volume has no snapshots"),
            });
        };
        if latest.name != name.as_str() {
            let reason = if vol.snapshots.iter().any(|s| s.name == name.as_str()) {
                format!(
                    "{name} is not the most recent snapshot ({} is)",
                    latest.name
                )
            } else {
                format!("no snapshot {name}")
            };
            return Err(HostError::Refused {
                object: obj.object.clone(),
                reason,
            });
        }
        vol.used_bytes = latest.data_used;
        Ok(())
    }

    async fn destroy(&self, obj: &VolumeObject) -> Result<(), HostError> {
        let mut state = lock(&self.state);
        self.enter(
            &mut state,
            FakeOp::Destroy,
            &[&obj.volume_id, &obj.object, &obj.pool],
        )?;
        self.usable_pool(&state, &obj.pool)?;
        state.volumes.remove(&obj.object);
        Ok(())
    }
}

/// In-memory [`DiskProber`]: the disks a probe returns, settable.
#[derive(Debug, Default)]
pub struct FakeDisks {
    disks: Mutex<Vec<DiskProbe>>,
    fails: Mutex<bool>,
}

impl FakeDisks {
    pub fn new(disks: Vec<DiskProbe>) -> FakeDisks {
        FakeDisks {
            disks: Mutex::new(disks),
            fails: Mutex::new(false),
        }
    }

    /// A simulated node's disks: the root disk `/dev/vda` (serial
    /// `SIM-<node>-0`, partitioned and mounted at /) and three blank
    /// 100 GiB data disks `/dev/vdb`..`/dev/vdd` with serials
    /// `SIM-<node>-1`..`SIM-<node>-3`, each also named
    /// `virtio-SIM-<node>-N` under `/dev/disk/by-id`.
    pub fn for_node(node_name: &str) -> FakeDisks {
        let disks = ["vda", "vdb", "vdc", "vdd"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let serial = format!("SIM-{node_name}-{i}");
                DiskProbe {
                    device: format!("/dev/{name}"),
                    size_bytes: 100 * GIB,
                    by_id: vec![format!("virtio-{serial}")],
                    serial: Some(serial),
                    holds: (i == 0).then(|| "gpt partition table, mounted at /".to_owned()),
                }
            })
            .collect();
        FakeDisks::new(disks)
    }

    pub fn disks(&self) -> Vec<DiskProbe> {
        lock(&self.disks).clone()
    }

    pub fn set_disks(&self, disks: Vec<DiskProbe>) {
        *lock(&self.disks) = disks;
    }

    /// What `device` (`/dev/vdb`) holds from now on; `None` makes it blank.
    pub fn set_holds(&self, device: &str, holds: Option<&str>) {
        if let Some(d) = lock(&self.disks).iter_mut().find(|d| d.device == device) {
            d.holds = holds.map(str::to_owned);
        }
    }

    /// While set, probes fail as if `lsblk` could not run.
    pub fn set_probe_fails(&self, fails: bool) {
        *lock(&self.fails) = fails;
    }
}

#[async_trait]
impl DiskProber for FakeDisks {
    async fn probe(&self) -> Result<Vec<DiskProbe>, HostError> {
        if *lock(&self.fails) {
            return Err(HostError::Disks {
                source: CommandError::Failed {
                    command: "/usr/bin/lsblk (fake)".into(),
                    status: 1,
                    stderr_tail: "injected failure".into(),
                },
            });
        }
        Ok(self.disks())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pools_tell_missing_tools_from_empty_lists() {
        for (kind, tool) in [(PoolKind::Zfs, "zpool"), (PoolKind::LvmThin, "vgs")] {
            let fake = FakeVolumes::new(kind);
            assert_eq!(fake.pools().await.unwrap(), vec![]);

            fake.add_pool("tank", 100);
            fake.add_pool("tank", 200);
            fake.set_pool_health("tank", "DEGRADED");
            let pools = fake.pools().await.unwrap();
            assert_eq!(pools.len(), 1, "same name replaces");
            assert_eq!(
                (pools[0].size_bytes, pools[0].health.as_str()),
                (200, "DEGRADED")
            );
            fake.set_pool_missing("tank", true);
            assert_eq!(fake.pools().await.unwrap(), vec![], "gone from the host");

            fake.set_installed(false);
            match fake.pools().await {
                Err(HostError::ToolMissing { tool: t }) => assert_eq!(t, tool),
                other => panic!("{kind:?}: {other:?}"),
            }
            let pool = PoolName::new("tank").unwrap();
            assert!(fake.volumes(&pool).await.unwrap_err().is_tool_missing());
            fake.set_installed(true);
            fake.set_pool_missing("tank", false);
            assert_eq!(fake.pools().await.unwrap().len(), 1);
        }
    }
}

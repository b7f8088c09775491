//! Pools and volumes on the host: the [`VolumeBackend`] trait with one
//! real implementation per storage stack (ZFS in `zfs/`, LVM thin with
//! ext4 and optional LUKS in `lvm/`, each with its parsers in `parse.rs`),
//! the disk prober that decides whether a disk is blank (`disks.rs`), and
//! an in-memory fake (`fake.rs`) for the reconciler's tests and simulated
//! agents.
//!
//! Each method is one host operation, idempotent where the tools allow it
//! and atomic where they do: a volume object is created together with the
//! id that marks it as coloc's (a ZFS user property set by `zfs create -o`,
//! an LV tag set by `lvcreate --addtag`), so after a crash it either exists
//! with its id or not at all. Deciding *which* operation to run — the
//! ensure loop, orphans, grace periods — is the agent's storage
//! reconciler's job, not this module's.
//!
//! Naming on disk, fixed here so that every part agrees:
//! - ZFS: dataset `<pool>/coloc/<id>`, user property `coloc:volume-id=<id>`
//!   (plus `coloc:tenant`, `coloc:volume` for people reading `zfs list`),
//!   snapshots `<dataset>@<name>`.
//! - LVM: volume group `<pool>` with one thin pool LV `thin`; volume LV
//!   `coloc-<id>` tagged `coloc_volume_<id>`; snapshot LVs
//!   `coloc-<id>-snap-<name>` tagged `coloc_snapshot_<id>`; ext4 directly
//!   on the LV, or on `/dev/mapper/coloc-<id>` when encrypted (LUKS2).
//! - Encryption keys: 32 random bytes in `<key_dir>/<id>.key` (mode 0600,
//!   key_dir 0700, default `/var/lib/coloc/keys`) on the node's root disk;
//!   ZFS reads it through `keylocation=file://`, LUKS through
//!   `--key-file`.

mod disks;
mod fake;
mod lvm;
mod zfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use coloc_proto::agent::v1::{PoolKind, PoolLayout};
use coloc_proto::domain::TenantName;
use coloc_proto::storage::{PoolName, SnapshotName, VolumeId, VolumeName};

use crate::HostError;
use crate::runner::Runner;

pub use disks::{RealDiskProber, parse_wipefs, probe_of};
pub use fake::{FakeDisks, FakeOp, FakeVolumes};
pub use lvm::{LvmThinBackend, VolumeGroupInfo, parse_lvs, parse_vgs};
pub use zfs::{
    PoolHealth, ZfsBackend, ZpoolInfo, parse_zfs_list, parse_zfs_snapshots, parse_zpool_list,
};

/// Where encryption keys live unless configured otherwise.
pub const DEFAULT_KEY_DIR: &str = "/var/lib/coloc/keys";

/// Name of the ZFS user property carrying the volume id.
pub const ZFS_ID_PROPERTY: &str = "coloc:volume-id";
/// Prefix of the LV tag carrying the volume id.
pub const LVM_ID_TAG_PREFIX: &str = "coloc_volume_";
/// Prefix of the LV tag marking a snapshot of a volume.
pub const LVM_SNAPSHOT_TAG_PREFIX: &str = "coloc_snapshot_";
/// The thin pool LV inside every coloc volume group.
pub const LVM_THIN_POOL: &str = "thin";

/// What a disk probe found on one whole disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskProbe {
    /// `/dev/vdb`, `/dev/nvme0n1`.
    pub device: String,
    pub size_bytes: u64,
    pub serial: Option<String>,
    /// Names under `/dev/disk/by-id` pointing at this disk.
    pub by_id: Vec<String>,
    /// Why the disk is not blank, e.g. "ext4 filesystem",
    /// "gpt partition table", "2 partitions", "zfs_member signature",
    /// "mounted at /"; `None` when it holds nothing.
    pub holds: Option<String>,
}

/// Finds whole disks and what they hold.
#[async_trait]
pub trait DiskProber: Send + Sync {
    async fn probe(&self) -> Result<Vec<DiskProbe>, HostError>;
}

/// A pool as the host has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolObservation {
    pub name: String,
    pub kind: PoolKind,
    pub size_bytes: u64,
    pub free_bytes: u64,
    /// ZFS health word; "ONLINE" for an LVM group whose thin pool is
    /// active, "NO-THIN-POOL" for a group without the `thin` LV.
    pub health: String,
}

/// A snapshot of a volume object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotObject {
    pub name: String,
    pub created_unix: u64,
    pub used_bytes: u64,
}

/// An object carrying a coloc volume id, as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeObject {
    pub pool: String,
    pub kind: PoolKind,
    /// `tank/coloc/<id>` or `<vg>/coloc-<id>`.
    pub object: String,
    /// The id read from the property or tag, verbatim (it may be
    /// malformed: such an object is an orphan).
    pub volume_id: String,
    /// refquota, or the LV size.
    pub size_bytes: u64,
    /// ZFS refreservation; 0 on LVM.
    pub reservation_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub snapshot_bytes: u64,
    /// ZFS `readonly=on`, or the LV's permission is read-only.
    pub read_only: bool,
    pub encrypted: bool,
    /// ZFS key loaded, or the LUKS mapping open; true when not encrypted.
    pub unlocked: bool,
    /// LVM: a filesystem exists on the (opened) device; always true on ZFS.
    pub has_filesystem: bool,
    /// LVM: the ext4 size, smaller than `size_bytes` after an interrupted
    /// grow. ZFS: equal to `size_bytes`.
    pub filesystem_bytes: u64,
    /// Where it is mounted, if it is.
    pub mounted_at: Option<String>,
    /// Oldest first.
    pub snapshots: Vec<SnapshotObject>,
}

/// What the reconciler wants of one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeParams {
    pub id: VolumeId,
    pub tenant: TenantName,
    pub name: VolumeName,
    pub pool: PoolName,
    pub size_bytes: u64,
    pub reservation_bytes: u64,
    pub encrypted: bool,
    /// `/srv/tenants/<tenant>/<name>`.
    pub mount_path: String,
    pub owner_uid: u32,
    pub owner_gid: u32,
}

/// One storage stack. See the module documentation for the on-disk names.
#[async_trait]
pub trait VolumeBackend: Send + Sync {
    fn kind(&self) -> PoolKind;

    /// Pools of this kind the host has. [`HostError::ToolMissing`] when the
    /// stack is not installed.
    async fn pools(&self) -> Result<Vec<PoolObservation>, HostError>;

    /// Brings in a pool that exists on the disks but is not imported (ZFS)
    /// or active (LVM). `Ok(false)` when no such pool is found on the
    /// disks; `Err` when it is found but cannot be imported.
    async fn import_pool(&self, name: &PoolName) -> Result<bool, HostError>;

    /// Creates the pool on `devices` (absolute `/dev` paths the caller has
    /// checked). `force` lets the tools overwrite existing signatures; it
    /// is only passed when the operator asked for it. LVM: `pvcreate`,
    /// `vgcreate`, then the thin pool `thin` over the group's space.
    async fn create_pool(
        &self,
        name: &PoolName,
        layout: PoolLayout,
        devices: &[String],
        force: bool,
    ) -> Result<(), HostError>;

    /// Every object in `pool` that carries a coloc volume id.
    async fn volumes(&self, pool: &PoolName) -> Result<Vec<VolumeObject>, HostError>;

    /// The object of volume `id` in `pool`, if it exists. The reconciler
    /// reads a volume back after changing it; a backend that can look at
    /// one object alone overrides this, so that the cost of a change does
    /// not grow with the number of volumes in the pool.
    async fn volume(
        &self,
        pool: &PoolName,
        id: &VolumeId,
    ) -> Result<Option<VolumeObject>, HostError> {
        Ok(self
            .volumes(pool)
            .await?
            .into_iter()
            .find(|o| o.volume_id == id.as_str()))
    }

    /// Creates the object with its id, size and (when encrypted) its key
    /// in one step. Fails if it exists.
    async fn create_volume(&self, v: &VolumeParams) -> Result<(), HostError>;

    /// Makes an existing object usable: loads its key or opens LUKS
    /// (formatting LUKS only on a blank LV), creates the filesystem only on
    /// a blank device. Idempotent; never formats a device that holds data.
    async fn prepare(&self, obj: &VolumeObject, v: &VolumeParams) -> Result<(), HostError>;

    /// Sets the size (and reservation) to `v`'s. Growing works online.
    /// Shrinking needs `allow_shrink` and a backend that can
    /// ([`HostError::Unsupported`] otherwise); a size below the space used
    /// is [`HostError::Refused`]. Also finishes an interrupted grow (LV
    /// grown, filesystem not yet).
    async fn resize(
        &self,
        obj: &VolumeObject,
        v: &VolumeParams,
        allow_shrink: bool,
    ) -> Result<(), HostError>;

    async fn set_read_only(&self, obj: &VolumeObject, read_only: bool) -> Result<(), HostError>;

    /// Mounts at `v.mount_path` (creating the directory), read-write unless
    /// the object is read-only, and makes the volume's root directory owned
    /// by `owner_uid:owner_gid` with mode 0770. Idempotent.
    async fn mount(&self, obj: &VolumeObject, v: &VolumeParams) -> Result<(), HostError>;

    /// Unmounts; nothing to do when not mounted.
    async fn unmount(&self, obj: &VolumeObject) -> Result<(), HostError>;

    /// Idempotent: an existing snapshot of that name is success.
    async fn create_snapshot(
        &self,
        obj: &VolumeObject,
        name: &SnapshotName,
    ) -> Result<(), HostError>;

    /// Idempotent: a missing snapshot is success.
    async fn destroy_snapshot(
        &self,
        obj: &VolumeObject,
        name: &SnapshotName,
    ) -> Result<(), HostError>;

    /// Rolls the volume back to `name`, which must be its most recent
    /// snapshot ([`HostError::Refused`] otherwise). The snapshot is kept.
    /// The volume is mounted again afterwards if it was mounted.
    async fn rollback(
        &self,
        obj: &VolumeObject,
        v: &VolumeParams,
        name: &SnapshotName,
    ) -> Result<(), HostError>;

    /// Unmounts, locks and destroys the object with its snapshots, then
    /// removes its key file. Idempotent once gone.
    async fn destroy(&self, obj: &VolumeObject) -> Result<(), HostError>;
}

/// The storage side of the host: the disk prober and one backend per kind.
#[derive(Clone)]
pub struct Volumes {
    pub disks: Arc<dyn DiskProber>,
    backends: BTreeMap<i32, Arc<dyn VolumeBackend>>,
}

impl Volumes {
    pub fn new(disks: Arc<dyn DiskProber>, backends: Vec<Arc<dyn VolumeBackend>>) -> Volumes {
        Volumes {
            disks,
            backends: backends.into_iter().map(|b| (b.kind() as i32, b)).collect(),
        }
    }

    /// ZFS and LVM thin through `runner`, keys in `key_dir`.
    pub fn real(runner: Runner, key_dir: PathBuf) -> Volumes {
        Volumes::new(
            Arc::new(RealDiskProber::new(runner.clone())),
            vec![
                Arc::new(ZfsBackend::new(runner.clone(), key_dir.clone())),
                Arc::new(LvmThinBackend::new(runner, key_dir)),
            ],
        )
    }

    /// The backend for `kind`; `None` for an unknown kind.
    pub fn backend(&self, kind: PoolKind) -> Option<&Arc<dyn VolumeBackend>> {
        self.backends.get(&(kind as i32))
    }

    pub fn backends(&self) -> impl Iterator<Item = &Arc<dyn VolumeBackend>> {
        self.backends.values()
    }
}

impl std::fmt::Debug for Volumes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volumes").finish_non_exhaustive()
    }
}

/// The key file of volume `id` in `key_dir`.
pub fn key_path(key_dir: &Path, id: &VolumeId) -> PathBuf {
    key_dir.join(format!("{id}.key"))
}

/// Creates `key_dir` (0700) and, unless it exists, a key file of 32
/// random bytes (0600) for `id`, written durably (temporary file, fsync,
/// rename, directory fsync) so that a crash never leaves a torn key behind
/// a volume that was encrypted with it. Returns its path.
pub fn ensure_key_file(key_dir: &Path, id: &VolumeId) -> Result<PathBuf, HostError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |what: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |source| HostError::Io { what, path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(key_dir)
        .map_err(io("cannot create the key directory", key_dir))?;
    std::fs::set_permissions(key_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io("cannot restrict the key directory", key_dir))?;
    let path = key_path(key_dir, id);
    if path.exists() {
        return Ok(path);
    }
    let key: [u8; 32] = rand::random();
    crate::durable::write_atomic(&path, &key, 0o600).map_err(io("cannot write key file", &path))?;
    Ok(path)
}

/// Removes the key file of `id`; a missing file is fine.
pub fn remove_key_file(key_dir: &Path, id: &VolumeId) -> Result<(), HostError> {
    let path = key_path(key_dir, id);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(HostError::Io {
            what: "cannot remove key file",
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Makes `path` (a mounted volume's root) owned by `uid:gid` with mode
/// 0770, changing only what differs. Symlinks are not followed.
pub fn ensure_owner(path: &Path, uid: u32, gid: u32) -> Result<(), HostError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let io = |what: &'static str| {
        let path = path.display().to_string();
        move |source| HostError::Io { what, path, source }
    };
    let meta = std::fs::symlink_metadata(path).map_err(io("cannot inspect volume root"))?;
    if !meta.is_dir() {
        return Err(HostError::Refused {
            object: path.display().to_string(),
            reason: "the volume's root is not a directory".into(),
        });
    }
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(io("cannot change owner of volume root"))?;
    }
    if meta.mode() & 0o7777 != 0o770 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o770))
            .map_err(io("cannot change mode of volume root"))?;
    }
    Ok(())
}

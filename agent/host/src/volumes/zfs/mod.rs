//! [`ZfsBackend`]: coloc's pools as zpools and its volumes as datasets
//! `<pool>/coloc/<id>`, driven through `zpool` and `zfs` with their
//! machine-readable output (`-Hp`: tab-separated, exact bytes, parsed in
//! `parse.rs`), and the pure argument builders and plans (pool creation,
//! volume creation, resize steps, rollback checks) tested in `tests.rs`.
//!
//! Everything that decides *whether* to run a command and could lose data
//! (the disk count of a layout, a shrink below the space used, a rollback
//! that would drop later snapshots, a destroy of something that is not a
//! coloc dataset) is checked here before any command runs, so a refusal
//! always means nothing was changed. Tool failures keep the tool's stderr
//! through [`HostError::storage`]. The only stderr this module reads is
//! the handful of fixed OpenZFS messages that mean "already done" (the
//! runner sets `LC_ALL=C`, so they are stable).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use coloc_proto::agent::v1::{PoolKind, PoolLayout};
use coloc_proto::storage::{PoolName, SnapshotName, VolumeId, format_size};

use super::{
    PoolObservation, SnapshotObject, VolumeBackend, VolumeObject, VolumeParams, ZFS_ID_PROPERTY,
};
use crate::HostError;
use crate::runner::{CommandError, Output, Runner};

mod parse;
#[cfg(test)]
mod tests;

pub use parse::{PoolHealth, ZpoolInfo, parse_zfs_list, parse_zfs_snapshots, parse_zpool_list};
use parse::{SNAPSHOT_COLUMNS, VOLUME_COLUMNS, ZPOOL_LIST_ARGS, bytes, parse_zfs_get};

/// Pool properties every coloc zpool is created with: 4 KiB sectors
/// whatever the disks claim, cheap compression, no access-time writes,
/// POSIX ACLs stored efficiently, and nothing mounted at the pool root.
const POOL_CREATE_OPTIONS: &[&str] = &[
    "-o",
    "ashift=12",
    "-O",
    "compression=lz4",
    "-O",
    "atime=off",
    "-O",
    "xattr=sa",
    "-O",
    "acltype=posixacl",
    "-m",
    "none",
];

/// Fixed OpenZFS messages (under `LC_ALL=C`) meaning "already so".
const NO_DATASET: &str = "dataset does not exist";
const ALREADY_EXISTS: &str = "dataset already exists";
const NO_SUCH_POOL: &str = "no such pool available";
const ALREADY_MOUNTED: &str = "filesystem already mounted";
const NOT_MOUNTED: &str = "not currently mounted";
const KEY_ALREADY_LOADED: &str = "Key already loaded";
const NO_SNAPSHOT_TO_DESTROY: &str = "could not find any snapshots to destroy";

/// ZFS pools and datasets through the host's `zpool` and `zfs`.
#[derive(Debug, Clone)]
pub struct ZfsBackend {
    runner: Runner,
    key_dir: PathBuf,
}

impl ZfsBackend {
    /// Keys of encrypted volumes live in `key_dir` (absolute: its path is
    /// written into each dataset's `keylocation`).
    pub fn new(runner: Runner, key_dir: PathBuf) -> ZfsBackend {
        ZfsBackend { runner, key_dir }
    }

    async fn zfs(
        &self,
        op: &'static str,
        object: &str,
        args: &[&str],
    ) -> Result<Output, HostError> {
        self.runner
            .run("zfs", args)
            .await
            .map_err(|e| HostError::storage(op, object, e))
    }

    /// Runs `zfs args`; a failure whose stderr contains `benign` is
    /// `Ok(false)` (nothing to do), success is `Ok(true)`.
    async fn zfs_unless(
        &self,
        op: &'static str,
        object: &str,
        args: &[&str],
        benign: &[&str],
    ) -> Result<bool, HostError> {
        match self.runner.run("zfs", args).await {
            Ok(_) => Ok(true),
            Err(e) if benign.iter().any(|b| failed_with(&e, b)) => Ok(false),
            Err(e) => Err(HostError::storage(op, object, e)),
        }
    }

    async fn dataset_exists(&self, name: &str) -> Result<bool, HostError> {
        self.zfs_unless(
            "look up dataset",
            name,
            &["list", "-H", "-o", "name", name],
            &[NO_DATASET],
        )
        .await
    }

    /// Reads `props` of `dataset` with `zfs get -Hp`.
    async fn get(
        &self,
        dataset: &str,
        props: &[&str],
    ) -> Result<BTreeMap<String, String>, HostError> {
        let list = props.join(",");
        let out = self
            .zfs(
                "read properties of",
                dataset,
                &["get", "-Hp", "-o", "property,value", &list, dataset],
            )
            .await?;
        let values = parse_zfs_get(&out.stdout)?;
        if let Some(missing) = props.iter().find(|p| !values.contains_key(**p)) {
            return Err(HostError::parse(
                "zfs get output",
                format!("{dataset}: no value for {missing}"),
            ));
        }
        Ok(values)
    }

    /// Creates `<pool>/coloc`, the unmounted parent of every volume, unless
    /// it exists. Run by pool creation and again before listing or creating
    /// volumes, so that a crash between `zpool create` and this converges.
    async fn ensure_coloc_root(&self, pool: &PoolName) -> Result<(), HostError> {
        let root = coloc_root(pool);
        if self.dataset_exists(&root).await? {
            return Ok(());
        }
        let created = self
            .zfs_unless(
                "create dataset",
                &root,
                &[
                    "create",
                    "-o",
                    "canmount=off",
                    "-o",
                    "mountpoint=none",
                    &root,
                ],
                &[ALREADY_EXISTS],
            )
            .await?;
        if created {
            tracing::info!(pool = %pool, dataset = %root, "created the coloc parent dataset");
        }
        Ok(())
    }

    /// Snapshots of one dataset, oldest first.
    async fn snapshots_of(&self, dataset: &str) -> Result<Vec<SnapshotObject>, HostError> {
        let out = self
            .zfs(
                "list snapshots of",
                dataset,
                &snapshot_list_args(dataset, &["-d", "1"]),
            )
            .await?;
        Ok(parse_zfs_snapshots(&out.stdout)?
            .into_iter()
            .filter(|(ds, _)| ds == dataset)
            .map(|(_, s)| s)
            .collect())
    }
}

/// `<pool>/coloc`.
fn coloc_root(pool: &PoolName) -> String {
    format!("{pool}/coloc")
}

/// `<pool>/coloc/<id>`.
fn dataset_name(pool: &PoolName, id: &VolumeId) -> String {
    format!("{pool}/coloc/{id}")
}

/// True when `e` is a failed run whose stderr tail contains `needle`.
fn failed_with(e: &CommandError, needle: &str) -> bool {
    matches!(e, CommandError::Failed { stderr_tail, .. } if stderr_tail.contains(needle))
}

fn snapshot_list_args<'a>(dataset: &'a str, depth: &[&'a str]) -> Vec<&'a str> {
    // createtxg orders snapshots taken within the same second too, which
    // `creation` (whole seconds) does not: rollback depends on the order.
    let mut args = vec![
        "list",
        "-Hp",
        "-t",
        "snapshot",
        "-o",
        SNAPSHOT_COLUMNS,
        "-s",
        "createtxg",
    ];
    args.extend_from_slice(depth);
    args.push(dataset);
    args
}

/// Minimum number of disks for a layout, and the vdev word `zpool create`
/// takes before them (none for a single disk).
fn layout_vdev(layout: PoolLayout) -> Option<(usize, Option<&'static str>)> {
    match layout {
        PoolLayout::Single => Some((1, None)),
        PoolLayout::Mirror => Some((2, Some("mirror"))),
        PoolLayout::Raidz1 => Some((3, Some("raidz1"))),
        PoolLayout::Raidz2 => Some((4, Some("raidz2"))),
        PoolLayout::Unspecified => None,
    }
}

/// The `zpool create` arguments for a pool, after checking that the disk
/// count suits the layout and that every device is an absolute path (a
/// device starting with `-` would be read as an option).
fn pool_create_args(
    name: &PoolName,
    layout: PoolLayout,
    devices: &[String],
    force: bool,
) -> Result<Vec<String>, HostError> {
    let refuse = |reason: String| HostError::Refused {
        object: format!("pool {name}"),
        reason,
    };
    let (min, vdev) =
        layout_vdev(layout).ok_or_else(|| refuse("the pool has no layout".to_owned()))?;
    let count_ok = if layout == PoolLayout::Single {
        devices.len() == 1
    } else {
        devices.len() >= min
    };
    if !count_ok {
        let wanted = if layout == PoolLayout::Single {
            "exactly 1 disk".to_owned()
        } else {
            format!("at least {min} disks")
        };
        return Err(refuse(format!(
            "a {} pool needs {wanted}, {} given",
            vdev.unwrap_or("single"),
            devices.len()
        )));
    }
    if let Some(bad) = devices.iter().find(|d| !d.starts_with("/dev/")) {
        return Err(refuse(format!("{bad:?} is not a device path under /dev")));
    }
    let mut args = vec!["create".to_owned()];
    if force {
        args.push("-f".to_owned());
    }
    args.extend(POOL_CREATE_OPTIONS.iter().map(|s| (*s).to_owned()));
    args.push(name.to_string());
    args.extend(vdev.map(str::to_owned));
    args.extend(devices.iter().cloned());
    Ok(args)
}

/// The single `zfs create` that makes volume `v` with its id, names, size
/// and (given its key file) its encryption, so that after a crash the
/// dataset either exists complete or not at all.
fn volume_create_args(v: &VolumeParams, key_file: Option<&str>) -> Vec<String> {
    let mut props = vec![
        format!("{ZFS_ID_PROPERTY}={}", v.id),
        format!("coloc:tenant={}", v.tenant),
        format!("coloc:volume={}", v.name),
        format!("refquota={}", v.size_bytes),
        format!("quota={}", v.size_bytes.saturating_mul(2)),
    ];
    if v.reservation_bytes > 0 {
        props.push(format!("refreservation={}", v.reservation_bytes));
    }
    props.extend([
        "compression=lz4".to_owned(),
        // Tenant data, as mounted with nodev,nosuid on LVM: a member must
        // not plant a setuid binary or a device node on a volume.
        "setuid=off".to_owned(),
        "devices=off".to_owned(),
        // noauto: the agent mounts volumes itself, after loading keys and
        // only when they are active; zfs-mount at boot must not.
        "canmount=noauto".to_owned(),
        format!("mountpoint={}", v.mount_path),
    ]);
    if let Some(key) = key_file {
        props.extend([
            "encryption=aes-256-gcm".to_owned(),
            "keyformat=raw".to_owned(),
            format!("keylocation=file://{key}"),
        ]);
    }
    let mut args = vec!["create".to_owned()];
    for p in props {
        args.push("-o".to_owned());
        args.push(p);
    }
    args.push(dataset_name(&v.pool, &v.id));
    args
}

/// The quota properties of a dataset, as `zfs get -Hp` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quotas {
    refquota: u64,
    quota: u64,
    refreservation: u64,
    referenced: u64,
}

/// The `zfs set` steps, in order, that bring `current` to `size` and
/// `reservation`. ZFS checks each property against the others as they are
/// at that moment (a refreservation above the refquota, a refquota below
/// the data are refused) and `zfs set a=1 b=2` is not atomic, so the
/// steps go one property at a time: reservation down, quota up, refquota,
/// quota down, reservation up.
fn plan_resize(
    dataset: &str,
    current: Quotas,
    size: u64,
    reservation: u64,
    allow_shrink: bool,
) -> Result<Vec<(&'static str, u64)>, HostError> {
    let refuse = |reason: String| HostError::Refused {
        object: dataset.to_owned(),
        reason,
    };
    if size < current.refquota && !allow_shrink {
        return Err(refuse(format!(
            "shrinking from {} to {} needs --force",
            format_size(current.refquota),
            format_size(size)
        )));
    }
    if size < current.referenced {
        return Err(refuse(format!(
            "uses {}, more than the new size {}",
            format_size(current.referenced),
            format_size(size)
        )));
    }
    if reservation > size {
        return Err(refuse(format!(
            "the reservation {} is larger than the size {}",
            format_size(reservation),
            format_size(size)
        )));
    }
    let quota = size.saturating_mul(2);
    let mut steps = Vec::new();
    if reservation < current.refreservation {
        steps.push(("refreservation", reservation));
    }
    if quota > current.quota {
        steps.push(("quota", quota));
    }
    if size != current.refquota {
        steps.push(("refquota", size));
    }
    if quota < current.quota {
        steps.push(("quota", quota));
    }
    if reservation > current.refreservation {
        steps.push(("refreservation", reservation));
    }
    Ok(steps)
}

/// Refuses a rollback to `name` unless it is the most recent of
/// `snapshots` (oldest first): rolling back further would destroy the
/// later snapshots.
fn check_rollback(
    dataset: &str,
    snapshots: &[SnapshotObject],
    name: &str,
) -> Result<(), HostError> {
    let refuse = |reason: String| HostError::Refused {
        object: dataset.to_owned(),
        reason,
    };
    let Some(pos) = snapshots.iter().position(|s| s.name == name) else {
        return Err(refuse(format!("has no snapshot named {name}")));
    };
    let later: Vec<&str> = snapshots[pos + 1..]
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    if !later.is_empty() {
        return Err(refuse(format!(
            "{name} is not the most recent snapshot; delete the later ones first: {}",
            later.join(", ")
        )));
    }
    Ok(())
}

/// A listed zpool as the reconciler sees pools of every kind.
fn observe_pool(pool: ZpoolInfo) -> PoolObservation {
    PoolObservation {
        name: pool.name,
        kind: PoolKind::Zfs,
        size_bytes: pool.size_bytes,
        free_bytes: pool.free_bytes,
        health: pool.health.to_string(),
    }
}

/// The id of an object this backend created, checked before anything
/// destructive: its id must be well-formed and its dataset must be the one
/// named after it, so that a destroy can only ever hit `<pool>/coloc/<id>`.
fn owned_id(obj: &VolumeObject) -> Result<VolumeId, HostError> {
    let refuse = |reason: &str| HostError::Refused {
        object: obj.object.clone(),
        reason: reason.to_owned(),
    };
    let id = VolumeId::new(obj.volume_id.as_str())
        .map_err(|_| refuse("its coloc:volume-id is not a coloc volume id"))?;
    if obj.object != format!("{}/coloc/{id}", obj.pool) {
        return Err(refuse("it is not the dataset coloc names after its id"));
    }
    Ok(id)
}

fn quota_value(
    values: &BTreeMap<String, String>,
    dataset: &str,
    prop: &str,
) -> Result<u64, HostError> {
    bytes(
        "zfs get output",
        dataset,
        prop,
        values.get(prop).map_or("-", String::as_str),
    )
}

#[async_trait]
impl VolumeBackend for ZfsBackend {
    fn kind(&self) -> PoolKind {
        PoolKind::Zfs
    }

    async fn pools(&self) -> Result<Vec<PoolObservation>, HostError> {
        let out = self
            .runner
            .run("zpool", ZPOOL_LIST_ARGS)
            .await
            .map_err(|e| HostError::from_command(e, |source| HostError::Zpools { source }))?;
        Ok(parse_zpool_list(&out.stdout)?
            .into_iter()
            .map(observe_pool)
            .collect())
    }

    async fn import_pool(&self, name: &PoolName) -> Result<bool, HostError> {
        if self.pools().await?.iter().any(|p| p.name == name.as_str()) {
            return Ok(true);
        }
        // -N: import without mounting; volumes are mounted by the agent
        // once their keys are loaded.
        match self
            .runner
            .run("zpool", &["import", "-N", name.as_str()])
            .await
        {
            Ok(_) => {
                tracing::info!(pool = %name, "imported ZFS pool");
                Ok(true)
            }
            Err(e) if failed_with(&e, NO_SUCH_POOL) => Ok(false),
            Err(e) => Err(HostError::storage("import pool", name.as_str(), e)),
        }
    }

    async fn create_pool(
        &self,
        name: &PoolName,
        layout: PoolLayout,
        devices: &[String],
        force: bool,
    ) -> Result<(), HostError> {
        let args = pool_create_args(name, layout, devices, force)?;
        if !self.pools().await?.iter().any(|p| p.name == name.as_str()) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.runner
                .run("zpool", &args)
                .await
                .map_err(|e| HostError::storage("create pool", name.as_str(), e))?;
            tracing::info!(pool = %name, ?layout, ?devices, force, "created ZFS pool");
        }
        self.ensure_coloc_root(name).await
    }

    async fn volumes(&self, pool: &PoolName) -> Result<Vec<VolumeObject>, HostError> {
        self.ensure_coloc_root(pool).await?;
        let root = coloc_root(pool);
        let out = self
            .zfs(
                "list volumes of",
                &root,
                &[
                    "list",
                    "-Hp",
                    "-d",
                    "1",
                    "-t",
                    "filesystem",
                    "-o",
                    VOLUME_COLUMNS,
                    &root,
                ],
            )
            .await?;
        let mut volumes = parse_zfs_list(&out.stdout)?;
        let out = self
            .zfs(
                "list snapshots of",
                &root,
                &snapshot_list_args(&root, &["-r"]),
            )
            .await?;
        let mut by_dataset: BTreeMap<String, Vec<SnapshotObject>> = BTreeMap::new();
        for (dataset, snapshot) in parse_zfs_snapshots(&out.stdout)? {
            by_dataset.entry(dataset).or_default().push(snapshot);
        }
        for v in &mut volumes {
            v.snapshots = by_dataset.remove(&v.object).unwrap_or_default();
        }
        Ok(volumes)
    }

    async fn volume(
        &self,
        pool: &PoolName,
        id: &VolumeId,
    ) -> Result<Option<VolumeObject>, HostError> {
        let dataset = dataset_name(pool, id);
        let args = [
            "list",
            "-Hp",
            "-d",
            "0",
            "-t",
            "filesystem",
            "-o",
            VOLUME_COLUMNS,
            dataset.as_str(),
        ];
        let listed = self.runner.run("zfs", &args);
        let out = match listed.await {
            Ok(out) => out,
            Err(e) if failed_with(&e, NO_DATASET) => return Ok(None),
            Err(e) => return Err(HostError::storage("list volume", &dataset, e)),
        };
        let Some(mut volume) = parse_zfs_list(&out.stdout)?
            .into_iter()
            .find(|o| o.volume_id == id.as_str())
        else {
            return Ok(None);
        };
        let out = self
            .zfs(
                "list snapshots of",
                &dataset,
                &snapshot_list_args(&dataset, &["-d", "1"]),
            )
            .await?;
        volume.snapshots = parse_zfs_snapshots(&out.stdout)?
            .into_iter()
            .filter(|(ds, _)| *ds == dataset)
            .map(|(_, s)| s)
            .collect();
        Ok(Some(volume))
    }

    async fn create_volume(&self, v: &VolumeParams) -> Result<(), HostError> {
        let dataset = dataset_name(&v.pool, &v.id);
        self.ensure_coloc_root(&v.pool).await?;
        // Checked before the key file is made: a key generated for a
        // dataset that already exists would not open it, and would hide
        // the fact that its real key is missing.
        if self.dataset_exists(&dataset).await? {
            return Err(HostError::Refused {
                object: dataset,
                reason: "already exists".to_owned(),
            });
        }
        let key = if v.encrypted {
            if !self.key_dir.is_absolute() {
                return Err(HostError::Refused {
                    object: dataset,
                    reason: format!(
                        "the key directory {} is not absolute",
                        self.key_dir.display()
                    ),
                });
            }
            let path = super::ensure_key_file(&self.key_dir, &v.id)?;
            let Some(text) = path.to_str() else {
                return Err(HostError::Refused {
                    object: dataset,
                    reason: format!("the key path {} is not UTF-8", path.display()),
                });
            };
            Some(text.to_owned())
        } else {
            None
        };
        let args = volume_create_args(v, key.as_deref());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.zfs("create volume", &dataset, &args).await?;
        tracing::info!(
            dataset = %dataset, tenant = %v.tenant, volume = %v.name,
            size = v.size_bytes, encrypted = v.encrypted,
            "created ZFS volume"
        );
        Ok(())
    }

    async fn prepare(&self, obj: &VolumeObject, v: &VolumeParams) -> Result<(), HostError> {
        if !obj.encrypted || obj.unlocked {
            return Ok(());
        }
        let key = super::key_path(&self.key_dir, &v.id);
        match std::fs::symlink_metadata(&key) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Never generate a key here: a new key cannot open an
                // existing dataset, and would mask the real loss.
                return Err(HostError::Refused {
                    object: obj.object.clone(),
                    reason: format!(
                        "its key file {} is missing; the volume stays locked until it is restored",
                        key.display()
                    ),
                });
            }
            Err(source) => {
                return Err(HostError::Io {
                    what: "cannot inspect key file",
                    path: key.display().to_string(),
                    source,
                });
            }
        }
        let Some(key) = key.to_str() else {
            return Err(HostError::Refused {
                object: obj.object.clone(),
                reason: format!("the key path {} is not UTF-8", key.display()),
            });
        };
        // -L names the key file this agent manages, whatever keylocation
        // the dataset was created with (the key directory may have moved).
        let location = format!("file://{key}");
        match self
            .runner
            .run("zfs", &["load-key", "-L", &location, &obj.object])
            .await
        {
            Ok(_) => {
                tracing::info!(dataset = %obj.object, "loaded ZFS key");
                Ok(())
            }
            Err(e) if failed_with(&e, KEY_ALREADY_LOADED) => Ok(()),
            Err(e) => Err(HostError::storage("load key of", obj.object.as_str(), e)),
        }
    }

    async fn resize(
        &self,
        obj: &VolumeObject,
        v: &VolumeParams,
        allow_shrink: bool,
    ) -> Result<(), HostError> {
        let ds = obj.object.as_str();
        // Read fresh: the refusal below must compare against the data as
        // it is now, and `quota` is not part of the listing.
        let values = self
            .get(ds, &["refquota", "quota", "refreservation", "referenced"])
            .await?;
        let current = Quotas {
            refquota: quota_value(&values, ds, "refquota")?,
            quota: quota_value(&values, ds, "quota")?,
            refreservation: quota_value(&values, ds, "refreservation")?,
            referenced: quota_value(&values, ds, "referenced")?,
        };
        let steps = plan_resize(ds, current, v.size_bytes, v.reservation_bytes, allow_shrink)?;
        for (prop, value) in &steps {
            let setting = format!("{prop}={value}");
            self.zfs("resize", ds, &["set", &setting, ds]).await?;
        }
        if !steps.is_empty() {
            tracing::info!(
                dataset = %ds, from = current.refquota, to = v.size_bytes,
                reservation = v.reservation_bytes, "resized ZFS volume"
            );
        }
        Ok(())
    }

    async fn set_read_only(&self, obj: &VolumeObject, read_only: bool) -> Result<(), HostError> {
        if obj.read_only == read_only {
            return Ok(());
        }
        // A mounted dataset is remounted with the new mode by zfs itself.
        let setting = if read_only {
            "readonly=on"
        } else {
            "readonly=off"
        };
        self.zfs(
            "set read-only mode of",
            &obj.object,
            &["set", setting, &obj.object],
        )
        .await?;
        tracing::info!(dataset = %obj.object, read_only, "changed ZFS volume mode");
        Ok(())
    }

    async fn mount(&self, obj: &VolumeObject, v: &VolumeParams) -> Result<(), HostError> {
        let ds = obj.object.as_str();
        let path = Path::new(&v.mount_path);
        if !path.is_absolute() {
            return Err(HostError::Refused {
                object: ds.to_owned(),
                reason: format!("mount path {:?} is not absolute", v.mount_path),
            });
        }
        let values = self.get(ds, &["mountpoint", "mounted"]).await?;
        if values.get("mountpoint").map(String::as_str) != Some(v.mount_path.as_str()) {
            // On a mounted dataset zfs moves the mount itself.
            let setting = format!("mountpoint={}", v.mount_path);
            self.zfs("set mount point of", ds, &["set", &setting, ds])
                .await?;
        }
        let mounted_here = obj.mounted_at.as_deref() == Some(v.mount_path.as_str())
            || values.get("mounted").map(String::as_str) == Some("yes");
        if !mounted_here {
            {
                use std::os::unix::fs::DirBuilderExt;
                // The tenant's directory above the volume is root's and
                // traversable; the volume's own root gets 0770 below.
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(path)
                    .map_err(|source| HostError::Io {
                        what: "cannot create mount point",
                        path: v.mount_path.clone(),
                        source,
                    })?;
            }
            let mounted = self
                .zfs_unless("mount", ds, &["mount", ds], &[ALREADY_MOUNTED])
                .await?;
            if mounted {
                tracing::info!(dataset = %ds, path = %v.mount_path, "mounted ZFS volume");
            }
        }
        if obj.read_only {
            // A read-only file system cannot change owner; its root was set
            // when it was last mounted read-write.
            return Ok(());
        }
        super::ensure_owner(path, v.owner_uid, v.owner_gid)
    }

    async fn unmount(&self, obj: &VolumeObject) -> Result<(), HostError> {
        if obj.mounted_at.is_none() {
            return Ok(());
        }
        let done = self
            .zfs_unless(
                "unmount",
                &obj.object,
                &["unmount", &obj.object],
                &[NOT_MOUNTED],
            )
            .await?;
        if done {
            tracing::info!(dataset = %obj.object, "unmounted ZFS volume");
        }
        Ok(())
    }

    async fn create_snapshot(
        &self,
        obj: &VolumeObject,
        name: &SnapshotName,
    ) -> Result<(), HostError> {
        let full = format!("{}@{name}", obj.object);
        let created = self
            .zfs_unless(
                "create snapshot",
                &full,
                &["snapshot", &full],
                &[ALREADY_EXISTS],
            )
            .await?;
        if created {
            tracing::info!(snapshot = %full, "created ZFS snapshot");
        }
        Ok(())
    }

    async fn destroy_snapshot(
        &self,
        obj: &VolumeObject,
        name: &SnapshotName,
    ) -> Result<(), HostError> {
        let full = format!("{}@{name}", obj.object);
        let destroyed = self
            .zfs_unless(
                "destroy snapshot",
                &full,
                &["destroy", &full],
                &[NO_SNAPSHOT_TO_DESTROY, NO_DATASET],
            )
            .await?;
        if destroyed {
            tracing::info!(snapshot = %full, "destroyed ZFS snapshot");
        }
        Ok(())
    }

    async fn rollback(
        &self,
        obj: &VolumeObject,
        v: &VolumeParams,
        name: &SnapshotName,
    ) -> Result<(), HostError> {
        let ds = obj.object.as_str();
        let snapshots = self.snapshots_of(ds).await?;
        check_rollback(ds, &snapshots, name.as_str())?;
        let full = format!("{ds}@{name}");
        // No -r: zfs itself refuses if a later snapshot appeared meanwhile.
        // The dataset stays mounted through a rollback.
        self.zfs("roll back", ds, &["rollback", &full]).await?;
        tracing::info!(dataset = %ds, snapshot = %name, "rolled back ZFS volume");
        if obj.mounted_at.is_some() && !obj.read_only {
            super::ensure_owner(Path::new(&v.mount_path), v.owner_uid, v.owner_gid)?;
        }
        Ok(())
    }

    async fn destroy(&self, obj: &VolumeObject) -> Result<(), HostError> {
        let id = owned_id(obj)?;
        let ds = obj.object.as_str();
        if self.dataset_exists(ds).await? {
            // Unmounted first so that a busy mount fails with its own
            // message, before anything is destroyed.
            self.unmount(obj).await?;
            let destroyed = self
                .zfs_unless("destroy volume", ds, &["destroy", "-r", ds], &[NO_DATASET])
                .await?;
            if destroyed {
                tracing::info!(dataset = %ds, "destroyed ZFS volume and its snapshots");
            }
        }
        super::remove_key_file(&self.key_dir, &id)
    }
}

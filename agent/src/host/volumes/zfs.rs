//! [`ZfsBackend`]: coloc's pools as zpools and its volumes as datasets
//! `<pool>/coloc/<id>`, driven through `zpool` and `zfs` with their
//! machine-readable output (`-Hp`: tab-separated, exact bytes), plus the
//! pure parsers and argument builders, tested against outputs recorded
//! from OpenZFS 2.1 in the node image.
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
use crate::host::HostError;
use crate::runner::{CommandError, Output, Runner};

/// Columns of the volume listing, in the order [`parse_zfs_list`] reads
/// them. `referenced` (not `used`) is the space the tenant's data takes:
/// `used` also counts the refreservation and the snapshots, and
/// `refquota`, which is the volume's size, limits `referenced`.
const VOLUME_COLUMNS: &str = "name,coloc:volume-id,refquota,refreservation,referenced,avail,\
usedbysnapshots,readonly,encryption,keystatus,mounted,mountpoint";
const VOLUME_COLUMN_COUNT: usize = 12;

/// Columns of the snapshot listing read by [`parse_zfs_snapshots`].
const SNAPSHOT_COLUMNS: &str = "name,creation,used";

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

/// Parses `zpool list -Hp -o name,size,alloc,free,health`.
fn parse_zpool_pools(text: &str) -> Result<Vec<PoolObservation>, HostError> {
    const WHAT: &str = "zpool list output";
    let mut pools = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, size, _alloc, free, health] = fields[..] else {
            return Err(HostError::parse(
                WHAT,
                format!(
                    "expected 5 tab-separated columns, got {}: {line:?}",
                    fields.len()
                ),
            ));
        };
        if name.is_empty() {
            return Err(HostError::parse(WHAT, format!("empty pool name: {line:?}")));
        }
        pools.push(PoolObservation {
            name: name.to_owned(),
            kind: PoolKind::Zfs,
            size_bytes: bytes(WHAT, name, "size", size)?,
            free_bytes: bytes(WHAT, name, "free", free)?,
            health: health.to_owned(),
        });
    }
    Ok(pools)
}

/// An exact byte count from `-p` output; `-` (not applicable) is 0.
fn bytes(what: &'static str, object: &str, column: &str, value: &str) -> Result<u64, HostError> {
    if value == "-" {
        return Ok(0);
    }
    value.parse().map_err(|_| {
        HostError::parse(
            what,
            format!("{object}: {column} {value:?} is not a byte count"),
        )
    })
}

/// Parses `zfs list -Hp -o name,coloc:volume-id,refquota,refreservation,
/// referenced,avail,usedbysnapshots,readonly,encryption,keystatus,mounted,
/// mountpoint`. Keeps the datasets that are direct children of a
/// `<pool>/coloc` dataset and carry a volume id (any value but `-`, kept
/// verbatim: a malformed id marks an orphan, not a parse error). A user
/// property is inherited, so a dataset nested deeper would show its
/// parent's id: only the direct children are volumes. Snapshots are left
/// empty (they come from [`parse_zfs_snapshots`]).
pub fn parse_zfs_list(text: &str) -> Result<Vec<VolumeObject>, HostError> {
    const WHAT: &str = "zfs list output";
    let mut volumes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [
            name,
            id,
            refquota,
            refreservation,
            referenced,
            avail,
            by_snapshots,
            readonly,
            encryption,
            keystatus,
            mounted,
            mountpoint,
        ] = fields[..]
        else {
            return Err(HostError::parse(
                WHAT,
                format!(
                    "expected {VOLUME_COLUMN_COUNT} tab-separated columns, got {}: {line:?}",
                    fields.len()
                ),
            ));
        };
        let parts: Vec<&str> = name.split('/').collect();
        let [pool, "coloc", leaf] = parts[..] else {
            continue;
        };
        if id == "-" || pool.is_empty() || leaf.is_empty() {
            continue;
        }
        let size_bytes = bytes(WHAT, name, "refquota", refquota)?;
        let encrypted = !matches!(encryption, "off" | "-");
        volumes.push(VolumeObject {
            pool: pool.to_owned(),
            kind: PoolKind::Zfs,
            object: name.to_owned(),
            volume_id: id.to_owned(),
            size_bytes,
            reservation_bytes: bytes(WHAT, name, "refreservation", refreservation)?,
            used_bytes: bytes(WHAT, name, "referenced", referenced)?,
            available_bytes: bytes(WHAT, name, "avail", avail)?,
            snapshot_bytes: bytes(WHAT, name, "usedbysnapshots", by_snapshots)?,
            read_only: on_off(WHAT, name, "readonly", readonly)?,
            encrypted,
            unlocked: !encrypted || keystatus == "available",
            has_filesystem: true,
            filesystem_bytes: size_bytes,
            mounted_at: match mounted {
                "yes" if mountpoint.starts_with('/') => Some(mountpoint.to_owned()),
                "yes" | "no" | "-" => None,
                other => {
                    return Err(HostError::parse(
                        WHAT,
                        format!("{name}: mounted is {other:?}, not yes or no"),
                    ));
                }
            },
            snapshots: Vec::new(),
        });
    }
    Ok(volumes)
}

fn on_off(what: &'static str, object: &str, column: &str, value: &str) -> Result<bool, HostError> {
    match value {
        "on" => Ok(true),
        "off" | "-" => Ok(false),
        other => Err(HostError::parse(
            what,
            format!("{object}: {column} is {other:?}, not on or off"),
        )),
    }
}

/// Parses `zfs list -Hp -t snapshot -o name,creation,used`: one
/// `(dataset, snapshot)` per line, in the listing's order.
pub fn parse_zfs_snapshots(text: &str) -> Result<Vec<(String, SnapshotObject)>, HostError> {
    const WHAT: &str = "zfs snapshot list output";
    let mut snapshots = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [full, creation, used] = fields[..] else {
            return Err(HostError::parse(
                WHAT,
                format!(
                    "expected 3 tab-separated columns, got {}: {line:?}",
                    fields.len()
                ),
            ));
        };
        let Some((dataset, name)) = full
            .split_once('@')
            .filter(|(d, n)| !d.is_empty() && !n.is_empty())
        else {
            return Err(HostError::parse(
                WHAT,
                format!("{full:?} is not dataset@snapshot"),
            ));
        };
        snapshots.push((
            dataset.to_owned(),
            SnapshotObject {
                name: name.to_owned(),
                created_unix: bytes(WHAT, full, "creation", creation)?,
                used_bytes: bytes(WHAT, full, "used", used)?,
            },
        ));
    }
    Ok(snapshots)
}

/// Parses `zfs get -Hp -o property,value`.
fn parse_zfs_get(text: &str) -> Result<BTreeMap<String, String>, HostError> {
    let mut values = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((prop, value)) = line.split_once('\t') else {
            return Err(HostError::parse(
                "zfs get output",
                format!("expected property<TAB>value: {line:?}"),
            ));
        };
        values.insert(prop.to_owned(), value.to_owned());
    }
    Ok(values)
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
            .run(
                "zpool",
                &["list", "-Hp", "-o", "name,size,alloc,free,health"],
            )
            .await
            .map_err(|e| HostError::from_command(e, |source| HostError::Zpools { source }))?;
        parse_zpool_pools(&out.stdout)
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

#[cfg(test)]
mod tests {
    use super::*;
    use coloc_proto::domain::TenantName;
    use coloc_proto::storage::VolumeName;

    const MOUNTED: &str =
        include_str!("../../../tests/fixtures/storage/zfs-list-volumes-mounted.txt");
    const LOCKED: &str =
        include_str!("../../../tests/fixtures/storage/zfs-list-volumes-locked.txt");
    const SNAPSHOTS: &str = include_str!("../../../tests/fixtures/storage/zfs-snapshots.txt");
    const ZPOOL_MIRROR: &str =
        include_str!("../../../tests/fixtures/storage/zpool-list-mirror.txt");

    const MIB: u64 = 1024 * 1024;

    fn params(id: &str, encrypted: bool, reservation: u64) -> VolumeParams {
        VolumeParams {
            id: VolumeId::new(id).unwrap(),
            tenant: TenantName::new("asso-un").unwrap(),
            name: VolumeName::new("data").unwrap(),
            pool: PoolName::new("tank").unwrap(),
            size_bytes: 256 * MIB,
            reservation_bytes: reservation,
            encrypted,
            mount_path: "/srv/tenants/asso-un/data".to_owned(),
            owner_uid: 200_000,
            owner_gid: 200_000,
        }
    }

    fn snap(name: &str) -> SnapshotObject {
        SnapshotObject {
            name: name.to_owned(),
            created_unix: 1,
            used_bytes: 0,
        }
    }

    #[test]
    fn volumes_recorded_while_mounted() {
        let volumes = parse_zfs_list(MOUNTED).unwrap();
        assert_eq!(volumes.len(), 2, "the coloc parent is not a volume");
        let plain = &volumes[0];
        assert_eq!(plain.pool, "tank");
        assert_eq!(plain.object, "tank/coloc/00000000000000a1");
        assert_eq!(plain.volume_id, "00000000000000a1");
        assert_eq!(plain.size_bytes, 256 * MIB);
        assert_eq!(plain.filesystem_bytes, 256 * MIB);
        assert_eq!(plain.reservation_bytes, 128 * MIB);
        assert!(plain.used_bytes > 0 && plain.used_bytes < MIB, "{plain:?}");
        assert!(plain.available_bytes > 0);
        assert!(plain.snapshot_bytes > 0);
        assert!(!plain.read_only && !plain.encrypted && plain.unlocked && plain.has_filesystem);
        assert_eq!(
            plain.mounted_at.as_deref(),
            Some("/srv/tenants/asso-un/data")
        );

        let secret = &volumes[1];
        assert_eq!(secret.volume_id, "00000000000000e1");
        assert_eq!(secret.size_bytes, 128 * MIB);
        assert_eq!(secret.reservation_bytes, 0);
        assert!(secret.encrypted && secret.unlocked);
        assert_eq!(
            secret.mounted_at.as_deref(),
            Some("/srv/tenants/asso-un/secret")
        );
    }

    #[test]
    fn volumes_recorded_locked_and_read_only() {
        let volumes = parse_zfs_list(LOCKED).unwrap();
        assert_eq!(volumes.len(), 2);
        assert!(volumes[0].read_only);
        assert_eq!(volumes[0].mounted_at, None);
        assert!(volumes[1].encrypted);
        assert!(!volumes[1].unlocked, "keystatus unavailable");
        assert_eq!(volumes[1].mounted_at, None);
    }

    #[test]
    fn volume_listing_keeps_only_direct_children_with_an_id() {
        let text = "tank/coloc\t-\t0\t0\t1\t2\t0\toff\toff\t-\tno\tnone\n\
                    tank/other\tabc\t0\t0\t1\t2\t0\toff\toff\t-\tno\tnone\n\
                    tank/coloc/x/nested\tinherited\t0\t0\t1\t2\t0\toff\toff\t-\tno\tnone\n\
                    tank/coloc/bad\tnot-an-id\t67108864\t0\t1\t2\t0\toff\toff\t-\tno\t/srv/x\n";
        let volumes = parse_zfs_list(text).unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(
            volumes[0].volume_id, "not-an-id",
            "kept verbatim: an orphan"
        );
        assert_eq!(parse_zfs_list("").unwrap(), vec![]);
    }

    #[test]
    fn volume_listing_rejects_malformed_lines() {
        let err = parse_zfs_list("tank/coloc/a\tid\t1\n").unwrap_err();
        assert!(err.to_string().contains("zfs list"), "{err}");
        let bad_number = "tank/coloc/a\tid\t1G\t0\t1\t2\t0\toff\toff\t-\tno\tnone\n";
        assert!(matches!(
            parse_zfs_list(bad_number),
            Err(HostError::Parse { .. })
        ));
        let bad_flag = "tank/coloc/a\tid\t1\t0\t1\t2\t0\tmaybe\toff\t-\tno\tnone\n";
        assert!(matches!(
            parse_zfs_list(bad_flag),
            Err(HostError::Parse { .. })
        ));
    }

    #[test]
    fn snapshots_recorded_oldest_first() {
        let snapshots = parse_zfs_snapshots(SNAPSHOTS).unwrap();
        let names: Vec<(&str, &str)> = snapshots
            .iter()
            .map(|(d, s)| (d.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("tank/coloc/00000000000000a1", "first"),
                ("tank/coloc/00000000000000a1", "second"),
                ("tank/coloc/00000000000000e1", "before-upgrade"),
            ]
        );
        assert!(snapshots[0].1.created_unix > 1_700_000_000);
        assert!(snapshots[0].1.used_bytes > 0);
        assert_eq!(parse_zfs_snapshots("").unwrap(), vec![]);
        assert!(parse_zfs_snapshots("tank/coloc/a\t1\t2\n").is_err(), "no @");
        assert!(parse_zfs_snapshots("tank/coloc/a@s\t1\n").is_err());
    }

    #[test]
    fn pools_recorded() {
        let pools = parse_zpool_pools(ZPOOL_MIRROR).unwrap();
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].name, "tank");
        assert_eq!(pools[0].kind, PoolKind::Zfs);
        assert_eq!(pools[0].health, "ONLINE");
        assert!(pools[0].size_bytes > pools[0].free_bytes && pools[0].free_bytes > 0);
        assert_eq!(parse_zpool_pools("").unwrap(), vec![]);
        assert!(parse_zpool_pools("tank\t1\t2\n").is_err());
    }

    #[test]
    fn zfs_get_pairs() {
        let values = parse_zfs_get("quota\t268435456\nrefquota\t134217728\n").unwrap();
        assert_eq!(values["quota"], "268435456");
        assert!(parse_zfs_get("quota 1\n").is_err());
    }

    #[test]
    fn pool_creation_checks_the_disk_count_of_each_layout() {
        let name = PoolName::new("tank").unwrap();
        let disks = |n: usize| -> Vec<String> { (0..n).map(|i| format!("/dev/vd{i}")).collect() };
        for (layout, bad, good) in [
            (PoolLayout::Single, vec![0, 2], 1),
            (PoolLayout::Mirror, vec![0, 1], 2),
            (PoolLayout::Raidz1, vec![2], 3),
            (PoolLayout::Raidz2, vec![3], 4),
        ] {
            for n in bad {
                let err = pool_create_args(&name, layout, &disks(n), false).unwrap_err();
                assert!(
                    matches!(err, HostError::Refused { .. }),
                    "{layout:?} {n}: {err}"
                );
            }
            pool_create_args(&name, layout, &disks(good), false).unwrap();
        }
        assert!(pool_create_args(&name, PoolLayout::Unspecified, &disks(1), false).is_err());
        let err =
            pool_create_args(&name, PoolLayout::Single, &["-f".to_owned()], false).unwrap_err();
        assert!(err.to_string().contains("not a device path"), "{err}");
    }

    #[test]
    fn pool_creation_arguments() {
        let name = PoolName::new("tank").unwrap();
        let devices = ["/dev/nvme0n1".to_owned(), "/dev/nvme1n1".to_owned()];
        let args = pool_create_args(&name, PoolLayout::Mirror, &devices, true).unwrap();
        assert_eq!(
            args.join(" "),
            "create -f -o ashift=12 -O compression=lz4 -O atime=off -O xattr=sa \
             -O acltype=posixacl -m none tank mirror /dev/nvme0n1 /dev/nvme1n1"
        );
        let args = pool_create_args(&name, PoolLayout::Single, &devices[..1], false).unwrap();
        assert!(args.ends_with(&["tank".to_owned(), "/dev/nvme0n1".to_owned()]));
        assert!(!args.contains(&"-f".to_owned()));
    }

    #[test]
    fn volume_creation_is_one_command_carrying_everything() {
        let plain = volume_create_args(&params("00000000000000a1", false, 128 * MIB), None);
        assert_eq!(
            plain.join(" "),
            "create -o coloc:volume-id=00000000000000a1 -o coloc:tenant=asso-un \
             -o coloc:volume=data -o refquota=268435456 -o quota=536870912 \
             -o refreservation=134217728 -o compression=lz4 -o setuid=off -o devices=off \
             -o canmount=noauto -o mountpoint=/srv/tenants/asso-un/data tank/coloc/00000000000000a1"
        );
        let secret = volume_create_args(
            &params("00000000000000e1", true, 0),
            Some("/var/lib/coloc/keys/00000000000000e1.key"),
        );
        let text = secret.join(" ");
        assert!(!text.contains("refreservation"), "{text}");
        assert!(
            text.ends_with(
                "-o encryption=aes-256-gcm -o keyformat=raw \
                 -o keylocation=file:///var/lib/coloc/keys/00000000000000e1.key \
                 tank/coloc/00000000000000e1"
            ),
            "{text}"
        );
    }

    fn quotas(refquota: u64, refreservation: u64, referenced: u64) -> Quotas {
        Quotas {
            refquota,
            quota: 2 * refquota,
            refreservation,
            referenced,
        }
    }

    #[test]
    fn growing_raises_the_quota_before_the_refquota_and_reservation() {
        let steps =
            plan_resize("ds", quotas(256 * MIB, 0, MIB), 512 * MIB, 512 * MIB, false).unwrap();
        assert_eq!(
            steps,
            [
                ("quota", 1024 * MIB),
                ("refquota", 512 * MIB),
                ("refreservation", 512 * MIB)
            ]
        );
        assert_eq!(
            plan_resize("ds", quotas(256 * MIB, 0, MIB), 256 * MIB, 0, false).unwrap(),
            [],
            "nothing differs, nothing to run"
        );
    }

    #[test]
    fn shrinking_lowers_the_reservation_first_and_needs_allow_shrink() {
        let current = quotas(256 * MIB, 256 * MIB, 80 * MIB);
        let err = plan_resize("ds", current, 128 * MIB, 0, false).unwrap_err();
        assert!(
            matches!(&err, HostError::Refused { reason, .. } if reason.contains("--force")),
            "{err}"
        );
        let steps = plan_resize("ds", current, 128 * MIB, 64 * MIB, true).unwrap();
        assert_eq!(
            steps,
            [
                ("refreservation", 64 * MIB),
                ("refquota", 128 * MIB),
                ("quota", 256 * MIB)
            ]
        );
    }

    #[test]
    fn shrinking_below_the_data_or_reserving_more_than_the_size_is_refused() {
        let current = quotas(256 * MIB, 0, 80 * MIB);
        let err = plan_resize("ds", current, 64 * MIB, 0, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ds: uses 80.0 MiB, more than the new size 64.0 MiB"
        );
        let err = plan_resize("ds", current, 256 * MIB, 512 * MIB, true).unwrap_err();
        assert!(matches!(err, HostError::Refused { .. }), "{err}");
    }

    #[test]
    fn rollback_only_to_the_most_recent_snapshot() {
        let snaps = [snap("first"), snap("second"), snap("third")];
        check_rollback("ds", &snaps, "third").unwrap();
        let err = check_rollback("ds", &snaps, "first").unwrap_err();
        assert_eq!(
            err.to_string(),
            "ds: first is not the most recent snapshot; delete the later ones first: second, third"
        );
        assert!(check_rollback("ds", &snaps, "missing").is_err());
        assert!(check_rollback("ds", &[], "first").is_err());
    }

    fn object(pool: &str, name: &str, id: &str) -> VolumeObject {
        let mut obj = parse_zfs_list(MOUNTED).unwrap().remove(0);
        obj.pool = pool.to_owned();
        obj.object = name.to_owned();
        obj.volume_id = id.to_owned();
        obj
    }

    #[tokio::test]
    async fn destroy_refuses_anything_but_a_coloc_dataset_before_running_a_command() {
        let keys = tempfile::tempdir().unwrap();
        let backend = ZfsBackend::new(Runner::new(), keys.path().to_owned());
        for obj in [
            object("tank", "tank/coloc/not-an-id", "not-an-id"),
            object("tank", "tank", "00000000000000a1"),
            object("tank", "tank/coloc/00000000000000b2", "00000000000000a1"),
            object("other", "tank/coloc/00000000000000a1", "00000000000000a1"),
        ] {
            let err = backend.destroy(&obj).await.unwrap_err();
            assert!(matches!(err, HostError::Refused { .. }), "{obj:?}: {err}");
        }
        owned_id(&object(
            "tank",
            "tank/coloc/00000000000000a1",
            "00000000000000a1",
        ))
        .unwrap();
    }

    #[tokio::test]
    async fn a_wrong_layout_is_refused_before_zpool_runs() {
        let backend = ZfsBackend::new(Runner::new(), PathBuf::from("/nonexistent"));
        let name = PoolName::new("tank").unwrap();
        let err = backend
            .create_pool(&name, PoolLayout::Raidz2, &["/dev/vdb".to_owned()], false)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, HostError::Refused { reason, .. } if reason.contains("at least 4")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_key_file_is_refused_and_never_recreated() {
        let keys = tempfile::tempdir().unwrap();
        let backend = ZfsBackend::new(Runner::new(), keys.path().to_owned());
        let mut obj = parse_zfs_list(LOCKED).unwrap().remove(1);
        obj.unlocked = false;
        let v = params("00000000000000e1", true, 0);
        let err = backend.prepare(&obj, &v).await.unwrap_err();
        assert!(
            matches!(&err, HostError::Refused { reason, .. } if reason.contains("missing")),
            "{err}"
        );
        assert!(!super::super::key_path(keys.path(), &v.id).exists());
    }

    /// The whole life of a pool and two volumes on real ZFS. Destructive:
    /// runs only inside a disposable VM, as root, when
    /// `COLOC_TEST_ZFS_DISKS` names two blank disks (comma-separated).
    #[tokio::test]
    #[ignore = "needs root, ZFS and two blank disks (COLOC_TEST_ZFS_DISKS)"]
    async fn real_zfs_lifecycle() {
        let Ok(disks) = std::env::var("COLOC_TEST_ZFS_DISKS") else {
            eprintln!("COLOC_TEST_ZFS_DISKS not set: skipped");
            return;
        };
        let devices: Vec<String> = disks.split(',').map(str::to_owned).collect();
        let keys = tempfile::tempdir().unwrap();
        let mounts = tempfile::tempdir().unwrap();
        let runner = Runner::new();
        let zfs = ZfsBackend::new(runner.clone(), keys.path().to_owned());
        let pool = PoolName::new("coloctest").unwrap();

        assert!(!zfs.import_pool(&pool).await.unwrap(), "no such pool yet");
        zfs.create_pool(&pool, PoolLayout::Mirror, &devices, false)
            .await
            .unwrap();
        zfs.create_pool(&pool, PoolLayout::Mirror, &devices, false)
            .await
            .unwrap();
        assert!(zfs.import_pool(&pool).await.unwrap());
        assert!(
            zfs.pools()
                .await
                .unwrap()
                .iter()
                .any(|p| p.name == "coloctest")
        );
        assert_eq!(zfs.volumes(&pool).await.unwrap(), vec![]);

        let mut plain = params("00000000000000a1", false, 64 * MIB);
        plain.pool = pool.clone();
        plain.mount_path = mounts.path().join("t/data").display().to_string();
        let mut secret = params("00000000000000e1", true, 0);
        secret.pool = pool.clone();
        secret.size_bytes = 128 * MIB;
        secret.mount_path = mounts.path().join("t/secret").display().to_string();
        zfs.create_volume(&plain).await.unwrap();
        zfs.create_volume(&secret).await.unwrap();
        assert!(zfs.create_volume(&plain).await.is_err(), "exists");

        let find =
            |vs: Vec<VolumeObject>, id: &str| vs.into_iter().find(|v| v.volume_id == id).unwrap();
        let obj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000a1");
        assert_eq!(obj.size_bytes, 256 * MIB);
        zfs.prepare(&obj, &plain).await.unwrap();
        zfs.mount(&obj, &plain).await.unwrap();
        let obj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000a1");
        assert_eq!(obj.mounted_at.as_deref(), Some(plain.mount_path.as_str()));
        zfs.mount(&obj, &plain).await.unwrap();
        let file = Path::new(&plain.mount_path).join("f");
        std::fs::write(&file, "one").unwrap();
        let first = SnapshotName::new("first").unwrap();
        let second = SnapshotName::new("second").unwrap();
        zfs.create_snapshot(&obj, &first).await.unwrap();
        zfs.create_snapshot(&obj, &first).await.unwrap();
        std::fs::write(&file, "two").unwrap();
        zfs.create_snapshot(&obj, &second).await.unwrap();
        std::fs::write(&file, "three").unwrap();
        let err = zfs.rollback(&obj, &plain, &first).await.unwrap_err();
        assert!(matches!(err, HostError::Refused { .. }), "{err}");
        zfs.rollback(&obj, &plain, &second).await.unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "two");
        zfs.destroy_snapshot(&obj, &second).await.unwrap();
        zfs.destroy_snapshot(&obj, &second).await.unwrap();

        // Resize: grow, shrink refused without allow_shrink, below the data
        // refused, then a real shrink.
        plain.size_bytes = 512 * MIB;
        zfs.resize(&obj, &plain, false).await.unwrap();
        {
            // Random bytes: lz4 would squeeze a constant fill to nothing.
            use std::io::Read;
            let mut random = std::fs::File::open("/dev/urandom").unwrap().take(80 << 20);
            let mut big = std::fs::File::create(Path::new(&plain.mount_path).join("big")).unwrap();
            std::io::copy(&mut random, &mut big).unwrap();
        }
        runner.run("sync", &[]).await.unwrap();
        plain.size_bytes = 64 * MIB;
        assert!(zfs.resize(&obj, &plain, false).await.is_err());
        let err = zfs.resize(&obj, &plain, true).await.unwrap_err();
        assert!(err.to_string().contains("more than the new size"), "{err}");
        plain.size_bytes = 192 * MIB;
        plain.reservation_bytes = 0;
        zfs.resize(&obj, &plain, true).await.unwrap();
        let obj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000a1");
        assert_eq!((obj.size_bytes, obj.reservation_bytes), (192 * MIB, 0));

        zfs.set_read_only(&obj, true).await.unwrap();
        let obj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000a1");
        assert!(obj.read_only);
        assert!(std::fs::write(&file, "no").is_err(), "read-only mount");
        zfs.unmount(&obj).await.unwrap();
        let obj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000a1");
        assert_eq!(obj.mounted_at, None);
        zfs.unmount(&obj).await.unwrap();

        // Encrypted: lock it, then prepare loads the key again.
        let sobj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000e1");
        assert!(sobj.encrypted && sobj.unlocked);
        runner
            .run("zfs", &["unload-key", &sobj.object])
            .await
            .unwrap();
        let sobj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000e1");
        assert!(!sobj.unlocked);
        zfs.prepare(&sobj, &secret).await.unwrap();
        let sobj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000e1");
        assert!(sobj.unlocked);
        zfs.mount(&sobj, &secret).await.unwrap();
        {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(&secret.mount_path).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid(), meta.mode() & 0o7777),
                (200_000, 200_000, 0o770)
            );
        }
        let sobj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000e1");
        zfs.destroy(&sobj).await.unwrap();
        zfs.destroy(&sobj).await.unwrap();
        assert!(!super::super::key_path(keys.path(), &secret.id).exists());
        zfs.destroy(&obj).await.unwrap();
        assert_eq!(zfs.volumes(&pool).await.unwrap(), vec![]);
        runner
            .run("zpool", &["destroy", "coloctest"])
            .await
            .unwrap();
    }
}

//! [`LvmThinBackend`]: coloc volumes as thin LVs with ext4, optionally
//! inside LUKS2, in a volume group that has one thin pool LV `thin`.
//!
//! Every method reads the live state from the tools (`lvs`, `blkid -p`,
//! `cryptsetup status`, `dumpe2fs -h`, `findmnt`) before acting, instead of
//! trusting the [`VolumeObject`] it was handed, so that a step interrupted
//! by a crash is finished, not repeated, on the next pass. Nothing here
//! ever writes a LUKS header or a filesystem over a device on which
//! `blkid -p` finds any signature, never generates a new key for an LV
//! that already has a LUKS header, and never shrinks anything.
//!
//! Rollback keeps the named snapshot although `lvconvert --merge` consumes
//! the LV it merges: a thin snapshot of the named snapshot is taken first
//! (`coloc-<id>-rb-<name>`, tagged `coloc_rollback_<id>`), the named
//! snapshot is merged into the volume, and the copy is renamed into its
//! place. A crash between those steps leaves either a spare copy (removed
//! by the next rollback or destroy) or the copy alone, which
//! [`VolumeBackend::create_snapshot`] and the next rollback rename back.
//! (Merging the copy itself would merge it into the snapshot, its origin,
//! not into the volume.)

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use coloc_proto::agent::v1::{PoolKind, PoolLayout};
use coloc_proto::storage::{PoolName, SnapshotName, VolumeId};
use serde_json::Value;

use super::{
    LVM_ID_TAG_PREFIX, LVM_SNAPSHOT_TAG_PREFIX, LVM_THIN_POOL, PoolObservation, SnapshotObject,
    VolumeBackend, VolumeObject, VolumeParams,
};
use crate::host::{HostError, parse_vgs};
use crate::runner::{CommandError, Output, Runner};

/// Prefix of the tag on the temporary copy a rollback makes.
const LVM_ROLLBACK_TAG_PREFIX: &str = "coloc_rollback_";
/// Prefix of the tag naming the tenant, for people reading `lvs`.
const LVM_TENANT_TAG_PREFIX: &str = "coloc_tenant_";

const VGS_ARGS: &[&str] = &[
    "--reportformat",
    "json",
    "--units",
    "b",
    "--nosuffix",
    "-o",
    "vg_name,vg_size,vg_free",
];

/// Every LV of every group, to find the thin pools.
const LVS_POOL_ARGS: &[&str] = &[
    "--reportformat",
    "json",
    "--units",
    "b",
    "--nosuffix",
    "-o",
    "vg_name,lv_name,lv_attr,lv_size,data_percent",
];

/// The LVs of one group (the group's name is appended). The time format
/// makes `lv_time` a Unix timestamp instead of a localised date.
const LVS_VOLUME_ARGS: &[&str] = &[
    "--config",
    "report/time_format=\"%s\"",
    "--reportformat",
    "json",
    "--units",
    "b",
    "--nosuffix",
    "-o",
    "lv_name,vg_name,lv_size,lv_tags,lv_attr,pool_lv,origin,data_percent,lv_time",
];

const FINDMNT_COLUMNS: &str = "TARGET,SOURCE,SIZE,USED,AVAIL,OPTIONS";

/// Volumes are sized in bytes; the grown filesystem needs no block size
/// smaller than 4 KiB, and mke2fs would pick 1 KiB below 512 MiB, which
/// limits how far an online grow can go.
const EXT4_BLOCK_SIZE: &str = "4096";

/// [`VolumeBackend`] for LVM thin pools. See the module documentation.
#[derive(Debug, Clone)]
pub struct LvmThinBackend {
    runner: Runner,
    key_dir: PathBuf,
}

/// One row of `lvs`.
#[derive(Debug, Clone, PartialEq)]
struct LvRow {
    vg: String,
    name: String,
    size_bytes: u64,
    tags: Vec<String>,
    attr: String,
    /// 0–100; 0 when LVM prints nothing (an inactive LV).
    data_percent: f64,
    /// Unix seconds; 0 when not requested or not printed.
    created_unix: u64,
}

impl LvRow {
    fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// The permission character of `lv_attr` is `r` for read-only.
    fn read_only(&self) -> bool {
        self.attr.as_bytes().get(1) == Some(&b'r')
    }

    /// The state character of `lv_attr` is `a` for an active LV.
    fn active(&self) -> bool {
        self.attr.as_bytes().get(4) == Some(&b'a')
    }

    /// Bytes the thin LV has allocated in its pool.
    fn allocated_bytes(&self) -> u64 {
        percent_of(self.size_bytes, self.data_percent)
    }
}

/// What `blkid -p` found at the start of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Signature {
    Blank,
    /// `TYPE` (filesystem, LUKS, LVM, ...) or `PTTYPE` (partition table).
    Found(String),
}

/// An open LUKS mapping, from `cryptsetup status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LuksMapping {
    /// Start of the encrypted payload on the LV, in bytes.
    offset_bytes: u64,
    /// Size of the opened device, in bytes.
    size_bytes: u64,
}

/// Figures from `dumpe2fs -h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ext4Stats {
    block_count: u64,
    block_size: u64,
    free_blocks: u64,
}

impl Ext4Stats {
    fn bytes(&self) -> u64 {
        self.block_count.saturating_mul(self.block_size)
    }
}

/// One mount of a device, from `findmnt -J -b`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    target: String,
    size_bytes: u64,
    used_bytes: u64,
    available_bytes: u64,
    read_only: bool,
}

/// The names an operation on one volume needs, checked once.
#[derive(Debug, Clone)]
struct Names {
    id: VolumeId,
    vg: String,
    lv: String,
}

impl Names {
    fn of(obj: &VolumeObject) -> Result<Names, HostError> {
        let refuse = |reason: &str| HostError::Refused {
            object: obj.object.clone(),
            reason: reason.to_owned(),
        };
        let id = VolumeId::new(obj.volume_id.clone())
            .map_err(|_| refuse("the volume id on the LV is malformed"))?;
        let (vg, lv) = obj
            .object
            .split_once('/')
            .filter(|(vg, lv)| valid_lvm_name(vg) && valid_lvm_name(lv))
            .ok_or_else(|| refuse("not a <vg>/<lv> name"))?;
        Ok(Names {
            id,
            vg: vg.to_owned(),
            lv: lv.to_owned(),
        })
    }

    fn of_params(v: &VolumeParams) -> Names {
        Names {
            id: v.id.clone(),
            vg: v.pool.to_string(),
            lv: lv_name(&v.id),
        }
    }

    fn object(&self) -> String {
        format!("{}/{}", self.vg, self.lv)
    }

    fn lv_path(&self) -> String {
        format!("/dev/{}/{}", self.vg, self.lv)
    }

    fn mapper_name(&self) -> String {
        mapper_name(&self.id)
    }

    fn mapper_path(&self) -> String {
        format!("/dev/mapper/{}", self.mapper_name())
    }

    fn snapshot_lv(&self, name: &str) -> String {
        format!("coloc-{}-snap-{name}", self.id)
    }

    fn rollback_lv(&self, name: &str) -> String {
        format!("coloc-{}-rb-{name}", self.id)
    }

    fn snapshot_tag(&self) -> String {
        format!("{LVM_SNAPSHOT_TAG_PREFIX}{}", self.id)
    }

    fn rollback_tag(&self) -> String {
        format!("{LVM_ROLLBACK_TAG_PREFIX}{}", self.id)
    }
}

/// The volume LV of `id`.
fn lv_name(id: &VolumeId) -> String {
    format!("coloc-{id}")
}

/// The device-mapper name of the opened LUKS device of `id`.
fn mapper_name(id: &VolumeId) -> String {
    format!("coloc-{id}")
}

/// What LVM accepts in VG and LV names, and nothing that could be read as
/// an option or a path.
fn valid_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
}

fn percent_of(bytes: u64, percent: f64) -> u64 {
    let part = (bytes as f64 * percent / 100.0).round();
    (part.max(0.0) as u64).min(bytes)
}

impl LvmThinBackend {
    /// Fills in what `lvs` cannot tell about one volume: encryption, the
    /// filesystem, where it is mounted and its usage.
    async fn probe_object(&self, rows: &[LvRow], obj: &mut VolumeObject) -> Result<(), HostError> {
        let Ok(names) = Names::of(obj) else {
            // A malformed id: an orphan, reported as lvs shows it.
            return Ok(());
        };
        if !rows.iter().any(|r| r.name == names.lv && r.active()) {
            return Ok(());
        }
        let lv_sig = self.signature(&names.lv_path()).await?;
        let (device, header_bytes) = match &lv_sig {
            Signature::Found(t) if t == "crypto_LUKS" => {
                obj.encrypted = true;
                match self.luks_mapping(&names).await? {
                    Some(m) => (Some(names.mapper_path()), m.offset_bytes),
                    None => {
                        obj.unlocked = false;
                        (None, 0)
                    }
                }
            }
            _ => (Some(names.lv_path()), 0),
        };
        let Some(device) = device else {
            return Ok(());
        };
        let sig = if device == names.lv_path() {
            lv_sig
        } else {
            self.signature(&device).await?
        };
        if sig != Signature::Found("ext4".into()) {
            return Ok(());
        }
        obj.has_filesystem = true;
        let fs = self.ext4_stats(&device).await?;
        // Counted with the LUKS header so that a complete volume has
        // filesystem_bytes == size_bytes, encrypted or not.
        obj.filesystem_bytes = fs.bytes() + header_bytes;
        let mounts = self.mounts(&device).await?;
        match mounts.first() {
            Some(m) => {
                obj.mounted_at = Some(m.target.clone());
                obj.used_bytes = m.used_bytes;
                obj.available_bytes = m.available_bytes;
            }
            None => {
                obj.used_bytes =
                    (fs.block_count - fs.free_blocks.min(fs.block_count)) * fs.block_size;
                obj.available_bytes = fs.free_blocks * fs.block_size;
            }
        }

        Ok(())
    }

    pub fn new(runner: Runner, key_dir: PathBuf) -> LvmThinBackend {
        LvmThinBackend { runner, key_dir }
    }

    async fn run(
        &self,
        op: &'static str,
        object: &str,
        program: &str,
        args: &[&str],
    ) -> Result<Output, HostError> {
        self.runner
            .run(program, args)
            .await
            .map_err(|e| HostError::storage(op, object, e))
    }

    /// Every LV of group `vg`.
    async fn lv_rows(&self, vg: &str) -> Result<Vec<LvRow>, HostError> {
        let mut args = LVS_VOLUME_ARGS.to_vec();
        args.push(vg);
        let out = self
            .run("list logical volumes of", vg, "lvs", &args)
            .await?;
        parse_lv_rows(&out.stdout)
    }

    async fn vg_exists(&self, vg: &str) -> Result<bool, HostError> {
        let out =
            self.runner.run("vgs", VGS_ARGS).await.map_err(|e| {
                HostError::from_command(e, |source| HostError::VolumeGroups { source })
            })?;
        Ok(parse_vgs(&out.stdout)?.iter().any(|g| g.name == vg))
    }

    /// `blkid -p` on `device`: low-level probing, no cache. Status 2 is
    /// "nothing found"; 8 is "ambivalent" (several signatures), which is
    /// as much "not blank" as one signature.
    async fn signature(&self, device: &str) -> Result<Signature, HostError> {
        let out = self
            .runner
            .run_allow_status("blkid", &["-p", "-o", "export", device], &[2, 8])
            .await
            .map_err(|e| HostError::storage("probe", device, e))?;
        Ok(match out.status {
            2 => Signature::Blank,
            8 => Signature::Found("several signatures".into()),
            _ => parse_blkid_export(&out.stdout),
        })
    }

    /// The open LUKS mapping of a volume, if any.
    async fn luks_mapping(&self, names: &Names) -> Result<Option<LuksMapping>, HostError> {
        let mapper = names.mapper_name();
        // Status 4: "is inactive" (no such mapping).
        let out = self
            .runner
            .run_allow_status("cryptsetup", &["status", &mapper], &[4])
            .await
            .map_err(|e| HostError::storage("query LUKS mapping", mapper.as_str(), e))?;
        if out.status == 4 {
            return Ok(None);
        }
        parse_cryptsetup_status(&out.stdout).map(Some)
    }

    async fn ext4_stats(&self, device: &str) -> Result<Ext4Stats, HostError> {
        let out = self
            .run(
                "read the filesystem of",
                device,
                "dumpe2fs",
                &["-h", device],
            )
            .await?;
        parse_dumpe2fs(&out.stdout)
    }

    /// Where `device` is mounted; empty when it is not (or does not exist).
    async fn mounts(&self, device: &str) -> Result<Vec<Mount>, HostError> {
        let out = self
            .runner
            .run_allow_status(
                "findmnt",
                &["-J", "-b", "-o", FINDMNT_COLUMNS, "--source", device],
                &[1],
            )
            .await
            .map_err(|e| HostError::storage("list mounts of", device, e))?;
        if out.status == 1 {
            return Ok(Vec::new());
        }
        parse_findmnt(&out.stdout)
    }

    /// What is mounted at `path`, if anything.
    async fn mounted_at(&self, path: &str) -> Result<Option<String>, HostError> {
        let out = self
            .runner
            .run_allow_status(
                "findmnt",
                &["-J", "-b", "-o", "TARGET,SOURCE", "--mountpoint", path],
                &[1],
            )
            .await
            .map_err(|e| HostError::storage("list mounts at", path, e))?;
        if out.status == 1 {
            return Ok(None);
        }
        let root: Value = serde_json::from_str(&out.stdout)
            .map_err(|e| HostError::parse("findmnt output", e.to_string()))?;
        Ok(root
            .get("filesystems")
            .and_then(Value::as_array)
            .and_then(|fs| fs.first())
            .and_then(|fs| fs.get("source"))
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    /// Activates the LV unless its device node is there.
    async fn ensure_active(&self, names: &Names) -> Result<(), HostError> {
        if Path::new(&names.lv_path()).exists() {
            return Ok(());
        }
        self.run(
            "activate",
            &names.object(),
            "lvchange",
            &["-ay", &names.object()],
        )
        .await?;
        Ok(())
    }

    /// The device holding the filesystem: the LUKS mapping when the LV
    /// holds LUKS (`None` while it is not open), else the LV.
    async fn data_device(&self, names: &Names) -> Result<Option<String>, HostError> {
        match self.signature(&names.lv_path()).await? {
            Signature::Found(t) if t == "crypto_LUKS" => {
                Ok(self.luks_mapping(names).await?.map(|_| names.mapper_path()))
            }
            _ => Ok(Some(names.lv_path())),
        }
    }

    /// Unmounts every mount of the volume's devices; returns whether any
    /// was mounted.
    async fn unmount_all(&self, names: &Names) -> Result<bool, HostError> {
        let mut any = false;
        for device in [names.mapper_path(), names.lv_path()] {
            if !Path::new(&device).exists() {
                continue;
            }
            // Deepest first, in case something was mounted below a mount.
            let mut mounts = self.mounts(&device).await?;
            mounts.sort_by_key(|m| std::cmp::Reverse(m.target.len()));
            for m in mounts {
                self.run("unmount", &m.target, "umount", &[&m.target])
                    .await?;
                any = true;
            }
        }
        Ok(any)
    }

    async fn close_luks(&self, names: &Names) -> Result<(), HostError> {
        if self.luks_mapping(names).await?.is_some() {
            let mapper = names.mapper_name();
            self.run(
                "close LUKS mapping",
                &mapper,
                "cryptsetup",
                &["close", &mapper],
            )
            .await?;
        }
        Ok(())
    }

    async fn open_luks(&self, names: &Names, read_only: bool) -> Result<(), HostError> {
        if self.luks_mapping(names).await?.is_some() {
            return Ok(());
        }
        let key = super::key_path(&self.key_dir, &names.id);
        if !key.exists() {
            // A new key would not open the existing header; generating one
            // would only hide the loss.
            return Err(HostError::Refused {
                object: names.object(),
                reason: format!("holds LUKS but its key file {} is missing", key.display()),
            });
        }
        let key = key.display().to_string();
        let (lv_path, mapper) = (names.lv_path(), names.mapper_name());
        let mut args = vec!["open", "--key-file", &key];
        if read_only {
            args.push("--readonly");
        }
        args.extend([lv_path.as_str(), mapper.as_str()]);
        self.run("open LUKS on", &names.object(), "cryptsetup", &args)
            .await?;
        Ok(())
    }

    /// Brings the LV, the LUKS mapping and the filesystem up to `size`
    /// (never down), each step only if it is behind, so that it also
    /// finishes an interrupted grow.
    async fn grow(&self, names: &Names, size: u64) -> Result<(), HostError> {
        let object = names.object();
        let rows = self.lv_rows(&names.vg).await?;
        let lv = rows
            .iter()
            .find(|r| r.name == names.lv)
            .ok_or_else(|| HostError::Refused {
                object: object.clone(),
                reason: "the LV no longer exists".into(),
            })?;
        if size < lv.size_bytes {
            return Err(HostError::Unsupported {
                object,
                what: "shrinking an ext4 volume".into(),
            });
        }
        let mut lv_size = lv.size_bytes;
        if size > lv_size {
            let size_arg = format!("{size}b");
            self.run(
                "grow volume",
                &object,
                "lvextend",
                &["-L", &size_arg, &object],
            )
            .await?;
            lv_size = size;
        }
        self.ensure_active(names).await?;

        let device = match self.signature(&names.lv_path()).await? {
            Signature::Found(t) if t == "crypto_LUKS" => {
                let Some(mapping) = self.luks_mapping(names).await? else {
                    // Opening it later sizes the mapping to the whole LV.
                    return Ok(());
                };
                if mapping.offset_bytes + mapping.size_bytes < lv_size {
                    let key = super::key_path(&self.key_dir, &names.id)
                        .display()
                        .to_string();
                    let mapper = names.mapper_name();
                    self.run(
                        "grow LUKS mapping of",
                        &object,
                        "cryptsetup",
                        &["resize", &mapper, "--key-file", &key],
                    )
                    .await?;
                }
                names.mapper_path()
            }
            Signature::Found(t) if t == "ext4" => names.lv_path(),
            // Nothing to grow yet: prepare makes the filesystem full size.
            _ => return Ok(()),
        };
        if self.signature(&device).await? != Signature::Found("ext4".into()) {
            return Ok(());
        }
        let device_bytes = match self.luks_mapping(names).await? {
            Some(m) if device == names.mapper_path() => m.size_bytes,
            _ => lv_size,
        };
        let fs = self.ext4_stats(&device).await?;
        if fs.bytes() + fs.block_size > device_bytes {
            return Ok(());
        }
        if self.mounts(&device).await?.is_empty() {
            // resize2fs insists on a freshly checked filesystem offline.
            // Status 1: errors were corrected.
            self.runner
                .run_allow_status("e2fsck", &["-f", "-p", &device], &[1])
                .await
                .map_err(|e| HostError::storage("check filesystem of", object.as_str(), e))?;
        }
        self.run("grow filesystem of", &object, "resize2fs", &[&device])
            .await?;
        Ok(())
    }

    /// Finishes or removes what an interrupted rollback left: a copy whose
    /// snapshot still exists is a spare (removed); a copy whose snapshot is
    /// gone is the snapshot (renamed back).
    async fn settle_rollback_copies(&self, names: &Names, rows: &[LvRow]) -> Result<(), HostError> {
        let prefix = format!("coloc-{}-rb-", names.id);
        for row in rows {
            let Some(snap) = row.name.strip_prefix(&prefix) else {
                continue;
            };
            let snap_lv = names.snapshot_lv(snap);
            let copy = format!("{}/{}", names.vg, row.name);
            if rows.iter().any(|r| r.name == snap_lv) {
                self.run("remove rollback copy", &copy, "lvremove", &["-y", &copy])
                    .await?;
            } else {
                self.rename_copy_into_snapshot(names, &row.name, &snap_lv)
                    .await?;
            }
        }
        Ok(())
    }

    async fn rename_copy_into_snapshot(
        &self,
        names: &Names,
        copy: &str,
        snap_lv: &str,
    ) -> Result<(), HostError> {
        let object = format!("{}/{snap_lv}", names.vg);
        self.run(
            "restore snapshot",
            &object,
            "lvrename",
            &[&names.vg, copy, snap_lv],
        )
        .await?;
        self.retag_snapshot(names, &object).await
    }

    /// One metadata update: the snapshot tag on, the rollback tag off.
    async fn retag_snapshot(&self, names: &Names, object: &str) -> Result<(), HostError> {
        let (snap_tag, rb_tag) = (names.snapshot_tag(), names.rollback_tag());
        self.run(
            "tag snapshot",
            object,
            "lvchange",
            &["--addtag", &snap_tag, "--deltag", &rb_tag, object],
        )
        .await?;
        Ok(())
    }

    /// Snapshots of the volume (tag and name), oldest first.
    fn snapshot_rows<'a>(names: &Names, rows: &'a [LvRow]) -> Vec<(&'a str, &'a LvRow)> {
        snapshots_of(names.id.as_str(), rows)
    }
}

/// Snapshot LVs of volume `id`: tagged `coloc_snapshot_<id>` and named
/// `coloc-<id>-snap-<name>`, oldest first (ties by name).
fn snapshots_of<'a>(id: &str, rows: &'a [LvRow]) -> Vec<(&'a str, &'a LvRow)> {
    let tag = format!("{LVM_SNAPSHOT_TAG_PREFIX}{id}");
    let prefix = format!("coloc-{id}-snap-");
    let mut snaps: Vec<(&str, &LvRow)> = rows
        .iter()
        .filter(|r| r.has_tag(&tag))
        .filter_map(|r| {
            r.name
                .strip_prefix(&prefix)
                .filter(|n| !n.is_empty())
                .map(|n| (n, r))
        })
        .collect();
    snaps.sort_by(|a, b| (a.1.created_unix, a.0).cmp(&(b.1.created_unix, b.0)));
    snaps
}

/// Parses `lvs --reportformat json --units b --nosuffix` rows. `vg_name`,
/// `lv_name` and `lv_size` are required; `lv_tags`, `lv_attr`,
/// `data_percent` and `lv_time` are read when present (LVM prints an empty
/// string for a value it does not have, e.g. the data% of an inactive LV).
fn parse_lv_rows(json: &str) -> Result<Vec<LvRow>, HostError> {
    const WHAT: &str = "lvs output";
    let root: Value =
        serde_json::from_str(json).map_err(|e| HostError::parse(WHAT, e.to_string()))?;
    let reports = root
        .get("report")
        .and_then(Value::as_array)
        .ok_or_else(|| HostError::parse(WHAT, "no \"report\" array"))?;
    let mut rows = Vec::new();
    for report in reports {
        let Some(lvs) = report.get("lv") else {
            continue;
        };
        let lvs = lvs
            .as_array()
            .ok_or_else(|| HostError::parse(WHAT, "\"lv\" is not an array"))?;
        for lv in lvs {
            let text = |field: &str| lv.get(field).and_then(Value::as_str).unwrap_or("");
            let name = text("lv_name");
            let vg = text("vg_name");
            if name.is_empty() || vg.is_empty() {
                return Err(HostError::parse(WHAT, "an LV has no lv_name or vg_name"));
            }
            let size_bytes = lv
                .get("lv_size")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| HostError::parse(WHAT, format!("{vg}/{name}: no lv_size")))?;
            let data_percent = match text("data_percent") {
                "" => 0.0,
                p => p.parse::<f64>().map_err(|_| {
                    HostError::parse(WHAT, format!("{vg}/{name}: data_percent {p:?}"))
                })?,
            };
            let created_unix = match text("lv_time") {
                "" => 0,
                t => t.parse().map_err(|_| {
                    HostError::parse(WHAT, format!("{vg}/{name}: lv_time {t:?} is not Unix time"))
                })?,
            };
            rows.push(LvRow {
                vg: vg.to_owned(),
                name: name.to_owned(),
                size_bytes,
                tags: text("lv_tags")
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
                attr: text("lv_attr").to_owned(),
                data_percent,
                created_unix,
            });
        }
    }
    Ok(rows)
}

/// Parses the `lvs` output of one volume group (the columns of
/// `LVS_VOLUME_ARGS`) into the volumes it holds: every LV tagged
/// `coloc_volume_<id>`, with its snapshots. Only what `lvs` knows is
/// filled in; the device-level fields (encryption, filesystem, mount,
/// usage) are left at "plain, unlocked, no filesystem, not mounted" for
/// [`LvmThinBackend`] to probe.
pub fn parse_lvs(json: &str) -> Result<Vec<VolumeObject>, HostError> {
    let rows = parse_lv_rows(json)?;
    Ok(volumes_from_rows(&rows))
}

fn volumes_from_rows(rows: &[LvRow]) -> Vec<VolumeObject> {
    let mut volumes = Vec::new();
    for row in rows {
        let Some(id) = row
            .tags
            .iter()
            .find_map(|t| t.strip_prefix(LVM_ID_TAG_PREFIX))
        else {
            continue;
        };
        let snaps = snapshots_of(id, rows);
        // data% × size of a thin snapshot counts every block it maps,
        // including those it still shares with the volume and with other
        // snapshots: the sum is an upper bound of what deleting them frees.
        let snapshot_bytes = snaps.iter().map(|(_, r)| r.allocated_bytes()).sum();
        let used = row.allocated_bytes();
        volumes.push(VolumeObject {
            pool: row.vg.clone(),
            kind: PoolKind::LvmThin,
            object: format!("{}/{}", row.vg, row.name),
            volume_id: id.to_owned(),
            size_bytes: row.size_bytes,
            reservation_bytes: 0,
            used_bytes: used,
            available_bytes: row.size_bytes - used,
            snapshot_bytes,
            read_only: row.read_only(),
            encrypted: false,
            unlocked: true,
            has_filesystem: false,
            filesystem_bytes: 0,
            mounted_at: None,
            snapshots: snaps
                .iter()
                .map(|(name, r)| SnapshotObject {
                    name: (*name).to_owned(),
                    created_unix: r.created_unix,
                    used_bytes: r.allocated_bytes(),
                })
                .collect(),
        });
    }
    volumes
}

/// Thin pools `thin` in the `lvs` rows of [`LVS_POOL_ARGS`] and the groups
/// of `vgs`, as pools.
fn pools_from(vgs_json: &str, lvs_json: &str) -> Result<Vec<PoolObservation>, HostError> {
    let groups = parse_vgs(vgs_json)?;
    let rows = parse_lv_rows(lvs_json)?;
    Ok(groups
        .into_iter()
        .map(|g| {
            let thin = rows
                .iter()
                .find(|r| r.vg == g.name && r.name == LVM_THIN_POOL && r.attr.starts_with('t'));
            match thin {
                Some(t) => PoolObservation {
                    name: g.name,
                    kind: PoolKind::LvmThin,
                    size_bytes: t.size_bytes,
                    free_bytes: t.size_bytes - t.allocated_bytes(),
                    health: if t.active() { "ONLINE" } else { "INACTIVE" }.into(),
                },
                None => PoolObservation {
                    name: g.name,
                    kind: PoolKind::LvmThin,
                    size_bytes: g.size_bytes,
                    free_bytes: g.free_bytes,
                    health: "NO-THIN-POOL".into(),
                },
            }
        })
        .collect())
}

/// `blkid -p -o export` of a device where something was found: its `TYPE`,
/// else its `PTTYPE`, else a generic word (blkid found *something*).
fn parse_blkid_export(text: &str) -> Signature {
    let value = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_owned())
    };
    Signature::Found(
        value("TYPE")
            .or_else(|| value("PTTYPE").map(|p| format!("{p} partition table")))
            .unwrap_or_else(|| "an unknown signature".into()),
    )
}

/// `cryptsetup status <name>` of an active mapping: `offset:` and `size:`
/// are in 512-byte sectors whatever the encryption sector size.
fn parse_cryptsetup_status(text: &str) -> Result<LuksMapping, HostError> {
    const WHAT: &str = "cryptsetup status output";
    let sectors = |key: &str| -> Result<u64, HostError> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter_map(|rest| rest.trim().strip_suffix("sectors"))
            .find_map(|n| n.trim().parse::<u64>().ok())
            .map(|n| n * 512)
            .ok_or_else(|| HostError::parse(WHAT, format!("no {key:?} in sectors")))
    };
    Ok(LuksMapping {
        offset_bytes: sectors("offset:")?,
        size_bytes: sectors("size:")?,
    })
}

/// `dumpe2fs -h`: block count, block size and free blocks.
fn parse_dumpe2fs(text: &str) -> Result<Ext4Stats, HostError> {
    const WHAT: &str = "dumpe2fs output";
    let field = |key: &str| -> Result<u64, HostError> {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == key)
            .and_then(|(_, v)| v.trim().parse().ok())
            .ok_or_else(|| HostError::parse(WHAT, format!("no {key:?}")))
    };
    Ok(Ext4Stats {
        block_count: field("Block count")?,
        block_size: field("Block size")?,
        free_blocks: field("Free blocks")?,
    })
}

/// `findmnt -J -b -o TARGET,SOURCE,SIZE,USED,AVAIL,OPTIONS`.
fn parse_findmnt(json: &str) -> Result<Vec<Mount>, HostError> {
    const WHAT: &str = "findmnt output";
    let root: Value =
        serde_json::from_str(json).map_err(|e| HostError::parse(WHAT, e.to_string()))?;
    let filesystems = root
        .get("filesystems")
        .and_then(Value::as_array)
        .ok_or_else(|| HostError::parse(WHAT, "no \"filesystems\" array"))?;
    let mut mounts = Vec::new();
    // A mount below another one is a "children" array of its parent.
    let mut stack: Vec<&Value> = filesystems.iter().collect();
    while let Some(fs) = stack.pop() {
        let target = fs
            .get("target")
            .and_then(Value::as_str)
            .ok_or_else(|| HostError::parse(WHAT, "a mount has no target"))?;
        let bytes = |field: &str| fs.get(field).and_then(Value::as_u64).unwrap_or(0);
        let read_only = fs
            .get("options")
            .and_then(Value::as_str)
            .is_some_and(|o| o.split(',').any(|opt| opt == "ro"));
        mounts.push(Mount {
            target: target.to_owned(),
            size_bytes: bytes("size"),
            used_bytes: bytes("used"),
            available_bytes: bytes("avail"),
            read_only,
        });
        if let Some(children) = fs.get("children").and_then(Value::as_array) {
            stack.extend(children);
        }
    }
    mounts.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(mounts)
}

fn mount_options(read_only: bool) -> &'static str {
    if read_only {
        "ro,nodev,nosuid"
    } else {
        "rw,nodev,nosuid"
    }
}

/// Creates the mount point and missing parents, mode 0755.
fn create_mount_point(path: &str) -> Result<(), HostError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|source| HostError::Io {
            what: "cannot create mount point",
            path: path.to_owned(),
            source,
        })
}

#[async_trait]
impl VolumeBackend for LvmThinBackend {
    fn kind(&self) -> PoolKind {
        PoolKind::LvmThin
    }

    async fn pools(&self) -> Result<Vec<PoolObservation>, HostError> {
        let vgs =
            self.runner.run("vgs", VGS_ARGS).await.map_err(|e| {
                HostError::from_command(e, |source| HostError::VolumeGroups { source })
            })?;
        let lvs = self
            .run(
                "list logical volumes",
                "all volume groups",
                "lvs",
                LVS_POOL_ARGS,
            )
            .await?;
        pools_from(&vgs.stdout, &lvs.stdout)
    }

    async fn import_pool(&self, name: &PoolName) -> Result<bool, HostError> {
        if !self.vg_exists(name.as_str()).await? {
            return Ok(false);
        }
        self.run(
            "activate volume group",
            name.as_str(),
            "vgchange",
            &["-ay", name.as_str()],
        )
        .await?;
        Ok(true)
    }

    async fn create_pool(
        &self,
        name: &PoolName,
        layout: PoolLayout,
        devices: &[String],
        force: bool,
    ) -> Result<(), HostError> {
        let vg = name.as_str();
        let refuse = |reason: &str| HostError::Refused {
            object: vg.to_owned(),
            reason: reason.to_owned(),
        };
        if layout != PoolLayout::Single {
            return Err(refuse("LVM pools are single; use ZFS for mirrors"));
        }
        // Concatenating disks would lose the whole pool with any one of
        // them; redundancy and multi-disk pools are ZFS's job.
        let [device] = devices else {
            return Err(refuse(&format!(
                "an LVM pool takes exactly one disk, {} given; use ZFS to combine disks",
                devices.len()
            )));
        };
        if !device.starts_with("/dev/") {
            return Err(HostError::InvalidDevice {
                device: device.clone(),
                reason: "not a /dev path",
            });
        }

        if !self.vg_exists(vg).await? {
            // pvcreate on a PV left by an interrupted creation (PV, no
            // group) succeeds again without force, so no special case.
            let mut args = Vec::new();
            if force {
                args.extend(["-ff", "-y"]);
            }
            args.push(device.as_str());
            self.run("initialise physical volume", device, "pvcreate", &args)
                .await?;
            self.run("create volume group", vg, "vgcreate", &[vg, device])
                .await?;
        }

        let lvs = self
            .run("list logical volumes", vg, "lvs", LVS_POOL_ARGS)
            .await?;
        let has_thin = parse_lv_rows(&lvs.stdout)?
            .iter()
            .any(|r| r.vg == vg && r.name == LVM_THIN_POOL);
        if !has_thin {
            // 95 %: the rest of the group stays free for the pool's
            // metadata to grow and for its spare metadata LV.
            self.run(
                "create thin pool in",
                vg,
                "lvcreate",
                &[
                    "--yes",
                    "--type",
                    "thin-pool",
                    "-l",
                    "95%FREE",
                    "-n",
                    LVM_THIN_POOL,
                    vg,
                ],
            )
            .await?;
        }
        Ok(())
    }

    async fn volumes(&self, pool: &PoolName) -> Result<Vec<VolumeObject>, HostError> {
        let rows = self.lv_rows(pool.as_str()).await?;
        let mut volumes = volumes_from_rows(&rows);
        for obj in &mut volumes {
            self.probe_object(&rows, obj).await?;
        }
        Ok(volumes)
    }

    async fn volume(
        &self,
        pool: &PoolName,
        id: &VolumeId,
    ) -> Result<Option<VolumeObject>, HostError> {
        // One `lvs` for the group, but the devices of this volume alone
        // are probed (blkid, cryptsetup, dumpe2fs, findmnt).
        let rows = self.lv_rows(pool.as_str()).await?;
        let Some(mut obj) = volumes_from_rows(&rows)
            .into_iter()
            .find(|o| o.volume_id == id.as_str())
        else {
            return Ok(None);
        };
        self.probe_object(&rows, &mut obj).await?;
        Ok(Some(obj))
    }

    async fn create_volume(&self, v: &VolumeParams) -> Result<(), HostError> {
        let names = Names::of_params(v);
        if v.reservation_bytes > 0 {
            return Err(HostError::Unsupported {
                object: names.object(),
                what: "a reservation on LVM thin provisioning".into(),
            });
        }
        if v.encrypted {
            // Before the LV exists, so that an encrypted LV never exists
            // without its key.
            super::ensure_key_file(&self.key_dir, &v.id)?;
        }
        let size = format!("{}b", v.size_bytes);
        let id_tag = format!("{LVM_ID_TAG_PREFIX}{}", v.id);
        let tenant_tag = format!("{LVM_TENANT_TAG_PREFIX}{}", v.tenant);
        let thin = format!("{}/{LVM_THIN_POOL}", names.vg);
        self.run(
            "create volume",
            &names.object(),
            "lvcreate",
            &[
                "--yes",
                "--type",
                "thin",
                "-V",
                &size,
                "-n",
                &names.lv,
                "--addtag",
                &id_tag,
                "--addtag",
                &tenant_tag,
                "--setactivationskip",
                "n",
                &thin,
            ],
        )
        .await?;
        Ok(())
    }

    async fn prepare(&self, obj: &VolumeObject, v: &VolumeParams) -> Result<(), HostError> {
        let names = Names::of(obj)?;
        let object = names.object();
        self.ensure_active(&names).await?;
        let lv_path = names.lv_path();
        let device = if v.encrypted {
            match self.signature(&lv_path).await? {
                Signature::Found(t) if t == "crypto_LUKS" => {}
                Signature::Blank => {
                    let key = super::ensure_key_file(&self.key_dir, &names.id)?;
                    let key = key.display().to_string();
                    // The key is 32 random bytes: a slow PBKDF would add
                    // nothing but memory and time at every boot.
                    self.run(
                        "format LUKS on",
                        &object,
                        "cryptsetup",
                        &[
                            "luksFormat",
                            "--type",
                            "luks2",
                            "--batch-mode",
                            "--pbkdf",
                            "pbkdf2",
                            "--pbkdf-force-iterations",
                            "1000",
                            "--key-file",
                            &key,
                            &lv_path,
                        ],
                    )
                    .await?;
                }
                Signature::Found(other) => {
                    return Err(HostError::Refused {
                        object,
                        reason: format!("holds {other}; not formatting it as LUKS"),
                    });
                }
            }
            self.open_luks(&names, obj.read_only).await?;
            names.mapper_path()
        } else {
            lv_path
        };
        match self.signature(&device).await? {
            Signature::Found(t) if t == "ext4" => Ok(()),
            Signature::Found(other) => Err(HostError::Refused {
                object,
                reason: format!("holds {other}; not formatting"),
            }),
            Signature::Blank if obj.read_only => Err(HostError::Refused {
                object,
                reason: "is read-only and has no filesystem".into(),
            }),
            Signature::Blank => {
                let label = names.id.to_string();
                self.run(
                    "make filesystem on",
                    &object,
                    "mkfs.ext4",
                    &[
                        "-q",
                        "-b",
                        EXT4_BLOCK_SIZE,
                        "-L",
                        &label,
                        "-m",
                        "0",
                        "-E",
                        "lazy_itable_init=1",
                        &device,
                    ],
                )
                .await?;
                Ok(())
            }
        }
    }

    async fn resize(
        &self,
        obj: &VolumeObject,
        v: &VolumeParams,
        _allow_shrink: bool,
    ) -> Result<(), HostError> {
        if v.reservation_bytes > 0 {
            return Err(HostError::Unsupported {
                object: obj.object.clone(),
                what: "a reservation on LVM thin provisioning".into(),
            });
        }
        // allow_shrink does not matter: ext4 cannot shrink online and
        // LVM thin would not give the blocks back anyway.
        self.grow(&Names::of(obj)?, v.size_bytes).await
    }

    async fn set_read_only(&self, obj: &VolumeObject, read_only: bool) -> Result<(), HostError> {
        let names = Names::of(obj)?;
        let rows = self.lv_rows(&names.vg).await?;
        let current = rows
            .iter()
            .find(|r| r.name == names.lv)
            .map(LvRow::read_only);
        if current == Some(read_only) {
            // lvchange fails when asked for the permission the LV has.
            return Ok(());
        }
        let object = names.object();
        let permission = if read_only { "r" } else { "rw" };
        self.run(
            "change permission of",
            &object,
            "lvchange",
            &["-p", permission, &object],
        )
        .await?;
        Ok(())
    }

    async fn mount(&self, obj: &VolumeObject, v: &VolumeParams) -> Result<(), HostError> {
        let names = Names::of(obj)?;
        let object = names.object();
        self.ensure_active(&names).await?;
        let Some(device) = self.data_device(&names).await? else {
            return Err(HostError::Refused {
                object,
                reason: "is encrypted and not unlocked".into(),
            });
        };
        let path = v.mount_path.as_str();
        let read_only = obj.read_only;
        let mounts = self.mounts(&device).await?;
        match mounts.iter().find(|m| m.target == path) {
            Some(m) if m.read_only == read_only => {}
            Some(_) => {
                let options = format!("remount,{}", mount_options(read_only));
                self.run("remount", path, "mount", &["-o", &options, path])
                    .await?;
            }
            None => {
                if let Some(other) = self.mounted_at(path).await? {
                    return Err(HostError::Refused {
                        object: path.to_owned(),
                        reason: format!("{other} is already mounted there"),
                    });
                }
                create_mount_point(path)?;
                // nodev,nosuid: a member must not be able to plant a device
                // node or a setuid binary in tenant data.
                self.run(
                    "mount",
                    &object,
                    "mount",
                    &["-t", "ext4", "-o", mount_options(read_only), &device, path],
                )
                .await?;
            }
        }
        if !read_only {
            super::ensure_owner(Path::new(path), v.owner_uid, v.owner_gid)?;
        }
        Ok(())
    }

    async fn unmount(&self, obj: &VolumeObject) -> Result<(), HostError> {
        self.unmount_all(&Names::of(obj)?).await.map(drop)
    }

    async fn create_snapshot(
        &self,
        obj: &VolumeObject,
        name: &SnapshotName,
    ) -> Result<(), HostError> {
        let names = Names::of(obj)?;
        let rows = self.lv_rows(&names.vg).await?;
        let snap_lv = names.snapshot_lv(name.as_str());
        let snap_object = format!("{}/{snap_lv}", names.vg);
        if let Some(row) = rows.iter().find(|r| r.name == snap_lv) {
            // Renamed by an interrupted rollback but not yet re-tagged.
            if !row.has_tag(&names.snapshot_tag()) {
                self.retag_snapshot(&names, &snap_object).await?;
            }
            return Ok(());
        }
        let copy = names.rollback_lv(name.as_str());
        if rows.iter().any(|r| r.name == copy) {
            // A rollback merged the snapshot and died before putting its
            // copy back: the copy is the snapshot.
            return self
                .rename_copy_into_snapshot(&names, &copy, &snap_lv)
                .await;
        }
        let tag = names.snapshot_tag();
        self.run(
            "create snapshot",
            &snap_object,
            "lvcreate",
            &[
                "--yes",
                "-s",
                "-n",
                &snap_lv,
                "--addtag",
                &tag,
                "--setactivationskip",
                "n",
                &names.object(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn destroy_snapshot(
        &self,
        obj: &VolumeObject,
        name: &SnapshotName,
    ) -> Result<(), HostError> {
        let names = Names::of(obj)?;
        let rows = self.lv_rows(&names.vg).await?;
        let doomed: Vec<String> = [
            names.snapshot_lv(name.as_str()),
            names.rollback_lv(name.as_str()),
        ]
        .into_iter()
        .filter(|lv| rows.iter().any(|r| &r.name == lv))
        .map(|lv| format!("{}/{lv}", names.vg))
        .collect();
        for object in doomed {
            self.run("destroy snapshot", &object, "lvremove", &["-y", &object])
                .await?;
        }
        Ok(())
    }

    async fn rollback(
        &self,
        obj: &VolumeObject,
        v: &VolumeParams,
        name: &SnapshotName,
    ) -> Result<(), HostError> {
        let names = Names::of(obj)?;
        let object = names.object();
        let rows = self.lv_rows(&names.vg).await?;
        self.settle_rollback_copies(&names, &rows).await?;
        let rows = self.lv_rows(&names.vg).await?;
        let snaps = Self::snapshot_rows(&names, &rows);
        let Some(position) = snaps.iter().position(|(n, _)| *n == name.as_str()) else {
            return Err(HostError::Refused {
                object,
                reason: format!("has no snapshot {name}"),
            });
        };
        let later: Vec<&str> = snaps[position + 1..].iter().map(|(n, _)| *n).collect();
        if !later.is_empty() {
            return Err(HostError::Refused {
                object,
                reason: format!(
                    "{name} is not the most recent snapshot; delete {} first",
                    later.join(", ")
                ),
            });
        }
        let encrypted = obj.encrypted
            || self.signature(&names.lv_path()).await? == Signature::Found("crypto_LUKS".into());
        if encrypted && !super::key_path(&self.key_dir, &names.id).exists() {
            return Err(HostError::Refused {
                object,
                reason: "holds LUKS but its key file is missing".into(),
            });
        }

        // The merge only happens at once when nothing holds the volume open.
        let was_mounted = self.unmount_all(&names).await?;
        self.close_luks(&names).await?;

        let snap_lv = names.snapshot_lv(name.as_str());
        let copy = names.rollback_lv(name.as_str());
        let snap_object = format!("{}/{snap_lv}", names.vg);
        let rb_tag = names.rollback_tag();
        self.run(
            "copy snapshot",
            &snap_object,
            "lvcreate",
            &[
                "--yes",
                "-s",
                "-n",
                &copy,
                "--addtag",
                &rb_tag,
                "--setactivationskip",
                "n",
                &snap_object,
            ],
        )
        .await?;
        self.run(
            "roll back",
            &object,
            "lvconvert",
            &["--merge", "-y", &snap_object],
        )
        .await?;
        let rows = self.lv_rows(&names.vg).await?;
        if rows.iter().any(|r| r.name == snap_lv) {
            // Deferred merge: something still had the volume open.
            return Err(HostError::Refused {
                object,
                reason: "the merge was deferred because the volume is still in use; it completes when the LV is next activated"
                    .into(),
            });
        }
        self.rename_copy_into_snapshot(&names, &copy, &snap_lv)
            .await?;
        self.ensure_active(&names).await?;
        if encrypted {
            self.open_luks(&names, obj.read_only).await?;
        }
        // The snapshot may be smaller than the volume (taken before a grow).
        self.grow(&names, v.size_bytes).await?;
        if was_mounted {
            self.mount(obj, v).await?;
        }
        Ok(())
    }

    async fn destroy(&self, obj: &VolumeObject) -> Result<(), HostError> {
        let names = Names::of(obj)?;
        let rows = match self.lv_rows(&names.vg).await {
            Ok(rows) => rows,
            // The whole group is gone: so is the volume.
            Err(HostError::Storage {
                source: CommandError::Failed { stderr_tail, .. },
                ..
            }) if stderr_tail.contains("not found") => Vec::new(),
            Err(e) => return Err(e),
        };
        self.unmount_all(&names).await?;
        self.close_luks(&names).await?;
        let (snap_prefix, rb_prefix) = (
            format!("coloc-{}-snap-", names.id),
            format!("coloc-{}-rb-", names.id),
        );
        let dependents: Vec<String> = rows
            .iter()
            .filter(|r| {
                r.has_tag(&names.snapshot_tag())
                    || r.has_tag(&names.rollback_tag())
                    || r.name.starts_with(&snap_prefix)
                    || r.name.starts_with(&rb_prefix)
            })
            .map(|r| format!("{}/{}", names.vg, r.name))
            .collect();
        if !dependents.is_empty() {
            let mut args = vec!["-y"];
            args.extend(dependents.iter().map(String::as_str));
            self.run("destroy snapshots of", &names.object(), "lvremove", &args)
                .await?;
        }
        if rows.iter().any(|r| r.name == names.lv) {
            let object = names.object();
            self.run("destroy volume", &object, "lvremove", &["-y", &object])
                .await?;
        }
        super::remove_key_file(&self.key_dir, &names.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VGS: &str = include_str!("../../../tests/fixtures/storage/vgs-tank-and-bare.json");
    const LVS_POOLS: &str = include_str!("../../../tests/fixtures/storage/lvs-pools.json");
    const LVS_VOLUMES: &str = include_str!("../../../tests/fixtures/storage/lvs-tank-volumes.json");
    const LVS_AFTER_ROLLBACK: &str =
        include_str!("../../../tests/fixtures/storage/lvs-tank-after-rollback.json");
    const LVS_EMPTY: &str = include_str!("../../../tests/fixtures/storage/lvs-empty-vg.json");

    const PLAIN: &str = "0123456789abcdef";
    const LUKS: &str = "fedcba9876543210";

    #[test]
    fn pools_are_thin_pools_or_bare_groups() {
        let pools = pools_from(VGS, LVS_POOLS).unwrap();
        assert_eq!(pools.len(), 2, "{pools:?}");
        let tank = pools.iter().find(|p| p.name == "tank").unwrap();
        assert_eq!(tank.kind, PoolKind::LvmThin);
        assert_eq!(tank.health, "ONLINE");
        assert_eq!(tank.size_bytes, 2_025_848_832);
        // 3.36 % of the thin pool is used.
        assert_eq!(
            tank.free_bytes,
            2_025_848_832 - (2_025_848_832f64 * 0.0336).round() as u64
        );
        let other = pools.iter().find(|p| p.name == "other").unwrap();
        assert_eq!(other.health, "NO-THIN-POOL");
        assert_eq!(other.size_bytes, other.free_bytes);
        assert!(other.size_bytes > 2_000_000_000);
    }

    #[test]
    fn no_groups_no_pools() {
        let vgs = r#"{"report":[{"vg":[]}]}"#;
        assert!(pools_from(vgs, LVS_EMPTY).unwrap().is_empty());
    }

    #[test]
    fn volumes_carry_their_id_and_snapshots_oldest_first() {
        let volumes = parse_lvs(LVS_VOLUMES).unwrap();
        assert_eq!(volumes.len(), 2, "{volumes:?}");
        let plain = volumes.iter().find(|v| v.volume_id == PLAIN).unwrap();
        assert_eq!(plain.object, format!("tank/coloc-{PLAIN}"));
        assert_eq!(plain.pool, "tank");
        assert_eq!(plain.size_bytes, 134_217_728);
        assert!(!plain.read_only);
        let names: Vec<&str> = plain.snapshots.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["before-upgrade", "after"]);
        assert_eq!(plain.snapshots[0].created_unix, 1_795_899_121);
        assert_eq!(plain.snapshots[1].created_unix, 1_795_899_125);
        // data% × size, summed over the snapshots.
        let expected = percent_of(134_217_728, 10.06) + percent_of(134_217_728, 25.73);
        assert_eq!(plain.snapshot_bytes, expected);
        assert_eq!(
            plain.snapshots[0].used_bytes,
            percent_of(134_217_728, 10.06)
        );

        let luks = volumes.iter().find(|v| v.volume_id == LUKS).unwrap();
        assert_eq!(luks.size_bytes, 104_857_600);
        let names: Vec<&str> = luks.snapshots.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["nightly"]);
        // The thin pool itself is not a volume.
        assert!(volumes.iter().all(|v| !v.object.ends_with("/thin")));
    }

    #[test]
    fn after_a_rollback_the_copy_is_no_volume_and_no_snapshot() {
        let volumes = parse_lvs(LVS_AFTER_ROLLBACK).unwrap();
        assert_eq!(volumes.len(), 2);
        let plain = volumes.iter().find(|v| v.volume_id == PLAIN).unwrap();
        assert!(plain.read_only, "lv_attr Vri-aotz-- is read-only");
        let names: Vec<&str> = plain.snapshots.iter().map(|s| s.name.as_str()).collect();
        // The leftover coloc-<id>-rb-after is not listed; before-upgrade
        // lost its origin in the merge and is still a snapshot.
        assert_eq!(names, ["before-upgrade", "after"]);
        let luks = volumes.iter().find(|v| v.volume_id == LUKS).unwrap();
        assert_eq!(luks.size_bytes, 167_772_160);
        assert_eq!(luks.snapshots.len(), 1);

        let rows = parse_lv_rows(LVS_AFTER_ROLLBACK).unwrap();
        let copy = rows
            .iter()
            .find(|r| r.name == format!("coloc-{PLAIN}-rb-after"))
            .unwrap();
        assert!(copy.has_tag(&format!("coloc_rollback_{PLAIN}")));
    }

    #[test]
    fn an_empty_group_has_no_volumes() {
        assert!(parse_lvs(LVS_EMPTY).unwrap().is_empty());
    }

    #[test]
    fn a_malformed_id_tag_is_kept_verbatim_for_the_orphan_report() {
        let json = r#"{"report":[{"lv":[
            {"lv_name":"coloc-x", "vg_name":"tank", "lv_size":"67108864",
             "lv_tags":"coloc_volume_NOT-AN-ID", "lv_attr":"Vwi-a-tz--",
             "pool_lv":"thin", "origin":"", "data_percent":"", "lv_time":"1795899072"}]}]}"#;
        let volumes = parse_lvs(json).unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0].volume_id, "NOT-AN-ID");
        assert_eq!(volumes[0].used_bytes, 0);
        let err = Names::of(&volumes[0]).unwrap_err();
        assert!(matches!(err, HostError::Refused { .. }), "{err:?}");
    }

    #[test]
    fn lvs_without_size_or_with_a_date_is_a_parse_error() {
        let no_size = r#"{"report":[{"lv":[{"lv_name":"a","vg_name":"tank"}]}]}"#;
        assert!(matches!(parse_lvs(no_size), Err(HostError::Parse { .. })));
        let date = r#"{"report":[{"lv":[{"lv_name":"a","vg_name":"tank","lv_size":"1",
            "lv_time":"2026-11-28 20:51:12 +0000"}]}]}"#;
        assert!(matches!(parse_lvs(date), Err(HostError::Parse { .. })));
        assert!(matches!(
            parse_lvs("not json"),
            Err(HostError::Parse { .. })
        ));
    }

    #[test]
    fn blkid_names_what_it_found() {
        let ext4 = include_str!("../../../tests/fixtures/storage/blkid-ext4.txt");
        assert_eq!(parse_blkid_export(ext4), Signature::Found("ext4".into()));
        let luks = include_str!("../../../tests/fixtures/storage/blkid-luks.txt");
        assert_eq!(
            parse_blkid_export(luks),
            Signature::Found("crypto_LUKS".into())
        );
        assert_eq!(
            parse_blkid_export("DEVNAME=/dev/vdc\nPTTYPE=gpt\n"),
            Signature::Found("gpt partition table".into())
        );
        assert_eq!(
            parse_blkid_export("DEVNAME=/dev/vdc\n"),
            Signature::Found("an unknown signature".into())
        );
    }

    #[test]
    fn cryptsetup_status_gives_offset_and_size_in_bytes() {
        let text = include_str!("../../../tests/fixtures/storage/cryptsetup-status-active.txt");
        let m = parse_cryptsetup_status(text).unwrap();
        assert_eq!(m.offset_bytes, 16 * 1024 * 1024);
        assert_eq!(m.size_bytes, 172_032 * 512);
        // Header + payload = the 100 MiB LV.
        assert_eq!(m.offset_bytes + m.size_bytes, 104_857_600);
        let inactive =
            include_str!("../../../tests/fixtures/storage/cryptsetup-status-inactive.txt");
        assert!(parse_cryptsetup_status(inactive).is_err());
    }

    #[test]
    fn dumpe2fs_gives_the_filesystem_size() {
        // Recorded from `dumpe2fs -h` in the node image (e2fsprogs 1.47.0).
        let text = "Filesystem volume name:   0123456789abcdef\n\
            Block count:              131072\n\
            Reserved block count:     0\n\
            Overhead clusters:        13962\n\
            Free blocks:              96118\n\
            Free inodes:              32757\n\
            First block:              1\n\
            Block size:               1024\n\
            Fragment size:            1024\n";
        let fs = parse_dumpe2fs(text).unwrap();
        assert_eq!(fs.bytes(), 134_217_728);
        assert_eq!(fs.free_blocks, 96_118);
        assert!(parse_dumpe2fs("Block count: 12\n").is_err());
    }

    #[test]
    fn findmnt_gives_target_usage_and_mode() {
        let plain = include_str!("../../../tests/fixtures/storage/findmnt-plain.json");
        let mounts = parse_findmnt(plain).unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].target, "/srv/tenants/asso-velo/data");
        assert_eq!(mounts[0].used_bytes, 20_986_880);
        assert_eq!(mounts[0].available_bytes, 96_345_088);
        let luks = include_str!("../../../tests/fixtures/storage/findmnt-luks.json");
        let mounts = parse_findmnt(luks).unwrap();
        assert_eq!(mounts[0].target, "/srv/tenants/asso-velo/secret");
        assert!(!mounts[0].read_only);
        let ro = include_str!("../../../tests/fixtures/storage/findmnt-ro.json");
        let mounts = parse_findmnt(ro).unwrap();
        assert!(mounts[0].read_only);
        assert_eq!(mounts[0].size_bytes, 120_015_872);
    }

    #[test]
    fn names_come_from_the_object_and_refuse_odd_ones() {
        let mut obj = parse_lvs(LVS_VOLUMES).unwrap().remove(0);
        let names = Names::of(&obj).unwrap();
        assert_eq!(names.lv_path(), format!("/dev/tank/coloc-{PLAIN}"));
        assert_eq!(names.mapper_path(), format!("/dev/mapper/coloc-{PLAIN}"));
        assert_eq!(names.snapshot_lv("x"), format!("coloc-{PLAIN}-snap-x"));
        assert_eq!(names.rollback_lv("x"), format!("coloc-{PLAIN}-rb-x"));
        obj.object = "tank/../../etc".into();
        assert!(Names::of(&obj).is_err());
        obj.object = "tank/-rf".into();
        assert!(Names::of(&obj).is_err());
    }

    #[tokio::test]
    async fn create_volume_refuses_a_reservation_before_running_anything() {
        let backend = LvmThinBackend::new(Runner::new(), PathBuf::from("/nonexistent/keys"));
        let v = VolumeParams {
            id: VolumeId::new(PLAIN).unwrap(),
            tenant: "asso-velo".parse().unwrap(),
            name: "data".parse().unwrap(),
            pool: "tank".parse().unwrap(),
            size_bytes: 134_217_728,
            reservation_bytes: 67_108_864,
            encrypted: true,
            mount_path: "/srv/tenants/asso-velo/data".into(),
            owner_uid: 200_000,
            owner_gid: 200_000,
        };
        let err = backend.create_volume(&v).await.unwrap_err();
        assert!(matches!(err, HostError::Unsupported { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn create_pool_refuses_mirrors_and_several_disks() {
        let backend = LvmThinBackend::new(Runner::new(), PathBuf::from("/nonexistent/keys"));
        let pool: PoolName = "tank".parse().unwrap();
        let disks = ["/dev/vdc".to_owned(), "/dev/vdd".to_owned()];
        let err = backend
            .create_pool(&pool, PoolLayout::Mirror, &disks, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("use ZFS for mirrors"), "{err}");
        let err = backend
            .create_pool(&pool, PoolLayout::Single, &disks, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("exactly one disk"), "{err}");
    }

    /// The whole life of a plain and an encrypted volume on a real disk.
    /// Destructive: run only inside a VM, as root, with
    /// `COLOC_LVM_TEST_DISK=/dev/vdX cargo test -- --ignored real_lvm`.
    /// It creates the group `coloctest` on that disk and wipes the disk at
    /// the end.
    #[tokio::test]
    #[ignore = "destructive: needs root, LVM, cryptsetup and a blank disk"]
    async fn real_lvm_volume_lifecycle() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let disk = std::env::var("COLOC_LVM_TEST_DISK")
            .expect("set COLOC_LVM_TEST_DISK to a blank disk of a test VM");
        let runner = Runner::new();
        let keys = tempfile::tempdir().unwrap();
        let mounts = tempfile::tempdir().unwrap();
        let backend = LvmThinBackend::new(runner.clone(), keys.path().join("keys"));
        let pool: PoolName = "coloctest".parse().unwrap();
        const MIB: u64 = 1024 * 1024;

        assert!(!backend.import_pool(&pool).await.unwrap());
        let devices = [disk.clone()];
        backend
            .create_pool(&pool, PoolLayout::Single, &devices, false)
            .await
            .unwrap();
        backend
            .create_pool(&pool, PoolLayout::Single, &devices, false)
            .await
            .unwrap();
        assert!(backend.import_pool(&pool).await.unwrap());
        let pools = backend.pools().await.unwrap();
        let p = pools.iter().find(|p| p.name == "coloctest").unwrap();
        assert_eq!(p.health, "ONLINE");
        assert!(p.free_bytes > 0 && p.free_bytes <= p.size_bytes);

        let params = |id: &str, name: &str, encrypted: bool, size: u64| VolumeParams {
            id: VolumeId::new(id).unwrap(),
            tenant: "asso-test".parse().unwrap(),
            name: name.parse().unwrap(),
            pool: pool.clone(),
            size_bytes: size,
            reservation_bytes: 0,
            encrypted,
            mount_path: mounts
                .path()
                .join("asso-test")
                .join(name)
                .display()
                .to_string(),
            owner_uid: 200_000,
            owner_gid: 200_000,
        };
        let mut plain = params("00000000000000a1", "data", false, 64 * MIB);
        let mut secret = params("00000000000000e1", "secret", true, 64 * MIB);
        let find = |vols: &[VolumeObject], v: &VolumeParams| {
            vols.iter()
                .find(|o| o.volume_id == v.id.as_str())
                .cloned()
                .unwrap()
        };
        async fn read(path: &str) -> String {
            tokio::fs::read_to_string(format!("{path}/file"))
                .await
                .unwrap()
        }
        async fn write(path: &str, text: &str) {
            tokio::fs::write(format!("{path}/file"), text)
                .await
                .unwrap();
            nix::unistd::sync();
        }

        for v in [&plain, &secret] {
            backend.create_volume(v).await.unwrap();
            assert!(backend.create_volume(v).await.is_err(), "exists");
        }
        let vols = backend.volumes(&pool).await.unwrap();
        assert_eq!(vols.len(), 2);
        assert!(!find(&vols, &plain).has_filesystem);
        for v in [&plain, &secret] {
            let obj = find(&vols, v);
            backend.prepare(&obj, v).await.unwrap();
            backend.prepare(&obj, v).await.unwrap();
        }
        // The plain LV must not be turned into LUKS, nor LUKS formatted.
        let vols = backend.volumes(&pool).await.unwrap();
        let err = backend
            .prepare(
                &find(&vols, &plain),
                &VolumeParams {
                    encrypted: true,
                    ..plain.clone()
                },
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("holds ext4"), "{err}");
        let err = backend
            .prepare(
                &find(&vols, &secret),
                &VolumeParams {
                    encrypted: false,
                    ..secret.clone()
                },
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("holds crypto_LUKS"), "{err}");

        for v in [&plain, &secret] {
            let obj = find(&vols, v);
            assert!(obj.has_filesystem && obj.unlocked, "{obj:?}");
            assert_eq!(obj.encrypted, v.encrypted);
            assert_eq!(obj.filesystem_bytes, v.size_bytes, "{obj:?}");
            backend.mount(&obj, v).await.unwrap();
            backend.mount(&obj, v).await.unwrap();
            let meta = std::fs::metadata(&v.mount_path).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (200_000, 200_000));
            assert_eq!(meta.permissions().mode() & 0o7777, 0o770);
            write(&v.mount_path, "one").await;
            backend
                .create_snapshot(&obj, &"first".parse().unwrap())
                .await
                .unwrap();
            backend
                .create_snapshot(&obj, &"first".parse().unwrap())
                .await
                .unwrap();
            write(&v.mount_path, "two").await;
        }

        // Grow online, both.
        plain.size_bytes = 128 * MIB;
        secret.size_bytes = 128 * MIB;
        let vols = backend.volumes(&pool).await.unwrap();
        for v in [&plain, &secret] {
            let obj = find(&vols, v);
            assert_eq!(obj.mounted_at.as_deref(), Some(v.mount_path.as_str()));
            backend.resize(&obj, v, false).await.unwrap();
            backend.resize(&obj, v, false).await.unwrap();
        }
        let vols = backend.volumes(&pool).await.unwrap();
        for v in [&plain, &secret] {
            let obj = find(&vols, v);
            assert_eq!(obj.size_bytes, 128 * MIB);
            assert_eq!(obj.filesystem_bytes, 128 * MIB, "{obj:?}");
            let shrink = VolumeParams {
                size_bytes: 64 * MIB,
                ..v.clone()
            };
            let err = backend.resize(&obj, &shrink, true).await.unwrap_err();
            assert!(matches!(err, HostError::Unsupported { .. }), "{err:?}");
        }

        // Rollback only to the latest snapshot, keeping it.
        let obj = find(&vols, &plain);
        backend
            .create_snapshot(&obj, &"second".parse().unwrap())
            .await
            .unwrap();
        let err = backend
            .rollback(&obj, &plain, &"first".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("second"), "{err}");
        backend
            .destroy_snapshot(&obj, &"second".parse().unwrap())
            .await
            .unwrap();
        backend
            .destroy_snapshot(&obj, &"second".parse().unwrap())
            .await
            .unwrap();
        for v in [&plain, &secret] {
            let obj = find(&vols, v);
            backend
                .rollback(&obj, v, &"first".parse().unwrap())
                .await
                .unwrap();
            assert_eq!(read(&v.mount_path).await, "one");
        }
        let vols = backend.volumes(&pool).await.unwrap();
        for v in [&plain, &secret] {
            let obj = find(&vols, v);
            let snaps: Vec<&str> = obj.snapshots.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(snaps, ["first"]);
            assert_eq!(obj.mounted_at.as_deref(), Some(v.mount_path.as_str()));
            // The snapshot was 64 MiB; the rollback grew it back.
            assert_eq!(obj.size_bytes, 128 * MIB);
            assert_eq!(obj.filesystem_bytes, 128 * MIB, "{obj:?}");
        }

        // Retained: unmounted, read-only, mounted read-only when asked.
        let obj = find(&vols, &plain);
        backend.unmount(&obj).await.unwrap();
        backend.unmount(&obj).await.unwrap();
        backend.set_read_only(&obj, true).await.unwrap();
        backend.set_read_only(&obj, true).await.unwrap();
        let vols = backend.volumes(&pool).await.unwrap();
        let obj = find(&vols, &plain);
        assert!(obj.read_only && obj.mounted_at.is_none(), "{obj:?}");
        backend.mount(&obj, &plain).await.unwrap();
        assert!(
            tokio::fs::write(format!("{}/x", plain.mount_path), "x")
                .await
                .is_err()
        );
        backend.unmount(&obj).await.unwrap();
        backend.set_read_only(&obj, false).await.unwrap();

        for v in [&plain, &secret] {
            let obj = find(&vols, v);
            backend.destroy(&obj).await.unwrap();
            backend.destroy(&obj).await.unwrap();
            assert!(!super::super::key_path(&keys.path().join("keys"), &v.id).exists());
        }
        assert!(backend.volumes(&pool).await.unwrap().is_empty());

        runner.run("vgremove", &["-y", "coloctest"]).await.unwrap();
        runner.run("pvremove", &["-y", &disk]).await.unwrap();
        runner.run("wipefs", &["-a", &disk]).await.unwrap();
    }
}

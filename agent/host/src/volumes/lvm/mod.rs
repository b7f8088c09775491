//! [`LvmThinBackend`]: coloc volumes as thin LVs with ext4, optionally
//! inside LUKS2, in a volume group that has one thin pool LV `thin`.
//!
//! Every method reads the live state from the tools (`lvs`, `blkid -p`,
//! `cryptsetup status`, `dumpe2fs -h`, `findmnt`, each read by one parser
//! in `parse.rs`; the module's own tests are in `tests.rs`) before acting,
//! instead of trusting the [`VolumeObject`] it was handed, so that a step
//! interrupted by a crash is finished, not repeated, on the next pass. Nothing here
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

use super::{
    LVM_ID_TAG_PREFIX, LVM_SNAPSHOT_TAG_PREFIX, LVM_THIN_POOL, PoolObservation, VolumeBackend,
    VolumeObject, VolumeParams,
};
use crate::HostError;
use crate::runner::{CommandError, Output, Runner};

mod parse;
#[cfg(test)]
mod tests;

use parse::{
    Ext4Stats, FINDMNT_COLUMNS, LVS_POOL_ARGS, LVS_VOLUME_ARGS, LuksMapping, LvRow, Mount,
    Signature, VGS_ARGS, parse_blkid_export, parse_cryptsetup_status, parse_dumpe2fs,
    parse_findmnt, parse_lv_rows, pools_from, snapshots_of, volumes_from_rows,
};
pub use parse::{VolumeGroupInfo, parse_lvs, parse_vgs};

/// Prefix of the tag on the temporary copy a rollback makes.
const LVM_ROLLBACK_TAG_PREFIX: &str = "coloc_rollback_";
/// Prefix of the tag naming the tenant, for people reading `lvs`.
const LVM_TENANT_TAG_PREFIX: &str = "coloc_tenant_";

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
                &["-J", "-b", "-o", FINDMNT_COLUMNS, "--mountpoint", path],
                &[1],
            )
            .await
            .map_err(|e| HostError::storage("list mounts at", path, e))?;
        if out.status == 1 {
            return Ok(None);
        }
        Ok(parse_findmnt(&out.stdout)?
            .into_iter()
            .next()
            .and_then(|m| m.source))
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

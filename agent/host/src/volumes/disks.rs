//! [`RealDiskProber`]: which whole disks the host has and whether each is
//! blank, the one question that stands between "create a pool here" and
//! overwriting someone's data.
//!
//! `lsblk -J -b` with the device tree (read by the one lsblk parser,
//! [`crate::parse_lsblk`]) gives partitions, filesystems, holders (LVM,
//! dm-crypt, md) and mount points; for a disk lsblk reports
//! as empty, `wipefs --no-act --json` reads the signatures on the device
//! itself, because lsblk only knows what udev probed, which may be stale
//! or missing. The prober errs on the side of "holds something": a disk
//! it could not check is reported as holding something, never as blank.
//! Names under `/dev/disk/by-id` are read from the directory itself.

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use serde_json::Value;

use super::{DiskProbe, DiskProber};
use crate::HostError;
use crate::lsblk::{LsblkDevice, list_disks, text};
use crate::runner::Runner;

const BY_ID_DIR: &str = "/dev/disk/by-id";

/// `fstype` values that are not file systems but membership of some
/// other stack; said "… signature" rather than "… filesystem".
const MEMBER_TYPES: &[&str] = &[
    "LVM2_member",
    "zfs_member",
    "linux_raid_member",
    "crypto_LUKS",
    "bcache",
    "ceph_bluestore",
    "drbd",
    "isw_raid_member",
    "ddf_raid_member",
];

/// Probes disks with `lsblk`, `wipefs` and `/dev/disk/by-id`.
#[derive(Debug, Clone)]
pub struct RealDiskProber {
    runner: Runner,
}

impl RealDiskProber {
    pub fn new(runner: Runner) -> RealDiskProber {
        RealDiskProber { runner }
    }
}

/// One whole disk from [`parse_lsblk`](crate::parse_lsblk) as a probe
/// sees it, `holds` saying what lsblk sees on the disk and below it.
/// `by_id` is left empty (it comes from `/dev/disk/by-id`) and a disk
/// lsblk sees as empty is still to be checked with `wipefs`.
pub fn probe_of(disk: &LsblkDevice) -> DiskProbe {
    DiskProbe {
        device: disk.path.clone(),
        // parse_lsblk refuses a disk without a size.
        size_bytes: disk.size_bytes.unwrap_or_default(),
        serial: disk.serial.clone(),
        by_id: Vec::new(),
        holds: describe_holdings(disk),
    }
}

/// What lsblk shows on `disk`: its own signature, partition table,
/// partitions (with what they hold), other devices stacked on it, and any
/// mount point in the whole tree below it. `None` when there is nothing.
fn describe_holdings(disk: &LsblkDevice) -> Option<String> {
    let mut found = Vec::new();
    if let Some(fstype) = &disk.fstype {
        found.push(describe_signature(fstype));
    }
    if let Some(pttype) = &disk.pttype {
        found.push(format!("{pttype} partition table"));
    }
    let (parts, stacked): (Vec<&LsblkDevice>, Vec<&LsblkDevice>) =
        disk.children.iter().partition(|c| c.kind == "part");
    if !parts.is_empty() {
        let mut types: Vec<&str> = parts.iter().filter_map(|p| p.fstype.as_deref()).collect();
        types.dedup();
        let count = match parts.len() {
            1 => "1 partition".to_owned(),
            n => format!("{n} partitions"),
        };
        if types.is_empty() {
            found.push(count);
        } else {
            found.push(format!("{count} ({})", types.join(", ")));
        }
    }
    let mut holders: Vec<&str> = stacked.iter().map(|c| c.name.as_str()).collect();
    holders.dedup();
    if !holders.is_empty() {
        found.push(format!("used by {}", holders.join(", ")));
    }
    let mut mounts = Vec::new();
    collect_mountpoints(disk, &mut mounts);
    if !mounts.is_empty() {
        found.push(format!("mounted at {}", mounts.join(", ")));
    }
    (!found.is_empty()).then(|| found.join(", "))
}

fn describe_signature(kind: &str) -> String {
    if MEMBER_TYPES.contains(&kind) {
        format!("{kind} signature")
    } else if kind == "swap" {
        "swap space".to_owned()
    } else {
        format!("{kind} filesystem")
    }
}

/// Mount points of `dev` and everything below it, each once, in tree
/// order (lsblk repeats a device under each of its parents).
fn collect_mountpoints<'a>(dev: &'a LsblkDevice, out: &mut Vec<&'a str>) {
    if let Some(m) = dev.mountpoint.as_deref()
        && !out.contains(&m)
    {
        out.push(m);
    }
    for child in &dev.children {
        collect_mountpoints(child, out);
    }
}

/// Parses `wipefs --no-act --json <dev>`: the signature types found, each
/// once, in wipefs' order. Empty output (some versions print nothing when
/// there is no signature) is no signature.
pub fn parse_wipefs(json: &str) -> Result<Vec<String>, HostError> {
    const WHAT: &str = "wipefs output";
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let root: Value =
        serde_json::from_str(json).map_err(|e| HostError::parse(WHAT, e.to_string()))?;
    let signatures = root
        .get("signatures")
        .and_then(Value::as_array)
        .ok_or_else(|| HostError::parse(WHAT, "no \"signatures\" array"))?;
    let mut types: Vec<String> = Vec::new();
    for sig in signatures {
        let kind = text(sig, "type")
            .ok_or_else(|| HostError::parse(WHAT, "a signature has no \"type\""))?;
        if !types.contains(&kind) {
            types.push(kind);
        }
    }
    Ok(types)
}

/// What the wipefs signatures mean for a disk lsblk saw as empty.
fn describe_wipefs(types: &[String]) -> Option<String> {
    match types {
        [] => None,
        [one] => Some(format!("{one} signature")),
        many => Some(format!("{} signatures", many.join(", "))),
    }
}

/// Maps each kernel device name (`nvme0n1`) to the names in `dir` whose
/// link points at it, sorted.
fn read_by_id(dir: &Path) -> Result<BTreeMap<String, Vec<String>>, std::io::Error> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // A host without any by-id link (some VMs) has no directory.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(map),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let file_name = entry.file_name();
        let (Some(target), Some(name)) = (
            target.file_name().and_then(|n| n.to_str()),
            file_name.to_str(),
        ) else {
            continue;
        };
        map.entry(target.to_owned())
            .or_default()
            .push(name.to_owned());
    }
    for names in map.values_mut() {
        names.sort();
    }
    Ok(map)
}

#[async_trait]
impl DiskProber for RealDiskProber {
    async fn probe(&self) -> Result<Vec<DiskProbe>, HostError> {
        let mut disks: Vec<DiskProbe> = list_disks(&self.runner)
            .await?
            .iter()
            .map(probe_of)
            .collect();
        let by_id = read_by_id(Path::new(BY_ID_DIR)).map_err(|source| HostError::Io {
            what: "cannot read disk names",
            path: BY_ID_DIR.to_owned(),
            source,
        })?;
        for disk in &mut disks {
            let kernel_name = disk.device.rsplit('/').next().unwrap_or_default();
            disk.by_id = by_id.get(kernel_name).cloned().unwrap_or_default();
            if disk.holds.is_some() {
                continue;
            }
            match self
                .runner
                .run("wipefs", &["--no-act", "--json", &disk.device])
                .await
            {
                Ok(out) => disk.holds = describe_wipefs(&parse_wipefs(&out.stdout)?),
                Err(e) if e.is_not_found() => {
                    return Err(HostError::ToolMissing {
                        tool: "wipefs".to_owned(),
                    });
                }
                Err(e) => {
                    // Unknown is not blank: report it as holding something
                    // so that nothing is ever created on it unchecked.
                    tracing::warn!(device = %disk.device, error = %e, "could not read disk signatures");
                    disk.holds = Some("unknown contents (wipefs failed)".to_owned());
                }
            }
        }
        Ok(disks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_lsblk;

    /// What a probe makes of `lsblk` output, before wipefs and by-id.
    fn probes(json: &str) -> Result<Vec<DiskProbe>, HostError> {
        Ok(parse_lsblk(json)?.iter().map(probe_of).collect())
    }

    const BLANK_DISKS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/storage/lsblk-probe-devvm.json"
    ));
    const USED_DISKS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/storage/lsblk-probe-devvm-zpool.json"
    ));

    fn holds<'a>(disks: &'a [DiskProbe], serial: &str) -> Option<&'a str> {
        disks
            .iter()
            .find(|d| d.serial.as_deref() == Some(serial))
            .unwrap_or_else(|| panic!("no disk {serial}"))
            .holds
            .as_deref()
    }

    #[test]
    fn fresh_vm_disks() {
        let disks = probes(BLANK_DISKS).unwrap();
        let devices: Vec<&str> = disks.iter().map(|d| d.device.as_str()).collect();
        assert_eq!(
            devices,
            [
                "/dev/vda",
                "/dev/vdb",
                "/dev/vdc",
                "/dev/vdd",
                "/dev/vde",
                "/dev/nvme0n1",
                "/dev/nvme1n1"
            ]
        );
        let root = &disks[0];
        assert_eq!(root.serial, None);
        assert_eq!(root.size_bytes, 8 << 30);
        assert_eq!(
            root.holds.as_deref(),
            Some("gpt partition table, 2 partitions (vfat, ext4), mounted at /boot/efi, /")
        );
        assert_eq!(holds(&disks, "coloc-seed"), Some("vfat filesystem"));
        assert_eq!(holds(&disks, "DEVFULL"), Some("ext4 filesystem"));
        for blank in ["DEVL1", "DEVL2", "DEVZ1", "DEVZ2"] {
            assert_eq!(holds(&disks, blank), None, "{blank}");
        }
        let z1 = disks
            .iter()
            .find(|d| d.serial.as_deref() == Some("DEVZ1"))
            .unwrap();
        assert_eq!(
            (z1.device.as_str(), z1.size_bytes),
            ("/dev/nvme0n1", 2 << 30)
        );
        assert!(
            z1.by_id.is_empty(),
            "filled from /dev/disk/by-id, not lsblk"
        );
    }

    #[test]
    fn disks_in_use_by_zfs_and_lvm() {
        let disks = probes(USED_DISKS).unwrap();
        assert_eq!(
            holds(&disks, "DEVZ1"),
            Some("gpt partition table, 2 partitions (zfs_member)")
        );
        let lvm = holds(&disks, "DEVL1").unwrap();
        assert!(
            lvm.starts_with("LVM2_member signature, used by tank-thin_tmeta, tank-thin_tdata, mounted at /srv/tenants/asso-velo/data, /srv/tenants/asso-velo/secret"),
            "{lvm}"
        );
        assert_eq!(holds(&disks, "DEVL2"), None);
    }

    #[test]
    fn lsblk_skips_what_is_not_a_disk_and_rejects_bad_shapes() {
        let json = r#"{"blockdevices": [
            {"name": "loop0", "type": "loop", "size": 1},
            {"name": "zram0", "type": "disk", "size": 1},
            {"name": "sr0", "type": "rom", "size": 1},
            {"name": "sdb", "type": "disk", "size": "1024", "serial": "  ", "fstype": "swap"}
        ]}"#;
        let disks = probes(json).unwrap();
        assert_eq!(disks.len(), 1);
        assert_eq!(
            disks[0].device, "/dev/sdb",
            "path derived when lsblk has none"
        );
        assert_eq!(disks[0].size_bytes, 1024);
        assert_eq!(disks[0].serial, None);
        assert_eq!(disks[0].holds.as_deref(), Some("swap space"));
        assert!(probes("{}").is_err());
        assert!(probes(r#"{"blockdevices": [{"name": "sda", "type": "disk"}]}"#).is_err());
    }

    #[test]
    fn wipefs_signatures_recorded() {
        let read = |json: &str| parse_wipefs(json).unwrap();
        assert_eq!(
            read(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/storage/wipefs-blank.json"
            ))),
            Vec::<String>::new()
        );
        assert_eq!(
            read(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/storage/wipefs-ext4.json"
            ))),
            ["ext4"]
        );
        assert_eq!(
            read(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/storage/wipefs-gpt.json"
            ))),
            ["gpt", "PMBR"]
        );
        assert_eq!(
            read(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/storage/wipefs-zpool-whole-disk.json"
            ))),
            ["gpt", "PMBR"]
        );
        assert_eq!(
            read(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/storage/wipefs-zfs-member.json"
            ))),
            ["zfs_member"]
        );
        assert_eq!(
            read(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/storage/wipefs-lvm-member.json"
            ))),
            ["LVM2_member"]
        );
        assert_eq!(
            read(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/storage/wipefs-vfat-seed.json"
            ))),
            ["vfat"]
        );
        assert_eq!(read(""), Vec::<String>::new());
        assert!(parse_wipefs("{}").is_err());
        assert!(parse_wipefs(r#"{"signatures": [{"offset": "0x0"}]}"#).is_err());
    }

    #[test]
    fn wipefs_findings_for_people() {
        assert_eq!(describe_wipefs(&[]), None);
        assert_eq!(
            describe_wipefs(&["zfs_member".to_owned()]).as_deref(),
            Some("zfs_member signature")
        );
        assert_eq!(
            describe_wipefs(&["gpt".to_owned(), "PMBR".to_owned()]).as_deref(),
            Some("gpt, PMBR signatures")
        );
    }

    #[test]
    fn by_id_names_are_grouped_by_the_device_they_point_at() {
        let dir = tempfile::tempdir().unwrap();
        let link = |name: &str, target: &str| {
            std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap();
        };
        link("nvme-QEMU_NVMe_Ctrl_DEVZ1", "../../nvme0n1");
        link("nvme-nvme.1b36-4445565a31", "../../nvme0n1");
        link("nvme-QEMU_NVMe_Ctrl_DEVZ1-part1", "../../nvme0n1p1");
        link("virtio-DEVFULL", "../../vde");
        let map = read_by_id(dir.path()).unwrap();
        assert_eq!(
            map["nvme0n1"],
            ["nvme-QEMU_NVMe_Ctrl_DEVZ1", "nvme-nvme.1b36-4445565a31"]
        );
        assert_eq!(map["nvme0n1p1"], ["nvme-QEMU_NVMe_Ctrl_DEVZ1-part1"]);
        assert_eq!(map["vde"], ["virtio-DEVFULL"]);
        assert!(read_by_id(&dir.path().join("missing")).unwrap().is_empty());
    }

    /// Probes the real host. Read-only, but meaningful only on a machine
    /// whose disks are known: run inside the dev VM with
    /// `COLOC_TEST_REAL_DISKS=1`.
    #[tokio::test]
    #[ignore = "reads the host's disks (COLOC_TEST_REAL_DISKS=1)"]
    async fn real_probe() {
        if std::env::var_os("COLOC_TEST_REAL_DISKS").is_none() {
            eprintln!("COLOC_TEST_REAL_DISKS not set: skipped");
            return;
        }
        let disks = RealDiskProber::new(Runner::new()).probe().await.unwrap();
        for d in &disks {
            eprintln!("{} {:?} {:?} {:?}", d.device, d.serial, d.by_id, d.holds);
            assert!(d.device.starts_with("/dev/"));
        }
        let root = disks
            .iter()
            .find(|d| {
                d.holds
                    .as_deref()
                    .is_some_and(|h| h.contains("mounted at /"))
            })
            .expect("the root disk is reported as holding /");
        assert!(root.size_bytes > 0);
        for d in disks.iter().filter(|d| d.serial.is_some()) {
            assert!(
                !d.by_id.is_empty(),
                "{} has a serial, so a by-id name",
                d.device
            );
        }
    }
}

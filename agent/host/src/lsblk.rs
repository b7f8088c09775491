//! `lsblk`: the one way the host layer learns which disks the machine has
//! and what is stacked on them, shared by the facts ([`Health`](crate::Health))
//! and the disk prober ([`volumes`](crate::volumes)).
//!
//! One invocation, one parser: whole disks with their tree of partitions,
//! holders and mount points, every column either consumer needs. Each
//! consumer then reads the view it wants ([`LsblkDevice::block_device`]
//! for the facts, [`volumes::probe_of`](crate::volumes::probe_of) for
//! what a disk holds). This module
//! interprets nothing beyond the shape of the output: it must not decide
//! whether a disk is blank or usable.
//!
//! The parser is strict about what is always there (a device's name and
//! type, a disk's size) and lenient where util-linux versions differ
//! (before 2.37 every value was a string: `"1"` for true, `"512"` for a
//! size; absent and `null` columns read the same).

use serde_json::Value;

use crate::runner::Runner;
use crate::{BlockDevice, HostError};

/// Whole devices with their children, sizes in bytes, JSON.
pub(crate) const LSBLK_ARGS: &[&str] = &[
    "-J",
    "-b",
    "-o",
    "NAME,PATH,TYPE,SIZE,MODEL,SERIAL,TRAN,ROTA,FSTYPE,PTTYPE,MOUNTPOINT",
];

/// Kernel name prefixes of devices that `lsblk` may call disks but that
/// hold no data worth reporting or using: loop files, RAM disks,
/// compressed swap in RAM, optical drives.
const SKIPPED_PREFIXES: &[&str] = &["loop", "ram", "zram", "sr"];

const WHAT: &str = "lsblk output";

/// One device in `lsblk -J` output and what is stacked on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsblkDevice {
    /// Kernel name: `vda`, `nvme0n1`, `vda1`, `tank-thin_tdata`.
    pub name: String,
    /// `PATH`, or `/dev/<name>` when lsblk did not print it.
    pub path: String,
    /// `TYPE`: `disk`, `part`, `lvm`, `crypt`, `rom`, `loop`, ...
    pub kind: String,
    /// Required on the disks [`parse_lsblk`] returns; may be unknown below.
    pub size_bytes: Option<u64>,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// `TRAN`: `sata`, `nvme`, `usb`, ...; lsblk leaves it empty for virtio.
    pub transport: Option<String>,
    /// `ROTA`; `None` when the column is absent or unreadable.
    pub rotational: Option<bool>,
    /// The signature on the device itself (`ext4`, `LVM2_member`, ...).
    pub fstype: Option<String>,
    /// Its partition table (`gpt`, `dos`).
    pub pttype: Option<String>,
    pub mountpoint: Option<String>,
    /// Partitions and devices stacked on this one, as lsblk nests them.
    pub children: Vec<LsblkDevice>,
}

impl LsblkDevice {
    /// The disk as the facts describe it. The rotational flag is required
    /// here: a disk whose `ROTA` is missing is a parse error naming it,
    /// not a guess.
    pub fn block_device(&self) -> Result<BlockDevice, HostError> {
        let missing =
            |field: &str| HostError::parse(WHAT, format!("{}: no usable {field:?}", self.name));
        // lsblk leaves TRAN empty for virtio disks; the kernel names every
        // virtio-blk disk vdX and nothing else, so the name says it.
        let transport = self
            .transport
            .clone()
            .or_else(|| self.name.starts_with("vd").then(|| "virtio".to_owned()));
        Ok(BlockDevice {
            name: self.name.clone(),
            model: self.model.clone(),
            serial: self.serial.clone(),
            size_bytes: self.size_bytes.ok_or_else(|| missing("size"))?,
            transport,
            rotational: self.rotational.ok_or_else(|| missing("rota"))?,
        })
    }
}

/// Runs `lsblk` (`LSBLK_ARGS`: the full tree, every column either
/// consumer reads) and returns the whole disks.
pub async fn list_disks(runner: &Runner) -> Result<Vec<LsblkDevice>, HostError> {
    list_disks_with(runner, "lsblk").await
}

/// [`list_disks`] running `program` (a name or an absolute path) as lsblk.
pub(crate) async fn list_disks_with(
    runner: &Runner,
    program: &str,
) -> Result<Vec<LsblkDevice>, HostError> {
    let out = runner
        .run(program, LSBLK_ARGS)
        .await
        .map_err(|e| HostError::from_command(e, |source| HostError::Disks { source }))?;
    parse_lsblk(&out.stdout)
}

/// Parses `lsblk -J -b` output (any subset of the columns of
/// `LSBLK_ARGS`, with or without `-d`): the whole disks, in lsblk's
/// order, with their children. Devices that are not disks (type `loop`,
/// `rom`, ...) and loop, RAM, zram and optical devices are left out. Every
/// device must have a name and a type, and every disk a size.
pub fn parse_lsblk(json: &str) -> Result<Vec<LsblkDevice>, HostError> {
    let root: Value =
        serde_json::from_str(json).map_err(|e| HostError::parse(WHAT, e.to_string()))?;
    let devices = root
        .get("blockdevices")
        .and_then(Value::as_array)
        .ok_or_else(|| HostError::parse(WHAT, "no \"blockdevices\" array"))?;
    let mut disks = Vec::new();
    for dev in devices {
        let dev = device(dev)?;
        if dev.kind != "disk" || SKIPPED_PREFIXES.iter().any(|p| dev.name.starts_with(p)) {
            continue;
        }
        if dev.size_bytes.is_none() {
            return Err(HostError::parse(
                WHAT,
                format!("{}: no usable \"size\"", dev.name),
            ));
        }
        disks.push(dev);
    }
    Ok(disks)
}

fn device(v: &Value) -> Result<LsblkDevice, HostError> {
    let name = text(v, "name").ok_or_else(|| HostError::parse(WHAT, "a device has no name"))?;
    let kind = text(v, "type")
        .ok_or_else(|| HostError::parse(WHAT, format!("{name}: no usable \"type\"")))?;
    let children = v
        .get("children")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(device)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LsblkDevice {
        path: text(v, "path").unwrap_or_else(|| format!("/dev/{name}")),
        size_bytes: v.get("size").and_then(as_u64),
        model: text(v, "model"),
        serial: text(v, "serial"),
        transport: text(v, "tran"),
        rotational: v.get("rota").and_then(as_bool),
        fstype: text(v, "fstype"),
        pttype: text(v, "pttype"),
        mountpoint: text(v, "mountpoint"),
        children,
        name,
        kind,
    })
}

/// A number, or a string of decimal digits (lsblk before util-linux 2.37).
fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

/// A boolean, or the "0"/"1" strings of older lsblk.
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "1" => Some(true),
        Value::String(s) if s == "0" => Some(false),
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A string field of a JSON object that may be absent, null or blank
/// (older lsblk padded models with spaces; wipefs reads the same way).
pub(crate) fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsblk_requires_the_block_devices_array() {
        assert!(matches!(parse_lsblk("{}"), Err(HostError::Parse { .. })));
        assert!(matches!(
            parse_lsblk("not json"),
            Err(HostError::Parse { .. })
        ));
        assert_eq!(parse_lsblk(r#"{"blockdevices": []}"#).unwrap(), vec![]);
    }

    #[test]
    fn lsblk_numbers_and_booleans_in_either_shape() {
        assert_eq!(as_u64(&Value::from(5u64)), Some(5));
        assert_eq!(as_u64(&Value::from("5")), Some(5));
        assert_eq!(as_u64(&Value::from("")), None);
        assert_eq!(as_u64(&Value::from("5B")), None);
        assert_eq!(as_u64(&Value::from(-1)), None);
        assert_eq!(as_bool(&Value::from(true)), Some(true));
        assert_eq!(as_bool(&Value::from("0")), Some(false));
        assert_eq!(as_bool(&Value::from(1)), Some(true));
        assert_eq!(as_bool(&Value::from("yes")), None);
    }

    #[test]
    fn skips_what_is_not_a_disk_and_derives_missing_paths() {
        let json = r#"{"blockdevices": [
            {"name": "loop0", "type": "loop", "size": 1},
            {"name": "zram0", "type": "disk", "size": 1},
            {"name": "sr0", "type": "rom", "size": 1},
            {"name": "sdb", "type": "disk", "size": "1024", "serial": "  ", "fstype": "swap",
             "children": [{"name": "sdb1", "type": "part"}]}
        ]}"#;
        let disks = parse_lsblk(json).unwrap();
        assert_eq!(disks.len(), 1);
        let sdb = &disks[0];
        assert_eq!(sdb.path, "/dev/sdb", "derived when lsblk has none");
        assert_eq!(sdb.size_bytes, Some(1024));
        assert_eq!(sdb.serial, None, "blank reads as unknown");
        assert_eq!(sdb.fstype.as_deref(), Some("swap"));
        assert_eq!(sdb.children[0].path, "/dev/sdb1");
        assert_eq!(sdb.children[0].size_bytes, None, "optional below a disk");
    }

    #[test]
    fn a_child_without_a_type_is_refused() {
        let json = r#"{"blockdevices": [
            {"name": "sda", "type": "disk", "size": 1, "children": [{"name": "sda1"}]}
        ]}"#;
        let err = parse_lsblk(json).unwrap_err();
        assert!(err.to_string().contains("sda1"), "{err}");
    }
}

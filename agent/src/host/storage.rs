//! Real [`Storage`]: `lsblk`, `zpool list` and `vgs`, each asked for its
//! machine-readable output, and the pure parsers for those outputs.
//!
//! The parsers are strict about what the agent asked for (a column it
//! requested and did not get is a parse error, not a silent default) and
//! lenient only where the tools are known to differ between versions
//! (`lsblk` before util-linux 2.37 printed every value as a string).

use async_trait::async_trait;
use serde_json::Value;

use crate::runner::Runner;

use super::{BlockDevice, HostError, PoolHealth, Storage, VolumeGroupInfo, ZpoolInfo};

/// `lsblk` arguments: whole devices only (`-d`), sizes in bytes, JSON.
pub(crate) const LSBLK_ARGS: &[&str] = &[
    "-J",
    "-b",
    "-d",
    "-o",
    "NAME,MODEL,SERIAL,SIZE,TRAN,ROTA,TYPE",
];

const ZPOOL_ARGS: &[&str] = &["list", "-Hp", "-o", "name,size,alloc,free,health"];

const VGS_ARGS: &[&str] = &[
    "--reportformat",
    "json",
    "--units",
    "b",
    "--nosuffix",
    "-o",
    "vg_name,vg_size,vg_free",
];

/// Kernel name prefixes of devices that `lsblk` calls disks but that hold
/// no data worth reporting: memory-backed or file-backed.
const SKIPPED_PREFIXES: &[&str] = &["loop", "ram", "zram"];

/// [`Storage`] backed by the host's tools.
#[derive(Debug, Clone)]
pub struct RealStorage {
    runner: Runner,
}

impl RealStorage {
    pub fn new(runner: Runner) -> RealStorage {
        RealStorage { runner }
    }
}

/// Lists whole disks with `lsblk`; shared with the facts collector.
pub(crate) async fn list_disks(runner: &Runner) -> Result<Vec<BlockDevice>, HostError> {
    let out = runner
        .run("lsblk", LSBLK_ARGS)
        .await
        .map_err(|e| HostError::from_command(e, |source| HostError::Disks { source }))?;
    parse_lsblk(&out.stdout)
}

#[async_trait]
impl Storage for RealStorage {
    async fn disks(&self) -> Result<Vec<BlockDevice>, HostError> {
        list_disks(&self.runner).await
    }

    async fn zpools(&self) -> Result<Vec<ZpoolInfo>, HostError> {
        let out = self
            .runner
            .run("zpool", ZPOOL_ARGS)
            .await
            .map_err(|e| HostError::from_command(e, |source| HostError::Zpools { source }))?;
        parse_zpool_list(&out.stdout)
    }

    async fn volume_groups(&self) -> Result<Vec<VolumeGroupInfo>, HostError> {
        let out =
            self.runner.run("vgs", VGS_ARGS).await.map_err(|e| {
                HostError::from_command(e, |source| HostError::VolumeGroups { source })
            })?;
        parse_vgs(&out.stdout)
    }
}

/// Parses `lsblk -J -b -d -o NAME,MODEL,SERIAL,SIZE,TRAN,ROTA,TYPE`.
///
/// Keeps devices of type `disk` except loop, RAM and zram devices. Model,
/// serial and transport may be null or absent (virtual disks have none);
/// name, type, size and rotational must be there. Accepts both the typed
/// JSON of util-linux ≥ 2.37 (numbers, booleans) and the all-strings JSON
/// of older versions.
pub fn parse_lsblk(json: &str) -> Result<Vec<BlockDevice>, HostError> {
    const WHAT: &str = "lsblk output";
    let root: Value =
        serde_json::from_str(json).map_err(|e| HostError::parse(WHAT, e.to_string()))?;
    let devices = root
        .get("blockdevices")
        .and_then(Value::as_array)
        .ok_or_else(|| HostError::parse(WHAT, "no \"blockdevices\" array"))?;
    let mut disks = Vec::new();
    for dev in devices {
        let name = dev
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| HostError::parse(WHAT, "a device has no name"))?;
        let missing = |field: &str| HostError::parse(WHAT, format!("{name}: no usable {field:?}"));
        let kind = dev
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("type"))?;
        if kind != "disk" || SKIPPED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let size_bytes = dev
            .get("size")
            .and_then(as_u64)
            .ok_or_else(|| missing("size"))?;
        let rotational = dev
            .get("rota")
            .and_then(as_bool)
            .ok_or_else(|| missing("rota"))?;
        // lsblk leaves TRAN empty for virtio disks; the kernel names every
        // virtio-blk disk vdX and nothing else, so the name says it.
        let transport = optional_text(dev, "tran")
            .or_else(|| name.starts_with("vd").then(|| "virtio".to_owned()));
        disks.push(BlockDevice {
            name: name.to_owned(),
            model: optional_text(dev, "model"),
            serial: optional_text(dev, "serial"),
            size_bytes,
            transport,
            rotational,
        });
    }
    Ok(disks)
}

/// Parses `zpool list -Hp -o name,size,alloc,free,health`: one pool per
/// line, tab-separated, exact byte counts. No pools is empty output.
pub fn parse_zpool_list(text: &str) -> Result<Vec<ZpoolInfo>, HostError> {
    const WHAT: &str = "zpool list output";
    let mut pools = Vec::new();
    for line in text.lines() {
        // Without -H zpool says this instead of printing nothing; accept
        // it so that a change of flags cannot turn "no pools" into an error.
        if line.trim().is_empty() || line.trim() == "no pools available" {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, size, alloc, free, health] = fields[..] else {
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
        let bytes = |column: &str, value: &str| -> Result<u64, HostError> {
            if value == "-" {
                return Ok(0);
            }
            value.parse().map_err(|_| {
                HostError::parse(
                    WHAT,
                    format!("{name}: {column} {value:?} is not a byte count"),
                )
            })
        };
        pools.push(ZpoolInfo {
            name: name.to_owned(),
            size_bytes: bytes("size", size)?,
            alloc_bytes: bytes("alloc", alloc)?,
            free_bytes: bytes("free", free)?,
            health: PoolHealth::from_zpool(health),
        });
    }
    Ok(pools)
}

/// Parses `vgs --reportformat json --units b --nosuffix -o
/// vg_name,vg_size,vg_free`. LVM prints sizes as strings of digits.
pub fn parse_vgs(json: &str) -> Result<Vec<VolumeGroupInfo>, HostError> {
    const WHAT: &str = "vgs output";
    let root: Value =
        serde_json::from_str(json).map_err(|e| HostError::parse(WHAT, e.to_string()))?;
    let reports = root
        .get("report")
        .and_then(Value::as_array)
        .ok_or_else(|| HostError::parse(WHAT, "no \"report\" array"))?;
    let mut groups = Vec::new();
    for report in reports {
        let Some(vgs) = report.get("vg") else {
            continue;
        };
        let vgs = vgs
            .as_array()
            .ok_or_else(|| HostError::parse(WHAT, "\"vg\" is not an array"))?;
        for vg in vgs {
            let name = vg
                .get("vg_name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| HostError::parse(WHAT, "a volume group has no vg_name"))?;
            let bytes = |field: &str| {
                vg.get(field).and_then(as_u64).ok_or_else(|| {
                    HostError::parse(WHAT, format!("{name}: no byte count in {field:?}"))
                })
            };
            groups.push(VolumeGroupInfo {
                name: name.to_owned(),
                size_bytes: bytes("vg_size")?,
                free_bytes: bytes("vg_free")?,
            });
        }
    }
    Ok(groups)
}

/// A number, or a string of decimal digits (older lsblk, all of LVM).
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

/// A string field that may be absent, null or blank (older lsblk padded
/// models with spaces).
fn optional_text(v: &Value, field: &str) -> Option<String> {
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
    fn zpool_list_rejects_wrong_column_counts_and_bad_numbers() {
        let err = parse_zpool_list("tank\t1\t2\t3\n").unwrap_err();
        assert!(err.to_string().contains("5 tab-separated"), "{err}");
        let err = parse_zpool_list("tank\t1.5G\t2\t3\tONLINE\n").unwrap_err();
        assert!(err.to_string().contains("size"), "{err}");
        assert!(parse_zpool_list("\t1\t2\t3\tONLINE\n").is_err());
    }
}

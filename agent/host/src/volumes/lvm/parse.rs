//! The parsers of the outputs the LVM backend reads, one per output: the
//! JSON reports of `vgs` and `lvs` (`--units b --nosuffix`: sizes in bytes
//! as strings of digits), `blkid -p -o export`, `cryptsetup status`,
//! `dumpe2fs -h` and `findmnt -J -b`, with the arguments and columns they
//! expect, and the reading of `lvs` rows as coloc pools, volumes and
//! snapshots (by their tags and names). Pure functions, tested against
//! outputs recorded in the node image (`tests/fixtures/storage/`); running
//! the tools and deciding what to do is the backend's job.

use coloc_proto::agent::v1::PoolKind;
use serde_json::Value;

use crate::HostError;
use crate::volumes::{
    LVM_ID_TAG_PREFIX, LVM_SNAPSHOT_TAG_PREFIX, LVM_THIN_POOL, PoolObservation, SnapshotObject,
    VolumeObject,
};

/// `vgs` arguments read by [`parse_vgs`].
pub(super) const VGS_ARGS: &[&str] = &[
    "--reportformat",
    "json",
    "--units",
    "b",
    "--nosuffix",
    "-o",
    "vg_name,vg_size,vg_free",
];

/// Every LV of every group, to find the thin pools.
pub(super) const LVS_POOL_ARGS: &[&str] = &[
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
pub(super) const LVS_VOLUME_ARGS: &[&str] = &[
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

/// `findmnt` columns read by [`parse_findmnt`].
pub(super) const FINDMNT_COLUMNS: &str = "TARGET,SOURCE,SIZE,USED,AVAIL,OPTIONS";

/// One row of `lvs`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LvRow {
    pub(super) vg: String,
    pub(super) name: String,
    pub(super) size_bytes: u64,
    pub(super) tags: Vec<String>,
    pub(super) attr: String,
    /// 0–100; 0 when LVM prints nothing (an inactive LV).
    pub(super) data_percent: f64,
    /// Unix seconds; 0 when not requested or not printed.
    pub(super) created_unix: u64,
}

impl LvRow {
    pub(super) fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// The permission character of `lv_attr` is `r` for read-only.
    pub(super) fn read_only(&self) -> bool {
        self.attr.as_bytes().get(1) == Some(&b'r')
    }

    /// The state character of `lv_attr` is `a` for an active LV.
    pub(super) fn active(&self) -> bool {
        self.attr.as_bytes().get(4) == Some(&b'a')
    }

    /// Bytes the thin LV has allocated in its pool.
    pub(super) fn allocated_bytes(&self) -> u64 {
        percent_of(self.size_bytes, self.data_percent)
    }
}

/// What `blkid -p` found at the start of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Signature {
    Blank,
    /// `TYPE` (filesystem, LUKS, LVM, ...) or `PTTYPE` (partition table).
    Found(String),
}

/// An open LUKS mapping, from `cryptsetup status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LuksMapping {
    /// Start of the encrypted payload on the LV, in bytes.
    pub(super) offset_bytes: u64,
    /// Size of the opened device, in bytes.
    pub(super) size_bytes: u64,
}

/// Figures from `dumpe2fs -h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ext4Stats {
    pub(super) block_count: u64,
    pub(super) block_size: u64,
    pub(super) free_blocks: u64,
}

impl Ext4Stats {
    pub(super) fn bytes(&self) -> u64 {
        self.block_count.saturating_mul(self.block_size)
    }
}

/// One mount, from `findmnt -J -b -o` [`FINDMNT_COLUMNS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mount {
    pub(super) target: String,
    /// The mounted device, as findmnt names it.
    pub(super) source: Option<String>,
    pub(super) size_bytes: u64,
    pub(super) used_bytes: u64,
    pub(super) available_bytes: u64,
    pub(super) read_only: bool,
}

pub(super) fn percent_of(bytes: u64, percent: f64) -> u64 {
    let part = (bytes as f64 * percent / 100.0).round();
    (part.max(0.0) as u64).min(bytes)
}

/// Snapshot LVs of volume `id`: tagged `coloc_snapshot_<id>` and named
/// `coloc-<id>-snap-<name>`, oldest first (ties by name).
pub(super) fn snapshots_of<'a>(id: &str, rows: &'a [LvRow]) -> Vec<(&'a str, &'a LvRow)> {
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
pub(super) fn parse_lv_rows(json: &str) -> Result<Vec<LvRow>, HostError> {
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
/// [`LvmThinBackend`](super::LvmThinBackend) to probe.
pub fn parse_lvs(json: &str) -> Result<Vec<VolumeObject>, HostError> {
    let rows = parse_lv_rows(json)?;
    Ok(volumes_from_rows(&rows))
}

pub(super) fn volumes_from_rows(rows: &[LvRow]) -> Vec<VolumeObject> {
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
pub(super) fn pools_from(
    vgs_json: &str,
    lvs_json: &str,
) -> Result<Vec<PoolObservation>, HostError> {
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
pub(super) fn parse_blkid_export(text: &str) -> Signature {
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
pub(super) fn parse_cryptsetup_status(text: &str) -> Result<LuksMapping, HostError> {
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
pub(super) fn parse_dumpe2fs(text: &str) -> Result<Ext4Stats, HostError> {
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

/// Parses `findmnt -J -b -o TARGET,SOURCE,SIZE,USED,AVAIL,OPTIONS` (or
/// fewer columns: sizes read as 0 and the source as unknown when absent):
/// every mount, those nested below another one included, sorted by
/// target; mounts on the same target stay in findmnt's order.
pub(super) fn parse_findmnt(json: &str) -> Result<Vec<Mount>, HostError> {
    const WHAT: &str = "findmnt output";
    let root: Value =
        serde_json::from_str(json).map_err(|e| HostError::parse(WHAT, e.to_string()))?;
    let filesystems = root
        .get("filesystems")
        .and_then(Value::as_array)
        .ok_or_else(|| HostError::parse(WHAT, "no \"filesystems\" array"))?;
    let mut mounts = Vec::new();
    collect_mounts(filesystems, &mut mounts)?;
    mounts.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(mounts)
}

/// `filesystems` and, after each, the mounts below it (a "children" array
/// of its parent), in findmnt's order.
fn collect_mounts(filesystems: &[Value], mounts: &mut Vec<Mount>) -> Result<(), HostError> {
    for fs in filesystems {
        let target = fs
            .get("target")
            .and_then(Value::as_str)
            .ok_or_else(|| HostError::parse("findmnt output", "a mount has no target"))?;
        let bytes = |field: &str| fs.get(field).and_then(Value::as_u64).unwrap_or(0);
        let read_only = fs
            .get("options")
            .and_then(Value::as_str)
            .is_some_and(|o| o.split(',').any(|opt| opt == "ro"));
        mounts.push(Mount {
            target: target.to_owned(),
            source: fs.get("source").and_then(Value::as_str).map(str::to_owned),
            size_bytes: bytes("size"),
            used_bytes: bytes("used"),
            available_bytes: bytes("avail"),
            read_only,
        });
        if let Some(children) = fs.get("children").and_then(Value::as_array) {
            collect_mounts(children, mounts)?;
        }
    }
    Ok(())
}

/// One LVM volume group, sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeGroupInfo {
    pub name: String,
    pub size_bytes: u64,
    pub free_bytes: u64,
}

/// Parses `vgs --reportformat json --units b --nosuffix -o
/// vg_name,vg_size,vg_free` (`VGS_ARGS`). LVM prints sizes as strings
/// of digits.
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
                vg.get(field).and_then(digits).ok_or_else(|| {
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

/// A number, or a string of decimal digits (LVM's JSON report prints
/// every value as a string).
fn digits(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VGS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/storage/vgs-tank-and-bare.json"
    ));
    const LVS_POOLS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/storage/lvs-pools.json"
    ));
    const LVS_VOLUMES: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/storage/lvs-tank-volumes.json"
    ));
    const LVS_AFTER_ROLLBACK: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/storage/lvs-tank-after-rollback.json"
    ));
    const LVS_EMPTY: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/storage/lvs-empty-vg.json"
    ));

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
        let ext4 = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/storage/blkid-ext4.txt"
        ));
        assert_eq!(parse_blkid_export(ext4), Signature::Found("ext4".into()));
        let luks = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/storage/blkid-luks.txt"
        ));
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
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/storage/cryptsetup-status-active.txt"
        ));
        let m = parse_cryptsetup_status(text).unwrap();
        assert_eq!(m.offset_bytes, 16 * 1024 * 1024);
        assert_eq!(m.size_bytes, 172_032 * 512);
        // Header + payload = the 100 MiB LV.
        assert_eq!(m.offset_bytes + m.size_bytes, 104_857_600);
        let inactive = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/storage/cryptsetup-status-inactive.txt"
        ));
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
        let plain = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/storage/findmnt-plain.json"
        ));
        let mounts = parse_findmnt(plain).unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].target, "/srv/tenants/asso-velo/data");
        assert_eq!(mounts[0].used_bytes, 20_986_880);
        assert_eq!(mounts[0].available_bytes, 96_345_088);
        let luks = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/storage/findmnt-luks.json"
        ));
        let mounts = parse_findmnt(luks).unwrap();
        assert_eq!(mounts[0].target, "/srv/tenants/asso-velo/secret");
        assert!(!mounts[0].read_only);
        let ro = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/storage/findmnt-ro.json"
        ));
        let mounts = parse_findmnt(ro).unwrap();
        assert!(mounts[0].read_only);
        assert_eq!(mounts[0].size_bytes, 120_015_872);
    }

    #[test]
    fn findmnt_reads_sources_and_mounts_nested_below_others() {
        let json = r#"{"filesystems": [
            {"target": "/srv/b", "source": "/dev/vdb", "options": "ro,nodev",
             "children": [{"target": "/srv/b/inner", "source": "/dev/vdc"}]},
            {"target": "/srv/a", "source": "/dev/vdd"}
        ]}"#;
        let mounts = parse_findmnt(json).unwrap();
        let seen: Vec<(&str, Option<&str>)> = mounts
            .iter()
            .map(|m| (m.target.as_str(), m.source.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                ("/srv/a", Some("/dev/vdd")),
                ("/srv/b", Some("/dev/vdb")),
                ("/srv/b/inner", Some("/dev/vdc")),
            ]
        );
        assert!(mounts[1].read_only && !mounts[2].read_only);
        assert_eq!(mounts[0].size_bytes, 0, "absent columns read as 0");
        assert!(parse_findmnt(r#"{"filesystems": [{"source": "/dev/vdb"}]}"#).is_err());
        assert!(parse_findmnt("{}").is_err());
    }
}

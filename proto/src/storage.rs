//! Validated storage values shared by the controller, the agent and the
//! CLI: volume, snapshot and pool names, volume ids, disk references and
//! sizes. Every one of them ends up in a command line (`zfs create`,
//! `lvcreate`), a property, a tag or a path, so each type admits only what
//! all of those places can carry without quoting.

use std::fmt;
use std::str::FromStr;

use crate::agent::v1::{PoolKind, PoolLayout, PoolSpec, VolumeSpec, VolumeState};
use crate::domain::{InvalidInput, check_name, validated_string};

const MIB: u64 = 1024 * 1024;

/// Volume sizes are multiples of this (LVM's default extent size), so the
/// size a backend reports is the size that was asked for.
pub const SIZE_ALIGN: u64 = 4 * MIB;
/// Smallest volume: room for an ext4 journal and some data.
pub const MIN_VOLUME_BYTES: u64 = 64 * MIB;
/// Largest volume: 1 PiB, far above any disk the cooperative owns; stops
/// overflow and typos ("20P").
pub const MAX_VOLUME_BYTES: u64 = 1024 * 1024 * 1024 * MIB;

/// Where a tenant's volume is mounted on its node.
pub fn mount_path(tenant: &str, volume: &str) -> String {
    format!("/srv/tenants/{tenant}/{volume}")
}

/// Rounds a requested size up to [`SIZE_ALIGN`] and checks the bounds.
pub fn volume_size(bytes: u64) -> Result<u64, InvalidInput> {
    if bytes < MIN_VOLUME_BYTES {
        return Err(InvalidInput::field(
            "size",
            format!("{} is below the minimum of 64 MiB", format_size(bytes)),
        ));
    }
    if bytes > MAX_VOLUME_BYTES {
        return Err(InvalidInput::field("size", "larger than 1 PiB"));
    }
    Ok(bytes.div_ceil(SIZE_ALIGN) * SIZE_ALIGN)
}

/// Parses "20G", "512M", "1.5T", "1048576" (bytes). Units are binary
/// (K = 1024) as in LVM and ZFS; "GiB" and "GB" are read as "G".
pub fn parse_size(text: &str) -> Result<u64, InvalidInput> {
    let bad = |why: &str| InvalidInput::field("size", format!("{text:?}: {why}"));
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.is_empty() {
        return Err(bad("no number (write e.g. 20G or 512M)"));
    }
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        "P" | "PB" | "PIB" => 50,
        _ => return Err(bad("unknown unit (use K, M, G, T or P)")),
    };
    let unit_bytes = 1u64 << shift;
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if frac.contains('.') || (whole.is_empty() && frac.is_empty()) {
        return Err(bad("not a number"));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad("not a number"))?
    };
    let mut bytes = whole
        .checked_mul(unit_bytes)
        .ok_or_else(|| bad("too large"))?;
    if !frac.is_empty() {
        if frac.len() > 6 {
            return Err(bad("too many decimals"));
        }
        let digits: u64 = frac.parse().map_err(|_| bad("not a number"))?;
        let scale = 10u64.pow(frac.len() as u32);
        let part = (u128::from(digits) * u128::from(unit_bytes)).div_ceil(u128::from(scale));
        bytes = bytes
            .checked_add(u64::try_from(part).map_err(|_| bad("too large"))?)
            .ok_or_else(|| bad("too large"))?;
    }
    Ok(bytes)
}

/// "20.0 GiB", "512.0 MiB", "0 B": for people.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

validated_string!(
    /// A volume's name inside its tenant, e.g. `data`: the name rule.
    VolumeName, "volume name", check_name);
validated_string!(
    /// A snapshot's name, e.g. `before-upgrade`: the name rule.
    SnapshotName, "snapshot name", check_name);

/// Words `zpool` reads as vdev types or that LVM reserves: never pool names.
const RESERVED_POOL_NAMES: &[&str] = &[
    "mirror", "raidz", "raidz1", "raidz2", "raidz3", "draid", "spare", "log", "cache", "special",
    "dedup", "coloc",
];

validated_string!(
    /// A ZFS pool or LVM volume group name: the name rule, at most 32
    /// characters, and none of the words `zpool` gives a meaning to.
    PoolName, "pool name", check_pool_name);

fn check_pool_name(kind: &'static str, value: &str) -> Result<(), InvalidInput> {
    check_name(kind, value)?;
    if value.len() > 32 {
        return Err(InvalidInput::field(
            kind,
            format!("{value:?} is longer than 32 characters"),
        ));
    }
    if RESERVED_POOL_NAMES.contains(&value)
        || value.starts_with("raidz")
        || value.starts_with("draid")
        || value.starts_with("mirror")
        || value.starts_with("spare")
    {
        return Err(InvalidInput::field(
            kind,
            format!("{value:?} is reserved by ZFS or coloc"),
        ));
    }
    Ok(())
}

validated_string!(
    /// A volume's identity: 16 lowercase hex digits, chosen by the
    /// controller, stored on the object (ZFS user property
    /// `coloc:volume-id`, LV tag `coloc_volume_<id>`) so that the agent
    /// recognises its own volumes.
    VolumeId, "volume id", check_volume_id);

fn check_volume_id(kind: &'static str, value: &str) -> Result<(), InvalidInput> {
    if value.len() != VolumeId::LEN
        || !value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(InvalidInput::field(
            kind,
            format!(
                "{:?} is not 16 lowercase hex digits",
                value.chars().take(40).collect::<String>()
            ),
        ));
    }
    Ok(())
}

impl VolumeId {
    pub const LEN: usize = 16;

    /// A fresh random id.
    pub fn random() -> Self {
        let bytes: [u8; 8] = rand::random();
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// How a pool names a disk: by serial number (`serial:S3Z9NB0K123456`) or
/// by its name under `/dev/disk/by-id` (`id:nvme-QEMU_NVMe_Ctrl_COLOC0001`).
/// Both survive reboots and re-cabling, unlike `sda`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiskRef {
    Serial(String),
    ById(String),
}

impl DiskRef {
    pub fn new(text: &str) -> Result<DiskRef, InvalidInput> {
        let bad = |why: &str| {
            InvalidInput::field(
                "disk",
                format!("{:?}: {why}", text.chars().take(80).collect::<String>()),
            )
        };
        let (kind, value) = text
            .split_once(':')
            .ok_or_else(|| bad("write serial:<serial> or id:<name in /dev/disk/by-id>"))?;
        if value.is_empty() || value.len() > 128 {
            return Err(bad("empty or longer than 128 characters"));
        }
        if value.starts_with(['-', '.']) {
            return Err(bad("must not start with '-' or '.'"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:+-".contains(&b))
        {
            return Err(bad("only letters, digits and _ . : + - are allowed"));
        }
        match kind {
            "serial" => Ok(DiskRef::Serial(value.to_owned())),
            "id" => Ok(DiskRef::ById(value.to_owned())),
            _ => Err(bad("the kind must be serial or id")),
        }
    }
}

impl fmt::Display for DiskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskRef::Serial(s) => write!(f, "serial:{s}"),
            DiskRef::ById(s) => write!(f, "id:{s}"),
        }
    }
}

impl FromStr for DiskRef {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DiskRef::new(s)
    }
}

/// Most disks one pool may be declared on.
pub const MAX_POOL_DISKS: usize = 64;

/// A pool kind from the wire: ZFS or LVM thin, nothing else.
pub fn pool_kind(raw: i32) -> Result<PoolKind, InvalidInput> {
    match PoolKind::try_from(raw) {
        Ok(kind @ (PoolKind::Zfs | PoolKind::LvmThin)) => Ok(kind),
        Ok(PoolKind::Unspecified) | Err(_) => {
            Err(InvalidInput::field("pool kind", "must be zfs or lvm-thin"))
        }
    }
}

/// A pool layout from the wire.
pub fn pool_layout(raw: i32) -> Result<PoolLayout, InvalidInput> {
    match PoolLayout::try_from(raw) {
        Ok(
            layout @ (PoolLayout::Single
            | PoolLayout::Mirror
            | PoolLayout::Raidz1
            | PoolLayout::Raidz2),
        ) => Ok(layout),
        Ok(PoolLayout::Unspecified) | Err(_) => Err(InvalidInput::field(
            "pool layout",
            "must be single, mirror, raidz1 or raidz2",
        )),
    }
}

/// The disks a layout needs, per kind: LVM thin is one disk (redundancy is
/// ZFS's job); ZFS single is one disk (striping without redundancy is not
/// offered); raidz1 on 2 disks would be a slower mirror and raidz2 on 3 a
/// slower 3-way mirror, so they need 3 and 4.
pub fn check_pool_layout(
    kind: PoolKind,
    layout: PoolLayout,
    disks: usize,
) -> Result<(), InvalidInput> {
    let bad = |why: String| Err(InvalidInput::field("pool layout", why));
    match (kind, layout) {
        (PoolKind::LvmThin, PoolLayout::Single) if disks == 1 => Ok(()),
        (PoolKind::LvmThin, PoolLayout::Single) => bad(format!(
            "an lvm-thin pool is on exactly one disk ({disks} given)"
        )),
        (PoolKind::LvmThin, _) => bad(
            "lvm-thin pools are single only (LVM RAID is not offered; use ZFS for redundancy)"
                .into(),
        ),
        (PoolKind::Zfs, PoolLayout::Single) if disks != 1 => bad(format!(
            "a single pool is one disk ({disks} given); striping disks without redundancy \
             is not offered, use mirror or raidz"
        )),
        (PoolKind::Zfs, layout) => {
            let min = match layout {
                PoolLayout::Single => 1,
                PoolLayout::Mirror => 2,
                PoolLayout::Raidz1 => 3,
                PoolLayout::Raidz2 => 4,
                PoolLayout::Unspecified => return bad("no pool layout".into()),
            };
            if disks < min {
                bad(format!(
                    "{} needs at least {min} disks ({disks} given)",
                    layout.as_str_name().to_lowercase()
                ))
            } else {
                Ok(())
            }
        }
        (PoolKind::Unspecified, _) => bad("no pool kind".into()),
    }
}

/// A pool as a node is asked to have it: the checks the controller makes
/// when an admin declares it, made again by the agent when the declaration
/// arrives, from one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDecl {
    pub name: PoolName,
    pub kind: PoolKind,
    pub layout: PoolLayout,
    pub disks: Vec<DiskRef>,
    /// Disks holding data may be wiped to create the pool.
    pub force: bool,
}

impl PoolDecl {
    pub fn new(
        name: &str,
        kind: i32,
        layout: i32,
        disks: &[String],
        force: bool,
    ) -> Result<PoolDecl, InvalidInput> {
        let name = PoolName::new(name)?;
        let kind = pool_kind(kind)?;
        let layout = pool_layout(layout)?;
        if disks.is_empty() {
            return Err(InvalidInput::field(
                "disks",
                "a pool needs at least one disk",
            ));
        }
        if disks.len() > MAX_POOL_DISKS {
            return Err(InvalidInput::field(
                "disks",
                format!("at most {MAX_POOL_DISKS} disks per pool"),
            ));
        }
        let mut refs: Vec<DiskRef> = Vec::with_capacity(disks.len());
        for text in disks {
            let disk = DiskRef::new(text)?;
            if refs.contains(&disk) {
                return Err(InvalidInput::field(
                    "disks",
                    format!("{disk} is listed twice"),
                ));
            }
            refs.push(disk);
        }
        check_pool_layout(kind, layout, refs.len())?;
        Ok(PoolDecl {
            name,
            kind,
            layout,
            disks: refs,
            force,
        })
    }
}

impl TryFrom<&PoolSpec> for PoolDecl {
    type Error = InvalidInput;
    fn try_from(spec: &PoolSpec) -> Result<PoolDecl, InvalidInput> {
        PoolDecl::new(&spec.name, spec.kind, spec.layout, &spec.disks, spec.force)
    }
}

impl From<&PoolDecl> for PoolSpec {
    fn from(p: &PoolDecl) -> PoolSpec {
        PoolSpec {
            name: p.name.to_string(),
            kind: p.kind as i32,
            layout: p.layout as i32,
            disks: p.disks.iter().map(ToString::to_string).collect(),
            force: p.force,
        }
    }
}

/// A reservation is ZFS only (thin provisioning reserves nothing) and
/// never more than the volume.
pub fn check_reservation(
    kind: PoolKind,
    reservation_bytes: u64,
    size_bytes: u64,
) -> Result<(), InvalidInput> {
    if reservation_bytes == 0 {
        return Ok(());
    }
    if kind != PoolKind::Zfs {
        return Err(InvalidInput::field(
            "reservation",
            "only ZFS pools reserve space (thin provisioning reserves nothing)",
        ));
    }
    if reservation_bytes > size_bytes {
        return Err(InvalidInput::field(
            "reservation",
            format!(
                "{} is more than the volume's size {}",
                format_size(reservation_bytes),
                format_size(size_bytes)
            ),
        ));
    }
    Ok(())
}

/// A tenant's volume as its node is asked to have it, every field checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDecl {
    pub id: VolumeId,
    pub tenant: crate::domain::TenantName,
    pub name: VolumeName,
    pub pool: PoolName,
    pub pool_kind: PoolKind,
    /// Aligned and within bounds ([`volume_size`]).
    pub size_bytes: u64,
    pub reservation_bytes: u64,
    pub encrypted: bool,
    /// `/srv/tenants/<tenant>/<volume>`.
    pub mount_path: String,
    pub owner_uid: u32,
    pub owner_gid: u32,
    /// Active, retained or purged.
    pub state: VolumeState,
    /// Snapshots wanted, oldest first, each once.
    pub snapshots: Vec<SnapshotName>,
    pub allow_shrink: bool,
}

impl TryFrom<&VolumeSpec> for VolumeDecl {
    type Error = InvalidInput;
    fn try_from(spec: &VolumeSpec) -> Result<VolumeDecl, InvalidInput> {
        let id = VolumeId::new(spec.id.as_str())?;
        let tenant = crate::domain::TenantName::new(spec.tenant.as_str())?;
        let name = VolumeName::new(spec.name.as_str())?;
        let pool = PoolName::new(spec.pool.as_str())?;
        let pool_kind = pool_kind(spec.pool_kind)?;
        let size_bytes = volume_size(spec.size_bytes)?;
        check_reservation(pool_kind, spec.reservation_bytes, size_bytes)?;
        let state = match VolumeState::try_from(spec.state) {
            Ok(state @ (VolumeState::Active | VolumeState::Retained | VolumeState::Purged)) => {
                state
            }
            _ => {
                return Err(InvalidInput::field(
                    "volume state",
                    format!("{} is not active, retained or purged", spec.state),
                ));
            }
        };
        let mut snapshots: Vec<SnapshotName> = Vec::with_capacity(spec.snapshots.len());
        for text in &spec.snapshots {
            let snap = SnapshotName::new(text.as_str())?;
            if snapshots.contains(&snap) {
                return Err(InvalidInput::field(
                    "snapshots",
                    format!("{snap} is listed twice"),
                ));
            }
            snapshots.push(snap);
        }
        Ok(VolumeDecl {
            mount_path: mount_path(tenant.as_str(), name.as_str()),
            id,
            tenant,
            name,
            pool,
            pool_kind,
            size_bytes,
            reservation_bytes: spec.reservation_bytes,
            encrypted: spec.encrypted,
            owner_uid: spec.owner_uid,
            owner_gid: spec.owner_gid,
            state,
            snapshots,
            allow_shrink: spec.allow_shrink,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("20GiB").unwrap(), 20 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5T").unwrap(), 3 << 39);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size(" 1 G ").unwrap(), 1 << 30);
        for bad in [
            "",
            "G",
            "1.2.3G",
            "12X",
            "-1G",
            "99999999999P",
            "1e9",
            "1.1234567G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volume_sizes_are_bounded_and_aligned() {
        assert!(volume_size(1 << 20).is_err());
        assert_eq!(volume_size(64 << 20).unwrap(), 64 << 20);
        assert_eq!(volume_size((64 << 20) + 1).unwrap(), 68 << 20);
        assert!(volume_size(u64::MAX).is_err());
        assert_eq!(format_size(20 << 30), "20.0 GiB");
        assert_eq!(format_size(10), "10 B");
    }

    #[test]
    fn pool_names_refuse_zpool_keywords() {
        assert!(PoolName::new("tank").is_ok());
        assert!(PoolName::new("vg-data").is_ok());
        for bad in [
            "mirror",
            "raidz2",
            "spare-1",
            "log",
            "coloc",
            "Tank",
            "t/a",
            &"a".repeat(33),
        ] {
            assert!(PoolName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volume_ids_are_sixteen_hex_digits() {
        let id = VolumeId::random();
        assert!(VolumeId::new(id.as_str()).is_ok());
        assert_ne!(VolumeId::random(), VolumeId::random());
        for bad in [
            "",
            "0123456789abcdeF",
            "0123456789abcde",
            "0123456789abcdefg",
            "../../etc/passw",
        ] {
            assert!(VolumeId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn disk_refs_are_serial_or_by_id() {
        assert_eq!(
            DiskRef::new("serial:COLOC0001").unwrap(),
            DiskRef::Serial("COLOC0001".into())
        );
        assert_eq!(
            DiskRef::new("id:nvme-QEMU_NVMe_Ctrl_COLOC0001")
                .unwrap()
                .to_string(),
            "id:nvme-QEMU_NVMe_Ctrl_COLOC0001"
        );
        for bad in [
            "COLOC0001",
            "serial:",
            "path:/dev/sda",
            "id:../../sda",
            "id:a/b",
            "serial:-f",
            "serial:a b",
            "serial:a;reboot",
        ] {
            assert!(DiskRef::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pool_layouts_need_their_disks() {
        use PoolKind::{LvmThin, Zfs};
        use PoolLayout::{Mirror, Raidz1, Raidz2, Single};
        for (kind, layout, disks) in [
            (Zfs, Single, 1),
            (Zfs, Mirror, 2),
            (Zfs, Raidz1, 3),
            (Zfs, Raidz2, 4),
            (LvmThin, Single, 1),
        ] {
            assert!(
                check_pool_layout(kind, layout, disks).is_ok(),
                "{layout:?} {disks}"
            );
        }
        for (kind, layout, disks) in [
            (Zfs, Single, 2),
            (Zfs, Mirror, 1),
            (Zfs, Raidz1, 2),
            (Zfs, Raidz2, 3),
            (LvmThin, Single, 2),
            (LvmThin, Mirror, 2),
        ] {
            assert!(
                check_pool_layout(kind, layout, disks).is_err(),
                "{layout:?} {disks}"
            );
        }
    }

    #[test]
    fn pool_declarations_are_checked_whole() {
        let disks = |d: &[&str]| d.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = PoolDecl::new(
            "tank",
            PoolKind::Zfs as i32,
            PoolLayout::Mirror as i32,
            &disks(&["serial:A", "serial:B"]),
            false,
        )
        .unwrap();
        assert_eq!(PoolDecl::try_from(&PoolSpec::from(&ok)).unwrap(), ok);
        for (name, kind, layout, d) in [
            (
                "mirror",
                PoolKind::Zfs as i32,
                PoolLayout::Single as i32,
                disks(&["serial:A"]),
            ),
            ("tank", 0, PoolLayout::Single as i32, disks(&["serial:A"])),
            ("tank", PoolKind::Zfs as i32, 99, disks(&["serial:A"])),
            (
                "tank",
                PoolKind::Zfs as i32,
                PoolLayout::Single as i32,
                disks(&[]),
            ),
            (
                "tank",
                PoolKind::Zfs as i32,
                PoolLayout::Mirror as i32,
                disks(&["serial:A", "serial:A"]),
            ),
            (
                "tank",
                PoolKind::Zfs as i32,
                PoolLayout::Single as i32,
                disks(&["/dev/sda"]),
            ),
        ] {
            assert!(
                PoolDecl::new(name, kind, layout, &d, false).is_err(),
                "{name} {d:?}"
            );
        }
    }

    #[test]
    fn volume_declarations_are_checked_whole() {
        let spec = VolumeSpec {
            id: "0123456789abcdef".into(),
            tenant: "asso-x".into(),
            name: "data".into(),
            pool: "tank".into(),
            pool_kind: PoolKind::Zfs as i32,
            size_bytes: 64 << 20,
            reservation_bytes: 32 << 20,
            encrypted: false,
            owner_uid: 200_000,
            owner_gid: 200_000,
            state: VolumeState::Active as i32,
            snapshots: vec!["a".into(), "b".into()],
            allow_shrink: false,
        };
        let v = VolumeDecl::try_from(&spec).unwrap();
        assert_eq!(v.mount_path, "/srv/tenants/asso-x/data");
        type Mutation = fn(&mut VolumeSpec);
        let cases: Vec<(&str, Mutation)> = vec![
            ("id", |s| s.id = "../../etc".into()),
            ("tenant", |s| s.tenant = "A".into()),
            ("name", |s| s.name = "a/b".into()),
            ("pool", |s| s.pool = "raidz".into()),
            ("kind", |s| s.pool_kind = 0),
            ("size", |s| s.size_bytes = 1),
            ("reservation over size", |s| s.reservation_bytes = 128 << 20),
            ("reservation on lvm", |s| {
                s.pool_kind = PoolKind::LvmThin as i32
            }),
            ("state", |s| s.state = 0),
            ("snapshot twice", |s| {
                s.snapshots = vec!["a".into(), "a".into()]
            }),
            ("snapshot name", |s| s.snapshots = vec!["a@b".into()]),
        ];
        for (what, mutate) in cases {
            let mut bad = spec.clone();
            mutate(&mut bad);
            assert!(VolumeDecl::try_from(&bad).is_err(), "{what}");
        }
    }
}

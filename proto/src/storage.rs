//! Validated storage values shared by the controller, the agent and the
//! CLI: volume, snapshot and pool names, volume ids, disk references and
//! sizes. Every one of them ends up in a command line (`zfs create`,
//! `lvcreate`), a property, a tag or a path, so each type admits only what
//! all of those places can carry without quoting.

use std::fmt;
use std::str::FromStr;

use crate::domain::{InvalidInput, check_name};

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

macro_rules! string_type {
    ($ty:ident) => {
        impl $ty {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $ty {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = InvalidInput;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }
        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A volume's name inside its tenant, e.g. `data`: the name rule.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct VolumeName(String);

impl VolumeName {
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidInput> {
        let value = value.into();
        check_name("volume name", &value)?;
        Ok(Self(value))
    }
}
string_type!(VolumeName);

/// A snapshot's name, e.g. `before-upgrade`: the name rule.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotName(String);

impl SnapshotName {
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidInput> {
        let value = value.into();
        check_name("snapshot name", &value)?;
        Ok(Self(value))
    }
}
string_type!(SnapshotName);

/// Words `zpool` reads as vdev types or that LVM reserves: never pool names.
const RESERVED_POOL_NAMES: &[&str] = &[
    "mirror", "raidz", "raidz1", "raidz2", "raidz3", "draid", "spare", "log", "cache", "special",
    "dedup", "coloc",
];

/// A ZFS pool or LVM volume group name: the name rule, at most 32
/// characters, and none of the words `zpool` gives a meaning to.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct PoolName(String);

impl PoolName {
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidInput> {
        let value = value.into();
        check_name("pool name", &value)?;
        if value.len() > 32 {
            return Err(InvalidInput::field(
                "pool name",
                format!("{value:?} is longer than 32 characters"),
            ));
        }
        if RESERVED_POOL_NAMES.contains(&value.as_str())
            || value.starts_with("raidz")
            || value.starts_with("draid")
            || value.starts_with("mirror")
            || value.starts_with("spare")
        {
            return Err(InvalidInput::field(
                "pool name",
                format!("{value:?} is reserved by ZFS or coloc"),
            ));
        }
        Ok(Self(value))
    }
}
string_type!(PoolName);

/// A volume's identity: 16 lowercase hex digits, chosen by the controller,
/// stored on the object (ZFS user property `coloc:volume-id`, LV tag
/// `coloc_volume_<id>`) so that the agent recognises its own volumes.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct VolumeId(String);

impl VolumeId {
    pub const LEN: usize = 16;

    pub fn new(value: impl Into<String>) -> Result<Self, InvalidInput> {
        let value = value.into();
        if value.len() != Self::LEN
            || !value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(InvalidInput::field(
                "volume id",
                format!(
                    "{:?} is not 16 lowercase hex digits",
                    value.chars().take(40).collect::<String>()
                ),
            ));
        }
        Ok(Self(value))
    }

    /// A fresh random id.
    pub fn random() -> Self {
        let bytes: [u8; 8] = rand::random();
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}
string_type!(VolumeId);

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
}

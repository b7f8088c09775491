//! The typed values the host layer hands out, and [`UnitName`], the one
//! input type it validates on construction.

use std::fmt;
use std::str::FromStr;

use coloc_proto::agent::v1::Disk;

use crate::HostError;

/// A whole disk as the facts describe it (from `lsblk`, see
/// [`LsblkDevice::block_device`](crate::LsblkDevice::block_device)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Kernel name, e.g. `vda`, `sda`, `nvme0n1`.
    pub name: String,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub size_bytes: u64,
    /// `sata`, `nvme`, `usb`, `virtio`, ... when the host can tell.
    pub transport: Option<String>,
    pub rotational: bool,
}

impl BlockDevice {
    /// The device node, e.g. `/dev/nvme0n1`.
    pub fn dev_path(&self) -> String {
        format!("/dev/{}", self.name)
    }
}

impl From<&BlockDevice> for Disk {
    fn from(d: &BlockDevice) -> Disk {
        Disk {
            name: d.name.clone(),
            model: d.model.clone().unwrap_or_default(),
            serial: d.serial.clone().unwrap_or_default(),
            size_bytes: d.size_bytes,
            transport: d.transport.clone().unwrap_or_default(),
            rotational: d.rotational,
        }
    }
}

/// What `smartctl` says about one drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartReport {
    /// The device as queried, e.g. `/dev/sda`.
    pub device: String,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// The drive's own overall health verdict.
    pub passed: bool,
    pub temperature_c: Option<i64>,
    pub power_on_hours: Option<u64>,
    /// NVMe "media and data integrity errors"; `None` for ATA and SCSI,
    /// which have no such counter.
    pub media_errors: Option<u64>,
}

/// The state of a systemd unit, in systemd's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// `active`, `inactive`, `failed`, `activating`, `deactivating`, ...
    pub active_state: String,
    /// Type-specific: `running`, `exited`, `dead`, `listening`, ...
    pub sub_state: String,
    /// `loaded`, `not-found`, `masked`, `bad-setting`, `error`, ...
    pub load_state: String,
}

impl UnitState {
    pub fn is_active(&self) -> bool {
        self.active_state == "active"
    }

    pub fn is_failed(&self) -> bool {
        self.active_state == "failed"
    }

    /// False for units with no unit file (`not-found`) or otherwise not
    /// loadable.
    pub fn is_loaded(&self) -> bool {
        self.load_state == "loaded"
    }
}

/// Suffixes of the unit types the agent may address.
const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".mount",
    ".automount",
    ".swap",
    ".path",
    ".slice",
    ".scope",
    ".device",
];

/// systemd's limit on unit name length.
const UNIT_NAME_MAX: usize = 255;

/// A validated systemd unit name, e.g. `ssh.service` or
/// `coloc-app@nextcloud.service`.
///
/// Only `[A-Za-z0-9:_.@-]`, a known type suffix, at most 255 bytes, no
/// leading `-` (it would read as an option to any tool), and for templated
/// units a non-empty instance (`foo@.service` is a template, which cannot
/// be started). systemd's `\x2d`-style escapes are refused: the agent has
/// no need for them and they are easy to get wrong.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct UnitName(String);

impl UnitName {
    pub fn new(name: impl Into<String>) -> Result<UnitName, HostError> {
        let name = name.into();
        match unit_name_problem(&name) {
            None => Ok(UnitName(name)),
            Some(reason) => Err(HostError::InvalidUnitName { name, reason }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn unit_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if name.len() > UNIT_NAME_MAX {
        return Some("longer than 255 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":_.@-".contains(&b))
    {
        return Some("only letters, digits and : _ . @ - are allowed");
    }
    if name.starts_with('-') {
        return Some("must not start with '-'");
    }
    let Some(stem) = UNIT_SUFFIXES
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
    else {
        return Some("no known unit type suffix (.service, .socket, .target, .timer, ...)");
    };
    if stem.is_empty() {
        return Some("nothing before the type suffix");
    }
    if let Some((prefix, instance)) = stem.split_once('@') {
        if prefix.is_empty() {
            return Some("nothing before '@'");
        }
        if instance.is_empty() {
            return Some("a template ('@' with no instance) cannot be addressed");
        }
    }
    None
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for UnitName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for UnitName {
    type Err = HostError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnitName::new(s)
    }
}

impl TryFrom<String> for UnitName {
    type Error = HostError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        UnitName::new(s)
    }
}

impl TryFrom<&str> for UnitName {
    type Error = HostError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        UnitName::new(s)
    }
}

impl From<UnitName> for String {
    fn from(name: UnitName) -> String {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_unit_names_are_accepted() {
        for name in [
            "ssh.service",
            "systemd-journald.service",
            "coloc-app@nextcloud.service",
            "getty@tty1.service",
            "zfs-import.target",
            "srv-data.mount",
            "apt-daily.timer",
            "dbus.socket",
            "user-1000.slice",
            "dev-disk-by-label.device",
            "a:b_c.d.service",
        ] {
            let unit = UnitName::new(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(unit.as_str(), name);
            assert_eq!(unit.to_string(), name);
        }
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        let long = format!("{}.service", "a".repeat(250));
        for name in [
            "",
            "ssh",
            "ssh.exe",
            ".service",
            "-ssh.service",
            "--now.service",
            "ssh service.service",
            "ssh.service;reboot",
            "../ssh.service",
            "ssh/x.service",
            "dev-x\\x2dy.device",
            "unité.service",
            "foo@.service",
            "@foo.service",
            "ssh.service\n",
            long.as_str(),
        ] {
            match UnitName::new(name) {
                Err(HostError::InvalidUnitName { name: n, reason }) => {
                    assert_eq!(n, name);
                    assert!(!reason.is_empty());
                }
                other => panic!("{name:?} should be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn unit_names_deserialize_only_when_valid() {
        let ok: UnitName = serde_json::from_str("\"ssh.service\"").unwrap();
        assert_eq!(ok.as_str(), "ssh.service");
        assert!(serde_json::from_str::<UnitName>("\"-x.service\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"ssh.service\"");
    }

    #[test]
    fn block_devices_convert_to_wire_disks() {
        let dev = BlockDevice {
            name: "sda".into(),
            model: None,
            serial: Some("S1".into()),
            size_bytes: 42,
            transport: Some("sata".into()),
            rotational: true,
        };
        let disk = Disk::from(&dev);
        assert_eq!(disk.name, "sda");
        assert_eq!(disk.model, "");
        assert_eq!(disk.serial, "S1");
        assert_eq!(disk.size_bytes, 42);
        assert_eq!(disk.transport, "sata");
        assert!(disk.rotational);
        assert_eq!(dev.dev_path(), "/dev/sda");
    }
}

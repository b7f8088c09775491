//! The typed values the host layer hands out. Unit names are proto's
//! [`UnitName`](coloc_proto::units::UnitName): one rule for the controller
//! that renders them and the agent that addresses them.

use coloc_proto::agent::v1::Disk;

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

#[cfg(test)]
mod tests {
    use super::*;

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

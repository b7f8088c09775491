//! What a test asks for: the VM's shape ([`VmSpec`]), how it boots
//! ([`Boot`]), its extra disks ([`DiskSpec`]) and port forwards
//! ([`Forward`]). Validation lives here so that a bad spec is refused before
//! any file is created or process started, with a message naming the field.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Result, bail};

/// How the VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// OVMF with the image as a full GPT disk: the production path.
    Uefi,
    /// QEMU's direct kernel boot (SeaBIOS, `-kernel`), for the harness's own
    /// tests and quick experiments; the image is still the first disk.
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        append: String,
    },
}

/// An extra, initially empty disk. Each one sits on its own PCIe root port,
/// so it can be hot-unplugged with [`crate::Vm::hot_unplug`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// QEMU device id, used by `hot_unplug`. Letters, digits, `-`, `.`, `_`,
    /// starting with a letter; the `coloc-` prefix is the harness's own.
    /// For virtio disks it is also the disk's serial (first 20 bytes), so the
    /// guest sees it as `/dev/disk/by-id/virtio-<id>`.
    pub id: String,
    pub size_mib: u64,
    pub kind: DiskKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskKind {
    Virtio,
    /// An NVMe controller with one namespace; the serial is what
    /// `lsblk -o SERIAL` and `smartctl` report in the guest.
    Nvme {
        serial: String,
    },
}

/// A TCP forward from the host's 127.0.0.1 to a guest port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub guest: u16,
    /// Host port on 127.0.0.1; `None` picks a free one (see
    /// [`crate::Vm::forwarded`]).
    pub host: Option<u16>,
}

impl Forward {
    /// Forwards `port` in the guest from a free host port.
    pub fn guest(port: u16) -> Forward {
        Forward {
            guest: port,
            host: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// Shown in logs and errors, and as QEMU's `-name`.
    pub name: String,
    /// Base image (raw or qcow2). Never written: the VM runs on a qcow2
    /// overlay in its work directory.
    pub image: PathBuf,
    pub boot: Boot,
    pub cpus: u32,
    pub memory_mib: u32,
    pub disks: Vec<DiskSpec>,
    /// Seed volume (docs/IMAGE.md), attached read-only as a virtio drive.
    pub seed: Option<PathBuf>,
    pub forwards: Vec<Forward>,
    /// Private key matching a public key in the seed; when set, guest port
    /// 22 is forwarded and the guest commands go over SSH as root.
    pub ssh_key: Option<PathBuf>,
    /// Size of the boot disk as the guest sees it, when larger than the
    /// image (a real server's disk is): the overlay is created this big, so
    /// first boot has room to grow the root filesystem into.
    pub disk_size_mib: Option<u64>,
}

impl VmSpec {
    /// A UEFI VM with 2 CPUs and 1 GiB of memory, no extra disks, no seed,
    /// no forwards and no SSH key.
    pub fn new(name: impl Into<String>, image: impl Into<PathBuf>) -> VmSpec {
        VmSpec {
            name: name.into(),
            image: image.into(),
            boot: Boot::Uefi,
            cpus: 2,
            memory_mib: 1024,
            disks: Vec::new(),
            seed: None,
            forwards: Vec::new(),
            ssh_key: None,
            disk_size_mib: None,
        }
    }

    /// Refuses what QEMU would misparse or reject late: ids and serials end up
    /// inside QEMU's comma-separated option strings, so they are restricted
    /// to characters that need no escaping there.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bail!(
                "VM name {:?} must be non-empty and use only letters, digits, '-', '_', '.'",
                self.name
            );
        }
        if self.cpus == 0 {
            bail!("VM {}: cpus must be at least 1", self.name);
        }
        if self.memory_mib < 128 {
            bail!(
                "VM {}: memory_mib {} is too small (at least 128)",
                self.name,
                self.memory_mib
            );
        }
        if let Boot::Kernel { append, .. } = &self.boot
            && append.contains('\0')
        {
            bail!("VM {}: kernel command line contains a NUL byte", self.name);
        }
        let mut ids = HashSet::new();
        for disk in &self.disks {
            check_device_id(&disk.id).map_err(|e| anyhow::anyhow!("VM {}: {e}", self.name))?;
            if !ids.insert(disk.id.as_str()) {
                bail!("VM {}: disk id {:?} is used twice", self.name, disk.id);
            }
            if disk.size_mib == 0 {
                bail!("VM {}: disk {} has size 0", self.name, disk.id);
            }
            if let DiskKind::Nvme { serial } = &disk.kind {
                check_serial(serial)
                    .map_err(|e| anyhow::anyhow!("VM {}: disk {}: {e}", self.name, disk.id))?;
            }
        }
        let mut guest_ports = HashSet::new();
        for fwd in &self.forwards {
            if fwd.guest == 0 || fwd.host == Some(0) {
                bail!("VM {}: port 0 in forward {fwd:?}", self.name);
            }
            if !guest_ports.insert(fwd.guest) {
                bail!(
                    "VM {}: guest port {} is forwarded twice",
                    self.name,
                    fwd.guest
                );
            }
        }
        Ok(())
    }
}

/// QEMU ids: a letter, then letters, digits, `-`, `.`, `_` (QEMU's own
/// rule), and not in the harness's `coloc-` namespace.
pub(crate) fn check_device_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !ok {
        bail!(
            "disk id {id:?} must start with a letter and use only letters, digits, '-', '.', '_'"
        );
    }
    if id.starts_with("coloc-") || id.starts_with("drive-") {
        bail!("disk id {id:?} uses a prefix reserved by the harness (coloc-, drive-)");
    }
    Ok(())
}

/// NVMe serials are at most 20 bytes of printable ASCII; commas would be read
/// by QEMU as an option separator.
pub(crate) fn check_serial(serial: &str) -> Result<()> {
    if serial.is_empty() || serial.len() > 20 {
        bail!("serial {serial:?} must be 1 to 20 characters");
    }
    if !serial
        .chars()
        .all(|c| c.is_ascii_graphic() && c != ',' && c != '=')
    {
        bail!("serial {serial:?} must be printable ASCII without spaces, ',' or '='");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        let mut s = VmSpec::new("n1", "/images/node.img");
        s.disks.push(DiskSpec {
            id: "data1".into(),
            size_mib: 64,
            kind: DiskKind::Nvme {
                serial: "COLOC0001".into(),
            },
        });
        s.forwards.push(Forward::guest(7443));
        s
    }

    #[test]
    fn a_reasonable_spec_is_accepted() {
        spec().validate().unwrap();
    }

    #[test]
    fn disk_ids_that_qemu_would_misparse_are_refused() {
        for bad in [
            "",
            "1disk",
            "a,b",
            "a b",
            "a=b",
            "coloc-root",
            "drive-x",
            "é",
        ] {
            let mut s = spec();
            s.disks[0].id = bad.into();
            assert!(s.validate().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn duplicate_disk_ids_are_refused() {
        let mut s = spec();
        s.disks.push(s.disks[0].clone());
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("used twice"), "{err}");
    }

    #[test]
    fn nvme_serials_are_checked() {
        for bad in ["", "A,B", "A B", "x=1", "012345678901234567890"] {
            let mut s = spec();
            s.disks[0].kind = DiskKind::Nvme { serial: bad.into() };
            assert!(s.validate().is_err(), "{bad:?} accepted");
        }
        let mut s = spec();
        s.disks[0].kind = DiskKind::Nvme {
            serial: "01234567890123456789".into(),
        };
        s.validate().unwrap();
    }

    #[test]
    fn forwards_and_sizes_are_checked() {
        let mut s = spec();
        s.forwards.push(Forward::guest(7443));
        assert!(s.validate().is_err());
        let mut s = spec();
        s.forwards.push(Forward {
            guest: 80,
            host: Some(0),
        });
        assert!(s.validate().is_err());
        let mut s = spec();
        s.memory_mib = 64;
        assert!(s.validate().is_err());
        let mut s = spec();
        s.name = "n 1".into();
        assert!(s.validate().is_err());
    }
}

//! The subjects of maintenance, checked before any tool sees them: a ZFS
//! pool name for a scrub, a device path or a disk serial for a SMART
//! self-test.

use coloc_proto::agent::v1::MaintenanceKind;
use coloc_proto::health::check_device_path;

use crate::HostError;

/// Longest pool name zpool accepts (ZFS_MAX_DATASET_NAME_LEN is 256).
const POOL_NAME_MAX: usize = 255;
/// Longest serial accepted; ATA serials are 20 bytes, NVMe 20, SCSI more.
const SERIAL_MAX: usize = 128;

/// Words zpool reads as vdev types: never pool names (zpool_name_valid).
const RESERVED_POOL_PREFIXES: &[&str] = &["mirror", "raidz", "draid", "spare", "log"];

/// zpool's rule for a pool name: starts with a letter, then letters,
/// digits and `_ - . :` (no space), not a vdev keyword, at most 255 bytes.
pub fn check_pool_name(name: &str) -> Result<(), HostError> {
    let refuse = |reason: &str| {
        Err(HostError::Refused {
            object: format!("pool {:?}", name.chars().take(64).collect::<String>()),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() || name.len() > POOL_NAME_MAX {
        return refuse("a pool name has 1 to 255 bytes");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return refuse("a pool name starts with a letter");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    {
        return refuse("a pool name has only letters, digits and _ - . :");
    }
    if RESERVED_POOL_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return refuse(
            "a pool name cannot start with a vdev keyword (mirror, raidz, draid, spare, log)",
        );
    }
    Ok(())
}

/// A disk serial as lsblk prints it: letters, digits and `_ - . :`,
/// starting with a letter or digit, at most 128 bytes. It is only ever compared, never passed to a tool.
pub fn check_serial(serial: &str) -> Result<(), HostError> {
    let ok = !serial.is_empty()
        && serial.len() <= SERIAL_MAX
        && serial.starts_with(|c: char| c.is_ascii_alphanumeric())
        && serial
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(HostError::Refused {
            object: format!("disk {:?}", serial.chars().take(64).collect::<String>()),
            reason:
                "neither a device path under /dev/ nor a disk serial (letters, digits, _ - . :)"
                    .to_owned(),
        })
    }
}

/// What a self-test is asked to run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Disk {
    Path(String),
    Serial(String),
}

/// A checked self-test subject: a path under /dev/ or a serial.
pub(crate) fn self_test_subject(subject: &str) -> Result<Disk, HostError> {
    if subject.starts_with('/') {
        check_device_path(subject).map_err(|e| HostError::InvalidDevice {
            device: e.device,
            reason: e.reason,
        })?;
        return Ok(Disk::Path(subject.to_owned()));
    }
    check_serial(subject)?;
    Ok(Disk::Serial(subject.to_owned()))
}

/// What `start_maintenance` is asked to do, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    Scrub { pool: String },
    SelfTest { long: bool, disk: Disk },
}

pub(crate) fn check_start(kind: MaintenanceKind, subject: &str) -> Result<Start, HostError> {
    match kind {
        MaintenanceKind::Scrub => {
            check_pool_name(subject)?;
            Ok(Start::Scrub {
                pool: subject.to_owned(),
            })
        }
        MaintenanceKind::SmartShort | MaintenanceKind::SmartLong => Ok(Start::SelfTest {
            long: kind == MaintenanceKind::SmartLong,
            disk: self_test_subject(subject)?,
        }),
        MaintenanceKind::Unspecified => Err(HostError::Refused {
            object: "maintenance".to_owned(),
            reason: "no maintenance kind given".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_follow_zpools_rule() {
        for good in ["tank", "rpool", "data_1", "a.b:c-d", "Tank2"] {
            check_pool_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "1tank",
            "-o",
            "tank pool",
            "tank;reboot",
            "mirror",
            "raidz1",
            "logs",
            "spare0",
            "tank/ds",
            &long,
        ] {
            assert!(check_pool_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn self_test_subjects_are_paths_or_serials() {
        assert_eq!(
            self_test_subject("/dev/nvme0n1").unwrap(),
            Disk::Path("/dev/nvme0n1".into())
        );
        assert_eq!(
            self_test_subject("S3Z9NB0K123456A").unwrap(),
            Disk::Serial("S3Z9NB0K123456A".into())
        );
        assert!(matches!(
            self_test_subject("/dev/../etc/passwd"),
            Err(HostError::InvalidDevice { .. })
        ));
        for bad in ["", "-t", "a b", "x;y", "/etc/passwd"] {
            assert!(self_test_subject(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_start(MaintenanceKind::Unspecified, "tank").is_err());
        assert_eq!(
            check_start(MaintenanceKind::SmartLong, "/dev/sda").unwrap(),
            Start::SelfTest {
                long: true,
                disk: Disk::Path("/dev/sda".into())
            }
        );
    }
}

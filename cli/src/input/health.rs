//! What people type about health and alerts: alert ids, how long a
//! silence lasts (`2h`, `3d`, at most 30 days), the pool a scrub runs on
//! and the disk a self-test runs on (a device path or a serial).

use std::fmt;

use coloc_proto::health::check_device_path;

use super::parse_ttl;

/// colocd refuses a silence longer than this (`SilenceAlertRequest`).
pub const MAX_SILENCE_SECS: u32 = 30 * 86_400;

/// An alert's number as `coloc alert list` shows it: a whole number from 1.
pub fn parse_alert_id(text: &str) -> Result<u64, String> {
    let shown: String = text.chars().take(40).collect();
    let explain = "alert ids are whole numbers from 1, as 'coloc alert list' shows them";
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{shown:?} is not an alert id: {explain}"));
    }
    match text.parse::<u64>() {
        Ok(0) => Err(format!("0 is not an alert id: {explain}")),
        Ok(id) => Ok(id),
        Err(_) => Err(format!("{shown:?} is too large for an alert id")),
    }
}

/// How long a silence lasts: `<number><unit>` with unit m, h or d (s is
/// accepted too), more than zero and at most 30 days, as colocd allows.
pub fn parse_silence(text: &str) -> Result<u32, String> {
    let secs = parse_ttl(text)?.secs();
    if secs > u64::from(MAX_SILENCE_SECS) {
        return Err(format!(
            "{:?} is longer than 30 days, the longest silence colocd keeps; \
             acknowledge the alert instead if someone is on it",
            text.trim()
        ));
    }
    // At most 30 days fits.
    u32::try_from(secs).map_err(|_| format!("{text:?} is too large"))
}

/// Words `zpool` gives a meaning to: no pool name starts with one of
/// these, nor is called `log`.
const ZPOOL_RESERVED_PREFIXES: [&str; 4] = ["mirror", "raidz", "draid", "spare"];

/// A ZFS pool's name as `zpool` allows it (a letter first, then letters,
/// digits, `_ - . :`), at most 255 bytes. Broader than the names coloc
/// gives its own pools, because a node may hold pools made by hand
/// (`rpool`) that deserve a scrub too.
pub fn parse_zpool_name(text: &str) -> Result<String, String> {
    let shown: String = text.chars().take(64).collect();
    let refuse = |why: &str| Err(format!("{shown:?} is not a ZFS pool name: {why}"));
    let Some(first) = text.chars().next() else {
        return refuse("empty");
    };
    if text.len() > 255 {
        return refuse("longer than 255 bytes");
    }
    if !first.is_ascii_alphabetic() {
        return refuse("it must start with a letter");
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    {
        return refuse("only letters, digits and _ - . : are allowed");
    }
    if text == "log" || ZPOOL_RESERVED_PREFIXES.iter().any(|w| text.starts_with(w)) {
        return refuse("zpool reserves this word");
    }
    Ok(text.to_string())
}

/// Longest serial accepted; drives report 20 (ATA) or 20 to 40 bytes.
const SERIAL_MAX: usize = 128;

/// The disk a self-test runs on, as `coloc node health` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskRef {
    /// `/dev/nvme0n1`, `/dev/disk/by-id/...`.
    Device(String),
    /// The drive's serial number.
    Serial(String),
}

impl DiskRef {
    /// What colocd takes in `StartMaintenanceRequest.subject`.
    pub fn subject(&self) -> &str {
        match self {
            DiskRef::Device(d) | DiskRef::Serial(d) => d,
        }
    }
}

impl fmt::Display for DiskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskRef::Device(d) => write!(f, "device {d}"),
            DiskRef::Serial(s) => write!(f, "serial {s}"),
        }
    }
}

/// A device path (anything starting with `/`, checked as the agent
/// checks it) or a serial number (printable ASCII without spaces).
pub fn parse_disk_ref(text: &str) -> Result<DiskRef, String> {
    if text.starts_with('/') {
        check_device_path(text).map_err(|e| e.to_string())?;
        return Ok(DiskRef::Device(text.to_string()));
    }
    let shown: String = text.chars().take(64).collect();
    if text.is_empty() {
        return Err(
            "empty disk: give its device path (/dev/sda) or its serial, as 'coloc node health' lists them"
                .to_string(),
        );
    }
    if text.len() > SERIAL_MAX {
        return Err(format!("{shown:?} is longer than any disk serial"));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{shown:?} is neither a device path (/dev/...) nor a serial \
             (serials are printable ASCII without spaces)"
        ));
    }
    Ok(DiskRef::Serial(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_ids() {
        assert_eq!(parse_alert_id("42"), Ok(42));
        assert_eq!(parse_alert_id("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "1.0",
            "abc",
            " 1",
            "18446744073709551616",
        ] {
            assert!(parse_alert_id(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            parse_alert_id("x")
                .unwrap_err()
                .contains("coloc alert list")
        );
        assert!(parse_alert_id("0").unwrap_err().contains("from 1"));
    }

    #[test]
    fn silences_last_at_most_thirty_days() {
        assert_eq!(parse_silence("2h"), Ok(7200));
        assert_eq!(parse_silence("3d"), Ok(3 * 86_400));
        assert_eq!(parse_silence("30d"), Ok(MAX_SILENCE_SECS));
        assert_eq!(parse_silence("90m"), Ok(5400));
        let err = parse_silence("31d").unwrap_err();
        assert!(err.contains("longer than 30 days"), "{err}");
        assert!(parse_silence("720h").is_ok());
        assert!(parse_silence("721h").is_err());
        for bad in ["", "0h", "2", "2w", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_silence(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn zpool_names() {
        for good in ["tank", "rpool", "data_pool", "Tank-2.a:b"] {
            assert_eq!(parse_zpool_name(good).as_deref(), Ok(good));
        }
        for bad in [
            "", "2tank", "-tank", "ta nk", "tank/ds", "mirror", "raidz2", "draid1", "spare", "log",
            "tänk",
        ] {
            assert!(parse_zpool_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_zpool_name(&"a".repeat(256)).is_err());
        assert!(
            parse_zpool_name("tank/ds")
                .unwrap_err()
                .contains("ZFS pool name")
        );
    }

    #[test]
    fn disks_are_devices_or_serials() {
        assert_eq!(
            parse_disk_ref("/dev/nvme0n1"),
            Ok(DiskRef::Device("/dev/nvme0n1".into()))
        );
        assert_eq!(
            parse_disk_ref("/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_COLOC0001"),
            Ok(DiskRef::Device(
                "/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_COLOC0001".into()
            ))
        );
        assert_eq!(
            parse_disk_ref("S4GNNX0N"),
            Ok(DiskRef::Serial("S4GNNX0N".into()))
        );
        assert_eq!(parse_disk_ref("S4GNNX0N").unwrap().subject(), "S4GNNX0N");
        for bad in [
            "",
            "/etc/passwd",
            "/dev/../etc",
            "/dev/sd a",
            "WD 123",
            "a\tb",
        ] {
            assert!(parse_disk_ref(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_disk_ref(&"S".repeat(129)).is_err());
    }
}

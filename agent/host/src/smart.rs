//! SMART through `smartctl --json -a`, and the device-path check that runs
//! before it.
//!
//! smartctl's exit status is a bit mask (smartctl(8), EXIT STATUS): bit 0
//! is "command line did not parse", bit 1 "device open failed or did not
//! identify"; those two mean there is no report. Bits 2 to 7 are findings
//! about the drive (a SMART command failed, "DISK FAILING", attributes at
//! or below threshold now or in the past, errors in the error or self-test
//! log): the report is there and is exactly what the caller wants to read.

use serde_json::Value;

use crate::{HostError, SmartReport};

/// Exit status bits after which smartctl produced no usable report.
const FATAL_BITS: i32 = 0b11;

/// Bit 3: "SMART status check returned DISK FAILING".
const DISK_FAILING_BIT: i32 = 0b1000;

/// Longest device path accepted.
const DEVICE_MAX: usize = 255;

/// Every exit status smartctl can return. The runner is told to accept all
/// of them so that the bit mask is interpreted here, with the JSON
/// `messages` at hand, rather than as an opaque failure.
pub(crate) fn smartctl_statuses() -> Vec<i32> {
    (1..=255).collect()
}

/// True when smartctl's exit status says no report was produced.
pub fn smartctl_status_is_fatal(status: i32) -> bool {
    !(0..=255).contains(&status) || status & FATAL_BITS != 0
}

/// Refuses anything but an absolute path under `/dev/` made of
/// `[A-Za-z0-9._:+-/]`, without `.`/`..` components or empty components,
/// at most 255 bytes. Runs before smartctl sees the string.
pub fn validate_device(device: &str) -> Result<(), HostError> {
    let refuse = |reason| {
        Err(HostError::InvalidDevice {
            device: device.to_owned(),
            reason,
        })
    };
    if device.len() > DEVICE_MAX {
        return refuse("longer than 255 bytes");
    }
    let Some(rest) = device.strip_prefix("/dev/") else {
        return refuse("not an absolute path under /dev/");
    };
    if !device
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:+-/".contains(&b))
    {
        return refuse("only letters, digits and . _ : + - / are allowed");
    }
    if rest
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return refuse("empty, '.' or '..' path component");
    }
    Ok(())
}

/// Interprets one `smartctl --json -a <device>` run: its exit status and
/// its standard output. Understands the ATA, NVMe and SCSI shapes.
pub fn parse_smartctl(device: &str, status: i32, json: &str) -> Result<SmartReport, HostError> {
    const WHAT: &str = "smartctl output";
    let root: Result<Value, _> = serde_json::from_str(json);
    if smartctl_status_is_fatal(status) {
        let messages = root
            .as_ref()
            .ok()
            .map(smartctl_messages)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "smartctl gave no message".to_owned());
        return Err(HostError::SmartFailed {
            device: device.to_owned(),
            status,
            messages,
        });
    }
    let root = root.map_err(|e| HostError::parse(WHAT, format!("{device}: {e}")))?;
    if !root.is_object() {
        return Err(HostError::parse(
            WHAT,
            format!("{device}: not a JSON object"),
        ));
    }

    let passed = match root.pointer("/smart_status/passed") {
        Some(Value::Bool(passed)) => *passed,
        Some(other) => {
            return Err(HostError::parse(
                WHAT,
                format!("{device}: smart_status.passed is {other}, not a boolean"),
            ));
        }
        // No verdict in the JSON, but the exit status still carries one.
        None if status & DISK_FAILING_BIT != 0 => false,
        None => {
            return Err(HostError::SmartUnavailable {
                device: device.to_owned(),
            });
        }
    };
    let text = |pointer: &str| {
        root.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Ok(SmartReport {
        device: device.to_owned(),
        // ATA and NVMe say model_name; SCSI says scsi_model_name (7.3+)
        // or product (older).
        model: text("/model_name")
            .or_else(|| text("/scsi_model_name"))
            .or_else(|| text("/product")),
        serial: text("/serial_number"),
        passed,
        temperature_c: root.pointer("/temperature/current").and_then(Value::as_i64),
        power_on_hours: root.pointer("/power_on_time/hours").and_then(Value::as_u64),
        media_errors: root
            .pointer("/nvme_smart_health_information_log/media_errors")
            .and_then(Value::as_u64),
    })
}

/// smartctl's own explanation of what went wrong, one message per line.
pub(crate) fn smartctl_messages(root: &Value) -> String {
    root.pointer("/smartctl/messages")
        .and_then(Value::as_array)
        .map(|messages| {
            messages
                .iter()
                .filter_map(|m| m.get("string").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bits_zero_and_one_are_fatal() {
        assert!(!smartctl_status_is_fatal(0));
        for bit in 2..8 {
            assert!(!smartctl_status_is_fatal(1 << bit), "bit {bit}");
        }
        assert!(!smartctl_status_is_fatal(0b1111_1100));
        assert!(smartctl_status_is_fatal(1));
        assert!(smartctl_status_is_fatal(2));
        assert!(smartctl_status_is_fatal(0b1000_0010));
        assert!(smartctl_status_is_fatal(-1));
        assert!(smartctl_status_is_fatal(256));
        assert_eq!(smartctl_statuses().len(), 255);
    }

    #[test]
    fn plausible_devices_are_accepted() {
        for device in [
            "/dev/sda",
            "/dev/nvme0",
            "/dev/nvme0n1",
            "/dev/vda",
            "/dev/disk/by-id/ata-Samsung_SSD_860_EVO_1TB_S3Z9NB0K123456A",
            "/dev/disk/by-path/pci-0000:00:1f.2-ata-1",
            "/dev/disk/by-id/wwn-0x5002538e4+0",
        ] {
            validate_device(device).unwrap_or_else(|e| panic!("{device}: {e}"));
        }
    }

    #[test]
    fn anything_else_is_refused_before_running() {
        let long = format!("/dev/{}", "a".repeat(260));
        for device in [
            "",
            "sda",
            "dev/sda",
            "/dev/",
            "/dev",
            "/etc/passwd",
            "/dev/../etc/passwd",
            "/dev/./sda",
            "/dev//sda",
            "/dev/sda/",
            "/dev/sda;reboot",
            "/dev/sda ",
            "/dev/$(id)",
            "/dev/sda\n",
            "-a",
            "--json",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    validate_device(device),
                    Err(HostError::InvalidDevice { .. })
                ),
                "{device:?} should be refused"
            );
        }
    }

    #[test]
    fn fatal_status_reports_smartctl_messages_or_says_there_were_none() {
        let err = parse_smartctl("/dev/sdz", 2, "garbage").unwrap_err();
        match err {
            HostError::SmartFailed {
                device,
                status,
                messages,
            } => {
                assert_eq!(device, "/dev/sdz");
                assert_eq!(status, 2);
                assert_eq!(messages, "smartctl gave no message");
            }
            other => panic!("expected SmartFailed, got {other:?}"),
        }
    }

    #[test]
    fn missing_verdict_is_unavailable_unless_the_status_says_failing() {
        let json = r#"{"device": {"name": "/dev/sdb"}, "model_name": "USB bridge"}"#;
        assert!(matches!(
            parse_smartctl("/dev/sdb", 0, json),
            Err(HostError::SmartUnavailable { .. })
        ));
        let report = parse_smartctl("/dev/sdb", 8, json).unwrap();
        assert!(!report.passed);
        assert_eq!(report.model.as_deref(), Some("USB bridge"));
    }

    #[test]
    fn non_boolean_verdict_is_a_parse_error() {
        let json = r#"{"smart_status": {"passed": "yes"}}"#;
        assert!(matches!(
            parse_smartctl("/dev/sda", 0, json),
            Err(HostError::Parse { .. })
        ));
        assert!(matches!(
            parse_smartctl("/dev/sda", 0, "[]"),
            Err(HostError::Parse { .. })
        ));
    }
}

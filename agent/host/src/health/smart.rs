//! One disk's health from `smartctl --json -a DEV` (smartmontools 7.3 on
//! bookworm): its exit status and its JSON, ATA and NVMe shapes.
//!
//! smartctl's exit status is a bit mask (smartctl(8)): bits 0 and 1 say
//! it could not run or open the device — there is no report, the disk is
//! UNKNOWN with smartctl's own messages as the reason, except a device
//! smartctl cannot drive at all (a virtio disk, a USB bridge it does not
//! know), which is UNSUPPORTED. Higher bits are findings about the disk;
//! the JSON is read anyway. Output that is not the expected JSON makes
//! the disk UNKNOWN, never PASSED.

use coloc_proto::agent::v1::{DiskHealth, SelfTestKind, SelfTestResult, SmartVerdict};
use serde_json::Value;

use crate::smart::{smartctl_messages as messages, smartctl_status_is_fatal};

/// Bit 3: "SMART status check returned DISK FAILING".
const DISK_FAILING_BIT: i32 = 0b1000;

/// What smartctl says when it cannot tell which protocol the device
/// speaks: it has no SMART that smartctl can reach.
const NO_PROTOCOL_MESSAGES: &[&str] = &["Unable to detect device type", "Unknown USB bridge"];

/// ATA attribute ids whose raw values predict failure (Backblaze, smartd).
const REALLOCATED: u64 = 5;
const PENDING: u64 = 197;
const OFFLINE_UNCORRECTABLE: u64 = 198;
const CRC_ERRORS: u64 = 199;

/// Interprets one `smartctl --json -a DEV` run into the SMART part of a
/// [`DiskHealth`]: `device`, verdict, values, newest self-test, `unknown`,
/// and the model and serial smartctl gives. Never fails.
pub fn parse_disk_health(device: &str, status: i32, json: &str) -> DiskHealth {
    let mut disk = DiskHealth {
        device: device.to_owned(),
        ..DiskHealth::default()
    };
    let root: Option<Value> = serde_json::from_str(json).ok().filter(Value::is_object);
    if smartctl_status_is_fatal(status) {
        let messages = root
            .as_ref()
            .map(messages)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "smartctl gave no message".to_owned());
        if NO_PROTOCOL_MESSAGES.iter().any(|m| messages.contains(m)) {
            disk.smart = SmartVerdict::Unsupported as i32;
        } else {
            disk.smart = SmartVerdict::Unknown as i32;
            disk.unknown =
                format!("smartctl could not query the device (exit status {status}): {messages}");
        }
        return disk;
    }
    let Some(root) = root else {
        disk.smart = SmartVerdict::Unknown as i32;
        disk.unknown = "smartctl output is not a JSON object".to_owned();
        return disk;
    };
    let text = |pointer: &str| {
        root.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    disk.model = text("/model_name")
        .or_else(|| text("/scsi_model_name"))
        .or_else(|| text("/product"))
        .unwrap_or_default();
    disk.serial = text("/serial_number").unwrap_or_default();
    disk.transport = text("/device/type").unwrap_or_default();

    let verdict = match root.pointer("/smart_status/passed") {
        Some(Value::Bool(true)) if status & DISK_FAILING_BIT == 0 => Ok(SmartVerdict::Passed),
        Some(Value::Bool(_)) => Ok(SmartVerdict::Failed),
        Some(other) => Err(format!(
            "smartctl's smart_status.passed is {other}, not a boolean"
        )),
        None if status & DISK_FAILING_BIT != 0 => Ok(SmartVerdict::Failed),
        None if root.pointer("/smart_support/available") == Some(&Value::Bool(false)) => {
            Ok(SmartVerdict::Unsupported)
        }
        None if root.pointer("/smart_support/enabled") == Some(&Value::Bool(false)) => Err(
            "SMART is available but disabled on the device (`smartctl -s on` enables it)"
                .to_owned(),
        ),
        None => Err("smartctl gave no overall health verdict".to_owned()),
    };
    match verdict {
        Ok(v) => disk.smart = v as i32,
        Err(reason) => {
            disk.smart = SmartVerdict::Unknown as i32;
            disk.unknown = reason;
            return disk;
        }
    }

    let int = |pointer: &str| root.pointer(pointer).and_then(Value::as_i64);
    let uint = |pointer: &str| root.pointer(pointer).and_then(Value::as_u64);
    let small = |pointer: &str| uint(pointer).and_then(|v| u32::try_from(v).ok());
    disk.temperature_c = int("/temperature/current").and_then(|t| i32::try_from(t).ok());
    disk.temperature_limit_c = int("/nvme_composite_temperature_threshold/warning")
        .or_else(|| int("/temperature/op_limit_max"))
        .and_then(|t| i32::try_from(t).ok())
        .filter(|t| *t > 0);
    disk.power_on_hours = uint("/power_on_time/hours");

    if let Some(table) = root
        .pointer("/ata_smart_attributes/table")
        .and_then(Value::as_array)
    {
        for attr in table {
            let raw = attr.pointer("/raw/value").and_then(Value::as_u64);
            match attr.get("id").and_then(Value::as_u64) {
                Some(REALLOCATED) => disk.reallocated_sectors = raw,
                Some(PENDING) => disk.pending_sectors = raw,
                Some(OFFLINE_UNCORRECTABLE) => disk.offline_uncorrectable = raw,
                Some(CRC_ERRORS) => disk.crc_errors = raw,
                _ => {}
            }
            if attr.get("when_failed").and_then(Value::as_str) == Some("now") {
                let name = attr
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        format!("attribute {}", attr.get("id").unwrap_or(&Value::Null))
                    });
                disk.failing_attributes.push(name);
            }
        }
    }

    const NVME: &str = "/nvme_smart_health_information_log";
    disk.critical_warning =
        small(&format!("{NVME}/critical_warning")).or_else(|| small("/smart_status/nvme/value"));
    disk.percentage_used = small(&format!("{NVME}/percentage_used"));
    disk.available_spare = small(&format!("{NVME}/available_spare"));
    disk.available_spare_threshold = small(&format!("{NVME}/available_spare_threshold"));
    disk.media_errors = uint(&format!("{NVME}/media_errors"));
    if disk.power_on_hours.is_none() {
        disk.power_on_hours = uint(&format!("{NVME}/power_on_hours"));
    }
    disk.last_self_test = ata_self_test(&root).or_else(|| nvme_self_test(&root));
    disk
}

/// The ATA self-test running now, or the newest in the log.
fn ata_self_test(root: &Value) -> Option<SelfTestResult> {
    if let Some(status) = root.pointer("/ata_smart_data/self_test/status") {
        let value = status.get("value").and_then(Value::as_u64).unwrap_or(0);
        // The high nibble 0xF is "self-test routine in progress".
        if value >> 4 == 0xF {
            return Some(SelfTestResult {
                kind: SelfTestKind::Unspecified as i32,
                passed: false,
                status: status
                    .get("string")
                    .and_then(Value::as_str)
                    .unwrap_or("in progress")
                    .to_owned(),
                power_on_hours: None,
                running: true,
            });
        }
    }
    let log = root.pointer("/ata_smart_self_test_log")?;
    let newest = ["extended", "standard"]
        .iter()
        .find_map(|k| log.pointer(&format!("/{k}/table/0")))?;
    let kind = match newest.pointer("/type/value").and_then(Value::as_u64) {
        // Offline (1, 2) and captive (129, 130) variants.
        Some(v) if v & 0x7f == 1 => SelfTestKind::Short,
        Some(v) if v & 0x7f == 2 => SelfTestKind::Long,
        _ => SelfTestKind::Unspecified,
    };
    Some(SelfTestResult {
        kind: kind as i32,
        passed: newest.pointer("/status/passed").and_then(Value::as_bool) == Some(true),
        status: newest
            .pointer("/status/string")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        power_on_hours: newest.get("lifetime_hours").and_then(Value::as_u64),
        running: false,
    })
}

/// The NVMe self-test running now, or the newest in the log.
fn nvme_self_test(root: &Value) -> Option<SelfTestResult> {
    let log = root.pointer("/nvme_self_test_log")?;
    let kind_of = |v: Option<u64>| match v {
        Some(1) => SelfTestKind::Short,
        Some(2) => SelfTestKind::Long,
        _ => SelfTestKind::Unspecified,
    };
    let current = log.get("current_self_test_operation");
    let op = current
        .and_then(|c| c.get("value"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if op != 0 {
        let mut status = current
            .and_then(|c| c.get("string"))
            .and_then(Value::as_str)
            .unwrap_or("in progress")
            .to_owned();
        if let Some(percent) = log
            .get("current_self_test_completion_percent")
            .and_then(Value::as_u64)
        {
            status = format!("{status}, {percent}% done");
        }
        return Some(SelfTestResult {
            kind: kind_of(Some(op)) as i32,
            passed: false,
            status,
            power_on_hours: None,
            running: true,
        });
    }
    // Result 0xF marks an unused entry.
    let newest = log
        .get("table")
        .and_then(Value::as_array)?
        .iter()
        .find(|e| e.pointer("/self_test_result/value").and_then(Value::as_u64) != Some(15))?;
    Some(SelfTestResult {
        kind: kind_of(
            newest
                .pointer("/self_test_code/value")
                .and_then(Value::as_u64),
        ) as i32,
        passed: newest
            .pointer("/self_test_result/value")
            .and_then(Value::as_u64)
            == Some(0),
        status: newest
            .pointer("/self_test_result/string")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        power_on_hours: newest.get("power_on_hours").and_then(Value::as_u64),
        running: false,
    })
}

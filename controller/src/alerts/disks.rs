//! SMART rules, one disk at a time: what smartd and smartctl_exporter
//! watch. A disk whose SMART could not be read (`unknown` set) raises
//! `health-unknown` instead ([`super::node`]) and nothing here: its other
//! fields mean nothing.

use coloc_proto::agent::v1::{DiskHealth, HealthReport, SmartVerdict};
use coloc_proto::domain::NodeName;

use super::{Condition, condition, on_node};
use crate::config::AlertsConfig;
use crate::store::{AlertSeverity, SubjectKind};

pub const SMART_FAILING: &str = "disk-smart-failing";
pub const NVME_CRITICAL_WARNING: &str = "disk-nvme-critical-warning";
pub const SECTORS: &str = "disk-sectors";
pub const CRC_ERRORS: &str = "disk-crc-errors";
pub const TEMPERATURE: &str = "disk-temperature";
pub const SPARE_LOW: &str = "disk-spare-low";
pub const WEAROUT: &str = "disk-wearout";

/// The name of a disk in an alert: its serial, its device path when it has
/// none.
pub fn disk_name(d: &DiskHealth) -> &str {
    if d.serial.is_empty() {
        &d.device
    } else {
        &d.serial
    }
}

/// The NVMe critical-warning bits, by meaning (NVMe base specification,
/// SMART / Health log, byte 0).
pub fn critical_warning_bits(bits: u32) -> Vec<&'static str> {
    const MEANINGS: [&str; 6] = [
        "available spare below threshold",
        "temperature outside its thresholds",
        "reliability degraded by media or internal errors",
        "media placed in read-only mode",
        "volatile memory backup failed",
        "persistent memory region read-only",
    ];
    let mut out: Vec<&'static str> = MEANINGS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, m)| *m)
        .collect();
    if bits >> MEANINGS.len() != 0 {
        out.push("reserved bits set");
    }
    out
}

pub fn evaluate(node: &NodeName, report: &HealthReport, t: &AlertsConfig) -> Vec<Condition> {
    report
        .disks
        .iter()
        .filter(|d| d.unknown.is_empty())
        .flat_map(|d| disk(node, d, t))
        .collect()
}

fn disk(node: &NodeName, d: &DiskHealth, t: &AlertsConfig) -> Vec<Condition> {
    let name = disk_name(d);
    let said = |rule, severity, summary: String| {
        condition(
            rule,
            severity,
            on_node(node, SubjectKind::Disk, name),
            format!("disk {name} ({}) on {node}: {summary}", d.device),
        )
    };
    let mut out = Vec::new();
    if d.smart == SmartVerdict::Failed as i32 {
        let attrs = if d.failing_attributes.is_empty() {
            String::new()
        } else {
            format!(" (failing now: {})", d.failing_attributes.join(", "))
        };
        out.push(said(
            SMART_FAILING,
            AlertSeverity::Critical,
            format!("SMART overall health self-assessment FAILED{attrs}; replace the drive"),
        ));
    }
    if let Some(bits) = d.critical_warning.filter(|b| *b != 0) {
        out.push(said(
            NVME_CRITICAL_WARNING,
            AlertSeverity::Critical,
            format!(
                "NVMe critical warning 0x{bits:02x}: {}",
                critical_warning_bits(bits).join(", ")
            ),
        ));
    }
    let sectors: Vec<String> = [
        ("reallocated", d.reallocated_sectors),
        ("pending", d.pending_sectors),
        ("offline uncorrectable", d.offline_uncorrectable),
    ]
    .into_iter()
    .filter_map(|(what, n)| n.filter(|n| *n > 0).map(|n| format!("{n} {what}")))
    .collect();
    if !sectors.is_empty() {
        out.push(said(
            SECTORS,
            AlertSeverity::Warning,
            format!("{} sectors", sectors.join(", ")),
        ));
    }
    if let Some(n) = d.crc_errors.filter(|n| *n > 0) {
        out.push(said(
            CRC_ERRORS,
            AlertSeverity::Warning,
            format!("{n} interface CRC errors (check the cable or backplane)"),
        ));
    }
    if let Some(temp) = d.temperature_c {
        let (limit, whose) = match d.temperature_limit_c {
            Some(l) if l > 0 => (l, "its warning temperature"),
            _ => (
                i32::try_from(t.disk_temperature_celsius).unwrap_or(i32::MAX),
                "alerts.disk_temperature_celsius",
            ),
        };
        if temp > limit {
            out.push(said(
                TEMPERATURE,
                AlertSeverity::Warning,
                format!("{temp} °C, over {whose} ({limit} °C)"),
            ));
        }
    }
    // As the NVMe specification's critical-warning bit 0: below the
    // drive's own threshold. A drive without one (0, as QEMU's emulated
    // NVMe reports with a spare of 0 too) says nothing about its spare.
    if let (Some(spare), Some(threshold)) = (d.available_spare, d.available_spare_threshold)
        && threshold > 0
        && spare < threshold
    {
        out.push(said(
            SPARE_LOW,
            AlertSeverity::Critical,
            format!("available spare {spare} %, below its threshold {threshold} %"),
        ));
    }
    if let Some(used) = d.percentage_used
        && used >= t.disk_wearout_percent
    {
        out.push(said(
            WEAROUT,
            AlertSeverity::Warning,
            format!("{used} % of its rated endurance used"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::testing::{node, rules};

    fn nvme() -> DiskHealth {
        DiskHealth {
            device: "/dev/nvme0n1".into(),
            serial: "S3X9".into(),
            smart: SmartVerdict::Passed as i32,
            temperature_c: Some(40),
            temperature_limit_c: Some(70),
            critical_warning: Some(0),
            percentage_used: Some(3),
            available_spare: Some(100),
            available_spare_threshold: Some(10),
            ..DiskHealth::default()
        }
    }

    fn eval(d: DiskHealth) -> Vec<Condition> {
        let r = HealthReport {
            disks: vec![d],
            ..HealthReport::default()
        };
        evaluate(&node("n1"), &r, &AlertsConfig::default())
    }

    #[test]
    fn a_healthy_disk_raises_nothing() {
        assert!(eval(nvme()).is_empty());
    }

    #[test]
    fn smart_failing_is_critical_and_names_the_attributes() {
        let c = eval(DiskHealth {
            smart: SmartVerdict::Failed as i32,
            failing_attributes: vec!["Reallocated_Sector_Ct".into()],
            ..nvme()
        });
        assert_eq!(rules(&c), vec![SMART_FAILING]);
        assert_eq!(c[0].severity, AlertSeverity::Critical);
        assert!(
            c[0].summary.contains("Reallocated_Sector_Ct"),
            "{}",
            c[0].summary
        );
        assert_eq!(c[0].subject.name, "S3X9");
    }

    #[test]
    fn nvme_critical_warning_lists_its_bits() {
        let c = eval(DiskHealth {
            critical_warning: Some(0b0000_0101),
            ..nvme()
        });
        assert_eq!(rules(&c), vec![NVME_CRITICAL_WARNING]);
        assert!(c[0].summary.contains("available spare below threshold"));
        assert!(c[0].summary.contains("reliability degraded"));
        assert!(!c[0].summary.contains("read-only"));
        assert_eq!(critical_warning_bits(0x40), vec!["reserved bits set"]);
    }

    #[test]
    fn sector_counts_raise_one_warning_whatever_their_growth() {
        let one = eval(DiskHealth {
            reallocated_sectors: Some(1),
            pending_sectors: Some(0),
            ..nvme()
        });
        let more = eval(DiskHealth {
            reallocated_sectors: Some(8),
            pending_sectors: Some(2),
            offline_uncorrectable: Some(1),
            ..nvme()
        });
        assert_eq!(rules(&one), vec![SECTORS]);
        assert_eq!(one[0].key(), more[0].key());
        assert!(
            more[0]
                .summary
                .contains("8 reallocated, 2 pending, 1 offline uncorrectable")
        );
        assert!(
            eval(DiskHealth {
                reallocated_sectors: Some(0),
                ..nvme()
            })
            .is_empty()
        );
    }

    #[test]
    fn crc_errors_warn() {
        let c = eval(DiskHealth {
            crc_errors: Some(12),
            ..nvme()
        });
        assert_eq!(rules(&c), vec![CRC_ERRORS]);
    }

    #[test]
    fn temperature_against_the_disks_own_limit_or_the_configured_one() {
        assert_eq!(
            rules(&eval(DiskHealth {
                temperature_c: Some(71),
                ..nvme()
            })),
            vec![TEMPERATURE]
        );
        // 65 °C is under the drive's 70 °C.
        assert!(
            eval(DiskHealth {
                temperature_c: Some(65),
                ..nvme()
            })
            .is_empty()
        );
        // Without a limit of its own: 60 °C by default.
        let c = eval(DiskHealth {
            temperature_c: Some(65),
            temperature_limit_c: None,
            ..nvme()
        });
        assert_eq!(rules(&c), vec![TEMPERATURE]);
        assert!(c[0].summary.contains("alerts.disk_temperature_celsius"));
    }

    #[test]
    fn spare_low_and_wearout() {
        assert_eq!(
            rules(&eval(DiskHealth {
                available_spare: Some(9),
                ..nvme()
            })),
            vec![SPARE_LOW]
        );
        // At the threshold, or a drive that has none (QEMU's NVMe: 0 and 0).
        for (spare, threshold) in [(10, 10), (0, 0)] {
            assert!(
                eval(DiskHealth {
                    available_spare: Some(spare),
                    available_spare_threshold: Some(threshold),
                    ..nvme()
                })
                .is_empty(),
                "{spare} % over a threshold of {threshold} %"
            );
        }
        assert_eq!(
            rules(&eval(DiskHealth {
                percentage_used: Some(90),
                ..nvme()
            })),
            vec![WEAROUT]
        );
        assert!(
            eval(DiskHealth {
                percentage_used: Some(89),
                ..nvme()
            })
            .is_empty()
        );
    }

    #[test]
    fn an_unknown_disk_raises_no_smart_rule() {
        assert!(
            eval(DiskHealth {
                smart: SmartVerdict::Unknown as i32,
                critical_warning: Some(4),
                unknown: "smartctl timed out after 20 s".into(),
                ..nvme()
            })
            .is_empty()
        );
    }

    #[test]
    fn a_disk_without_a_serial_is_named_by_its_device() {
        let c = eval(DiskHealth {
            serial: String::new(),
            crc_errors: Some(1),
            ..nvme()
        });
        assert_eq!(c[0].subject.name, "/dev/nvme0n1");
    }
}

//! A synthetic fleet for the metrics tests and the render benchmark: each
//! node has 4 disks (2 NVMe, 2 SATA), a ZFS mirror, an LVM thin pool, the
//! root filesystem and 5 volumes, 2 apps, sensors, units, NICs, a clock
//! and a reboot flag, with faults spread deterministically over the
//! nodes (a failing disk, an NVMe critical warning, a degraded pool, an
//! unreadable disk, a failed app) so that every family has samples.

use std::sync::Arc;

use coloc_controller::metrics::{
    AlertCount, AppMetrics, AppState, ColocdStatus, FleetSnapshot, NodeHealth, NodeMetrics,
    VolumeMetrics,
};
use coloc_proto::agent::v1::{
    ClockHealth, DiskHealth, FailedUnit, FilesystemUse, HealthReport, NicHealth, RebootHealth,
    ScrubState, ScrubStatus, SelfTestKind, SelfTestResult, SmartVerdict, SystemLoad, Temperature,
    ThinPoolHealth, UnitsHealth, Unobserved, VdevHealth, ZfsPoolHealth,
};

/// A disk model no parser expects: quotes, backslashes, a newline.
pub const CRAFTED_MODEL: &str = "EVIL \"model\"\\ with\nnewline } # HELP x";

/// colocd's alert rules as the synthetic fleet counts them.
pub const RULES: [(&str, &str); 6] = [
    ("node-unreachable", "critical"),
    ("disk-smart-failing", "critical"),
    ("disk-nvme-critical-warning", "critical"),
    ("pool-degraded", "critical"),
    ("volume-full", "warning"),
    ("health-unknown", "warning"),
];

const GIB: u64 = 1 << 30;

fn disk(n: usize, slot: usize) -> DiskHealth {
    let nvme = slot < 2;
    let mut d = DiskHealth {
        device: if nvme {
            format!("/dev/nvme{slot}n1")
        } else {
            format!("/dev/sd{}", char::from(b'a' + (slot - 2) as u8))
        },
        model: if nvme {
            "Samsung SSD 990 PRO 2TB".into()
        } else {
            "WDC WD40EFRX-68N32N0".into()
        },
        serial: format!("S{n:06}D{slot}"),
        transport: if nvme { "nvme" } else { "ata" }.into(),
        size_bytes: 2000 * GIB,
        smart: SmartVerdict::Passed as i32,
        temperature_c: Some(35 + (n % 10) as i32),
        power_on_hours: Some(10_000 + n as u64),
        last_self_test: Some(SelfTestResult {
            kind: SelfTestKind::Short as i32,
            passed: true,
            status: "Completed without error".into(),
            power_on_hours: Some(9_990),
            running: false,
        }),
        ..Default::default()
    };
    if nvme {
        d.temperature_limit_c = Some(70);
        d.critical_warning = Some(if n % 5 == 1 && slot == 0 { 4 } else { 0 });
        d.percentage_used = Some(3);
        d.available_spare = Some(100);
        d.available_spare_threshold = Some(10);
        d.media_errors = Some(0);
    } else {
        d.reallocated_sectors = Some(0);
        d.pending_sectors = Some(0);
        d.offline_uncorrectable = Some(0);
        d.crc_errors = Some(0);
    }
    if n % 7 == 3 && slot == 2 {
        d.smart = SmartVerdict::Failed as i32;
        d.reallocated_sectors = Some(1200);
        d.failing_attributes = vec!["Reallocated_Sector_Ct".into()];
    }
    if n % 11 == 4 && slot == 3 {
        d.smart = SmartVerdict::Unknown as i32;
        d.unknown = "`smartctl --json -a /dev/sdb` timed out after 20 s".into();
    }
    if n == 0 && slot == 1 {
        d.model = CRAFTED_MODEL.into();
        d.serial = "serial\\with\"quote".into();
    }
    d
}

fn report(n: usize, name: &str) -> HealthReport {
    let degraded = n % 9 == 2;
    let disk_state = |i: usize| {
        if degraded && i == 1 {
            "UNAVAIL"
        } else {
            "ONLINE"
        }
    };
    let vdev = |vname: &str, depth: u32, state: &str| VdevHealth {
        name: vname.into(),
        depth,
        state: state.into(),
        checksum_errors: u64::from(degraded && depth == 2),
        ..Default::default()
    };
    let state = if degraded { "DEGRADED" } else { "ONLINE" };
    let mut filesystems = vec![FilesystemUse {
        mount_path: "/".into(),
        size_bytes: 20 * GIB,
        used_bytes: 6 * GIB,
        available_bytes: 13 * GIB,
        ..Default::default()
    }];
    for v in 0..5 {
        filesystems.push(FilesystemUse {
            mount_path: format!("/srv/tenants/asso{n}/vol{v}"),
            volume_id: format!("v{n}-{v}"),
            size_bytes: 10 * GIB,
            used_bytes: (v as u64 + 1) * 2 * GIB - 1,
            available_bytes: 10 * GIB - (v as u64 + 1) * 2 * GIB + 1,
            ..Default::default()
        });
    }
    HealthReport {
        collected_unix_ms: 1_764_900_000_000,
        disks: (0..4).map(|slot| disk(n, slot)).collect(),
        zfs_pools: vec![ZfsPoolHealth {
            name: "tank".into(),
            state: state.into(),
            size_bytes: 2000 * GIB,
            allocated_bytes: 500 * GIB + (n as u64 % 1000) * GIB,
            free_bytes: 1500 * GIB - (n as u64 % 1000) * GIB,
            vdevs: vec![
                vdev("tank", 0, state),
                vdev("mirror-0", 1, state),
                vdev("sda", 2, disk_state(0)),
                vdev("sdb", 2, disk_state(1)),
            ],
            scrub: Some(ScrubStatus {
                state: ScrubState::Finished as i32,
                started_unix: 1_764_000_000,
                finished_unix: 1_764_003_600,
                ..Default::default()
            }),
            ..Default::default()
        }],
        thin_pools: vec![ThinPoolHealth {
            volume_group: "vg0".into(),
            name: "thin".into(),
            size_bytes: 500 * GIB,
            data_percent: 42.5,
            metadata_percent: 12.25,
            ..Default::default()
        }],
        filesystems,
        system: Some(SystemLoad {
            memory_total_bytes: 64 * GIB,
            memory_available_bytes: 40 * GIB,
            swap_total_bytes: 4 * GIB,
            swap_free_bytes: 4 * GIB,
            load1: 0.5,
            load5: 0.4,
            load15: 0.3,
            cpu_count: 8,
            cpu_busy_ratio: 0.12,
            uptime_secs: 86_400,
            ..Default::default()
        }),
        temperatures: vec![
            Temperature {
                sensor: "coretemp Package id 0".into(),
                celsius: 48.0,
                critical_celsius: Some(100.0),
                ..Default::default()
            },
            Temperature {
                sensor: "acpitz temp1".into(),
                celsius: 27.8,
                ..Default::default()
            },
            // Repeated label: the renderer keeps the first.
            Temperature {
                sensor: "acpitz temp1".into(),
                celsius: 28.0,
                ..Default::default()
            },
        ],
        units: Some(UnitsHealth {
            failed: if n.is_multiple_of(4) {
                vec![FailedUnit {
                    name: "logrotate.service".into(),
                    result: "exit-code".into(),
                }]
            } else {
                Vec::new()
            },
            unknown: String::new(),
        }),
        nics: vec![
            NicHealth {
                name: "eno1".into(),
                up: true,
                speed_mbps: Some(1000),
            },
            NicHealth {
                name: "eno2".into(),
                up: false,
                speed_mbps: None,
            },
        ],
        clock: Some(ClockHealth {
            synchronised: n % 13 != 5,
            max_error_secs: Some(0.016),
            ..Default::default()
        }),
        reboot: Some(RebootHealth {
            required: n.is_multiple_of(3),
            reason: if n.is_multiple_of(3) {
                format!("/run/reboot-required ({name})")
            } else {
                String::new()
            },
            ..Default::default()
        }),
        unobserved: if n % 17 == 6 {
            vec![Unobserved {
                source: "lvm".into(),
                reason: "`lvs` timed out after 20 s".into(),
            }]
        } else {
            Vec::new()
        },
        maintenance: Vec::new(),
    }
}

/// `nodes` nodes, the first always connected with a report.
pub fn fleet(nodes: usize, now_unix: i64) -> FleetSnapshot {
    let mut snap = FleetSnapshot::default();
    for n in 0..nodes {
        let name = format!("node-{n:05}");
        let connected = n % 10 != 9;
        snap.nodes.push(NodeMetrics {
            name: name.clone(),
            site: format!("site-{}", n % 3),
            connected,
            last_seen_unix: Some(now_unix - if connected { 5 } else { 600 }),
            desired_generation: 12,
            applied_generation: if n % 8 == 7 { 11 } else { 12 },
            health: Some(NodeHealth {
                received_unix: now_unix - 30,
                report: Arc::new(report(n, &name)),
            }),
        });
        for v in 0..5 {
            snap.volumes.push(VolumeMetrics {
                tenant: format!("asso{n}"),
                node: name.clone(),
                volume: format!("vol{v}"),
                size_bytes: 10 * GIB,
                used_bytes: Some((v as u64 + 1) * 2 * GIB - 1),
            });
        }
        for (a, app) in ["nextcloud", "syncthing"].into_iter().enumerate() {
            let failed = a == 1 && n % 6 == 1;
            snap.apps.push(AppMetrics {
                tenant: format!("asso{n}"),
                app: app.into(),
                node: name.clone(),
                state: AppState::from_active_state(if failed { "failed" } else { "active" }),
                healthy: Some(!failed),
                memory_bytes: Some(200 << 20),
                restarts: if failed { 7 } else { 0 },
            });
        }
    }
    // A node that never connected and never reported.
    snap.nodes.push(NodeMetrics {
        name: "node-new".into(),
        site: "site-0".into(),
        connected: false,
        last_seen_unix: None,
        desired_generation: 1,
        applied_generation: 0,
        health: None,
    });
    snap.alerts = RULES
        .iter()
        .enumerate()
        .map(|(i, (rule, severity))| AlertCount {
            rule: (*rule).into(),
            severity: (*severity).into(),
            count: if i % 2 == 0 { 1 } else { 0 },
        })
        .collect();
    snap.colocd = ColocdStatus {
        sessions: snap.nodes.iter().filter(|n| n.connected).count(),
    };
    snap
}

//! `coloc node health` on constructed reports: a healthy node, a failing
//! NVMe drive, a degraded mirror, a disk whose SMART could not be read, a
//! stale report, an empty one and none at all; then the JSON, which must
//! carry every field of the contract.

use std::collections::BTreeSet;

use prost::Message as _;
use serde_json::{Value, json};

use super::*;

/// 2026-01-01 00:00 UTC.
const NOW: i64 = 1_767_225_600;
const GIB: u64 = 1024 * 1024 * 1024;

fn nvme() -> agent::DiskHealth {
    agent::DiskHealth {
        device: "/dev/nvme0n1".into(),
        model: "Samsung PM983".into(),
        serial: "S4GNNX0N".into(),
        transport: "nvme".into(),
        size_bytes: 1_920_383_410_176,
        smart: agent::SmartVerdict::Passed as i32,
        temperature_c: Some(38),
        temperature_limit_c: Some(70),
        power_on_hours: Some(12_000),
        critical_warning: Some(0),
        percentage_used: Some(3),
        available_spare: Some(100),
        available_spare_threshold: Some(10),
        media_errors: Some(0),
        last_self_test: Some(agent::SelfTestResult {
            kind: agent::SelfTestKind::Short as i32,
            passed: true,
            status: "Completed without error".into(),
            power_on_hours: Some(11_900),
            running: false,
        }),
        ..Default::default()
    }
}

fn sata() -> agent::DiskHealth {
    agent::DiskHealth {
        device: "/dev/sda".into(),
        model: "WDC WD40EFRX".into(),
        serial: "WD-WCC4E1234567".into(),
        transport: "ata".into(),
        size_bytes: 4_000_787_030_016,
        smart: agent::SmartVerdict::Passed as i32,
        temperature_c: Some(35),
        power_on_hours: Some(30_000),
        reallocated_sectors: Some(0),
        pending_sectors: Some(0),
        offline_uncorrectable: Some(0),
        crc_errors: Some(0),
        ..Default::default()
    }
}

fn vdev(name: &str, depth: u32, state: &str) -> agent::VdevHealth {
    agent::VdevHealth {
        name: name.into(),
        depth,
        state: state.into(),
        ..Default::default()
    }
}

fn tank() -> agent::ZfsPoolHealth {
    agent::ZfsPoolHealth {
        name: "tank".into(),
        state: "ONLINE".into(),
        size_bytes: 4096 * GIB,
        allocated_bytes: 1024 * GIB,
        free_bytes: 3072 * GIB,
        vdevs: vec![
            vdev("tank", 0, "ONLINE"),
            vdev("mirror-0", 1, "ONLINE"),
            vdev("sda", 2, "ONLINE"),
            vdev("sdb", 2, "ONLINE"),
        ],
        scrub: Some(agent::ScrubStatus {
            state: agent::ScrubState::Finished as i32,
            started_unix: 1_766_959_200,
            finished_unix: 1_766_966_400,
            errors: 0,
            repaired_bytes: 0,
            progress_permille: 1000,
        }),
        ..Default::default()
    }
}

fn healthy() -> pb::NodeHealth {
    let report = agent::HealthReport {
        collected_unix_ms: 1_767_225_570_000,
        disks: vec![nvme(), sata()],
        zfs_pools: vec![tank()],
        thin_pools: vec![agent::ThinPoolHealth {
            volume_group: "vg0".into(),
            name: "thin".into(),
            size_bytes: 500 * GIB,
            data_percent: 42.5,
            metadata_percent: 10.25,
            unknown: String::new(),
        }],
        filesystems: vec![
            agent::FilesystemUse {
                mount_path: "/".into(),
                size_bytes: 50 * GIB,
                used_bytes: 10 * GIB,
                available_bytes: 40 * GIB,
                ..Default::default()
            },
            agent::FilesystemUse {
                mount_path: "/srv/tenants/asso-x/data".into(),
                volume_id: "0123456789abcdef".into(),
                size_bytes: 20 * GIB,
                used_bytes: 19 * GIB,
                available_bytes: GIB,
                ..Default::default()
            },
        ],
        system: Some(agent::SystemLoad {
            memory_total_bytes: 64 * GIB,
            memory_available_bytes: 48 * GIB,
            swap_total_bytes: 0,
            swap_free_bytes: 0,
            load1: 0.5,
            load5: 0.4,
            load15: 0.3,
            cpu_count: 8,
            cpu_busy_ratio: 0.12,
            uptime_secs: 3 * 86_400 + 4 * 3600,
            unknown: String::new(),
        }),
        temperatures: vec![agent::Temperature {
            sensor: "coretemp Package id 0".into(),
            celsius: 45.0,
            critical_celsius: Some(100.0),
            unknown: String::new(),
        }],
        units: Some(agent::UnitsHealth::default()),
        nics: vec![
            agent::NicHealth {
                name: "eno1".into(),
                up: true,
                speed_mbps: Some(1000),
            },
            agent::NicHealth {
                name: "eno2".into(),
                up: false,
                speed_mbps: None,
            },
        ],
        clock: Some(agent::ClockHealth {
            synchronised: true,
            max_error_secs: Some(0.012),
            unknown: String::new(),
        }),
        reboot: Some(agent::RebootHealth::default()),
        unobserved: vec![],
        maintenance: vec![agent::MaintenanceRun {
            kind: agent::MaintenanceKind::Scrub as i32,
            subject: "tank".into(),
            state: agent::MaintenanceState::Passed as i32,
            started_unix: 1_766_959_200,
            finished_unix: 1_766_966_400,
            detail: String::new(),
            on_demand: true,
        }],
    };
    pb::NodeHealth {
        node: "n1".into(),
        report: Some(report),
        received_unix: NOW - 30,
        stale: false,
        alerts: vec![],
        period_secs: 60,
    }
}

fn report(h: &mut pb::NodeHealth) -> &mut agent::HealthReport {
    h.report.as_mut().expect("a report")
}

fn has_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing in\n{text}");
    }
}

fn has_none(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(!text.contains(needle), "{needle:?} unexpected in\n{text}");
    }
}

/// Where `a` starts in `text`, which must hold it.
fn at(text: &str, a: &str) -> usize {
    text.find(a)
        .unwrap_or_else(|| panic!("{a:?} missing in\n{text}"))
}

#[test]
fn a_healthy_node_says_so_and_shows_every_part() {
    let h = healthy();
    assert!(problems(&h).is_empty(), "{:?}", problems(&h));
    let text = node_health_text(&h, NOW);
    has_all(
        &text,
        &[
            "Health of node n1\n",
            "Received:   2025-12-31 23:59 UTC (30 s ago)\n",
            "Collected:  2025-12-31 23:59:30 UTC, node's clock\n",
            "Period:     every 60 s\n",
            "No firing alert.\n",
            "No problem in the report.\n",
            "Disks (2)\n  /dev/nvme0n1  Samsung PM983  serial S4GNNX0N  nvme  1.7 TiB\n",
            "    SMART:             passed\n",
            "    Critical warning:  none\n",
            "    Temperature:       38 °C (drive's limit 70 °C)\n",
            "    Wear:              3 % used, spare 100 % (threshold 10 %)\n",
            "    Media errors:      0\n",
            "    Power-on:          12000 h\n",
            "    Self-test:         short, passed: Completed without error (at 11900 h)\n",
            "    Sectors:      reallocated 0, pending 0, uncorrectable 0; CRC errors 0\n",
            "    Self-test:    none logged\n",
            "  tank  ONLINE  25.0 % used (1.0 TiB of 4.0 TiB, 3.0 TiB free)\n",
            "    Last scrub:   finished 2025-12-29 00:00 UTC, 0 errors, 0 B repaired\n",
            "    VDEV        STATE   READ  WRITE  CKSUM  NOTE\n",
            "    tank        ONLINE  0     0      0\n",
            "      mirror-0  ONLINE  0     0      0\n",
            "        sdb     ONLINE  0     0      0\n",
            "  vg0/thin   500.0 GiB  42.5 %  10.2 %\n",
            "  /srv/tenants/asso-x/data  0123456789abcdef  19.0 GiB  20.0 GiB  95.0 %  1.0 GiB\n",
            "  Memory:    16.0 GiB used of 64.0 GiB (25.0 %), 48.0 GiB available\n",
            "  Swap:      none\n",
            "  Load:      0.50 0.40 0.30 (1, 5, 15 min; 8 CPUs)\n",
            "  CPU busy:  12 %\n",
            "  Up:        3 d 4 h\n",
            "  Clock:     synchronised (max error 0.012 s)\n",
            "  Reboot:    not needed\n",
            "  coretemp Package id 0  45 °C  100 °C\n",
            "Failed units: none\n",
            "  eno1  up    1000 Mb/s\n",
            "  eno2  DOWN  -\n",
            "Not observed: nothing, every source was read\n",
            "  scrub  tank     passed  2025-12-28 22:00  2025-12-29 00:00  request  -\n",
        ],
    );
    has_none(&text, &["STALE", "!!", "(!)", "unknown", "FAILED"]);
    // An ATA disk has no NVMe lines and the NVMe disk no ATA ones.
    let sata_block = &text[at(&text, "/dev/sda")..at(&text, "ZFS pools")];
    has_none(sata_block, &["Critical warning", "Wear", "Media errors"]);
    let nvme_block = &text[at(&text, "/dev/nvme0n1")..at(&text, "/dev/sda")];
    has_none(nvme_block, &["Sectors"]);
    assert!(!text.lines().any(|l| l.ends_with(' ')), "trailing blanks");
}

#[test]
fn a_failing_nvme_drive_comes_first_in_words() {
    let mut h = healthy();
    let disk = &mut report(&mut h).disks[0];
    disk.smart = agent::SmartVerdict::Failed as i32;
    // Reliability degraded and read-only.
    disk.critical_warning = Some(0b1100);
    disk.media_errors = Some(12);
    disk.available_spare = Some(5);
    disk.temperature_c = Some(75);
    disk.last_self_test = Some(agent::SelfTestResult {
        kind: agent::SelfTestKind::Long as i32,
        passed: false,
        status: "Completed: read failure".into(),
        power_on_hours: Some(11_990),
        running: false,
    });
    h.alerts.push(pb::Alert {
        id: 12,
        rule: "disk-nvme-critical-warning".into(),
        severity: pb::AlertSeverity::Critical as i32,
        subject: Some(pb::AlertSubject {
            kind: pb::AlertSubjectKind::Disk as i32,
            node: "n1".into(),
            name: "S4GNNX0N".into(),
            tenant: String::new(),
        }),
        state: pb::AlertState::Firing as i32,
        summary: "NVMe critical warning 0x0c on S4GNNX0N".into(),
        started_unix: NOW - 120,
        ..Default::default()
    });
    let text = node_health_text(&h, NOW);
    let name = "disk /dev/nvme0n1 (S4GNNX0N)";
    has_all(
        &text,
        &[
            "FIRING ALERTS (1)\n",
            "12  CRITICAL  firing  2025-12-31 23:58  disk S4GNNX0N on n1  -        NVMe critical warning 0x0c on S4GNNX0N\n",
            "PROBLEMS IN THE REPORT (6)\n",
            &format!("  !! {name}: SMART FAILED: the drive predicts its own failure; replace it\n"),
            &format!("  !! {name}: NVMe CRITICAL WARNING: reliability degraded, read-only\n"),
            &format!("  !! {name}: 12 media errors\n"),
            &format!("  !! {name}: available spare 5 %, at or below its threshold 10 %\n"),
            &format!("  !! {name}: 75 °C, AT OR OVER the drive's limit 70 °C\n"),
            &format!("  !! {name}: last long self-test did not pass: Completed: read failure\n"),
            "SMART:             FAILED: the drive predicts its own failure\n",
            "Critical warning:  RELIABILITY DEGRADED, READ-ONLY (0x0c)\n",
            "Temperature:       75 °C, OVER the drive's limit 70 °C\n",
            "Wear:              3 % used, spare 5 %, AT OR BELOW threshold 10 %\n",
            "Self-test:         long, DID NOT PASS: Completed: read failure (at 11990 h)\n",
        ],
    );
    // Alerts, then problems, then the details.
    assert!(at(&text, "FIRING ALERTS") < at(&text, "PROBLEMS IN THE REPORT"));
    assert!(at(&text, "PROBLEMS IN THE REPORT") < at(&text, "Disks (2)"));
    assert_eq!(
        critical_warning_names(0b1_0000_0001),
        ["available spare below threshold", "bit 8"]
    );
    let v = node_health_json(&h);
    assert_eq!(v["report"]["disks"][0]["smart"], "failed");
    assert_eq!(v["report"]["disks"][0]["critical_warning"], 12);
    assert_eq!(
        v["report"]["disks"][0]["critical_warnings"],
        json!(["reliability degraded", "read-only"])
    );
    assert_eq!(v["alerts"][0]["severity"], "critical");
    assert_eq!(v["problems"].as_array().map(Vec::len), Some(6));
}

#[test]
fn a_degraded_mirror_names_the_missing_disk_and_the_errors() {
    let mut h = healthy();
    let pool = &mut report(&mut h).zfs_pools[0];
    pool.state = "DEGRADED".into();
    pool.status = "One or more devices has been removed by the administrator.".into();
    pool.vdevs[0].state = "DEGRADED".into();
    pool.vdevs[1].state = "DEGRADED".into();
    pool.vdevs[2].checksum_errors = 3;
    pool.vdevs[3].state = "REMOVED".into();
    pool.vdevs[3].note = "was /dev/sdb1".into();
    pool.data_errors = 2;
    pool.scrub = Some(agent::ScrubStatus {
        state: agent::ScrubState::Running as i32,
        started_unix: 1_767_222_000,
        errors: 1,
        progress_permille: 456,
        ..Default::default()
    });
    let text = node_health_text(&h, NOW);
    has_all(
        &text,
        &[
            "PROBLEMS IN THE REPORT (5)\n",
            "  !! pool tank is DEGRADED\n",
            "  !! pool tank: device mirror-0 is DEGRADED\n",
            "  !! pool tank: sda has errors: 0 read, 0 write, 3 checksum\n",
            "  !! pool tank: device sdb is REMOVED (was /dev/sdb1)\n",
            "  !! pool tank: 2 DATA ERRORS (zpool status -v lists the files)\n",
            "  tank  DEGRADED  25.0 % used",
            "    Status:       One or more devices has been removed by the administrator.\n",
            "    Data errors:  2 (!)\n",
            "    Last scrub:   running since 2025-12-31 23:00 UTC, 45.6 % done, 1 error so far\n",
            "    tank        DEGRADED (!)  0     0      0\n",
            "        sda     ONLINE (!)    0     0      3\n",
            "        sdb     REMOVED (!)   0     0      0      was /dev/sdb1\n",
        ],
    );
    // A finished scrub with errors and a pool never scrubbed are problems.
    let pool = &mut report(&mut h).zfs_pools[0];
    pool.scrub = Some(agent::ScrubStatus {
        state: agent::ScrubState::Finished as i32,
        finished_unix: 1_767_222_000,
        errors: 4,
        repaired_bytes: 4096,
        ..Default::default()
    });
    let found = problems(&h);
    assert!(found.contains(&"pool tank: last scrub found 4 errors".to_string()));
    assert!(
        node_health_text(&h, NOW)
            .contains("finished 2025-12-31 23:00 UTC, 4 errors (!), 4.0 KiB repaired")
    );
    report(&mut h).zfs_pools[0].scrub = Some(agent::ScrubStatus {
        state: agent::ScrubState::Never as i32,
        ..Default::default()
    });
    assert!(problems(&h).contains(&"pool tank: never scrubbed".to_string()));
    assert!(node_health_text(&h, NOW).contains("Last scrub:   NEVER scrubbed"));
    let v = node_health_json(&h);
    assert_eq!(v["report"]["zfs_pools"][0]["state"], "DEGRADED");
    assert_eq!(
        v["report"]["zfs_pools"][0]["vdevs"][3]["note"],
        "was /dev/sdb1"
    );
    assert_eq!(v["report"]["zfs_pools"][0]["scrub"]["state"], "never");
}

#[test]
fn an_unknown_disk_is_never_shown_healthy() {
    let mut h = healthy();
    let r = report(&mut h);
    r.disks[1] = agent::DiskHealth {
        device: "/dev/sdb".into(),
        serial: "ZA1B2C3D".into(),
        smart: agent::SmartVerdict::Unknown as i32,
        // Not meaningful once `unknown` is set: never printed.
        temperature_c: Some(0),
        power_on_hours: Some(0),
        unknown: "`smartctl --json -a /dev/sdb` timed out after 30 s".into(),
        ..Default::default()
    };
    r.unobserved.push(agent::Unobserved {
        source: "zfs".into(),
        reason: "`zpool status -p` timed out after 20 s".into(),
    });
    r.temperatures.push(agent::Temperature {
        sensor: "acpitz temp1".into(),
        celsius: 0.0,
        critical_celsius: None,
        unknown: "reads 255 °C, outside -40..150 °C".into(),
    });
    let text = node_health_text(&h, NOW);
    has_all(
        &text,
        &[
            "  !! zfs not observed: `zpool status -p` timed out after 20 s\n",
            "  !! disk /dev/sdb (ZA1B2C3D): SMART unknown: `smartctl --json -a /dev/sdb` timed out after 30 s\n",
            "  !! sensor acpitz temp1: unknown: reads 255 °C, outside -40..150 °C\n",
            "  /dev/sdb  serial ZA1B2C3D\n    SMART:  unknown: `smartctl --json -a /dev/sdb` timed out after 30 s\n",
            "NOT OBSERVED (1): unknown, not healthy\n",
            "  zfs     `zpool status -p` timed out after 20 s\n",
            "  acpitz temp1           -      -         unknown: reads 255 °C, outside -40..150 °C\n",
        ],
    );
    let block = &text[at(&text, "  /dev/sdb  serial")..at(&text, "ZFS pools")];
    has_none(block, &["passed", "Temperature", "Power-on", "0 °C"]);
    let v = node_health_json(&h);
    assert_eq!(v["report"]["disks"][1]["smart"], "unknown");
    assert_eq!(
        v["report"]["disks"][1]["unknown"],
        "`smartctl --json -a /dev/sdb` timed out after 30 s"
    );
    // A verdict of unknown without a reason is still a problem.
    report(&mut h).disks[1].unknown.clear();
    assert!(problems(&h).contains(&"disk /dev/sdb (ZA1B2C3D): SMART verdict unknown".to_string()));
}

#[test]
fn a_stale_report_is_marked_before_anything_else() {
    let mut h = healthy();
    h.stale = true;
    h.received_unix = NOW - 900;
    let text = node_health_text(&h, NOW);
    has_all(
        &text,
        &[
            "Received:   2025-12-31 23:45 UTC (15 min ago)\n",
            "\nSTALE REPORT: received 15 min ago, more than two health periods: the node is silent or unreachable, and what follows may no longer be true.\n",
        ],
    );
    assert!(at(&text, "STALE REPORT") < at(&text, "No firing alert"));
    assert_eq!(node_health_json(&h)["stale"], true);
    assert!(!node_health_text(&healthy(), NOW).contains("STALE"));
}

#[test]
fn an_empty_report_and_no_report_say_what_is_missing() {
    let mut h = healthy();
    h.report = Some(agent::HealthReport::default());
    let text = node_health_text(&h, NOW);
    has_all(
        &text,
        &[
            "PROBLEMS IN THE REPORT (3)\n",
            "  !! the report lists no disks at all\n",
            "  !! the report has no system figures (memory, load, CPU)\n",
            "  !! the report does not say whether the clock is synchronised\n",
            "Disks: none reported\n",
            "ZFS pools: none\n",
            "Thin pools: none\n",
            "Filesystems: none reported\n",
            "  System:  not in the report\n",
            "Temperatures: no sensors\n",
            "Failed units: not in the report\n",
            "Network interfaces: none reported\n",
            "Maintenance: no run since the previous report\n",
        ],
    );
    // Sources the agent said it could not read are not reported twice.
    report(&mut h).unobserved = ["disks", "system", "clock"]
        .map(|s| agent::Unobserved {
            source: s.into(),
            reason: "test".into(),
        })
        .to_vec();
    assert_eq!(
        problems(&h),
        [
            "disks not observed: test",
            "system not observed: test",
            "clock not observed: test"
        ]
    );

    h.received_unix = 0;
    h.period_secs = 0;
    let text = node_health_text(&h, NOW);
    has_all(
        &text,
        &[
            "Received:   - (colocd did not say when)\n",
            "Collected:  - (the node did not say when)\n",
            "Period:     -\n",
        ],
    );

    h.report = None;
    let text = node_health_text(&h, NOW);
    has_all(
        &text,
        &[
            "Health of node n1\n",
            "NO HEALTH REPORT: node n1 never sent one",
            "No firing alert.\n",
        ],
    );
    has_none(&text, &["Disks", "Received"]);
    let v = node_health_json(&h);
    assert_eq!(v["report"], Value::Null);
    assert_eq!(v["problems"], json!([]));
}

#[test]
fn server_text_cannot_drive_the_terminal() {
    let mut h = healthy();
    report(&mut h).disks[0].model = "evil\u{1b}[2J".into();
    report(&mut h).units = Some(agent::UnitsHealth {
        failed: vec![agent::FailedUnit {
            name: "x\u{7}.service".into(),
            result: "exit-code".into(),
        }],
        unknown: String::new(),
    });
    let text = node_health_text(&h, NOW);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    has_all(
        &text,
        &[
            "evil\\u{1b}[2J",
            "FAILED UNITS (1)\n",
            "  !! unit x\\u{7}.service FAILED (exit-code)\n",
        ],
    );
}

#[test]
fn other_problems_are_named() {
    let mut h = healthy();
    let r = report(&mut h);
    r.disks[1].pending_sectors = Some(8);
    r.disks[1].crc_errors = Some(2);
    r.disks[1].failing_attributes = vec!["Reallocated_Sector_Ct".into()];
    r.disks[0].percentage_used = Some(104);
    r.thin_pools[0].unknown = "`lvs` printed no data_percent".into();
    r.filesystems[1].unknown = "statvfs: No such file or directory".into();
    r.temperatures[0].celsius = 101.0;
    r.clock = Some(agent::ClockHealth {
        synchronised: false,
        max_error_secs: Some(16.0),
        unknown: String::new(),
    });
    r.reboot = Some(agent::RebootHealth {
        required: true,
        reason: "/run/reboot-required (linux-image-6.1.0-28-amd64)".into(),
        unknown: String::new(),
    });
    r.maintenance.push(agent::MaintenanceRun {
        kind: agent::MaintenanceKind::SmartShort as i32,
        subject: "/dev/sdc".into(),
        state: agent::MaintenanceState::NotStarted as i32,
        detail: "the device has no SMART self-test".into(),
        ..Default::default()
    });
    assert_eq!(
        problems(&h),
        [
            "disk /dev/nvme0n1 (S4GNNX0N): worn out (104 % of its rated endurance used)",
            "disk /dev/sda (WD-WCC4E1234567): attributes FAILING NOW: Reallocated_Sector_Ct",
            "disk /dev/sda (WD-WCC4E1234567): 8 pending sectors, 2 CRC errors (check the cable)",
            "thin pool vg0/thin: unknown: `lvs` printed no data_percent",
            "filesystem /srv/tenants/asso-x/data: unknown: statvfs: No such file or directory",
            "sensor coretemp Package id 0: 101 °C, AT OR OVER its critical 100 °C",
            "clock NOT SYNCHRONISED: certificates and TLS depend on it",
            "REBOOT NEEDED: /run/reboot-required (linux-image-6.1.0-28-amd64)",
            "short self-test of /dev/sdc NOT STARTED: the device has no SMART self-test",
        ]
    );
    let text = node_health_text(&h, NOW);
    has_all(
        &text,
        &[
            "Clock:     NOT SYNCHRONISED\n",
            "Reboot:    NEEDED: /run/reboot-required",
            "  coretemp Package id 0  101 °C  100 °C    OVER CRITICAL\n",
            "  vg0/thin   -     -     -         unknown: `lvs` printed no data_percent\n",
            "FAILING NOW:  Reallocated_Sector_Ct\n",
            "short self-test  /dev/sdc  NOT STARTED",
        ],
    );
}

#[test]
fn maintenance_words() {
    assert_eq!(
        maintenance_started_text("n1", agent::MaintenanceKind::Scrub, "tank"),
        "Started a scrub of tank on node n1; 'coloc node health n1' shows its progress and result.\n"
    );
    assert!(
        maintenance_started_text("n1", agent::MaintenanceKind::SmartLong, "/dev/sda")
            .starts_with("Started a long self-test of /dev/sda on node n1;")
    );
    let running = agent::SelfTestResult {
        kind: agent::SelfTestKind::Short as i32,
        passed: false,
        status: "Self-test routine in progress".into(),
        power_on_hours: None,
        running: true,
    };
    assert_eq!(
        self_test_text(Some(&running)),
        "short, running now: Self-test routine in progress"
    );
    // A test still running has not failed.
    let mut h = healthy();
    report(&mut h).disks[0].last_self_test = Some(running);
    assert!(problems(&h).is_empty(), "{:?}", problems(&h));
    assert_eq!(fmt_duration(40), "40 s");
    assert_eq!(fmt_duration(900), "15 min");
    assert_eq!(fmt_duration(3600 + 120), "1 h 2 min");
    assert_eq!(fmt_duration(86_400 * 2 + 3600), "2 d 1 h");
}

#[test]
fn json_round_trips_with_unset_numbers_as_null() {
    let mut h = healthy();
    h.alerts.push(pb::Alert {
        id: 1,
        severity: pb::AlertSeverity::Warning as i32,
        state: pb::AlertState::Firing as i32,
        ..Default::default()
    });
    let v = node_health_json(&h);
    let text = serde_json::to_string_pretty(&v).unwrap();
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back, v);
    let disks = &back["report"]["disks"];
    // Set to 0 by the drive and unset by the tool are not the same.
    assert_eq!(disks[0]["media_errors"], 0);
    assert_eq!(disks[0]["pending_sectors"], Value::Null);
    assert_eq!(disks[1]["percentage_used"], Value::Null);
    assert_eq!(disks[1]["critical_warning"], Value::Null);
    assert_eq!(disks[1]["critical_warnings"], json!([]));
    assert_eq!(disks[1]["last_self_test"], Value::Null);
    assert_eq!(disks[0]["last_self_test"]["kind"], "short");
    assert_eq!(disks[0]["size_bytes"], 1_920_383_410_176_u64);
    assert_eq!(back["report"]["nics"][1]["speed_mbps"], Value::Null);
    assert_eq!(back["report"]["nics"][0]["speed_mbps"], 1000);
    assert_eq!(back["report"]["system"]["cpu_busy_ratio"], 0.12);
    assert_eq!(back["report"]["clock"]["max_error_secs"], 0.012);
    assert_eq!(back["report"]["maintenance"][0]["kind"], "scrub");
    assert_eq!(back["report"]["maintenance"][0]["state"], "passed");
    assert_eq!(back["report"]["collected_unix_ms"], 1_767_225_570_000_u64);
    assert_eq!(back["period_secs"], 60);
    assert_eq!(back["received_unix"], NOW - 30);
    assert_eq!(back["alerts"][0]["severity"], "warning");
}

/// Every field of the contract's messages is a key of the JSON, so a
/// field added to the .proto files cannot be silently left out of
/// `--json`: read from the descriptors compiled into coloc-proto.
#[test]
fn json_carries_every_field_of_the_contract() {
    let set = prost_types::FileDescriptorSet::decode(coloc_proto::FILE_DESCRIPTOR_SET)
        .expect("coloc-proto's descriptor set decodes");
    let fields = |package: &str, message: &str| -> BTreeSet<String> {
        set.file
            .iter()
            .filter(|f| f.package() == package)
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == message)
            .unwrap_or_else(|| panic!("{package}.{message} not in the descriptors"))
            .field
            .iter()
            .map(|f| f.name().to_string())
            .collect()
    };
    let mut h = healthy();
    report(&mut h).unobserved.push(agent::Unobserved::default());
    report(&mut h).units = Some(agent::UnitsHealth {
        failed: vec![agent::FailedUnit::default()],
        unknown: String::new(),
    });
    h.alerts.push(pb::Alert {
        subject: Some(pb::AlertSubject::default()),
        ..Default::default()
    });
    let v = node_health_json(&h);
    let r = &v["report"];
    let agent_pkg = "coloc.agent.v1";
    let ctl_pkg = "coloc.controller.v1";
    for (package, message, object) in [
        (ctl_pkg, "NodeHealth", &v),
        (ctl_pkg, "Alert", &v["alerts"][0]),
        (ctl_pkg, "AlertSubject", &v["alerts"][0]["subject"]),
        (agent_pkg, "HealthReport", r),
        (agent_pkg, "DiskHealth", &r["disks"][0]),
        (
            agent_pkg,
            "SelfTestResult",
            &r["disks"][0]["last_self_test"],
        ),
        (agent_pkg, "ZfsPoolHealth", &r["zfs_pools"][0]),
        (agent_pkg, "VdevHealth", &r["zfs_pools"][0]["vdevs"][0]),
        (agent_pkg, "ScrubStatus", &r["zfs_pools"][0]["scrub"]),
        (agent_pkg, "ThinPoolHealth", &r["thin_pools"][0]),
        (agent_pkg, "FilesystemUse", &r["filesystems"][0]),
        (agent_pkg, "SystemLoad", &r["system"]),
        (agent_pkg, "Temperature", &r["temperatures"][0]),
        (agent_pkg, "UnitsHealth", &r["units"]),
        (agent_pkg, "FailedUnit", &r["units"]["failed"][0]),
        (agent_pkg, "NicHealth", &r["nics"][0]),
        (agent_pkg, "ClockHealth", &r["clock"]),
        (agent_pkg, "RebootHealth", &r["reboot"]),
        (agent_pkg, "Unobserved", &r["unobserved"][0]),
        (agent_pkg, "MaintenanceRun", &r["maintenance"][0]),
    ] {
        let keys: BTreeSet<String> = object
            .as_object()
            .unwrap_or_else(|| panic!("{message} is not an object in the JSON"))
            .keys()
            .cloned()
            .collect();
        let missing: Vec<_> = fields(package, message)
            .difference(&keys)
            .cloned()
            .collect();
        assert!(missing.is_empty(), "{message}: {missing:?} not in --json");
    }
}

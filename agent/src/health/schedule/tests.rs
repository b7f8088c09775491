use coloc_proto::agent::v1::{
    DiskHealth, HealthPolicy, HealthReport, MaintenanceKind, ScrubState, ScrubStatus, SelfTestKind,
    SelfTestResult, SmartVerdict, ZfsPoolHealth,
};
use coloc_proto::health::HealthSchedule;

use super::{Started, key, plan};

const HOUR: u64 = 3600;
const DAY: u64 = 86_400;
/// 2026-12-01T00:00:00Z.
const T0: u64 = 1_796_083_200;

fn schedule() -> HealthSchedule {
    HealthSchedule::from_policy(None)
}

fn pool(name: &str) -> ZfsPoolHealth {
    ZfsPoolHealth {
        name: name.into(),
        state: "ONLINE".into(),
        scrub: Some(ScrubStatus {
            state: ScrubState::Never as i32,
            ..ScrubStatus::default()
        }),
        ..ZfsPoolHealth::default()
    }
}

fn disk(device: &str, serial: &str) -> DiskHealth {
    DiskHealth {
        device: device.into(),
        serial: serial.into(),
        smart: SmartVerdict::Passed as i32,
        power_on_hours: Some(1000),
        ..DiskHealth::default()
    }
}

/// A node whose pools scrub for three hours once started, checked every
/// hour: the start times of each pool's scrubs.
fn simulate_scrubs(node: &str, pools: &[&str], from: u64, hours: u64) -> Vec<(String, u64)> {
    let mut report = HealthReport {
        zfs_pools: pools.iter().map(|p| pool(p)).collect(),
        ..HealthReport::default()
    };
    let mut started = Started::default();
    let mut starts = Vec::new();
    for h in 0..hours {
        let now = from + h * HOUR;
        for p in &mut report.zfs_pools {
            let scrub = p.scrub.as_mut().expect("scrub");
            if scrub.state == ScrubState::Running as i32 && now >= scrub.started_unix + 3 * HOUR {
                scrub.state = ScrubState::Finished as i32;
                scrub.finished_unix = now;
            }
        }
        started.observe(&report, now);
        for planned in plan(&schedule(), node, &report, &started, now) {
            assert_eq!(planned.kind, MaintenanceKind::Scrub);
            let running = report
                .zfs_pools
                .iter()
                .filter(|p| p.scrub.as_ref().expect("scrub").state == ScrubState::Running as i32)
                .count();
            assert_eq!(running, 0, "a scrub started while another ran");
            started.record_start(&planned.key, now);
            let p = report
                .zfs_pools
                .iter_mut()
                .find(|p| p.name == planned.subject)
                .expect("planned pool exists");
            let scrub = p.scrub.as_mut().expect("scrub");
            scrub.state = ScrubState::Running as i32;
            scrub.started_unix = now;
            starts.push((planned.subject.clone(), now));
        }
    }
    starts
}

#[test]
fn each_pool_is_scrubbed_once_a_period_the_first_time_within_one() {
    let starts = simulate_scrubs("node-a", &["tank", "fast"], T0, 365 * 24);
    for name in ["tank", "fast"] {
        let times: Vec<u64> = starts
            .iter()
            .filter(|(p, _)| p == name)
            .map(|(_, t)| *t)
            .collect();
        assert!(
            times[0] - T0 <= 30 * DAY,
            "{name}: first scrub at {}",
            times[0]
        );
        // A year of 30-day periods: 12 or 13 scrubs, 15 to 45 days apart
        // (a window's phase is fixed, so the spacing is one period but for
        // the hour's granularity and waiting for the other pool).
        assert!(
            (12..=13).contains(&times.len()),
            "{name}: {} scrubs",
            times.len()
        );
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                (15 * DAY..=31 * DAY).contains(&gap),
                "{name}: {} days between scrubs",
                gap / DAY
            );
        }
    }
}

#[test]
fn a_fleet_installed_on_one_day_does_not_scrub_on_one_night() {
    let mut days = std::collections::BTreeMap::<u64, u32>::new();
    for n in 0..100 {
        let starts = simulate_scrubs(&format!("node-{n}"), &["tank"], T0, 31 * 24);
        let (_, first) = starts.first().expect("every node scrubs within a period");
        *days.entry((first - T0) / DAY).or_default() += 1;
    }
    let busiest = days.values().max().copied().unwrap_or(0);
    assert!(days.len() >= 15, "first scrubs on only {} days", days.len());
    assert!(
        busiest <= 12,
        "{busiest} of 100 nodes scrub on the same day"
    );
}

#[test]
fn a_scrub_someone_else_ran_counts() {
    let mut report = HealthReport {
        zfs_pools: vec![pool("tank")],
        ..HealthReport::default()
    };
    let mut started = Started::default();
    started.observe(&report, T0 - 40 * DAY);
    // Without any scrub, the pool is due by now (40 days after first seen).
    assert_eq!(plan(&schedule(), "n", &report, &started, T0).len(), 1);
    // Debian's cron job scrubbed it yesterday: not due.
    let scrub = report.zfs_pools[0].scrub.as_mut().expect("scrub");
    scrub.state = ScrubState::Finished as i32;
    scrub.started_unix = T0 - DAY;
    scrub.finished_unix = T0 - DAY + HOUR;
    assert!(plan(&schedule(), "n", &report, &started, T0).is_empty());
    // A canceled scrub does not count.
    let scrub = report.zfs_pools[0].scrub.as_mut().expect("scrub");
    scrub.state = ScrubState::Canceled as i32;
    assert_eq!(plan(&schedule(), "n", &report, &started, T0).len(), 1);
}

#[test]
fn a_pool_not_online_or_not_read_is_not_scrubbed() {
    let mut report = HealthReport {
        zfs_pools: vec![pool("tank")],
        ..HealthReport::default()
    };
    let mut started = Started::default();
    started.observe(&report, T0 - 40 * DAY);
    report.zfs_pools[0].state = "DEGRADED".into();
    assert!(plan(&schedule(), "n", &report, &started, T0).is_empty());
    report.zfs_pools[0].state = "ONLINE".into();
    report.zfs_pools[0].unknown = "zpool status timed out".into();
    assert!(plan(&schedule(), "n", &report, &started, T0).is_empty());
}

#[test]
fn nothing_is_planned_when_the_policy_turns_maintenance_off() {
    let off = HealthSchedule::from_policy(Some(&HealthPolicy {
        scrub_disabled: true,
        self_tests_disabled: true,
        ..HealthPolicy::default()
    }));
    let report = HealthReport {
        zfs_pools: vec![pool("tank")],
        disks: vec![disk("/dev/sda", "S1")],
        ..HealthReport::default()
    };
    let mut started = Started::default();
    started.observe(&report, T0 - 400 * DAY);
    assert!(plan(&off, "n", &report, &started, T0).is_empty());
    assert_eq!(plan(&schedule(), "n", &report, &started, T0).len(), 2);
}

#[test]
fn a_long_self_test_goes_first_but_never_while_a_scrub_runs() {
    let mut report = HealthReport {
        zfs_pools: vec![pool("tank")],
        disks: vec![disk("/dev/sda", "S1")],
        ..HealthReport::default()
    };
    let mut started = Started::default();
    started.observe(&report, T0 - 400 * DAY);
    let planned = plan(&schedule(), "n", &report, &started, T0);
    // The scrub is due too, so the disk gets its short test now.
    let kinds: Vec<MaintenanceKind> = planned.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        vec![MaintenanceKind::Scrub, MaintenanceKind::SmartShort]
    );
    assert_eq!(planned[1].subject, "/dev/sda");
    assert_eq!(planned[1].key, key(MaintenanceKind::SmartShort, "S1"));

    // Pool recently scrubbed: the long test goes.
    let scrub = report.zfs_pools[0].scrub.as_mut().expect("scrub");
    scrub.state = ScrubState::Finished as i32;
    scrub.started_unix = T0 - DAY;
    let planned = plan(&schedule(), "n", &report, &started, T0);
    assert_eq!(planned.len(), 1);
    assert_eq!(planned[0].kind, MaintenanceKind::SmartLong);
}

#[test]
fn a_self_test_in_the_disk_log_counts_and_one_runs_at_a_time() {
    let mut report = HealthReport {
        disks: vec![disk("/dev/sda", "S1"), disk("/dev/sdb", "S2")],
        ..HealthReport::default()
    };
    let mut started = Started::default();
    started.observe(&report, T0 - 400 * DAY);
    let planned = plan(&schedule(), "n", &report, &started, T0);
    assert_eq!(planned.len(), 1, "one self-test at a time: {planned:?}");
    assert_eq!(planned[0].kind, MaintenanceKind::SmartLong);

    // Both disks ran a long test 10 hours ago: nothing due.
    for d in &mut report.disks {
        d.last_self_test = Some(SelfTestResult {
            kind: SelfTestKind::Long as i32,
            passed: true,
            power_on_hours: Some(990),
            ..SelfTestResult::default()
        });
    }
    assert!(plan(&schedule(), "n", &report, &started, T0).is_empty());

    // One disk is running a test: nobody else starts one.
    report.disks[0].last_self_test = Some(SelfTestResult {
        kind: SelfTestKind::Short as i32,
        running: true,
        ..SelfTestResult::default()
    });
    report.disks[1].last_self_test = None;
    assert!(plan(&schedule(), "n", &report, &started, T0).is_empty());
}

#[test]
fn a_run_just_started_counts_as_running_until_a_report_shows_it() {
    let report = HealthReport {
        zfs_pools: vec![pool("tank"), pool("fast")],
        ..HealthReport::default()
    };
    let mut started = Started::default();
    started.observe(&report, T0 - 400 * DAY);
    let first = plan(&schedule(), "n", &report, &started, T0);
    assert_eq!(first.len(), 1);
    started.record_start(&first[0].key, T0);
    assert!(plan(&schedule(), "n", &report, &started, T0 + 60).is_empty());
}

#[test]
fn disks_without_smart_or_with_a_bad_path_are_not_tested() {
    let mut virtio = disk("/dev/vda", "");
    virtio.smart = SmartVerdict::Unsupported as i32;
    let mut unread = disk("/dev/sdb", "S2");
    unread.smart = SmartVerdict::Unknown as i32;
    unread.unknown = "smartctl timed out".into();
    let crafted = disk("/dev/../etc/passwd", "S3");
    let report = HealthReport {
        disks: vec![virtio, unread, crafted],
        ..HealthReport::default()
    };
    let mut started = Started::default();
    started.observe(&report, T0 - 400 * DAY);
    assert!(plan(&schedule(), "n", &report, &started, T0).is_empty());
}

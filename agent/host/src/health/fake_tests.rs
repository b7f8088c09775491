//! The simulated node's health: healthy and complete by default, every
//! fault setter visible in the next report, maintenance RUNNING then
//! finished.

use std::collections::BTreeMap;

use coloc_proto::agent::v1::{
    FailedUnit, HealthReport, MaintenanceKind, MaintenanceState, PoolLayout, ScrubState,
    ScrubStatus, SelfTestKind, SmartVerdict,
};
use coloc_proto::health::check_report;
use coloc_proto::storage::{PoolName, VolumeId};

use super::HealthInputs;
use crate::volumes::{VolumeBackend, VolumeParams};
use crate::{FakeHost, HostError};

const VOLUME: &str = "0123456789abcdef";

/// A node with a ZFS mirror `tank` on vdb+vdc (one mounted volume) and an
/// LVM group `fast` on vdd.
async fn node() -> (FakeHost, HealthInputs) {
    let fake = FakeHost::new("n1");
    let tank: PoolName = "tank".parse().unwrap();
    fake.zfs
        .create_pool(
            &tank,
            PoolLayout::Mirror,
            &["/dev/vdb".into(), "/dev/vdc".into()],
            false,
        )
        .await
        .unwrap();
    fake.lvm
        .create_pool(
            &"fast".parse().unwrap(),
            PoolLayout::Single,
            &["/dev/vdd".into()],
            false,
        )
        .await
        .unwrap();
    let params = VolumeParams {
        id: VolumeId::new(VOLUME).unwrap(),
        tenant: "asso-velo".parse().unwrap(),
        name: "data".parse().unwrap(),
        pool: tank,
        size_bytes: 10 << 30,
        reservation_bytes: 0,
        encrypted: false,
        mount_path: "/srv/tenants/asso-velo/data".into(),
        owner_uid: 200_000,
        owner_gid: 200_000,
    };
    fake.zfs.create_volume(&params).await.unwrap();
    fake.zfs.set_used_bytes(VOLUME, 9 << 30);
    let inputs = HealthInputs {
        volumes: BTreeMap::from([(VOLUME.to_owned(), params.mount_path.clone().into())]),
    };
    (fake, inputs)
}

async fn report(fake: &FakeHost, inputs: &HealthInputs) -> HealthReport {
    let report = fake.host().health.report(inputs).await;
    check_report(&report).expect("within colocd's bounds");
    report
}

#[tokio::test]
async fn a_fresh_simulated_node_is_healthy_in_every_section() {
    let (fake, inputs) = node().await;
    let r = report(&fake, &inputs).await;
    assert!(r.collected_unix_ms > 0);
    assert_eq!(r.disks.len(), 4);
    for d in &r.disks {
        assert_eq!(d.smart, SmartVerdict::Passed as i32, "{}", d.device);
        assert!(d.unknown.is_empty());
        assert_eq!(d.critical_warning, Some(0));
        assert!(d.temperature_c < d.temperature_limit_c);
        assert!(d.serial.starts_with("SIM-n1-"));
    }
    let tank = &r.zfs_pools[0];
    assert_eq!(
        (tank.name.as_str(), tank.state.as_str()),
        ("tank", "ONLINE")
    );
    let tree: Vec<(&str, u32, &str)> = tank
        .vdevs
        .iter()
        .map(|v| (v.name.as_str(), v.depth, v.state.as_str()))
        .collect();
    assert_eq!(
        tree,
        [
            ("tank", 0, "ONLINE"),
            ("mirror-0", 1, "ONLINE"),
            ("vdb", 2, "ONLINE"),
            ("vdc", 2, "ONLINE")
        ]
    );
    assert_eq!(tank.scrub.unwrap().state, ScrubState::Never as i32);
    assert_eq!(r.thin_pools.len(), 1);
    assert_eq!(r.thin_pools[0].volume_group, "fast");
    assert!(r.thin_pools[0].unknown.is_empty());
    assert_eq!(r.filesystems.len(), 2);
    assert_eq!(r.filesystems[0].mount_path, "/");
    let volume = &r.filesystems[1];
    assert_eq!(volume.volume_id, VOLUME);
    assert_eq!(volume.mount_path, "/srv/tenants/asso-velo/data");
    assert_eq!((volume.size_bytes, volume.used_bytes), (10 << 30, 9 << 30));
    let system = r.system.as_ref().unwrap();
    assert_eq!(system.cpu_count, 4);
    assert!(system.memory_available_bytes < system.memory_total_bytes);
    assert!(!r.temperatures.is_empty() && r.temperatures.iter().all(|t| t.unknown.is_empty()));
    assert!(r.units.as_ref().unwrap().failed.is_empty());
    assert_eq!(r.nics[0].name, "eth0");
    assert!(r.nics[0].up);
    assert!(r.clock.as_ref().unwrap().synchronised);
    assert!(!r.reboot.as_ref().unwrap().required);
    assert!(r.unobserved.is_empty());
    assert!(r.maintenance.is_empty());
}

#[tokio::test]
async fn every_fault_shows_in_the_next_report_and_clears() {
    let (fake, inputs) = node().await;
    let h = &fake.health;
    h.set_smart_verdict("/dev/vda", Some(SmartVerdict::Failed));
    h.set_critical_warning("/dev/vdb", 4);
    h.set_disk_temperature("/dev/vdc", Some(81));
    h.set_disk_unknown(
        "/dev/vdd",
        Some("smartctl timed out after 30 s and was killed"),
    );
    h.set_pool_degraded("tank", Some("/dev/vdc"));
    h.set_vdev_errors("tank", "vdb", 1, 2, 3);
    h.set_thin_pool_use("fast", Some((91.5, 40.0)));
    h.set_filesystem_use(VOLUME, Some((100, 95)));
    h.set_temperature("acpitz temp1", Some(255.0));
    h.set_failed_units(vec![FailedUnit {
        name: "caddy.service".into(),
        result: "exit-code".into(),
    }]);
    h.set_load(Some((9.0, 8.0, 7.0)));
    h.set_clock_synchronised(false);
    h.set_reboot_required(Some("/run/reboot-required (linux-image-6.1.0-28-amd64)"));
    h.set_unobserved("nics", Some("/sys/class/net unreadable"));

    let r = report(&fake, &inputs).await;
    let disk = |dev: &str| r.disks.iter().find(|d| d.device == dev).unwrap();
    assert_eq!(disk("/dev/vda").smart, SmartVerdict::Failed as i32);
    assert_eq!(disk("/dev/vdb").critical_warning, Some(4));
    assert_eq!(disk("/dev/vdc").temperature_c, Some(81));
    assert_eq!(disk("/dev/vdd").smart, SmartVerdict::Unknown as i32);
    assert!(disk("/dev/vdd").unknown.contains("timed out"));
    assert_eq!(
        disk("/dev/vdd").temperature_c,
        None,
        "unknown is never a value"
    );
    let tank = &r.zfs_pools[0];
    assert_eq!(tank.state, "DEGRADED");
    let vdev = |name: &str| tank.vdevs.iter().find(|v| v.name == name).unwrap();
    assert_eq!(vdev("mirror-0").state, "DEGRADED");
    assert_eq!(vdev("vdc").state, "REMOVED");
    assert_eq!(vdev("vdc").note, "was /dev/vdc");
    let vdb = vdev("vdb");
    assert_eq!(
        (vdb.read_errors, vdb.write_errors, vdb.checksum_errors),
        (1, 2, 3)
    );
    assert!(!tank.status.is_empty());
    assert_eq!(r.thin_pools[0].data_percent, 91.5);
    assert_eq!(r.thin_pools[0].metadata_percent, 40.0);
    assert_eq!(
        (r.filesystems[1].size_bytes, r.filesystems[1].used_bytes),
        (100, 95)
    );
    let acpi = r
        .temperatures
        .iter()
        .find(|t| t.sensor == "acpitz temp1")
        .unwrap();
    assert!(acpi.unknown.contains("255"), "{acpi:?}");
    assert_eq!(r.units.as_ref().unwrap().failed[0].result, "exit-code");
    assert_eq!(r.system.as_ref().unwrap().load1, 9.0);
    assert!(!r.clock.as_ref().unwrap().synchronised);
    assert!(r.reboot.as_ref().unwrap().required);
    assert!(r.reboot.as_ref().unwrap().reason.contains("linux-image"));
    assert!(r.nics.is_empty());
    assert_eq!(r.unobserved[0].source, "nics");

    h.clear_faults();
    let r = report(&fake, &inputs).await;
    assert!(
        r.disks
            .iter()
            .all(|d| d.smart == SmartVerdict::Passed as i32 && d.unknown.is_empty())
    );
    assert!(r.disks.iter().all(|d| d.critical_warning == Some(0)));
    assert_eq!(r.zfs_pools[0].state, "ONLINE");
    assert!(
        r.zfs_pools[0]
            .vdevs
            .iter()
            .all(|v| v.state == "ONLINE" && v.read_errors == 0)
    );
    assert!(r.thin_pools[0].data_percent < 80.0);
    assert!(r.temperatures.iter().all(|t| t.unknown.is_empty()));
    assert!(r.units.as_ref().unwrap().failed.is_empty());
    assert!(r.clock.as_ref().unwrap().synchronised);
    assert!(!r.reboot.as_ref().unwrap().required);
    assert!(r.unobserved.is_empty() && !r.nics.is_empty());
}

#[tokio::test]
async fn a_scrub_runs_in_the_next_report_and_finishes_in_the_one_after() {
    let (fake, inputs) = node().await;
    let health = fake.host().health;
    assert_eq!(
        health
            .start_maintenance(MaintenanceKind::Scrub, "tank")
            .await
            .unwrap(),
        "tank"
    );
    let again = health
        .start_maintenance(MaintenanceKind::Scrub, "tank")
        .await;
    assert!(matches!(again, Err(HostError::Refused { .. })), "{again:?}");

    let first = report(&fake, &inputs).await;
    assert_eq!(
        first.zfs_pools[0].scrub.unwrap().state,
        ScrubState::Running as i32
    );
    assert_eq!(first.maintenance.len(), 1);
    assert_eq!(first.maintenance[0].state, MaintenanceState::Running as i32);
    assert_eq!(first.maintenance[0].subject, "tank");

    let second = report(&fake, &inputs).await;
    let run = &second.maintenance[0];
    assert_eq!(run.state, MaintenanceState::Passed as i32);
    assert!(run.started_unix > 0 && run.finished_unix >= run.started_unix);
    let scrub = second.zfs_pools[0].scrub.unwrap();
    assert_eq!(scrub.state, ScrubState::Finished as i32);
    assert_eq!(scrub.started_unix, run.started_unix);

    let third = report(&fake, &inputs).await;
    assert!(third.maintenance.is_empty(), "reported finished once");
    assert_eq!(third.zfs_pools[0].scrub, Some(scrub));
}

#[tokio::test]
async fn a_last_scrub_set_by_a_test_is_reported_until_a_new_one_finishes() {
    let (fake, inputs) = node().await;
    let old = ScrubStatus {
        state: ScrubState::Finished as i32,
        started_unix: 1_700_000_000,
        finished_unix: 1_700_003_600,
        errors: 2,
        repaired_bytes: 4096,
        progress_permille: 0,
    };
    fake.health.set_last_scrub("tank", Some(old));
    assert_eq!(report(&fake, &inputs).await.zfs_pools[0].scrub, Some(old));
    fake.host()
        .health
        .start_maintenance(MaintenanceKind::Scrub, "tank")
        .await
        .unwrap();
    report(&fake, &inputs).await;
    let new = report(&fake, &inputs).await.zfs_pools[0].scrub.unwrap();
    assert!(new.finished_unix > old.finished_unix && new.errors == 0);
    fake.health.set_last_scrub("tank", None);
    let never = report(&fake, &inputs).await.zfs_pools[0].scrub.unwrap();
    assert_eq!(never.state, ScrubState::Never as i32);
}

#[tokio::test]
async fn a_scrub_over_checksum_errors_fails() {
    let (fake, inputs) = node().await;
    fake.health.set_vdev_errors("tank", "vdc", 0, 0, 7);
    fake.host()
        .health
        .start_maintenance(MaintenanceKind::Scrub, "tank")
        .await
        .unwrap();
    report(&fake, &inputs).await;
    let done = report(&fake, &inputs).await;
    assert_eq!(done.maintenance[0].state, MaintenanceState::Failed as i32);
    assert_eq!(done.zfs_pools[0].scrub.unwrap().errors, 7);
}

#[tokio::test]
async fn a_self_test_by_serial_runs_on_the_disks_device() {
    let (fake, inputs) = node().await;
    let health = fake.host().health;
    let device = health
        .start_maintenance(MaintenanceKind::SmartLong, "SIM-n1-2")
        .await
        .unwrap();
    assert_eq!(device, "/dev/vdc");
    let busy = health
        .start_maintenance(MaintenanceKind::SmartShort, "/dev/vdc")
        .await;
    assert!(busy.is_err(), "one self-test at a time per disk");

    let first = report(&fake, &inputs).await;
    let vdc = first.disks.iter().find(|d| d.device == "/dev/vdc").unwrap();
    let test = vdc.last_self_test.as_ref().unwrap();
    assert!(test.running);
    assert_eq!(test.kind, SelfTestKind::Long as i32);
    assert_eq!(first.maintenance[0].kind, MaintenanceKind::SmartLong as i32);

    let second = report(&fake, &inputs).await;
    let vdc = second
        .disks
        .iter()
        .find(|d| d.device == "/dev/vdc")
        .unwrap();
    let test = vdc.last_self_test.clone().unwrap();
    assert!(!test.running && test.passed);
    assert_eq!(test.power_on_hours, vdc.power_on_hours);
    assert_eq!(second.maintenance[0].state, MaintenanceState::Passed as i32);
    let third = report(&fake, &inputs).await;
    let vdc = third.disks.iter().find(|d| d.device == "/dev/vdc").unwrap();
    assert_eq!(vdc.last_self_test.as_ref(), Some(&test), "kept in the log");
}

#[tokio::test]
async fn bad_or_unknown_subjects_are_refused_and_nothing_runs() {
    let (fake, inputs) = node().await;
    let health = fake.host().health;
    for (kind, subject) in [
        (MaintenanceKind::Scrub, "mirror"),
        (MaintenanceKind::Scrub, "-f"),
        (MaintenanceKind::Scrub, "nosuchpool"),
        (MaintenanceKind::SmartShort, "/dev/../etc/passwd"),
        (MaintenanceKind::SmartShort, "/dev/sdz"),
        (MaintenanceKind::SmartShort, "NO-SUCH-SERIAL"),
        (MaintenanceKind::Unspecified, "tank"),
    ] {
        assert!(
            health.start_maintenance(kind, subject).await.is_err(),
            "{kind:?} {subject:?} accepted"
        );
    }
    fake.health.set_disk_unknown("/dev/vdb", Some("vanished"));
    assert!(matches!(
        health
            .start_maintenance(MaintenanceKind::SmartShort, "/dev/vdb")
            .await,
        Err(HostError::SmartUnavailable { .. })
    ));
    assert!(report(&fake, &inputs).await.maintenance.is_empty());
}

#[tokio::test]
async fn a_volume_not_on_the_node_is_unknown_not_empty() {
    let (fake, _) = node().await;
    let inputs = HealthInputs {
        volumes: BTreeMap::from([("fedcba9876543210".to_owned(), "/srv/x".into())]),
    };
    let r = report(&fake, &inputs).await;
    assert!(r.filesystems[1].unknown.contains("fedcba9876543210"));
}

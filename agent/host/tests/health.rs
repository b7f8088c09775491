//! Health collection against fixtures: each parser on the outputs it
//! reads (failing disks and broken pools included), and the whole real
//! collection run on fixture roots with fake tools (shell scripts) that
//! answer, hang, or print garbage.
//!
//! The `tests/fixtures/health/` files are written by hand from the tools'
//! formats (smartctl 7.3 JSON, OpenZFS 2.1 `zpool status`, LVM 2.03 JSON
//! reports, the kernel's /proc and /sys files): the build machines have
//! no ZFS, LVM, SMART or systemd. The NVMe one follows QEMU's NVMe device
//! as recorded in `tests/fixtures/smartctl-nvme.sample.json`, with the
//! critical-warning bit 2 raised as QMP's `smart_critical_warning` does.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coloc_host::health::{
    HealthInputs, HealthPaths, Source, parse_cpu_sample, parse_disk_health, parse_loadavg,
    parse_lvs_thin_pools, parse_meminfo, parse_uptime, parse_zpool_status, read_hwmon, read_nics,
    read_reboot, trim_report,
};
use coloc_host::runner::Runner;
use coloc_host::{Health, HostError, RealHealth};
use coloc_proto::agent::v1::{MaintenanceKind, ScrubState, SelfTestKind, SmartVerdict, SystemLoad};
use coloc_proto::health::check_report;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/health")
}

fn fixture(name: &str) -> String {
    let path = dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn root() -> PathBuf {
    dir().join("root")
}

// ------------------------------------------------------------------ smartctl

#[test]
fn nvme_with_a_critical_warning_is_failed_with_every_value() {
    let d = parse_disk_health(
        "/dev/nvme0n1",
        8,
        &fixture("smartctl-nvme-critical-warning.json"),
    );
    assert_eq!(d.smart, SmartVerdict::Failed as i32);
    assert!(d.unknown.is_empty());
    assert_eq!(d.model, "QEMU NVMe Ctrl");
    assert_eq!(d.serial, "COLOC0001");
    assert_eq!(d.transport, "nvme");
    assert_eq!(d.critical_warning, Some(4));
    assert_eq!(d.temperature_c, Some(72));
    assert_eq!(d.temperature_limit_c, Some(70));
    assert_eq!(d.percentage_used, Some(103));
    assert_eq!(d.available_spare, Some(8));
    assert_eq!(d.available_spare_threshold, Some(10));
    assert_eq!(d.media_errors, Some(12));
    assert_eq!(d.power_on_hours, Some(17520));
    assert_eq!(d.reallocated_sectors, None, "no ATA attributes on NVMe");
    let test = d.last_self_test.unwrap();
    assert_eq!(test.kind, SelfTestKind::Long as i32);
    assert!(!test.passed && !test.running);
    assert_eq!(test.status, "Completed: failed segments");
    assert_eq!(test.power_on_hours, Some(17500));
}

#[test]
fn the_qemu_nvme_recording_is_passed() {
    let d = parse_disk_health(
        "/dev/nvme0",
        0,
        &std::fs::read_to_string(dir().join("../smartctl-nvme.sample.json")).unwrap(),
    );
    assert_eq!(d.smart, SmartVerdict::Passed as i32);
    assert_eq!(d.critical_warning, Some(0));
    assert_eq!(d.temperature_c, Some(50));
    assert_eq!(
        d.temperature_limit_c, None,
        "QEMU gives no WCTEMP in the recording"
    );
    assert_eq!(d.last_self_test, None);
}

#[test]
fn ata_with_reallocated_and_pending_sectors_is_failed_and_names_what_fails_now() {
    let d = parse_disk_health("/dev/sda", 216, &fixture("smartctl-ata-failing-now.json"));
    assert_eq!(d.smart, SmartVerdict::Failed as i32);
    assert_eq!(d.reallocated_sectors, Some(3912));
    assert_eq!(d.pending_sectors, Some(56));
    assert_eq!(d.offline_uncorrectable, Some(7));
    assert_eq!(d.crc_errors, Some(0));
    // "past" failures are not failing now.
    assert_eq!(
        d.failing_attributes,
        ["Reallocated_Sector_Ct", "Multi_Zone_Error_Rate"]
    );
    assert_eq!(d.temperature_c, Some(38));
    assert_eq!(d.power_on_hours, Some(44678));
    assert_eq!(d.critical_warning, None, "no NVMe log on ATA");
    let test = d.last_self_test.unwrap();
    assert_eq!(test.kind, SelfTestKind::Long as i32);
    assert!(!test.passed && !test.running);
    assert_eq!(test.power_on_hours, Some(44650));
}

#[test]
fn a_passed_verdict_with_the_failing_bit_set_is_failed() {
    let json = fixture("smartctl-ata-self-test-running.json");
    assert_eq!(
        parse_disk_health("/dev/sdb", 0, &json).smart,
        SmartVerdict::Passed as i32
    );
    assert_eq!(
        parse_disk_health("/dev/sdb", 8, &json).smart,
        SmartVerdict::Failed as i32
    );
}

#[test]
fn self_tests_in_progress_are_running() {
    let ata = parse_disk_health(
        "/dev/sdb",
        0,
        &fixture("smartctl-ata-self-test-running.json"),
    );
    let test = ata.last_self_test.unwrap();
    assert!(test.running);
    assert_eq!(test.status, "in progress, 90% remaining");
    assert_eq!(ata.temperature_limit_c, Some(70));
    assert_eq!(ata.crc_errors, Some(4));

    let nvme = parse_disk_health(
        "/dev/nvme1n1",
        0,
        &fixture("smartctl-nvme-self-test-running.json"),
    );
    let test = nvme.last_self_test.unwrap();
    assert!(test.running);
    assert_eq!(test.kind, SelfTestKind::Short as i32);
    assert!(test.status.contains("30% done"), "{}", test.status);
}

#[test]
fn a_disk_that_vanished_is_unknown_with_smartctls_words() {
    let d = parse_disk_health("/dev/sdc", 2, &fixture("smartctl-vanished.json"));
    assert_eq!(d.smart, SmartVerdict::Unknown as i32);
    assert!(d.unknown.contains("No such device"), "{}", d.unknown);
    assert!(d.unknown.contains("exit status 2"));
}

#[test]
fn a_virtio_disk_has_no_smart() {
    let json = std::fs::read_to_string(dir().join("../smartctl-virtio.sample.json")).unwrap();
    let d = parse_disk_health("/dev/vda", 1, &json);
    assert_eq!(d.smart, SmartVerdict::Unsupported as i32);
    assert!(d.unknown.is_empty());
}

#[test]
fn garbage_is_never_passed() {
    for (status, out) in [
        (0, "garbage"),
        (0, ""),
        (0, "[1, 2]"),
        (0, r#"{"smart_status": {"passed": "yes"}}"#),
        (0, r#"{"model_name": "USB bridge"}"#),
        (1, "{}"),
        (-1, "{}"),
        (
            0,
            r#"{"smart_support": {"available": true, "enabled": false}}"#,
        ),
    ] {
        let d = parse_disk_health("/dev/sdx", status, out);
        assert_eq!(d.smart, SmartVerdict::Unknown as i32, "{status} {out:?}");
        assert!(!d.unknown.is_empty(), "{status} {out:?}");
    }
    let d = parse_disk_health("/dev/sdx", 0, r#"{"smart_support": {"available": false}}"#);
    assert_eq!(d.smart, SmartVerdict::Unsupported as i32);
}

// ------------------------------------------------------------------ zpool

#[test]
fn a_degraded_mirror_names_its_unavailable_member() {
    let p = parse_zpool_status(&fixture("zpool-status-degraded-mirror.txt")).unwrap();
    assert_eq!(p.name, "tank");
    assert_eq!(p.state, "DEGRADED");
    assert!(
        p.status
            .starts_with("One or more devices could not be used")
    );
    assert!(p.status.contains("functioning in a degraded state."));
    let tree: Vec<(&str, u32, &str, &str)> = p
        .vdevs
        .iter()
        .map(|v| (v.name.as_str(), v.depth, v.state.as_str(), v.note.as_str()))
        .collect();
    assert_eq!(
        tree,
        [
            ("tank", 0, "DEGRADED", ""),
            ("mirror-0", 1, "DEGRADED", ""),
            ("vdb", 2, "ONLINE", ""),
            ("11417434932826374711", 2, "UNAVAIL", "was /dev/vdc1"),
        ]
    );
    let scrub = p.scrub.unwrap();
    assert_eq!(scrub.state, ScrubState::Finished as i32);
    // Sun Nov 29 03:24:02 2026 UTC, 2 s long.
    assert_eq!(scrub.finished_unix, 1_795_922_642);
    assert_eq!(scrub.started_unix, 1_795_922_640);
    assert_eq!((scrub.errors, scrub.repaired_bytes), (0, 0));
    assert_eq!(p.data_errors, 0);
}

#[test]
fn a_scrub_in_progress_with_a_removed_member() {
    let p = parse_zpool_status(&fixture("zpool-status-scrub-running.txt")).unwrap();
    let scrub = p.scrub.unwrap();
    assert_eq!(scrub.state, ScrubState::Running as i32);
    // Sat Dec  5 20:10:07 2026 UTC.
    assert_eq!(scrub.started_unix, 1_796_501_407);
    assert_eq!(scrub.progress_permille, 63);
    assert_eq!(scrub.finished_unix, 0);
    assert_eq!(p.vdevs[3].name, "vdc");
    assert_eq!(p.vdevs[3].state, "REMOVED");
}

#[test]
fn a_scrub_that_found_errors_and_the_vdevs_that_have_them() {
    let p = parse_zpool_status(&fixture("zpool-status-scrub-errors.txt")).unwrap();
    assert_eq!(p.name, "data");
    let scrub = p.scrub.unwrap();
    assert_eq!(scrub.state, ScrubState::Finished as i32);
    assert_eq!(scrub.errors, 3);
    assert_eq!(scrub.repaired_bytes, 1_572_864);
    assert_eq!(
        scrub.finished_unix - scrub.started_unix,
        86_400 + 12 * 60 + 31
    );
    assert_eq!(p.data_errors, 3);
    let sdc = p.vdevs.iter().find(|v| v.name == "sdc").unwrap();
    assert_eq!(
        (sdc.read_errors, sdc.write_errors, sdc.checksum_errors),
        (2, 0, 12)
    );
    assert_eq!(sdc.depth, 2);
    let names: Vec<(&str, u32, &str)> = p.vdevs[5..]
        .iter()
        .map(|v| (v.name.as_str(), v.depth, v.state.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("logs", 0, ""),
            ("nvme0n1p1", 1, "ONLINE"),
            ("cache", 0, ""),
            ("nvme0n1p2", 1, "ONLINE"),
            ("spares", 0, ""),
            ("sde", 1, "AVAIL"),
        ]
    );
}

#[test]
fn canceled_and_never_run_scrubs() {
    let p = parse_zpool_status(&fixture("zpool-status-scrub-canceled.txt")).unwrap();
    let scrub = p.scrub.unwrap();
    assert_eq!(scrub.state, ScrubState::Canceled as i32);
    assert_eq!(scrub.finished_unix, 1_795_924_800);
    let p = parse_zpool_status(&fixture("zpool-status-never-scrubbed.txt")).unwrap();
    assert_eq!(p.scrub.unwrap().state, ScrubState::Never as i32);
    assert_eq!(p.vdevs.len(), 2);
}

#[test]
fn zpool_status_that_is_not_understood_is_an_error() {
    for text in [
        "",
        "garbage\n",
        "  pool: tank\n",
        "  pool: tank\n state: ONLINE\n  scan: scrub exploded\n",
        "  pool: tank\n state: ONLINE\nconfig:\n\n\ttank ONLINE x y z\n",
        "  pool: tank\n state: ONLINE\nconfig:\n\n\tNAME STATE READ WRITE CKSUM\n\ttank ONLINE 0 0 zz\n",
        "  pool: tank\n state: ONLINE\nerrors: many data errors\n",
    ] {
        assert!(
            matches!(parse_zpool_status(text), Err(HostError::Parse { .. })),
            "{text:?} accepted"
        );
    }
}

// ------------------------------------------------------------------ lvm

#[test]
fn thin_pools_with_their_use_and_an_inactive_one() {
    let pools = parse_lvs_thin_pools(&fixture("lvs-thin-pools.json")).unwrap();
    assert_eq!(pools.len(), 2, "thin volumes and linear LVs are not pools");
    assert_eq!(pools[0].volume_group, "fast");
    assert_eq!(pools[0].name, "thin");
    assert_eq!(pools[0].size_bytes, 107_374_182_400);
    assert_eq!(pools[0].data_percent, 83.47);
    assert_eq!(pools[0].metadata_percent, 12.05);
    assert!(pools[0].unknown.is_empty());
    assert!(pools[1].unknown.contains("not active"), "{:?}", pools[1]);
    assert!(parse_lvs_thin_pools("{}").is_err());
    let odd = r#"{"report":[{"lv":[{"vg_name":"v","lv_name":"thin","segtype":"thin-pool","lv_size":"1","data_percent":"250","metadata_percent":"1"}]}]}"#;
    assert!(
        parse_lvs_thin_pools(odd).unwrap()[0]
            .unknown
            .contains("250")
    );
}

// ------------------------------------------------------------------ kernel files

#[test]
fn proc_files_give_memory_load_cpu_and_uptime() {
    let mut load = SystemLoad::default();
    parse_meminfo(&fixture("root/proc/meminfo"), &mut load).unwrap();
    assert_eq!(load.memory_total_bytes, 24_590_788 * 1024);
    assert_eq!(load.memory_available_bytes, 21_765_432 * 1024);
    assert_eq!(load.swap_total_bytes, 2_097_148 * 1024);
    assert_eq!(load.swap_free_bytes, 1_048_572 * 1024);
    assert_eq!(
        parse_loadavg(&fixture("root/proc/loadavg")).unwrap(),
        (0.52, 0.58, 0.59)
    );
    let cpu = parse_cpu_sample(&fixture("root/proc/stat")).unwrap();
    assert_eq!(cpu.cpu_count, 2);
    assert_eq!(
        cpu.total,
        10_132_153 + 290_696 + 3_084_719 + 46_828_483 + 16_683 + 25_195
    );
    assert_eq!(cpu.busy, cpu.total - 46_828_483 - 16_683);
    assert_eq!(parse_uptime(&fixture("root/proc/uptime")).unwrap(), 350_735);
    assert!(parse_meminfo("MemTotal: lots\n", &mut load).is_err());
    assert!(parse_loadavg("nan 1 2").is_err());
    assert!(parse_cpu_sample("intr 1 2\n").is_err());
}

#[test]
fn sensors_with_nonsense_readings_are_unknown() {
    let temps = read_hwmon(&root().join("sys")).unwrap();
    let by_name: BTreeMap<&str, _> = temps.iter().map(|t| (t.sensor.as_str(), t)).collect();
    let package = by_name["coretemp Package id 0"];
    assert_eq!(
        (package.celsius, package.critical_celsius),
        (45.0, Some(100.0))
    );
    assert!(package.unknown.is_empty());
    assert_eq!(by_name["coretemp Core 0"].celsius, 43.0);
    let cold = by_name["acpitz temp1"];
    assert!(cold.unknown.contains("-128"), "{cold:?}");
    assert_eq!(cold.celsius, 0.0, "never a value when unknown");
    assert!(by_name["acpitz temp2"].unknown.contains("not a number"));
    assert_eq!(temps.len(), 4);
}

#[test]
fn nics_backed_by_a_device_with_state_and_speed() {
    // lo, the bridge br0 and veth0 have no device: not NICs.
    let nics = read_nics(&root().join("sys")).unwrap();
    let seen: Vec<(&str, bool, Option<u32>)> = nics
        .iter()
        .map(|n| (n.name.as_str(), n.up, n.speed_mbps))
        .collect();
    assert_eq!(seen, [("ens3", false, None), ("eth0", true, Some(1000))]);
}

#[test]
fn an_older_running_kernel_or_debians_flag_asks_for_a_reboot() {
    let r = root();
    let kernel = read_reboot(&r.join("run"), &r.join("proc"), &r.join("boot")).unwrap();
    assert!(kernel.required);
    assert_eq!(
        kernel.reason,
        "running kernel 6.1.0-27-amd64, newest installed 6.1.0-28-amd64"
    );
    let run = tempfile::tempdir().unwrap();
    std::fs::write(run.path().join("reboot-required"), "").unwrap();
    std::fs::write(
        run.path().join("reboot-required.pkgs"),
        "linux-image-6.1.0-28-amd64\nlibc6\nlibc6\n",
    )
    .unwrap();
    let flag = read_reboot(run.path(), &r.join("proc"), &r.join("boot")).unwrap();
    assert!(flag.required);
    assert!(
        flag.reason
            .ends_with("reboot-required (libc6, linux-image-6.1.0-28-amd64)")
    );
    let empty = tempfile::tempdir().unwrap();
    let none = read_reboot(empty.path(), &r.join("proc"), empty.path()).unwrap();
    assert!(!none.required);
    assert!(read_reboot(empty.path(), empty.path(), empty.path()).is_err());
}

// ------------------------------------------------------------------ the real collection

/// Fake tools in a temporary directory: shell scripts.
struct Tools {
    dir: tempfile::TempDir,
}

impl Tools {
    fn new() -> Tools {
        Tools {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn add(&self, name: &str, body: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

fn health_with(tools: &Tools, smartctl: &str, zpool: &str, lvs: &str) -> RealHealth {
    let fx = dir().display().to_string();
    let paths = HealthPaths {
        proc: root().join("proc"),
        sys: root().join("sys"),
        run: root().join("run"),
        boot: root().join("boot"),
        root: "/".into(),
    };
    RealHealth::new(Runner::new())
        .with_paths(paths)
        .with_tool(
            "lsblk",
            &tools.add("lsblk", &format!("cat {fx}/lsblk-disks.json")),
        )
        .with_tool("smartctl", &tools.add("smartctl", smartctl))
        .with_tool("zpool", &tools.add("zpool", zpool))
        .with_tool("lvs", &tools.add("lvs", lvs))
        .with_deadline(Source::Units, Duration::from_secs(2))
        .with_deadline(Source::Clock, Duration::from_secs(2))
}

/// smartctl answering per device from the fixtures.
fn smartctl_answers() -> String {
    let fx = dir().display().to_string();
    format!(
        r#"for dev; do :; done
case "$dev" in
  /dev/sda) cat {fx}/smartctl-ata-failing-now.json; exit 216 ;;
  /dev/nvme0n1) cat {fx}/smartctl-nvme-critical-warning.json; exit 8 ;;
  /dev/vda) cat {fx}/../smartctl-virtio.sample.json; exit 1 ;;
  *) echo "unexpected $dev" >&2; exit 2 ;;
esac"#
    )
}

#[tokio::test]
async fn the_real_collection_reads_every_source_from_fixtures() {
    let fx = dir().display().to_string();
    let tools = Tools::new();
    let zpool = format!(
        r#"echo "$* TZ=$TZ LC_ALL=$LC_ALL" >> {log}
case "$1" in
  list) cat {fx}/zpool-list.txt ;;
  status) cat {fx}/zpool-status-degraded-mirror.txt ;;
esac"#,
        log = tools.dir.path().join("log").display()
    );
    let health = health_with(
        &tools,
        &smartctl_answers(),
        &zpool,
        &format!("cat {fx}/lvs-thin-pools.json"),
    );
    let volume = tempfile::tempdir().unwrap();
    let inputs = HealthInputs {
        volumes: BTreeMap::from([
            ("0123456789abcdef".to_owned(), volume.path().to_owned()),
            (
                "fedcba9876543210".to_owned(),
                "/nonexistent/coloc/volume".into(),
            ),
        ]),
    };
    let mut report = health.report(&inputs).await;
    trim_report(&mut report);
    check_report(&report).unwrap();

    let devices: Vec<&str> = report.disks.iter().map(|d| d.device.as_str()).collect();
    assert_eq!(
        devices,
        ["/dev/sda", "/dev/nvme0n1", "/dev/vda"],
        "no zvols, loops or empty card readers"
    );
    let sda = &report.disks[0];
    assert_eq!(sda.smart, SmartVerdict::Failed as i32);
    assert_eq!(sda.size_bytes, 4_000_787_030_016);
    assert_eq!(sda.transport, "sata");
    assert_eq!(report.disks[1].critical_warning, Some(4));
    let vda = &report.disks[2];
    assert_eq!(vda.smart, SmartVerdict::Unsupported as i32);
    assert_eq!(vda.transport, "virtio");

    let tank = &report.zfs_pools[0];
    assert_eq!(
        (tank.name.as_str(), tank.state.as_str()),
        ("tank", "DEGRADED")
    );
    assert_eq!(tank.size_bytes, 107_374_182_400);
    assert_eq!(tank.allocated_bytes, 21_474_836_480);
    assert_eq!(tank.vdevs.len(), 4);
    let log = tools.log();
    assert!(log.contains("status -p tank TZ=UTC LC_ALL=C"), "{log}");

    assert_eq!(report.thin_pools.len(), 2);
    assert_eq!(report.filesystems[0].mount_path, "/");
    assert!(report.filesystems[0].size_bytes > 0 && report.filesystems[0].unknown.is_empty());
    let mounted = &report.filesystems[1];
    assert_eq!(mounted.volume_id, "0123456789abcdef");
    assert!(mounted.size_bytes > 0 && mounted.unknown.is_empty());
    let missing = &report.filesystems[2];
    assert!(
        missing.unknown.contains("/nonexistent/coloc/volume"),
        "{missing:?}"
    );

    let system = report.system.as_ref().unwrap();
    assert_eq!(system.cpu_count, 2);
    assert_eq!(system.memory_total_bytes, 24_590_788 * 1024);
    assert_eq!(system.uptime_secs, 350_735);
    assert!(system.cpu_busy_ratio > 0.0 && system.cpu_busy_ratio < 1.0);
    assert_eq!(report.temperatures.len(), 4);
    assert_eq!(report.nics.len(), 2);
    assert!(report.reboot.as_ref().unwrap().required);
    // No system bus on the build machines: units unobserved, the clock
    // from systemd-timesyncd's flag file.
    let clock = report.clock.as_ref().unwrap();
    assert!(clock.synchronised, "{clock:?}");
    let unobserved: Vec<&str> = report
        .unobserved
        .iter()
        .map(|u| u.source.as_str())
        .collect();
    assert!(
        unobserved.iter().all(|s| *s == "units"),
        "only the bus may be missing here: {:?}",
        report.unobserved
    );
    if unobserved.contains(&"units") {
        assert!(!report.units.as_ref().unwrap().unknown.is_empty());
    }
}

#[tokio::test]
async fn hung_and_garbage_tools_are_unknown_and_the_rest_is_still_read() {
    let tools = Tools::new();
    let fx = dir().display().to_string();
    // smartctl hangs on the NVMe drive only; zpool prints garbage; lvs
    // hangs.
    let smartctl = format!(
        r#"for dev; do :; done
case "$dev" in
  /dev/nvme0n1) exec sleep 600 ;;
  /dev/sda) cat {fx}/smartctl-ata-failing-now.json; exit 216 ;;
  *) echo '{{"not": "smartctl"'; exit 0 ;;
esac"#
    );
    let health = health_with(&tools, &smartctl, "echo 'total nonsense'", "exec sleep 600")
        .with_deadline(Source::Disks, Duration::from_secs(1))
        .with_deadline(Source::Lvm, Duration::from_secs(1));
    let report = health.report(&HealthInputs::default()).await;
    check_report(&report).unwrap();

    let nvme = report
        .disks
        .iter()
        .find(|d| d.device == "/dev/nvme0n1")
        .unwrap();
    assert_eq!(nvme.smart, SmartVerdict::Unknown as i32);
    assert!(nvme.unknown.contains("timed out"), "{}", nvme.unknown);
    let vda = report
        .disks
        .iter()
        .find(|d| d.device == "/dev/vda")
        .unwrap();
    assert_eq!(
        vda.smart,
        SmartVerdict::Unknown as i32,
        "garbage is never PASSED"
    );
    assert!(!vda.unknown.is_empty());
    let sda = report
        .disks
        .iter()
        .find(|d| d.device == "/dev/sda")
        .unwrap();
    assert_eq!(
        sda.smart,
        SmartVerdict::Failed as i32,
        "read despite the others"
    );

    let reason = |source: &str| {
        report
            .unobserved
            .iter()
            .find(|u| u.source == source)
            .map(|u| u.reason.clone())
            .unwrap_or_else(|| panic!("{source} not unobserved: {:?}", report.unobserved))
    };
    assert!(
        reason("zfs").contains("zpool list output"),
        "{}",
        reason("zfs")
    );
    assert!(reason("lvm").contains("timed out"), "{}", reason("lvm"));
    assert!(report.zfs_pools.is_empty() && report.thin_pools.is_empty());
    // Everything else was read.
    assert_eq!(report.system.as_ref().unwrap().cpu_count, 2);
    assert_eq!(report.temperatures.len(), 4);
    assert_eq!(report.nics.len(), 2);
    assert!(report.filesystems[0].unknown.is_empty());
}

#[tokio::test]
async fn tools_that_are_not_installed_mean_no_pools_but_unknown_disks() {
    let tools = Tools::new();
    let fx = dir().display().to_string();
    let health = RealHealth::new(Runner::new())
        .with_paths(HealthPaths {
            proc: root().join("proc"),
            sys: root().join("sys"),
            run: root().join("run"),
            boot: root().join("boot"),
            root: "/".into(),
        })
        .with_tool(
            "lsblk",
            &tools.add("lsblk", &format!("cat {fx}/lsblk-disks.json")),
        )
        .with_tool("smartctl", "/nonexistent/smartctl")
        .with_tool("zpool", "/nonexistent/zpool")
        .with_tool("lvs", "/nonexistent/lvs");
    let report = health.report(&HealthInputs::default()).await;
    assert!(
        report
            .unobserved
            .iter()
            .all(|u| u.source != "zfs" && u.source != "lvm")
    );
    assert!(report.zfs_pools.is_empty());
    assert!(report.disks.iter().all(
        |d| d.smart == SmartVerdict::Unknown as i32 && d.unknown == "smartctl is not installed"
    ));
}

#[tokio::test]
async fn maintenance_runs_the_checked_subject_only() {
    let tools = Tools::new();
    let log = tools.dir.path().join("log").display().to_string();
    let smartctl = format!(
        r#"echo "smartctl $*" >> {log}
for dev; do :; done
if [ "$dev" = /dev/sda ]; then
  echo '{{"smartctl": {{"messages": [{{"string": "Can'"'"'t start self-test without aborting current test (90% remaining)", "severity": "error"}}], "exit_status": 4}}}}'
  exit 4
fi
echo '{{"smartctl": {{"exit_status": 0}}}}'"#
    );
    let health = health_with(
        &tools,
        &smartctl,
        &format!(r#"echo "zpool $*" >> {log}"#),
        "exit 0",
    );
    assert_eq!(
        health
            .start_maintenance(MaintenanceKind::Scrub, "tank")
            .await
            .unwrap(),
        "tank"
    );
    assert_eq!(
        health
            .start_maintenance(MaintenanceKind::SmartLong, "COLOC0001")
            .await
            .unwrap(),
        "/dev/nvme0n1",
        "a serial is resolved through lsblk"
    );
    assert_eq!(
        health
            .start_maintenance(MaintenanceKind::SmartShort, "/dev/nvme0n1")
            .await
            .unwrap(),
        "/dev/nvme0n1"
    );
    let busy = health
        .start_maintenance(MaintenanceKind::SmartShort, "/dev/sda")
        .await
        .unwrap_err();
    match busy {
        HostError::SmartFailed {
            status, messages, ..
        } => {
            assert_eq!(status, 4);
            assert!(
                messages.contains("without aborting current test"),
                "{messages}"
            );
        }
        other => panic!("expected SmartFailed, got {other:?}"),
    }
    for (kind, subject) in [
        (MaintenanceKind::Scrub, "-f"),
        (MaintenanceKind::Scrub, "mirror"),
        (MaintenanceKind::SmartShort, "/dev/../etc/shadow"),
        (MaintenanceKind::SmartShort, "--scan"),
        (MaintenanceKind::Unspecified, "tank"),
    ] {
        assert!(
            health.start_maintenance(kind, subject).await.is_err(),
            "{subject:?}"
        );
    }
    let unknown_serial = health
        .start_maintenance(MaintenanceKind::SmartShort, "NOSUCHSERIAL")
        .await
        .unwrap_err();
    assert!(
        matches!(unknown_serial, HostError::Refused { .. }),
        "{unknown_serial:?}"
    );
    assert_eq!(
        tools.log(),
        "zpool scrub tank\n\
         smartctl --json -t long /dev/nvme0n1\n\
         smartctl --json -t short /dev/nvme0n1\n\
         smartctl --json -t short /dev/sda\n"
    );
}

#[tokio::test]
async fn running_self_tests_and_scrubs_are_reported_as_maintenance() {
    let tools = Tools::new();
    let fx = dir().display().to_string();
    let smartctl = format!(
        r#"for dev; do :; done
case "$dev" in
  /dev/sda) cat {fx}/smartctl-ata-self-test-running.json ;;
  *) cat {fx}/smartctl-nvme-self-test-running.json ;;
esac"#
    );
    let zpool = format!(
        r#"case "$1" in
  list) cat {fx}/zpool-list.txt ;;
  status) cat {fx}/zpool-status-scrub-running.txt ;;
esac"#
    );
    let health = health_with(&tools, &smartctl, &zpool, "exit 127");
    let report = health.report(&HealthInputs::default()).await;
    let running: Vec<(i32, &str)> = report
        .maintenance
        .iter()
        .map(|m| (m.kind, m.subject.as_str()))
        .collect();
    assert!(
        running.contains(&(MaintenanceKind::Scrub as i32, "tank")),
        "{running:?}"
    );
    assert!(running.contains(&(MaintenanceKind::SmartShort as i32, "/dev/nvme0n1")));
    assert!(
        report.maintenance.iter().all(|m| m.state == 1),
        "all RUNNING"
    );
    let scrub = report
        .maintenance
        .iter()
        .find(|m| m.subject == "tank")
        .unwrap();
    assert_eq!(scrub.started_unix, 1_796_501_407);
    assert!(
        report.unobserved.iter().any(|u| u.source == "lvm"),
        "lvs exited 127"
    );
}

#[tokio::test]
async fn a_scrub_seen_running_is_reported_finished_once() {
    let tools = Tools::new();
    let fx = dir().display().to_string();
    let which = tools.dir.path().join("which");
    std::fs::write(&which, format!("{fx}/zpool-status-scrub-running.txt")).unwrap();
    let zpool = format!(
        r#"case "$1" in
  list) cat {fx}/zpool-list.txt ;;
  status) cat "$(cat {which})" ;;
esac"#,
        which = which.display()
    );
    let health = health_with(&tools, "exit 2", &zpool, "exit 0");
    let scrubs = |r: &coloc_proto::agent::v1::HealthReport| {
        r.maintenance
            .iter()
            .filter(|m| m.kind == MaintenanceKind::Scrub as i32)
            .map(|m| (m.subject.clone(), m.state, m.finished_unix))
            .collect::<Vec<_>>()
    };
    let running = health.report(&HealthInputs::default()).await;
    assert_eq!(scrubs(&running), [("tank".to_owned(), 1, 0)]);
    // It finished (on the date zpool gives) before the next report.
    std::fs::write(&which, format!("{fx}/zpool-status-degraded-mirror.txt")).unwrap();
    let finished = health.report(&HealthInputs::default()).await;
    assert_eq!(
        scrubs(&finished),
        [(
            "tank".to_owned(),
            coloc_proto::agent::v1::MaintenanceState::Passed as i32,
            1_795_922_642
        )]
    );
    let later = health.report(&HealthInputs::default()).await;
    assert!(
        scrubs(&later).is_empty(),
        "reported once: {:?}",
        later.maintenance
    );
}

#[tokio::test]
async fn the_build_machine_is_observed_or_says_why() {
    // Whatever this machine has (no SMART, ZFS or system bus on the build
    // machines), the report comes back complete and honest.
    let health = RealHealth::new(Runner::new())
        .with_deadline(Source::Units, Duration::from_secs(2))
        .with_deadline(Source::Clock, Duration::from_secs(2));
    let mut report = health.report(&HealthInputs::default()).await;
    trim_report(&mut report);
    check_report(&report).unwrap();
    let system = report.system.as_ref().unwrap();
    assert!(
        system.cpu_count >= 1 && system.memory_total_bytes > 0,
        "{system:?}"
    );
    assert_eq!(report.filesystems[0].mount_path, "/");
    assert!(report.filesystems[0].size_bytes > 0);
    for disk in &report.disks {
        let unknown = disk.smart == SmartVerdict::Unknown as i32;
        assert_eq!(unknown, !disk.unknown.is_empty(), "{disk:?}");
    }
    for u in &report.unobserved {
        assert!(!u.reason.is_empty(), "{u:?}");
    }
    // A clock that could not be read is never called synchronised.
    let clock = report.clock.as_ref().unwrap();
    assert!(clock.unknown.is_empty() || !clock.synchronised, "{clock:?}");
}

// ------------------------------------------- recorded in the QEMU guest
//
// Written by the end-to-end test (tests/tests/e2e_health.rs, run with
// COLOC_RECORD_DIR=agent/host/tests/fixtures/health/recorded): QEMU's
// emulated NVMe drive healthy and with the critical warning raised at
// run time through QMP, and a real ZFS mirror scrubbed, then with one
// member hot-unplugged (OpenZFS 2.1.11, smartctl 7.3, Debian bookworm).

fn recorded(name: &str) -> String {
    fixture(&format!("recorded/{name}"))
}

#[test]
fn qemus_nvme_drive_recorded_healthy_passes() {
    let d = parse_disk_health(
        "/dev/nvme0n1",
        0,
        &recorded("smartctl-qemu-nvme-healthy.json"),
    );
    assert_eq!(d.smart, SmartVerdict::Passed as i32, "{d:?}");
    assert!(d.unknown.is_empty(), "{d:?}");
    assert_eq!(d.serial, "COLOCH01");
    assert_eq!(d.transport, "nvme");
    assert_eq!(d.critical_warning, Some(0));
    assert!(d.temperature_c.is_some(), "{d:?}");
}

#[test]
fn qemus_nvme_drive_recorded_with_its_critical_warning_fails() {
    // smartctl's exit status was 8 ("DISK FAILING").
    let d = parse_disk_health(
        "/dev/nvme0n1",
        8,
        &recorded("smartctl-qemu-nvme-critical-warning.json"),
    );
    assert_eq!(d.smart, SmartVerdict::Failed as i32, "{d:?}");
    assert!(d.unknown.is_empty(), "{d:?}");
    assert_eq!(d.critical_warning, Some(4), "reliability degraded");
    // QEMU reports neither a spare nor a threshold.
    assert_eq!(
        (d.available_spare, d.available_spare_threshold),
        (Some(0), Some(0))
    );
}

#[test]
fn a_real_mirror_recorded_scrubbed_then_degraded() {
    let p = parse_zpool_status(&recorded("zpool-status-qemu-scrubbed.txt")).unwrap();
    assert_eq!((p.name.as_str(), p.state.as_str()), ("tank", "ONLINE"));
    let scrub = p.scrub.unwrap();
    assert_eq!(scrub.state, ScrubState::Finished as i32);
    // Sat Dec  5 22:18:04 2026, the guest's clock in UTC.
    assert_eq!(scrub.finished_unix, 1_796_509_084);
    assert_eq!((scrub.errors, scrub.repaired_bytes), (0, 0));

    let p = parse_zpool_status(&recorded("zpool-status-qemu-degraded.txt")).unwrap();
    assert_eq!(p.state, "DEGRADED");
    let tree: Vec<(&str, u32, &str)> = p
        .vdevs
        .iter()
        .map(|v| (v.name.as_str(), v.depth, v.state.as_str()))
        .collect();
    assert_eq!(
        tree,
        [
            ("tank", 0, "DEGRADED"),
            ("mirror-0", 1, "DEGRADED"),
            ("vdc", 2, "ONLINE"),
            ("vdd", 2, "UNAVAIL"),
        ]
    );
    assert_eq!(p.scrub.unwrap().finished_unix, 1_796_509_111);
    assert_eq!(p.data_errors, 0);
}

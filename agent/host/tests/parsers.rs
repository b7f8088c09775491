//! The host layer's parsers against tool outputs kept in `tests/fixtures/`
//! (the storage backends' own recordings, in `tests/fixtures/storage/`, are
//! read by the tests next to their parsers).
//!
//! `lsblk.this-machine.json` is a real recording of
//! `lsblk -J -b -d -o NAME,MODEL,SERIAL,SIZE,TRAN,ROTA,TYPE` (util-linux
//! 2.38.1) on a build machine: the one lsblk parser reads that older
//! column set as well as the full tree the agent asks for today. The `*.sample.*` files are written by hand
//! to follow the tools' documented formats exactly (zpool list -Hp, LVM's
//! JSON report, smartctl --json 7.3, lsblk before and after util-linux
//! 2.37); they are to be replaced by recordings from the QEMU guest in the
//! image issue, where ZFS, LVM and smartctl really run.

use coloc_host::volumes::{PoolHealth, VolumeGroupInfo, ZpoolInfo, parse_vgs, parse_zpool_list};
use coloc_host::{BlockDevice, HostError, parse_smartctl};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The disks as the facts describe them: `lsblk` parsed, then each disk's
/// facts view.
fn parse_lsblk(json: &str) -> Result<Vec<BlockDevice>, HostError> {
    coloc_host::parse_lsblk(json)?
        .iter()
        .map(|d| d.block_device())
        .collect()
}

// ------------------------------------------------------------------ lsblk

#[test]
fn lsblk_recorded_on_a_build_machine_skips_zram_and_names_virtio() {
    // The build VM: a zram swap device (type "disk"!) and one virtio disk
    // with no model, serial or transport.
    let disks = parse_lsblk(&fixture("lsblk.this-machine.json")).unwrap();
    assert_eq!(
        disks,
        vec![BlockDevice {
            name: "vda".into(),
            model: None,
            serial: None,
            size_bytes: 274_877_906_944,
            transport: Some("virtio".into()),
            rotational: true,
        }]
    );
}

#[test]
fn lsblk_on_a_server_keeps_only_real_disks() {
    let disks = parse_lsblk(&fixture("lsblk-server.sample.json")).unwrap();
    let names: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
    // loop0 (type loop), sr0 (type rom) and zram0 are gone; order kept.
    assert_eq!(names, ["sda", "sdb", "sdc", "nvme0n1"]);

    let hdd = &disks[0];
    assert_eq!(hdd.model.as_deref(), Some("WDC WD40EFRX-68N32N0"));
    assert_eq!(hdd.size_bytes, 4_000_787_030_016);
    assert_eq!(hdd.transport.as_deref(), Some("sata"));
    assert!(hdd.rotational);

    let usb = &disks[2];
    assert_eq!(usb.serial, None, "null serial");
    assert_eq!(usb.transport.as_deref(), Some("usb"));

    let nvme = &disks[3];
    assert_eq!(nvme.serial.as_deref(), Some("S5GXNF0R654321A"));
    assert_eq!(nvme.transport.as_deref(), Some("nvme"));
    assert!(!nvme.rotational);
}

#[test]
fn lsblk_before_util_linux_2_37_printed_everything_as_strings() {
    let disks = parse_lsblk(&fixture("lsblk-util-linux-2.33.sample.json")).unwrap();
    let names: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["sda", "sdb", "vda"], "ram0 skipped");
    assert_eq!(
        disks[0].model.as_deref(),
        Some("Samsung SSD 860"),
        "padding trimmed"
    );
    assert_eq!(disks[0].size_bytes, 500_107_862_016);
    assert!(!disks[0].rotational);
    assert!(disks[1].rotational);
    assert_eq!(disks[2].transport.as_deref(), Some("virtio"));
}

#[test]
fn lsblk_with_no_devices_is_an_empty_list() {
    assert_eq!(parse_lsblk(r#"{"blockdevices": []}"#).unwrap(), vec![]);
}

#[test]
fn lsblk_missing_a_requested_column_is_a_parse_error_naming_the_device() {
    let no_size = r#"{"blockdevices": [
        {"name": "sda", "model": null, "serial": null, "tran": "sata", "rota": true, "type": "disk"}
    ]}"#;
    let err = parse_lsblk(no_size).unwrap_err();
    assert!(matches!(err, HostError::Parse { .. }), "{err:?}");
    assert!(
        err.to_string().contains("sda") && err.to_string().contains("size"),
        "{err}"
    );

    let no_rota = r#"{"blockdevices": [{"name": "sda", "size": 1, "type": "disk"}]}"#;
    assert!(
        parse_lsblk(no_rota)
            .unwrap_err()
            .to_string()
            .contains("rota")
    );

    let no_name = r#"{"blockdevices": [{"size": 1, "rota": false, "type": "disk"}]}"#;
    assert!(matches!(parse_lsblk(no_name), Err(HostError::Parse { .. })));
}

#[test]
fn lsblk_without_optional_columns_reads_them_as_unknown() {
    // MODEL, SERIAL and TRAN absent altogether rather than null.
    let json = r#"{"blockdevices": [{"name": "sdx", "size": 10, "rota": false, "type": "disk"}]}"#;
    let disks = parse_lsblk(json).unwrap();
    assert_eq!(disks[0].model, None);
    assert_eq!(disks[0].serial, None);
    assert_eq!(disks[0].transport, None);
}

// ------------------------------------------------------------------ zpool

#[test]
fn zpool_list_reads_every_pool_and_its_health() {
    let pools = parse_zpool_list(&fixture("zpool-list.sample.txt")).unwrap();
    assert_eq!(
        pools,
        vec![
            ZpoolInfo {
                name: "rpool".into(),
                size_bytes: 107_374_182_400,
                alloc_bytes: 21_474_836_480,
                free_bytes: 85_899_345_920,
                health: PoolHealth::Online,
            },
            ZpoolInfo {
                name: "tank".into(),
                size_bytes: 3_985_729_650_688,
                alloc_bytes: 1_099_511_627_776,
                free_bytes: 2_886_218_022_912,
                health: PoolHealth::Degraded,
            },
            // zpool prints "-" for the sizes of a pool it cannot open.
            ZpoolInfo {
                name: "backup".into(),
                size_bytes: 0,
                alloc_bytes: 0,
                free_bytes: 0,
                health: PoolHealth::Unavail,
            },
        ]
    );
}

#[test]
fn zpool_list_with_no_pools_is_empty_output() {
    assert_eq!(
        parse_zpool_list(&fixture("zpool-list-empty.sample.txt")).unwrap(),
        vec![]
    );
    assert_eq!(parse_zpool_list("no pools available\n").unwrap(), vec![]);
}

#[test]
fn zpool_list_with_a_missing_column_is_refused() {
    let err = parse_zpool_list("tank\t100\t40\t60\n").unwrap_err();
    assert!(matches!(err, HostError::Parse { .. }), "{err:?}");
    // Human-readable sizes mean -p was lost somewhere: refuse, don't guess.
    assert!(parse_zpool_list("tank\t3.62T\t1T\t2.62T\tONLINE\n").is_err());
}

// -------------------------------------------------------------------- vgs

#[test]
fn vgs_reads_sizes_in_bytes() {
    let vgs = parse_vgs(&fixture("vgs.sample.json")).unwrap();
    assert_eq!(
        vgs,
        vec![
            VolumeGroupInfo {
                name: "vg0".into(),
                size_bytes: 499_826_819_072,
                free_bytes: 107_374_182_400,
            },
            VolumeGroupInfo {
                name: "vg_data".into(),
                size_bytes: 4_000_783_007_744,
                free_bytes: 0,
            },
        ]
    );
}

#[test]
fn vgs_with_no_volume_groups_is_empty() {
    assert_eq!(
        parse_vgs(&fixture("vgs-empty.sample.json")).unwrap(),
        vec![]
    );
}

#[test]
fn vgs_with_missing_or_suffixed_sizes_is_refused() {
    let missing = r#"{"report": [{"vg": [{"vg_name": "vg0", "vg_size": "10"}]}]}"#;
    let err = parse_vgs(missing).unwrap_err();
    assert!(err.to_string().contains("vg_free"), "{err}");
    // "--nosuffix" lost: "10B" is not a byte count we trust.
    let suffixed =
        r#"{"report": [{"vg": [{"vg_name": "vg0", "vg_size": "10B", "vg_free": "0B"}]}]}"#;
    assert!(parse_vgs(suffixed).is_err());
    assert!(parse_vgs("{}").is_err());
}

// --------------------------------------------------------------- smartctl

#[test]
fn smartctl_ata_healthy_drive() {
    let report = parse_smartctl("/dev/sdb", 0, &fixture("smartctl-ata.sample.json")).unwrap();
    assert_eq!(report.device, "/dev/sdb");
    assert_eq!(report.model.as_deref(), Some("Samsung SSD 870 EVO 500GB"));
    assert_eq!(report.serial.as_deref(), Some("S62ANJ0R123456X"));
    assert!(report.passed);
    assert_eq!(report.temperature_c, Some(33));
    assert_eq!(report.power_on_hours, Some(12873));
    assert_eq!(
        report.media_errors, None,
        "ATA has no NVMe media error counter"
    );
}

#[test]
fn smartctl_nvme_drive_reports_media_errors() {
    let report = parse_smartctl("/dev/nvme0", 0, &fixture("smartctl-nvme.sample.json")).unwrap();
    assert_eq!(report.model.as_deref(), Some("QEMU NVMe Ctrl"));
    assert_eq!(report.serial.as_deref(), Some("COLOC0001"));
    assert!(report.passed);
    assert_eq!(report.temperature_c, Some(50));
    assert_eq!(report.power_on_hours, Some(0));
    assert_eq!(report.media_errors, Some(0));
}

#[test]
fn smartctl_failing_drive_is_a_report_not_an_error() {
    // Exit status 216: DISK FAILING, prefail attribute below threshold,
    // errors in the error and self-test logs. All findings, none fatal.
    let report = parse_smartctl(
        "/dev/sda",
        216,
        &fixture("smartctl-ata-failing.sample.json"),
    )
    .unwrap();
    assert!(!report.passed);
    assert_eq!(report.model.as_deref(), Some("WDC WD40EFRX-68N32N0"));
    assert_eq!(report.power_on_hours, Some(41207));
    assert_eq!(report.temperature_c, Some(41));
}

#[test]
fn smartctl_that_cannot_open_the_device_says_why() {
    let err =
        parse_smartctl("/dev/sdz", 2, &fixture("smartctl-open-failed.sample.json")).unwrap_err();
    match err {
        HostError::SmartFailed {
            device,
            status,
            messages,
        } => {
            assert_eq!(device, "/dev/sdz");
            assert_eq!(status, 2);
            assert_eq!(
                messages,
                "Smartctl open device: /dev/sdz failed: No such device"
            );
        }
        other => panic!("expected SmartFailed, got {other:?}"),
    }
}

#[test]
fn smartctl_on_a_virtio_disk_fails_with_its_messages() {
    // Virtual disks have no SMART: smartctl cannot even tell the type.
    let err = parse_smartctl("/dev/vda", 1, &fixture("smartctl-virtio.sample.json")).unwrap_err();
    let HostError::SmartFailed { messages, .. } = err else {
        panic!("expected SmartFailed, got {err:?}");
    };
    assert!(
        messages.contains("Unable to detect device type"),
        "{messages}"
    );
}

#[test]
fn smartctl_with_missing_optional_fields_leaves_them_unknown() {
    let json =
        r#"{"device": {"name": "/dev/sdc", "protocol": "ATA"}, "smart_status": {"passed": true}}"#;
    let report = parse_smartctl("/dev/sdc", 0, json).unwrap();
    assert!(report.passed);
    assert_eq!(report.model, None);
    assert_eq!(report.serial, None);
    assert_eq!(report.temperature_c, None);
    assert_eq!(report.power_on_hours, None);
    assert_eq!(report.media_errors, None);
}

#[test]
fn smartctl_nvme_with_a_critical_warning_fails_and_counts_errors() {
    let json = r#"{
        "device": {"name": "/dev/nvme1", "type": "nvme", "protocol": "NVMe"},
        "model_name": "Worn NVMe",
        "serial_number": "W1",
        "smart_status": {"passed": false, "nvme": {"value": 4}},
        "nvme_smart_health_information_log": {"critical_warning": 4, "media_errors": 37},
        "temperature": {"current": 71},
        "power_on_time": {"hours": 40000}
    }"#;
    let report = parse_smartctl("/dev/nvme1", 8, json).unwrap();
    assert!(!report.passed);
    assert_eq!(report.media_errors, Some(37));
    assert_eq!(report.temperature_c, Some(71));
}

//! The real host layer on the machine running the tests: what it can check
//! without ZFS, LVM, SMART or systemd (all of which are exercised in the
//! QEMU guests). Where a tool may or may not be installed, the test checks
//! the answer that matches what is installed, so it holds on both kinds of
//! machine.

use coloc_host::runner::Runner;
use coloc_host::{Host, HostError, list_disks};
use coloc_proto::agent::v1::PoolKind;

async fn installed(tool: &str) -> bool {
    Runner::new().resolve(tool).await.is_ok()
}

fn real_host() -> Host {
    Host::real(
        Runner::new(),
        std::env::temp_dir().join("coloc-test-keys"),
        std::env::temp_dir().join("coloc-test-firewall.nft"),
    )
}

#[tokio::test]
async fn unit_files_come_from_dpkgs_file_lists() {
    let host = real_host();
    // dpkg is installed on every Debian; whatever units it ships (bookworm's
    // has a backup timer) are in systemd's system unit directories.
    let units = host
        .packages
        .unit_files("dpkg")
        .await
        .expect("dpkg-query -L dpkg");
    for unit in &units {
        assert!(unit.as_str().starts_with("dpkg"), "{unit}");
    }
    let err = host
        .packages
        .unit_files("coloc-no-such-package")
        .await
        .expect_err("not installed");
    assert!(matches!(err, HostError::Refused { .. }), "{err:?}");
}

#[tokio::test]
async fn disks_come_from_lsblk_without_pseudo_devices() {
    let host = real_host();
    // The listing both the facts and the disk prober read.
    let disks = list_disks(&Runner::new())
        .await
        .expect("lsblk works on any Debian");
    for disk in &disks {
        assert!(
            !["loop", "ram", "zram", "sr"]
                .iter()
                .any(|p| disk.name.starts_with(p)),
            "{disk:?}"
        );
        assert_eq!(disk.kind, "disk", "{disk:?}");
    }
    // Facts list the same disks.
    let facts = host.health.facts().await.expect("facts");
    let names: Vec<&str> = facts.disks.iter().map(|d| d.name.as_str()).collect();
    let expected: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn a_missing_zpool_is_tool_missing_not_an_empty_list() {
    let host = real_host();
    let zfs = host.volumes.backend(PoolKind::Zfs).expect("a ZFS backend");
    let result = zfs.pools().await;
    if installed("zpool").await {
        // Installed: either pools, or a command error (module not loaded).
        assert!(!matches!(result, Err(HostError::ToolMissing { .. })));
    } else {
        match result {
            Err(HostError::ToolMissing { tool }) => assert_eq!(tool, "zpool"),
            other => panic!("expected ToolMissing, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_missing_vgs_is_tool_missing() {
    let host = real_host();
    let lvm = host
        .volumes
        .backend(PoolKind::LvmThin)
        .expect("an LVM backend");
    let result = lvm.pools().await;
    if !installed("vgs").await {
        assert!(result.unwrap_err().is_tool_missing());
    } else {
        assert!(!matches!(result, Err(HostError::ToolMissing { .. })));
    }
}

#[tokio::test]
async fn smart_checks_the_device_first_and_the_tool_second() {
    let host = real_host();
    assert!(matches!(
        host.health.smart("sda").await,
        Err(HostError::InvalidDevice { .. })
    ));
    if !installed("smartctl").await {
        assert!(
            host.health
                .smart("/dev/sda")
                .await
                .unwrap_err()
                .is_tool_missing()
        );
    }
}

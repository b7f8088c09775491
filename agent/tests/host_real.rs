//! The real host layer on the machine running the tests: what it can check
//! without ZFS, LVM, SMART or systemd (all of which are exercised in the
//! QEMU guests). Where a tool may or may not be installed, the test checks
//! the answer that matches what is installed, so it holds on both kinds of
//! machine.

use coloc_agent::host::{Host, HostError};
use coloc_agent::runner::Runner;

async fn installed(tool: &str) -> bool {
    Runner::new().resolve(tool).await.is_ok()
}

#[tokio::test]
async fn disks_come_from_lsblk_without_pseudo_devices() {
    let host = Host::real(Runner::new(), std::env::temp_dir().join("coloc-test-keys"));
    let disks = host
        .storage
        .disks()
        .await
        .expect("lsblk works on any Debian");
    for disk in &disks {
        assert!(
            !["loop", "ram", "zram"]
                .iter()
                .any(|p| disk.name.starts_with(p)),
            "{disk:?}"
        );
    }
    // Facts list the same disks.
    let facts = host.health.facts().await.expect("facts");
    let names: Vec<&str> = facts.disks.iter().map(|d| d.name.as_str()).collect();
    let expected: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn a_missing_zpool_is_tool_missing_not_an_empty_list() {
    let host = Host::real(Runner::new(), std::env::temp_dir().join("coloc-test-keys"));
    let result = host.storage.zpools().await;
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
    let host = Host::real(Runner::new(), std::env::temp_dir().join("coloc-test-keys"));
    let result = host.storage.volume_groups().await;
    if !installed("vgs").await {
        assert!(result.unwrap_err().is_tool_missing());
    } else {
        assert!(!matches!(result, Err(HostError::ToolMissing { .. })));
    }
}

#[tokio::test]
async fn smart_checks_the_device_first_and_the_tool_second() {
    let host = Host::real(Runner::new(), std::env::temp_dir().join("coloc-test-keys"));
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

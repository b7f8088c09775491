//! End to end, as a sysadmin provisions a server: the real node image boots
//! under UEFI in QEMU (TCG here), reads its seed, enrolls with a colocd on
//! the host, and reports facts that match the virtual hardware.
//!
//! Slow (a VM boot under TCG): marked `#[ignore]` so `cargo test` stays
//! fast; `make test` builds the image and runs these with `--ignored`.
//! Needs COLOC_TEST_IMAGE (the image) and COLOC_IMAGE_BIN (coloc-image,
//! for seeds).

use std::time::Duration;

use coloc_controller::config::ControllerConfig;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use coloc_vm::{Boot, DiskKind, DiskSpec, Vm, VmSpec};

mod support;
use support::{env_path, seed, ssh_key};

/// Generous: first boot under TCG grows the disk, makes SSH keys, enrolls.
const BOOT: Duration = Duration::from_secs(600);

#[tokio::test]
#[ignore = "boots a VM; run by `make test` with --ignored"]
async fn a_node_boots_under_uefi_enrolls_and_reports_its_hardware() -> Result<()> {
    init_test_logging();
    let image = env_path("COLOC_TEST_IMAGE");
    let ctl = TestController::start_with(ControllerConfig {
        heartbeat_interval_secs: 5,
        unreachable_after_secs: 30,
        ..fast_config()
    })
    .await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 3600).await?;
    let work = tempfile::tempdir()?;
    let (key, public) = ssh_key(work.path())?;
    let seed = seed(work.path(), &ctl, "n1", &token, &public)?;

    let vm = Vm::start(
        VmSpec {
            name: "n1".into(),
            image,
            boot: Boot::Uefi,
            cpus: 2,
            memory_mib: 2048,
            disks: vec![
                DiskSpec {
                    id: "data0".into(),
                    size_mib: 1024,
                    kind: DiskKind::Nvme {
                        serial: "COLOC0001".into(),
                    },
                },
                DiskSpec {
                    id: "data1".into(),
                    size_mib: 512,
                    kind: DiskKind::Virtio,
                },
            ],
            seed: Some(seed),
            forwards: vec![],
            ssh_key: Some(key),
            // A real server's disk is larger than the image.
            disk_size_mib: Some(4096),
        },
        work.path(),
    )
    .await?;

    let result = async {
        // The sysadmin's view: the node shows up ready in the controller.
        let node = wait_for("n1 ready in colocd", BOOT, || {
            let mut admin = admin.clone();
            async move {
                let n = admin
                    .nodes
                    .get_node(pb::GetNodeRequest { name: "n1".into() })
                    .await
                    .ok()?
                    .into_inner();
                (n.status == pb::NodeStatus::Ready as i32 && n.applied_generation >= 1).then_some(n)
            }
        })
        .await?;
        let facts = node.facts.context("facts reported")?;
        assert_eq!(facts.hostname, "n1");
        assert_eq!(facts.cpu_count, 2, "{facts:?}");
        // The guest's kernel keeps some memory for itself.
        let mib = facts.memory_bytes / (1024 * 1024);
        assert!((1500..=2048).contains(&mib), "memory {mib} MiB");
        let nvme = facts
            .disks
            .iter()
            .find(|d| d.serial == "COLOC0001")
            .with_context(|| format!("NVMe disk with serial COLOC0001 in {:?}", facts.disks))?;
        assert_eq!(nvme.size_bytes, 1024 * 1024 * 1024);
        assert!(nvme.name.starts_with("nvme"), "{nvme:?}");
        assert!(
            facts
                .disks
                .iter()
                .any(|d| d.size_bytes == 512 * 1024 * 1024),
            "the 512 MiB virtio disk in {:?}",
            facts.disks
        );
        assert!(facts.os_name.contains("Debian"), "{}", facts.os_name);
        assert!(!facts.kernel_version.is_empty());

        // Inside the node, what a sysadmin would check.
        vm.wait_for_unit("coloc-agent.service", BOOT).await?;
        let hostname = vm.succeed(&["hostname"]).await?;
        assert_eq!(hostname.trim(), "n1");
        let status = vm.succeed(&["coloc-agent", "status", "--json"]).await?;
        let status: serde_json::Value = serde_json::from_str(&status)?;
        assert_eq!(status["connected"], true, "{status}");
        // A clean boot: no unit failed, and systemd had no ordering cycle to
        // break (it would silently drop a unit to do so).
        let failed = vm
            .succeed(&["systemctl", "--failed", "--plain", "--no-legend"])
            .await?;
        assert!(failed.trim().is_empty(), "failed units:\n{failed}");
        let journal = vm
            .succeed(&["journalctl", "-b", "--no-pager", "-o", "cat"])
            .await?;
        assert!(
            !journal.to_lowercase().contains("ordering cycle"),
            "ordering cycle at boot"
        );
        // The generic image got its own identity on first boot.
        let machine_id = vm.succeed(&["cat", "/etc/machine-id"]).await?;
        assert_eq!(machine_id.trim().len(), 32, "{machine_id:?}");
        vm.succeed(&["test", "-s", "/etc/ssh/ssh_host_ed25519_key"])
            .await?;
        // No compiler or kernel headers were left in the image; ZFS works.
        let (code, _) = vm.execute(&["sh", "-c", "command -v cc gcc"]).await?;
        assert_ne!(code, 0, "a compiler was left in the image");
        vm.succeed(&["modprobe", "zfs"]).await?;
        vm.succeed(&["zpool", "list"]).await?;
        // The root filesystem grew to the disk.
        let root = vm.succeed(&["findmnt", "-bno", "SIZE", "/"]).await?;
        let root: u64 = root.trim().parse()?;
        assert!(root > 2 * 1024 * 1024 * 1024, "root is {root} bytes");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = &result {
        eprintln!(
            "{e:#}\n--- diagnostics ---\n{}",
            vm.dump_diagnostics().await
        );
    }
    result
}

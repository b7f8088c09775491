//! End to end, as a sysadmin provisions a server: the real node image boots
//! under UEFI in QEMU (TCG here), reads its seed, enrolls with a colocd on
//! the host, and reports facts that match the virtual hardware.
//!
//! Slow (a VM boot under TCG): marked `#[ignore]` so `cargo test` stays
//! fast; `make test` builds the image and runs these with `--ignored`.
//! Needs COLOC_TEST_IMAGE (the image) and COLOC_IMAGE_BIN (coloc-image,
//! for seeds).

use std::time::Duration;

use coloc_agent::logging::ids;
use coloc_controller::config::ControllerConfig;
use coloc_proto::controller::v1 as pb;
use coloc_tests::lab::{Lab, NodeSpec, diagnosed, nvme, virtio, vm_config};
use coloc_tests::*;
use coloc_vm::DiskSpec;

/// Generous: first boot under TCG grows the disk, makes SSH keys, enrolls.
const BOOT: Duration = Duration::from_secs(600);

#[tokio::test]
#[ignore = "boots a VM; run by `make test` with --ignored"]
async fn a_node_boots_under_uefi_enrolls_and_reports_its_hardware() -> Result<()> {
    init_test_logging();
    let mut lab = Lab::start(ControllerConfig {
        unreachable_after_secs: 30,
        ..vm_config()
    })
    .await?;
    let mut n1 = NodeSpec::new("n1");
    n1.disks = vec![
        DiskSpec {
            id: "data0".into(),
            ..nvme("COLOC0001", 1024)
        },
        virtio("data1", 512),
    ];
    let vm = lab.boot(&n1).await?;

    let result = async {
        // The sysadmin's view: the node shows up ready in the controller.
        let node = wait_node(&lab.admin, "n1", "n1 ready in colocd", BOOT, |n| {
            n.status == pb::NodeStatus::Ready as i32 && n.applied_generation >= 1
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
        // The agent's journal as a sysadmin filters it: the generation it
        // applied and the event's constant MESSAGE_ID are journal fields,
        // and the periodic passes that change nothing do not repeat it.
        let applied_id = format!("MESSAGE_ID={}", ids::CONFIG_APPLIED);
        let generation = format!("GENERATION={}", node.applied_generation);
        let applied = vm
            .succeed(&[
                "journalctl",
                "-u",
                "coloc-agent",
                "--no-pager",
                "-o",
                "json",
                &applied_id,
                &generation,
            ])
            .await?;
        let entries: Vec<serde_json::Value> = applied
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        assert!(!entries.is_empty(), "no applied entry for {generation}");
        for entry in &entries {
            assert_eq!(entry["NODE"], "n1", "{entry}");
            assert_eq!(entry["SYSLOG_IDENTIFIER"], "coloc-agent", "{entry}");
            assert!(
                entry["MESSAGE"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("desired configuration applied")),
                "{entry}"
            );
        }
        // A periodic pass (every 30 s) that changes nothing does not log
        // the generation as applied again.
        let applied_lines = || async {
            vm.succeed(&[
                "journalctl",
                "-u",
                "coloc-agent",
                "--no-pager",
                "-o",
                "cat",
                &applied_id,
                &generation,
            ])
            .await
            .map(|s| s.lines().count())
        };
        let passes = || async {
            let status = vm
                .succeed(&["coloc-agent", "status", "--json"])
                .await
                .ok()?;
            serde_json::from_str::<serde_json::Value>(&status).ok()?["reconcile_passes"].as_u64()
        };
        let before = applied_lines().await?;
        let passes_before = passes().await.context("reconcile_passes in the status")?;
        wait_for(
            "a periodic pass on the node",
            Duration::from_secs(90),
            || async { (passes().await? > passes_before).then_some(()) },
        )
        .await?;
        assert_eq!(
            applied_lines().await?,
            before,
            "a quiet pass logged the generation as applied again"
        );
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
    diagnosed(&vm, result).await
}

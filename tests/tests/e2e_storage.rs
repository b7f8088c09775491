//! Volumes end to end, on real OpenZFS and LVM in the node image booted in
//! QEMU (TCG), driven through colocd's API as a sysadmin and an
//! association's operator would:
//!
//! - pools are created on blank virtual disks, while a pool declared on a
//!   disk holding a filesystem is refused and the disk left intact;
//! - volumes of both backends (plain and encrypted) are created, written
//!   as the tenant's uid, grown online, snapshotted and rolled back,
//!   deleted (retained read-only) and restored, and finally purged after
//!   the grace period, with the destruction in the audit log;
//! - writing past a volume's size fails inside the guest;
//! - an object carrying an unknown coloc id is reported as an orphan and
//!   left alone;
//! - the agent killed with SIGKILL in the middle of creating volumes
//!   converges after its restart, with no duplicate;
//! - after a reboot every active volume is mounted again, the encrypted
//!   ones included (keys on the node's root disk, docs/STORAGE.md), with
//!   their data.
//!
//! Slow: `#[ignore]`, run by `make test` (`make test-vm`) with --ignored.

use std::time::Duration;

use coloc_controller::config::ControllerConfig;
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::lab::{Lab, NodeSpec, diagnosed, nvme, virtio, vm_config};
use coloc_tests::*;
use coloc_vm::Vm;

const BOOT: Duration = Duration::from_secs(600);
/// One storage change reaching the disks: a push, a pass (several tools
/// under TCG), an observed report.
const CONVERGE: Duration = Duration::from_secs(240);
const MIB: u64 = 1024 * 1024;

/// Waits until the agent reports `name` in `phase` with `check` true.
async fn wait_observed(
    api: &Api,
    name: &str,
    phase: apb::VolumePhase,
    what: &str,
    check: impl Fn(&pb::Volume, &apb::VolumeStatus) -> bool,
) -> Result<pb::Volume> {
    wait_volume(api, name, what, CONVERGE, |v| {
        v.observed
            .as_ref()
            .is_some_and(|o| o.phase == phase as i32 && check(v, o))
    })
    .await
}

async fn ready(api: &Api, name: &str) -> Result<pb::Volume> {
    wait_observed(api, name, apb::VolumePhase::Ready, "ready", |_, o| {
        o.mounted && !o.read_only
    })
    .await
}

/// Creates a volume of `tenant` on n1.
async fn create(
    api: &mut Api,
    tenant: &str,
    name: &str,
    pool: &str,
    size_bytes: u64,
    encrypted: bool,
) -> Result<pb::Volume> {
    let volume = NewVolume {
        tenant,
        name,
        node: "n1",
        pool,
        size_bytes,
        encrypted,
    };
    create_volume(api, volume).await
}

/// Runs `sh -c script` in the guest as the tenant's uid/gid.
async fn as_tenant(vm: &Vm, uid: u32, script: &str) -> Result<(i32, String)> {
    vm.execute(&[
        "setpriv",
        &format!("--reuid={uid}"),
        &format!("--regid={uid}"),
        "--clear-groups",
        "sh",
        "-c",
        script,
    ])
    .await
}

#[tokio::test]
#[ignore = "boots a VM; run by `make test` with --ignored"]
async fn volumes_live_on_real_zfs_and_lvm_and_nothing_is_lost_by_accident() -> Result<()> {
    init_test_logging();
    let mut lab = Lab::start(ControllerConfig {
        unreachable_after_secs: 60,
        ..vm_config()
    })
    .await?;
    let mut n1 = NodeSpec::new("n1");
    n1.disks = vec![
        nvme("COLOCZ01", 1024),
        virtio("COLOCL01", 1024),
        virtio("COLOCFULL", 256),
    ];
    let mut vm = lab.boot(&n1).await?;
    let (ctl, mut admin) = (&lab.ctl, lab.admin.clone());

    let result = async {
        lab.wait_ready("n1", BOOT).await?;
        // Ready in colocd comes before multi-user.target: the node may
        // still be starting sshd, slowly under TCG.
        vm.wait_for_ssh(BOOT).await?;

        // A disk that already holds someone's data.
        vm.succeed(&[
            "sh",
            "-c",
            "mkfs.ext4 -q -L precious /dev/disk/by-id/virtio-COLOCFULL && \
             mkdir -p /mnt/p && mount /dev/disk/by-id/virtio-COLOCFULL /mnt/p && \
             echo keep-me > /mnt/p/data && umount /mnt/p",
        ])
        .await?;

        // ---- pools
        for (name, kind, serial) in [
            ("tank", apb::PoolKind::Zfs, "COLOCZ01"),
            ("vgdata", apb::PoolKind::LvmThin, "COLOCL01"),
            ("taken", apb::PoolKind::Zfs, "COLOCFULL"),
        ] {
            create_pool(&mut admin, "n1", name, kind, &format!("serial:{serial}")).await?;
        }
        let pools = wait_for("pools reported", CONVERGE, || {
            let mut admin = admin.clone();
            async move {
                let pools = pools(&mut admin, "n1").await.ok()?;
                let seen = |n: &str| {
                    pools
                        .iter()
                        .find(|p| p.name == n)
                        .and_then(|p| p.observed.clone())
                };
                let (tank, vg, taken) = (seen("tank")?, seen("vgdata")?, seen("taken")?);
                (tank.present && vg.present && !taken.refused_disks.is_empty()).then_some(pools)
            }
        })
        .await?;
        let taken = pools.iter().find(|p| p.name == "taken").unwrap();
        let taken = taken.observed.as_ref().unwrap();
        assert!(!taken.present, "{taken:?}");
        assert!(taken.refused_disks[0].contains("COLOCFULL"), "{taken:?}");
        assert!(taken.error.contains("force"), "{taken:?}");
        // The refused disk still holds its filesystem and its file.
        let kept = vm
            .succeed(&[
                "sh",
                "-c",
                "mount -o ro /dev/disk/by-id/virtio-COLOCFULL /mnt/p && cat /mnt/p/data; umount /mnt/p",
            ])
            .await?;
        assert_eq!(kept.trim(), "keep-me");
        let zpools = vm.succeed(&["zpool", "list", "-H", "-o", "name"]).await?;
        assert_eq!(zpools.trim(), "tank", "only tank was created");

        // ---- a participatory association and its operator
        create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
        let op_token = create_user(&mut admin, "olga", "asso-a", pb::Role::Operator).await?;
        admin
            .users
            .grant_node(pb::GrantNodeRequest {
                user: "olga".into(),
                node: "n1".into(),
            })
            .await?;
        let mut olga = ctl.api(&op_token).await?;
        let tenant = tenant(&mut admin, "asso-a").await?;
        let uid = tenant.posix_id;
        assert!(uid >= 200_000, "{tenant:?}");

        // ---- volumes of both backends, plain and encrypted
        create(&mut olga, "asso-a", "data", "tank", 128 * MIB, false).await?;
        create(&mut olga, "asso-a", "secret", "tank", 128 * MIB, true).await?;
        create(&mut olga, "asso-a", "files", "vgdata", 128 * MIB, false).await?;
        create(&mut olga, "asso-a", "vault", "vgdata", 128 * MIB, true).await?;
        for name in ["data", "secret", "files", "vault"] {
            let v = ready(&olga, &format!("asso-a/{name}")).await?;
            let path = format!("/srv/tenants/asso-a/{name}");
            assert_eq!(v.mount_path, path);
            let owner = vm.succeed(&["stat", "-c", "%u:%g:%a", &path]).await?;
            assert_eq!(owner.trim(), format!("{uid}:{uid}:770"), "{name}");
            let (code, out) = as_tenant(
                &vm,
                uid,
                &format!("echo v1 > {path}/note && cat {path}/note"),
            )
            .await?;
            assert_eq!((code, out.trim()), (0, "v1"), "{name}");
        }
        let enc = vm
            .succeed(&["zfs", "get", "-H", "-o", "value", "encryption", "tank/coloc"])
            .await?;
        assert_eq!(enc.trim(), "off", "the parent dataset is not encrypted");
        let secret = volume(&mut olga, "asso-a/secret").await?;
        let ds = format!("tank/coloc/{}", secret.id);
        let enc = vm
            .succeed(&["zfs", "get", "-H", "-o", "value", "encryption,coloc:volume-id", &ds])
            .await?;
        assert_eq!(
            enc.lines().collect::<Vec<_>>(),
            ["aes-256-gcm", secret.id.as_str()]
        );
        let vault = volume(&mut olga, "asso-a/vault").await?;
        vm.succeed(&[
            "cryptsetup",
            "isLuks",
            &format!("/dev/vgdata/coloc-{}", vault.id),
        ])
        .await?;

        // ---- writing past the size fails inside the guest
        for name in ["data", "files"] {
            let (code, out) = as_tenant(
                &vm,
                uid,
                &format!(
                    "dd if=/dev/urandom of=/srv/tenants/asso-a/{name}/big bs=1M count=200 2>&1"
                ),
            )
            .await?;
            assert_ne!(code, 0, "{name}: 200 MiB written into 128 MiB: {out}");
            assert!(
                out.contains("quota") || out.contains("No space left"),
                "{name}: {out}"
            );
            as_tenant(&vm, uid, &format!("rm -f /srv/tenants/asso-a/{name}/big")).await?;
        }

        // ---- grow online
        for name in ["data", "files", "vault"] {
            olga.storage
                .resize_volume(pb::ResizeVolumeRequest {
                    volume: format!("asso-a/{name}"),
                    size_bytes: 256 * MIB,
                    force: false,
                })
                .await?;
        }
        for name in ["data", "files", "vault"] {
            wait_observed(
                &olga,
                &format!("asso-a/{name}"),
                apb::VolumePhase::Ready,
                "grown to 256 MiB",
                |_, o| o.size_bytes == 256 * MIB && o.mounted,
            )
            .await?;
            let size = vm
                .succeed(&["findmnt", "-bno", "SIZE", &format!("/srv/tenants/asso-a/{name}")])
                .await?;
            let size: u64 = size.trim().parse()?;
            assert!(size > 200 * MIB, "{name}: the filesystem grew: {size}");
        }
        // Shrinking an ext4 volume is refused, and changes nothing.
        let err = olga
            .storage
            .resize_volume(pb::ResizeVolumeRequest {
                volume: "asso-a/files".into(),
                size_bytes: 64 * MIB,
                force: true,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");

        // ---- snapshot, change, roll back (both backends)
        for name in ["data", "files"] {
            let v = format!("asso-a/{name}");
            olga.storage
                .create_snapshot(pb::SnapshotRequest {
                    volume: v.clone(),
                    snapshot: "before".into(),
                })
                .await?;
            wait_observed(&olga, &v, apb::VolumePhase::Ready, "snapshot taken", |_, o| {
                o.snapshots.iter().any(|s| s.name == "before")
            })
            .await?;
            as_tenant(&vm, uid, &format!("echo v2 > /srv/tenants/asso-a/{name}/note")).await?;
            let err = olga
                .storage
                .rollback_volume(pb::RollbackVolumeRequest {
                    volume: v.clone(),
                    snapshot: "before".into(),
                    confirm: "asso-a/other".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
            let note = vm
                .succeed(&["cat", &format!("/srv/tenants/asso-a/{name}/note")])
                .await?;
            assert_eq!(note.trim(), "v2", "a refused rollback changed nothing");
            olga.storage
                .rollback_volume(pb::RollbackVolumeRequest {
                    volume: v.clone(),
                    snapshot: "before".into(),
                    confirm: v.clone(),
                })
                .await?;
            let note = vm
                .succeed(&["cat", &format!("/srv/tenants/asso-a/{name}/note")])
                .await?;
            assert_eq!(note.trim(), "v1", "{name} rolled back");
            let v = ready(&olga, &v).await?;
            assert!(
                v.observed.unwrap().snapshots.iter().any(|s| s.name == "before"),
                "the snapshot is kept"
            );
        }

        // ---- an orphan: a dataset with a coloc id nobody declared
        vm.succeed(&[
            "zfs",
            "create",
            "-o",
            "coloc:volume-id=00000000000000ff",
            "-o",
            "canmount=off",
            "tank/coloc/00000000000000ff",
        ])
        .await?;

        // ---- delete keeps a read-only copy; restore brings it back
        let deleted = olga
            .storage
            .delete_volume(pb::VolumeRef {
                volume: "asso-a/files".into(),
            })
            .await?
            .into_inner();
        assert_eq!(deleted.lifecycle, pb::VolumeLifecycle::Retained as i32);
        assert!(deleted.purge_after_unix >= ctl.now() + 29 * 86_400, "{deleted:?}");
        wait_observed(
            &olga,
            "asso-a/files",
            apb::VolumePhase::Retained,
            "retained",
            |_, o| !o.mounted && o.read_only,
        )
        .await?;
        let (code, _) = vm
            .execute(&["mountpoint", "-q", "/srv/tenants/asso-a/files"])
            .await?;
        assert_ne!(code, 0, "a deleted volume is unmounted");
        olga.storage
            .restore_volume(pb::VolumeRef {
                volume: "asso-a/files".into(),
            })
            .await?;
        ready(&olga, "asso-a/files").await?;
        let note = vm.succeed(&["cat", "/srv/tenants/asso-a/files/note"]).await?;
        assert_eq!(note.trim(), "v1", "restored with its data");

        let pool = wait_for("orphan reported", CONVERGE, || {
            let mut admin = admin.clone();
            async move {
                coloc_tests::pools(&mut admin, "n1")
                    .await
                    .ok()?
                    .into_iter()
                    .find(|p| p.name == "tank" && !p.orphans.is_empty())
            }
        })
        .await?;
        assert_eq!(pool.orphans[0].volume_id, "00000000000000ff");

        // ---- SIGKILL in the middle of creating volumes
        for name in ["k1", "k2", "k3"] {
            create(&mut olga, "asso-a", name, "tank", 64 * MIB, name == "k2").await?;
        }
        create(&mut olga, "asso-a", "k4", "vgdata", 64 * MIB, true).await?;
        // tank/coloc, data, secret and the orphan are 4 lines: kill the
        // agent as soon as the first new dataset shows up.
        vm.wait_until_succeeds(
            &["sh", "-c", "zfs list -H -o name -r tank/coloc | grep -c . | grep -qv '^[0-4]$'"],
            CONVERGE,
        )
        .await?;
        vm.succeed(&["systemctl", "kill", "-s", "KILL", "coloc-agent.service"])
            .await?;
        for name in ["k1", "k2", "k3", "k4"] {
            ready(&olga, &format!("asso-a/{name}")).await?;
        }
        let ids = vm
            .succeed(&["zfs", "list", "-H", "-o", "coloc:volume-id", "-r", "tank/coloc"])
            .await?;
        let mut ids: Vec<&str> = ids.lines().filter(|l| *l != "-").collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "no duplicate datasets");
        // data, secret, k1, k2, k3 and the orphan.
        assert_eq!(n, 6, "{ids:?}");
        let lvs = vm
            .succeed(&["lvs", "--noheadings", "-o", "lv_name", "-S", "lv_name=~^coloc-[0-9a-f]+$", "vgdata"])
            .await?;
        assert_eq!(lvs.lines().count(), 3, "files, vault, k4: {lvs}");

        // ---- reboot: everything mounted again, encrypted ones included
        vm.shutdown(Duration::from_secs(120)).await?;
        vm.restart().await?;
        for name in ["data", "secret", "files", "vault", "k2", "k4"] {
            vm.wait_until_succeeds(
                &["mountpoint", "-q", &format!("/srv/tenants/asso-a/{name}")],
                BOOT,
            )
            .await?;
        }
        for name in ["data", "secret", "files", "vault"] {
            let note = vm
                .succeed(&["cat", &format!("/srv/tenants/asso-a/{name}/note")])
                .await?;
            assert_eq!(note.trim(), "v1", "{name} after reboot");
        }

        // ---- past the grace period the volume is destroyed, and audited
        admin
            .storage
            .set_tenant_storage(pb::SetTenantStorageRequest {
                name: "asso-a".into(),
                storage_quota_bytes: None,
                volume_grace_days: Some(1),
            })
            .await?;
        olga.storage
            .delete_volume(pb::VolumeRef {
                volume: "asso-a/vault".into(),
            })
            .await?;
        ctl.clock.advance_secs(2 * 86_400);
        wait_volume(&admin, &vault.id, "destroyed", CONVERGE, |v| {
            v.lifecycle == pb::VolumeLifecycle::Destroyed as i32
        })
        .await?;
        let (code, _) = vm
            .execute(&["lvs", &format!("vgdata/coloc-{}", vault.id)])
            .await?;
        assert_ne!(code, 0, "the LV is gone");
        let (code, _) = vm
            .execute(&["test", "-e", &format!("/var/lib/coloc/keys/{}.key", vault.id)])
            .await?;
        assert_ne!(code, 0, "and so is its key");
        let audit = admin
            .audit
            .list_audit(pb::ListAuditRequest {
                tenant: "asso-a".into(),
                limit: 1000,
                ..Default::default()
            })
            .await?
            .into_inner()
            .entries;
        assert!(
            audit
                .iter()
                .any(|e| e.action == "volume.destroy"
                    && (e.target.contains(&vault.id) || e.target.contains("vault"))),
            "volume.destroy in the audit log: {audit:#?}"
        );
        // The orphan was never touched.
        vm.succeed(&["zfs", "list", "tank/coloc/00000000000000ff"])
            .await?;

        // ---- a disk vanishes: its volumes report the error, the others
        // still converge (a resize on ZFS goes through meanwhile).
        vm.hot_unplug("COLOCL01").await?;
        olga.storage
            .resize_volume(pb::ResizeVolumeRequest {
                volume: "asso-a/k1".into(),
                size_bytes: 128 * MIB,
                force: false,
            })
            .await?;
        let files = wait_observed(
            &olga,
            "asso-a/files",
            apb::VolumePhase::Error,
            "in error after its disk vanished",
            |_, o| !o.error.is_empty(),
        )
        .await?;
        eprintln!("files after its disk vanished: {:?}", files.observed);
        wait_observed(
            &olga,
            "asso-a/k1",
            apb::VolumePhase::Ready,
            "grown while the other pool is gone",
            |_, o| o.size_bytes == 128 * MIB,
        )
        .await?;
        let data = volume(&mut olga, "asso-a/data").await?;
        assert_eq!(
            data.observed.map(|o| o.phase),
            Some(apb::VolumePhase::Ready as i32)
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    diagnosed(&vm, result).await
}

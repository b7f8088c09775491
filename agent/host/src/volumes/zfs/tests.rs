//! The ZFS backend's argument builders, plans and refusals, and its whole
//! life on real ZFS (ignored: destructive, VM only).

use std::path::{Path, PathBuf};

use coloc_proto::agent::v1::{PoolKind, PoolLayout};
use coloc_proto::domain::TenantName;
use coloc_proto::storage::{PoolName, SnapshotName, VolumeId, VolumeName};

use super::*;
use crate::volumes::{SnapshotObject, VolumeBackend, VolumeObject, VolumeParams};

const MOUNTED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/storage/zfs-list-volumes-mounted.txt"
));
const LOCKED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/storage/zfs-list-volumes-locked.txt"
));
const ZPOOL_MIRROR: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/storage/zpool-list-mirror.txt"
));

const MIB: u64 = 1024 * 1024;

fn params(id: &str, encrypted: bool, reservation: u64) -> VolumeParams {
    VolumeParams {
        id: VolumeId::new(id).unwrap(),
        tenant: TenantName::new("asso-un").unwrap(),
        name: VolumeName::new("data").unwrap(),
        pool: PoolName::new("tank").unwrap(),
        size_bytes: 256 * MIB,
        reservation_bytes: reservation,
        encrypted,
        mount_path: "/srv/tenants/asso-un/data".to_owned(),
        owner_uid: 200_000,
        owner_gid: 200_000,
    }
}

fn snap(name: &str) -> SnapshotObject {
    SnapshotObject {
        name: name.to_owned(),
        created_unix: 1,
        used_bytes: 0,
    }
}

#[test]
fn pools_recorded() {
    let pools: Vec<PoolObservation> = parse_zpool_list(ZPOOL_MIRROR)
        .unwrap()
        .into_iter()
        .map(observe_pool)
        .collect();
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0].name, "tank");
    assert_eq!(pools[0].kind, PoolKind::Zfs);
    assert_eq!(pools[0].health, "ONLINE");
    assert!(pools[0].size_bytes > pools[0].free_bytes && pools[0].free_bytes > 0);
    assert_eq!(parse_zpool_list("").unwrap(), vec![]);
    assert!(parse_zpool_list("tank\t1\t2\n").is_err());
}

#[test]
fn pool_creation_checks_the_disk_count_of_each_layout() {
    let name = PoolName::new("tank").unwrap();
    let disks = |n: usize| -> Vec<String> { (0..n).map(|i| format!("/dev/vd{i}")).collect() };
    for (layout, bad, good) in [
        (PoolLayout::Single, vec![0, 2], 1),
        (PoolLayout::Mirror, vec![0, 1], 2),
        (PoolLayout::Raidz1, vec![2], 3),
        (PoolLayout::Raidz2, vec![3], 4),
    ] {
        for n in bad {
            let err = pool_create_args(&name, layout, &disks(n), false).unwrap_err();
            assert!(
                matches!(err, HostError::Refused { .. }),
                "{layout:?} {n}: {err}"
            );
        }
        pool_create_args(&name, layout, &disks(good), false).unwrap();
    }
    assert!(pool_create_args(&name, PoolLayout::Unspecified, &disks(1), false).is_err());
    let err = pool_create_args(&name, PoolLayout::Single, &["-f".to_owned()], false).unwrap_err();
    assert!(err.to_string().contains("not a device path"), "{err}");
}

#[test]
fn pool_creation_arguments() {
    let name = PoolName::new("tank").unwrap();
    let devices = ["/dev/nvme0n1".to_owned(), "/dev/nvme1n1".to_owned()];
    let args = pool_create_args(&name, PoolLayout::Mirror, &devices, true).unwrap();
    assert_eq!(
        args.join(" "),
        "create -f -o ashift=12 -O compression=lz4 -O atime=off -O xattr=sa \
         -O acltype=posixacl -m none tank mirror /dev/nvme0n1 /dev/nvme1n1"
    );
    let args = pool_create_args(&name, PoolLayout::Single, &devices[..1], false).unwrap();
    assert!(args.ends_with(&["tank".to_owned(), "/dev/nvme0n1".to_owned()]));
    assert!(!args.contains(&"-f".to_owned()));
}

#[test]
fn volume_creation_is_one_command_carrying_everything() {
    let plain = volume_create_args(&params("00000000000000a1", false, 128 * MIB), None);
    assert_eq!(
        plain.join(" "),
        "create -o coloc:volume-id=00000000000000a1 -o coloc:tenant=asso-un \
         -o coloc:volume=data -o refquota=268435456 -o quota=536870912 \
         -o refreservation=134217728 -o compression=lz4 -o setuid=off -o devices=off \
         -o canmount=noauto -o mountpoint=/srv/tenants/asso-un/data tank/coloc/00000000000000a1"
    );
    let secret = volume_create_args(
        &params("00000000000000e1", true, 0),
        Some("/var/lib/coloc/keys/00000000000000e1.key"),
    );
    let text = secret.join(" ");
    assert!(!text.contains("refreservation"), "{text}");
    assert!(
        text.ends_with(
            "-o encryption=aes-256-gcm -o keyformat=raw \
             -o keylocation=file:///var/lib/coloc/keys/00000000000000e1.key \
             tank/coloc/00000000000000e1"
        ),
        "{text}"
    );
}

fn quotas(refquota: u64, refreservation: u64, referenced: u64) -> Quotas {
    Quotas {
        refquota,
        quota: 2 * refquota,
        refreservation,
        referenced,
    }
}

#[test]
fn growing_raises_the_quota_before_the_refquota_and_reservation() {
    let steps = plan_resize("ds", quotas(256 * MIB, 0, MIB), 512 * MIB, 512 * MIB, false).unwrap();
    assert_eq!(
        steps,
        [
            ("quota", 1024 * MIB),
            ("refquota", 512 * MIB),
            ("refreservation", 512 * MIB)
        ]
    );
    assert_eq!(
        plan_resize("ds", quotas(256 * MIB, 0, MIB), 256 * MIB, 0, false).unwrap(),
        [],
        "nothing differs, nothing to run"
    );
}

#[test]
fn shrinking_lowers_the_reservation_first_and_needs_allow_shrink() {
    let current = quotas(256 * MIB, 256 * MIB, 80 * MIB);
    let err = plan_resize("ds", current, 128 * MIB, 0, false).unwrap_err();
    assert!(
        matches!(&err, HostError::Refused { reason, .. } if reason.contains("--force")),
        "{err}"
    );
    let steps = plan_resize("ds", current, 128 * MIB, 64 * MIB, true).unwrap();
    assert_eq!(
        steps,
        [
            ("refreservation", 64 * MIB),
            ("refquota", 128 * MIB),
            ("quota", 256 * MIB)
        ]
    );
}

#[test]
fn shrinking_below_the_data_or_reserving_more_than_the_size_is_refused() {
    let current = quotas(256 * MIB, 0, 80 * MIB);
    let err = plan_resize("ds", current, 64 * MIB, 0, true).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ds: uses 80.0 MiB, more than the new size 64.0 MiB"
    );
    let err = plan_resize("ds", current, 256 * MIB, 512 * MIB, true).unwrap_err();
    assert!(matches!(err, HostError::Refused { .. }), "{err}");
}

#[test]
fn rollback_only_to_the_most_recent_snapshot() {
    let snaps = [snap("first"), snap("second"), snap("third")];
    check_rollback("ds", &snaps, "third").unwrap();
    let err = check_rollback("ds", &snaps, "first").unwrap_err();
    assert_eq!(
        err.to_string(),
        "ds: first is not the most recent snapshot; delete the later ones first: second, third"
    );
    assert!(check_rollback("ds", &snaps, "missing").is_err());
    assert!(check_rollback("ds", &[], "first").is_err());
}

fn object(pool: &str, name: &str, id: &str) -> VolumeObject {
    let mut obj = parse_zfs_list(MOUNTED).unwrap().remove(0);
    obj.pool = pool.to_owned();
    obj.object = name.to_owned();
    obj.volume_id = id.to_owned();
    obj
}

#[tokio::test]
async fn destroy_refuses_anything_but_a_coloc_dataset_before_running_a_command() {
    let keys = tempfile::tempdir().unwrap();
    let backend = ZfsBackend::new(Runner::new(), keys.path().to_owned());
    for obj in [
        object("tank", "tank/coloc/not-an-id", "not-an-id"),
        object("tank", "tank", "00000000000000a1"),
        object("tank", "tank/coloc/00000000000000b2", "00000000000000a1"),
        object("other", "tank/coloc/00000000000000a1", "00000000000000a1"),
    ] {
        let err = backend.destroy(&obj).await.unwrap_err();
        assert!(matches!(err, HostError::Refused { .. }), "{obj:?}: {err}");
    }
    owned_id(&object(
        "tank",
        "tank/coloc/00000000000000a1",
        "00000000000000a1",
    ))
    .unwrap();
}

#[tokio::test]
async fn a_wrong_layout_is_refused_before_zpool_runs() {
    let backend = ZfsBackend::new(Runner::new(), PathBuf::from("/nonexistent"));
    let name = PoolName::new("tank").unwrap();
    let err = backend
        .create_pool(&name, PoolLayout::Raidz2, &["/dev/vdb".to_owned()], false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Refused { reason, .. } if reason.contains("at least 4")),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_key_file_is_refused_and_never_recreated() {
    let keys = tempfile::tempdir().unwrap();
    let backend = ZfsBackend::new(Runner::new(), keys.path().to_owned());
    let mut obj = parse_zfs_list(LOCKED).unwrap().remove(1);
    obj.unlocked = false;
    let v = params("00000000000000e1", true, 0);
    let err = backend.prepare(&obj, &v).await.unwrap_err();
    assert!(
        matches!(&err, HostError::Refused { reason, .. } if reason.contains("missing")),
        "{err}"
    );
    assert!(!crate::volumes::key_path(keys.path(), &v.id).exists());
}

/// The whole life of a pool and two volumes on real ZFS. Destructive:
/// runs only inside a disposable VM, as root, when
/// `COLOC_TEST_ZFS_DISKS` names two blank disks (comma-separated).
#[tokio::test]
#[ignore = "needs root, ZFS and two blank disks (COLOC_TEST_ZFS_DISKS)"]
async fn real_zfs_lifecycle() {
    let Ok(disks) = std::env::var("COLOC_TEST_ZFS_DISKS") else {
        eprintln!("COLOC_TEST_ZFS_DISKS not set: skipped");
        return;
    };
    let devices: Vec<String> = disks.split(',').map(str::to_owned).collect();
    let keys = tempfile::tempdir().unwrap();
    let mounts = tempfile::tempdir().unwrap();
    let runner = Runner::new();
    let zfs = ZfsBackend::new(runner.clone(), keys.path().to_owned());
    let pool = PoolName::new("coloctest").unwrap();

    assert!(!zfs.import_pool(&pool).await.unwrap(), "no such pool yet");
    zfs.create_pool(&pool, PoolLayout::Mirror, &devices, false)
        .await
        .unwrap();
    zfs.create_pool(&pool, PoolLayout::Mirror, &devices, false)
        .await
        .unwrap();
    assert!(zfs.import_pool(&pool).await.unwrap());
    assert!(
        zfs.pools()
            .await
            .unwrap()
            .iter()
            .any(|p| p.name == "coloctest")
    );
    assert_eq!(zfs.volumes(&pool).await.unwrap(), vec![]);

    let mut plain = params("00000000000000a1", false, 64 * MIB);
    plain.pool = pool.clone();
    plain.mount_path = mounts.path().join("t/data").display().to_string();
    let mut secret = params("00000000000000e1", true, 0);
    secret.pool = pool.clone();
    secret.size_bytes = 128 * MIB;
    secret.mount_path = mounts.path().join("t/secret").display().to_string();
    zfs.create_volume(&plain).await.unwrap();
    zfs.create_volume(&secret).await.unwrap();
    assert!(zfs.create_volume(&plain).await.is_err(), "exists");

    let find =
        |vs: Vec<VolumeObject>, id: &str| vs.into_iter().find(|v| v.volume_id == id).unwrap();
    let obj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000a1");
    assert_eq!(obj.size_bytes, 256 * MIB);
    zfs.prepare(&obj, &plain).await.unwrap();
    zfs.mount(&obj, &plain).await.unwrap();
    let obj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000a1");
    assert_eq!(obj.mounted_at.as_deref(), Some(plain.mount_path.as_str()));
    zfs.mount(&obj, &plain).await.unwrap();
    let file = Path::new(&plain.mount_path).join("f");
    std::fs::write(&file, "one").unwrap();
    let first = SnapshotName::new("first").unwrap();
    let second = SnapshotName::new("second").unwrap();
    zfs.create_snapshot(&obj, &first).await.unwrap();
    zfs.create_snapshot(&obj, &first).await.unwrap();
    std::fs::write(&file, "two").unwrap();
    zfs.create_snapshot(&obj, &second).await.unwrap();
    std::fs::write(&file, "three").unwrap();
    let err = zfs.rollback(&obj, &plain, &first).await.unwrap_err();
    assert!(matches!(err, HostError::Refused { .. }), "{err}");
    zfs.rollback(&obj, &plain, &second).await.unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "two");
    zfs.destroy_snapshot(&obj, &second).await.unwrap();
    zfs.destroy_snapshot(&obj, &second).await.unwrap();

    // Resize: grow, shrink refused without allow_shrink, below the data
    // refused, then a real shrink.
    plain.size_bytes = 512 * MIB;
    zfs.resize(&obj, &plain, false).await.unwrap();
    {
        // Random bytes: lz4 would squeeze a constant fill to nothing.
        use std::io::Read;
        let mut random = std::fs::File::open("/dev/urandom").unwrap().take(80 << 20);
        let mut big = std::fs::File::create(Path::new(&plain.mount_path).join("big")).unwrap();
        std::io::copy(&mut random, &mut big).unwrap();
    }
    runner.run("sync", &[]).await.unwrap();
    plain.size_bytes = 64 * MIB;
    assert!(zfs.resize(&obj, &plain, false).await.is_err());
    let err = zfs.resize(&obj, &plain, true).await.unwrap_err();
    assert!(err.to_string().contains("more than the new size"), "{err}");
    plain.size_bytes = 192 * MIB;
    plain.reservation_bytes = 0;
    zfs.resize(&obj, &plain, true).await.unwrap();
    let obj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000a1");
    assert_eq!((obj.size_bytes, obj.reservation_bytes), (192 * MIB, 0));

    zfs.set_read_only(&obj, true).await.unwrap();
    let obj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000a1");
    assert!(obj.read_only);
    assert!(std::fs::write(&file, "no").is_err(), "read-only mount");
    zfs.unmount(&obj).await.unwrap();
    let obj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000a1");
    assert_eq!(obj.mounted_at, None);
    zfs.unmount(&obj).await.unwrap();

    // Encrypted: lock it, then prepare loads the key again.
    let sobj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000e1");
    assert!(sobj.encrypted && sobj.unlocked);
    runner
        .run("zfs", &["unload-key", &sobj.object])
        .await
        .unwrap();
    let sobj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000e1");
    assert!(!sobj.unlocked);
    zfs.prepare(&sobj, &secret).await.unwrap();
    let sobj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000e1");
    assert!(sobj.unlocked);
    zfs.mount(&sobj, &secret).await.unwrap();
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&secret.mount_path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (200_000, 200_000, 0o770)
        );
    }
    let sobj = find(zfs.volumes(&pool).await.unwrap(), "00000000000000e1");
    zfs.destroy(&sobj).await.unwrap();
    zfs.destroy(&sobj).await.unwrap();
    assert!(!crate::volumes::key_path(keys.path(), &secret.id).exists());
    zfs.destroy(&obj).await.unwrap();
    assert_eq!(zfs.volumes(&pool).await.unwrap(), vec![]);
    runner
        .run("zpool", &["destroy", "coloctest"])
        .await
        .unwrap();
}

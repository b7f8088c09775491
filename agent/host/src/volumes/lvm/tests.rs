//! The LVM backend's names and refusals, and the whole life of a plain and
//! an encrypted volume on real LVM (ignored: destructive, VM only).

use std::path::PathBuf;

use coloc_proto::agent::v1::PoolLayout;
use coloc_proto::storage::{PoolName, VolumeId};

use super::*;
use crate::volumes::{VolumeBackend, VolumeObject, VolumeParams};

const LVS_VOLUMES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/storage/lvs-tank-volumes.json"
));

const PLAIN: &str = "0123456789abcdef";

#[test]
fn a_malformed_id_tag_is_kept_verbatim_for_the_orphan_report() {
    let json = r#"{"report":[{"lv":[
        {"lv_name":"coloc-x", "vg_name":"tank", "lv_size":"67108864",
         "lv_tags":"coloc_volume_NOT-AN-ID", "lv_attr":"Vwi-a-tz--",
         "pool_lv":"thin", "origin":"", "data_percent":"", "lv_time":"1795899072"}]}]}"#;
    let volumes = parse_lvs(json).unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0].volume_id, "NOT-AN-ID");
    assert_eq!(volumes[0].used_bytes, 0);
    let err = Names::of(&volumes[0]).unwrap_err();
    assert!(matches!(err, HostError::Refused { .. }), "{err:?}");
}

#[test]
fn names_come_from_the_object_and_refuse_odd_ones() {
    let mut obj = parse_lvs(LVS_VOLUMES).unwrap().remove(0);
    let names = Names::of(&obj).unwrap();
    assert_eq!(names.lv_path(), format!("/dev/tank/coloc-{PLAIN}"));
    assert_eq!(names.mapper_path(), format!("/dev/mapper/coloc-{PLAIN}"));
    assert_eq!(names.snapshot_lv("x"), format!("coloc-{PLAIN}-snap-x"));
    assert_eq!(names.rollback_lv("x"), format!("coloc-{PLAIN}-rb-x"));
    obj.object = "tank/../../etc".into();
    assert!(Names::of(&obj).is_err());
    obj.object = "tank/-rf".into();
    assert!(Names::of(&obj).is_err());
}

#[tokio::test]
async fn create_volume_refuses_a_reservation_before_running_anything() {
    let backend = LvmThinBackend::new(Runner::new(), PathBuf::from("/nonexistent/keys"));
    let v = VolumeParams {
        id: VolumeId::new(PLAIN).unwrap(),
        tenant: "asso-velo".parse().unwrap(),
        name: "data".parse().unwrap(),
        pool: "tank".parse().unwrap(),
        size_bytes: 134_217_728,
        reservation_bytes: 67_108_864,
        encrypted: true,
        mount_path: "/srv/tenants/asso-velo/data".into(),
        owner_uid: 200_000,
        owner_gid: 200_000,
    };
    let err = backend.create_volume(&v).await.unwrap_err();
    assert!(matches!(err, HostError::Unsupported { .. }), "{err:?}");
}

#[tokio::test]
async fn create_pool_refuses_mirrors_and_several_disks() {
    let backend = LvmThinBackend::new(Runner::new(), PathBuf::from("/nonexistent/keys"));
    let pool: PoolName = "tank".parse().unwrap();
    let disks = ["/dev/vdc".to_owned(), "/dev/vdd".to_owned()];
    let err = backend
        .create_pool(&pool, PoolLayout::Mirror, &disks, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("use ZFS for mirrors"), "{err}");
    let err = backend
        .create_pool(&pool, PoolLayout::Single, &disks, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exactly one disk"), "{err}");
}

/// The whole life of a plain and an encrypted volume on a real disk.
/// Destructive: run only inside a VM, as root, with
/// `COLOC_LVM_TEST_DISK=/dev/vdX cargo test -- --ignored real_lvm`.
/// It creates the group `coloctest` on that disk and wipes the disk at
/// the end.
#[tokio::test]
#[ignore = "destructive: needs root, LVM, cryptsetup and a blank disk"]
async fn real_lvm_volume_lifecycle() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let disk = std::env::var("COLOC_LVM_TEST_DISK")
        .expect("set COLOC_LVM_TEST_DISK to a blank disk of a test VM");
    let runner = Runner::new();
    let keys = tempfile::tempdir().unwrap();
    let mounts = tempfile::tempdir().unwrap();
    let backend = LvmThinBackend::new(runner.clone(), keys.path().join("keys"));
    let pool: PoolName = "coloctest".parse().unwrap();
    const MIB: u64 = 1024 * 1024;

    assert!(!backend.import_pool(&pool).await.unwrap());
    let devices = [disk.clone()];
    backend
        .create_pool(&pool, PoolLayout::Single, &devices, false)
        .await
        .unwrap();
    backend
        .create_pool(&pool, PoolLayout::Single, &devices, false)
        .await
        .unwrap();
    assert!(backend.import_pool(&pool).await.unwrap());
    let pools = backend.pools().await.unwrap();
    let p = pools.iter().find(|p| p.name == "coloctest").unwrap();
    assert_eq!(p.health, "ONLINE");
    assert!(p.free_bytes > 0 && p.free_bytes <= p.size_bytes);

    let params = |id: &str, name: &str, encrypted: bool, size: u64| VolumeParams {
        id: VolumeId::new(id).unwrap(),
        tenant: "asso-test".parse().unwrap(),
        name: name.parse().unwrap(),
        pool: pool.clone(),
        size_bytes: size,
        reservation_bytes: 0,
        encrypted,
        mount_path: mounts
            .path()
            .join("asso-test")
            .join(name)
            .display()
            .to_string(),
        owner_uid: 200_000,
        owner_gid: 200_000,
    };
    let mut plain = params("00000000000000a1", "data", false, 64 * MIB);
    let mut secret = params("00000000000000e1", "secret", true, 64 * MIB);
    let find = |vols: &[VolumeObject], v: &VolumeParams| {
        vols.iter()
            .find(|o| o.volume_id == v.id.as_str())
            .cloned()
            .unwrap()
    };
    async fn read(path: &str) -> String {
        tokio::fs::read_to_string(format!("{path}/file"))
            .await
            .unwrap()
    }
    async fn write(path: &str, text: &str) {
        tokio::fs::write(format!("{path}/file"), text)
            .await
            .unwrap();
        nix::unistd::sync();
    }

    for v in [&plain, &secret] {
        backend.create_volume(v).await.unwrap();
        assert!(backend.create_volume(v).await.is_err(), "exists");
    }
    let vols = backend.volumes(&pool).await.unwrap();
    assert_eq!(vols.len(), 2);
    assert!(!find(&vols, &plain).has_filesystem);
    for v in [&plain, &secret] {
        let obj = find(&vols, v);
        backend.prepare(&obj, v).await.unwrap();
        backend.prepare(&obj, v).await.unwrap();
    }
    // The plain LV must not be turned into LUKS, nor LUKS formatted.
    let vols = backend.volumes(&pool).await.unwrap();
    let err = backend
        .prepare(
            &find(&vols, &plain),
            &VolumeParams {
                encrypted: true,
                ..plain.clone()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("holds ext4"), "{err}");
    let err = backend
        .prepare(
            &find(&vols, &secret),
            &VolumeParams {
                encrypted: false,
                ..secret.clone()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("holds crypto_LUKS"), "{err}");

    for v in [&plain, &secret] {
        let obj = find(&vols, v);
        assert!(obj.has_filesystem && obj.unlocked, "{obj:?}");
        assert_eq!(obj.encrypted, v.encrypted);
        assert_eq!(obj.filesystem_bytes, v.size_bytes, "{obj:?}");
        backend.mount(&obj, v).await.unwrap();
        backend.mount(&obj, v).await.unwrap();
        let meta = std::fs::metadata(&v.mount_path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (200_000, 200_000));
        assert_eq!(meta.permissions().mode() & 0o7777, 0o770);
        write(&v.mount_path, "one").await;
        backend
            .create_snapshot(&obj, &"first".parse().unwrap())
            .await
            .unwrap();
        backend
            .create_snapshot(&obj, &"first".parse().unwrap())
            .await
            .unwrap();
        write(&v.mount_path, "two").await;
    }

    // Grow online, both.
    plain.size_bytes = 128 * MIB;
    secret.size_bytes = 128 * MIB;
    let vols = backend.volumes(&pool).await.unwrap();
    for v in [&plain, &secret] {
        let obj = find(&vols, v);
        assert_eq!(obj.mounted_at.as_deref(), Some(v.mount_path.as_str()));
        backend.resize(&obj, v, false).await.unwrap();
        backend.resize(&obj, v, false).await.unwrap();
    }
    let vols = backend.volumes(&pool).await.unwrap();
    for v in [&plain, &secret] {
        let obj = find(&vols, v);
        assert_eq!(obj.size_bytes, 128 * MIB);
        assert_eq!(obj.filesystem_bytes, 128 * MIB, "{obj:?}");
        let shrink = VolumeParams {
            size_bytes: 64 * MIB,
            ..v.clone()
        };
        let err = backend.resize(&obj, &shrink, true).await.unwrap_err();
        assert!(matches!(err, HostError::Unsupported { .. }), "{err:?}");
    }

    // Rollback only to the latest snapshot, keeping it.
    let obj = find(&vols, &plain);
    backend
        .create_snapshot(&obj, &"second".parse().unwrap())
        .await
        .unwrap();
    let err = backend
        .rollback(&obj, &plain, &"first".parse().unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("second"), "{err}");
    backend
        .destroy_snapshot(&obj, &"second".parse().unwrap())
        .await
        .unwrap();
    backend
        .destroy_snapshot(&obj, &"second".parse().unwrap())
        .await
        .unwrap();
    for v in [&plain, &secret] {
        let obj = find(&vols, v);
        backend
            .rollback(&obj, v, &"first".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(read(&v.mount_path).await, "one");
    }
    let vols = backend.volumes(&pool).await.unwrap();
    for v in [&plain, &secret] {
        let obj = find(&vols, v);
        let snaps: Vec<&str> = obj.snapshots.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(snaps, ["first"]);
        assert_eq!(obj.mounted_at.as_deref(), Some(v.mount_path.as_str()));
        // The snapshot was 64 MiB; the rollback grew it back.
        assert_eq!(obj.size_bytes, 128 * MIB);
        assert_eq!(obj.filesystem_bytes, 128 * MIB, "{obj:?}");
    }

    // Retained: unmounted, read-only, mounted read-only when asked.
    let obj = find(&vols, &plain);
    backend.unmount(&obj).await.unwrap();
    backend.unmount(&obj).await.unwrap();
    backend.set_read_only(&obj, true).await.unwrap();
    backend.set_read_only(&obj, true).await.unwrap();
    let vols = backend.volumes(&pool).await.unwrap();
    let obj = find(&vols, &plain);
    assert!(obj.read_only && obj.mounted_at.is_none(), "{obj:?}");
    backend.mount(&obj, &plain).await.unwrap();
    assert!(
        tokio::fs::write(format!("{}/x", plain.mount_path), "x")
            .await
            .is_err()
    );
    backend.unmount(&obj).await.unwrap();
    backend.set_read_only(&obj, false).await.unwrap();

    for v in [&plain, &secret] {
        let obj = find(&vols, v);
        backend.destroy(&obj).await.unwrap();
        backend.destroy(&obj).await.unwrap();
        assert!(!crate::volumes::key_path(&keys.path().join("keys"), &v.id).exists());
    }
    assert!(backend.volumes(&pool).await.unwrap().is_empty());

    runner.run("vgremove", &["-y", "coloctest"]).await.unwrap();
    runner.run("pvremove", &["-y", &disk]).await.unwrap();
    runner.run("wipefs", &["-a", &disk]).await.unwrap();
}

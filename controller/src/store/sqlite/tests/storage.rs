//! Pools, volumes through their life, snapshots, quota (the last space
//! raced for by two connections), reports and purge.

use coloc_proto::agent::v1::{OrphanVolume, PoolKind, PoolStatus, VolumePhase, VolumeStatus};
use coloc_proto::storage::VolumeName;

use super::fixtures::*;
use crate::store::prelude::*;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    FIRST_POSIX_ID, MAX_SNAPSHOTS_PER_VOLUME, ObservedStorage, StoreError, TenantStorageChange,
    VolumeFilter, VolumeLifecycle,
};

#[tokio::test]
async fn every_storage_change_bumps_its_nodes_generation_only() {
    let store = fleet(&["n1", "n2"]).await;
    assert_eq!(generation(&store, "n1").await, 1);
    storage_fleet(&store).await;
    assert_eq!(generation(&store, "n1").await, 2, "pool declared");
    let err = store
        .create_pool(pool("n1", "tank", PoolKind::LvmThin))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { kind: "pool", ref name } if name == "n1/tank"),
        "{err:?}"
    );
    let err = store
        .create_pool(pool("ghost", "tank", PoolKind::Zfs))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "node", .. }),
        "{err:?}"
    );
    assert_eq!(generation(&store, "n1").await, 2, "refusals change nothing");

    let v = store
        .create_volume(volume("asso-a", "data", "n1", GIB), NOW)
        .await
        .unwrap();
    assert_eq!(v.lifecycle, VolumeLifecycle::Active);
    assert_eq!(v.pool_kind, PoolKind::Zfs);
    assert_eq!(v.created_unix, NOW);
    let mut expected = 3;
    assert_eq!(generation(&store, "n1").await, expected);

    let v = store.resize_volume(&v.id, 2 * GIB, false).await.unwrap();
    assert_eq!(v.size_bytes, 2 * GIB);
    expected += 1;
    assert_eq!(generation(&store, "n1").await, expected);
    // The same size again is no change.
    store.resize_volume(&v.id, 2 * GIB, false).await.unwrap();
    assert_eq!(generation(&store, "n1").await, expected);
    let v = store.resize_volume(&v.id, GIB, true).await.unwrap();
    assert!(v.allow_shrink);
    expected += 1;
    let v = store.resize_volume(&v.id, 3 * GIB, true).await.unwrap();
    assert!(!v.allow_shrink, "a grow clears the shrink permission");
    expected += 1;

    let v = store.add_snapshot(&v.id, &snap("s1")).await.unwrap();
    let v = store.add_snapshot(&v.id, &snap("s2")).await.unwrap();
    assert_eq!(v.snapshots, [snap("s1"), snap("s2")]);
    expected += 2;
    let err = store.add_snapshot(&v.id, &snap("s1")).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AlreadyExists {
                kind: "snapshot",
                ..
            }
        ),
        "{err:?}"
    );
    let v = store.remove_snapshot(&v.id, &snap("s1")).await.unwrap();
    assert_eq!(v.snapshots, [snap("s2")]);
    expected += 1;
    let err = store.remove_snapshot(&v.id, &snap("s1")).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                kind: "snapshot",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(generation(&store, "n1").await, expected);

    // Observed status is not desired state.
    let status = VolumeStatus {
        id: v.id.to_string(),
        phase: VolumePhase::Ready as i32,
        used_bytes: 1234,
        ..VolumeStatus::default()
    };
    let v = store.set_volume_observed(&v.id, &status).await.unwrap();
    assert_eq!(v.observed, Some(status.clone()));
    let destroyed = store
        .record_storage(
            &node_name("n1"),
            ObservedStorage {
                pools: vec![PoolStatus {
                    name: "tank".into(),
                    present: true,
                    ..PoolStatus::default()
                }],
                volumes: vec![status],
                orphans: vec![OrphanVolume {
                    pool: "tank".into(),
                    object: "tank/coloc/00000000000000ff".into(),
                    volume_id: "00000000000000ff".into(),
                    size_bytes: 1,
                }],
            },
        )
        .await
        .unwrap();
    assert!(destroyed.is_empty());
    assert_eq!(generation(&store, "n1").await, expected);
    let pools = store.list_pools(Some(&node_name("n1"))).await.unwrap();
    assert!(pools[0].observed.as_ref().unwrap().present);
    assert_eq!(pools[0].orphans.len(), 1);
    assert_eq!(pools[0].orphans[0].volume_id, "00000000000000ff");

    let v = store.delete_volume(&v.id, NOW).await.unwrap();
    expected += 1;
    let v = store.restore_volume(&v.id, NOW + 1).await.unwrap();
    assert_eq!(v.lifecycle, VolumeLifecycle::Active);
    expected += 1;
    assert_eq!(generation(&store, "n1").await, expected);
    assert_eq!(generation(&store, "n2").await, 2, "n2 was never touched");
}

#[tokio::test]
async fn desired_configs_carry_pools_and_live_volumes_with_their_owner() {
    let store = fleet(&["n1", "n2"]).await;
    storage_fleet(&store).await;
    let a = store
        .create_volume(volume("asso-a", "a", "n1", GIB), NOW)
        .await
        .unwrap();
    let b = store
        .create_volume(volume("asso-a", "b", "n1", GIB), NOW)
        .await
        .unwrap();
    store.add_snapshot(&a.id, &snap("z")).await.unwrap();
    store.add_snapshot(&a.id, &snap("a")).await.unwrap();
    store.delete_volume(&b.id, NOW).await.unwrap();
    let d = store
        .desired_configs(&[node_name("n1"), node_name("n2")])
        .await
        .unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].node.name.as_str(), "n1");
    assert_eq!(d[0].pools.len(), 1);
    assert_eq!(d[0].volumes.len(), 2);
    assert!(d[0].volumes.iter().all(|v| v.owner == FIRST_POSIX_ID));
    let got_a = d[0].volumes.iter().find(|v| v.volume.id == a.id).unwrap();
    assert_eq!(got_a.volume.snapshots, [snap("z"), snap("a")], "in order");
    let got_b = d[0].volumes.iter().find(|v| v.volume.id == b.id).unwrap();
    assert_eq!(got_b.volume.lifecycle, VolumeLifecycle::Retained);
    assert!(d[1].volumes.is_empty());
    let err = store
        .desired_configs(&[node_name("ghost")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { kind: "node", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn quota_counts_active_and_retained_volumes() {
    let store = fleet(&["n1", "n2"]).await;
    storage_fleet(&store).await;
    let a = store
        .create_volume(volume("asso-a", "a", "n1", 6 * GIB), NOW)
        .await
        .unwrap();
    let err = store
        .create_volume(volume("asso-a", "b", "n2", 5 * GIB), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::QuotaExceeded { quota, used, asked, .. }
            if quota == 10 * GIB && used == 6 * GIB && asked == 5 * GIB),
        "{err:?}"
    );
    assert_eq!(generation(&store, "n2").await, 2, "nothing changed on n2");
    // Retained volumes still count.
    store.delete_volume(&a.id, NOW).await.unwrap();
    let t = store.get_tenant(&tenant_name("asso-a")).await.unwrap();
    assert_eq!(t.storage_used_bytes, 6 * GIB);
    // The name stays held while the volume is retained.
    let err = store
        .create_volume(volume("asso-a", "a", "n1", GIB), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let b = store
        .create_volume(volume("asso-a", "b", "n2", 4 * GIB), NOW)
        .await
        .unwrap();
    let err = store
        .resize_volume(&b.id, 5 * GIB, false)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::QuotaExceeded { .. }), "{err:?}");
    // A lowered quota refuses a restore but still lets a volume shrink.
    store
        .set_tenant_storage(
            &tenant_name("asso-a"),
            TenantStorageChange {
                storage_quota_bytes: Some(8 * GIB),
                volume_grace_days: None,
            },
        )
        .await
        .unwrap();
    let err = store.restore_volume(&a.id, NOW + 1).await.unwrap_err();
    assert!(matches!(err, StoreError::QuotaExceeded { .. }), "{err:?}");
    store.resize_volume(&b.id, 2 * GIB, true).await.unwrap();
    let a = store.restore_volume(&a.id, NOW + 1).await.unwrap();
    assert_eq!(a.lifecycle, VolumeLifecycle::Active);
    let t = store.get_tenant(&tenant_name("asso-a")).await.unwrap();
    assert_eq!(t.storage_used_bytes, 8 * GIB);
}

#[tokio::test]
async fn two_creations_racing_for_the_last_space_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("colocd.db");
    let first = SqliteStore::open(&path).unwrap();
    first.create_site(site("paris-1")).await.unwrap();
    first
        .create_join_token(join_token("jt-1", "paris-1", NOW + 3600))
        .await
        .unwrap();
    first
        .enroll_node("hash-of-jt-1", new_node("n1"), NOW)
        .await
        .unwrap();
    first
        .create_pool(pool("n1", "tank", PoolKind::Zfs))
        .await
        .unwrap();
    first.create_tenant(tenant("asso-a")).await.unwrap();
    first
        .create_volume(volume("asso-a", "base", "n1", 6 * GIB), NOW)
        .await
        .unwrap();
    // Two connections to one file, as two colocd processes would hold.
    let second = SqliteStore::open(&path).unwrap();
    for round in 0..10 {
        let (x, y) = tokio::join!(
            first.create_volume(volume("asso-a", &format!("x{round}"), "n1", 4 * GIB), NOW),
            second.create_volume(volume("asso-a", &format!("y{round}"), "n1", 4 * GIB), NOW),
        );
        let won = [&x, &y].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {x:?} {y:?}");
        for r in [x, y] {
            match r {
                Ok(v) => {
                    // Free the space for the next round.
                    first.delete_volume(&v.id, NOW).await.unwrap();
                    let id = v.id.clone();
                    first.purge_due(NOW + 31 * 86_400).await.unwrap();
                    first
                        .record_storage(
                            &node_name("n1"),
                            ObservedStorage {
                                volumes: vec![VolumeStatus {
                                    id: id.to_string(),
                                    phase: VolumePhase::Destroyed as i32,
                                    ..VolumeStatus::default()
                                }],
                                ..ObservedStorage::default()
                            },
                        )
                        .await
                        .unwrap();
                }
                Err(e) => assert!(matches!(e, StoreError::QuotaExceeded { .. }), "{e:?}"),
            }
        }
    }
    let t = second.get_tenant(&tenant_name("asso-a")).await.unwrap();
    assert_eq!(t.storage_used_bytes, 6 * GIB);
}

#[tokio::test]
async fn retained_volumes_are_purged_then_destroyed_when_the_agent_says_so() {
    let store = fleet(&["n1", "n2"]).await;
    storage_fleet(&store).await;
    let v = store
        .create_volume(volume("asso-a", "data", "n1", GIB), NOW)
        .await
        .unwrap();
    let v = store.delete_volume(&v.id, NOW).await.unwrap();
    assert_eq!(v.lifecycle, VolumeLifecycle::Retained);
    assert_eq!(v.deleted_unix, Some(NOW));
    assert_eq!(v.purge_after_unix, Some(NOW + 30 * 86_400));
    let err = store.delete_volume(&v.id, NOW + 5).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let err = store
        .resize_volume(&v.id, 2 * GIB, false)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");

    assert!(
        store
            .purge_due(NOW + 30 * 86_400 - 1)
            .await
            .unwrap()
            .is_empty()
    );
    let gen_before = generation(&store, "n1").await;
    // Due, but not yet picked up by the background task: too late to
    // restore anyway.
    let err = store
        .restore_volume(&v.id, NOW + 30 * 86_400)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let purged = store.purge_due(NOW + 30 * 86_400).await.unwrap();
    assert_eq!(purged.len(), 1);
    assert_eq!(purged[0].lifecycle, VolumeLifecycle::Purging);
    assert_eq!(generation(&store, "n1").await, gen_before + 1);
    assert!(store.purge_due(NOW + 40 * 86_400).await.unwrap().is_empty());
    let t = store.get_tenant(&tenant_name("asso-a")).await.unwrap();
    assert_eq!(t.storage_used_bytes, 0, "purging volumes do not count");

    let destroyed_status = VolumeStatus {
        id: v.id.to_string(),
        phase: VolumePhase::Destroyed as i32,
        ..VolumeStatus::default()
    };
    // Another node cannot report it.
    let none = store
        .record_storage(
            &node_name("n2"),
            ObservedStorage {
                volumes: vec![destroyed_status.clone()],
                ..ObservedStorage::default()
            },
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(
        store.get_volume(&v.id).await.unwrap().lifecycle,
        VolumeLifecycle::Purging
    );
    let gen_before = generation(&store, "n1").await;
    let destroyed = store
        .record_storage(
            &node_name("n1"),
            ObservedStorage {
                volumes: vec![destroyed_status.clone()],
                ..ObservedStorage::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(destroyed.len(), 1);
    assert_eq!(destroyed[0].lifecycle, VolumeLifecycle::Destroyed);
    assert_eq!(generation(&store, "n1").await, gen_before + 1);
    let d = store.desired_configs(&[node_name("n1")]).await.unwrap();
    assert!(
        d[0].volumes.is_empty(),
        "gone from the desired configuration"
    );
    // Reported again: nothing new.
    let again = store
        .record_storage(
            &node_name("n1"),
            ObservedStorage {
                volumes: vec![destroyed_status],
                ..ObservedStorage::default()
            },
        )
        .await
        .unwrap();
    assert!(again.is_empty());

    // Listed only on request; the name is free again.
    let filter = VolumeFilter {
        tenant: Some(tenant_name("asso-a")),
        ..VolumeFilter::default()
    };
    assert!(store.list_volumes(filter.clone()).await.unwrap().is_empty());
    let all = store
        .list_volumes(VolumeFilter {
            include_destroyed: true,
            ..filter
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    let name = VolumeName::new("data").unwrap();
    assert_eq!(
        store
            .find_volume(&tenant_name("asso-a"), &name)
            .await
            .unwrap()
            .id,
        v.id,
        "the destroyed one, for the record"
    );
    let new = store
        .create_volume(volume("asso-a", "data", "n1", GIB), NOW)
        .await
        .unwrap();
    assert_eq!(
        store
            .find_volume(&tenant_name("asso-a"), &name)
            .await
            .unwrap()
            .id,
        new.id,
        "the live one first"
    );
}

#[tokio::test]
async fn snapshots_are_capped_per_volume() {
    let store = fleet(&["n1"]).await;
    store
        .create_pool(pool("n1", "tank", PoolKind::Zfs))
        .await
        .unwrap();
    store.create_tenant(tenant("asso-a")).await.unwrap();
    let v = store
        .create_volume(volume("asso-a", "data", "n1", GIB), NOW)
        .await
        .unwrap();
    for i in 0..MAX_SNAPSHOTS_PER_VOLUME {
        store
            .add_snapshot(&v.id, &snap(&format!("s{i}")))
            .await
            .unwrap();
    }
    let err = store
        .add_snapshot(&v.id, &snap("one-more"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
}

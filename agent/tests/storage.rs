//! The storage reconciler over the in-memory host: what an admin declares
//! (pools on named disks, tenants' volumes in every state) is what the node
//! ends up with, nothing that holds data is touched without an explicit
//! order, and one broken volume never holds the others back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use coloc_agent::config::{AgentConfig, CaSource, JoinTokenSource, SessionConfig};
use coloc_agent::desired::Desired;
use coloc_agent::host::volumes::VolumeObject;
use coloc_agent::host::{FakeHost, FakeOp};
use coloc_agent::ledger::{FileLedger, LedgerStore, MemoryLedger};
use coloc_agent::reconcile::Reconciler;
use coloc_agent::status::{AgentStatus, Outcome, StatusHub};
use coloc_agent::storage::{DISKS_HOLD_DATA, StorageError, StorageReport, reconcile_storage};
use coloc_agent::{AgentOptions, spawn_agent};
use coloc_proto::agent::v1::{
    DesiredConfig, PoolKind, PoolLayout, PoolSpec, ReconcileOutcome, VolumePhase, VolumeSpec,
    VolumeState, VolumeStatus,
};
use coloc_proto::domain::NodeName;
use coloc_proto::error_chain;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const DEADLINE: Duration = Duration::from_secs(20);

fn id(n: u64) -> String {
    format!("{n:016x}")
}

/// `tank`: a ZFS mirror on the node's first two blank data disks, one named
/// by serial, one by its /dev/disk/by-id name.
fn tank() -> PoolSpec {
    PoolSpec {
        name: "tank".into(),
        kind: PoolKind::Zfs.into(),
        layout: PoolLayout::Mirror.into(),
        disks: vec!["serial:SIM-n1-1".into(), "id:virtio-SIM-n1-2".into()],
        force: false,
    }
}

/// `vg-data`: an LVM thin group on the third data disk.
fn vg() -> PoolSpec {
    PoolSpec {
        name: "vg-data".into(),
        kind: PoolKind::LvmThin.into(),
        layout: PoolLayout::Single.into(),
        disks: vec!["serial:SIM-n1-3".into()],
        force: false,
    }
}

fn volume(n: u64, name: &str, pool: &PoolSpec, size_bytes: u64) -> VolumeSpec {
    VolumeSpec {
        id: id(n),
        tenant: "acme".into(),
        name: name.into(),
        pool: pool.name.clone(),
        pool_kind: pool.kind,
        size_bytes,
        state: VolumeState::Active.into(),
        owner_uid: 200_001,
        owner_gid: 200_001,
        ..VolumeSpec::default()
    }
}

/// A storage pass over `pools` and `volumes` as they arrive on the node:
/// converted with the rest of a desired configuration first.
async fn pass(fake: &FakeHost, pools: &[PoolSpec], volumes: &[VolumeSpec]) -> StorageReport {
    let wire = DesiredConfig {
        node_name: "n1".into(),
        pools: pools.to_vec(),
        volumes: volumes.to_vec(),
        ..DesiredConfig::default()
    };
    let desired = Desired::try_from(&wire)
        .unwrap_or_else(|e| panic!("a valid configuration: {}", error_chain(&e)));
    reconcile_storage(&fake.host().volumes, &desired.pools, &desired.volumes).await
}

fn status(report: &StorageReport, n: u64) -> &VolumeStatus {
    let wanted = id(n);
    report
        .volumes
        .iter()
        .find(|v| v.id == wanted)
        .unwrap_or_else(|| panic!("no status for volume {wanted}: {report:#?}"))
}

fn assert_ready(report: &StorageReport, n: u64) -> VolumeStatus {
    let s = status(report, n);
    assert_eq!(s.phase(), VolumePhase::Ready, "{s:#?}");
    assert!(s.error.is_empty(), "{}", s.error);
    assert!(s.mounted && !s.read_only, "{s:#?}");
    s.clone()
}

#[tokio::test]
async fn a_pool_is_created_on_blank_disks_once() {
    let fake = FakeHost::new("n1");
    let report = pass(&fake, &[tank(), vg()], &[]).await;
    assert!(report.observed);
    assert!(!report.failed(), "{}", report.summary());
    for pool in &report.pools {
        assert!(pool.present, "{pool:#?}");
        assert_eq!(pool.health, "ONLINE");
        assert!(pool.error.is_empty() && pool.refused_disks.is_empty());
    }
    assert_eq!(
        report.pools[0].size_bytes,
        100 * GIB,
        "a mirror of two 100 GiB disks"
    );
    assert_eq!(fake.zfs.calls(FakeOp::CreatePool), 1);
    assert_eq!(fake.lvm.calls(FakeOp::CreatePool), 1);
    // The disks now carry the pools' signatures.
    let disks = fake.disks.disks();
    assert_eq!(disks[1].holds.as_deref(), Some("zfs_member signature"));
    assert_eq!(disks[3].holds.as_deref(), Some("LVM2_member signature"));

    // The next passes find the pools: nothing is created again.
    let again = pass(&fake, &[tank(), vg()], &[]).await;
    assert!(!again.failed(), "{}", again.summary());
    assert!(again.pools.iter().all(|p| p.present));
    assert_eq!(fake.zfs.calls(FakeOp::CreatePool), 1);
    assert_eq!(fake.lvm.calls(FakeOp::CreatePool), 1);
}

#[tokio::test]
async fn a_disk_holding_data_is_refused_without_force_and_wiped_with_it() {
    let fake = FakeHost::new("n1");
    fake.disks.set_holds("/dev/vdd", Some("ext4 filesystem"));
    let report = pass(&fake, &[vg()], &[]).await;
    let pool = &report.pools[0];
    assert!(!pool.present);
    assert_eq!(pool.error, DISKS_HOLD_DATA);
    assert_eq!(
        pool.refused_disks,
        ["serial:SIM-n1-3 (/dev/vdd): ext4 filesystem"]
    );
    assert!(report.failed());
    assert!(report.summary().contains("vg-data"), "{}", report.summary());
    assert_eq!(fake.lvm.calls(FakeOp::CreatePool), 0, "nothing was run");
    // It stays refused pass after pass.
    pass(&fake, &[vg()], &[]).await;
    assert_eq!(fake.lvm.calls(FakeOp::CreatePool), 0);

    // The admin looked at the disk and declares the pool with force.
    let forced = PoolSpec {
        force: true,
        ..vg()
    };
    let report = pass(&fake, &[forced], &[]).await;
    assert!(!report.failed(), "{}", report.summary());
    assert!(report.pools[0].present);
    assert!(report.pools[0].refused_disks.is_empty());
    assert_eq!(fake.lvm.calls(FakeOp::CreatePool), 1);
}

#[tokio::test]
async fn a_missing_disk_is_named_and_nothing_is_created() {
    let fake = FakeHost::new("n1");
    let mut spec = tank();
    spec.disks[1] = "serial:GONE42".into();
    let report = pass(&fake, &[spec], &[]).await;
    assert_eq!(report.pools[0].error, "disk serial:GONE42 not found");
    assert_eq!(fake.zfs.calls(FakeOp::CreatePool), 0);
}

#[tokio::test]
async fn an_existing_pool_is_used_or_imported_never_recreated() {
    let fake = FakeHost::new("n1");
    fake.zfs.add_pool("tank", 500 * GIB);
    // Its disks hold its own signatures: that must not matter.
    fake.disks
        .set_holds("/dev/vdb", Some("zfs_member signature"));
    let report = pass(&fake, &[tank()], &[]).await;
    assert!(!report.failed(), "{}", report.summary());
    assert_eq!(report.pools[0].size_bytes, 500 * GIB);
    assert_eq!(fake.zfs.calls(FakeOp::CreatePool), 0);
    assert_eq!(fake.zfs.calls(FakeOp::ImportPool), 0);

    // A group present on the disks but not active is brought in.
    fake.lvm.add_exported_pool("vg-data", 100 * GIB);
    let report = pass(&fake, &[tank(), vg()], &[]).await;
    assert!(!report.failed(), "{}", report.summary());
    assert!(report.pools[1].present);
    assert_eq!(fake.lvm.calls(FakeOp::ImportPool), 1);
    assert_eq!(fake.lvm.calls(FakeOp::CreatePool), 0);

    // An unusable group is reported, not changed.
    fake.lvm.set_pool_health("vg-data", "NO-THIN-POOL");
    let report = pass(&fake, &[vg()], &[volume(1, "data", &vg(), GIB)]).await;
    assert!(
        report.pools[0].error.contains("thin pool"),
        "{:#?}",
        report.pools[0]
    );
    assert!(
        status(&report, 1)
            .error
            .contains("pool vg-data is not available")
    );
    assert_eq!(fake.lvm.calls(FakeOp::CreatePool), 0);
    assert_eq!(fake.lvm.calls(FakeOp::CreateVolume), 0);
}

#[tokio::test]
async fn a_volume_lives_created_grown_retained_restored_purged() {
    let fake = FakeHost::new("n1");
    let pools = [tank()];
    let mut v = volume(1, "data", &tank(), 10 * GIB);
    v.reservation_bytes = GIB;

    // Created, mounted at its path, owned by the tenant.
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    assert!(!report.failed(), "{}", report.summary());
    let s = assert_ready(&report, 1);
    assert_eq!(s.mount_path, "/srv/tenants/acme/data");
    assert_eq!(s.size_bytes, 10 * GIB);
    assert_eq!(fake.zfs.owner(&id(1)), Some((200_001, 200_001)));
    let obj = fake.zfs.object(&id(1)).expect("on disk");
    assert_eq!(obj.object, format!("tank/coloc/{}", id(1)));
    assert_eq!(obj.reservation_bytes, GIB);

    // Grown online.
    v.size_bytes = 20 * GIB;
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    assert_eq!(assert_ready(&report, 1).size_bytes, 20 * GIB);

    // Shrinking needs allow_shrink; the volume stays mounted meanwhile.
    fake.zfs.set_used_bytes(&id(1), 3 * GIB);
    v.size_bytes = 2 * GIB;
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    let s = status(&report, 1);
    assert_eq!(s.phase(), VolumePhase::Error);
    assert!(s.error.contains("allow_shrink"), "{}", s.error);
    assert!(s.mounted);
    assert_eq!(s.size_bytes, 20 * GIB);
    // ... and never below the space used.
    v.allow_shrink = true;
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    let s = status(&report, 1);
    assert_eq!(s.phase(), VolumePhase::Error);
    assert!(s.error.contains("below the space used"), "{}", s.error);
    assert_eq!(s.size_bytes, 20 * GIB);
    v.size_bytes = 4 * GIB;
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    assert_eq!(assert_ready(&report, 1).size_bytes, 4 * GIB);
    assert_eq!(status(&report, 1).used_bytes, 3 * GIB);

    // Deleted by its tenant: unmounted, read-only, kept.
    v.state = VolumeState::Retained.into();
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    let s = status(&report, 1);
    assert_eq!(s.phase(), VolumePhase::Retained, "{s:#?}");
    assert!(!s.mounted && s.read_only);
    assert_eq!(s.used_bytes, 3 * GIB, "data kept");

    // Restored within the grace period.
    v.state = VolumeState::Active.into();
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    assert_ready(&report, 1);

    // Purged: destroyed, then reported destroyed on every later pass.
    v.state = VolumeState::Purged.into();
    for _ in 0..2 {
        let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
        let s = status(&report, 1);
        assert_eq!(s.phase(), VolumePhase::Destroyed, "{s:#?}");
        assert!(!report.failed(), "{}", report.summary());
        assert!(fake.zfs.object(&id(1)).is_none());
    }
    assert_eq!(fake.zfs.calls(FakeOp::Destroy), 1);
    assert_eq!(fake.zfs.calls(FakeOp::CreateVolume), 1);
}

#[tokio::test]
async fn lvm_volumes_never_shrink_and_an_interrupted_grow_is_finished() {
    let fake = FakeHost::new("n1");
    let pools = [vg()];
    let mut v = volume(2, "files", &vg(), GIB);
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    assert_ready(&report, 2);
    assert_eq!(
        fake.lvm.object(&id(2)).expect("on disk").object,
        format!("vg-data/coloc-{}", id(2))
    );

    // The agent dies between lvextend and resize2fs.
    fake.lvm.fail_next(FakeOp::GrowFilesystem);
    v.size_bytes = 2 * GIB;
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    assert_eq!(status(&report, 2).phase(), VolumePhase::Error);
    let obj = fake.lvm.object(&id(2)).expect("on disk");
    assert_eq!((obj.size_bytes, obj.filesystem_bytes), (2 * GIB, GIB));
    // The next pass finishes it.
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    assert_ready(&report, 2);
    let obj = fake.lvm.object(&id(2)).expect("on disk");
    assert_eq!(obj.filesystem_bytes, 2 * GIB);

    // ext4 never shrinks, even when the caller allows it.
    v.size_bytes = GIB;
    v.allow_shrink = true;
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    let s = status(&report, 2);
    assert_eq!(s.phase(), VolumePhase::Error);
    assert!(s.error.contains("not supported"), "{}", s.error);
    assert_eq!(s.size_bytes, 2 * GIB);
    assert!(s.mounted);
}

#[tokio::test]
async fn snapshots_follow_the_list() {
    let fake = FakeHost::new("n1");
    let pools = [tank()];
    let mut v = volume(3, "db", &tank(), GIB);
    v.snapshots = vec!["before-upgrade".into(), "nightly".into()];
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    let s = assert_ready(&report, 3);
    let names: Vec<&str> = s.snapshots.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["before-upgrade", "nightly"]);
    assert!(s.snapshots[0].created_unix < s.snapshots[1].created_unix);

    v.snapshots = vec!["nightly".into(), "weekly".into()];
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    let s = assert_ready(&report, 3);
    let names: Vec<&str> = s.snapshots.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["nightly", "weekly"]);
    assert_eq!(fake.zfs.snapshot_names(&id(3)), ["nightly", "weekly"]);

    // Converged: another pass changes nothing.
    let before = (
        fake.zfs.calls(FakeOp::CreateSnapshot),
        fake.zfs.calls(FakeOp::DestroySnapshot),
    );
    pass(&fake, &pools, std::slice::from_ref(&v)).await;
    assert_eq!(
        (
            fake.zfs.calls(FakeOp::CreateSnapshot),
            fake.zfs.calls(FakeOp::DestroySnapshot)
        ),
        before
    );
}

fn planted(pool: &str, volume_id: &str) -> VolumeObject {
    VolumeObject {
        pool: pool.into(),
        kind: PoolKind::Zfs,
        object: format!("{pool}/coloc/{volume_id}"),
        volume_id: volume_id.into(),
        size_bytes: 5 * GIB,
        reservation_bytes: 0,
        used_bytes: GIB,
        available_bytes: 4 * GIB,
        snapshot_bytes: 0,
        read_only: false,
        encrypted: false,
        unlocked: true,
        has_filesystem: true,
        filesystem_bytes: 5 * GIB,
        mounted_at: Some("/srv/tenants/old/data".into()),
        snapshots: vec![],
    }
}

#[tokio::test]
async fn orphans_are_reported_and_left_alone() {
    let fake = FakeHost::new("n1");
    fake.zfs.add_pool("tank", 100 * GIB);
    fake.zfs.insert_object(planted("tank", &id(99)));
    fake.zfs.insert_object(planted("tank", "NOT-AN-ID"));
    let v = volume(4, "data", &tank(), GIB);
    let report = pass(&fake, &[tank()], &[v]).await;
    assert!(!report.failed(), "{}", report.summary());
    assert_ready(&report, 4);
    let mut orphans: Vec<(&str, &str)> = report
        .orphans
        .iter()
        .map(|o| (o.volume_id.as_str(), o.object.as_str()))
        .collect();
    orphans.sort();
    assert_eq!(
        orphans,
        [
            (id(99).as_str(), format!("tank/coloc/{}", id(99)).as_str()),
            ("NOT-AN-ID", "tank/coloc/NOT-AN-ID"),
        ]
    );
    assert_eq!(report.orphans[0].pool, "tank");
    assert_eq!(report.orphans[0].size_bytes, 5 * GIB);
    // Untouched: still there, still mounted.
    let orphan = fake.zfs.object(&id(99)).expect("kept");
    assert_eq!(orphan.mounted_at.as_deref(), Some("/srv/tenants/old/data"));
    for op in [FakeOp::Destroy, FakeOp::Unmount, FakeOp::SetReadOnly] {
        assert_eq!(fake.zfs.calls(op), 0, "{op:?}");
    }
    // A pool declared with no volumes is still searched for orphans, and
    // a volume dropped from the configuration becomes one: absent never
    // means destroy.
    let report = pass(&fake, &[tank()], &[]).await;
    assert_eq!(report.orphans.len(), 3);
    assert!(
        fake.zfs
            .object(&id(4))
            .is_some_and(|o| o.mounted_at.is_some())
    );
    assert_eq!(fake.zfs.calls(FakeOp::Destroy), 0);
}

fn reconciler(fake: &FakeHost) -> Reconciler {
    Reconciler::new(
        NodeName::new("n1").expect("valid"),
        fake.host(),
        StatusHub::new(AgentStatus::default()),
    )
}

fn desired(generation: u64, pools: Vec<PoolSpec>, volumes: Vec<VolumeSpec>) -> DesiredConfig {
    DesiredConfig {
        generation,
        node_name: "n1".into(),
        site: "paris-1".into(),
        labels: HashMap::from([("rack".into(), "b2".into())]),
        pools,
        volumes,
        ..DesiredConfig::default()
    }
}

#[tokio::test]
async fn a_malformed_volume_refuses_the_configuration_and_a_failing_one_stops_no_other() {
    let fake = FakeHost::new("n1");
    fake.zfs.fail_for(FakeOp::Mount, &id(6));
    let mut malformed = volume(8, "bad", &tank(), GIB);
    malformed.tenant = "Not A Tenant".into();
    let good = vec![
        volume(5, "one", &tank(), GIB),
        volume(6, "two", &tank(), GIB),
        volume(7, "three", &tank(), GIB),
    ];
    let mut with_malformed = good.clone();
    with_malformed.push(malformed);
    let r = reconciler(&fake);

    // One malformed entry: the whole configuration is refused, nothing is
    // created, not even the good volumes or the pool.
    let report = r.reconcile(&desired(3, vec![tank()], with_malformed)).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(
        report
            .message
            .starts_with("desired configuration refused: volume #3 (\"Not A Tenant/bad\")"),
        "{}",
        report.message
    );
    assert!(report.message.contains("tenant"), "{}", report.message);
    assert!(!report.storage_observed);
    assert!(report.volumes.is_empty());
    for n in [5, 6, 7, 8] {
        assert!(fake.zfs.object(&id(n)).is_none(), "volume {n} created");
    }
    assert!(fake.zfs.pool("tank").is_none(), "no pool created");
    assert_eq!(fake.zfs.calls(FakeOp::CreatePool), 0);
    assert!(
        r.status().snapshot().labels.is_empty(),
        "labels not applied"
    );

    // Without it: volume 6 fails to mount, the others converge.
    let config = desired(3, vec![tank()], good);
    let report = r.reconcile(&config).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(report.message.contains(&id(6)), "{}", report.message);
    assert!(!report.message.contains(&id(5)), "{}", report.message);

    let observed = report.to_observed();
    assert_eq!(observed.outcome(), ReconcileOutcome::Failed);
    assert!(observed.storage_observed);
    assert_eq!(observed.pools.len(), 1);
    assert_eq!(observed.volumes.len(), 3);
    let by_id = |n: u64| {
        observed
            .volumes
            .iter()
            .find(|v| v.id == id(n))
            .expect("status")
            .clone()
    };
    for n in [5, 7] {
        assert_eq!(by_id(n).phase(), VolumePhase::Ready);
    }
    let failed = by_id(6);
    assert_eq!(failed.phase(), VolumePhase::Error);
    assert!(failed.error.contains("mount"), "{}", failed.error);
    // The rest of the configuration still applied.
    let status = r.status().snapshot();
    assert_eq!(status.labels.get("rack").map(String::as_str), Some("b2"));
    assert_eq!(status.last_outcome, Some(Outcome::Failed));

    // Fixed on the host: the next pass converges.
    fake.zfs.clear_failures();
    let report = r.reconcile(&config).await;
    assert_eq!(report.outcome, Outcome::Applied, "{}", report.message);
    assert_eq!(r.status().snapshot().applied_generation, 3);
}

#[tokio::test]
async fn a_crash_between_steps_converges_without_duplicates() {
    let fake = FakeHost::new("n1");
    let mut v = volume(9, "data", &tank(), GIB);
    v.snapshots = vec!["first".into()];
    let pools = [tank()];
    // Killed after the create, before the mount: the object exists with
    // its id, nothing else happened.
    fake.zfs.fail_next(FakeOp::Mount);
    fake.zfs.fail_next(FakeOp::CreateSnapshot);
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    assert_eq!(status(&report, 9).phase(), VolumePhase::Error);
    assert!(fake.zfs.object(&id(9)).is_some());

    for _ in 0..2 {
        let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
        let s = assert_ready(&report, 9);
        assert_eq!(s.snapshots.len(), 1);
    }
    assert_eq!(fake.zfs.calls(FakeOp::CreateVolume), 1);
    assert_eq!(fake.zfs.calls(FakeOp::CreatePool), 1);
    assert_eq!(fake.zfs.objects().len(), 1);
    assert_eq!(fake.zfs.snapshot_names(&id(9)), ["first"]);
}

#[tokio::test]
async fn a_pool_that_goes_away_fails_its_volumes_until_it_comes_back() {
    let fake = FakeHost::new("n1");
    let pools = [tank()];
    let v = volume(10, "data", &tank(), GIB);
    assert_ready(&pass(&fake, &pools, std::slice::from_ref(&v)).await, 10);

    fake.zfs.set_pool_missing("tank", true);
    let report = pass(&fake, &pools, std::slice::from_ref(&v)).await;
    let s = status(&report, 10);
    assert_eq!(s.phase(), VolumePhase::Error);
    assert!(
        s.error.starts_with("pool tank is not available: "),
        "{}",
        s.error
    );
    assert!(!report.pools[0].present);
    // Its disks hold its signature: no new pool is made over them.
    assert_eq!(fake.zfs.calls(FakeOp::CreatePool), 1);

    fake.zfs.set_pool_missing("tank", false);
    assert_ready(&pass(&fake, &pools, std::slice::from_ref(&v)).await, 10);
    assert_eq!(fake.zfs.calls(FakeOp::CreateVolume), 1);
}

#[tokio::test]
async fn storage_that_cannot_be_listed_is_not_reported_as_empty() {
    let fake = FakeHost::new("n1");
    fake.zfs.fail_next(FakeOp::ListPools);
    let report = pass(&fake, &[tank()], &[volume(11, "data", &tank(), GIB)]).await;
    assert!(!report.observed);
    assert!(report.pools.is_empty() && report.volumes.is_empty());
    assert!(report.failed());
    assert!(
        report.summary().contains("cannot list ZFS pools"),
        "{}",
        report.summary()
    );

    // Nothing declared: nothing to look at, nothing failed.
    let report = pass(&fake, &[], &[]).await;
    assert!(report.observed && !report.failed());
}

#[tokio::test]
async fn rollback_goes_only_to_the_latest_snapshot() {
    let fake = FakeHost::new("n1");
    let mut v = volume(12, "data", &tank(), GIB);
    v.snapshots = vec!["monday".into(), "tuesday".into()];
    let mut retained = volume(13, "old", &tank(), GIB);
    retained.state = VolumeState::Retained.into();
    let config = desired(1, vec![tank()], vec![v, retained]);
    let r = reconciler(&fake);
    fake.zfs.set_used_bytes(&id(12), 0);
    let report = r.reconcile(&config).await;
    // The retained one was never created: it is in error, the rest works.
    assert_eq!(report.outcome, Outcome::Failed);
    fake.zfs.set_used_bytes(&id(12), 300 * MIB);
    let ledger: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::holding(config));

    match r.rollback_volume(&ledger, &id(12), "monday").await {
        Err(StorageError::NotLatest { reason, .. }) => {
            assert!(reason.contains("tuesday is"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.zfs.calls(FakeOp::Rollback), 0);
    assert!(matches!(
        r.rollback_volume(&ledger, &id(12), "sunday").await,
        Err(StorageError::NotLatest { .. })
    ));
    assert!(matches!(
        r.rollback_volume(&ledger, &id(77), "tuesday").await,
        Err(StorageError::UnknownVolume { .. })
    ));
    assert!(matches!(
        r.rollback_volume(&ledger, &id(13), "tuesday").await,
        Err(StorageError::NotActive { .. })
    ));

    let status = r
        .rollback_volume(&ledger, &id(12), "tuesday")
        .await
        .expect("rollback to the latest");
    assert_eq!(status.phase(), VolumePhase::Ready);
    assert_eq!(status.used_bytes, 0, "the data as it was on tuesday");
    assert_eq!(fake.zfs.snapshot_names(&id(12)), ["monday", "tuesday"]);
}

#[tokio::test]
async fn the_agent_resyncs_from_its_ledger_without_the_controller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let v = volume(14, "data", &tank(), GIB);
    FileLedger::new(&state)
        .store(&desired(7, vec![tank()], vec![v]))
        .expect("ledger");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let mut config = AgentConfig::new(
        format!("https://127.0.0.1:{port}"),
        CaSource::Pem("no CA: this node never reaches a controller".into()),
        NodeName::new("n1").expect("valid"),
        &state,
    )
    .expect("config");
    config.join_token = Some(JoinTokenSource::Inline("token-1".into()));
    config.session = SessionConfig {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(500),
    };
    config.resync_interval = Duration::from_millis(100);
    let fake = FakeHost::new("n1");
    let agent = spawn_agent(AgentOptions {
        config,
        host: fake.host(),
        ledger: Arc::new(FileLedger::new(&state)),
        write_state_files: false,
        device_events: None,
    });

    // At start, from the ledger: the volume is created and mounted.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mounted = || {
        fake.zfs
            .object(&id(14))
            .is_some_and(|o| o.mounted_at.as_deref() == Some("/srv/tenants/acme/data"))
    };
    while !mounted() {
        assert!(tokio::time::Instant::now() < deadline, "never mounted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Unmounted behind the agent's back: a later pass mounts it again,
    // with no new configuration.
    let passes = agent.status().borrow().reconcile_passes;
    fake.zfs.force_unmount(&id(14));
    while !mounted() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never mounted again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = agent.status().borrow().clone();
    assert!(status.reconcile_passes > passes, "{status:#?}");
    assert_eq!(status.applied_generation, 7);
    assert!(!status.enrolled);
    assert_eq!(fake.zfs.calls(FakeOp::CreateVolume), 1);
    tokio::time::timeout(DEADLINE, agent.shutdown())
        .await
        .expect("prompt shutdown");
}

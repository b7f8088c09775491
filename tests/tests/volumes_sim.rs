//! Volumes through the whole stack in one process: a real colocd (SQLite,
//! mTLS on loopback) and a simulated agent running the real agent logic
//! (session, ledger, storage reconciler) over the in-memory storage fakes.
//! The fakes stand in for ZFS and LVM here; tests/e2e_storage.rs proves the
//! same story on the real tools in a VM.

use std::time::Duration;

use coloc_agent::AgentHandle;
use coloc_agent::host::{FakeHost, FakeOp};
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;

const DEADLINE: Duration = Duration::from_secs(30);
const MIB: u64 = 1024 * 1024;

async fn wait_vol(
    api: &Api,
    name: &str,
    what: &str,
    cond: impl Fn(&pb::Volume) -> bool,
) -> Result<pb::Volume> {
    wait_volume(api, name, what, DEADLINE, cond).await
}

fn phase(v: &pb::Volume) -> Option<apb::VolumePhase> {
    v.observed
        .as_ref()
        .and_then(|o| apb::VolumePhase::try_from(o.phase).ok())
}

async fn setup() -> Result<(
    TestController,
    Api,
    FakeHost,
    AgentHandle,
    tempfile::TempDir,
)> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 3600).await?;
    let dir = tempfile::tempdir()?;
    let host = FakeHost::new("n1");
    let agent = spawn_sim_node(&ctl, "n1", &token, dir.path(), &host)?;
    wait_node_ready(&admin, "n1", DEADLINE).await?;
    create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
    Ok((ctl, admin, host, agent, dir))
}

async fn pool(admin: &mut Api, name: &str, kind: apb::PoolKind, disk: &str) -> Result<()> {
    create_pool(admin, "n1", name, kind, disk).await?;
    Ok(())
}

async fn create(admin: &mut Api, name: &str, pool: &str, size: u64) -> Result<pb::Volume> {
    let volume = NewVolume {
        tenant: "asso-a",
        name,
        node: "n1",
        pool,
        size_bytes: size,
        encrypted: false,
    };
    create_volume(admin, volume).await
}

#[tokio::test]
async fn a_volume_lives_and_dies_through_controller_and_agent() -> Result<()> {
    init_test_logging();
    let (ctl, mut admin, host, _agent, _dir) = setup().await?;
    pool(&mut admin, "tank", apb::PoolKind::Zfs, "serial:SIM-n1-1").await?;
    // The root disk holds a partition table: refused, untouched.
    pool(&mut admin, "onroot", apb::PoolKind::Zfs, "serial:SIM-n1-0").await?;

    let v = create(&mut admin, "data", "tank", 100 * MIB).await?;
    assert_eq!(v.size_bytes, 100 * MIB, "already a multiple of 4 MiB");
    let v = wait_vol(&admin, "asso-a/data", "ready", |v| {
        phase(v) == Some(apb::VolumePhase::Ready)
    })
    .await?;
    let o = v.observed.clone().unwrap();
    assert!(o.mounted && !o.read_only, "{o:?}");
    assert_eq!(o.mount_path, "/srv/tenants/asso-a/data");
    let tenant = admin
        .tenants
        .get_tenant(pb::GetTenantRequest {
            name: "asso-a".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        host.zfs.owner(&v.id),
        Some((tenant.posix_id, tenant.posix_id))
    );
    assert_eq!(tenant.storage_used_bytes, 100 * MIB);

    let pools = admin
        .storage
        .list_pools(pb::ListPoolsRequest { node: "n1".into() })
        .await?
        .into_inner()
        .pools;
    let onroot = pools.iter().find(|p| p.name == "onroot").unwrap();
    let seen = onroot.observed.as_ref().expect("reported");
    assert!(!seen.present);
    assert!(seen.refused_disks[0].contains("SIM-n1-0"), "{seen:?}");
    assert!(host.zfs.pool("onroot").is_none(), "nothing created on it");

    // Grow, snapshot, roll back (the request goes over the session).
    admin
        .storage
        .resize_volume(pb::ResizeVolumeRequest {
            volume: "asso-a/data".into(),
            size_bytes: 200 * MIB,
            force: false,
        })
        .await?;
    admin
        .storage
        .create_snapshot(pb::SnapshotRequest {
            volume: "asso-a/data".into(),
            snapshot: "before".into(),
        })
        .await?;
    wait_vol(&admin, "asso-a/data", "grown, snapshot taken", |v| {
        v.observed.as_ref().is_some_and(|o| {
            o.size_bytes == 200 * MIB && o.snapshots.iter().any(|s| s.name == "before")
        })
    })
    .await?;
    let rolled = admin
        .storage
        .rollback_volume(pb::RollbackVolumeRequest {
            volume: "asso-a/data".into(),
            snapshot: "before".into(),
            confirm: "asso-a/data".into(),
        })
        .await?
        .into_inner();
    assert_eq!(phase(&rolled), Some(apb::VolumePhase::Ready));
    assert_eq!(host.zfs.calls(FakeOp::Rollback), 1);

    // Delete: retained read-only; restore; then purge after the grace period.
    let deleted = admin
        .storage
        .delete_volume(pb::VolumeRef {
            volume: "asso-a/data".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        deleted.purge_after_unix,
        deleted.deleted_unix + 30 * 86_400,
        "the default grace period"
    );
    wait_vol(&admin, "asso-a/data", "retained", |v| {
        phase(v) == Some(apb::VolumePhase::Retained)
    })
    .await?;
    let obj = host.zfs.object(&v.id).expect("kept on disk");
    assert!(obj.read_only && obj.mounted_at.is_none(), "{obj:?}");
    admin
        .storage
        .restore_volume(pb::VolumeRef {
            volume: "asso-a/data".into(),
        })
        .await?;
    wait_vol(&admin, "asso-a/data", "ready again", |v| {
        phase(v) == Some(apb::VolumePhase::Ready)
    })
    .await?;

    admin
        .storage
        .delete_volume(pb::VolumeRef {
            volume: "asso-a/data".into(),
        })
        .await?;
    ctl.clock.advance_secs(29 * 86_400);
    // Still inside the grace period: nothing is destroyed.
    wait_vol(&admin, "asso-a/data", "retained", |v| {
        phase(v) == Some(apb::VolumePhase::Retained)
    })
    .await?;
    assert!(host.zfs.object(&v.id).is_some());
    ctl.clock.advance_secs(2 * 86_400);
    wait_vol(&admin, &v.id, "destroyed", |v| {
        v.lifecycle == pb::VolumeLifecycle::Destroyed as i32
    })
    .await?;
    assert!(host.zfs.object(&v.id).is_none(), "gone from the disk");
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
    let destroyed: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "volume.destroy")
        .collect();
    assert_eq!(destroyed.len(), 1, "{audit:#?}");
    assert_eq!(destroyed[0].actor, "system");
    Ok(())
}

#[tokio::test]
async fn one_failing_volume_does_not_hold_back_the_others() -> Result<()> {
    init_test_logging();
    let (_ctl, mut admin, host, _agent, _dir) = setup().await?;
    pool(&mut admin, "tank", apb::PoolKind::Zfs, "serial:SIM-n1-1").await?;
    pool(
        &mut admin,
        "vgdata",
        apb::PoolKind::LvmThin,
        "serial:SIM-n1-2",
    )
    .await?;
    let bad = create(&mut admin, "bad", "tank", 64 * MIB).await?;
    host.zfs.fail_for(FakeOp::CreateVolume, &bad.id);
    create(&mut admin, "good", "tank", 64 * MIB).await?;
    create(&mut admin, "files", "vgdata", 64 * MIB).await?;

    for name in ["good", "files"] {
        wait_vol(&admin, &format!("asso-a/{name}"), "ready", |v| {
            phase(v) == Some(apb::VolumePhase::Ready)
        })
        .await?;
    }
    let v = wait_vol(&admin, "asso-a/bad", "in error", |v| {
        phase(v) == Some(apb::VolumePhase::Error)
    })
    .await?;
    let error = v.observed.unwrap().error;
    assert!(!error.is_empty());
    let node = admin
        .nodes
        .get_node(pb::GetNodeRequest { name: "n1".into() })
        .await?
        .into_inner();
    assert_eq!(node.last_outcome, apb::ReconcileOutcome::Failed as i32);
    assert!(node.last_message.contains("bad") || node.last_message.contains(&bad.id));

    // The cause goes away: the next resync converges without a new push.
    host.zfs.clear_failures();
    wait_vol(&admin, "asso-a/bad", "ready after the fault cleared", |v| {
        phase(v) == Some(apb::VolumePhase::Ready)
    })
    .await?;
    assert_eq!(
        host.zfs
            .objects()
            .iter()
            .filter(|o| o.volume_id == bad.id)
            .count(),
        1,
        "created once"
    );
    Ok(())
}

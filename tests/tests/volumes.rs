//! Pools and volumes through a real colocd, with an agent session driven
//! by hand: what the controller tells the node (desired configuration),
//! what it records of the node's reports, who may do what, and the audit
//! log of it all. The agent's own storage work is tested in agent/ and on
//! real disks in e2e_storage.rs.

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use tonic::Code;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A controller with site paris-1, node n1 (raw session) and n2 (enrolled,
/// never connected), a ZFS pool `tank` and an LVM pool `vg` on n1, a ZFS
/// pool `tank` on n2, and participatif tenant asso-a.
struct World {
    ctl: TestController,
    admin: Api,
    agent: RawAgent,
}

async fn world() -> Result<World> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 600).await?;
    let agent = RawAgent::enroll(&ctl, &token, "n1").await?;
    let token = join_token(&mut admin, "paris-1", 600).await?;
    enroll_raw(&ctl, &token, "n2").await?;
    agent
        .wait_desired("first configuration", |d| d.generation == 1)
        .await?;
    pool_on(&mut admin, "n1", "tank", apb::PoolKind::Zfs).await?;
    pool_on(&mut admin, "n1", "vg", apb::PoolKind::LvmThin).await?;
    pool_on(&mut admin, "n2", "tank", apb::PoolKind::Zfs).await?;
    create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
    Ok(World { ctl, admin, agent })
}

/// A single-disk pool on a disk named after it.
async fn pool_on(api: &mut Api, node: &str, name: &str, kind: apb::PoolKind) -> Result<pb::Pool> {
    create_pool(api, node, name, kind, &format!("serial:{name}-{node}-1")).await
}

fn create_req(
    tenant: &str,
    name: &str,
    node: &str,
    pool: &str,
    size: u64,
) -> pb::CreateVolumeRequest {
    pb::CreateVolumeRequest {
        tenant: tenant.into(),
        name: name.into(),
        node: node.into(),
        pool: pool.into(),
        size_bytes: size,
        reservation_bytes: 0,
        encrypted: false,
    }
}

async fn create_volume(
    api: &mut Api,
    tenant: &str,
    name: &str,
    pool: &str,
    size: u64,
) -> std::result::Result<pb::Volume, tonic::Status> {
    api.storage
        .create_volume(create_req(tenant, name, "n1", pool, size))
        .await
        .map(|r| r.into_inner())
}

async fn get_volume(api: &mut Api, volume: &str) -> std::result::Result<pb::Volume, tonic::Status> {
    api.storage
        .get_volume(pb::VolumeRef {
            volume: volume.into(),
        })
        .await
        .map(|r| r.into_inner())
}

fn spec<'a>(d: &'a apb::DesiredConfig, id: &str) -> Option<&'a apb::VolumeSpec> {
    d.volumes.iter().find(|v| v.id == id)
}

fn ready(id: &str, size: u64, snapshots: &[&str]) -> apb::VolumeStatus {
    apb::VolumeStatus {
        id: id.into(),
        phase: apb::VolumePhase::Ready as i32,
        error: String::new(),
        mount_path: String::new(),
        mounted: true,
        read_only: false,
        size_bytes: size,
        used_bytes: 10 * MIB,
        available_bytes: size - 10 * MIB,
        snapshot_bytes: 0,
        snapshots: snapshots
            .iter()
            .map(|s| apb::SnapshotStatus {
                name: s.to_string(),
                created_unix: 1,
                used_bytes: 0,
            })
            .collect(),
        encrypted: false,
    }
}

/// Runs a rollback while the raw agent answers it with `status`.
async fn rollback_answered(
    api: &Api,
    agent: &mut RawAgent,
    volume: &str,
    snapshot: &str,
    status: apb::VolumeStatus,
) -> Result<pb::Volume> {
    let mut api = api.clone();
    let req = pb::RollbackVolumeRequest {
        volume: volume.into(),
        snapshot: snapshot.into(),
        confirm: volume.into(),
    };
    let call = tokio::spawn(async move { api.storage.rollback_volume(req).await });
    let request = agent.next_request().await?;
    let Some(apb::request::Kind::RollbackVolume(rb)) = &request.kind else {
        bail!("expected a rollback request, got {request:?}");
    };
    assert_eq!(rb.volume_id, status.id);
    assert_eq!(rb.snapshot, snapshot);
    agent
        .answer(apb::RequestResult {
            request_id: request.id,
            ok: true,
            error: String::new(),
            payload: Some(apb::request_result::Payload::Volume(status)),
        })
        .await?;
    Ok(call.await??.into_inner())
}

#[tokio::test]
async fn a_volume_lives_through_desired_state_deletion_restore_and_purge() -> Result<()> {
    let World {
        ctl,
        mut admin,
        mut agent,
    } = world().await?;
    let tenant = admin
        .tenants
        .get_tenant(pb::GetTenantRequest {
            name: "asso-a".into(),
        })
        .await?
        .into_inner();
    assert!(tenant.posix_id >= 200_000, "{tenant:?}");
    assert_eq!(tenant.storage_quota_bytes, 100 * GIB);
    assert_eq!(tenant.volume_grace_days, 30);

    // The pools reach the node.
    let d = agent.wait_desired("pools", |d| d.pools.len() == 2).await?;
    let tank = d.pools.iter().find(|p| p.name == "tank").expect("tank");
    assert_eq!(tank.kind, apb::PoolKind::Zfs as i32);
    assert_eq!(tank.disks, ["serial:tank-n1-1"]);

    // A volume: in the desired configuration, owned by the tenant's id,
    // its size rounded up to 4 MiB.
    let v = create_volume(&mut admin, "asso-a", "data", "tank", GIB + 1).await?;
    assert_eq!(v.size_bytes, GIB + 4 * MIB);
    assert_eq!(v.mount_path, "/srv/tenants/asso-a/data");
    assert_eq!(v.lifecycle, pb::VolumeLifecycle::Active as i32);
    assert_eq!(v.id.len(), 16);
    let d = agent
        .wait_desired("volume active", |d| spec(d, &v.id).is_some())
        .await?;
    let s = spec(&d, &v.id).unwrap();
    assert_eq!(s.state, apb::VolumeState::Active as i32);
    assert_eq!(
        (s.owner_uid, s.owner_gid),
        (tenant.posix_id, tenant.posix_id)
    );
    assert_eq!(s.size_bytes, GIB + 4 * MIB);
    assert_eq!(
        (s.tenant.as_str(), s.name.as_str(), s.pool.as_str()),
        ("asso-a", "data", "tank")
    );
    assert_eq!(s.pool_kind, apb::PoolKind::Zfs as i32);

    // The node's report shows up on the volume and the pool.
    agent
        .report_storage(
            d.generation,
            vec![apb::PoolStatus {
                name: "tank".into(),
                kind: apb::PoolKind::Zfs as i32,
                present: true,
                size_bytes: 100 * GIB,
                free_bytes: 90 * GIB,
                health: "ONLINE".into(),
                ..Default::default()
            }],
            vec![ready(&v.id, v.size_bytes, &[])],
            vec![apb::OrphanVolume {
                pool: "tank".into(),
                object: "tank/coloc/00000000000000ff".into(),
                volume_id: "00000000000000ff".into(),
                size_bytes: GIB,
            }],
        )
        .await?;
    let seen = wait_for(
        "observed status",
        std::time::Duration::from_secs(20),
        || {
            let mut admin = admin.clone();
            async move {
                get_volume(&mut admin, "asso-a/data")
                    .await
                    .ok()
                    .filter(|v| v.observed.as_ref().is_some_and(|o| o.mounted))
            }
        },
    )
    .await?;
    assert_eq!(seen.observed.unwrap().used_bytes, 10 * MIB);
    let by_id = get_volume(&mut admin, &v.id).await?;
    assert_eq!(by_id.name, "data");
    let pools = admin
        .storage
        .list_pools(pb::ListPoolsRequest { node: "n1".into() })
        .await?
        .into_inner()
        .pools;
    let tank = pools.iter().find(|p| p.name == "tank").unwrap();
    assert_eq!(tank.observed.as_ref().unwrap().health, "ONLINE");
    assert_eq!(tank.orphans[0].volume_id, "00000000000000ff");
    let node = admin
        .nodes
        .get_node(pb::GetNodeRequest { name: "n1".into() })
        .await?
        .into_inner();
    assert_eq!(node.applied_generation, d.generation);
    let used = admin
        .tenants
        .get_tenant(pb::GetTenantRequest {
            name: "asso-a".into(),
        })
        .await?
        .into_inner()
        .storage_used_bytes;
    assert_eq!(used, GIB + 4 * MIB);

    // Snapshots are desired state, in order; a rollback goes to the
    // latest only, with confirmation, over the session.
    for s in ["s1", "s2"] {
        admin
            .storage
            .create_snapshot(pb::SnapshotRequest {
                volume: "asso-a/data".into(),
                snapshot: s.into(),
            })
            .await?;
    }
    agent
        .wait_desired("snapshots", |d| {
            spec(d, &v.id).is_some_and(|s| s.snapshots == ["s1", "s2"])
        })
        .await?;
    let err = admin
        .storage
        .rollback_volume(pb::RollbackVolumeRequest {
            volume: "asso-a/data".into(),
            snapshot: "s1".into(),
            confirm: "asso-a/data".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(
        err.message().contains("s2"),
        "names the later snapshot: {err}"
    );
    let err = admin
        .storage
        .rollback_volume(pb::RollbackVolumeRequest {
            volume: "asso-a/data".into(),
            snapshot: "s2".into(),
            confirm: "asso-a/other".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let mut after = ready(&v.id, v.size_bytes, &["s1", "s2"]);
    after.used_bytes = 5 * MIB;
    let rolled = rollback_answered(&admin, &mut agent, "asso-a/data", "s2", after).await?;
    assert_eq!(rolled.observed.unwrap().used_bytes, 5 * MIB);

    // Delete: retained, kept for the grace period; restore brings it back.
    let deleted = admin
        .storage
        .delete_volume(pb::VolumeRef {
            volume: "asso-a/data".into(),
        })
        .await?
        .into_inner();
    assert_eq!(deleted.lifecycle, pb::VolumeLifecycle::Retained as i32);
    let now = ctl.now();
    assert!(
        (now - 5..=now).contains(&(deleted.purge_after_unix - 30 * 86_400)),
        "{deleted:?}"
    );
    agent
        .wait_desired("retained", |d| {
            spec(d, &v.id).is_some_and(|s| s.state == apb::VolumeState::Retained as i32)
        })
        .await?;
    let err = admin
        .storage
        .delete_volume(pb::VolumeRef {
            volume: "asso-a/data".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let restored = admin
        .storage
        .restore_volume(pb::VolumeRef {
            volume: v.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(restored.lifecycle, pb::VolumeLifecycle::Active as i32);
    assert_eq!(restored.purge_after_unix, 0);
    agent
        .wait_desired("active again", |d| {
            spec(d, &v.id).is_some_and(|s| s.state == apb::VolumeState::Active as i32)
        })
        .await?;

    // Past the grace period: purged, then destroyed when the node says so.
    admin
        .storage
        .set_tenant_storage(pb::SetTenantStorageRequest {
            name: "asso-a".into(),
            storage_quota_bytes: None,
            volume_grace_days: Some(1),
        })
        .await?;
    admin
        .storage
        .delete_volume(pb::VolumeRef {
            volume: "asso-a/data".into(),
        })
        .await?;
    ctl.clock.advance_secs(2 * 86_400);
    let d = agent
        .wait_desired("purged", |d| {
            spec(d, &v.id).is_some_and(|s| s.state == apb::VolumeState::Purged as i32)
        })
        .await?;
    let purging = get_volume(&mut admin, &v.id).await?;
    assert_eq!(purging.lifecycle, pb::VolumeLifecycle::Purging as i32);
    let err = admin
        .storage
        .restore_volume(pb::VolumeRef {
            volume: v.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let mut gone = ready(&v.id, v.size_bytes, &[]);
    gone.phase = apb::VolumePhase::Destroyed as i32;
    gone.mounted = false;
    agent
        .report_storage(d.generation, vec![], vec![gone], vec![])
        .await?;
    agent
        .wait_desired("dropped from the configuration", |d| {
            spec(d, &v.id).is_none()
        })
        .await?;
    let destroyed = get_volume(&mut admin, &v.id).await?;
    assert_eq!(destroyed.lifecycle, pb::VolumeLifecycle::Destroyed as i32);
    let entries = tenant_audit(&mut admin, "asso-a").await?;
    for action in ["volume.purge", "volume.destroy"] {
        let e = entries
            .iter()
            .find(|e| e.action == action)
            .with_context(|| format!("{action} in {entries:#?}"))?;
        assert_eq!(e.actor, "system");
        assert_eq!(e.target, "volume:asso-a/data");
        assert!(e.detail.contains(&v.id), "{e:?}");
    }
    for action in [
        "volume.create",
        "volume.snapshot.create",
        "volume.rollback",
        "volume.delete",
        "volume.restore",
        "tenant.set-storage",
    ] {
        assert!(
            has_audit_entry(&entries, "user:admin", action, pb::AuditOutcome::Allowed),
            "{action} in {entries:#?}"
        );
    }

    // Destroyed volumes are listed only on request; the name is free.
    let list = |include_destroyed| pb::ListVolumesRequest {
        tenant: "asso-a".into(),
        node: String::new(),
        include_destroyed,
    };
    assert!(
        admin
            .storage
            .list_volumes(list(false))
            .await?
            .into_inner()
            .volumes
            .is_empty()
    );
    assert_eq!(
        admin
            .storage
            .list_volumes(list(true))
            .await?
            .into_inner()
            .volumes
            .len(),
        1
    );
    let again = create_volume(&mut admin, "asso-a", "data", "tank", GIB).await?;
    assert_ne!(again.id, v.id);
    assert_eq!(
        admin
            .tenants
            .get_tenant(pb::GetTenantRequest {
                name: "asso-a".into()
            })
            .await?
            .into_inner()
            .storage_used_bytes,
        GIB
    );

    // A rollback needs the node's session.
    admin
        .storage
        .create_snapshot(pb::SnapshotRequest {
            volume: "asso-a/data".into(),
            snapshot: "s".into(),
        })
        .await?;
    drop(agent);
    wait_for(
        "n1 disconnected",
        std::time::Duration::from_secs(20),
        || {
            let mut admin = admin.clone();
            async move {
                let n = admin
                    .nodes
                    .get_node(pb::GetNodeRequest { name: "n1".into() })
                    .await
                    .ok()?
                    .into_inner();
                (!n.connected).then_some(())
            }
        },
    )
    .await?;
    let err = admin
        .storage
        .rollback_volume(pb::RollbackVolumeRequest {
            volume: "asso-a/data".into(),
            snapshot: "s".into(),
            confirm: "asso-a/data".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    Ok(())
}

#[tokio::test]
async fn quotas_sizes_and_bad_input_are_refused_and_change_nothing() -> Result<()> {
    let World {
        ctl: _ctl,
        mut admin,
        agent,
    } = world().await?;
    admin
        .storage
        .set_tenant_storage(pb::SetTenantStorageRequest {
            name: "asso-a".into(),
            storage_quota_bytes: Some(GIB),
            volume_grace_days: None,
        })
        .await?;
    let zfs = create_volume(&mut admin, "asso-a", "zfs", "tank", 512 * MIB).await?;
    let lvm = create_volume(&mut admin, "asso-a", "lvm", "vg", 256 * MIB).await?;
    let d = agent
        .wait_desired("both volumes", |d| d.volumes.len() == 2)
        .await?;
    let generation = d.generation;

    let code = |r: std::result::Result<pb::Volume, tonic::Status>| match r {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(s) => s.code(),
    };
    // Quota: creation and growth past it.
    assert_eq!(
        code(create_volume(&mut admin, "asso-a", "more", "tank", 512 * MIB).await),
        Code::ResourceExhausted
    );
    let err = admin
        .storage
        .resize_volume(pb::ResizeVolumeRequest {
            volume: "asso-a/zfs".into(),
            size_bytes: 2 * GIB,
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("quota"), "{err}");

    // Shrinking: needs force, and never on LVM thin.
    let resize = |volume: &str, size: u64, force: bool| pb::ResizeVolumeRequest {
        volume: volume.into(),
        size_bytes: size,
        force,
    };
    let err = admin
        .storage
        .resize_volume(resize("asso-a/zfs", 256 * MIB, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let err = admin
        .storage
        .resize_volume(resize("asso-a/lvm", 128 * MIB, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("LVM"), "{err}");

    // Bad input of every kind.
    for (tenant, name, pool, size) in [
        ("asso-a", "a;reboot", "tank", GIB),
        ("asso-a", "../x", "tank", GIB),
        ("asso-a", "Data", "tank", GIB),
        ("asso-a", "", "tank", GIB),
        ("asso-a", "ok", "t;ank", GIB),
        ("asso-a", "ok", "tank", 0),
        ("asso-a", "ok", "tank", MIB),
        ("asso-a", "ok", "tank", 2 << 50),
        ("../asso-a", "ok", "tank", GIB),
    ] {
        assert_eq!(
            code(create_volume(&mut admin, tenant, name, pool, size).await),
            Code::InvalidArgument,
            "{tenant} {name} {pool} {size}"
        );
    }
    let mut reserved = create_req("asso-a", "r", "n1", "vg", 128 * MIB);
    reserved.reservation_bytes = 64 * MIB;
    let err = admin.storage.create_volume(reserved).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "no reservation on LVM: {err}"
    );
    let mut reserved = create_req("asso-a", "r", "n1", "tank", 128 * MIB);
    reserved.reservation_bytes = 256 * MIB;
    let err = admin.storage.create_volume(reserved).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "reservation above size: {err}"
    );
    assert_eq!(
        code(create_volume(&mut admin, "asso-a", "ok", "nopool", 64 * MIB).await),
        Code::NotFound
    );
    assert_eq!(
        code(
            admin
                .storage
                .create_volume(create_req("asso-a", "ok", "ghost", "tank", 64 * MIB))
                .await
                .map(|r| r.into_inner())
        ),
        Code::NotFound
    );
    assert_eq!(
        code(create_volume(&mut admin, "asso-z", "ok", "tank", 64 * MIB).await),
        Code::NotFound
    );
    assert_eq!(
        code(create_volume(&mut admin, "asso-a", "zfs", "tank", 64 * MIB).await),
        Code::AlreadyExists
    );
    for bad in [
        "a;reboot",
        "../x",
        "asso-a/../x",
        "asso-a/",
        "0123456789ABCDEF",
        "",
    ] {
        assert_eq!(
            code(get_volume(&mut admin, bad).await),
            Code::InvalidArgument,
            "{bad}"
        );
        let err = admin
            .storage
            .delete_volume(pb::VolumeRef { volume: bad.into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
    }
    for unknown in ["asso-a/nope", "00000000000000aa"] {
        assert_eq!(
            code(get_volume(&mut admin, unknown).await),
            Code::NotFound,
            "{unknown}"
        );
    }
    for bad in ["a;reboot", "../x", "S1"] {
        let err = admin
            .storage
            .create_snapshot(pb::SnapshotRequest {
                volume: "asso-a/zfs".into(),
                snapshot: bad.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
    }
    // Pools: names, disks and layouts.
    let pool_req = |name: &str, kind: apb::PoolKind, layout: apb::PoolLayout, disks: &[&str]| {
        pb::CreatePoolRequest {
            node: "n2".into(),
            name: name.into(),
            kind: kind as i32,
            layout: layout as i32,
            disks: disks.iter().map(|d| d.to_string()).collect(),
            force: false,
        }
    };
    use apb::PoolKind::{LvmThin, Zfs};
    use apb::PoolLayout::{Mirror, Single};
    for req in [
        pool_req("mirror", Zfs, Single, &["serial:A"]),
        pool_req("a;reboot", Zfs, Single, &["serial:A"]),
        pool_req("data", Zfs, Single, &[]),
        pool_req("data", Zfs, Single, &["serial:a;reboot"]),
        pool_req("data", Zfs, Single, &["/dev/sda"]),
        pool_req("data", Zfs, Mirror, &["serial:A"]),
        pool_req("data", LvmThin, Mirror, &["serial:A", "serial:B"]),
        pool_req("data", LvmThin, Single, &["serial:A", "serial:B"]),
        pool_req("data", apb::PoolKind::Unspecified, Single, &["serial:A"]),
    ] {
        let err = admin.storage.create_pool(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}: {err}");
    }
    let err = admin
        .storage
        .create_pool(pb::CreatePoolRequest {
            node: "ghost".into(),
            ..pool_req("data", Zfs, Single, &["serial:A"])
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Nothing of that reached the node or the store.
    let volumes = admin
        .storage
        .list_volumes(pb::ListVolumesRequest::default())
        .await?
        .into_inner()
        .volumes;
    let mut names: Vec<_> = volumes.iter().map(|v| v.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["lvm", "zfs"]);
    assert_eq!(get_volume(&mut admin, &zfs.id).await?.size_bytes, 512 * MIB);
    assert_eq!(get_volume(&mut admin, &lvm.id).await?.size_bytes, 256 * MIB);
    for n in ["n1", "n2"] {
        let node = admin
            .nodes
            .get_node(pb::GetNodeRequest { name: n.into() })
            .await?
            .into_inner();
        let expected = if n == "n1" { generation } else { 2 };
        assert_eq!(node.desired_generation, expected, "{n}");
    }
    assert_eq!(
        admin
            .storage
            .list_pools(pb::ListPoolsRequest::default())
            .await?
            .into_inner()
            .pools
            .len(),
        3
    );

    // A forced shrink on ZFS is passed on to the agent.
    admin
        .storage
        .resize_volume(resize("asso-a/zfs", 256 * MIB, true))
        .await?;
    agent
        .wait_desired("shrink allowed", |d| {
            spec(d, &zfs.id).is_some_and(|s| s.allow_shrink && s.size_bytes == 256 * MIB)
        })
        .await?;
    // The failures were audited with their tenant.
    let entries = tenant_audit(&mut admin, "asso-a").await?;
    assert!(has_audit_entry(
        &entries,
        "user:admin",
        "volume.create",
        pb::AuditOutcome::Failed
    ));
    assert!(has_audit_entry(
        &entries,
        "user:admin",
        "volume.resize",
        pb::AuditOutcome::Failed
    ));
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Admin,
    /// Operator of participatif asso-a, granted n1.
    OpA,
    /// Operator of asso-a without a grant.
    OpANoGrant,
    /// Operator of participatif asso-b, granted n1.
    OpB,
    /// Member of responsable asso-r. (A responsable tenant has no
    /// operators: colocd refuses to create one, checked below; the policy
    /// for one is unit-tested in auth.rs.)
    MemR,
    /// Member of asso-a.
    MemA,
}

#[tokio::test]
async fn who_may_do_what_with_volumes() -> Result<()> {
    let World {
        ctl,
        mut admin,
        mut agent,
    } = world().await?;
    create_tenant(&mut admin, "asso-b", pb::Offer::Participatif).await?;
    create_tenant(&mut admin, "asso-r", pb::Offer::Responsable).await?;
    let users = [
        (Who::Admin, "admin", "", pb::Role::Admin),
        (Who::OpA, "op-a", "asso-a", pb::Role::Operator),
        (Who::OpANoGrant, "op-a2", "asso-a", pb::Role::Operator),
        (Who::OpB, "op-b", "asso-b", pb::Role::Operator),
        (Who::MemR, "mem-r", "asso-r", pb::Role::Member),
        (Who::MemA, "mem-a", "asso-a", pb::Role::Member),
    ];
    let mut apis = Vec::new();
    for (who, name, tenant, role) in users {
        let api = if who == Who::Admin {
            admin.clone()
        } else {
            let token = create_user(&mut admin, name, tenant, role).await?;
            if role == pb::Role::Operator && who != Who::OpANoGrant {
                admin
                    .users
                    .grant_node(pb::GrantNodeRequest {
                        user: name.into(),
                        node: "n1".into(),
                    })
                    .await?;
            }
            ctl.api(&token).await?
        };
        apis.push((who, name, api));
    }
    // Volumes of three tenants, made by the admin.
    for t in ["asso-a", "asso-b", "asso-r"] {
        create_volume(&mut admin, t, "base", "tank", 64 * MIB).await?;
        admin
            .storage
            .create_snapshot(pb::SnapshotRequest {
                volume: format!("{t}/base"),
                snapshot: "snap".into(),
            })
            .await?;
    }
    let base_a = get_volume(&mut admin, "asso-a/base").await?;

    for (who, name, api) in &mut apis {
        let actor = format!("user:{name}");
        let may_write = matches!(who, Who::Admin | Who::OpA);
        let expect =
            |r: std::result::Result<pb::Volume, tonic::Status>, what: &str| -> Result<()> {
                match (may_write, r) {
                    (true, Ok(_)) => Ok(()),
                    (false, Err(s)) if s.code() == Code::PermissionDenied => Ok(()),
                    (_, r) => bail!("{who:?} {what}: {r:?}"),
                }
            };
        let vol = format!("x-{name}");
        expect(
            create_volume(api, "asso-a", &vol, "tank", 64 * MIB).await,
            "create",
        )?;
        let target = if may_write {
            format!("asso-a/{vol}")
        } else {
            "asso-a/base".into()
        };
        let r = api
            .storage
            .resize_volume(pb::ResizeVolumeRequest {
                volume: target.clone(),
                size_bytes: 128 * MIB,
                force: false,
            })
            .await
            .map(|r| r.into_inner());
        expect(r, "resize")?;
        let r = api
            .storage
            .delete_volume(pb::VolumeRef {
                volume: target.clone(),
            })
            .await
            .map(|r| r.into_inner());
        expect(r, "delete")?;
        if may_write {
            let mut status = ready(&base_a.id, base_a.size_bytes, &["snap"]);
            status.used_bytes = 1;
            let v = rollback_answered(api, &mut agent, "asso-a/base", "snap", status).await?;
            assert_eq!(v.observed.unwrap().used_bytes, 1);
        } else {
            let err = api
                .storage
                .rollback_volume(pb::RollbackVolumeRequest {
                    volume: "asso-a/base".into(),
                    snapshot: "snap".into(),
                    confirm: "asso-a/base".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(
                err.code(),
                Code::PermissionDenied,
                "{who:?} rollback: {err}"
            );
        }

        // Reading: admins everything, the others their own tenant only.
        let listed = api
            .storage
            .list_volumes(pb::ListVolumesRequest::default())
            .await?
            .into_inner()
            .volumes;
        let mut tenants: Vec<_> = listed.iter().map(|v| v.tenant.clone()).collect();
        tenants.dedup();
        let own = match who {
            Who::Admin => vec!["asso-a", "asso-b", "asso-r"],
            Who::OpA | Who::OpANoGrant | Who::MemA => vec!["asso-a"],
            Who::OpB => vec!["asso-b"],
            Who::MemR => vec!["asso-r"],
        };
        assert_eq!(tenants, own, "{who:?} lists");
        let read_a = get_volume(api, "asso-a/base").await;
        assert_eq!(
            read_a.is_ok(),
            matches!(who, Who::Admin | Who::OpA | Who::OpANoGrant | Who::MemA),
            "{who:?} reads asso-a/base: {read_a:?}"
        );
        if let Err(s) = read_a {
            assert_eq!(s.code(), Code::PermissionDenied);
            // By id, another tenant's volume reads as no volume at all.
            let err = get_volume(api, &base_a.id).await.unwrap_err();
            assert_eq!(err.code(), Code::NotFound, "{who:?}");
            assert_eq!(
                err.message(),
                format!("volume {:?} not found", base_a.id),
                "{who:?}"
            );
        }
        let pools = api
            .storage
            .list_pools(pb::ListPoolsRequest::default())
            .await;
        match who {
            Who::Admin => assert_eq!(pools?.into_inner().pools.len(), 3),
            Who::MemA | Who::MemR => {
                assert_eq!(pools.unwrap_err().code(), Code::PermissionDenied)
            }
            Who::OpANoGrant => assert!(pools?.into_inner().pools.is_empty()),
            _ => {
                let pools = pools?.into_inner().pools;
                assert!(
                    pools.iter().all(|p| p.node == "n1") && pools.len() == 2,
                    "{who:?}"
                );
            }
        }
        let err = api
            .storage
            .create_pool(pb::CreatePoolRequest {
                node: "n2".into(),
                name: format!("p-{name}"),
                kind: apb::PoolKind::Zfs as i32,
                layout: apb::PoolLayout::Single as i32,
                disks: vec!["serial:X".into()],
                force: false,
            })
            .await;
        assert_eq!(err.is_ok(), *who == Who::Admin, "{who:?} creates a pool");

        // Every mutation attempt is in the audit log, with asso-a as its
        // tenant.
        let entries = tenant_audit(&mut admin, "asso-a").await?;
        let outcome = if may_write {
            pb::AuditOutcome::Allowed
        } else {
            pb::AuditOutcome::Denied
        };
        for action in [
            "volume.create",
            "volume.resize",
            "volume.delete",
            "volume.rollback",
        ] {
            assert!(
                has_audit_entry(&entries, &actor, action, outcome),
                "{who:?} {action} {outcome:?} in {entries:#?}"
            );
        }
    }

    // A responsable tenant's people cannot change even their own volumes,
    // and it has no operators at all.
    let mem_r = &mut apis[4].2;
    let err = create_volume(mem_r, "asso-r", "mine", "tank", 64 * MIB)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = create_user(&mut admin, "op-r", "asso-r", pb::Role::Operator)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("responsable"), "{err}");
    // Operators of participatif asso-b act on their own tenant.
    let op_b = &mut apis[3].2;
    create_volume(op_b, "asso-b", "mine", "tank", 64 * MIB).await?;

    // Grace period: operators may only lengthen it, members not at all,
    // quotas are the admins'.
    let set = |days: Option<u32>, quota: Option<u64>| pb::SetTenantStorageRequest {
        name: "asso-a".into(),
        storage_quota_bytes: quota,
        volume_grace_days: days,
    };
    let op_a = &mut apis[1].2;
    let t = op_a
        .storage
        .set_tenant_storage(set(Some(60), None))
        .await?
        .into_inner();
    assert_eq!(t.volume_grace_days, 60);
    for (req, what) in [
        (set(Some(10), None), "shorten"),
        (set(Some(60), None), "same"),
        (set(None, Some(GIB)), "quota"),
    ] {
        let err = op_a.storage.set_tenant_storage(req).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{what}: {err}");
    }
    let mem_a = &mut apis[5].2;
    let err = mem_a
        .storage
        .set_tenant_storage(set(Some(90), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let op_b = &mut apis[3].2;
    let err = op_b
        .storage
        .set_tenant_storage(set(Some(90), None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    for days in [0, 3651] {
        let err = admin
            .storage
            .set_tenant_storage(set(Some(days), None))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{days}");
    }
    let t = admin
        .storage
        .set_tenant_storage(set(Some(7), Some(5 * GIB)))
        .await?
        .into_inner();
    assert_eq!((t.volume_grace_days, t.storage_quota_bytes), (7, 5 * GIB));
    Ok(())
}

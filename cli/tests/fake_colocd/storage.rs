//! The fake's tenants, pools and volumes: kept in memory, seeded with a
//! small fleet (a healthy ZFS pool with an orphan, an LVM pool that
//! refused a disk, an active volume with snapshots, a retained one and a
//! destroyed one), answering with the codes colocd uses for each refusal.
//! Every call is recorded in `State::calls`, so a test can show that a
//! bad value never left the CLI.

use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1::storage_server::Storage;
use coloc_proto::controller::v1::tenants_server::Tenants;
use coloc_proto::storage::mount_path;

use super::*;

/// The fake's clock: 2026-01-01 00:00 UTC.
pub const NOW: i64 = 1_767_225_600;
/// When the seeded retained volume asso-x/old is destroyed: 2026-12-28 10:00 UTC.
pub const OLD_PURGE_AFTER: i64 = 1_798_452_000;
const GIB: u64 = 1024 * 1024 * 1024;
/// The seeded active volume asso-x/data.
pub const DATA_ID: &str = "00000000000000d1";

pub fn seed(state: &mut State) {
    state.tenants = vec![
        pb::Tenant {
            name: "asso-x".into(),
            display_name: "Les Amis du Vélo".into(),
            offer: pb::Offer::Participatif as i32,
            membership_expires: "2027-06-30".into(),
            created_unix: NOW,
            storage_quota_bytes: 100 * GIB,
            volume_grace_days: 30,
            posix_id: 200_000,
            ..Default::default()
        },
        pb::Tenant {
            name: "asso-y".into(),
            offer: pb::Offer::Responsable as i32,
            membership_expires: "2026-03-31".into(),
            created_unix: NOW,
            storage_quota_bytes: 100 * GIB,
            volume_grace_days: 30,
            posix_id: 200_001,
            ..Default::default()
        },
    ];
    state.pools = vec![
        pb::Pool {
            node: "n1".into(),
            name: "tank".into(),
            kind: agent::PoolKind::Zfs as i32,
            layout: agent::PoolLayout::Mirror as i32,
            disks: vec!["serial:COLOC0001".into(), "serial:COLOC0002".into()],
            created_unix: NOW,
            observed: Some(agent::PoolStatus {
                name: "tank".into(),
                kind: agent::PoolKind::Zfs as i32,
                present: true,
                size_bytes: 1024 * GIB,
                free_bytes: 900 * GIB,
                health: "ONLINE".into(),
                ..Default::default()
            }),
            orphans: vec![agent::OrphanVolume {
                pool: "tank".into(),
                object: "tank/coloc/00000000000000ff".into(),
                volume_id: "00000000000000ff".into(),
                size_bytes: 5 * GIB,
            }],
            ..Default::default()
        },
        pb::Pool {
            node: "n2".into(),
            name: "vg-data".into(),
            kind: agent::PoolKind::LvmThin as i32,
            layout: agent::PoolLayout::Single as i32,
            disks: vec!["id:nvme-QEMU_NVMe_Ctrl_COLOC0003".into()],
            created_unix: NOW,
            observed: Some(agent::PoolStatus {
                name: "vg-data".into(),
                kind: agent::PoolKind::LvmThin as i32,
                present: false,
                health: String::new(),
                error: "no declared disk is blank".into(),
                refused_disks: vec![
                    "id:nvme-QEMU_NVMe_Ctrl_COLOC0003 (/dev/nvme2n1): ext4 filesystem".into(),
                ],
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    state.volumes = vec![
        pb::Volume {
            id: DATA_ID.into(),
            tenant: "asso-x".into(),
            name: "data".into(),
            node: "n1".into(),
            pool: "tank".into(),
            pool_kind: agent::PoolKind::Zfs as i32,
            size_bytes: 20 * GIB,
            encrypted: true,
            lifecycle: pb::VolumeLifecycle::Active as i32,
            created_unix: NOW,
            mount_path: mount_path("asso-x", "data"),
            snapshots: vec!["daily-1".into(), "before-upgrade".into()],
            observed: Some(agent::VolumeStatus {
                id: DATA_ID.into(),
                phase: agent::VolumePhase::Ready as i32,
                mount_path: mount_path("asso-x", "data"),
                mounted: true,
                size_bytes: 20 * GIB,
                used_bytes: 3 * GIB,
                available_bytes: 17 * GIB,
                snapshot_bytes: 512 * 1024 * 1024,
                snapshots: vec![
                    agent::SnapshotStatus {
                        name: "daily-1".into(),
                        created_unix: 1_767_229_200,
                        used_bytes: 384 * 1024 * 1024,
                    },
                    agent::SnapshotStatus {
                        name: "before-upgrade".into(),
                        created_unix: 1_767_232_800,
                        used_bytes: 128 * 1024 * 1024,
                    },
                ],
                encrypted: true,
                ..Default::default()
            }),
            ..Default::default()
        },
        pb::Volume {
            id: "00000000000000d2".into(),
            tenant: "asso-x".into(),
            name: "old".into(),
            node: "n1".into(),
            pool: "tank".into(),
            pool_kind: agent::PoolKind::Zfs as i32,
            size_bytes: 10 * GIB,
            lifecycle: pb::VolumeLifecycle::Retained as i32,
            created_unix: NOW,
            deleted_unix: OLD_PURGE_AFTER - 30 * 86_400,
            purge_after_unix: OLD_PURGE_AFTER,
            mount_path: mount_path("asso-x", "old"),
            observed: Some(agent::VolumeStatus {
                id: "00000000000000d2".into(),
                phase: agent::VolumePhase::Retained as i32,
                read_only: true,
                size_bytes: 10 * GIB,
                used_bytes: GIB,
                available_bytes: 9 * GIB,
                ..Default::default()
            }),
            ..Default::default()
        },
        pb::Volume {
            id: "00000000000000d3".into(),
            tenant: "asso-y".into(),
            name: "gone".into(),
            node: "n2".into(),
            pool: "vg-data".into(),
            pool_kind: agent::PoolKind::LvmThin as i32,
            size_bytes: GIB,
            lifecycle: pb::VolumeLifecycle::Destroyed as i32,
            created_unix: NOW,
            mount_path: mount_path("asso-y", "gone"),
            ..Default::default()
        },
    ];
}

/// Volumes that still use disk count against the quota.
fn counts(v: &pb::Volume) -> bool {
    v.lifecycle == pb::VolumeLifecycle::Active as i32
        || v.lifecycle == pb::VolumeLifecycle::Retained as i32
}

fn with_usage(state: &State, mut t: pb::Tenant) -> pb::Tenant {
    t.storage_used_bytes = state
        .volumes
        .iter()
        .filter(|v| v.tenant == t.name && counts(v))
        .map(|v| v.size_bytes)
        .sum();
    t
}

fn find_volume<'a>(state: &'a mut State, volume: &str) -> Result<&'a mut pb::Volume, Status> {
    let found = state.volumes.iter_mut().find(|v| {
        v.id == volume
            || (v.lifecycle != pb::VolumeLifecycle::Destroyed as i32
                && format!("{}/{}", v.tenant, v.name) == volume)
    });
    found.ok_or_else(|| Status::not_found(format!("no volume {volume}")))
}

fn check_quota(state: &State, tenant: &str, extra: u64) -> Result<(), Status> {
    let t = state
        .tenants
        .iter()
        .find(|t| t.name == tenant)
        .ok_or_else(|| Status::not_found(format!("no tenant named {tenant}")))?;
    let used = with_usage(state, t.clone()).storage_used_bytes;
    if used + extra > t.storage_quota_bytes {
        return Err(Status::failed_precondition(format!(
            "tenant {tenant} would exceed its storage quota"
        )));
    }
    Ok(())
}

impl Fake {
    pub(super) fn record(&self, call: &'static str) {
        self.state.lock().unwrap().calls.push(call);
    }

    /// Admins may change storage; members of a tenant only read it.
    fn storage_admin<T>(&self, req: &Request<T>, what: &str) -> Result<(), Status> {
        match self.caller(req)? {
            (_, Role::Admin) => Ok(()),
            (name, Role::Member) => Err(Status::permission_denied(format!(
                "user {name} is a member and cannot {what}"
            ))),
        }
    }

    /// The tenant a member may read; None for admins (everything).
    pub(super) fn reader<T>(&self, req: &Request<T>) -> Result<Option<&'static str>, Status> {
        match self.caller(req)? {
            (_, Role::Admin) => Ok(None),
            (_, Role::Member) => Ok(Some("asso-x")),
        }
    }
}

#[tonic::async_trait]
impl Tenants for Fake {
    async fn create_tenant(
        &self,
        req: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        self.record("CreateTenant");
        self.admin(&req)?;
        let r = req.into_inner();
        let mut state = self.state.lock().unwrap();
        if state.tenants.iter().any(|t| t.name == r.name) {
            return Err(Status::already_exists(format!("tenant {} exists", r.name)));
        }
        let posix_id = 200_000 + u32::try_from(state.tenants.len()).unwrap();
        let tenant = pb::Tenant {
            name: r.name,
            display_name: r.display_name,
            offer: r.offer,
            membership_expires: r.membership_expires,
            created_unix: NOW,
            storage_quota_bytes: 100 * GIB,
            volume_grace_days: 30,
            posix_id,
            ..Default::default()
        };
        state.tenants.push(tenant.clone());
        Ok(Response::new(tenant))
    }

    async fn list_tenants(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        self.record("ListTenants");
        let only = self.reader(&req)?;
        let state = self.state.lock().unwrap();
        let tenants = state
            .tenants
            .iter()
            .filter(|t| only.is_none_or(|o| t.name == o))
            .map(|t| with_usage(&state, t.clone()))
            .collect();
        Ok(Response::new(pb::ListTenantsResponse { tenants }))
    }

    async fn get_tenant(
        &self,
        req: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        self.record("GetTenant");
        let only = self.reader(&req)?;
        let name = req.into_inner().name;
        let state = self.state.lock().unwrap();
        state
            .tenants
            .iter()
            .find(|t| t.name == name && only.is_none_or(|o| t.name == o))
            .map(|t| Response::new(with_usage(&state, t.clone())))
            .ok_or_else(|| Status::not_found(format!("no tenant named {name}")))
    }
}

#[tonic::async_trait]
impl Storage for Fake {
    async fn create_pool(
        &self,
        req: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        self.record("CreatePool");
        self.storage_admin(&req, "declare pools")?;
        let r = req.into_inner();
        if r.node != "n1" && r.node != "n2" {
            return Err(Status::not_found(format!("no node named {}", r.node)));
        }
        if r.kind == agent::PoolKind::LvmThin as i32 && r.layout != agent::PoolLayout::Single as i32
        {
            return Err(Status::invalid_argument("lvm pools are single only"));
        }
        let mut state = self.state.lock().unwrap();
        if state
            .pools
            .iter()
            .any(|p| p.node == r.node && p.name == r.name)
        {
            return Err(Status::already_exists(format!(
                "pool {} exists on {}",
                r.name, r.node
            )));
        }
        let pool = pb::Pool {
            node: r.node,
            name: r.name,
            kind: r.kind,
            layout: r.layout,
            disks: r.disks,
            force: r.force,
            created_unix: NOW,
            observed: None,
            orphans: Vec::new(),
        };
        state.pools.push(pool.clone());
        Ok(Response::new(pool))
    }

    async fn list_pools(
        &self,
        req: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        self.record("ListPools");
        self.storage_admin(&req, "list pools")?;
        let node = req.into_inner().node;
        let pools = self
            .state
            .lock()
            .unwrap()
            .pools
            .iter()
            .filter(|p| node.is_empty() || p.node == node)
            .cloned()
            .collect();
        Ok(Response::new(pb::ListPoolsResponse { pools }))
    }

    async fn create_volume(
        &self,
        req: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        self.record("CreateVolume");
        self.storage_admin(&req, "create volumes")?;
        let r = req.into_inner();
        let mut state = self.state.lock().unwrap();
        let pool = state
            .pools
            .iter()
            .find(|p| p.node == r.node && p.name == r.pool)
            .ok_or_else(|| Status::not_found(format!("no pool {} on {}", r.pool, r.node)))?;
        let pool_kind = pool.kind;
        if pool_kind == agent::PoolKind::LvmThin as i32 && r.reservation_bytes > 0 {
            return Err(Status::failed_precondition(
                "thin LVM pools cannot reserve space",
            ));
        }
        check_quota(&state, &r.tenant, r.size_bytes)?;
        if state.volumes.iter().any(|v| {
            v.tenant == r.tenant
                && v.name == r.name
                && v.lifecycle != pb::VolumeLifecycle::Destroyed as i32
        }) {
            return Err(Status::already_exists(format!(
                "volume {}/{} exists",
                r.tenant, r.name
            )));
        }
        state.next_volume += 1;
        let volume = pb::Volume {
            id: format!("{:016x}", 0xa000 + state.next_volume),
            mount_path: mount_path(&r.tenant, &r.name),
            tenant: r.tenant,
            name: r.name,
            node: r.node,
            pool: r.pool,
            pool_kind,
            size_bytes: r.size_bytes,
            reservation_bytes: r.reservation_bytes,
            encrypted: r.encrypted,
            lifecycle: pb::VolumeLifecycle::Active as i32,
            created_unix: NOW,
            ..Default::default()
        };
        state.volumes.push(volume.clone());
        Ok(Response::new(volume))
    }

    async fn list_volumes(
        &self,
        req: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        self.record("ListVolumes");
        let only = self.reader(&req)?;
        let r = req.into_inner();
        let volumes = self
            .state
            .lock()
            .unwrap()
            .volumes
            .iter()
            .filter(|v| only.is_none_or(|o| v.tenant == o))
            .filter(|v| r.tenant.is_empty() || v.tenant == r.tenant)
            .filter(|v| r.node.is_empty() || v.node == r.node)
            .filter(|v| r.include_destroyed || v.lifecycle != pb::VolumeLifecycle::Destroyed as i32)
            .cloned()
            .collect();
        Ok(Response::new(pb::ListVolumesResponse { volumes }))
    }

    async fn get_volume(
        &self,
        req: Request<pb::VolumeRef>,
    ) -> Result<Response<pb::Volume>, Status> {
        self.record("GetVolume");
        let only = self.reader(&req)?;
        let r = req.into_inner();
        let mut state = self.state.lock().unwrap();
        let v = find_volume(&mut state, &r.volume)?;
        if only.is_some_and(|o| v.tenant != o) {
            return Err(Status::not_found(format!("no volume {}", r.volume)));
        }
        Ok(Response::new(v.clone()))
    }

    async fn resize_volume(
        &self,
        req: Request<pb::ResizeVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        self.record("ResizeVolume");
        self.storage_admin(&req, "resize volumes")?;
        let r = req.into_inner();
        let mut state = self.state.lock().unwrap();
        let (tenant, size) = {
            let v = find_volume(&mut state, &r.volume)?;
            (v.tenant.clone(), v.size_bytes)
        };
        if r.size_bytes < size && !r.force {
            return Err(Status::failed_precondition(format!(
                "{} is smaller than the volume's size; pass force to shrink",
                r.size_bytes
            )));
        }
        check_quota(&state, &tenant, r.size_bytes.saturating_sub(size))?;
        let v = find_volume(&mut state, &r.volume)?;
        v.size_bytes = r.size_bytes;
        Ok(Response::new(v.clone()))
    }

    async fn delete_volume(
        &self,
        req: Request<pb::VolumeRef>,
    ) -> Result<Response<pb::Volume>, Status> {
        self.record("DeleteVolume");
        self.storage_admin(&req, "delete volumes")?;
        let r = req.into_inner();
        let mut state = self.state.lock().unwrap();
        let tenant = find_volume(&mut state, &r.volume)?.tenant.clone();
        let grace_days = state
            .tenants
            .iter()
            .find(|t| t.name == tenant)
            .map_or(30, |t| t.volume_grace_days);
        let v = find_volume(&mut state, &r.volume)?;
        if v.lifecycle != pb::VolumeLifecycle::Active as i32 {
            return Err(Status::failed_precondition(format!(
                "volume {}/{} is already deleted",
                v.tenant, v.name
            )));
        }
        v.lifecycle = pb::VolumeLifecycle::Retained as i32;
        v.deleted_unix = NOW;
        v.purge_after_unix = NOW + i64::from(grace_days) * 86_400;
        Ok(Response::new(v.clone()))
    }

    async fn restore_volume(
        &self,
        req: Request<pb::VolumeRef>,
    ) -> Result<Response<pb::Volume>, Status> {
        self.record("RestoreVolume");
        self.storage_admin(&req, "restore volumes")?;
        let r = req.into_inner();
        let mut state = self.state.lock().unwrap();
        let v = find_volume(&mut state, &r.volume)?;
        if v.lifecycle != pb::VolumeLifecycle::Retained as i32 {
            return Err(Status::failed_precondition(format!(
                "volume {}/{} is not deleted",
                v.tenant, v.name
            )));
        }
        v.lifecycle = pb::VolumeLifecycle::Active as i32;
        v.deleted_unix = 0;
        v.purge_after_unix = 0;
        Ok(Response::new(v.clone()))
    }

    async fn create_snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        self.record("CreateSnapshot");
        self.storage_admin(&req, "take snapshots")?;
        let r = req.into_inner();
        let mut state = self.state.lock().unwrap();
        let v = find_volume(&mut state, &r.volume)?;
        if v.snapshots.contains(&r.snapshot) {
            return Err(Status::already_exists(format!(
                "snapshot {} of {}/{} exists",
                r.snapshot, v.tenant, v.name
            )));
        }
        v.snapshots.push(r.snapshot);
        Ok(Response::new(v.clone()))
    }

    async fn delete_snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        self.record("DeleteSnapshot");
        self.storage_admin(&req, "delete snapshots")?;
        let r = req.into_inner();
        let mut state = self.state.lock().unwrap();
        let v = find_volume(&mut state, &r.volume)?;
        let before = v.snapshots.len();
        v.snapshots.retain(|s| s != &r.snapshot);
        if v.snapshots.len() == before {
            return Err(Status::not_found(format!(
                "no snapshot {} of {}/{}",
                r.snapshot, v.tenant, v.name
            )));
        }
        Ok(Response::new(v.clone()))
    }

    async fn rollback_volume(
        &self,
        req: Request<pb::RollbackVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        self.record("RollbackVolume");
        self.storage_admin(&req, "roll back volumes")?;
        let r = req.into_inner();
        let mut state = self.state.lock().unwrap();
        let v = find_volume(&mut state, &r.volume)?;
        let name = format!("{}/{}", v.tenant, v.name);
        if r.confirm != name {
            return Err(Status::invalid_argument(format!(
                "confirm must repeat {name}"
            )));
        }
        match v.snapshots.last() {
            Some(last) if *last == r.snapshot => Ok(Response::new(v.clone())),
            Some(last) if v.snapshots.contains(&r.snapshot) => {
                Err(Status::failed_precondition(format!(
                    "{} is not the most recent snapshot of {name} ({last} is); delete the later snapshots first",
                    r.snapshot
                )))
            }
            _ => Err(Status::not_found(format!(
                "no snapshot {} of {name}",
                r.snapshot
            ))),
        }
    }

    async fn set_tenant_storage(
        &self,
        req: Request<pb::SetTenantStorageRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        self.record("SetTenantStorage");
        self.storage_admin(&req, "change a tenant's storage")?;
        let r = req.into_inner();
        let mut state = self.state.lock().unwrap();
        let t = state
            .tenants
            .iter_mut()
            .find(|t| t.name == r.name)
            .ok_or_else(|| Status::not_found(format!("no tenant named {}", r.name)))?;
        if let Some(quota) = r.storage_quota_bytes {
            t.storage_quota_bytes = quota;
        }
        if let Some(days) = r.volume_grace_days {
            t.volume_grace_days = days;
        }
        let t = t.clone();
        Ok(Response::new(with_usage(&state, t)))
    }
}

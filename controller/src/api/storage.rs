//! Pools and volumes (docs/STORAGE.md): declared here, made real on the
//! nodes by their agents from the desired configuration.
//!
//! Every request is parsed into validated values (pool, volume and
//! snapshot names, disk references, sizes) before anything else, and
//! every change goes to the store in one transaction (quota and name
//! checks included) and then to the node's session. Nothing here destroys
//! data directly: deletion only starts a grace period, shrinking needs a
//! force flag, and a rollback needs the caller to repeat the volume's name
//! and only goes back to the latest snapshot.

use coloc_proto::agent::v1::{PoolKind, PoolLayout};
use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::storage_server::Storage;
use coloc_proto::domain::{InvalidInput, NodeName, TenantName};
use coloc_proto::storage::{
    DiskRef, PoolName, SnapshotName, VolumeId, VolumeName, format_size, volume_size,
};
use tonic::{Request, Response, Status};

use super::convert;
use crate::agents::push_nodes;
use crate::auth::{self, Caller, TenantChange};
use crate::context::{AuditScope, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::store::{PoolRecord, TenantStorageChange, VolumeFilter, VolumeLifecycle, VolumeRecord};
use crate::time::date_of;

/// Most disks one pool may be declared on.
const MAX_POOL_DISKS: usize = 64;
/// Longest grace period: ten years.
const MAX_GRACE_DAYS: u32 = 3650;

#[derive(Debug, Clone)]
pub struct StorageApi(pub Ctx);

/// A `volume` field: "<tenant>/<name>" or a volume id.
#[derive(Debug, Clone)]
enum VolumeArg {
    Named(TenantName, VolumeName),
    Id(VolumeId),
}

impl VolumeArg {
    fn parse(text: &str) -> Result<Self, InvalidInput> {
        match text.split_once('/') {
            Some((tenant, name)) => Ok(VolumeArg::Named(
                TenantName::new(tenant)?,
                VolumeName::new(name)?,
            )),
            None => Ok(VolumeArg::Id(VolumeId::new(text)?)),
        }
    }

    fn tenant(&self) -> Option<&TenantName> {
        match self {
            VolumeArg::Named(t, _) => Some(t),
            VolumeArg::Id(_) => None,
        }
    }
}

/// The audit target of a volume, before it is resolved: what the caller
/// wrote, cut short.
fn raw_target(volume: &str) -> String {
    format!("volume:{}", volume.chars().take(100).collect::<String>())
}

fn target_of(v: &VolumeRecord) -> String {
    format!("volume:{}/{}", v.tenant, v.name)
}

fn where_of(v: &VolumeRecord) -> String {
    format!(
        "volume {} ({}) on node {} pool {}",
        v.id,
        format_size(v.size_bytes),
        v.node,
        v.pool
    )
}

fn pool_kind(value: i32) -> Result<PoolKind, InvalidInput> {
    match PoolKind::try_from(value) {
        Ok(k @ (PoolKind::Zfs | PoolKind::LvmThin)) => Ok(k),
        Ok(PoolKind::Unspecified) | Err(_) => {
            Err(InvalidInput::field("pool kind", "must be zfs or lvm-thin"))
        }
    }
}

fn pool_layout(value: i32) -> Result<PoolLayout, InvalidInput> {
    match PoolLayout::try_from(value) {
        Ok(
            l @ (PoolLayout::Single | PoolLayout::Mirror | PoolLayout::Raidz1 | PoolLayout::Raidz2),
        ) => Ok(l),
        Ok(PoolLayout::Unspecified) | Err(_) => Err(InvalidInput::field(
            "pool layout",
            "must be single, mirror, raidz1 or raidz2",
        )),
    }
}

/// The disks a layout needs, per kind: LVM thin is one disk (redundancy
/// is ZFS's job); ZFS follows zpool's own minima.
fn check_layout(kind: PoolKind, layout: PoolLayout, disks: usize) -> Result<(), InvalidInput> {
    let bad = |why: String| Err(InvalidInput::field("pool layout", why));
    match (kind, layout) {
        (PoolKind::LvmThin, PoolLayout::Single) if disks == 1 => Ok(()),
        (PoolKind::LvmThin, PoolLayout::Single) => bad(format!(
            "an lvm-thin pool is on exactly one disk ({disks} given)"
        )),
        (PoolKind::LvmThin, _) => bad(
            "lvm-thin pools are single only (LVM RAID is not offered; use ZFS for redundancy)"
                .into(),
        ),
        (PoolKind::Zfs, PoolLayout::Single) if disks != 1 => bad(format!(
            "a single pool is one disk ({disks} given); striping disks without redundancy \
             is not offered, use mirror or raidz"
        )),
        (PoolKind::Zfs, layout) => {
            let min = match layout {
                PoolLayout::Single => 1,
                // raidz1 on 2 disks is a slower mirror, raidz2 on 3 a
                // slower 3-way mirror: refused, as the agent does.
                PoolLayout::Mirror => 2,
                PoolLayout::Raidz1 => 3,
                PoolLayout::Raidz2 => 4,
                PoolLayout::Unspecified => usize::MAX,
            };
            if disks < min {
                bad(format!(
                    "{} needs at least {min} disks ({disks} given)",
                    layout.as_str_name().to_lowercase()
                ))
            } else {
                Ok(())
            }
        }
        (PoolKind::Unspecified, _) => bad("no pool kind".into()),
    }
}

impl StorageApi {
    /// Finds the volume a request names, checking the caller may read it.
    /// The audit entry gets its tenant and canonical target.
    async fn resolve(
        &self,
        caller: &Caller,
        arg: &VolumeArg,
        audit: &mut AuditScope<'_>,
    ) -> ApiResult<VolumeRecord> {
        let ctx = &self.0;
        // A named volume of another tenant is refused before looking it up.
        if let Some(t) = arg.tenant() {
            auth::require_tenant_read(caller, t)?;
        }
        let v = match arg {
            VolumeArg::Named(t, n) => ctx.store.find_volume(t, n).await?,
            VolumeArg::Id(id) => ctx.store.get_volume(id).await?,
        };
        audit.tenant = Some(v.tenant.clone());
        audit.target = target_of(&v);
        auth::require_tenant_read(caller, &v.tenant)?;
        Ok(v)
    }

    /// Resolves the volume and checks the caller may change it.
    async fn resolve_for_write(
        &self,
        caller: &Caller,
        arg: &VolumeArg,
        audit: &mut AuditScope<'_>,
    ) -> ApiResult<VolumeRecord> {
        let v = self.resolve(caller, arg, audit).await?;
        let tenant = self.0.store.get_tenant(&v.tenant).await?;
        auth::require_tenant_change_on_node(caller, &tenant, &v.node, TenantChange::Volumes)?;
        Ok(v)
    }

    /// Shared shape of the calls that take a volume and change it.
    async fn volume_change<F, Fut>(
        &self,
        req: Request<String>,
        action: &'static str,
        change: F,
    ) -> Result<Response<pb::Volume>, Status>
    where
        F: FnOnce(VolumeRecord) -> Fut,
        Fut: std::future::Future<Output = ApiResult<(VolumeRecord, String)>>,
    {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let volume = req.into_inner();
        let mut audit = ctx.audit(&caller, action, raw_target(&volume));
        let result = async {
            let caller = caller?;
            let arg = VolumeArg::parse(&volume)?;
            audit.tenant = arg.tenant().cloned();
            let v = self.resolve_for_write(&caller, &arg, &mut audit).await?;
            let (v, detail) = change(v).await?;
            push_nodes(ctx, std::slice::from_ref(&v.node)).await;
            audit.detail = detail;
            Ok(convert::volume(v))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }
}

/// Moves the request's metadata (credentials) onto another body.
fn with_body<T, U>(req: Request<T>, body: U) -> Request<U> {
    let (meta, ext, _) = req.into_parts();
    Request::from_parts(meta, ext, body)
}

#[tonic::async_trait]
impl Storage for StorageApi {
    async fn create_pool(
        &self,
        req: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(
            &caller,
            "pool.create",
            format!(
                "pool:{}/{}",
                r.node.chars().take(63).collect::<String>(),
                r.name.chars().take(63).collect::<String>()
            ),
        );
        let result = async {
            let caller = caller?;
            auth::require_admin(&caller, "declaring a pool")?;
            let node = NodeName::new(r.node)?;
            let name = PoolName::new(r.name)?;
            let kind = pool_kind(r.kind)?;
            let layout = pool_layout(r.layout)?;
            if r.disks.is_empty() {
                return Err(InvalidInput::field("disks", "a pool needs at least one disk").into());
            }
            if r.disks.len() > MAX_POOL_DISKS {
                return Err(InvalidInput::field(
                    "disks",
                    format!("at most {MAX_POOL_DISKS} disks per pool"),
                )
                .into());
            }
            let mut disks = Vec::with_capacity(r.disks.len());
            for d in &r.disks {
                let disk = DiskRef::new(d)?;
                if disks.contains(&disk) {
                    return Err(
                        InvalidInput::field("disks", format!("{disk} is listed twice")).into(),
                    );
                }
                disks.push(disk);
            }
            check_layout(kind, layout, disks.len())?;
            ctx.store.get_node(&node).await?;
            let rec = ctx
                .store
                .create_pool(PoolRecord {
                    node,
                    name,
                    kind,
                    layout,
                    disks,
                    force: r.force,
                    created_unix: ctx.clock.now(),
                    observed: None,
                    orphans: Vec::new(),
                })
                .await?;
            push_nodes(ctx, std::slice::from_ref(&rec.node)).await;
            audit.detail = format!(
                "{} {} on {}{}",
                rec.kind.as_str_name().to_lowercase(),
                rec.layout.as_str_name().to_lowercase(),
                rec.disks
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                if rec.force {
                    " (force: disks holding data are wiped)"
                } else {
                    ""
                }
            );
            Ok(convert::pool(rec))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn list_pools(
        &self,
        req: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let audit = ctx.audit_read(&caller, "pool.list", "pools");
        let result = async {
            let caller = caller?;
            auth::require_pool_read(&caller)?;
            let node = match r.node.as_str() {
                "" => None,
                n => {
                    let n = NodeName::new(n)?;
                    auth::require_node_read(&caller, &n)?;
                    Some(n)
                }
            };
            let pools = ctx.store.list_pools(node.as_ref()).await?;
            Ok(pb::ListPoolsResponse {
                pools: pools
                    .into_iter()
                    .filter(|p| auth::can_see_node(&caller, &p.node))
                    .map(convert::pool)
                    .collect(),
            })
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn create_volume(
        &self,
        req: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(
            &caller,
            "volume.create",
            raw_target(&format!("{}/{}", r.tenant, r.name)),
        );
        audit.tenant = TenantName::new(r.tenant.clone()).ok();
        let result = async {
            let caller = caller?;
            let tenant = TenantName::new(r.tenant)?;
            let name = VolumeName::new(r.name)?;
            let node = NodeName::new(r.node)?;
            let pool = PoolName::new(r.pool)?;
            // Another tenant's operators learn nothing, not even whether
            // the tenant exists.
            auth::require_own_tenant_for_change(&caller, &tenant, TenantChange::Volumes)?;
            let tenant_rec = ctx.store.get_tenant(&tenant).await?;
            auth::require_tenant_change_on_node(
                &caller,
                &tenant_rec,
                &node,
                TenantChange::Volumes,
            )?;
            let size = volume_size(r.size_bytes)?;
            ctx.store.get_node(&node).await?;
            let pool_rec = ctx.store.get_pool(&node, &pool).await?;
            if r.reservation_bytes > 0 {
                if pool_rec.kind != PoolKind::Zfs {
                    return Err(InvalidInput::field(
                        "reservation",
                        "only ZFS pools reserve space (thin provisioning reserves nothing)",
                    )
                    .into());
                }
                if r.reservation_bytes > size {
                    return Err(InvalidInput::field(
                        "reservation",
                        format!(
                            "{} is more than the volume's size {}",
                            format_size(r.reservation_bytes),
                            format_size(size)
                        ),
                    )
                    .into());
                }
            }
            let v = ctx
                .store
                .create_volume(
                    VolumeRecord {
                        id: VolumeId::random(),
                        tenant,
                        name,
                        node,
                        pool,
                        pool_kind: pool_rec.kind,
                        size_bytes: size,
                        reservation_bytes: r.reservation_bytes,
                        encrypted: r.encrypted,
                        lifecycle: VolumeLifecycle::Active,
                        created_unix: 0,
                        deleted_unix: None,
                        purge_after_unix: None,
                        snapshots: Vec::new(),
                        allow_shrink: false,
                        observed: None,
                    },
                    ctx.clock.now(),
                )
                .await?;
            push_nodes(ctx, std::slice::from_ref(&v.node)).await;
            audit.target = target_of(&v);
            audit.detail = format!(
                "{}{}{}",
                where_of(&v),
                if v.reservation_bytes > 0 {
                    format!(", {} reserved", format_size(v.reservation_bytes))
                } else {
                    String::new()
                },
                if v.encrypted { ", encrypted" } else { "" }
            );
            Ok(convert::volume(v))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn list_volumes(
        &self,
        req: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit_read(&caller, "volume.list", "volumes");
        audit.tenant = TenantName::new(r.tenant.clone()).ok();
        let result = async {
            let caller = caller?;
            let mut filter = VolumeFilter {
                tenant: match r.tenant.as_str() {
                    "" => None,
                    t => Some(TenantName::new(t)?),
                },
                node: match r.node.as_str() {
                    "" => None,
                    n => Some(NodeName::new(n)?),
                },
                include_destroyed: r.include_destroyed,
            };
            if !caller.is_admin() {
                let own = caller.tenant().cloned().ok_or_else(|| {
                    ApiError::PermissionDenied(format!(
                        "user {} belongs to no tenant",
                        caller.user.name
                    ))
                })?;
                if let Some(t) = &filter.tenant {
                    auth::require_tenant_read(&caller, t)?;
                }
                filter.tenant = Some(own);
            }
            let volumes = ctx.store.list_volumes(filter).await?;
            Ok(pb::ListVolumesResponse {
                volumes: volumes.into_iter().map(convert::volume).collect(),
            })
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn get_volume(
        &self,
        req: Request<pb::VolumeRef>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit_read(&caller, "volume.show", raw_target(&r.volume));
        let result = async {
            let caller = caller?;
            let arg = VolumeArg::parse(&r.volume)?;
            audit.tenant = arg.tenant().cloned();
            let v = self.resolve(&caller, &arg, &mut audit).await?;
            Ok(convert::volume(v))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn resize_volume(
        &self,
        req: Request<pb::ResizeVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        let r = req.get_ref().clone();
        let req = with_body(req, r.volume.clone());
        self.volume_change(req, "volume.resize", |v| async move {
            let size = volume_size(r.size_bytes)?;
            let shrink = size < v.size_bytes;
            if shrink {
                if !r.force {
                    return Err(ApiError::Conflict(format!(
                        "{} is smaller than the volume's {}: shrinking needs force",
                        format_size(size),
                        format_size(v.size_bytes)
                    )));
                }
                if v.pool_kind == PoolKind::LvmThin {
                    return Err(ApiError::Conflict(format!(
                        "volume {}/{} is on LVM thin (ext4), which cannot shrink",
                        v.tenant, v.name
                    )));
                }
                if let Some(o) = &v.observed
                    && o.used_bytes > size
                {
                    return Err(ApiError::Conflict(format!(
                        "volume {}/{} holds {}, more than {}",
                        v.tenant,
                        v.name,
                        format_size(o.used_bytes),
                        format_size(size)
                    )));
                }
            }
            let before = v.size_bytes;
            let v = ctx.store.resize_volume(&v.id, size, shrink).await?;
            let detail = format!(
                "{}: {} -> {}{}",
                where_of(&v),
                format_size(before),
                format_size(v.size_bytes),
                if shrink { " (forced shrink)" } else { "" }
            );
            Ok((v, detail))
        })
        .await
    }

    async fn delete_volume(
        &self,
        req: Request<pb::VolumeRef>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        let volume = req.get_ref().volume.clone();
        let req = with_body(req, volume);
        self.volume_change(req, "volume.delete", |v| async move {
            let v = ctx.store.delete_volume(&v.id, ctx.clock.now()).await?;
            let detail = format!(
                "{}: retained until {}",
                where_of(&v),
                date_of(v.purge_after_unix.unwrap_or_default())
            );
            Ok((v, detail))
        })
        .await
    }

    async fn restore_volume(
        &self,
        req: Request<pb::VolumeRef>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        let volume = req.get_ref().volume.clone();
        let req = with_body(req, volume);
        self.volume_change(req, "volume.restore", |v| async move {
            let v = ctx.store.restore_volume(&v.id, ctx.clock.now()).await?;
            Ok((v.clone(), format!("{}: active again", where_of(&v))))
        })
        .await
    }

    async fn create_snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        let r = req.get_ref().clone();
        let req = with_body(req, r.volume.clone());
        self.volume_change(req, "volume.snapshot.create", |v| async move {
            let snapshot = SnapshotName::new(r.snapshot)?;
            let v = ctx.store.add_snapshot(&v.id, &snapshot).await?;
            Ok((
                v.clone(),
                format!("snapshot {snapshot} of {}", where_of(&v)),
            ))
        })
        .await
    }

    async fn delete_snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        let r = req.get_ref().clone();
        let req = with_body(req, r.volume.clone());
        self.volume_change(req, "volume.snapshot.delete", |v| async move {
            let snapshot = SnapshotName::new(r.snapshot)?;
            let v = ctx.store.remove_snapshot(&v.id, &snapshot).await?;
            Ok((
                v.clone(),
                format!("snapshot {snapshot} of {}", where_of(&v)),
            ))
        })
        .await
    }

    async fn rollback_volume(
        &self,
        req: Request<pb::RollbackVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(&caller, "volume.rollback", raw_target(&r.volume));
        let result = async {
            let caller = caller?;
            let arg = VolumeArg::parse(&r.volume)?;
            audit.tenant = arg.tenant().cloned();
            let snapshot = SnapshotName::new(r.snapshot)?;
            let v = self.resolve_for_write(&caller, &arg, &mut audit).await?;
            let full = format!("{}/{}", v.tenant, v.name);
            if r.confirm != full {
                return Err(InvalidInput::field(
                    "confirm",
                    format!("a rollback loses the volume's newer data: confirm with {full:?}"),
                )
                .into());
            }
            if v.lifecycle != VolumeLifecycle::Active {
                return Err(ApiError::Conflict(format!(
                    "volume {full} is {}; only an active volume can be rolled back",
                    v.lifecycle.as_str()
                )));
            }
            let Some(pos) = v.snapshots.iter().position(|s| s == &snapshot) else {
                return Err(crate::store::StoreError::NotFound {
                    kind: "snapshot",
                    name: format!("{full}@{snapshot}"),
                }
                .into());
            };
            let later = &v.snapshots[pos + 1..];
            if !later.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "{snapshot} is not the latest snapshot of {full}; a rollback never \
                     destroys snapshots, so delete the later ones first: {}",
                    later
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let status = ctx
                .sessions
                .rollback_volume(&v.node, &v.id, &snapshot)
                .await?;
            let v = ctx.store.set_volume_observed(&v.id, &status).await?;
            audit.detail = format!("{} rolled back to {snapshot}", where_of(&v));
            Ok(convert::volume(v))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }

    async fn set_tenant_storage(
        &self,
        req: Request<pb::SetTenantStorageRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let ctx = &self.0;
        let caller = ctx.caller(&req).await;
        let r = req.into_inner();
        let mut audit = ctx.audit(
            &caller,
            "tenant.set-storage",
            format!("tenant:{}", r.name.chars().take(63).collect::<String>()),
        );
        audit.tenant = TenantName::new(r.name.clone()).ok();
        let result = async {
            let caller = caller?;
            let name = TenantName::new(r.name)?;
            if r.storage_quota_bytes.is_none() && r.volume_grace_days.is_none() {
                return Err(InvalidInput::field(
                    "storage",
                    "nothing to change: give a quota or a grace period",
                )
                .into());
            }
            if r.storage_quota_bytes.is_some() {
                auth::require_admin(&caller, "setting a storage quota")?;
            }
            if !caller.is_admin() && caller.tenant() != Some(&name) {
                return Err(ApiError::PermissionDenied(format!(
                    "user {} cannot change the storage of tenant {name}",
                    caller.user.name
                )));
            }
            if let Some(q) = r.storage_quota_bytes
                && i64::try_from(q).is_err()
            {
                return Err(InvalidInput::field("quota", "too large").into());
            }
            let tenant = ctx.store.get_tenant(&name).await?;
            if let Some(days) = r.volume_grace_days {
                if !(1..=MAX_GRACE_DAYS).contains(&days) {
                    return Err(InvalidInput::field(
                        "grace days",
                        format!("{days} is outside 1 to {MAX_GRACE_DAYS}"),
                    )
                    .into());
                }
                auth::require_grace_change(&caller, &tenant, days)?;
            }
            let rec = ctx
                .store
                .set_tenant_storage(
                    &name,
                    TenantStorageChange {
                        storage_quota_bytes: r.storage_quota_bytes,
                        volume_grace_days: r.volume_grace_days,
                    },
                )
                .await?;
            audit.detail = format!(
                "quota {}, grace period {} days",
                format_size(rec.storage_quota_bytes),
                rec.volume_grace_days
            );
            Ok(convert::tenant(rec, ctx.clock.now()))
        }
        .await;
        audit.finish(result).await.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_refs_are_names_or_ids() {
        assert!(matches!(
            VolumeArg::parse("asso-a/data").unwrap(),
            VolumeArg::Named(t, n) if t.as_str() == "asso-a" && n.as_str() == "data"
        ));
        assert!(matches!(
            VolumeArg::parse("0123456789abcdef").unwrap(),
            VolumeArg::Id(_)
        ));
        for bad in [
            "",
            "data",
            "asso-a/",
            "/data",
            "asso-a/../x",
            "../x",
            "a;reboot",
            "asso-a/a;reboot",
            "asso-a/data/x",
            "0123456789ABCDEF",
        ] {
            assert!(VolumeArg::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn layouts_fit_their_kind() {
        use PoolKind::*;
        use PoolLayout::*;
        assert!(check_layout(LvmThin, Single, 1).is_ok());
        assert!(check_layout(LvmThin, Single, 2).is_err());
        assert!(check_layout(LvmThin, Mirror, 2).is_err());
        assert!(check_layout(Zfs, Single, 1).is_ok());
        assert!(check_layout(Zfs, Mirror, 1).is_err());
        assert!(check_layout(Zfs, Mirror, 2).is_ok());
        assert!(check_layout(Zfs, Raidz2, 3).is_err());
        assert!(check_layout(Zfs, Raidz2, 4).is_ok());
        assert!(check_layout(Zfs, Raidz1, 2).is_err());
        assert!(check_layout(Zfs, Raidz1, 3).is_ok());
        assert!(pool_kind(0).is_err() && pool_kind(99).is_err());
        assert!(pool_layout(0).is_err() && pool_layout(-1).is_err());
    }
}

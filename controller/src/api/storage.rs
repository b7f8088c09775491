//! Pools and volumes (docs/STORAGE.md): declared here, made real on the
//! nodes by their agents from the desired configuration.
//!
//! Every request is converted into validated values ([`super::wire::storage`]:
//! pool, volume and snapshot names, disk references, sizes) before anything
//! else, and every change goes to the store in one transaction (quota and
//! name checks included) and then to the node's session. Nothing here
//! destroys data directly: deletion only starts a grace period, shrinking
//! needs a force flag, and a rollback needs the caller to repeat the
//! volume's name and only goes back to the latest snapshot.

use coloc_proto::agent::v1::PoolKind;
use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::storage_server::Storage;
use coloc_proto::domain::InvalidInput;
use coloc_proto::storage::{VolumeId, check_reservation, format_size};
use tonic::{Request, Response, Status};

use super::convert;
use super::tenancy::tenant_view;
use super::wire::storage::{
    CreatePool, CreateVolume, ListPools, OnVolume, ResizeVolume, RollbackVolume, SetTenantStorage,
    VolumeArg, VolumeRequest, VolumeSnapshot,
};
use super::wire::{audit_tenant, shown};
use crate::agents::push_nodes;
use crate::auth::{self, Caller, TenantChange};
use crate::context::{AuditScope, AuditTarget, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::store::{
    PoolRecord, StoreError, TenantStorageChange, VolumeFilter, VolumeLifecycle, VolumeRecord,
};
use crate::time::date_of;

#[derive(Debug, Clone)]
pub struct StorageApi(pub Ctx);

/// The audit target of a volume, before it is resolved: what the caller
/// wrote.
fn raw_target(volume: &str) -> String {
    format!("volume:{}", shown(volume))
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
        audit.tenant = arg.tenant().cloned();
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
        // Reached by id only: another tenant's volume is not found, as an
        // unknown id is.
        auth::unseen("volume", arg, auth::require_tenant_read(caller, &v.tenant))?;
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

    /// Shared shape of the calls that take a volume and change it: the
    /// request `W` converts into `P`, which names the volume; `change`
    /// gets the volume, once the caller may change it, and `P`.
    async fn volume_change<W, P, F, Fut>(
        &self,
        req: Request<W>,
        action: &'static str,
        change: F,
    ) -> Result<Response<pb::Volume>, Status>
    where
        W: VolumeRequest,
        P: TryFrom<W, Error = InvalidInput> + OnVolume,
        F: FnOnce(VolumeRecord, P) -> Fut,
        Fut: std::future::Future<Output = ApiResult<(VolumeRecord, String)>>,
    {
        let ctx = &self.0;
        ctx.mutation(
            req,
            action,
            |r| raw_target(r.volume_text()),
            async |caller, r, audit| {
                let p = P::try_from(r)?;
                let v = self.resolve_for_write(&caller, p.volume(), audit).await?;
                let (v, detail) = change(v, p).await?;
                push_nodes(ctx, std::slice::from_ref(&v.node)).await;
                audit.detail = detail;
                Ok(convert::volume(v))
            },
        )
        .await
    }
}

#[tonic::async_trait]
impl Storage for StorageApi {
    async fn create_pool(
        &self,
        req: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::Pool>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "pool.create",
            |r| format!("pool:{}/{}", shown(&r.node), shown(&r.name)),
            async |caller, r, audit| {
                auth::require_admin(&caller, "declaring a pool")?;
                let CreatePool { node, pool } = r.try_into()?;
                ctx.store.get_node(&node).await?;
                let rec = ctx
                    .store
                    .create_pool(PoolRecord {
                        node,
                        name: pool.name,
                        kind: pool.kind,
                        layout: pool.layout,
                        disks: pool.disks,
                        force: pool.force,
                        created_unix: ctx.clock.now(),
                        observed: None,
                        orphans: Vec::new(),
                    })
                    .await?;
                push_nodes(ctx, std::slice::from_ref(&rec.node)).await;
                let disks: Vec<String> = rec.disks.iter().map(ToString::to_string).collect();
                audit.detail = format!(
                    "{} {} on {}{}",
                    rec.kind.as_str_name().to_lowercase(),
                    rec.layout.as_str_name().to_lowercase(),
                    disks.join(", "),
                    if rec.force {
                        " (force: disks holding data are wiped)"
                    } else {
                        ""
                    }
                );
                Ok(convert::pool(rec))
            },
        )
        .await
    }

    async fn list_pools(
        &self,
        req: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "pool.list",
            |_| "pools",
            async |caller, r, _| {
                auth::require_pool_read(&caller)?;
                let ListPools { node } = r.try_into()?;
                if let Some(n) = &node {
                    auth::require_node_read(&caller, n)?;
                }
                let pools = ctx.store.list_pools(node.as_ref()).await?;
                Ok(pb::ListPoolsResponse {
                    pools: pools
                        .into_iter()
                        .filter(|p| auth::can_see_node(&caller, &p.node))
                        .map(convert::pool)
                        .collect(),
                })
            },
        )
        .await
    }

    async fn create_volume(
        &self,
        req: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "volume.create",
            |r| {
                let target = raw_target(&format!("{}/{}", r.tenant, r.name));
                AuditTarget::new(target, audit_tenant(&r.tenant))
            },
            async |caller, r, audit| {
                let r: CreateVolume = r.try_into()?;
                // Another tenant's operators learn nothing, not even whether
                // the tenant exists.
                auth::require_own_tenant_for_change(&caller, &r.tenant, TenantChange::Volumes)?;
                let tenant = ctx.store.get_tenant(&r.tenant).await?;
                auth::require_tenant_change_on_node(
                    &caller,
                    &tenant,
                    &r.node,
                    TenantChange::Volumes,
                )?;
                ctx.store.get_node(&r.node).await?;
                let pool = ctx.store.get_pool(&r.node, &r.pool).await?;
                check_reservation(pool.kind, r.reservation_bytes, r.size_bytes)?;
                let v = ctx
                    .store
                    .create_volume(
                        VolumeRecord {
                            id: VolumeId::random(),
                            tenant: r.tenant,
                            name: r.name,
                            node: r.node,
                            pool: r.pool,
                            pool_kind: pool.kind,
                            size_bytes: r.size_bytes,
                            reservation_bytes: r.reservation_bytes,
                            encrypted: r.encrypted,
                            lifecycle: VolumeLifecycle::Active,
                            created_unix: 0,
                            deleted_unix: None,
                            purge_after_unix: None,
                            snapshots: Vec::new(),
                            allow_shrink: false,
                            observed: None,
                            node_removed: false,
                        },
                        ctx.clock.now(),
                    )
                    .await?;
                push_nodes(ctx, std::slice::from_ref(&v.node)).await;
                audit.target = target_of(&v);
                let reserved = if v.reservation_bytes > 0 {
                    format!(", {} reserved", format_size(v.reservation_bytes))
                } else {
                    String::new()
                };
                let encrypted = if v.encrypted { ", encrypted" } else { "" };
                audit.detail = format!("{}{reserved}{encrypted}", where_of(&v));
                Ok(convert::volume(v))
            },
        )
        .await
    }

    async fn list_volumes(
        &self,
        req: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "volume.list",
            |r| AuditTarget::new("volumes", audit_tenant(&r.tenant)),
            async |caller, r, _| {
                let mut filter = VolumeFilter::try_from(r)?;
                filter.tenant = auth::listing_tenant(&caller, filter.tenant)?;
                let volumes = ctx.store.list_volumes(filter).await?;
                Ok(pb::ListVolumesResponse {
                    volumes: volumes.into_iter().map(convert::volume).collect(),
                })
            },
        )
        .await
    }

    async fn get_volume(
        &self,
        req: Request<pb::VolumeRef>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "volume.show",
            |r| raw_target(&r.volume),
            async |caller, r, audit| {
                let arg = VolumeArg::try_from(r)?;
                let v = self.resolve(&caller, &arg, audit).await?;
                Ok(convert::volume(v))
            },
        )
        .await
    }

    async fn resize_volume(
        &self,
        req: Request<pb::ResizeVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        self.volume_change(req, "volume.resize", |v, r: ResizeVolume| async move {
            let size = r.size_bytes;
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
        self.volume_change(req, "volume.delete", |v, _: VolumeArg| async move {
            let v = ctx.store.delete_volume(&v.id, ctx.clock.now()).await?;
            let until = date_of(v.purge_after_unix.unwrap_or_default());
            let detail = format!("{}: retained until {until}", where_of(&v));
            Ok((v, detail))
        })
        .await
    }

    async fn restore_volume(
        &self,
        req: Request<pb::VolumeRef>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        self.volume_change(req, "volume.restore", |v, _: VolumeArg| async move {
            let v = ctx.store.restore_volume(&v.id, ctx.clock.now()).await?;
            let detail = format!("{}: active again", where_of(&v));
            Ok((v, detail))
        })
        .await
    }

    async fn create_snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        self.volume_change(
            req,
            "volume.snapshot.create",
            |v, r: VolumeSnapshot| async move {
                let v = ctx.store.add_snapshot(&v.id, &r.snapshot).await?;
                let detail = format!("snapshot {} of {}", r.snapshot, where_of(&v));
                Ok((v, detail))
            },
        )
        .await
    }

    async fn delete_snapshot(
        &self,
        req: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        self.volume_change(
            req,
            "volume.snapshot.delete",
            |v, r: VolumeSnapshot| async move {
                let v = ctx.store.remove_snapshot(&v.id, &r.snapshot).await?;
                let detail = format!("snapshot {} of {}", r.snapshot, where_of(&v));
                Ok((v, detail))
            },
        )
        .await
    }

    async fn rollback_volume(
        &self,
        req: Request<pb::RollbackVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "volume.rollback",
            |r| raw_target(&r.volume),
            async |caller, r, audit| {
                let RollbackVolume {
                    volume,
                    snapshot,
                    confirm,
                } = r.try_into()?;
                let v = self.resolve_for_write(&caller, &volume, audit).await?;
                let full = format!("{}/{}", v.tenant, v.name);
                if confirm != full {
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
                    return Err(StoreError::NotFound {
                        kind: "snapshot",
                        name: format!("{full}@{snapshot}"),
                    }
                    .into());
                };
                let later: Vec<String> = v.snapshots[pos + 1..]
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                if !later.is_empty() {
                    return Err(ApiError::Conflict(format!(
                        "{snapshot} is not the latest snapshot of {full}; a rollback never \
                     destroys snapshots, so delete the later ones first: {}",
                        later.join(", ")
                    )));
                }
                let status = ctx
                    .sessions
                    .rollback_volume(&v.node, &v.id, &snapshot)
                    .await?;
                let v = ctx.store.set_volume_observed(&v.id, &status).await?;
                audit.detail = format!("{} rolled back to {snapshot}", where_of(&v));
                Ok(convert::volume(v))
            },
        )
        .await
    }

    async fn set_tenant_storage(
        &self,
        req: Request<pb::SetTenantStorageRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "tenant.set-storage",
            |r| AuditTarget::new(format!("tenant:{}", shown(&r.name)), audit_tenant(&r.name)),
            async |caller, r, audit| {
                let r: SetTenantStorage = r.try_into()?;
                if r.storage_quota_bytes.is_some() {
                    auth::require_admin(&caller, "setting a storage quota")?;
                }
                if !caller.is_admin() && caller.tenant() != Some(&r.tenant) {
                    return Err(ApiError::PermissionDenied(format!(
                        "user {} cannot change the storage of tenant {}",
                        caller.user.name, r.tenant
                    )));
                }
                let tenant = ctx.store.get_tenant(&r.tenant).await?;
                if let Some(days) = r.volume_grace_days {
                    auth::require_grace_change(&caller, &tenant, days)?;
                }
                let change = TenantStorageChange {
                    storage_quota_bytes: r.storage_quota_bytes,
                    volume_grace_days: r.volume_grace_days,
                };
                let rec = ctx.store.set_tenant_storage(&r.tenant, change).await?;
                audit.detail = format!(
                    "quota {}, grace period {} days",
                    format_size(rec.storage_quota_bytes),
                    rec.volume_grace_days
                );
                Ok(tenant_view(ctx, rec))
            },
        )
        .await
    }
}

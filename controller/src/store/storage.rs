//! The tenants' storage area of the store: pools declared on nodes,
//! volumes through their life (docs/STORAGE.md), snapshots, what agents
//! report about them, and the purge of volumes past their grace period.
//!
//! This module declares records and the trait; it holds no SQL. The
//! quota arithmetic and the lifecycle transitions a backend applies are
//! in [`crate::rules::quota`] and [`crate::rules::volumes`].

use async_trait::async_trait;
use coloc_proto::agent::v1::{OrphanVolume, PoolKind, PoolLayout, PoolStatus, VolumeStatus};
use coloc_proto::domain::{NodeName, TenantName};
use coloc_proto::storage::{DiskRef, PoolName, SnapshotName, VolumeId, VolumeName};

use super::{StoreResult, UnixSecs};

/// Days a deleted volume is kept when nobody said otherwise.
pub const DEFAULT_VOLUME_GRACE_DAYS: u32 = 30;
/// Snapshots one volume may have.
pub const MAX_SNAPSHOTS_PER_VOLUME: usize = 64;

/// A storage pool declared on a node.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRecord {
    pub node: NodeName,
    pub name: PoolName,
    pub kind: PoolKind,
    pub layout: PoolLayout,
    pub disks: Vec<DiskRef>,
    pub force: bool,
    pub created_unix: UnixSecs,
    /// As the agent last reported it; None before the first report.
    pub observed: Option<PoolStatus>,
    /// Orphans the agent last reported in this pool.
    pub orphans: Vec<OrphanVolume>,
}

/// Where a volume stands in its life; see docs/STORAGE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeLifecycle {
    Active,
    /// Deleted, kept until `purge_after_unix`.
    Retained,
    /// Past its grace period; the agent is told to destroy it.
    Purging,
    /// The agent reported it destroyed; kept as a record.
    Destroyed,
}

impl VolumeLifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeLifecycle::Active => "active",
            VolumeLifecycle::Retained => "retained",
            VolumeLifecycle::Purging => "purging",
            VolumeLifecycle::Destroyed => "destroyed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(VolumeLifecycle::Active),
            "retained" => Some(VolumeLifecycle::Retained),
            "purging" => Some(VolumeLifecycle::Purging),
            "destroyed" => Some(VolumeLifecycle::Destroyed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRecord {
    pub id: VolumeId,
    pub tenant: TenantName,
    pub name: VolumeName,
    pub node: NodeName,
    pub pool: PoolName,
    /// The pool's kind (read from the pool; ignored by `create_volume`).
    pub pool_kind: PoolKind,
    pub size_bytes: u64,
    pub reservation_bytes: u64,
    pub encrypted: bool,
    pub lifecycle: VolumeLifecycle,
    pub created_unix: UnixSecs,
    /// Set once deleted (retained, purging, destroyed).
    pub deleted_unix: Option<UnixSecs>,
    pub purge_after_unix: Option<UnixSecs>,
    /// Snapshot names wanted, oldest first.
    pub snapshots: Vec<SnapshotName>,
    /// The last resize was a forced shrink (ZFS): the agent may shrink.
    pub allow_shrink: bool,
    /// As the agent last reported it; None before the first report.
    pub observed: Option<VolumeStatus>,
    /// Its node was removed: an orphan ([`crate::rules::orphans`]). Read
    /// from the node; ignored by `create_volume`.
    pub node_removed: bool,
}

#[derive(Debug, Clone, Default)]
pub struct VolumeFilter {
    pub tenant: Option<TenantName>,
    pub node: Option<NodeName>,
    pub include_destroyed: bool,
}

/// A volume as it goes into a node's desired configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredVolume {
    pub volume: VolumeRecord,
    /// The tenant's POSIX id, owner of the volume's root directory.
    pub owner: u32,
}

/// What an agent reported about its storage after a pass.
#[derive(Debug, Clone, Default)]
pub struct ObservedStorage {
    pub pools: Vec<PoolStatus>,
    pub volumes: Vec<VolumeStatus>,
    pub orphans: Vec<OrphanVolume>,
}

#[async_trait]
pub trait StorageStore: Send + Sync + 'static {
    /// Declares a pool; bumps the node's generation. NotFound for an
    /// unknown node, AlreadyExists for a pool of that name on the node.
    async fn create_pool(&self, pool: PoolRecord) -> StoreResult<PoolRecord>;
    async fn get_pool(&self, node: &NodeName, name: &PoolName) -> StoreResult<PoolRecord>;
    /// Sorted by node then name.
    async fn list_pools(&self, node: Option<&NodeName>) -> StoreResult<Vec<PoolRecord>>;
    /// In one transaction: checks the pool exists on the node, the name is
    /// free among the tenant's volumes that are not destroyed and the
    /// tenant's quota; inserts the volume as active; bumps the node's
    /// generation. The record's lifecycle, dates, snapshots and observed
    /// status are ignored.
    async fn create_volume(&self, volume: VolumeRecord, now: UnixSecs)
    -> StoreResult<VolumeRecord>;
    async fn get_volume(&self, id: &VolumeId) -> StoreResult<VolumeRecord>;
    /// The tenant's volume of that name that is not destroyed, or else the
    /// one destroyed last.
    async fn find_volume(
        &self,
        tenant: &TenantName,
        name: &VolumeName,
    ) -> StoreResult<VolumeRecord>;
    /// Sorted by tenant, name, then creation.
    async fn list_volumes(&self, filter: VolumeFilter) -> StoreResult<Vec<VolumeRecord>>;
    /// New size of an active volume, quota checked; `allow_shrink` is
    /// recorded for the agent. Bumps the generation when the size changes.
    async fn resize_volume(
        &self,
        id: &VolumeId,
        size_bytes: u64,
        allow_shrink: bool,
    ) -> StoreResult<VolumeRecord>;
    /// Active to retained, purge after now + the tenant's grace period.
    /// A volume of a removed node is released instead: destroyed at once,
    /// without its node's generation ([`crate::rules::orphans`]).
    async fn delete_volume(&self, id: &VolumeId, now: UnixSecs) -> StoreResult<VolumeRecord>;
    /// Retained (and not yet due) back to active, quota re-checked.
    async fn restore_volume(&self, id: &VolumeId, now: UnixSecs) -> StoreResult<VolumeRecord>;
    /// Appends a snapshot to an active volume's list.
    async fn add_snapshot(&self, id: &VolumeId, name: &SnapshotName) -> StoreResult<VolumeRecord>;
    async fn remove_snapshot(
        &self,
        id: &VolumeId,
        name: &SnapshotName,
    ) -> StoreResult<VolumeRecord>;
    /// Records a status the agent returned outside a pass (rollback).
    async fn set_volume_observed(
        &self,
        id: &VolumeId,
        status: &VolumeStatus,
    ) -> StoreResult<VolumeRecord>;
    /// Records a node's storage report (Conflict for a removed node).
    /// Purging volumes reported
    /// DESTROYED become destroyed (bumping the generation, so they leave
    /// the desired configuration) and are returned for the audit log.
    /// Statuses of volumes on other nodes are ignored.
    async fn record_storage(
        &self,
        node: &NodeName,
        observed: ObservedStorage,
    ) -> StoreResult<Vec<VolumeRecord>>;
    /// Retained volumes whose purge time has come become purging (bumping
    /// their nodes' generations); returned for the audit log. Volumes of
    /// removed nodes are left alone.
    async fn purge_due(&self, now: UnixSecs) -> StoreResult<Vec<VolumeRecord>>;
}

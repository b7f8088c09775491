//! The storage reconciler: makes the node's pools and tenants' volumes
//! match the desired configuration (docs/STORAGE.md, "Desired state, not
//! commands").
//!
//! It works on declarations checked when the configuration came in
//! ([`crate::desired`]; a malformed entry refuses the whole configuration
//! and never reaches a command). One pass ensures each declared pool (found, else imported,
//! else created on its declared disks only if every one is blank or the
//! pool is declared with `force`), then ensures each volume on its own, so
//! that one failing volume never stops the others, and finally reports
//! every object carrying a coloc id the configuration does not name as an
//! orphan. It decides *which* host operation to run; running it is the job
//! of the [`VolumeBackend`]s behind [`Volumes`]. It never destroys anything
//! the configuration does not explicitly mark PURGED, never re-creates or
//! changes an existing pool, and never talks to the controller or the
//! ledger: the [`Reconciler`](crate::reconcile::Reconciler) calls it and
//! serialises passes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use coloc_proto::agent::v1::{
    OrphanVolume, PoolKind, PoolStatus, SnapshotStatus, VolumePhase, VolumeState, VolumeStatus,
};
use coloc_proto::domain::InvalidInput;
use coloc_proto::storage::{
    DiskRef, PoolDecl, PoolName, SnapshotName, VolumeDecl, VolumeId, format_size,
};

use crate::host::HostError;
use crate::host::volumes::{
    DiskProbe, PoolObservation, VolumeBackend, VolumeObject, VolumeParams, Volumes,
};
use crate::ledger::LedgerError;
use crate::logging::ids;
use coloc_proto::error_chain;

/// What the error of a pool declared on disks that hold data says.
pub const DISKS_HOLD_DATA: &str =
    "disks hold data; not touched (declare the pool with force to wipe them)";

/// Why a storage request (a rollback) could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("volume {id:?} is not in this node's desired configuration")]
    UnknownVolume { id: String },
    #[error("cannot read the ledger")]
    Ledger(#[source] LedgerError),
    #[error("the ledger task did not complete")]
    LedgerTask(#[source] tokio::task::JoinError),
    #[error("volume {id:?} is malformed in the desired configuration")]
    InvalidVolume {
        id: String,
        #[source]
        source: InvalidInput,
    },
    #[error("invalid snapshot name")]
    InvalidSnapshot(#[source] InvalidInput),
    #[error("volume {id} is {state}: only an active volume can be rolled back")]
    NotActive { id: VolumeId, state: &'static str },
    #[error("pool {pool} is not available: {reason}")]
    PoolUnavailable { pool: String, reason: String },
    #[error("volume {id} not found on disk")]
    NotOnDisk { id: VolumeId },
    #[error("cannot roll volume {id} back to {snapshot}: {reason}")]
    NotLatest {
        id: VolumeId,
        snapshot: SnapshotName,
        reason: String,
    },
    #[error("could not {op} volume {id}")]
    Host {
        op: &'static str,
        id: VolumeId,
        #[source]
        source: HostError,
    },
}

/// What a storage pass found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageReport {
    pub pools: Vec<PoolStatus>,
    pub volumes: Vec<VolumeStatus>,
    pub orphans: Vec<OrphanVolume>,
    /// False when nothing could be listed at all (the lists are then
    /// empty, not "nothing exists").
    pub observed: bool,
    /// One line per pool or volume that failed.
    pub failures: Vec<String>,
}

impl StorageReport {
    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
    }

    /// What failed, on one line; empty when nothing did.
    pub fn summary(&self) -> String {
        self.failures.join("; ")
    }
}

/// A checked volume declaration as the steps use it: the backends'
/// parameters plus what the steps decide on.
#[derive(Debug, Clone)]
struct DesiredVolume {
    params: VolumeParams,
    kind: PoolKind,
    state: VolumeState,
    snapshots: Vec<SnapshotName>,
    allow_shrink: bool,
}

fn kind_name(kind: PoolKind) -> &'static str {
    match kind {
        PoolKind::Zfs => "ZFS",
        PoolKind::LvmThin => "LVM thin",
        PoolKind::Unspecified => "unspecified",
    }
}

fn state_name(state: VolumeState) -> &'static str {
    match state {
        VolumeState::Active => "active",
        VolumeState::Retained => "retained",
        VolumeState::Purged => "purged",
        VolumeState::Unspecified => "unspecified",
    }
}

impl From<&VolumeDecl> for DesiredVolume {
    fn from(decl: &VolumeDecl) -> DesiredVolume {
        DesiredVolume {
            params: VolumeParams {
                id: decl.id.clone(),
                tenant: decl.tenant.clone(),
                name: decl.name.clone(),
                pool: decl.pool.clone(),
                size_bytes: decl.size_bytes,
                reservation_bytes: decl.reservation_bytes,
                encrypted: decl.encrypted,
                mount_path: decl.mount_path.clone(),
                owner_uid: decl.owner_uid,
                owner_gid: decl.owner_gid,
            },
            kind: decl.pool_kind,
            state: decl.state,
            snapshots: decl.snapshots.clone(),
            allow_shrink: decl.allow_shrink,
        }
    }
}

/// Whether volumes can live on a pool this pass.
#[derive(Debug, Clone)]
enum PoolAvailability {
    Usable,
    Unusable(String),
}

/// The health words of a pool volumes may be used on.
fn usable_health(health: &str) -> bool {
    matches!(health, "ONLINE" | "DEGRADED")
}

fn unusable_reason(obs: &PoolObservation) -> String {
    if obs.health == "NO-THIN-POOL" {
        "the volume group has no thin pool \"thin\" (an existing group is never changed)".into()
    } else {
        format!("pool health is {}", obs.health)
    }
}

/// One pass's view of the host: each listing is done at most once, and
/// again only after the pass changed what it lists.
struct Pass<'a> {
    volumes: &'a Volumes,
    pool_lists: HashMap<i32, Result<Vec<PoolObservation>, String>>,
    objects: BTreeMap<String, Result<Vec<VolumeObject>, String>>,
    probe: Option<Result<Vec<DiskProbe>, String>>,
    /// Some listing was attempted / succeeded.
    attempted: bool,
    listed: bool,
    failures: Vec<String>,
}

impl<'a> Pass<'a> {
    fn backend(&self, kind: PoolKind) -> Result<&'a Arc<dyn VolumeBackend>, String> {
        self.volumes
            .backend(kind)
            .ok_or_else(|| format!("this agent has no {} backend", kind_name(kind)))
    }

    /// The pool called `name` of `kind`, if the host has it.
    async fn find_pool(
        &mut self,
        kind: PoolKind,
        name: &PoolName,
    ) -> Result<Option<PoolObservation>, String> {
        if !self.pool_lists.contains_key(&(kind as i32)) {
            let listed = match self.backend(kind) {
                Ok(backend) => {
                    self.attempted = true;
                    backend.pools().await.map_err(|e| {
                        format!("cannot list {} pools: {}", kind_name(kind), error_chain(&e))
                    })
                }
                Err(e) => Err(e),
            };
            if listed.is_ok() {
                self.listed = true;
            }
            self.pool_lists.insert(kind as i32, listed);
        }
        match &self.pool_lists[&(kind as i32)] {
            Ok(pools) => Ok(pools.iter().find(|p| p.name == name.as_str()).cloned()),
            Err(e) => Err(e.clone()),
        }
    }

    fn forget_pools(&mut self, kind: PoolKind) {
        self.pool_lists.remove(&(kind as i32));
    }

    async fn probe(&mut self) -> Result<Vec<DiskProbe>, String> {
        if self.probe.is_none() {
            let probed = self
                .volumes
                .disks
                .probe()
                .await
                .map_err(|e| format!("cannot probe disks: {}", error_chain(&e)));
            self.probe = Some(probed);
        }
        self.probe.clone().unwrap_or_else(|| Ok(Vec::new()))
    }

    /// The objects of `pool` as listed at the start of its use this pass.
    async fn objects(
        &mut self,
        backend: &Arc<dyn VolumeBackend>,
        pool: &PoolName,
    ) -> Result<Vec<VolumeObject>, String> {
        if !self.objects.contains_key(pool.as_str()) {
            self.attempted = true;
            let listed = backend
                .volumes(pool)
                .await
                .map_err(|e| format!("cannot list volumes of pool {pool}: {}", error_chain(&e)));
            if listed.is_ok() {
                self.listed = true;
            }
            self.objects.insert(pool.to_string(), listed);
        }
        self.objects[pool.as_str()].clone()
    }

    async fn ensure_pool(&mut self, desired: &PoolDecl) -> PoolStatus {
        let mut status = PoolStatus {
            name: desired.name.to_string(),
            kind: desired.kind.into(),
            ..PoolStatus::default()
        };
        let backend = match self.backend(desired.kind) {
            Ok(backend) => backend,
            Err(e) => {
                status.error = e;
                return status;
            }
        };
        match self.find_pool(desired.kind, &desired.name).await {
            Err(e) => {
                status.error = e;
                return status;
            }
            Ok(Some(found)) => {
                fill_pool(&mut status, &found);
                return status;
            }
            Ok(None) => {}
        }
        match backend.import_pool(&desired.name).await {
            Ok(true) => {
                tracing::info!(message_id = ids::POOL_CREATED, pool = %desired.name, kind = kind_name(desired.kind), "pool imported");
                self.forget_pools(desired.kind);
                self.refill(desired, &mut status, "imported").await;
                return status;
            }
            Ok(false) => {}
            Err(e) => {
                status.error = format!("cannot import the pool: {}", error_chain(&e));
                return status;
            }
        }

        // Not on this host at all: create it, if its disks allow.
        let probed = match self.probe().await {
            Ok(probed) => probed,
            Err(e) => {
                status.error = e;
                return status;
            }
        };
        let mut missing = Vec::new();
        let mut devices: Vec<String> = Vec::new();
        let mut refused = Vec::new();
        for disk in &desired.disks {
            let found = probed.iter().find(|p| match disk {
                DiskRef::Serial(serial) => p.serial.as_deref() == Some(serial.as_str()),
                DiskRef::ById(id) => p.by_id.iter().any(|b| b == id),
            });
            let Some(found) = found else {
                missing.push(format!("disk {disk} not found"));
                continue;
            };
            if devices.contains(&found.device) {
                missing.push(format!(
                    "disk {disk} is {}, already declared under another name",
                    found.device
                ));
                continue;
            }
            devices.push(found.device.clone());
            if let Some(holds) = &found.holds {
                refused.push(format!("{disk} ({}): {holds}", found.device));
            }
        }
        if !missing.is_empty() {
            status.error = missing.join(", ");
            return status;
        }
        if !refused.is_empty() {
            if !desired.force {
                status.refused_disks = refused;
                status.error = DISKS_HOLD_DATA.into();
                return status;
            }
            tracing::warn!(pool = %desired.name, disks = ?refused, "creating the pool with force: wiping disks that hold data");
        }
        if let Err(e) = backend
            .create_pool(&desired.name, desired.layout, &devices, desired.force)
            .await
        {
            status.error = format!("cannot create the pool: {}", error_chain(&e));
            return status;
        }
        tracing::info!(message_id = ids::POOL_CREATED, pool = %desired.name, kind = kind_name(desired.kind), devices = ?devices, "pool created");
        self.forget_pools(desired.kind);
        self.refill(desired, &mut status, "created").await;
        status
    }

    /// Fills `status` from a fresh listing after the pass imported or
    /// created the pool.
    async fn refill(&mut self, desired: &PoolDecl, status: &mut PoolStatus, what: &str) {
        match self.find_pool(desired.kind, &desired.name).await {
            Ok(Some(found)) => fill_pool(status, &found),
            Ok(None) => status.error = format!("pool {what} but not listed afterwards"),
            Err(e) => status.error = e,
        }
    }

    /// Whether volumes of `kind` may use pool `name`: as declared this
    /// pass, or, for a pool not declared, as the host has it.
    async fn availability(
        &mut self,
        declared: &BTreeMap<String, (PoolKind, PoolAvailability)>,
        kind: PoolKind,
        name: &PoolName,
    ) -> PoolAvailability {
        if let Some((declared_kind, availability)) = declared.get(name.as_str()) {
            if *declared_kind != kind {
                return PoolAvailability::Unusable(format!(
                    "it is declared as a {} pool, the volume says {}",
                    kind_name(*declared_kind),
                    kind_name(kind)
                ));
            }
            return availability.clone();
        }
        match self.find_pool(kind, name).await {
            Ok(Some(found)) if usable_health(&found.health) => PoolAvailability::Usable,
            Ok(Some(found)) => PoolAvailability::Unusable(unusable_reason(&found)),
            Ok(None) => {
                PoolAvailability::Unusable("not declared on this node and not found".into())
            }
            Err(e) => PoolAvailability::Unusable(e),
        }
    }
}

fn fill_pool(status: &mut PoolStatus, found: &PoolObservation) {
    status.present = true;
    status.size_bytes = found.size_bytes;
    status.free_bytes = found.free_bytes;
    status.health = found.health.clone();
    if !usable_health(&found.health) {
        status.error = unusable_reason(found);
    }
}

/// One pass over `pools` then `volumes` (see the module documentation).
/// The declarations were checked as a whole when the configuration came
/// in ([`crate::desired`]): names are unique, paths distinct.
pub async fn reconcile_storage(
    volumes: &Volumes,
    pools: &[PoolDecl],
    decls: &[VolumeDecl],
) -> StorageReport {
    let mut pass = Pass {
        volumes,
        pool_lists: HashMap::new(),
        objects: BTreeMap::new(),
        probe: None,
        attempted: false,
        listed: false,
        failures: Vec::new(),
    };

    // Pools.
    let mut pool_statuses = Vec::with_capacity(pools.len());
    let mut declared: BTreeMap<String, (PoolKind, PoolAvailability)> = BTreeMap::new();
    for desired in pools {
        let status = pass.ensure_pool(desired).await;
        let availability = if status.present && status.error.is_empty() {
            PoolAvailability::Usable
        } else if status.error.is_empty() {
            PoolAvailability::Unusable("not present".into())
        } else {
            PoolAvailability::Unusable(status.error.clone())
        };
        declared.insert(desired.name.to_string(), (desired.kind, availability));
        if !status.error.is_empty() {
            tracing::debug!(pool = %status.name, error = %status.error, "pool not usable");
            pass.failures
                .push(format!("pool {}: {}", status.name, status.error));
        }
        pool_statuses.push(status);
    }

    // Volumes, each on its own.
    let desired_ids: BTreeSet<String> = decls.iter().map(|d| d.id.to_string()).collect();
    let mut volume_statuses = Vec::with_capacity(decls.len());
    for decl in decls {
        let d = DesiredVolume::from(decl);
        let label = format!("{} ({}/{})", d.params.id, d.params.tenant, d.params.name);
        let status = ensure_volume(&mut pass, &declared, &d).await;
        if status.phase() == VolumePhase::Error {
            tracing::debug!(volume = %label, error = %status.error, "volume not converged");
            pass.failures
                .push(format!("volume {label}: {}", status.error));
        }
        volume_statuses.push(status);
    }

    // Orphans: in every declared pool that is usable, and every other pool
    // the volumes above led to.
    for (name, (kind, availability)) in &declared {
        if let PoolAvailability::Usable = availability
            && let (Ok(backend), Ok(pool)) = (pass.backend(*kind), PoolName::new(name.as_str()))
            && let Err(e) = pass.objects(backend, &pool).await
        {
            pass.failures.push(format!("pool {name}: {e}"));
        }
    }
    let mut orphans = Vec::new();
    for (pool, listed) in &pass.objects {
        let Ok(objects) = listed else { continue };
        for obj in objects {
            if !desired_ids.contains(&obj.volume_id) {
                // Logged once by the reconciler when first seen.
                tracing::debug!(pool = %pool, object = %obj.object, volume = %obj.volume_id, "orphan volume left alone");
                orphans.push(OrphanVolume {
                    pool: pool.clone(),
                    object: obj.object.clone(),
                    volume_id: obj.volume_id.clone(),
                    size_bytes: obj.size_bytes,
                });
            }
        }
    }

    let observed = pass.listed || !pass.attempted;
    if !observed {
        return StorageReport {
            observed: false,
            failures: pass.failures,
            ..StorageReport::default()
        };
    }
    StorageReport {
        pools: pool_statuses,
        volumes: volume_statuses,
        orphans,
        observed,
        failures: pass.failures,
    }
}

fn error_status(id: String, error: String) -> VolumeStatus {
    VolumeStatus {
        id,
        phase: VolumePhase::Error.into(),
        error,
        ..VolumeStatus::default()
    }
}

/// Brings one volume to its desired state. Every error ends up in the
/// returned status.
async fn ensure_volume(
    pass: &mut Pass<'_>,
    declared: &BTreeMap<String, (PoolKind, PoolAvailability)>,
    d: &DesiredVolume,
) -> VolumeStatus {
    let id = d.params.id.to_string();
    let pool = &d.params.pool;
    match pass.availability(declared, d.kind, pool).await {
        PoolAvailability::Usable => {}
        PoolAvailability::Unusable(reason) => {
            return error_status(id, format!("pool {pool} is not available: {reason}"));
        }
    }
    let backend = match pass.backend(d.kind) {
        Ok(backend) => Arc::clone(backend),
        Err(e) => return error_status(id, e),
    };
    let listed = match pass.objects(&backend, pool).await {
        Ok(listed) => listed,
        Err(e) => return error_status(id, e),
    };
    let found = listed.into_iter().find(|o| o.volume_id == id);
    let mut steps = Steps {
        backend: backend.as_ref(),
        d,
        errors: Vec::new(),
    };
    let obj = match d.state {
        VolumeState::Active => steps.active(found).await,
        VolumeState::Retained => steps.retained(found).await,
        _ => steps.purged(found).await,
    };
    volume_status(d, obj.as_ref(), steps.errors)
}

/// The steps of one volume, collecting errors instead of stopping at the
/// first one where the next steps still make sense.
struct Steps<'a> {
    backend: &'a dyn VolumeBackend,
    d: &'a DesiredVolume,
    errors: Vec<String>,
}

impl Steps<'_> {
    fn fail(&mut self, what: &str, e: &HostError) {
        self.errors.push(format!("{what}: {}", error_chain(e)));
    }

    /// The object as the host has it now.
    async fn reread(&mut self) -> Option<VolumeObject> {
        match self
            .backend
            .volume(&self.d.params.pool, &self.d.params.id)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                self.fail("cannot read the volume back", &e);
                None
            }
        }
    }

    async fn active(&mut self, found: Option<VolumeObject>) -> Option<VolumeObject> {
        let d = self.d;
        let p = &d.params;
        let mut obj = match found {
            Some(obj) => obj,
            None => {
                if let Err(e) = self.backend.create_volume(p).await {
                    self.fail("cannot create the volume", &e);
                    return None;
                }
                tracing::info!(message_id = ids::VOLUME_CREATED, volume = %p.id, tenant = %p.tenant, name = %p.name, pool = %p.pool, size_bytes = p.size_bytes, encrypted = p.encrypted, "volume created");
                match self.reread().await {
                    Some(obj) => obj,
                    None => {
                        if self.errors.is_empty() {
                            self.errors
                                .push("created, but not found on the host afterwards".into());
                        }
                        return None;
                    }
                }
            }
        };
        let mut dirty = false;

        // Read-write first: a read-only device can be neither formatted,
        // grown nor mounted read-write.
        if obj.read_only {
            match self.backend.set_read_only(&obj, false).await {
                Ok(()) => {
                    tracing::info!(volume = %p.id, "volume made read-write");
                    dirty = true;
                }
                Err(e) => self.fail("cannot make the volume read-write", &e),
            }
        }
        let mut prepared = obj.unlocked && obj.has_filesystem;
        if !prepared {
            if std::mem::take(&mut dirty) {
                obj = self.reread().await?;
            }
            match self.backend.prepare(&obj, p).await {
                Ok(()) => {
                    tracing::info!(volume = %p.id, "volume prepared (key loaded, filesystem present)");
                    prepared = true;
                    dirty = true;
                }
                Err(e) => self.fail("cannot prepare the volume", &e),
            }
        }
        if std::mem::take(&mut dirty) {
            obj = self.reread().await?;
        }

        let unfinished_grow = obj.has_filesystem && obj.filesystem_bytes < obj.size_bytes;
        if p.size_bytes < obj.size_bytes && !d.allow_shrink {
            self.errors.push(format!(
                "size {} is below the current {}; shrinking needs allow_shrink",
                format_size(p.size_bytes),
                format_size(obj.size_bytes)
            ));
        } else if prepared
            && (p.size_bytes != obj.size_bytes
                || p.reservation_bytes != obj.reservation_bytes
                || unfinished_grow)
        {
            match self.backend.resize(&obj, p, d.allow_shrink).await {
                Ok(()) => {
                    tracing::info!(volume = %p.id, from_bytes = obj.size_bytes, to_bytes = p.size_bytes, reservation_bytes = p.reservation_bytes, "volume resized");
                    dirty = true;
                }
                Err(e) => self.fail("cannot resize the volume", &e),
            }
        }
        if std::mem::take(&mut dirty) {
            obj = self.reread().await?;
        }

        if prepared {
            // Every pass: mount also puts back the root's owner and mode.
            match self.backend.mount(&obj, p).await {
                Ok(()) => {
                    if obj.mounted_at.as_deref() != Some(p.mount_path.as_str()) {
                        tracing::info!(volume = %p.id, path = %p.mount_path, "volume mounted");
                        dirty = true;
                    }
                }
                Err(e) => self.fail("cannot mount the volume", &e),
            }
        }

        // Snapshots: drop the ones no longer listed first (they hold
        // space), then take the missing ones in the listed order.
        for snap in &obj.snapshots {
            if d.snapshots.iter().any(|s| s.as_str() == snap.name) {
                continue;
            }
            // A snapshot whose name coloc could not have given is not
            // coloc's: leave it.
            let Ok(name) = SnapshotName::new(snap.name.as_str()) else {
                continue;
            };
            match self.backend.destroy_snapshot(&obj, &name).await {
                Ok(()) => {
                    tracing::info!(volume = %p.id, snapshot = %name, "snapshot destroyed");
                    dirty = true;
                }
                Err(e) => self.fail(&format!("cannot destroy snapshot {name}"), &e),
            }
        }
        for name in &d.snapshots {
            if obj.snapshots.iter().any(|s| s.name == name.as_str()) {
                continue;
            }
            match self.backend.create_snapshot(&obj, name).await {
                Ok(()) => {
                    tracing::info!(volume = %p.id, snapshot = %name, "snapshot created");
                    dirty = true;
                }
                Err(e) => self.fail(&format!("cannot create snapshot {name}"), &e),
            }
        }
        if dirty {
            return self.reread().await;
        }
        Some(obj)
    }

    async fn retained(&mut self, found: Option<VolumeObject>) -> Option<VolumeObject> {
        let d = self.d;
        let p = &d.params;
        let Some(obj) = found else {
            self.errors.push("retained volume not found on disk".into());
            return None;
        };
        let mut dirty = false;
        if obj.mounted_at.is_some() {
            match self.backend.unmount(&obj).await {
                Ok(()) => {
                    tracing::info!(volume = %p.id, "retained volume unmounted");
                    dirty = true;
                }
                Err(e) => self.fail("cannot unmount the volume", &e),
            }
        }
        if !obj.read_only {
            match self.backend.set_read_only(&obj, true).await {
                Ok(()) => {
                    tracing::info!(volume = %p.id, "retained volume made read-only");
                    dirty = true;
                }
                Err(e) => self.fail("cannot make the volume read-only", &e),
            }
        }
        if dirty {
            return self.reread().await;
        }
        Some(obj)
    }

    async fn purged(&mut self, found: Option<VolumeObject>) -> Option<VolumeObject> {
        let d = self.d;
        let p = &d.params;
        let obj = found?;
        if let Err(e) = self.backend.destroy(&obj).await {
            self.fail("cannot destroy the volume", &e);
            return Some(obj);
        }
        tracing::info!(message_id = ids::VOLUME_DESTROYED, volume = %p.id, tenant = %p.tenant, name = %p.name, object = %obj.object, "purged volume destroyed with its snapshots");
        let after = self.reread().await;
        if after.is_some() && self.errors.is_empty() {
            self.errors
                .push("still on disk after it was destroyed".into());
        }
        after
    }
}

/// The status of a volume after its steps: its phase follows from the
/// desired state, the errors, and what the host shows.
fn volume_status(
    d: &DesiredVolume,
    obj: Option<&VolumeObject>,
    mut errors: Vec<String>,
) -> VolumeStatus {
    let p = &d.params;
    if errors.is_empty()
        && d.state == VolumeState::Active
        && let Some(obj) = obj
    {
        if obj.mounted_at.as_deref() != Some(p.mount_path.as_str()) {
            errors.push(format!("not mounted at {}", p.mount_path));
        }
        if obj.read_only {
            errors.push("still read-only".into());
        }
        if obj.size_bytes != p.size_bytes {
            errors.push(format!(
                "size is {}, not {}",
                format_size(obj.size_bytes),
                format_size(p.size_bytes)
            ));
        }
    }
    if errors.is_empty() && obj.is_none() && d.state != VolumeState::Purged {
        errors.push("not found on disk".into());
    }
    let phase = if !errors.is_empty() {
        VolumePhase::Error
    } else {
        match d.state {
            VolumeState::Active => VolumePhase::Ready,
            VolumeState::Retained => VolumePhase::Retained,
            _ => VolumePhase::Destroyed,
        }
    };
    let mut status = VolumeStatus {
        id: p.id.to_string(),
        phase: phase.into(),
        error: errors.join("; "),
        mount_path: p.mount_path.clone(),
        encrypted: p.encrypted,
        ..VolumeStatus::default()
    };
    if let Some(obj) = obj {
        if let Some(at) = &obj.mounted_at {
            status.mount_path = at.clone();
        }
        status.mounted = obj.mounted_at.is_some();
        status.read_only = obj.read_only;
        status.size_bytes = obj.size_bytes;
        status.used_bytes = obj.used_bytes;
        status.available_bytes = obj.available_bytes;
        status.snapshot_bytes = obj.snapshot_bytes;
        status.encrypted = obj.encrypted;
        status.snapshots = obj
            .snapshots
            .iter()
            .map(|s| SnapshotStatus {
                name: s.name.clone(),
                created_unix: s.created_unix,
                used_bytes: s.used_bytes,
            })
            .collect();
    }
    status
}

/// Rolls the volume `decl` describes back to `snapshot`, which must be its
/// most recent snapshot, and returns its fresh status. Only an ACTIVE
/// volume is rolled back.
pub async fn rollback(
    volumes: &Volumes,
    decl: &VolumeDecl,
    snapshot: &str,
) -> Result<VolumeStatus, StorageError> {
    let d = DesiredVolume::from(decl);
    let id = d.params.id.clone();
    if d.state != VolumeState::Active {
        return Err(StorageError::NotActive {
            id,
            state: state_name(d.state),
        });
    }
    let name = SnapshotName::new(snapshot).map_err(StorageError::InvalidSnapshot)?;
    let pool = d.params.pool.to_string();
    let backend = volumes
        .backend(d.kind)
        .ok_or_else(|| StorageError::PoolUnavailable {
            pool: pool.clone(),
            reason: format!("this agent has no {} backend", kind_name(d.kind)),
        })?;
    let find = || async {
        backend
            .volumes(&d.params.pool)
            .await
            .map(|objects| objects.into_iter().find(|o| o.volume_id == id.as_str()))
            .map_err(|e| StorageError::PoolUnavailable {
                pool: pool.clone(),
                reason: error_chain(&e),
            })
    };
    let obj = find()
        .await?
        .ok_or_else(|| StorageError::NotOnDisk { id: id.clone() })?;
    let latest = obj.snapshots.last().map(|s| s.name.as_str());
    if latest != Some(name.as_str()) {
        let reason = match latest {
            None => "the volume has no snapshots".to_owned(),
            Some(latest) if obj.snapshots.iter().any(|s| s.name == name.as_str()) => format!(
                "it is not the most recent snapshot ({latest} is); delete the later snapshots first"
            ),
            Some(_) => "no such snapshot".to_owned(),
        };
        return Err(StorageError::NotLatest {
            id,
            snapshot: name,
            reason,
        });
    }
    backend
        .rollback(&obj, &d.params, &name)
        .await
        .map_err(|source| StorageError::Host {
            op: "roll back",
            id: id.clone(),
            source,
        })?;
    tracing::debug!(volume = %id, snapshot = %name, "volume rolled back");
    let after = find().await?;
    Ok(volume_status(&d, after.as_ref(), Vec::new()))
}

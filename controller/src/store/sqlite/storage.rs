//! Pools, volumes and snapshots in SQLite, the storage reports of nodes
//! and the purge of volumes past their grace period.
//!
//! Every change reads the volume (and the tenant's usage) inside an
//! IMMEDIATE transaction, asks [`crate::rules::volumes`] and
//! [`crate::rules::quota`] and writes the answer, so two changes racing
//! for the tenant's last bytes cannot both pass. [`load_volume`],
//! [`volume_label`] and [`desired_volumes`] are also read by the apps and
//! nodes areas.

use std::collections::BTreeSet;

use async_trait::async_trait;
use coloc_proto::agent::v1::{OrphanVolume, PoolKind, PoolLayout, PoolStatus, VolumeStatus};
use coloc_proto::domain::{NodeName, TenantName};
use coloc_proto::storage::{DiskRef, PoolName, SnapshotName, VolumeId, VolumeName};
use prost::Message;
use rusqlite::types::Type;
use rusqlite::{Connection, Row, params};

use super::nodes::{bump_generation, require_live_node};
use super::tenancy::load_tenant;
use super::{
    Db, SqliteError, SqliteStore, blob, conflict, conversion, corrupt, insert_err, json_list,
    not_found, parsed, query_all, query_opt, small, to_i64, to_json, unsigned,
};
use crate::rules::orphans;
use crate::rules::quota::{OverQuota, Usage};
use crate::rules::volumes::{self, ReportEffect, SnapshotRefused};
use crate::store::{
    DesiredVolume, ObservedStorage, PoolRecord, StorageStore, StoreError, StoreResult, UnixSecs,
    VolumeFilter, VolumeLifecycle, VolumeRecord,
};

fn pool_kind_str(kind: PoolKind) -> &'static str {
    match kind {
        PoolKind::Zfs => "zfs",
        PoolKind::LvmThin => "lvm-thin",
        // Refused by the table's CHECK: the API never stores it.
        PoolKind::Unspecified => "unspecified",
    }
}

fn pool_kind_parse(s: String) -> Result<PoolKind, SqliteError> {
    match s.as_str() {
        "zfs" => Ok(PoolKind::Zfs),
        "lvm-thin" => Ok(PoolKind::LvmThin),
        _ => Err(corrupt("pools.kind", s)),
    }
}

fn pool_layout_str(layout: PoolLayout) -> &'static str {
    match layout {
        PoolLayout::Single => "single",
        PoolLayout::Mirror => "mirror",
        PoolLayout::Raidz1 => "raidz1",
        PoolLayout::Raidz2 => "raidz2",
        PoolLayout::Unspecified => "unspecified",
    }
}

fn pool_layout_parse(s: String) -> Result<PoolLayout, SqliteError> {
    match s.as_str() {
        "single" => Ok(PoolLayout::Single),
        "mirror" => Ok(PoolLayout::Mirror),
        "raidz1" => Ok(PoolLayout::Raidz1),
        "raidz2" => Ok(PoolLayout::Raidz2),
        _ => Err(corrupt("pools.layout", s)),
    }
}

fn orphans_from(bytes: Option<Vec<u8>>) -> Result<Vec<OrphanVolume>, prost::DecodeError> {
    let mut out = Vec::new();
    let buf = bytes.unwrap_or_default();
    let mut rest: &[u8] = &buf;
    while !rest.is_empty() {
        out.push(OrphanVolume::decode_length_delimited(&mut rest)?);
    }
    Ok(out)
}

const POOL_SELECT: &str = "SELECT node, name, kind, layout, disks, force, created_unix, \
     observed, orphans FROM pools";

fn pool_from_row(row: &Row<'_>) -> rusqlite::Result<PoolRecord> {
    let orphans: Option<Vec<u8>> = row.get(8)?;
    Ok(PoolRecord {
        node: parsed(row, 0, NodeName::new)?,
        name: parsed(row, 1, PoolName::new)?,
        kind: parsed(row, 2, pool_kind_parse)?,
        layout: parsed(row, 3, pool_layout_parse)?,
        disks: parsed(row, 4, |t| json_list(t, |d| DiskRef::new(&d)))?,
        force: row.get(5)?,
        created_unix: row.get(6)?,
        observed: blob::<PoolStatus>(row, 7)?,
        orphans: orphans_from(orphans).map_err(|e| conversion(8, Type::Blob, e))?,
    })
}

fn load_pool(conn: &Connection, node: &str, name: &str) -> StoreResult<PoolRecord> {
    query_opt(
        conn,
        &format!("{POOL_SELECT} WHERE node = ?1 AND name = ?2"),
        [node, name],
        pool_from_row,
    )?
    .ok_or_else(|| not_found("pool", format!("{node}/{name}")))
}

pub(super) fn pools_of(conn: &Connection, node: Option<&str>) -> StoreResult<Vec<PoolRecord>> {
    query_all(
        conn,
        &format!("{POOL_SELECT} WHERE ?1 IS NULL OR node = ?1 ORDER BY node, name"),
        [node],
        pool_from_row,
    )
}

pub(super) fn lifecycle_parse(s: String) -> Result<VolumeLifecycle, SqliteError> {
    VolumeLifecycle::parse(&s).ok_or_else(|| corrupt("volumes.lifecycle", s))
}

/// Column list matching [`volume_from_row`]; column 16 is the owner's
/// POSIX id.
macro_rules! volume_select {
    ($rest:literal) => {
        concat!(
            "SELECT v.id, v.tenant, v.name, v.node, v.pool, p.kind, v.size_bytes, ",
            "v.reservation_bytes, v.encrypted, v.lifecycle, v.created_unix, v.deleted_unix, ",
            "v.purge_after_unix, v.snapshots, v.allow_shrink, v.observed, t.posix_id, ",
            "n.removed_unix IS NOT NULL ",
            "FROM volumes AS v JOIN pools AS p ON p.node = v.node AND p.name = v.pool ",
            "JOIN tenants AS t ON t.name = v.tenant JOIN nodes AS n ON n.name = v.node ",
            $rest
        )
    };
}

fn volume_from_row(row: &Row<'_>) -> rusqlite::Result<VolumeRecord> {
    Ok(VolumeRecord {
        id: parsed(row, 0, VolumeId::new)?,
        tenant: parsed(row, 1, TenantName::new)?,
        name: parsed(row, 2, VolumeName::new)?,
        node: parsed(row, 3, NodeName::new)?,
        pool: parsed(row, 4, PoolName::new)?,
        pool_kind: parsed(row, 5, pool_kind_parse)?,
        size_bytes: unsigned(row, 6)?,
        reservation_bytes: unsigned(row, 7)?,
        encrypted: row.get(8)?,
        lifecycle: parsed(row, 9, lifecycle_parse)?,
        created_unix: row.get(10)?,
        deleted_unix: row.get(11)?,
        purge_after_unix: row.get(12)?,
        snapshots: parsed(row, 13, |t| json_list(t, SnapshotName::new))?,
        allow_shrink: row.get(14)?,
        observed: blob::<VolumeStatus>(row, 15)?,
        node_removed: row.get(17)?,
    })
}

pub(super) fn load_volume(conn: &Connection, id: &str) -> StoreResult<VolumeRecord> {
    query_opt(
        conn,
        volume_select!("WHERE v.id = ?1"),
        [id],
        volume_from_row,
    )?
    .ok_or_else(|| not_found("volume", id))
}

/// A tenant's quota and usage, read inside the caller's transaction.
fn tenant_usage(conn: &Connection, tenant: &str) -> StoreResult<Usage> {
    let t = load_tenant(conn, tenant)?;
    Ok(Usage {
        quota: t.storage_quota_bytes,
        used: t.storage_used_bytes,
    })
}

fn over_quota(tenant: &TenantName, over: OverQuota) -> StoreError {
    StoreError::QuotaExceeded {
        tenant: tenant.to_string(),
        quota: over.quota,
        used: over.used,
        asked: over.asked,
    }
}

/// How people name a volume in errors: `<tenant>/<name>`.
pub(super) fn volume_label(v: &VolumeRecord) -> String {
    format!("{}/{}", v.tenant, v.name)
}

/// Loads a volume for a change that needs it active.
fn active_volume(conn: &Connection, id: &str, change: &'static str) -> StoreResult<VolumeRecord> {
    let v = load_volume(conn, id)?;
    volumes::check_active(v.lifecycle, change)
        .map_err(|e| conflict("volume", volume_label(&v), e.to_string()))?;
    Ok(v)
}

fn set_snapshots(conn: &Connection, v: &VolumeRecord) -> StoreResult<()> {
    conn.prepare_cached("UPDATE volumes SET snapshots = ?2 WHERE id = ?1")
        .db()?
        .execute(params![v.id.as_str(), to_json(&v.snapshots)?])
        .db()?;
    bump_generation(conn, v.node.as_str())
}

/// The node's volumes that are not destroyed, by id, with their owner.
pub(super) fn desired_volumes(conn: &Connection, node: &str) -> StoreResult<Vec<DesiredVolume>> {
    query_all(
        conn,
        volume_select!("WHERE v.node = ?1 AND v.lifecycle <> 'destroyed' ORDER BY v.id"),
        [node],
        |row| {
            Ok(DesiredVolume {
                volume: volume_from_row(row)?,
                owner: small(row, 16)?,
            })
        },
    )
}

#[async_trait]
impl StorageStore for SqliteStore {
    async fn create_pool(&self, pool: PoolRecord) -> StoreResult<PoolRecord> {
        self.write(move |tx| {
            let node = pool.node.as_str();
            let label = format!("{node}/{}", pool.name);
            require_live_node(tx, node)?;
            tx.prepare_cached(
                "INSERT INTO pools (node, name, kind, layout, disks, force, created_unix, \
                 observed, orphans) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, NULL)",
            )
            .db()?
            .execute(params![
                node,
                pool.name.as_str(),
                pool_kind_str(pool.kind),
                pool_layout_str(pool.layout),
                to_json(&pool.disks)?,
                pool.force,
                pool.created_unix
            ])
            .map_err(|e| insert_err(e, ("pool", &label), ("node", node)))?;
            bump_generation(tx, node)?;
            let record = load_pool(tx, node, pool.name.as_str())?;
            Ok(record)
        })
        .await
    }

    async fn get_pool(&self, node: &NodeName, name: &PoolName) -> StoreResult<PoolRecord> {
        let node = node.clone();
        let name = name.clone();
        self.run(move |conn| load_pool(conn, node.as_str(), name.as_str()))
            .await
    }

    async fn list_pools(&self, node: Option<&NodeName>) -> StoreResult<Vec<PoolRecord>> {
        let node = node.cloned();
        self.run(move |conn| pools_of(conn, node.as_ref().map(NodeName::as_str)))
            .await
    }

    async fn create_volume(
        &self,
        volume: VolumeRecord,
        now: UnixSecs,
    ) -> StoreResult<VolumeRecord> {
        let size = to_i64("volume size", volume.size_bytes)?;
        let reservation = to_i64("volume reservation", volume.reservation_bytes)?;
        self.write(move |tx| {
            let label = volume_label(&volume);
            let tenant = volume.tenant.as_str();
            // Each check names what is wrong, in the order a person would
            // fix them.
            load_tenant(tx, tenant)?;
            load_pool(tx, volume.node.as_str(), volume.pool.as_str())?;
            let taken = query_opt(
                tx,
                "SELECT lifecycle FROM volumes WHERE tenant = ?1 AND name = ?2 \
                     AND lifecycle <> 'destroyed'",
                [tenant, volume.name.as_str()],
                |row| row.get::<_, String>(0),
            )?;
            if let Some(lifecycle) = taken {
                return Err(match lifecycle.as_str() {
                    "active" => StoreError::AlreadyExists {
                        kind: "volume",
                        name: label,
                    },
                    other => conflict(
                        "volume",
                        label,
                        format!(
                            "the name is held by a deleted volume ({other}) until it is \
                             destroyed; restore it or pick another name"
                        ),
                    ),
                });
            }
            tenant_usage(tx, tenant)?
                .check_change(0, volume.size_bytes)
                .map_err(|e| over_quota(&volume.tenant, e))?;
            tx.prepare_cached(
                "INSERT INTO volumes (id, tenant, name, node, pool, size_bytes, \
                 reservation_bytes, encrypted, lifecycle, created_unix, deleted_unix, \
                 purge_after_unix, snapshots, allow_shrink, observed) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'active', ?9, NULL, NULL, '[]', 0, NULL)",
            )
            .db()?
            .execute(params![
                volume.id.as_str(),
                tenant,
                volume.name.as_str(),
                volume.node.as_str(),
                volume.pool.as_str(),
                size,
                reservation,
                volume.encrypted,
                now
            ])
            .map_err(|e| insert_err(e, ("volume", &label), ("tenant", tenant)))?;
            bump_generation(tx, volume.node.as_str())?;
            let record = load_volume(tx, volume.id.as_str())?;
            Ok(record)
        })
        .await
    }

    async fn get_volume(&self, id: &VolumeId) -> StoreResult<VolumeRecord> {
        let id = id.clone();
        self.run(move |conn| load_volume(conn, id.as_str())).await
    }

    async fn find_volume(
        &self,
        tenant: &TenantName,
        name: &VolumeName,
    ) -> StoreResult<VolumeRecord> {
        let tenant = tenant.clone();
        let name = name.clone();
        self.run(move |conn| {
            query_opt(
                conn,
                volume_select!(
                    "WHERE v.tenant = ?1 AND v.name = ?2 \
                 ORDER BY v.lifecycle = 'destroyed', v.deleted_unix DESC, v.rowid DESC LIMIT 1"
                ),
                [tenant.as_str(), name.as_str()],
                volume_from_row,
            )?
            .ok_or_else(|| not_found("volume", format!("{tenant}/{name}")))
        })
        .await
    }

    async fn list_volumes(&self, filter: VolumeFilter) -> StoreResult<Vec<VolumeRecord>> {
        self.run(move |conn| {
            query_all(
                conn,
                volume_select!(
                    "WHERE (?1 IS NULL OR v.tenant = ?1) AND (?2 IS NULL OR v.node = ?2) \
                 AND (?3 OR v.lifecycle <> 'destroyed') \
                 ORDER BY v.tenant, v.name, v.created_unix, v.id"
                ),
                params![
                    filter.tenant.as_ref().map(TenantName::as_str),
                    filter.node.as_ref().map(NodeName::as_str),
                    filter.include_destroyed
                ],
                volume_from_row,
            )
        })
        .await
    }

    async fn resize_volume(
        &self,
        id: &VolumeId,
        size_bytes: u64,
        allow_shrink: bool,
    ) -> StoreResult<VolumeRecord> {
        let id = id.clone();
        let size = to_i64("volume size", size_bytes)?;
        self.write(move |tx| {
            let v = active_volume(tx, id.as_str(), "resized")?;
            let resize =
                volumes::resize(v.size_bytes, v.reservation_bytes, size_bytes, allow_shrink)
                    .map_err(|e| conflict("volume", volume_label(&v), e.to_string()))?;
            let Some(resize) = resize else {
                return Ok(v);
            };
            tenant_usage(tx, v.tenant.as_str())?
                .check_change(v.size_bytes, resize.size_bytes)
                .map_err(|e| over_quota(&v.tenant, e))?;
            tx.prepare_cached(
                "UPDATE volumes SET size_bytes = ?2, allow_shrink = ?3 WHERE id = ?1",
            )
            .db()?
            .execute(params![id.as_str(), size, resize.allow_shrink])
            .db()?;
            bump_generation(tx, v.node.as_str())?;
            let record = load_volume(tx, id.as_str())?;
            Ok(record)
        })
        .await
    }

    async fn delete_volume(&self, id: &VolumeId, now: UnixSecs) -> StoreResult<VolumeRecord> {
        let id = id.clone();
        self.write(move |tx| {
            let v = load_volume(tx, id.as_str())?;
            if v.node_removed {
                let released = orphans::release_volume(v.lifecycle, v.deleted_unix, now)
                    .map_err(|e| conflict("volume", volume_label(&v), e.to_string()))?;
                // No generation: the removed node is never told anything.
                tx.prepare_cached(
                    "UPDATE volumes SET lifecycle = 'destroyed', deleted_unix = ?2, \
                     purge_after_unix = ?3, allow_shrink = 0 WHERE id = ?1",
                )
                .db()?
                .execute(params![
                    id.as_str(),
                    released.deleted_unix,
                    released.purge_after_unix
                ])
                .db()?;
                return load_volume(tx, id.as_str());
            }
            let grace = load_tenant(tx, v.tenant.as_str())?.volume_grace_days;
            let retention = volumes::delete(v.lifecycle, v.purge_after_unix, grace, now)
                .map_err(|e| conflict("volume", volume_label(&v), e.to_string()))?;
            tx.prepare_cached(
                "UPDATE volumes SET lifecycle = 'retained', deleted_unix = ?2, \
                 purge_after_unix = ?3, allow_shrink = 0 WHERE id = ?1",
            )
            .db()?
            .execute(params![
                id.as_str(),
                retention.deleted_unix,
                retention.purge_after_unix
            ])
            .db()?;
            bump_generation(tx, v.node.as_str())?;
            let record = load_volume(tx, id.as_str())?;
            Ok(record)
        })
        .await
    }

    async fn restore_volume(&self, id: &VolumeId, now: UnixSecs) -> StoreResult<VolumeRecord> {
        let id = id.clone();
        self.write(move |tx| {
            let v = load_volume(tx, id.as_str())?;
            let label = volume_label(&v);
            volumes::check_restore(v.lifecycle, v.purge_after_unix, now)
                .map_err(|e| conflict("volume", label.clone(), e.to_string()))?;
            // The unique index keeps a retained volume's name, so this
            // only guards against a schema that one day lets names go.
            let reused = query_opt(
                tx,
                "SELECT id FROM volumes WHERE tenant = ?1 AND name = ?2 \
                     AND lifecycle = 'active' AND id <> ?3",
                [v.tenant.as_str(), v.name.as_str(), id.as_str()],
                |row| row.get::<_, String>(0),
            )?;
            if let Some(other) = reused {
                return Err(conflict(
                    "volume",
                    label,
                    format!("its name is used by another active volume ({other})"),
                ));
            }
            tenant_usage(tx, v.tenant.as_str())?
                .check_restore(v.size_bytes)
                .map_err(|e| over_quota(&v.tenant, e))?;
            tx.prepare_cached(
                "UPDATE volumes SET lifecycle = 'active', deleted_unix = NULL, \
                 purge_after_unix = NULL WHERE id = ?1",
            )
            .db()?
            .execute([id.as_str()])
            .db()?;
            bump_generation(tx, v.node.as_str())?;
            let record = load_volume(tx, id.as_str())?;
            Ok(record)
        })
        .await
    }

    async fn add_snapshot(&self, id: &VolumeId, name: &SnapshotName) -> StoreResult<VolumeRecord> {
        let id = id.clone();
        let name = name.clone();
        self.write(move |tx| {
            let mut v = active_volume(tx, id.as_str(), "snapshotted")?;
            let label = volume_label(&v);
            volumes::add_snapshot(&mut v.snapshots, name.clone()).map_err(|e| match e {
                SnapshotRefused::Exists => StoreError::AlreadyExists {
                    kind: "snapshot",
                    name: format!("{label}@{name}"),
                },
                SnapshotRefused::TooMany => conflict("volume", label, e.to_string()),
            })?;
            set_snapshots(tx, &v)?;
            let record = load_volume(tx, id.as_str())?;
            Ok(record)
        })
        .await
    }

    async fn remove_snapshot(
        &self,
        id: &VolumeId,
        name: &SnapshotName,
    ) -> StoreResult<VolumeRecord> {
        let id = id.clone();
        let name = name.clone();
        self.write(move |tx| {
            let mut v = active_volume(tx, id.as_str(), "changed")?;
            let before = v.snapshots.len();
            v.snapshots.retain(|s| s != &name);
            if v.snapshots.len() == before {
                return Err(not_found(
                    "snapshot",
                    format!("{}@{name}", volume_label(&v)),
                ));
            }
            set_snapshots(tx, &v)?;
            let record = load_volume(tx, id.as_str())?;
            Ok(record)
        })
        .await
    }

    async fn set_volume_observed(
        &self,
        id: &VolumeId,
        status: &VolumeStatus,
    ) -> StoreResult<VolumeRecord> {
        let id = id.clone();
        let status = status.encode_to_vec();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached("UPDATE volumes SET observed = ?2 WHERE id = ?1")
                .db()?
                .execute(params![id.as_str(), status])
                .db()?;
            if changed == 0 {
                return Err(not_found("volume", id.as_str()));
            }
            let record = load_volume(tx, id.as_str())?;
            Ok(record)
        })
        .await
    }

    async fn record_storage(
        &self,
        node: &NodeName,
        observed: ObservedStorage,
    ) -> StoreResult<Vec<VolumeRecord>> {
        let node = node.clone();
        self.write(move |tx| {
            let name = node.as_str();
            require_live_node(tx, name)?;
            let declared: Vec<String> = tx
                .prepare_cached("SELECT name FROM pools WHERE node = ?1")
                .db()?
                .query_map([name], |row| row.get(0))
                .db()?
                .collect::<rusqlite::Result<_>>()
                .db()?;
            for pool in &declared {
                let status = observed
                    .pools
                    .iter()
                    .find(|p| &p.name == pool)
                    .map(Message::encode_to_vec);
                let orphans: Vec<u8> = observed
                    .orphans
                    .iter()
                    .filter(|o| &o.pool == pool)
                    .flat_map(Message::encode_length_delimited_to_vec)
                    .collect();
                tx.prepare_cached(
                    "UPDATE pools SET observed = ?3, orphans = ?4 WHERE node = ?1 AND name = ?2",
                )
                .db()?
                .execute(params![name, pool, status, orphans])
                .db()?;
            }
            let mut destroyed = Vec::new();
            for status in &observed.volumes {
                // Only this node's volumes: a node never writes another's.
                let lifecycle = query_opt(
                    tx,
                    "SELECT lifecycle FROM volumes WHERE id = ?1 AND node = ?2",
                    [status.id.as_str(), name],
                    |row| parsed(row, 0, lifecycle_parse),
                )?;
                let Some(lifecycle) = lifecycle else {
                    continue;
                };
                let becomes_destroyed = match volumes::after_report(lifecycle, status.phase) {
                    ReportEffect::Ignored => continue,
                    ReportEffect::Recorded => false,
                    ReportEffect::Destroyed => true,
                };
                tx.prepare_cached(
                    "UPDATE volumes SET observed = ?2, \
                     lifecycle = CASE WHEN ?3 THEN 'destroyed' ELSE lifecycle END WHERE id = ?1",
                )
                .db()?
                .execute(params![
                    status.id.as_str(),
                    status.encode_to_vec(),
                    becomes_destroyed
                ])
                .db()?;
                if becomes_destroyed {
                    destroyed.push(status.id.clone());
                }
            }
            if !destroyed.is_empty() {
                bump_generation(tx, name)?;
            }
            let records = destroyed
                .iter()
                .map(|id| load_volume(tx, id))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(records)
        })
        .await
    }

    async fn purge_due(&self, now: UnixSecs) -> StoreResult<Vec<VolumeRecord>> {
        self.write(move |tx| {
            // The rule is rules::volumes::is_due (purge_after_unix <= now),
            // written as the query so that the index finds the due volumes
            // without reading every retained one every few seconds. A
            // removed node's volumes are orphans: never purged by time,
            // only released by a person (rules::orphans).
            let mut due: Vec<(String, String)> = tx
                .prepare_cached(
                    "UPDATE volumes SET lifecycle = 'purging' \
                     WHERE lifecycle = 'retained' AND purge_after_unix <= ?1 \
                     AND node IN (SELECT name FROM nodes WHERE removed_unix IS NULL) \
                     RETURNING id, node",
                )
                .db()?
                .query_map([now], |row| Ok((row.get(0)?, row.get(1)?)))
                .db()?
                .collect::<rusqlite::Result<_>>()
                .db()?;
            // RETURNING gives no order.
            due.sort();
            let nodes: BTreeSet<&str> = due.iter().map(|(_, n)| n.as_str()).collect();
            for node in nodes {
                bump_generation(tx, node)?;
            }
            let records = due
                .iter()
                .map(|(id, _)| load_volume(tx, id))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(records)
        })
        .await
    }
}

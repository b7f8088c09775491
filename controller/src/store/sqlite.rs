//! The embedded SQLite backend of [`Store`]: one database file, one
//! connection, write-ahead log.
//!
//! colocd is the only writer, and SQLite serialises writers anyway, so a
//! single `rusqlite::Connection` behind a mutex is simpler than a pool and
//! loses nothing. Every call runs on tokio's blocking pool: a slow fsync or
//! a WAL checkpoint stalls one blocking thread, never the runtime's
//! workers. Transactions that read before they write (enrollment, label
//! changes) begin IMMEDIATE, so they hold the write lock from the start and
//! a second process on the same file waits (busy_timeout) instead of
//! failing half-way with SQLITE_BUSY.
//!
//! The schema is versioned in `PRAGMA user_version`; the migrations live in
//! `migrations/NNNN_*.sql`, are applied in order, each in its own
//! transaction together with the version bump, and a file written by a
//! newer colocd is refused rather than guessed at. This module owns the SQL
//! and the mapping of SQLite errors to [`StoreError`]; it validates nothing
//! about names beyond refusing rows that no longer parse.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use coloc_proto::agent::v1::{
    AppStatus, NodeFacts, OrphanVolume, PoolKind, PoolLayout, PoolStatus, VolumePhase, VolumeStatus,
};
use coloc_proto::domain::{NodeName, SiteName, TenantName, UserName};
use coloc_proto::storage::{DiskRef, PoolName, SnapshotName, VolumeId, VolumeName};
use prost::Message;
use rusqlite::types::{Type, Value};
use rusqlite::{
    Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params, params_from_iter,
};

use super::{
    ApiTokenRecord, AppName, AppRequestRecord, AuditFilter, AuditOutcome, AuditRecord,
    CommentRecord, ConnState, DesiredApp, DesiredVolume, FIRST_APP_PORT, FIRST_POSIX_ID,
    InstanceChange, InstanceFilter, InstanceRecord, InstanceState, JoinTokenRecord, LabelChange,
    MAX_SNAPSHOTS_PER_VOLUME, NewAppRequest, NewNode, NodeDesired, NodeRecord, ObservedStorage,
    PoolRecord, RequestState, SiteRecord, Store, StoreError, StoreResult, TenantRecord,
    TenantStorageChange, UnixSecs, UserCertRecord, UserRecord, VolumeFilter, VolumeLifecycle,
    VolumeRecord,
};

/// Schema migrations, applied in order; migration `i` brings the file to
/// `user_version = i + 1`. Never edit one that has shipped: add another.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_storage.sql"),
    include_str!("migrations/0003_apps.sql"),
];

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Audit listing: page size when the caller asks for 0, and the most a
/// caller may ask for.
const AUDIT_DEFAULT_LIMIT: u32 = 100;
const AUDIT_MAX_LIMIT: u32 = 1000;

/// The store on one SQLite database. Cloning is cheap and shares the
/// connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// None for an in-memory database.
    path: Option<PathBuf>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Failures of this backend that are not SQLite's own; boxed into
/// [`StoreError::Backend`].
#[derive(Debug, thiserror::Error)]
enum SqliteError {
    #[error("database {path:?} refused write-ahead logging (journal_mode is {mode:?})")]
    NoWal { path: PathBuf, mode: String },
    #[error("column {column} holds {value:?}, which this colocd does not understand")]
    CorruptValue { column: &'static str, value: String },
    #[error("{what} {value} does not fit in the database's 64-bit signed integer")]
    OutOfRange { what: &'static str, value: u64 },
    #[error("the database task did not complete")]
    Task(#[source] tokio::task::JoinError),
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// `.db()?` turns any SQLite error without a meaning of its own into
/// [`StoreError::Backend`].
trait Db<T> {
    fn db(self) -> StoreResult<T>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> StoreResult<T> {
        self.map_err(backend)
    }
}

/// Maps a failed INSERT: a UNIQUE/PRIMARY KEY violation means the object
/// exists, a FOREIGN KEY violation means what it refers to does not.
/// Callers only use this on tables with a single foreign key, so the
/// missing object is known.
fn insert_err(
    e: rusqlite::Error,
    exists: (&'static str, &str),
    missing: (&'static str, &str),
) -> StoreError {
    let extended = e.sqlite_extended_error_code();
    match extended {
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
        | Some(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => StoreError::AlreadyExists {
            kind: exists.0,
            name: exists.1.to_owned(),
        },
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => StoreError::NotFound {
            kind: missing.0,
            name: missing.1.to_owned(),
        },
        _ => backend(e),
    }
}

fn not_found(kind: &'static str, name: impl Into<String>) -> StoreError {
    StoreError::NotFound {
        kind,
        name: name.into(),
    }
}

fn to_i64(what: &'static str, value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| backend(SqliteError::OutOfRange { what, value }))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, switches it to
    /// WAL and brings its schema up to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let conn = Connection::open(path).db()?;
        // Set before switching the journal mode: the switch takes a lock.
        conn.busy_timeout(BUSY_TIMEOUT).db()?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .db()?;
        // synchronous=NORMAL is only crash-safe under WAL; refuse to run
        // without it rather than risk the database on power loss.
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(backend(SqliteError::NoWal {
                path: path.to_owned(),
                mode,
            }));
        }
        Self::setup(conn, Some(path.to_owned()))
    }

    /// A fresh database that lives as long as the store; for tests.
    pub fn open_in_memory() -> StoreResult<SqliteStore> {
        let conn = Connection::open_in_memory().db()?;
        conn.busy_timeout(BUSY_TIMEOUT).db()?;
        Self::setup(conn, None)
    }

    /// Where the database lives; None when in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn setup(mut conn: Connection, path: Option<PathBuf>) -> StoreResult<SqliteStore> {
        conn.pragma_update(None, "synchronous", "NORMAL").db()?;
        conn.pragma_update(None, "foreign_keys", true).db()?;
        // Room for every statement this module prepares with
        // prepare_cached, so the hot ones (record_seen) are never evicted.
        conn.set_prepared_statement_cache_capacity(64);
        migrate(&mut conn, path.as_deref())?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// Runs `work` on the blocking pool with the connection locked.
    async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic inside `work` unwinds through its open Transaction,
            // whose drop rolls back, so the connection is still consistent
            // and the poison flag carries no information.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut conn)
        })
        .await
        .map_err(|e| backend(SqliteError::Task(e)))?
    }
}

fn user_version(conn: &Connection) -> StoreResult<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .db()
}

fn migrate(conn: &mut Connection, path: Option<&Path>) -> StoreResult<()> {
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let target = index as i64 + 1;
        // The version is read inside the transaction so that two processes
        // opening the same new file cannot both apply a migration.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let found = user_version(&tx)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found >= target {
            continue;
        }
        tx.execute_batch(sql).db()?;
        tx.pragma_update(None, "user_version", target).db()?;
        tx.commit().db()?;
        tracing::info!(
            path = ?path,
            from = found,
            to = target,
            "applied database migration"
        );
    }
    Ok(())
}

fn immediate(conn: &mut Connection) -> StoreResult<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .db()
}

// ---- reading rows

fn conversion(
    idx: usize,
    ty: Type,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, ty, Box::new(e))
}

/// Reads a text column through a validating constructor; a value that no
/// longer validates is a corrupt row.
fn parsed<T, E>(
    row: &Row<'_>,
    idx: usize,
    parse: impl FnOnce(String) -> Result<T, E>,
) -> rusqlite::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(idx)?;
    parse(text).map_err(|e| conversion(idx, Type::Text, e))
}

fn parsed_opt<T, E>(
    row: &Row<'_>,
    idx: usize,
    parse: impl FnOnce(String) -> Result<T, E>,
) -> rusqlite::Result<Option<T>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: Option<String> = row.get(idx)?;
    text.map(parse)
        .transpose()
        .map_err(|e| conversion(idx, Type::Text, e))
}

fn unsigned(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|e| conversion(idx, Type::Integer, e))
}

fn corrupt(column: &'static str, value: String) -> SqliteError {
    SqliteError::CorruptValue { column, value }
}

fn site_from_row(row: &Row<'_>) -> rusqlite::Result<SiteRecord> {
    Ok(SiteRecord {
        name: parsed(row, 0, SiteName::new)?,
        country: row.get(1)?,
        city: row.get(2)?,
        description: row.get(3)?,
        created_unix: row.get(4)?,
    })
}

const SITE_SELECT: &str = "SELECT name, country, city, description, created_unix FROM sites";

fn join_token_from_row(row: &Row<'_>) -> rusqlite::Result<JoinTokenRecord> {
    Ok(JoinTokenRecord {
        id: row.get(0)?,
        site: parsed(row, 1, SiteName::new)?,
        secret_hash: row.get(2)?,
        created_unix: row.get(3)?,
        expires_unix: row.get(4)?,
        created_by: row.get(5)?,
        used_by_node: parsed_opt(row, 6, NodeName::new)?,
        used_unix: row.get(7)?,
    })
}

/// Column list matching [`node_from_row`].
macro_rules! node_select {
    ($rest:literal) => {
        concat!(
            "SELECT name, site, enrolled_unix, last_seen_unix, conn_state, conn_changed_unix, ",
            "draining, labels, desired_generation, applied_generation, last_outcome, ",
            "last_message, facts, cert_fingerprint FROM nodes ",
            $rest
        )
    };
}

fn node_from_row(row: &Row<'_>) -> rusqlite::Result<NodeRecord> {
    let facts: Option<Vec<u8>> = row.get(12)?;
    let facts = facts
        .map(|bytes| NodeFacts::decode(bytes.as_slice()))
        .transpose()
        .map_err(|e| conversion(12, Type::Blob, e))?;
    Ok(NodeRecord {
        name: parsed(row, 0, NodeName::new)?,
        site: parsed(row, 1, SiteName::new)?,
        enrolled_unix: row.get(2)?,
        last_seen_unix: row.get(3)?,
        conn_state: parsed(row, 4, |s| {
            ConnState::parse(&s).ok_or_else(|| corrupt("nodes.conn_state", s))
        })?,
        conn_changed_unix: row.get(5)?,
        draining: row.get(6)?,
        labels: parsed(row, 7, |s| {
            serde_json::from_str::<BTreeMap<String, String>>(&s)
        })?,
        desired_generation: unsigned(row, 8)?,
        applied_generation: unsigned(row, 9)?,
        last_outcome: row.get(10)?,
        last_message: row.get(11)?,
        facts,
        cert_fingerprint: row.get(13)?,
    })
}

fn load_node(conn: &Connection, name: &str) -> StoreResult<NodeRecord> {
    conn.prepare_cached(node_select!("WHERE name = ?1"))
        .db()?
        .query_row([name], node_from_row)
        .optional()
        .db()?
        .ok_or_else(|| not_found("node", name))
}

fn node_exists(conn: &Connection, name: &str) -> StoreResult<bool> {
    conn.prepare_cached("SELECT 1 FROM nodes WHERE name = ?1")
        .db()?
        .exists([name])
        .db()
}

fn small(row: &Row<'_>, idx: usize) -> rusqlite::Result<u32> {
    let v: i64 = row.get(idx)?;
    u32::try_from(v).map_err(|e| conversion(idx, Type::Integer, e))
}

fn tenant_from_row(row: &Row<'_>) -> rusqlite::Result<TenantRecord> {
    Ok(TenantRecord {
        name: parsed(row, 0, TenantName::new)?,
        display_name: row.get(1)?,
        offer: parsed(row, 2, |s| s.parse())?,
        membership_expires: row.get(3)?,
        created_unix: row.get(4)?,
        storage_quota_bytes: unsigned(row, 5)?,
        volume_grace_days: small(row, 6)?,
        // NULL (a row the migration did not fill) fails here, as it should.
        posix_id: small(row, 7)?,
        storage_used_bytes: unsigned(row, 8)?,
    })
}

/// The last column is what counts against the quota: the tenant's
/// volumes in use or restorable, both still on disk (docs/STORAGE.md).
const TENANT_SELECT: &str = "SELECT name, display_name, offer, membership_expires, created_unix, \
     storage_quota_bytes, volume_grace_days, posix_id, \
     (SELECT coalesce(sum(v.size_bytes), 0) FROM volumes AS v \
      WHERE v.tenant = tenants.name AND v.lifecycle IN ('active', 'retained')) \
     FROM tenants";

fn load_tenant(conn: &Connection, name: &str) -> StoreResult<TenantRecord> {
    conn.prepare_cached(&format!("{TENANT_SELECT} WHERE name = ?1"))
        .db()?
        .query_row([name], tenant_from_row)
        .optional()
        .db()?
        .ok_or_else(|| not_found("tenant", name))
}

// ---- storage rows

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

fn blob<M: Message + Default>(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<M>> {
    let bytes: Option<Vec<u8>> = row.get(idx)?;
    bytes
        .map(|b| M::decode(b.as_slice()))
        .transpose()
        .map_err(|e| conversion(idx, Type::Blob, e))
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

fn json_list<T, E>(
    text: String,
    parse: impl Fn(String) -> Result<T, E>,
) -> Result<Vec<T>, SqliteError>
where
    E: std::fmt::Display,
{
    let items: Vec<String> =
        serde_json::from_str(&text).map_err(|_| corrupt("json list", text.clone()))?;
    items
        .into_iter()
        .map(|i| parse(i.clone()).map_err(|_| corrupt("json list item", i)))
        .collect()
}

fn to_json<T: ToString>(items: &[T]) -> StoreResult<String> {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    serde_json::to_string(&items).map_err(backend)
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
    conn.prepare_cached(&format!("{POOL_SELECT} WHERE node = ?1 AND name = ?2"))
        .db()?
        .query_row([node, name], pool_from_row)
        .optional()
        .db()?
        .ok_or_else(|| not_found("pool", format!("{node}/{name}")))
}

fn pools_of(conn: &Connection, node: Option<&str>) -> StoreResult<Vec<PoolRecord>> {
    conn.prepare_cached(&format!(
        "{POOL_SELECT} WHERE ?1 IS NULL OR node = ?1 ORDER BY node, name"
    ))
    .db()?
    .query_map([node], pool_from_row)
    .db()?
    .collect::<rusqlite::Result<Vec<_>>>()
    .db()
}

/// Column list matching [`volume_from_row`]; column 16 is the owner's
/// POSIX id.
macro_rules! volume_select {
    ($rest:literal) => {
        concat!(
            "SELECT v.id, v.tenant, v.name, v.node, v.pool, p.kind, v.size_bytes, ",
            "v.reservation_bytes, v.encrypted, v.lifecycle, v.created_unix, v.deleted_unix, ",
            "v.purge_after_unix, v.snapshots, v.allow_shrink, v.observed, t.posix_id ",
            "FROM volumes AS v JOIN pools AS p ON p.node = v.node AND p.name = v.pool ",
            "JOIN tenants AS t ON t.name = v.tenant ",
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
        lifecycle: parsed(row, 9, |s| {
            VolumeLifecycle::parse(&s).ok_or_else(|| corrupt("volumes.lifecycle", s))
        })?,
        created_unix: row.get(10)?,
        deleted_unix: row.get(11)?,
        purge_after_unix: row.get(12)?,
        snapshots: parsed(row, 13, |t| json_list(t, SnapshotName::new))?,
        allow_shrink: row.get(14)?,
        observed: blob::<VolumeStatus>(row, 15)?,
    })
}

fn load_volume(conn: &Connection, id: &str) -> StoreResult<VolumeRecord> {
    conn.prepare_cached(volume_select!("WHERE v.id = ?1"))
        .db()?
        .query_row([id], volume_from_row)
        .optional()
        .db()?
        .ok_or_else(|| not_found("volume", id))
}

fn bump_generation(conn: &Connection, node: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE nodes SET desired_generation = desired_generation + 1 WHERE name = ?1",
    )
    .db()?
    .execute([node])
    .db()?;
    Ok(())
}

/// (quota, used) of a tenant, read inside the caller's transaction.
fn tenant_usage(conn: &Connection, tenant: &str) -> StoreResult<(u64, u64)> {
    let t = load_tenant(conn, tenant)?;
    Ok((t.storage_quota_bytes, t.storage_used_bytes))
}

/// Refuses a change that takes the tenant from `used` to `used - freed +
/// asked` past its quota. A change that does not grow usage always passes,
/// so that a tenant over a lowered quota can still shrink.
fn check_quota(conn: &Connection, tenant: &str, freed: u64, asked: u64) -> StoreResult<()> {
    let (quota, used) = tenant_usage(conn, tenant)?;
    let after = used.saturating_sub(freed).saturating_add(asked);
    if asked > freed && after > quota {
        return Err(StoreError::QuotaExceeded {
            tenant: tenant.to_owned(),
            quota,
            used: used.saturating_sub(freed),
            asked,
        });
    }
    Ok(())
}

fn conflict(kind: &'static str, name: impl Into<String>, reason: impl Into<String>) -> StoreError {
    StoreError::Conflict {
        kind,
        name: name.into(),
        reason: reason.into(),
    }
}

fn volume_label(v: &VolumeRecord) -> String {
    format!("{}/{}", v.tenant, v.name)
}

/// Loads a volume for a change that needs it active.
fn active_volume(conn: &Connection, id: &str, change: &str) -> StoreResult<VolumeRecord> {
    let v = load_volume(conn, id)?;
    if v.lifecycle != VolumeLifecycle::Active {
        return Err(conflict(
            "volume",
            volume_label(&v),
            format!(
                "is {}; only an active volume can be {change}",
                v.lifecycle.as_str()
            ),
        ));
    }
    Ok(v)
}

fn set_snapshots(conn: &Connection, v: &VolumeRecord) -> StoreResult<()> {
    conn.prepare_cached("UPDATE volumes SET snapshots = ?2 WHERE id = ?1")
        .db()?
        .execute(params![v.id.as_str(), to_json(&v.snapshots)?])
        .db()?;
    bump_generation(conn, v.node.as_str())
}

/// Column list matching [`instance_from_row`]; column 13 is the tenant's
/// POSIX id.
macro_rules! instance_select {
    ($rest:literal) => {
        concat!(
            "SELECT i.tenant, i.app, i.node, i.volume_id, v.name, v.lifecycle, i.port, ",
            "i.state, i.restart_nonce, i.request_id, i.created_unix, i.gone, i.observed, ",
            "t.posix_id FROM app_instances AS i JOIN volumes AS v ON v.id = i.volume_id ",
            "JOIN tenants AS t ON t.name = i.tenant ",
            $rest
        )
    };
}

fn node_desired(conn: &Connection, name: &str) -> StoreResult<NodeDesired> {
    let node = load_node(conn, name)?;
    let pools = pools_of(conn, Some(name))?;
    let volumes = conn
        .prepare_cached(volume_select!(
            "WHERE v.node = ?1 AND v.lifecycle <> 'destroyed' ORDER BY v.id"
        ))
        .db()?
        .query_map([name], |row| {
            Ok(DesiredVolume {
                volume: volume_from_row(row)?,
                owner: small(row, 16)?,
            })
        })
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    let apps = conn
        .prepare_cached(instance_select!(
            "WHERE i.node = ?1 AND i.gone = 0 ORDER BY i.tenant, i.app, i.id"
        ))
        .db()?
        .query_map([name], |row| {
            Ok(DesiredApp {
                instance: instance_from_row(row)?,
                owner: small(row, 13)?,
            })
        })
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    Ok(NodeDesired {
        node,
        pools,
        volumes,
        apps,
    })
}

// ---- app rows

/// Column list matching [`request_from_row`] (comments are read apart).
const REQUEST_SELECT: &str = "SELECT r.id, r.tenant, r.app, r.node, r.volume_id, v.name, \
     r.requested_by, r.created_unix, r.state, r.decided_by, r.decided_unix \
     FROM app_requests AS r JOIN volumes AS v ON v.id = r.volume_id";

fn request_from_row(row: &Row<'_>) -> rusqlite::Result<AppRequestRecord> {
    Ok(AppRequestRecord {
        id: unsigned(row, 0)?,
        tenant: parsed(row, 1, TenantName::new)?,
        app: parsed(row, 2, AppName::new)?,
        node: parsed(row, 3, NodeName::new)?,
        volume_id: parsed(row, 4, VolumeId::new)?,
        volume_name: parsed(row, 5, VolumeName::new)?,
        requested_by: parsed(row, 6, UserName::new)?,
        created_unix: row.get(7)?,
        state: parsed(row, 8, |s| {
            RequestState::parse(&s).ok_or_else(|| corrupt("app_requests.state", s))
        })?,
        decided_by: parsed_opt(row, 9, UserName::new)?,
        decided_unix: row.get(10)?,
        comments: Vec::new(),
    })
}

fn with_comments(conn: &Connection, mut r: AppRequestRecord) -> StoreResult<AppRequestRecord> {
    r.comments = conn
        .prepare_cached(
            "SELECT author, at_unix, text FROM app_request_comments \
             WHERE request_id = ?1 ORDER BY seq",
        )
        .db()?
        .query_map([to_i64("request id", r.id)?], |row| {
            Ok(CommentRecord {
                author: parsed(row, 0, UserName::new)?,
                at_unix: row.get(1)?,
                text: row.get(2)?,
            })
        })
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    Ok(r)
}

fn load_request(conn: &Connection, id: u64) -> StoreResult<AppRequestRecord> {
    let key = to_i64("request id", id)?;
    let r = conn
        .prepare_cached(&format!("{REQUEST_SELECT} WHERE r.id = ?1"))
        .db()?
        .query_row([key], request_from_row)
        .optional()
        .db()?
        .ok_or_else(|| not_found("request", id.to_string()))?;
    with_comments(conn, r)
}

fn add_comment(conn: &Connection, id: u64, c: &CommentRecord) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO app_request_comments (request_id, seq, author, at_unix, text) \
         VALUES (?1, (SELECT coalesce(max(seq) + 1, 0) FROM app_request_comments \
         WHERE request_id = ?1), ?2, ?3, ?4)",
    )
    .db()?
    .execute(params![
        to_i64("request id", id)?,
        c.author.as_str(),
        c.at_unix,
        c.text
    ])
    .db()?;
    Ok(())
}

fn instance_from_row(row: &Row<'_>) -> rusqlite::Result<InstanceRecord> {
    let port: i64 = row.get(6)?;
    Ok(InstanceRecord {
        tenant: parsed(row, 0, TenantName::new)?,
        app: parsed(row, 1, AppName::new)?,
        node: parsed(row, 2, NodeName::new)?,
        volume_id: parsed(row, 3, VolumeId::new)?,
        volume_name: parsed(row, 4, VolumeName::new)?,
        volume_lifecycle: parsed(row, 5, |s| {
            VolumeLifecycle::parse(&s).ok_or_else(|| corrupt("volumes.lifecycle", s))
        })?,
        port: u16::try_from(port).map_err(|e| conversion(6, Type::Integer, e))?,
        state: parsed(row, 7, |s| {
            InstanceState::parse(&s).ok_or_else(|| corrupt("app_instances.state", s))
        })?,
        restart_nonce: unsigned(row, 8)?,
        request_id: unsigned(row, 9)?,
        created_unix: row.get(10)?,
        gone: row.get(11)?,
        observed: blob::<AppStatus>(row, 12)?,
    })
}

fn load_instance(conn: &Connection, rowid: i64) -> StoreResult<InstanceRecord> {
    conn.prepare_cached(instance_select!("WHERE i.id = ?1"))
        .db()?
        .query_row([rowid], instance_from_row)
        .optional()
        .db()?
        .ok_or_else(|| not_found("instance", rowid.to_string()))
}

/// The row id of the tenant's live (not removed) instance of the app.
fn live_instance(conn: &Connection, tenant: &str, app: &str) -> StoreResult<Option<i64>> {
    conn.prepare_cached(
        "SELECT id FROM app_instances WHERE tenant = ?1 AND app = ?2 AND state <> 'removed'",
    )
    .db()?
    .query_row([tenant, app], |row| row.get(0))
    .optional()
    .db()
}

/// Refuses a second live instance of an app for a tenant: its host name
/// `<app>.<tenant>.<domain>` names one instance cooperative-wide.
fn check_no_live_instance(conn: &Connection, tenant: &str, app: &str) -> StoreResult<()> {
    if let Some(rowid) = live_instance(conn, tenant, app)? {
        let i = load_instance(conn, rowid)?;
        return Err(conflict(
            "app",
            format!("{tenant}/{app}"),
            format!(
                "is already deployed on node {} ({}); remove it first",
                i.node,
                i.state.as_str()
            ),
        ));
    }
    Ok(())
}

/// The lowest port from [`FIRST_APP_PORT`] no instance on the node holds.
fn free_port(conn: &Connection, node: &str) -> StoreResult<u16> {
    let used: Vec<i64> = conn
        .prepare_cached("SELECT port FROM app_instances WHERE node = ?1 AND gone = 0 ORDER BY port")
        .db()?
        .query_map([node], |row| row.get(0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    let mut candidate = i64::from(FIRST_APP_PORT);
    for port in used {
        if port > candidate {
            break;
        }
        if port == candidate {
            candidate += 1;
        }
    }
    u16::try_from(candidate).map_err(|_| {
        conflict(
            "node",
            node,
            format!("has no free app port left above {FIRST_APP_PORT}"),
        )
    })
}

/// Loads a request for a decision, which needs it pending.
fn pending_request(conn: &Connection, id: u64) -> StoreResult<AppRequestRecord> {
    let r = load_request(conn, id)?;
    if r.state != RequestState::Pending {
        return Err(conflict(
            "request",
            id.to_string(),
            format!(
                "was already {} by {}",
                r.state.as_str(),
                r.decided_by
                    .as_ref()
                    .map(UserName::as_str)
                    .unwrap_or("someone")
            ),
        ));
    }
    Ok(r)
}

fn decide(
    conn: &Connection,
    id: u64,
    state: RequestState,
    by: &UserName,
    comment: &str,
    now: UnixSecs,
) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE app_requests SET state = ?2, decided_by = ?3, decided_unix = ?4 WHERE id = ?1",
    )
    .db()?
    .execute(params![
        to_i64("request id", id)?,
        state.as_str(),
        by.as_str(),
        now
    ])
    .db()?;
    if !comment.is_empty() {
        add_comment(
            conn,
            id,
            &CommentRecord {
                author: by.clone(),
                at_unix: now,
                text: comment.to_owned(),
            },
        )?;
    }
    Ok(())
}

/// A user without its grants; see [`with_grants`].
fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: parsed(row, 0, UserName::new)?,
        tenant: parsed_opt(row, 1, TenantName::new)?,
        role: parsed(row, 2, |s| s.parse())?,
        display_name: row.get(3)?,
        created_unix: row.get(4)?,
        node_grants: Vec::new(),
    })
}

const USER_SELECT: &str = "SELECT name, tenant, role, display_name, created_unix FROM users";

fn with_grants(conn: &Connection, mut user: UserRecord) -> StoreResult<UserRecord> {
    user.node_grants = conn
        .prepare_cached("SELECT node_name FROM node_grants WHERE user_name = ?1 ORDER BY node_name")
        .db()?
        .query_map([user.name.as_str()], |row| parsed(row, 0, NodeName::new))
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()?;
    Ok(user)
}

fn load_user(conn: &Connection, name: &str) -> StoreResult<UserRecord> {
    let user = conn
        .prepare_cached(&format!("{USER_SELECT} WHERE name = ?1"))
        .db()?
        .query_row([name], user_from_row)
        .optional()
        .db()?
        .ok_or_else(|| not_found("user", name))?;
    with_grants(conn, user)
}

fn user_exists(conn: &Connection, name: &str) -> StoreResult<bool> {
    conn.prepare_cached("SELECT 1 FROM users WHERE name = ?1")
        .db()?
        .exists([name])
        .db()
}

fn api_token_from_row(row: &Row<'_>) -> rusqlite::Result<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: row.get(0)?,
        user: parsed(row, 1, UserName::new)?,
        description: row.get(2)?,
        secret_hash: row.get(3)?,
        created_unix: row.get(4)?,
        expires_unix: row.get(5)?,
        revoked_unix: row.get(6)?,
    })
}

const API_TOKEN_SELECT: &str = "SELECT id, user_name, description, secret_hash, created_unix, \
     expires_unix, revoked_unix FROM api_tokens";

fn load_api_token(conn: &Connection, id: &str) -> StoreResult<ApiTokenRecord> {
    conn.prepare_cached(&format!("{API_TOKEN_SELECT} WHERE id = ?1"))
        .db()?
        .query_row([id], api_token_from_row)
        .optional()
        .db()?
        .ok_or_else(|| not_found("api token", id))
}

fn user_cert_from_row(row: &Row<'_>) -> rusqlite::Result<UserCertRecord> {
    Ok(UserCertRecord {
        fingerprint: row.get(0)?,
        user: parsed(row, 1, UserName::new)?,
        created_unix: row.get(2)?,
        expires_unix: row.get(3)?,
    })
}

fn audit_outcome(s: String) -> Result<AuditOutcome, SqliteError> {
    match s.as_str() {
        "allowed" => Ok(AuditOutcome::Allowed),
        "denied" => Ok(AuditOutcome::Denied),
        "failed" => Ok(AuditOutcome::Failed),
        _ => Err(corrupt("audit.outcome", s)),
    }
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: unsigned(row, 0)?,
        at_unix_ms: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        target: row.get(4)?,
        tenant: parsed_opt(row, 5, TenantName::new)?,
        outcome: parsed(row, 6, audit_outcome)?,
        detail: row.get(7)?,
    })
}

fn labels_json(labels: &BTreeMap<String, String>) -> StoreResult<String> {
    serde_json::to_string(labels).map_err(backend)
}

#[async_trait]
impl Store for SqliteStore {
    // ---- sites

    async fn create_site(&self, site: SiteRecord) -> StoreResult<()> {
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO sites (name, country, city, description, created_unix) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .db()?
            .execute(params![
                site.name.as_str(),
                site.country,
                site.city,
                site.description,
                site.created_unix
            ])
            .map_err(|e| insert_err(e, ("site", site.name.as_str()), ("site", "")))?;
            Ok(())
        })
        .await
    }

    async fn get_site(&self, name: &SiteName) -> StoreResult<SiteRecord> {
        let name = name.clone();
        self.run(move |conn| {
            conn.prepare_cached(&format!("{SITE_SELECT} WHERE name = ?1"))
                .db()?
                .query_row([name.as_str()], site_from_row)
                .optional()
                .db()?
                .ok_or_else(|| not_found("site", name.as_str()))
        })
        .await
    }

    async fn list_sites(&self) -> StoreResult<Vec<SiteRecord>> {
        self.run(|conn| {
            conn.prepare_cached(&format!("{SITE_SELECT} ORDER BY name"))
                .db()?
                .query_map([], site_from_row)
                .db()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db()
        })
        .await
    }

    // ---- join tokens and enrollment

    async fn create_join_token(&self, token: JoinTokenRecord) -> StoreResult<()> {
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO join_tokens (id, site, secret_hash, created_unix, expires_unix, \
                 created_by, used_by_node, used_unix) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .db()?
            .execute(params![
                token.id,
                token.site.as_str(),
                token.secret_hash,
                token.created_unix,
                token.expires_unix,
                token.created_by,
                token.used_by_node.as_ref().map(NodeName::as_str),
                token.used_unix
            ])
            .map_err(|e| insert_err(e, ("join token", &token.id), ("site", token.site.as_str())))?;
            Ok(())
        })
        .await
    }

    async fn list_join_tokens(&self) -> StoreResult<Vec<JoinTokenRecord>> {
        self.run(|conn| {
            conn.prepare_cached(
                "SELECT id, site, secret_hash, created_unix, expires_unix, created_by, \
                 used_by_node, used_unix FROM join_tokens ORDER BY id",
            )
            .db()?
            .query_map([], join_token_from_row)
            .db()?
            .collect::<rusqlite::Result<Vec<_>>>()
            .db()
        })
        .await
    }

    async fn enroll_node(
        &self,
        secret_hash: &str,
        node: NewNode,
        now: UnixSecs,
    ) -> StoreResult<NodeRecord> {
        let secret_hash = secret_hash.to_owned();
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let token = tx
                .prepare_cached(
                    "SELECT id, site, expires_unix, used_by_node FROM join_tokens \
                     WHERE secret_hash = ?1",
                )
                .db()?
                .query_row([&secret_hash], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Option<String>>(3)?,
                    ))
                })
                .optional()
                .db()?;
            let Some((token_id, site, expires_unix, used_by)) = token else {
                return Err(StoreError::JoinTokenUnknown);
            };
            if let Some(node) = used_by {
                return Err(StoreError::JoinTokenUsed { node });
            }
            if expires_unix <= now {
                return Err(StoreError::JoinTokenExpired);
            }
            let name = node.name.as_str();
            // Checked before touching the token, so that a refused name
            // leaves the token usable for a second try.
            if node_exists(&tx, name)? {
                return Err(StoreError::AlreadyExists {
                    kind: "node",
                    name: name.to_owned(),
                });
            }
            tx.prepare_cached(
                "UPDATE join_tokens SET used_by_node = ?2, used_unix = ?3 \
                 WHERE id = ?1 AND used_by_node IS NULL",
            )
            .db()?
            .execute(params![token_id, name, now])
            .db()?;
            let facts = node.facts.as_ref().map(Message::encode_to_vec);
            tx.prepare_cached(
                "INSERT INTO nodes (name, site, enrolled_unix, last_seen_unix, conn_state, \
                 conn_changed_unix, draining, labels, desired_generation, applied_generation, \
                 last_outcome, last_message, facts, cert_fingerprint) \
                 VALUES (?1, ?2, ?3, NULL, ?4, ?3, 0, '{}', 1, 0, 0, '', ?5, ?6)",
            )
            .db()?
            .execute(params![
                name,
                site,
                now,
                ConnState::Enrolling.as_str(),
                facts,
                node.cert_fingerprint
            ])
            .map_err(|e| insert_err(e, ("node", name), ("site", &site)))?;
            let record = load_node(&tx, name)?;
            tx.commit().db()?;
            tracing::debug!(node = name, site = %site, token = %token_id, "node enrolled");
            Ok(record)
        })
        .await
    }

    // ---- nodes

    async fn get_node(&self, name: &NodeName) -> StoreResult<NodeRecord> {
        let name = name.clone();
        self.run(move |conn| load_node(conn, name.as_str())).await
    }

    async fn node_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Option<NodeRecord>> {
        let fingerprint = fingerprint.to_owned();
        self.run(move |conn| {
            conn.prepare_cached(node_select!("WHERE cert_fingerprint = ?1"))
                .db()?
                .query_row([&fingerprint], node_from_row)
                .optional()
                .db()
        })
        .await
    }

    async fn list_nodes(&self, site: Option<&SiteName>) -> StoreResult<Vec<NodeRecord>> {
        let site = site.cloned();
        self.run(move |conn| {
            conn.prepare_cached(node_select!("WHERE ?1 IS NULL OR site = ?1 ORDER BY name"))
                .db()?
                .query_map([site.as_ref().map(SiteName::as_str)], node_from_row)
                .db()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db()
        })
        .await
    }

    async fn set_draining(&self, name: &NodeName, draining: bool) -> StoreResult<NodeRecord> {
        let name = name.clone();
        self.run(move |conn| {
            let tx = immediate(conn)?;
            tx.prepare_cached(
                "UPDATE nodes SET draining = ?2, desired_generation = desired_generation + 1 \
                 WHERE name = ?1 AND draining <> ?2",
            )
            .db()?
            .execute(params![name.as_str(), draining])
            .db()?;
            // NotFound comes from here when the node does not exist.
            let record = load_node(&tx, name.as_str())?;
            tx.commit().db()?;
            Ok(record)
        })
        .await
    }

    async fn change_labels(&self, change: LabelChange) -> StoreResult<Vec<NodeRecord>> {
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let names: BTreeSet<String> = if change.nodes.is_empty() {
                tx.prepare_cached("SELECT name FROM nodes")
                    .db()?
                    .query_map([], |row| row.get::<_, String>(0))
                    .db()?
                    .collect::<rusqlite::Result<_>>()
                    .db()?
            } else {
                let names: BTreeSet<String> =
                    change.nodes.iter().map(|n| n.as_str().to_owned()).collect();
                // Every name first: a typo must not leave half the list
                // changed.
                for name in &names {
                    if !node_exists(&tx, name)? {
                        return Err(not_found("node", name.as_str()));
                    }
                }
                names
            };
            let mut updated = Vec::with_capacity(names.len());
            for name in &names {
                let mut node = load_node(&tx, name)?;
                // `set` then `remove`: a key named in both ends up removed.
                for (key, value) in &change.set {
                    node.labels.insert(key.clone(), value.clone());
                }
                for key in &change.remove {
                    node.labels.remove(key);
                }
                tx.prepare_cached(
                    "UPDATE nodes SET labels = ?2, desired_generation = desired_generation + 1 \
                     WHERE name = ?1",
                )
                .db()?
                .execute(params![name, labels_json(&node.labels)?])
                .db()?;
                node.desired_generation += 1;
                updated.push(node);
            }
            tx.commit().db()?;
            // `names` is a BTreeSet, so `updated` is already sorted by name.
            Ok(updated)
        })
        .await
    }

    async fn set_conn_state(
        &self,
        name: &NodeName,
        state: ConnState,
        now: UnixSecs,
    ) -> StoreResult<()> {
        let name = name.clone();
        self.run(move |conn| {
            // conn_changed_unix moves only on a real change, so repeating
            // "disconnected" does not restart the unreachable delay.
            let changed = conn
                .prepare_cached(
                    "UPDATE nodes SET conn_state = ?2, conn_changed_unix = \
                     CASE WHEN conn_state = ?2 THEN conn_changed_unix ELSE ?3 END \
                     WHERE name = ?1",
                )
                .db()?
                .execute(params![name.as_str(), state.as_str(), now])
                .db()?;
            if changed == 0 {
                return Err(not_found("node", name.as_str()));
            }
            Ok(())
        })
        .await
    }

    async fn mark_unreachable(
        &self,
        cutoff: UnixSecs,
        now: UnixSecs,
    ) -> StoreResult<Vec<NodeName>> {
        self.run(move |conn| {
            let mut names = conn
                .prepare_cached(
                    "UPDATE nodes SET conn_state = ?1, conn_changed_unix = ?2 \
                     WHERE conn_state = ?3 AND conn_changed_unix < ?4 RETURNING name",
                )
                .db()?
                .query_map(
                    params![
                        ConnState::Unreachable.as_str(),
                        now,
                        ConnState::Disconnected.as_str(),
                        cutoff
                    ],
                    |row| parsed(row, 0, NodeName::new),
                )
                .db()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db()?;
            // RETURNING gives no order.
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn record_seen(&self, seen: Vec<(NodeName, UnixSecs)>) -> StoreResult<()> {
        if seen.is_empty() {
            return Ok(());
        }
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            {
                let mut stmt = tx
                    .prepare_cached("UPDATE nodes SET last_seen_unix = ?2 WHERE name = ?1")
                    .db()?;
                for (name, at) in &seen {
                    // A node removed since its heartbeat updates no row.
                    stmt.execute(params![name.as_str(), at]).db()?;
                }
            }
            tx.commit().db()
        })
        .await
    }

    async fn record_observed(
        &self,
        name: &NodeName,
        applied_generation: u64,
        outcome: i32,
        message: &str,
    ) -> StoreResult<()> {
        let name = name.clone();
        let message = message.to_owned();
        let applied = to_i64("applied generation", applied_generation)?;
        self.run(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE nodes SET applied_generation = ?2, last_outcome = ?3, \
                     last_message = ?4 WHERE name = ?1",
                )
                .db()?
                .execute(params![name.as_str(), applied, outcome, message])
                .db()?;
            if changed == 0 {
                return Err(not_found("node", name.as_str()));
            }
            Ok(())
        })
        .await
    }

    async fn record_facts(&self, name: &NodeName, facts: &NodeFacts) -> StoreResult<()> {
        let name = name.clone();
        let facts = facts.encode_to_vec();
        self.run(move |conn| {
            let changed = conn
                .prepare_cached("UPDATE nodes SET facts = ?2 WHERE name = ?1")
                .db()?
                .execute(params![name.as_str(), facts])
                .db()?;
            if changed == 0 {
                return Err(not_found("node", name.as_str()));
            }
            Ok(())
        })
        .await
    }

    // ---- tenants

    async fn create_tenant(&self, tenant: TenantRecord) -> StoreResult<TenantRecord> {
        self.run(move |conn| {
            let tx = immediate(conn)?;
            // Inside the write transaction: two creations cannot pick the
            // same id. Ids are never reused (tenants are never deleted
            // today; max + 1 stays right if they are one day).
            let posix_id: i64 = tx
                .prepare_cached("SELECT max(?1, coalesce(max(posix_id) + 1, ?1)) FROM tenants")
                .db()?
                .query_row([i64::from(FIRST_POSIX_ID)], |row| row.get(0))
                .db()?;
            tx.prepare_cached(
                "INSERT INTO tenants (name, display_name, offer, membership_expires, \
                 created_unix, storage_quota_bytes, volume_grace_days, posix_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .db()?
            .execute(params![
                tenant.name.as_str(),
                tenant.display_name,
                tenant.offer.as_str(),
                tenant.membership_expires,
                tenant.created_unix,
                to_i64("storage quota", tenant.storage_quota_bytes)?,
                tenant.volume_grace_days,
                posix_id
            ])
            .map_err(|e| insert_err(e, ("tenant", tenant.name.as_str()), ("tenant", "")))?;
            let record = load_tenant(&tx, tenant.name.as_str())?;
            tx.commit().db()?;
            Ok(record)
        })
        .await
    }

    async fn get_tenant(&self, name: &TenantName) -> StoreResult<TenantRecord> {
        let name = name.clone();
        self.run(move |conn| load_tenant(conn, name.as_str())).await
    }

    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        self.run(|conn| {
            conn.prepare_cached(&format!("{TENANT_SELECT} ORDER BY name"))
                .db()?
                .query_map([], tenant_from_row)
                .db()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db()
        })
        .await
    }

    async fn set_tenant_storage(
        &self,
        name: &TenantName,
        change: TenantStorageChange,
    ) -> StoreResult<TenantRecord> {
        let name = name.clone();
        let quota = change
            .storage_quota_bytes
            .map(|q| to_i64("storage quota", q))
            .transpose()?;
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let changed = tx
                .prepare_cached(
                    "UPDATE tenants SET storage_quota_bytes = coalesce(?2, storage_quota_bytes), \
                     volume_grace_days = coalesce(?3, volume_grace_days) WHERE name = ?1",
                )
                .db()?
                .execute(params![name.as_str(), quota, change.volume_grace_days])
                .db()?;
            if changed == 0 {
                return Err(not_found("tenant", name.as_str()));
            }
            let record = load_tenant(&tx, name.as_str())?;
            tx.commit().db()?;
            Ok(record)
        })
        .await
    }

    // ---- storage

    async fn create_pool(&self, pool: PoolRecord) -> StoreResult<PoolRecord> {
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let node = pool.node.as_str();
            let label = format!("{node}/{}", pool.name);
            if !node_exists(&tx, node)? {
                return Err(not_found("node", node));
            }
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
            bump_generation(&tx, node)?;
            let record = load_pool(&tx, node, pool.name.as_str())?;
            tx.commit().db()?;
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
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let label = volume_label(&volume);
            let tenant = volume.tenant.as_str();
            // Each check names what is wrong, in the order a person would
            // fix them.
            load_tenant(&tx, tenant)?;
            load_pool(&tx, volume.node.as_str(), volume.pool.as_str())?;
            let taken = tx
                .prepare_cached(
                    "SELECT lifecycle FROM volumes WHERE tenant = ?1 AND name = ?2 \
                     AND lifecycle <> 'destroyed'",
                )
                .db()?
                .query_row([tenant, volume.name.as_str()], |row| {
                    row.get::<_, String>(0)
                })
                .optional()
                .db()?;
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
            check_quota(&tx, tenant, 0, volume.size_bytes)?;
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
            bump_generation(&tx, volume.node.as_str())?;
            let record = load_volume(&tx, volume.id.as_str())?;
            tx.commit().db()?;
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
            conn.prepare_cached(volume_select!(
                "WHERE v.tenant = ?1 AND v.name = ?2 \
                 ORDER BY v.lifecycle = 'destroyed', v.deleted_unix DESC, v.rowid DESC LIMIT 1"
            ))
            .db()?
            .query_row([tenant.as_str(), name.as_str()], volume_from_row)
            .optional()
            .db()?
            .ok_or_else(|| not_found("volume", format!("{tenant}/{name}")))
        })
        .await
    }

    async fn list_volumes(&self, filter: VolumeFilter) -> StoreResult<Vec<VolumeRecord>> {
        self.run(move |conn| {
            conn.prepare_cached(volume_select!(
                "WHERE (?1 IS NULL OR v.tenant = ?1) AND (?2 IS NULL OR v.node = ?2) \
                 AND (?3 OR v.lifecycle <> 'destroyed') \
                 ORDER BY v.tenant, v.name, v.created_unix, v.id"
            ))
            .db()?
            .query_map(
                params![
                    filter.tenant.as_ref().map(TenantName::as_str),
                    filter.node.as_ref().map(NodeName::as_str),
                    filter.include_destroyed
                ],
                volume_from_row,
            )
            .db()?
            .collect::<rusqlite::Result<Vec<_>>>()
            .db()
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
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let v = active_volume(&tx, id.as_str(), "resized")?;
            if v.size_bytes == size_bytes {
                return Ok(v);
            }
            if size_bytes < v.reservation_bytes {
                return Err(conflict(
                    "volume",
                    volume_label(&v),
                    "the new size is below the volume's reservation",
                ));
            }
            check_quota(&tx, v.tenant.as_str(), v.size_bytes, size_bytes)?;
            tx.prepare_cached(
                "UPDATE volumes SET size_bytes = ?2, allow_shrink = ?3 WHERE id = ?1",
            )
            .db()?
            .execute(params![
                id.as_str(),
                size,
                allow_shrink && size_bytes < v.size_bytes
            ])
            .db()?;
            bump_generation(&tx, v.node.as_str())?;
            let record = load_volume(&tx, id.as_str())?;
            tx.commit().db()?;
            Ok(record)
        })
        .await
    }

    async fn delete_volume(&self, id: &VolumeId, now: UnixSecs) -> StoreResult<VolumeRecord> {
        let id = id.clone();
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let v = load_volume(&tx, id.as_str())?;
            match v.lifecycle {
                VolumeLifecycle::Active => {}
                VolumeLifecycle::Retained => {
                    return Err(conflict(
                        "volume",
                        volume_label(&v),
                        format!(
                            "is already deleted; it is kept until {} and destroyed then",
                            crate::time::date_of(v.purge_after_unix.unwrap_or_default())
                        ),
                    ));
                }
                VolumeLifecycle::Purging | VolumeLifecycle::Destroyed => {
                    return Err(conflict(
                        "volume",
                        volume_label(&v),
                        format!("is {} already", v.lifecycle.as_str()),
                    ));
                }
            }
            let grace = load_tenant(&tx, v.tenant.as_str())?.volume_grace_days;
            let purge_after = now + i64::from(grace) * 86_400;
            tx.prepare_cached(
                "UPDATE volumes SET lifecycle = 'retained', deleted_unix = ?2, \
                 purge_after_unix = ?3, allow_shrink = 0 WHERE id = ?1",
            )
            .db()?
            .execute(params![id.as_str(), now, purge_after])
            .db()?;
            bump_generation(&tx, v.node.as_str())?;
            let record = load_volume(&tx, id.as_str())?;
            tx.commit().db()?;
            Ok(record)
        })
        .await
    }

    async fn restore_volume(&self, id: &VolumeId, now: UnixSecs) -> StoreResult<VolumeRecord> {
        let id = id.clone();
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let v = load_volume(&tx, id.as_str())?;
            let label = volume_label(&v);
            match (v.lifecycle, v.purge_after_unix) {
                (VolumeLifecycle::Retained, Some(due)) if due > now => {}
                (VolumeLifecycle::Retained, _) => {
                    return Err(conflict(
                        "volume",
                        label,
                        "its grace period is over; it is being destroyed",
                    ));
                }
                (VolumeLifecycle::Active, _) => {
                    return Err(conflict("volume", label, "is not deleted"));
                }
                (VolumeLifecycle::Purging | VolumeLifecycle::Destroyed, _) => {
                    return Err(conflict(
                        "volume",
                        label,
                        format!(
                            "is {}: past its grace period, it cannot come back",
                            v.lifecycle.as_str()
                        ),
                    ));
                }
            }
            // The unique index keeps a retained volume's name, so this
            // only guards against a schema that one day lets names go.
            let reused = tx
                .prepare_cached(
                    "SELECT id FROM volumes WHERE tenant = ?1 AND name = ?2 \
                     AND lifecycle = 'active' AND id <> ?3",
                )
                .db()?
                .query_row([v.tenant.as_str(), v.name.as_str(), id.as_str()], |row| {
                    row.get::<_, String>(0)
                })
                .optional()
                .db()?;
            if let Some(other) = reused {
                return Err(conflict(
                    "volume",
                    label,
                    format!("its name is used by another active volume ({other})"),
                ));
            }
            // The volume already counts (retained volumes use disk); a
            // quota lowered meanwhile still refuses it.
            let (quota, used) = tenant_usage(&tx, v.tenant.as_str())?;
            if used > quota {
                return Err(StoreError::QuotaExceeded {
                    tenant: v.tenant.to_string(),
                    quota,
                    used: used - v.size_bytes,
                    asked: v.size_bytes,
                });
            }
            tx.prepare_cached(
                "UPDATE volumes SET lifecycle = 'active', deleted_unix = NULL, \
                 purge_after_unix = NULL WHERE id = ?1",
            )
            .db()?
            .execute([id.as_str()])
            .db()?;
            bump_generation(&tx, v.node.as_str())?;
            let record = load_volume(&tx, id.as_str())?;
            tx.commit().db()?;
            Ok(record)
        })
        .await
    }

    async fn add_snapshot(&self, id: &VolumeId, name: &SnapshotName) -> StoreResult<VolumeRecord> {
        let id = id.clone();
        let name = name.clone();
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let mut v = active_volume(&tx, id.as_str(), "snapshotted")?;
            if v.snapshots.contains(&name) {
                return Err(StoreError::AlreadyExists {
                    kind: "snapshot",
                    name: format!("{}@{name}", volume_label(&v)),
                });
            }
            if v.snapshots.len() >= MAX_SNAPSHOTS_PER_VOLUME {
                return Err(conflict(
                    "volume",
                    volume_label(&v),
                    format!(
                        "has {MAX_SNAPSHOTS_PER_VOLUME} snapshots, the most allowed; delete one first"
                    ),
                ));
            }
            v.snapshots.push(name);
            set_snapshots(&tx, &v)?;
            let record = load_volume(&tx, id.as_str())?;
            tx.commit().db()?;
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
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let mut v = active_volume(&tx, id.as_str(), "changed")?;
            let before = v.snapshots.len();
            v.snapshots.retain(|s| s != &name);
            if v.snapshots.len() == before {
                return Err(not_found(
                    "snapshot",
                    format!("{}@{name}", volume_label(&v)),
                ));
            }
            set_snapshots(&tx, &v)?;
            let record = load_volume(&tx, id.as_str())?;
            tx.commit().db()?;
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
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let changed = tx
                .prepare_cached("UPDATE volumes SET observed = ?2 WHERE id = ?1")
                .db()?
                .execute(params![id.as_str(), status])
                .db()?;
            if changed == 0 {
                return Err(not_found("volume", id.as_str()));
            }
            let record = load_volume(&tx, id.as_str())?;
            tx.commit().db()?;
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
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let name = node.as_str();
            if !node_exists(&tx, name)? {
                return Err(not_found("node", name));
            }
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
                let lifecycle = tx
                    .prepare_cached("SELECT lifecycle FROM volumes WHERE id = ?1 AND node = ?2")
                    .db()?
                    .query_row([status.id.as_str(), name], |row| row.get::<_, String>(0))
                    .optional()
                    .db()?;
                let becomes_destroyed = match lifecycle.as_deref() {
                    None | Some("destroyed") => continue,
                    Some("purging") => status.phase == VolumePhase::Destroyed as i32,
                    Some(_) => false,
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
                bump_generation(&tx, name)?;
            }
            let records = destroyed
                .iter()
                .map(|id| load_volume(&tx, id))
                .collect::<StoreResult<Vec<_>>>()?;
            tx.commit().db()?;
            Ok(records)
        })
        .await
    }

    async fn purge_due(&self, now: UnixSecs) -> StoreResult<Vec<VolumeRecord>> {
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let mut due: Vec<(String, String)> = tx
                .prepare_cached(
                    "UPDATE volumes SET lifecycle = 'purging' \
                     WHERE lifecycle = 'retained' AND purge_after_unix <= ?1 RETURNING id, node",
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
                bump_generation(&tx, node)?;
            }
            let records = due
                .iter()
                .map(|(id, _)| load_volume(&tx, id))
                .collect::<StoreResult<Vec<_>>>()?;
            tx.commit().db()?;
            Ok(records)
        })
        .await
    }

    async fn desired_configs(&self, nodes: &[NodeName]) -> StoreResult<Vec<NodeDesired>> {
        let nodes = nodes.to_vec();
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            let out = nodes
                .iter()
                .map(|n| node_desired(&tx, n.as_str()))
                .collect::<StoreResult<Vec<_>>>()?;
            tx.commit().db()?;
            Ok(out)
        })
        .await
    }

    // ---- apps

    async fn create_app_request(
        &self,
        request: NewAppRequest,
        now: UnixSecs,
    ) -> StoreResult<AppRequestRecord> {
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let tenant = request.tenant.as_str();
            let app = request.app.as_str();
            let node = request.node.as_str();
            load_tenant(&tx, tenant)?;
            if !node_exists(&tx, node)? {
                return Err(not_found("node", node));
            }
            let v = load_volume(&tx, request.volume_id.as_str())?;
            if v.tenant != request.tenant || v.node != request.node {
                return Err(conflict(
                    "volume",
                    volume_label(&v),
                    format!("is not a volume of tenant {tenant} on node {node}"),
                ));
            }
            if v.lifecycle != VolumeLifecycle::Active {
                return Err(conflict(
                    "volume",
                    volume_label(&v),
                    format!("is {}; an app needs an active volume", v.lifecycle.as_str()),
                ));
            }
            check_no_live_instance(&tx, tenant, app)?;
            let pending: Option<i64> = tx
                .prepare_cached(
                    "SELECT id FROM app_requests WHERE tenant = ?1 AND app = ?2 \
                     AND state = 'pending'",
                )
                .db()?
                .query_row([tenant, app], |row| row.get(0))
                .optional()
                .db()?;
            if let Some(other) = pending {
                return Err(conflict(
                    "app",
                    format!("{tenant}/{app}"),
                    format!("request {other} for it is already pending; comment on that one"),
                ));
            }
            let id: i64 = tx
                .prepare_cached(
                    "INSERT INTO app_requests (tenant, app, node, volume_id, requested_by, \
                     created_unix, state, decided_by, decided_unix) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', NULL, NULL) RETURNING id",
                )
                .db()?
                .query_row(
                    params![
                        tenant,
                        app,
                        node,
                        request.volume_id.as_str(),
                        request.requested_by.as_str(),
                        now
                    ],
                    |row| row.get(0),
                )
                .db()?;
            let id = u64::try_from(id)
                .map_err(|_| backend(corrupt("app_requests.id", id.to_string())))?;
            if !request.comment.is_empty() {
                add_comment(
                    &tx,
                    id,
                    &CommentRecord {
                        author: request.requested_by.clone(),
                        at_unix: now,
                        text: request.comment.clone(),
                    },
                )?;
            }
            let record = load_request(&tx, id)?;
            tx.commit().db()?;
            Ok(record)
        })
        .await
    }

    async fn get_app_request(&self, id: u64) -> StoreResult<AppRequestRecord> {
        self.run(move |conn| load_request(conn, id)).await
    }

    async fn list_app_requests(
        &self,
        tenant: Option<&TenantName>,
        state: Option<RequestState>,
    ) -> StoreResult<Vec<AppRequestRecord>> {
        let tenant = tenant.cloned();
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            let requests = tx
                .prepare_cached(&format!(
                    "{REQUEST_SELECT} WHERE (?1 IS NULL OR r.tenant = ?1) \
                     AND (?2 IS NULL OR r.state = ?2) ORDER BY r.id"
                ))
                .db()?
                .query_map(
                    params![
                        tenant.as_ref().map(TenantName::as_str),
                        state.map(RequestState::as_str)
                    ],
                    request_from_row,
                )
                .db()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db()?;
            let out = requests
                .into_iter()
                .map(|r| with_comments(&tx, r))
                .collect::<StoreResult<Vec<_>>>()?;
            tx.commit().db()?;
            Ok(out)
        })
        .await
    }

    async fn comment_app_request(
        &self,
        id: u64,
        comment: CommentRecord,
    ) -> StoreResult<AppRequestRecord> {
        self.run(move |conn| {
            let tx = immediate(conn)?;
            load_request(&tx, id)?;
            add_comment(&tx, id, &comment)?;
            let record = load_request(&tx, id)?;
            tx.commit().db()?;
            Ok(record)
        })
        .await
    }

    async fn approve_app_request(
        &self,
        id: u64,
        by: &UserName,
        comment: &str,
        now: UnixSecs,
    ) -> StoreResult<(AppRequestRecord, InstanceRecord)> {
        let by = by.clone();
        let comment = comment.to_owned();
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let r = pending_request(&tx, id)?;
            let (tenant, app, node) = (r.tenant.as_str(), r.app.as_str(), r.node.as_str());
            check_no_live_instance(&tx, tenant, app)?;
            let v = load_volume(&tx, r.volume_id.as_str())?;
            if v.lifecycle != VolumeLifecycle::Active {
                return Err(conflict(
                    "request",
                    id.to_string(),
                    format!(
                        "its volume {} is {}; an app needs an active volume",
                        volume_label(&v),
                        v.lifecycle.as_str()
                    ),
                ));
            }
            // A removed instance of the same app still on the node has the
            // same unit name: the new instance takes the unit over.
            tx.prepare_cached(
                "UPDATE app_instances SET gone = 1 \
                 WHERE tenant = ?1 AND app = ?2 AND node = ?3 AND gone = 0",
            )
            .db()?
            .execute([tenant, app, node])
            .db()?;
            let port = free_port(&tx, node)?;
            let rowid: i64 = tx
                .prepare_cached(
                    "INSERT INTO app_instances (tenant, app, node, volume_id, port, state, \
                     restart_nonce, request_id, created_unix, gone, observed) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'running', 0, ?6, ?7, 0, NULL) RETURNING id",
                )
                .db()?
                .query_row(
                    params![
                        tenant,
                        app,
                        node,
                        r.volume_id.as_str(),
                        port,
                        to_i64("request id", id)?,
                        now
                    ],
                    |row| row.get(0),
                )
                .db()?;
            decide(&tx, id, RequestState::Approved, &by, &comment, now)?;
            bump_generation(&tx, node)?;
            let request = load_request(&tx, id)?;
            let instance = load_instance(&tx, rowid)?;
            tx.commit().db()?;
            Ok((request, instance))
        })
        .await
    }

    async fn reject_app_request(
        &self,
        id: u64,
        by: &UserName,
        comment: &str,
        now: UnixSecs,
    ) -> StoreResult<AppRequestRecord> {
        let by = by.clone();
        let comment = comment.to_owned();
        self.run(move |conn| {
            let tx = immediate(conn)?;
            pending_request(&tx, id)?;
            decide(&tx, id, RequestState::Rejected, &by, &comment, now)?;
            let request = load_request(&tx, id)?;
            tx.commit().db()?;
            Ok(request)
        })
        .await
    }

    async fn get_instance(
        &self,
        tenant: &TenantName,
        app: &AppName,
    ) -> StoreResult<InstanceRecord> {
        let tenant = tenant.clone();
        let app = app.clone();
        self.run(move |conn| {
            conn.prepare_cached(instance_select!(
                "WHERE i.tenant = ?1 AND i.app = ?2 \
                 ORDER BY i.state = 'removed', i.id DESC LIMIT 1"
            ))
            .db()?
            .query_row([tenant.as_str(), app.as_str()], instance_from_row)
            .optional()
            .db()?
            .ok_or_else(|| not_found("instance", format!("{tenant}/{app}")))
        })
        .await
    }

    async fn list_instances(&self, filter: InstanceFilter) -> StoreResult<Vec<InstanceRecord>> {
        self.run(move |conn| {
            conn.prepare_cached(instance_select!(
                "WHERE (?1 IS NULL OR i.tenant = ?1) AND (?2 IS NULL OR i.node = ?2) \
                 AND i.gone = 0 ORDER BY i.tenant, i.app, i.id"
            ))
            .db()?
            .query_map(
                params![
                    filter.tenant.as_ref().map(TenantName::as_str),
                    filter.node.as_ref().map(NodeName::as_str)
                ],
                instance_from_row,
            )
            .db()?
            .collect::<rusqlite::Result<Vec<_>>>()
            .db()
        })
        .await
    }

    async fn change_instance(
        &self,
        tenant: &TenantName,
        app: &AppName,
        change: InstanceChange,
    ) -> StoreResult<InstanceRecord> {
        let tenant = tenant.clone();
        let app = app.clone();
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let label = format!("{tenant}/{app}");
            let Some(rowid) = live_instance(&tx, tenant.as_str(), app.as_str())? else {
                let removed = tx
                    .prepare_cached("SELECT 1 FROM app_instances WHERE tenant = ?1 AND app = ?2")
                    .db()?
                    .exists([tenant.as_str(), app.as_str()])
                    .db()?;
                return Err(if removed {
                    conflict(
                        "instance",
                        label,
                        format!(
                            "is removed; it cannot {} (request the app again)",
                            change.as_str()
                        ),
                    )
                } else {
                    not_found("instance", label)
                });
            };
            let before = load_instance(&tx, rowid)?;
            let sql = match change {
                InstanceChange::Start if before.state == InstanceState::Running => None,
                InstanceChange::Stop if before.state == InstanceState::Stopped => None,
                InstanceChange::Start => {
                    Some("UPDATE app_instances SET state = 'running' WHERE id = ?1")
                }
                InstanceChange::Stop => {
                    Some("UPDATE app_instances SET state = 'stopped' WHERE id = ?1")
                }
                InstanceChange::Restart => Some(
                    "UPDATE app_instances SET state = 'running', \
                     restart_nonce = restart_nonce + 1 WHERE id = ?1",
                ),
                InstanceChange::Remove => {
                    Some("UPDATE app_instances SET state = 'removed' WHERE id = ?1")
                }
            };
            let Some(sql) = sql else {
                return Ok(before);
            };
            tx.prepare_cached(sql).db()?.execute([rowid]).db()?;
            bump_generation(&tx, before.node.as_str())?;
            let record = load_instance(&tx, rowid)?;
            tx.commit().db()?;
            Ok(record)
        })
        .await
    }

    async fn record_apps(
        &self,
        node: &NodeName,
        statuses: Vec<AppStatus>,
    ) -> StoreResult<Vec<InstanceRecord>> {
        let node = node.clone();
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let name = node.as_str();
            if !node_exists(&tx, name)? {
                return Err(not_found("node", name));
            }
            let mut gone = Vec::new();
            for status in &statuses {
                // Only this node's instances: a node never writes another's.
                let found: Option<(i64, String)> = tx
                    .prepare_cached(
                        "SELECT id, state FROM app_instances \
                         WHERE node = ?1 AND tenant = ?2 AND app = ?3 AND gone = 0",
                    )
                    .db()?
                    .query_row([name, status.tenant.as_str(), status.app.as_str()], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()
                    .db()?;
                let Some((rowid, state)) = found else {
                    continue;
                };
                let becomes_gone = state == "removed" && status.active_state == "removed";
                tx.prepare_cached(
                    "UPDATE app_instances SET observed = ?2, gone = ?3 WHERE id = ?1",
                )
                .db()?
                .execute(params![rowid, status.encode_to_vec(), becomes_gone])
                .db()?;
                if becomes_gone {
                    gone.push(rowid);
                }
            }
            if !gone.is_empty() {
                bump_generation(&tx, name)?;
            }
            let records = gone
                .iter()
                .map(|rowid| load_instance(&tx, *rowid))
                .collect::<StoreResult<Vec<_>>>()?;
            tx.commit().db()?;
            Ok(records)
        })
        .await
    }

    // ---- users

    async fn create_user(&self, user: UserRecord) -> StoreResult<()> {
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let name = user.name.as_str();
            let tenant = user.tenant.as_ref().map(TenantName::as_str);
            tx.prepare_cached(
                "INSERT INTO users (name, tenant, role, display_name, created_unix) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .db()?
            .execute(params![
                name,
                tenant,
                user.role.as_str(),
                user.display_name,
                user.created_unix
            ])
            .map_err(|e| insert_err(e, ("user", name), ("tenant", tenant.unwrap_or_default())))?;
            // The record may arrive with its grants; they are part of it.
            for node in &user.node_grants {
                if !node_exists(&tx, node.as_str())? {
                    return Err(not_found("node", node.as_str()));
                }
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO node_grants (user_name, node_name) VALUES (?1, ?2)",
                )
                .db()?
                .execute(params![name, node.as_str()])
                .db()?;
            }
            tx.commit().db()
        })
        .await
    }

    async fn get_user(&self, name: &UserName) -> StoreResult<UserRecord> {
        let name = name.clone();
        self.run(move |conn| load_user(conn, name.as_str())).await
    }

    async fn list_users(&self, tenant: Option<&TenantName>) -> StoreResult<Vec<UserRecord>> {
        let tenant = tenant.cloned();
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            let users = tx
                .prepare_cached(&format!(
                    "{USER_SELECT} WHERE ?1 IS NULL OR tenant = ?1 ORDER BY name"
                ))
                .db()?
                .query_map([tenant.as_ref().map(TenantName::as_str)], user_from_row)
                .db()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db()?;
            let users = users
                .into_iter()
                .map(|user| with_grants(&tx, user))
                .collect::<StoreResult<Vec<_>>>()?;
            tx.commit().db()?;
            Ok(users)
        })
        .await
    }

    async fn grant_node(&self, user: &UserName, node: &NodeName) -> StoreResult<UserRecord> {
        let user = user.clone();
        let node = node.clone();
        self.run(move |conn| {
            let tx = immediate(conn)?;
            if !user_exists(&tx, user.as_str())? {
                return Err(not_found("user", user.as_str()));
            }
            if !node_exists(&tx, node.as_str())? {
                return Err(not_found("node", node.as_str()));
            }
            tx.prepare_cached(
                "INSERT OR IGNORE INTO node_grants (user_name, node_name) VALUES (?1, ?2)",
            )
            .db()?
            .execute(params![user.as_str(), node.as_str()])
            .db()?;
            let record = load_user(&tx, user.as_str())?;
            tx.commit().db()?;
            Ok(record)
        })
        .await
    }

    async fn revoke_node_grant(&self, user: &UserName, node: &NodeName) -> StoreResult<UserRecord> {
        let user = user.clone();
        let node = node.clone();
        self.run(move |conn| {
            let tx = immediate(conn)?;
            if !user_exists(&tx, user.as_str())? {
                return Err(not_found("user", user.as_str()));
            }
            tx.prepare_cached("DELETE FROM node_grants WHERE user_name = ?1 AND node_name = ?2")
                .db()?
                .execute(params![user.as_str(), node.as_str()])
                .db()?;
            let record = load_user(&tx, user.as_str())?;
            tx.commit().db()?;
            Ok(record)
        })
        .await
    }

    // ---- API tokens and user certificates

    async fn create_api_token(&self, token: ApiTokenRecord) -> StoreResult<()> {
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO api_tokens (id, user_name, description, secret_hash, created_unix, \
                 expires_unix, revoked_unix) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .db()?
            .execute(params![
                token.id,
                token.user.as_str(),
                token.description,
                token.secret_hash,
                token.created_unix,
                token.expires_unix,
                token.revoked_unix
            ])
            .map_err(|e| insert_err(e, ("api token", &token.id), ("user", token.user.as_str())))?;
            Ok(())
        })
        .await
    }

    async fn api_token_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let secret_hash = secret_hash.to_owned();
        self.run(move |conn| {
            conn.prepare_cached(&format!("{API_TOKEN_SELECT} WHERE secret_hash = ?1"))
                .db()?
                .query_row([&secret_hash], api_token_from_row)
                .optional()
                .db()
        })
        .await
    }

    async fn get_api_token(&self, id: &str) -> StoreResult<ApiTokenRecord> {
        let id = id.to_owned();
        self.run(move |conn| load_api_token(conn, &id)).await
    }

    async fn list_api_tokens(&self, user: Option<&UserName>) -> StoreResult<Vec<ApiTokenRecord>> {
        let user = user.cloned();
        self.run(move |conn| {
            conn.prepare_cached(&format!(
                "{API_TOKEN_SELECT} WHERE ?1 IS NULL OR user_name = ?1 ORDER BY id"
            ))
            .db()?
            .query_map([user.as_ref().map(UserName::as_str)], api_token_from_row)
            .db()?
            .collect::<rusqlite::Result<Vec<_>>>()
            .db()
        })
        .await
    }

    async fn revoke_api_token(&self, id: &str, now: UnixSecs) -> StoreResult<ApiTokenRecord> {
        let id = id.to_owned();
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let changed = tx
                .prepare_cached(
                    "UPDATE api_tokens SET revoked_unix = coalesce(revoked_unix, ?2) \
                     WHERE id = ?1",
                )
                .db()?
                .execute(params![id, now])
                .db()?;
            if changed == 0 {
                return Err(not_found("api token", id));
            }
            let record = load_api_token(&tx, &id)?;
            tx.commit().db()?;
            Ok(record)
        })
        .await
    }

    async fn add_user_cert(&self, cert: UserCertRecord) -> StoreResult<()> {
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO user_certs (fingerprint, user_name, created_unix, expires_unix) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .db()?
            .execute(params![
                cert.fingerprint,
                cert.user.as_str(),
                cert.created_unix,
                cert.expires_unix
            ])
            .map_err(|e| {
                insert_err(
                    e,
                    ("user certificate", &cert.fingerprint),
                    ("user", cert.user.as_str()),
                )
            })?;
            Ok(())
        })
        .await
    }

    async fn user_cert_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> StoreResult<Option<UserCertRecord>> {
        let fingerprint = fingerprint.to_owned();
        self.run(move |conn| {
            conn.prepare_cached(
                "SELECT fingerprint, user_name, created_unix, expires_unix FROM user_certs \
                 WHERE fingerprint = ?1",
            )
            .db()?
            .query_row([&fingerprint], user_cert_from_row)
            .optional()
            .db()
        })
        .await
    }

    // ---- audit (append-only)

    async fn append_audit(&self, entry: AuditRecord) -> StoreResult<u64> {
        self.run(move |conn| {
            let id: i64 = conn
                .prepare_cached(
                    "INSERT INTO audit (at_unix_ms, actor, action, target, tenant, outcome, \
                     detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                )
                .db()?
                .query_row(
                    params![
                        entry.at_unix_ms,
                        entry.actor,
                        entry.action,
                        entry.target,
                        entry.tenant.as_ref().map(TenantName::as_str),
                        entry.outcome.as_str(),
                        entry.detail
                    ],
                    |row| row.get(0),
                )
                .db()?;
            u64::try_from(id).map_err(backend)
        })
        .await
    }

    async fn list_audit(&self, filter: AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let limit = match filter.limit {
            0 => AUDIT_DEFAULT_LIMIT,
            n => n.min(AUDIT_MAX_LIMIT),
        };
        self.run(move |conn| {
            // Only the filters in use go into the statement, so that SQLite
            // can pick the (tenant, id) or (actor, id) index.
            let mut sql = String::from(
                "SELECT id, at_unix_ms, actor, action, target, tenant, outcome, detail \
                 FROM audit WHERE 1 = 1",
            );
            let mut args: Vec<Value> = Vec::new();
            if let Some(before) = filter.before {
                sql.push_str(" AND id < ?");
                // Every id is below i64::MAX, so a larger bound filters nothing.
                args.push(Value::Integer(i64::try_from(before).unwrap_or(i64::MAX)));
            }
            if let Some(tenant) = &filter.tenant {
                sql.push_str(" AND tenant = ?");
                args.push(Value::Text(tenant.as_str().to_owned()));
            }
            if let Some(actor) = &filter.actor {
                sql.push_str(" AND actor = ?");
                args.push(Value::Text(actor.clone()));
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?");
            args.push(Value::Integer(i64::from(limit)));
            conn.prepare_cached(&sql)
                .db()?
                .query_map(params_from_iter(args), audit_from_row)
                .db()?
                .collect::<rusqlite::Result<Vec<_>>>()
                .db()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use coloc_proto::agent::v1::{Disk, NodeFacts};
    use coloc_proto::domain::{NodeName, Offer, Role, SiteName, TenantName, UserName};

    use super::*;

    const NOW: UnixSecs = 1_800_000_000;

    fn site_name(s: &str) -> SiteName {
        SiteName::new(s).unwrap()
    }
    fn node_name(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }
    fn tenant_name(s: &str) -> TenantName {
        TenantName::new(s).unwrap()
    }
    fn user_name(s: &str) -> UserName {
        UserName::new(s).unwrap()
    }

    fn site(name: &str) -> SiteRecord {
        SiteRecord {
            name: site_name(name),
            country: "FR".into(),
            city: "Paris".into(),
            description: format!("site {name}"),
            created_unix: NOW - 1000,
        }
    }

    fn join_token(id: &str, site: &str, expires_unix: UnixSecs) -> JoinTokenRecord {
        JoinTokenRecord {
            id: id.into(),
            site: site_name(site),
            secret_hash: format!("hash-of-{id}"),
            created_unix: NOW - 100,
            expires_unix,
            created_by: "user:alice".into(),
            used_by_node: None,
            used_unix: None,
        }
    }

    fn facts(hostname: &str) -> NodeFacts {
        NodeFacts {
            hostname: hostname.into(),
            cpu_model: "EPYC".into(),
            cpu_count: 16,
            memory_bytes: 64 << 30,
            disks: vec![Disk {
                name: "nvme0n1".into(),
                model: "QEMU NVMe Ctrl".into(),
                serial: "COLOC0001".into(),
                size_bytes: 1 << 40,
                transport: "nvme".into(),
                rotational: false,
            }],
            ..NodeFacts::default()
        }
    }

    fn new_node(name: &str) -> NewNode {
        NewNode {
            name: node_name(name),
            cert_fingerprint: format!("fp-{name}"),
            facts: Some(facts(name)),
        }
    }

    fn tenant(name: &str) -> TenantRecord {
        TenantRecord {
            name: tenant_name(name),
            display_name: format!("Association {name}"),
            offer: Offer::Participatif,
            membership_expires: "2027-06-30".into(),
            created_unix: NOW,
            storage_quota_bytes: 10 << 30,
            volume_grace_days: 30,
            posix_id: 0,
            storage_used_bytes: 0,
        }
    }

    fn user(name: &str, tenant: Option<&str>, role: Role) -> UserRecord {
        UserRecord {
            name: user_name(name),
            tenant: tenant.map(tenant_name),
            role,
            display_name: format!("User {name}"),
            created_unix: NOW,
            node_grants: Vec::new(),
        }
    }

    fn api_token(id: &str, user: &str) -> ApiTokenRecord {
        ApiTokenRecord {
            id: id.into(),
            user: user_name(user),
            description: format!("token {id}"),
            secret_hash: format!("hash-of-{id}"),
            created_unix: NOW,
            expires_unix: NOW + 3600,
            revoked_unix: None,
        }
    }

    fn audit(at: i64, actor: &str, tenant: Option<&str>, outcome: AuditOutcome) -> AuditRecord {
        AuditRecord {
            id: 0,
            at_unix_ms: at,
            actor: actor.into(),
            action: "CreateApp".into(),
            target: "app/nextcloud".into(),
            tenant: tenant.map(tenant_name),
            outcome,
            detail: String::new(),
        }
    }

    /// A store with site `paris-1` and nodes enrolled through one token each.
    async fn fleet(nodes: &[&str]) -> SqliteStore {
        let store = SqliteStore::open_in_memory().unwrap();
        store.create_site(site("paris-1")).await.unwrap();
        for name in nodes {
            let id = format!("jt-{name}");
            store
                .create_join_token(join_token(&id, "paris-1", NOW + 3600))
                .await
                .unwrap();
            store
                .enroll_node(&format!("hash-of-{id}"), new_node(name), NOW)
                .await
                .unwrap();
        }
        store
    }

    fn names(nodes: &[NodeRecord]) -> Vec<&str> {
        nodes.iter().map(|n| n.name.as_str()).collect()
    }

    // ---- sites and join tokens

    #[tokio::test]
    async fn sites_are_created_listed_by_name_and_unique() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.create_site(site("lyon-1")).await.unwrap();
        store.create_site(site("paris-1")).await.unwrap();
        store.create_site(site("brest-2")).await.unwrap();

        let listed = store.list_sites().await.unwrap();
        let listed: Vec<_> = listed.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(listed, ["brest-2", "lyon-1", "paris-1"]);
        assert_eq!(
            store.get_site(&site_name("paris-1")).await.unwrap(),
            site("paris-1")
        );

        let err = store.create_site(site("paris-1")).await.unwrap_err();
        assert!(
            matches!(err, StoreError::AlreadyExists { kind: "site", ref name } if name == "paris-1"),
            "{err:?}"
        );
        let err = store.get_site(&site_name("nantes")).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "site", ref name } if name == "nantes"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn join_tokens_need_a_site_and_a_unique_id() {
        let store = fleet(&[]).await;
        store
            .create_join_token(join_token("jt-b", "paris-1", NOW + 60))
            .await
            .unwrap();
        store
            .create_join_token(join_token("jt-a", "paris-1", NOW + 60))
            .await
            .unwrap();
        let tokens = store.list_join_tokens().await.unwrap();
        assert_eq!(
            tokens,
            [
                join_token("jt-a", "paris-1", NOW + 60),
                join_token("jt-b", "paris-1", NOW + 60)
            ]
        );

        let err = store
            .create_join_token(join_token("jt-a", "paris-1", NOW + 60))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::AlreadyExists { kind: "join token", ref name } if name == "jt-a"),
            "{err:?}"
        );
        let err = store
            .create_join_token(join_token("jt-c", "nowhere", NOW + 60))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "site", ref name } if name == "nowhere"),
            "{err:?}"
        );
    }

    // ---- enrollment

    #[tokio::test]
    async fn enrollment_creates_the_node_and_consumes_the_token_once() {
        let store = fleet(&[]).await;
        store
            .create_join_token(join_token("jt-1", "paris-1", NOW + 3600))
            .await
            .unwrap();

        let node = store
            .enroll_node("hash-of-jt-1", new_node("n1"), NOW)
            .await
            .unwrap();
        assert_eq!(
            node,
            NodeRecord {
                name: node_name("n1"),
                site: site_name("paris-1"),
                enrolled_unix: NOW,
                last_seen_unix: None,
                conn_state: ConnState::Enrolling,
                conn_changed_unix: NOW,
                draining: false,
                labels: BTreeMap::new(),
                desired_generation: 1,
                applied_generation: 0,
                last_outcome: 0,
                last_message: String::new(),
                facts: Some(facts("n1")),
                cert_fingerprint: "fp-n1".into(),
            }
        );
        assert_eq!(store.get_node(&node_name("n1")).await.unwrap(), node);

        let token = &store.list_join_tokens().await.unwrap()[0];
        assert_eq!(token.used_by_node, Some(node_name("n1")));
        assert_eq!(token.used_unix, Some(NOW));

        let err = store
            .enroll_node("hash-of-jt-1", new_node("n2"), NOW + 1)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::JoinTokenUsed { ref node } if node == "n1"),
            "{err:?}"
        );
        let err = store.get_node(&node_name("n2")).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "node", .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn enrollment_refuses_expired_and_unknown_tokens() {
        let store = fleet(&[]).await;
        store
            .create_join_token(join_token("jt-1", "paris-1", NOW))
            .await
            .unwrap();

        // Expiry is exclusive: a token expiring now is already expired.
        let err = store
            .enroll_node("hash-of-jt-1", new_node("n1"), NOW)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::JoinTokenExpired), "{err:?}");
        let ok = store
            .enroll_node("hash-of-jt-1", new_node("n1"), NOW - 1)
            .await
            .unwrap();
        assert_eq!(ok.name.as_str(), "n1");

        let err = store
            .enroll_node("hash-of-nothing", new_node("n2"), NOW)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::JoinTokenUnknown), "{err:?}");
        assert_eq!(store.list_nodes(None).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn duplicate_node_name_leaves_the_token_unused() {
        let store = fleet(&["n1"]).await;
        store
            .create_join_token(join_token("jt-2", "paris-1", NOW + 3600))
            .await
            .unwrap();

        let err = store
            .enroll_node("hash-of-jt-2", new_node("n1"), NOW)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::AlreadyExists { kind: "node", ref name } if name == "n1"),
            "{err:?}"
        );
        let tokens = store.list_join_tokens().await.unwrap();
        let second = tokens.iter().find(|t| t.id == "jt-2").unwrap();
        assert_eq!(second.used_by_node, None);
        assert_eq!(second.used_unix, None);

        // The operator picks another name and the same token works.
        let node = store
            .enroll_node("hash-of-jt-2", new_node("n2"), NOW)
            .await
            .unwrap();
        assert_eq!(node.name.as_str(), "n2");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_enrollments_with_one_token_admit_exactly_one() {
        let store = Arc::new(fleet(&[]).await);
        store
            .create_join_token(join_token("jt-1", "paris-1", NOW + 3600))
            .await
            .unwrap();

        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    store
                        .enroll_node("hash-of-jt-1", new_node(&format!("n{i}")), NOW)
                        .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(node) => winners.push(node.name),
                Err(StoreError::JoinTokenUsed { node }) => {
                    assert!(node.starts_with('n'), "{node}");
                }
                Err(other) => panic!("unexpected error: {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        let nodes = store.list_nodes(None).await.unwrap();
        assert_eq!(names(&nodes), [winners[0].as_str()]);
        let token = &store.list_join_tokens().await.unwrap()[0];
        assert_eq!(token.used_by_node.as_ref(), Some(&winners[0]));
    }

    /// Two stores (two connections) on one file: the IMMEDIATE transaction
    /// and the busy timeout, not just the in-process mutex, keep the token
    /// single-use.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_enrollments_across_connections_admit_exactly_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("colocd.db");
        let first = SqliteStore::open(&path).unwrap();
        let second = SqliteStore::open(&path).unwrap();
        first.create_site(site("paris-1")).await.unwrap();
        first
            .create_join_token(join_token("jt-1", "paris-1", NOW + 3600))
            .await
            .unwrap();

        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = if i % 2 == 0 {
                    first.clone()
                } else {
                    second.clone()
                };
                tokio::spawn(async move {
                    store
                        .enroll_node("hash-of-jt-1", new_node(&format!("n{i}")), NOW)
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::JoinTokenUsed { .. }) => {}
                Err(other) => panic!("unexpected error: {other:?}"),
            }
        }
        assert_eq!(ok, 1);
        assert_eq!(second.list_nodes(None).await.unwrap().len(), 1);
    }

    // ---- nodes

    #[tokio::test]
    async fn nodes_are_found_by_name_fingerprint_and_site() {
        let store = fleet(&["n2", "n1"]).await;
        store.create_site(site("lyon-1")).await.unwrap();
        store
            .create_join_token(join_token("jt-l", "lyon-1", NOW + 3600))
            .await
            .unwrap();
        store
            .enroll_node("hash-of-jt-l", new_node("l1"), NOW)
            .await
            .unwrap();

        assert_eq!(
            names(&store.list_nodes(None).await.unwrap()),
            ["l1", "n1", "n2"]
        );
        assert_eq!(
            names(&store.list_nodes(Some(&site_name("paris-1"))).await.unwrap()),
            ["n1", "n2"]
        );
        assert!(
            store
                .list_nodes(Some(&site_name("brest")))
                .await
                .unwrap()
                .is_empty()
        );

        let by_fp = store.node_by_fingerprint("fp-n2").await.unwrap().unwrap();
        assert_eq!(by_fp.name.as_str(), "n2");
        assert_eq!(store.node_by_fingerprint("fp-zz").await.unwrap(), None);

        let err = store.get_node(&node_name("zz")).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "node", ref name } if name == "zz"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn draining_bumps_the_generation_only_on_change() {
        let store = fleet(&["n1"]).await;
        let n1 = node_name("n1");

        let node = store.set_draining(&n1, false).await.unwrap();
        assert_eq!((node.draining, node.desired_generation), (false, 1));
        let node = store.set_draining(&n1, true).await.unwrap();
        assert_eq!((node.draining, node.desired_generation), (true, 2));
        let node = store.set_draining(&n1, true).await.unwrap();
        assert_eq!((node.draining, node.desired_generation), (true, 2));
        let node = store.set_draining(&n1, false).await.unwrap();
        assert_eq!((node.draining, node.desired_generation), (false, 3));
        assert_eq!(store.get_node(&n1).await.unwrap(), node);

        let err = store
            .set_draining(&node_name("zz"), true)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "node", .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn label_changes_apply_to_named_nodes_and_bump_generations() {
        let store = fleet(&["n1", "n2", "n3"]).await;

        let changed = store
            .change_labels(LabelChange {
                nodes: vec![node_name("n3"), node_name("n1"), node_name("n3")],
                set: BTreeMap::from([
                    ("rack".to_owned(), "a".to_owned()),
                    ("tier".to_owned(), "gold".to_owned()),
                ]),
                remove: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(names(&changed), ["n1", "n3"]);
        for node in &changed {
            assert_eq!(node.desired_generation, 2);
            assert_eq!(node.labels["rack"], "a");
            assert_eq!(&store.get_node(&node.name).await.unwrap(), node);
        }
        let n2 = store.get_node(&node_name("n2")).await.unwrap();
        assert!(n2.labels.is_empty());
        assert_eq!(n2.desired_generation, 1);

        // Empty node list: every node; set and remove in one change.
        let changed = store
            .change_labels(LabelChange {
                nodes: Vec::new(),
                set: BTreeMap::from([("rack".to_owned(), "b".to_owned())]),
                remove: vec!["tier".to_owned(), "absent".to_owned()],
            })
            .await
            .unwrap();
        assert_eq!(names(&changed), ["n1", "n2", "n3"]);
        let generations: Vec<_> = changed.iter().map(|n| n.desired_generation).collect();
        assert_eq!(generations, [3, 2, 3]);
        for node in &changed {
            assert_eq!(
                node.labels,
                BTreeMap::from([("rack".to_owned(), "b".to_owned())])
            );
        }
    }

    #[tokio::test]
    async fn label_change_naming_an_unknown_node_changes_nothing() {
        let store = fleet(&["n1"]).await;
        let before = store.get_node(&node_name("n1")).await.unwrap();

        let err = store
            .change_labels(LabelChange {
                nodes: vec![node_name("n1"), node_name("ghost")],
                set: BTreeMap::from([("rack".to_owned(), "a".to_owned())]),
                remove: Vec::new(),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "node", ref name } if name == "ghost"),
            "{err:?}"
        );
        assert_eq!(store.get_node(&node_name("n1")).await.unwrap(), before);
    }

    #[tokio::test]
    async fn disconnected_nodes_become_unreachable_after_the_cutoff() {
        let store = fleet(&["n1", "n2", "n3", "n4"]).await;
        store
            .set_conn_state(&node_name("n1"), ConnState::Disconnected, 100)
            .await
            .unwrap();
        store
            .set_conn_state(&node_name("n2"), ConnState::Disconnected, 200)
            .await
            .unwrap();
        store
            .set_conn_state(&node_name("n3"), ConnState::Connected, 50)
            .await
            .unwrap();
        store
            .set_conn_state(&node_name("n4"), ConnState::Disconnected, 90)
            .await
            .unwrap();
        // Repeating a state keeps the time it was entered.
        store
            .set_conn_state(&node_name("n4"), ConnState::Disconnected, 250)
            .await
            .unwrap();
        let n4 = store.get_node(&node_name("n4")).await.unwrap();
        assert_eq!(
            (n4.conn_state, n4.conn_changed_unix),
            (ConnState::Disconnected, 90)
        );

        let marked = store.mark_unreachable(150, 300).await.unwrap();
        assert_eq!(marked, [node_name("n1"), node_name("n4")]);
        let n1 = store.get_node(&node_name("n1")).await.unwrap();
        assert_eq!(
            (n1.conn_state, n1.conn_changed_unix),
            (ConnState::Unreachable, 300)
        );
        let n2 = store.get_node(&node_name("n2")).await.unwrap();
        assert_eq!(
            (n2.conn_state, n2.conn_changed_unix),
            (ConnState::Disconnected, 200)
        );
        let n3 = store.get_node(&node_name("n3")).await.unwrap();
        assert_eq!(n3.conn_state, ConnState::Connected);

        // Already unreachable nodes are not reported again.
        assert!(store.mark_unreachable(150, 400).await.unwrap().is_empty());

        let err = store
            .set_conn_state(&node_name("zz"), ConnState::Connected, 1)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "node", .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn seen_batches_update_known_nodes_and_ignore_the_rest() {
        let store = fleet(&["n1", "n2"]).await;
        store.record_seen(Vec::new()).await.unwrap();

        // A heartbeat batch the size of a large fleet, mostly unknown names.
        let mut batch: Vec<_> = (0..5000)
            .map(|i| (node_name(&format!("gone-{i}")), NOW + 5))
            .collect();
        batch.push((node_name("n1"), NOW + 10));
        batch.push((node_name("n2"), NOW + 20));
        store.record_seen(batch).await.unwrap();

        let nodes = store.list_nodes(None).await.unwrap();
        let seen: Vec<_> = nodes.iter().map(|n| n.last_seen_unix).collect();
        assert_eq!(seen, [Some(NOW + 10), Some(NOW + 20)]);
        assert_eq!(nodes.len(), 2);
    }

    #[tokio::test]
    async fn observed_state_and_facts_are_recorded() {
        let store = fleet(&["n1"]).await;
        let n1 = node_name("n1");

        store
            .record_observed(&n1, 7, 2, "volume quota applied")
            .await
            .unwrap();
        let mut new_facts = facts("n1");
        new_facts.memory_bytes = 128 << 30;
        new_facts.kernel_version = "6.1.0-28-amd64".into();
        store.record_facts(&n1, &new_facts).await.unwrap();

        let node = store.get_node(&n1).await.unwrap();
        assert_eq!(node.applied_generation, 7);
        assert_eq!(node.last_outcome, 2);
        assert_eq!(node.last_message, "volume quota applied");
        assert_eq!(node.facts, Some(new_facts.clone()));

        let zz = node_name("zz");
        let err = store.record_observed(&zz, 1, 0, "").await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "node", .. }),
            "{err:?}"
        );
        let err = store.record_facts(&zz, &new_facts).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "node", .. }),
            "{err:?}"
        );
        let err = store
            .record_observed(&n1, u64::MAX, 0, "")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    }

    // ---- tenants and users

    #[tokio::test]
    async fn tenants_are_created_listed_and_unique() {
        let store = SqliteStore::open_in_memory().unwrap();
        let y = store.create_tenant(tenant("asso-y")).await.unwrap();
        let x = store.create_tenant(tenant("asso-x")).await.unwrap();
        assert_eq!(
            y,
            TenantRecord {
                posix_id: FIRST_POSIX_ID,
                ..tenant("asso-y")
            }
        );
        assert_eq!(x.posix_id, FIRST_POSIX_ID + 1);

        let listed = store.list_tenants().await.unwrap();
        assert_eq!(listed, [x, y.clone()]);
        assert_eq!(store.get_tenant(&tenant_name("asso-y")).await.unwrap(), y);
        let err = store.create_tenant(tenant("asso-x")).await.unwrap_err();
        assert!(
            matches!(err, StoreError::AlreadyExists { kind: "tenant", ref name } if name == "asso-x"),
            "{err:?}"
        );
        let err = store.get_tenant(&tenant_name("asso-z")).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "tenant", ref name } if name == "asso-z"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn users_belong_to_existing_tenants() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.create_tenant(tenant("asso-x")).await.unwrap();
        store.create_tenant(tenant("asso-y")).await.unwrap();
        store
            .create_user(user("carol", Some("asso-y"), Role::Member))
            .await
            .unwrap();
        store
            .create_user(user("bob", Some("asso-x"), Role::Member))
            .await
            .unwrap();
        store
            .create_user(user("alice", None, Role::Admin))
            .await
            .unwrap();

        let all = store.list_users(None).await.unwrap();
        let all: Vec<_> = all.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(all, ["alice", "bob", "carol"]);
        let of_x = store
            .list_users(Some(&tenant_name("asso-x")))
            .await
            .unwrap();
        assert_eq!(of_x, [user("bob", Some("asso-x"), Role::Member)]);
        assert_eq!(
            store.get_user(&user_name("alice")).await.unwrap(),
            user("alice", None, Role::Admin)
        );

        let err = store
            .create_user(user("dave", Some("asso-q"), Role::Member))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "tenant", ref name } if name == "asso-q"),
            "{err:?}"
        );
        let err = store
            .create_user(user("bob", None, Role::Admin))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::AlreadyExists { kind: "user", ref name } if name == "bob"),
            "{err:?}"
        );
        let err = store.get_user(&user_name("dave")).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "user", .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn node_grants_are_idempotent_and_sorted() {
        let store = fleet(&["n1", "n2", "n3"]).await;
        store
            .create_user(user("olga", None, Role::Operator))
            .await
            .unwrap();
        let olga = user_name("olga");

        store.grant_node(&olga, &node_name("n3")).await.unwrap();
        store.grant_node(&olga, &node_name("n1")).await.unwrap();
        let record = store.grant_node(&olga, &node_name("n3")).await.unwrap();
        assert_eq!(record.node_grants, [node_name("n1"), node_name("n3")]);
        assert_eq!(store.get_user(&olga).await.unwrap(), record);
        assert_eq!(store.list_users(None).await.unwrap(), [record]);

        let record = store
            .revoke_node_grant(&olga, &node_name("n3"))
            .await
            .unwrap();
        assert_eq!(record.node_grants, [node_name("n1")]);
        let again = store
            .revoke_node_grant(&olga, &node_name("n3"))
            .await
            .unwrap();
        assert_eq!(again, record);

        let err = store
            .grant_node(&user_name("nobody"), &node_name("n1"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "user", ref name } if name == "nobody"),
            "{err:?}"
        );
        let err = store
            .grant_node(&olga, &node_name("ghost"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "node", ref name } if name == "ghost"),
            "{err:?}"
        );
        let err = store
            .revoke_node_grant(&user_name("nobody"), &node_name("n1"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "user", .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_user_created_with_grants_keeps_them() {
        let store = fleet(&["n1", "n2"]).await;
        let mut olga = user("olga", None, Role::Operator);
        olga.node_grants = vec![node_name("n2"), node_name("n1")];
        store.create_user(olga).await.unwrap();
        let record = store.get_user(&user_name("olga")).await.unwrap();
        assert_eq!(record.node_grants, [node_name("n1"), node_name("n2")]);

        let mut bad = user("boris", None, Role::Operator);
        bad.node_grants = vec![node_name("n1"), node_name("ghost")];
        let err = store.create_user(bad).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "node", ref name } if name == "ghost"),
            "{err:?}"
        );
        // The whole creation was rolled back.
        let err = store.get_user(&user_name("boris")).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "user", .. }),
            "{err:?}"
        );
    }

    // ---- API tokens and user certificates

    #[tokio::test]
    async fn api_tokens_are_found_listed_and_revoked_once() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .create_user(user("alice", None, Role::Admin))
            .await
            .unwrap();
        store
            .create_user(user("bob", None, Role::Admin))
            .await
            .unwrap();
        store
            .create_api_token(api_token("tok-2", "alice"))
            .await
            .unwrap();
        store
            .create_api_token(api_token("tok-1", "alice"))
            .await
            .unwrap();
        store
            .create_api_token(api_token("tok-3", "bob"))
            .await
            .unwrap();

        assert_eq!(
            store.api_token_by_hash("hash-of-tok-1").await.unwrap(),
            Some(api_token("tok-1", "alice"))
        );
        assert_eq!(store.api_token_by_hash("hash-of-x").await.unwrap(), None);
        assert_eq!(
            store.get_api_token("tok-3").await.unwrap(),
            api_token("tok-3", "bob")
        );
        let all = store.list_api_tokens(None).await.unwrap();
        let all: Vec<_> = all.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(all, ["tok-1", "tok-2", "tok-3"]);
        let of_alice = store
            .list_api_tokens(Some(&user_name("alice")))
            .await
            .unwrap();
        assert_eq!(
            of_alice,
            [api_token("tok-1", "alice"), api_token("tok-2", "alice")]
        );

        let revoked = store.revoke_api_token("tok-1", NOW + 10).await.unwrap();
        assert_eq!(revoked.revoked_unix, Some(NOW + 10));
        let again = store.revoke_api_token("tok-1", NOW + 99).await.unwrap();
        assert_eq!(again.revoked_unix, Some(NOW + 10));
        assert_eq!(store.get_api_token("tok-1").await.unwrap(), again);

        let err = store.revoke_api_token("tok-9", NOW).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "api token", ref name } if name == "tok-9"),
            "{err:?}"
        );
        let err = store.get_api_token("tok-9").await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotFound {
                    kind: "api token",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = store
            .create_api_token(api_token("tok-1", "alice"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::AlreadyExists { kind: "api token", ref name } if name == "tok-1"),
            "{err:?}"
        );
        let err = store
            .create_api_token(api_token("tok-4", "nobody"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "user", ref name } if name == "nobody"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn user_certificates_are_found_by_fingerprint() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .create_user(user("alice", None, Role::Admin))
            .await
            .unwrap();
        let cert = UserCertRecord {
            fingerprint: "ab".repeat(32),
            user: user_name("alice"),
            created_unix: NOW,
            expires_unix: NOW + 86400,
        };
        store.add_user_cert(cert.clone()).await.unwrap();
        assert_eq!(
            store
                .user_cert_by_fingerprint(&cert.fingerprint)
                .await
                .unwrap(),
            Some(cert.clone())
        );
        assert_eq!(store.user_cert_by_fingerprint("cd").await.unwrap(), None);

        let err = store.add_user_cert(cert.clone()).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::AlreadyExists {
                    kind: "user certificate",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = store
            .add_user_cert(UserCertRecord {
                fingerprint: "ef".repeat(32),
                user: user_name("nobody"),
                ..cert
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "user", ref name } if name == "nobody"),
            "{err:?}"
        );
    }

    // ---- audit

    #[tokio::test]
    async fn audit_lists_newest_first_with_filters() {
        let store = SqliteStore::open_in_memory().unwrap();
        let entries = [
            audit(1000, "user:alice", None, AuditOutcome::Allowed),
            audit(2000, "user:bob", Some("asso-x"), AuditOutcome::Denied),
            audit(3000, "user:alice", Some("asso-x"), AuditOutcome::Allowed),
            audit(4000, "user:carol", Some("asso-y"), AuditOutcome::Failed),
            audit(5000, "user:alice", Some("asso-y"), AuditOutcome::Allowed),
        ];
        let mut ids = Vec::new();
        for entry in &entries {
            ids.push(store.append_audit(entry.clone()).await.unwrap());
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

        let all = store.list_audit(AuditFilter::default()).await.unwrap();
        let times: Vec<_> = all.iter().map(|e| e.at_unix_ms).collect();
        assert_eq!(times, [5000, 4000, 3000, 2000, 1000]);
        let mut expected = entries[4].clone();
        expected.id = ids[4];
        assert_eq!(all[0], expected);

        let page = store
            .list_audit(AuditFilter {
                before: Some(ids[3]),
                limit: 2,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let times: Vec<_> = page.iter().map(|e| e.at_unix_ms).collect();
        assert_eq!(times, [3000, 2000]);

        let of_x = store
            .list_audit(AuditFilter {
                tenant: Some(tenant_name("asso-x")),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let times: Vec<_> = of_x.iter().map(|e| e.at_unix_ms).collect();
        assert_eq!(times, [3000, 2000]);

        let by_alice = store
            .list_audit(AuditFilter {
                actor: Some("user:alice".into()),
                before: Some(ids[4]),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let times: Vec<_> = by_alice.iter().map(|e| e.at_unix_ms).collect();
        assert_eq!(times, [3000, 1000]);

        let alice_in_y = store
            .list_audit(AuditFilter {
                actor: Some("user:alice".into()),
                tenant: Some(tenant_name("asso-y")),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(alice_in_y.len(), 1);
        assert_eq!(alice_in_y[0].outcome, AuditOutcome::Allowed);
        assert_eq!(alice_in_y[0].at_unix_ms, 5000);

        let huge_before = store
            .list_audit(AuditFilter {
                before: Some(u64::MAX),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(huge_before.len(), 5);
    }

    #[tokio::test]
    async fn audit_limit_defaults_to_100_and_caps_at_1000() {
        let store = SqliteStore::open_in_memory().unwrap();
        {
            // Seeded directly: 1100 round trips through the trait would
            // only make the test slow.
            let conn = store.conn.lock().unwrap();
            let tx = conn.unchecked_transaction().unwrap();
            for i in 0..1100 {
                tx.execute(
                    "INSERT INTO audit (at_unix_ms, actor, action, target, tenant, outcome, \
                     detail) VALUES (?1, 'user:alice', 'Get', 'x', NULL, 'allowed', '')",
                    [i],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        let default = store.list_audit(AuditFilter::default()).await.unwrap();
        assert_eq!(default.len(), 100);
        assert_eq!(default[0].at_unix_ms, 1099);
        let capped = store
            .list_audit(AuditFilter {
                limit: 5000,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(capped.len(), 1000);
        assert_eq!(capped[999].at_unix_ms, 100);
    }

    #[tokio::test]
    async fn audit_rows_cannot_be_updated_or_deleted() {
        let store = SqliteStore::open_in_memory().unwrap();
        let id = store
            .append_audit(audit(1000, "user:alice", None, AuditOutcome::Allowed))
            .await
            .unwrap();
        let id = i64::try_from(id).unwrap();

        let conn = store.conn.lock().unwrap();
        let err = conn
            .execute("UPDATE audit SET outcome = 'denied' WHERE id = ?1", [id])
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = conn
            .execute("DELETE FROM audit WHERE id = ?1", [id])
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let err = conn.execute("DELETE FROM audit", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        let count: i64 = conn
            .query_row(
                "SELECT count(*) FROM audit WHERE outcome = 'allowed'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(count, 1);
    }

    // ---- storage

    const GIB: u64 = 1 << 30;

    fn pool(node: &str, name: &str, kind: PoolKind) -> PoolRecord {
        PoolRecord {
            node: node_name(node),
            name: PoolName::new(name).unwrap(),
            kind,
            layout: PoolLayout::Single,
            disks: vec![DiskRef::new("serial:COLOC0001").unwrap()],
            force: false,
            created_unix: NOW,
            observed: None,
            orphans: Vec::new(),
        }
    }

    fn volume(tenant: &str, name: &str, node: &str, size: u64) -> VolumeRecord {
        VolumeRecord {
            id: VolumeId::random(),
            tenant: tenant_name(tenant),
            name: VolumeName::new(name).unwrap(),
            node: node_name(node),
            pool: PoolName::new("tank").unwrap(),
            pool_kind: PoolKind::Unspecified,
            size_bytes: size,
            reservation_bytes: 0,
            encrypted: false,
            lifecycle: VolumeLifecycle::Active,
            created_unix: 0,
            deleted_unix: None,
            purge_after_unix: None,
            snapshots: Vec::new(),
            allow_shrink: false,
            observed: None,
        }
    }

    /// Nodes n1 and n2 with a ZFS pool `tank` each, tenant asso-a with a
    /// 10 GiB quota.
    async fn storage_fleet(store: &SqliteStore) {
        for n in ["n1", "n2"] {
            store
                .create_pool(pool(n, "tank", PoolKind::Zfs))
                .await
                .unwrap();
        }
        store.create_tenant(tenant("asso-a")).await.unwrap();
    }

    async fn generation(store: &SqliteStore, node: &str) -> u64 {
        store
            .get_node(&node_name(node))
            .await
            .unwrap()
            .desired_generation
    }

    fn snap(s: &str) -> SnapshotName {
        SnapshotName::new(s).unwrap()
    }

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

    #[tokio::test]
    async fn posix_ids_stay_unique_under_concurrent_creation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("colocd.db");
        let first = SqliteStore::open(&path).unwrap();
        let second = SqliteStore::open(&path).unwrap();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tasks.push(tokio::spawn(async move {
                store.create_tenant(tenant(&format!("asso-{i}"))).await
            }));
        }
        let mut ids = BTreeSet::new();
        for t in tasks {
            ids.insert(t.await.unwrap().unwrap().posix_id);
        }
        assert_eq!(ids.len(), 20);
        assert_eq!(ids.first(), Some(&FIRST_POSIX_ID));
        assert_eq!(ids.last(), Some(&(FIRST_POSIX_ID + 19)));
        // The database refuses a duplicate whatever the code does.
        let conn = first.conn.lock().unwrap();
        let err = conn
            .execute(
                // Whichever tenant got which id first, these two differ.
                "UPDATE tenants SET posix_id = (SELECT posix_id FROM tenants \
                 WHERE name = 'asso-0') WHERE name = 'asso-1'",
                [],
            )
            .unwrap_err();
        assert!(err.to_string().contains("UNIQUE"), "{err}");
    }

    #[tokio::test]
    async fn the_storage_migration_gives_existing_tenants_ids_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("colocd.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            for name in ["asso-b", "asso-a", "asso-c"] {
                conn.execute(
                    "INSERT INTO tenants (name, display_name, offer, membership_expires, \
                     created_unix) VALUES (?1, '', 'participatif', '2099-12-31', 0)",
                    [name],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let tenants = store.list_tenants().await.unwrap();
        let ids: Vec<u32> = tenants.iter().map(|t| t.posix_id).collect();
        assert_eq!(ids, [200_000, 200_001, 200_002], "in name order");
        assert!(tenants.iter().all(|t| t.storage_quota_bytes == 100 * GIB
            && t.volume_grace_days == 30
            && t.storage_used_bytes == 0));
        let d = store.create_tenant(tenant("asso-d")).await.unwrap();
        assert_eq!(d.posix_id, 200_003);
    }

    // ---- apps

    fn app(name: &str) -> AppName {
        AppName::new(name).unwrap()
    }

    fn new_request(tenant: &str, name: &str, node: &str, volume: &VolumeRecord) -> NewAppRequest {
        NewAppRequest {
            tenant: tenant_name(tenant),
            app: app(name),
            node: node_name(node),
            volume_id: volume.id.clone(),
            requested_by: user_name("alice"),
            comment: format!("we would like {name}"),
        }
    }

    /// [`storage_fleet`] plus an active volume `data` of asso-a on n1.
    async fn app_fleet(store: &SqliteStore) -> VolumeRecord {
        storage_fleet(store).await;
        store
            .create_volume(volume("asso-a", "data", "n1", GIB), NOW)
            .await
            .unwrap()
    }

    fn is_conflict(err: &StoreError) -> bool {
        matches!(err, StoreError::Conflict { .. })
    }

    #[tokio::test]
    async fn a_request_is_discussed_decided_once_and_approval_creates_the_instance() {
        let store = fleet(&["n1", "n2"]).await;
        let data = app_fleet(&store).await;
        let before = generation(&store, "n1").await;

        // The volume must be the tenant's, on that node, active.
        let err = store
            .create_app_request(new_request("asso-a", "radicale", "n2", &data), NOW)
            .await
            .unwrap_err();
        assert!(is_conflict(&err), "{err:?}");
        store.create_tenant(tenant("asso-b")).await.unwrap();
        let err = store
            .create_app_request(new_request("asso-b", "radicale", "n1", &data), NOW)
            .await
            .unwrap_err();
        assert!(is_conflict(&err), "{err:?}");
        let err = store
            .create_app_request(new_request("asso-a", "radicale", "ghost", &data), NOW)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { kind: "node", .. }),
            "{err:?}"
        );

        let r = store
            .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
            .await
            .unwrap();
        assert_eq!(r.state, RequestState::Pending);
        assert_eq!(r.volume_name.as_str(), "data");
        assert_eq!(r.comments.len(), 1);
        assert_eq!(r.comments[0].text, "we would like radicale");
        assert_eq!(r.comments[0].author, user_name("alice"));
        // One open request per tenant and app.
        let err = store
            .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
            .await
            .unwrap_err();
        assert!(is_conflict(&err), "{err:?}");
        assert!(
            err.to_string().contains(&format!("request {}", r.id)),
            "{err}"
        );
        assert_eq!(
            generation(&store, "n1").await,
            before,
            "a request is not desired state"
        );

        let r = store
            .comment_app_request(
                r.id,
                CommentRecord {
                    author: user_name("root"),
                    at_unix: NOW + 1,
                    text: "which calendar clients?".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(r.comments.len(), 2);
        let err = store
            .comment_app_request(
                9999,
                CommentRecord {
                    author: user_name("root"),
                    at_unix: NOW,
                    text: "x".into(),
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotFound {
                    kind: "request",
                    ..
                }
            ),
            "{err:?}"
        );

        let (r, i) = store
            .approve_app_request(r.id, &user_name("root"), "go", NOW + 2)
            .await
            .unwrap();
        assert_eq!(r.state, RequestState::Approved);
        assert_eq!(r.decided_by, Some(user_name("root")));
        assert_eq!(r.decided_unix, Some(NOW + 2));
        assert_eq!(r.comments.last().unwrap().text, "go");
        assert_eq!(i.state, InstanceState::Running);
        assert_eq!(i.port, FIRST_APP_PORT);
        assert_eq!(i.request_id, r.id);
        assert_eq!((i.restart_nonce, i.gone), (0, false));
        assert_eq!(i.volume_id, data.id);
        assert_eq!(generation(&store, "n1").await, before + 1);
        assert_eq!(generation(&store, "n2").await, 2, "other nodes untouched");

        // Decided once.
        for err in [
            store
                .approve_app_request(r.id, &user_name("root"), "", NOW)
                .await
                .unwrap_err(),
            store
                .reject_app_request(r.id, &user_name("root"), "no", NOW)
                .await
                .unwrap_err(),
        ] {
            assert!(is_conflict(&err), "{err:?}");
            assert!(err.to_string().contains("approved by root"), "{err}");
        }
        // Comments still go on the record.
        let r = store
            .comment_app_request(
                r.id,
                CommentRecord {
                    author: user_name("alice"),
                    at_unix: NOW + 3,
                    text: "thanks".into(),
                },
            )
            .await
            .unwrap();
        let texts: Vec<&str> = r.comments.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "we would like radicale",
                "which calendar clients?",
                "go",
                "thanks"
            ]
        );

        // A live instance refuses another request for the app.
        let err = store
            .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
            .await
            .unwrap_err();
        assert!(is_conflict(&err), "{err:?}");
        assert!(
            err.to_string().contains("already deployed on node n1"),
            "{err}"
        );

        // Rejection needs nothing but a pending request.
        let s = store
            .create_app_request(new_request("asso-a", "site", "n1", &data), NOW)
            .await
            .unwrap();
        let s = store
            .reject_app_request(s.id, &user_name("root"), "not now", NOW + 4)
            .await
            .unwrap();
        assert_eq!(s.state, RequestState::Rejected);
        assert_eq!(generation(&store, "n1").await, before + 1);

        let all = store.list_app_requests(None, None).await.unwrap();
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [r.id, s.id]);
        let rejected = store
            .list_app_requests(Some(&tenant_name("asso-a")), Some(RequestState::Rejected))
            .await
            .unwrap();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].app, app("site"));
        assert!(
            store
                .list_app_requests(Some(&tenant_name("asso-b")), None)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.get_app_request(r.id).await.unwrap(), r);
    }

    #[tokio::test]
    async fn one_live_instance_per_tenant_and_app_cooperative_wide() {
        let store = fleet(&["n1", "n2"]).await;
        let data = app_fleet(&store).await;
        let other = store
            .create_volume(volume("asso-a", "other", "n2", GIB), NOW)
            .await
            .unwrap();
        let r = store
            .create_app_request(new_request("asso-a", "radicale", "n2", &other), NOW)
            .await
            .unwrap();
        // An instance appears on n1 meanwhile (a second colocd, a bug):
        // approval refuses, and so would the database.
        {
            let conn = store.conn.lock().unwrap();
            conn.execute(
                "INSERT INTO app_requests (tenant, app, node, volume_id, requested_by, \
                 created_unix, state, decided_by, decided_unix) VALUES ('asso-a', 'radicale', \
                 'n1', ?1, 'bob', 0, 'approved', 'root', 0)",
                [data.id.as_str()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO app_instances (tenant, app, node, volume_id, port, state, \
                 request_id, created_unix) VALUES ('asso-a', 'radicale', 'n1', ?1, 20000, \
                 'stopped', last_insert_rowid(), 0)",
                [data.id.as_str()],
            )
            .unwrap();
            let err = conn
                .execute(
                    "INSERT INTO app_instances (tenant, app, node, volume_id, port, state, \
                     request_id, created_unix) VALUES ('asso-a', 'radicale', 'n2', ?1, 20000, \
                     'running', ?2, 0)",
                    params![other.id.as_str(), r.id as i64],
                )
                .unwrap_err();
            assert!(err.to_string().contains("UNIQUE"), "{err}");
        }
        let gen_n2 = generation(&store, "n2").await;
        let err = store
            .approve_app_request(r.id, &user_name("root"), "", NOW)
            .await
            .unwrap_err();
        assert!(is_conflict(&err), "{err:?}");
        assert!(
            err.to_string()
                .contains("already deployed on node n1 (stopped)"),
            "{err}"
        );
        assert_eq!(generation(&store, "n2").await, gen_n2, "nothing changed");
        assert_eq!(
            store.get_app_request(r.id).await.unwrap().state,
            RequestState::Pending
        );

        // Once removed there, the app may live elsewhere; the removed one
        // stays on n1 until its node reports it gone.
        store
            .change_instance(
                &tenant_name("asso-a"),
                &app("radicale"),
                InstanceChange::Remove,
            )
            .await
            .unwrap();
        let (_, i) = store
            .approve_app_request(r.id, &user_name("root"), "", NOW)
            .await
            .unwrap();
        assert_eq!((i.node.as_str(), i.port), ("n2", FIRST_APP_PORT));
        let got = store
            .get_instance(&tenant_name("asso-a"), &app("radicale"))
            .await
            .unwrap();
        assert_eq!(got.node.as_str(), "n2", "the live one first");
        let listed = store
            .list_instances(InstanceFilter::default())
            .await
            .unwrap();
        let states: Vec<(&str, InstanceState)> =
            listed.iter().map(|i| (i.node.as_str(), i.state)).collect();
        assert_eq!(
            states,
            [
                ("n1", InstanceState::Removed),
                ("n2", InstanceState::Running)
            ]
        );
    }

    #[tokio::test]
    async fn instance_changes_bump_the_generation_only_when_they_change_something() {
        let store = fleet(&["n1", "n2"]).await;
        let data = app_fleet(&store).await;
        let r = store
            .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
            .await
            .unwrap();
        store
            .approve_app_request(r.id, &user_name("root"), "", NOW)
            .await
            .unwrap();
        let (t, a) = (tenant_name("asso-a"), app("radicale"));
        let mut expected = generation(&store, "n1").await;
        let steps = [
            (InstanceChange::Start, InstanceState::Running, 0, false),
            (InstanceChange::Stop, InstanceState::Stopped, 0, true),
            (InstanceChange::Stop, InstanceState::Stopped, 0, false),
            (InstanceChange::Start, InstanceState::Running, 0, true),
            (InstanceChange::Restart, InstanceState::Running, 1, true),
            (InstanceChange::Stop, InstanceState::Stopped, 1, true),
            // A restart of a stopped instance starts it.
            (InstanceChange::Restart, InstanceState::Running, 2, true),
        ];
        for (change, state, nonce, bumps) in steps {
            let i = store.change_instance(&t, &a, change).await.unwrap();
            assert_eq!((i.state, i.restart_nonce), (state, nonce), "{change:?}");
            if bumps {
                expected += 1;
            }
            assert_eq!(generation(&store, "n1").await, expected, "{change:?}");
        }

        // Reports are recorded on this node's instances only, and are not
        // desired state.
        let running = AppStatus {
            tenant: "asso-a".into(),
            app: "radicale".into(),
            unit: "coloc-app-asso-a-radicale.service".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            healthy: true,
            ..AppStatus::default()
        };
        let gone = store
            .record_apps(&node_name("n2"), vec![running.clone()])
            .await
            .unwrap();
        assert!(gone.is_empty());
        assert_eq!(store.get_instance(&t, &a).await.unwrap().observed, None);
        let gone = store
            .record_apps(
                &node_name("n1"),
                vec![
                    running.clone(),
                    AppStatus {
                        tenant: "asso-a".into(),
                        app: "nothere".into(),
                        ..AppStatus::default()
                    },
                ],
            )
            .await
            .unwrap();
        assert!(gone.is_empty());
        assert_eq!(
            store.get_instance(&t, &a).await.unwrap().observed,
            Some(running.clone())
        );
        // "removed" means nothing for an instance that should run.
        let removed = AppStatus {
            active_state: "removed".into(),
            sub_state: String::new(),
            ..running.clone()
        };
        assert!(
            store
                .record_apps(&node_name("n1"), vec![removed.clone()])
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(generation(&store, "n1").await, expected);

        let i = store
            .change_instance(&t, &a, InstanceChange::Remove)
            .await
            .unwrap();
        assert_eq!(i.state, InstanceState::Removed);
        expected += 1;
        assert_eq!(generation(&store, "n1").await, expected);
        for change in [
            InstanceChange::Start,
            InstanceChange::Stop,
            InstanceChange::Restart,
            InstanceChange::Remove,
        ] {
            let err = store.change_instance(&t, &a, change).await.unwrap_err();
            assert!(is_conflict(&err), "{change:?}: {err:?}");
        }
        let err = store
            .change_instance(&t, &app("site"), InstanceChange::Start)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotFound {
                    kind: "instance",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            generation(&store, "n1").await,
            expected,
            "refusals change nothing"
        );

        // Still in the node's configuration until the node says it is gone.
        let d = store.desired_configs(&[node_name("n1")]).await.unwrap();
        assert_eq!(d[0].apps.len(), 1);
        assert_eq!(d[0].apps[0].instance.state, InstanceState::Removed);
        let gone = store
            .record_apps(&node_name("n1"), vec![removed.clone()])
            .await
            .unwrap();
        assert_eq!(gone.len(), 1);
        assert!(gone[0].gone);
        assert_eq!(gone[0].observed, Some(removed));
        expected += 1;
        assert_eq!(generation(&store, "n1").await, expected);
        let d = store.desired_configs(&[node_name("n1")]).await.unwrap();
        assert!(d[0].apps.is_empty());
        assert!(
            store
                .list_instances(InstanceFilter::default())
                .await
                .unwrap()
                .is_empty()
        );
        // Kept for the record.
        let i = store.get_instance(&t, &a).await.unwrap();
        assert!(i.gone && i.state == InstanceState::Removed);
    }

    #[tokio::test]
    async fn desired_configs_carry_instances_with_their_owner_and_volume() {
        let store = fleet(&["n1", "n2"]).await;
        let data = app_fleet(&store).await;
        for name in ["site", "radicale"] {
            let r = store
                .create_app_request(new_request("asso-a", name, "n1", &data), NOW)
                .await
                .unwrap();
            store
                .approve_app_request(r.id, &user_name("root"), "", NOW)
                .await
                .unwrap();
        }
        store.delete_volume(&data.id, NOW).await.unwrap();
        let d = store
            .desired_configs(&[node_name("n1"), node_name("n2")])
            .await
            .unwrap();
        let apps: Vec<(&str, u16)> = d[0]
            .apps
            .iter()
            .map(|a| (a.instance.app.as_str(), a.instance.port))
            .collect();
        assert_eq!(apps, [("radicale", 20_001), ("site", 20_000)], "by app");
        for a in &d[0].apps {
            assert_eq!(a.owner, FIRST_POSIX_ID);
            assert_eq!(a.instance.volume_name.as_str(), "data");
            assert_eq!(a.instance.volume_lifecycle, VolumeLifecycle::Retained);
        }
        assert!(d[1].apps.is_empty());
        // A request needs an active volume; so does an approval.
        let err = store
            .create_app_request(new_request("asso-a", "prosody", "n1", &data), NOW)
            .await
            .unwrap_err();
        assert!(is_conflict(&err), "{err:?}");
    }

    #[tokio::test]
    async fn ports_stay_unique_per_node_under_concurrent_approvals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("colocd.db");
        let first = SqliteStore::open(&path).unwrap();
        let second = SqliteStore::open(&path).unwrap();
        first.create_site(site("paris-1")).await.unwrap();
        for n in ["n1", "n2"] {
            let id = format!("jt-{n}");
            first
                .create_join_token(join_token(&id, "paris-1", NOW + 3600))
                .await
                .unwrap();
            first
                .enroll_node(&format!("hash-of-{id}"), new_node(n), NOW)
                .await
                .unwrap();
            first
                .create_pool(pool(n, "tank", PoolKind::Zfs))
                .await
                .unwrap();
        }
        let mut ids = Vec::new();
        for i in 0..16 {
            let t = format!("asso-{i}");
            first.create_tenant(tenant(&t)).await.unwrap();
            let node = if i < 12 { "n1" } else { "n2" };
            let v = first
                .create_volume(volume(&t, "data", node, GIB), NOW)
                .await
                .unwrap();
            let r = first
                .create_app_request(new_request(&t, "radicale", node, &v), NOW)
                .await
                .unwrap();
            ids.push(r.id);
        }
        let mut tasks = Vec::new();
        for (k, id) in ids.iter().copied().enumerate() {
            let store = if k % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tasks.push(tokio::spawn(async move {
                store
                    .approve_app_request(id, &user_name("root"), "", NOW)
                    .await
            }));
        }
        let mut per_node: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
        for t in tasks {
            let (_, i) = t.await.unwrap().unwrap();
            assert!(
                per_node
                    .entry(i.node.to_string())
                    .or_default()
                    .insert(i.port),
                "port {} given twice on {}",
                i.port,
                i.node
            );
        }
        let expect = |n: u16| (FIRST_APP_PORT..FIRST_APP_PORT + n).collect::<BTreeSet<u16>>();
        assert_eq!(per_node["n1"], expect(12), "lowest ports first, no gap");
        assert_eq!(per_node["n2"], expect(4), "per node");
        // Each approval bumped its node once.
        assert_eq!(generation(&first, "n1").await, 2 + 12 + 12);

        // A removed instance keeps its port until its node reports it
        // gone; then the port is handed out again.
        let (t3, radicale) = (tenant_name("asso-3"), app("radicale"));
        let i = first
            .change_instance(&t3, &radicale, InstanceChange::Remove)
            .await
            .unwrap();
        let freed = i.port;
        let v = first
            .find_volume(&t3, &VolumeName::new("data").unwrap())
            .await
            .unwrap();
        let r = first
            .create_app_request(new_request("asso-3", "site", "n1", &v), NOW)
            .await
            .unwrap();
        let (_, site_i) = first
            .approve_app_request(r.id, &user_name("root"), "", NOW)
            .await
            .unwrap();
        assert_eq!(site_i.port, FIRST_APP_PORT + 12);
        first
            .record_apps(
                &node_name("n1"),
                vec![AppStatus {
                    tenant: "asso-3".into(),
                    app: "radicale".into(),
                    active_state: "removed".into(),
                    ..AppStatus::default()
                }],
            )
            .await
            .unwrap();
        let r = first
            .create_app_request(new_request("asso-3", "radicale", "n1", &v), NOW)
            .await
            .unwrap();
        let (_, again) = first
            .approve_app_request(r.id, &user_name("root"), "", NOW)
            .await
            .unwrap();
        assert_eq!(again.port, freed, "freed port reused");
    }

    #[tokio::test]
    async fn a_new_instance_takes_over_a_removed_one_on_the_same_node() {
        let store = fleet(&["n1", "n2"]).await;
        let data = app_fleet(&store).await;
        let (t, a) = (tenant_name("asso-a"), app("radicale"));
        let r = store
            .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
            .await
            .unwrap();
        store
            .approve_app_request(r.id, &user_name("root"), "", NOW)
            .await
            .unwrap();
        store
            .change_instance(&t, &a, InstanceChange::Remove)
            .await
            .unwrap();
        let r = store
            .create_app_request(new_request("asso-a", "radicale", "n1", &data), NOW)
            .await
            .unwrap();
        let (_, i) = store
            .approve_app_request(r.id, &user_name("root"), "", NOW)
            .await
            .unwrap();
        assert_eq!(i.port, FIRST_APP_PORT, "the removed one's port");
        let d = store.desired_configs(&[node_name("n1")]).await.unwrap();
        assert_eq!(d[0].apps.len(), 1, "one unit per tenant and app");
        assert_eq!(d[0].apps[0].instance.request_id, r.id);
    }

    // ---- files, schema versions

    #[tokio::test]
    async fn a_file_database_uses_wal_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("colocd.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.path(), Some(path.as_path()));
            store.create_site(site("paris-1")).await.unwrap();
            store
                .create_join_token(join_token("jt-1", "paris-1", NOW + 3600))
                .await
                .unwrap();
            store
                .enroll_node("hash-of-jt-1", new_node("n1"), NOW)
                .await
                .unwrap();
            store
                .append_audit(audit(1000, "user:alice", None, AuditOutcome::Allowed))
                .await
                .unwrap();
            let conn = store.conn.lock().unwrap();
            let mode: String = conn
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            let sync: i64 = conn
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap();
            assert_eq!(sync, 1, "synchronous=NORMAL");
            let fk: bool = conn
                .pragma_query_value(None, "foreign_keys", |r| r.get(0))
                .unwrap();
            assert!(fk);
        }

        // Reopening runs no migration again and loses nothing.
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.list_sites().await.unwrap(), [site("paris-1")]);
        let node = store.get_node(&node_name("n1")).await.unwrap();
        assert_eq!(node.facts, Some(facts("n1")));
        assert_eq!(
            store
                .list_audit(AuditFilter::default())
                .await
                .unwrap()
                .len(),
            1
        );
        let err = store
            .enroll_node("hash-of-jt-1", new_node("n2"), NOW)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::JoinTokenUsed { .. }), "{err:?}");
        let version = user_version(&store.conn.lock().unwrap()).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn a_database_from_a_newer_colocd_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("colocd.db");
        drop(SqliteStore::open(&path).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found, supported }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err:?}"
        );
    }

    #[test]
    fn in_memory_schema_is_at_the_current_version() {
        let store = SqliteStore::open_in_memory().unwrap();
        let version = user_version(&store.conn.lock().unwrap()).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }
}

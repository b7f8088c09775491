//! The embedded SQLite backend of [`Store`](super::Store): one database
//! file, one connection, write-ahead log.
//!
//! colocd is the only writer, and SQLite serialises writers anyway, so a
//! single `rusqlite::Connection` behind a mutex is simpler than a pool and
//! loses nothing. Every call runs on tokio's blocking pool: a slow fsync or
//! a WAL checkpoint stalls one blocking thread, never the runtime's
//! workers. Transactions that read before they write (enrollment, label
//! changes, anything a rule decides) begin IMMEDIATE, so they hold the
//! write lock from the start and a second process on the same file waits
//! (busy_timeout) instead of failing half-way with SQLITE_BUSY.
//!
//! The schema is versioned in `PRAGMA user_version`; the migrations live in
//! `migrations/NNNN_*.sql`, are applied in order, each in its own
//! transaction together with the version bump, and a file written by a
//! newer colocd is refused rather than guessed at.
//!
//! This module owns the connection, the migrations, the mapping of SQLite
//! errors to [`StoreError`] and the row helpers every area shares; each
//! area's SQL and row mapping is in its own module (`nodes`, `tenancy`
//! with its `credentials`, `storage`, `apps`, `audit`), which implements
//! that area's trait, and is tested in `tests/` (one module per area,
//! plus the schema). The SQL
//! validates nothing about names beyond refusing rows that no longer
//! parse, and takes no decision of its own: it reads the facts, asks
//! [`crate::rules`] and writes the answer, inside one transaction.

mod alerts;
mod apps;
mod audit;
mod credentials;
mod nodes;
mod storage;
mod tenancy;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prost::Message;
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::{StoreError, StoreResult};

/// Schema migrations, applied in order; migration `i` brings the file to
/// `user_version = i + 1`. Never edit one that has shipped: add another.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_storage.sql"),
    include_str!("migrations/0003_apps.sql"),
    include_str!("migrations/0004_membership.sql"),
    include_str!("migrations/0005_credentials.sql"),
    include_str!("migrations/0006_node_lifecycle.sql"),
    include_str!("migrations/0007_web_login.sql"),
    include_str!("migrations/0008_health_alerts.sql"),
];

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// The store on one SQLite database. Cloning is cheap and shares the
/// connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// None for an in-memory database.
    path: Option<PathBuf>,
    /// Where each operation's latency goes (`colocd_store_duration_seconds`).
    metrics: Option<Arc<crate::metrics::Metrics>>,
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

/// Every row `sql` returns for `params`, each mapped by `map`: the one
/// shape of every listing.
fn query_all<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    conn.prepare_cached(sql)
        .db()?
        .query_map(params, map)
        .db()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .db()
}

/// The one row `sql` returns for `params`, if any, mapped by `map`.
fn query_opt<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Option<T>> {
    conn.prepare_cached(sql)
        .db()?
        .query_row(params, map)
        .optional()
        .db()
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

/// A refusal whose reason is usually a rule's (`crate::rules`) text.
fn conflict(kind: &'static str, name: impl Into<String>, reason: impl Into<String>) -> StoreError {
    StoreError::Conflict {
        kind,
        name: name.into(),
        reason: reason.into(),
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
            metrics: None,
        })
    }

    /// Records every operation's latency (lock wait included: the time
    /// colocd waits for the store) in `metrics`, named after the store
    /// method that ran it.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> SqliteStore {
        self.metrics = Some(metrics);
        self
    }

    /// Runs `work` on the blocking pool with the connection locked.
    async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        self.run_as(op_name::<F>(), work).await
    }

    /// [`SqliteStore::run`], its latency recorded under `op`.
    async fn run_as<T, F>(&self, op: &'static str, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let conn = Arc::clone(&self.conn);
        let out = tokio::task::spawn_blocking(move || {
            // A panic inside `work` unwinds through its open Transaction,
            // whose drop rolls back, so the connection is still consistent
            // and the poison flag carries no information.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut conn)
        })
        .await
        .map_err(|e| backend(SqliteError::Task(e)))?;
        if let Some(metrics) = &self.metrics {
            metrics.observe_store(op, started.elapsed());
        }
        out
    }

    /// Runs `work` in one IMMEDIATE transaction (the write lock taken at
    /// once, so two writers never deadlock on an upgrade), committed when
    /// `work` succeeds and rolled back when it fails.
    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.run_as(op_name::<F>(), move |conn| {
            let tx = immediate(conn)?;
            let out = work(&tx)?;
            tx.commit().db()?;
            Ok(out)
        })
        .await
    }
}

/// The store method a closure was written in, from its type's name
/// ("…SqliteStore>::record_seen<'_>::{{closure}}::{{closure}}" is
/// "record_seen"): the operation's label, known at compile time and never
/// from a caller's input.
fn op_name<F>() -> &'static str {
    let mut name = std::any::type_name::<F>();
    while let Some(outer) = name.strip_suffix("::{{closure}}") {
        name = outer;
    }
    // "create_site<'_, '_>": the method's generic arguments go.
    if name.ends_with('>') {
        let mut depth = 0usize;
        for (i, c) in name.char_indices().rev() {
            match c {
                '>' => depth += 1,
                '<' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                name = &name[..i];
                break;
            }
        }
    }
    match name.rsplit("::").next() {
        Some(last)
            if !last.is_empty() && last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            last
        }
        _ => "other",
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

fn small(row: &Row<'_>, idx: usize) -> rusqlite::Result<u32> {
    let v: i64 = row.get(idx)?;
    u32::try_from(v).map_err(|e| conversion(idx, Type::Integer, e))
}

fn corrupt(column: &'static str, value: String) -> SqliteError {
    SqliteError::CorruptValue { column, value }
}

/// Decodes a protobuf column: what agents report (facts, observed
/// statuses) is stored as they sent it (docs/DECISIONS.md, "Store: areas,
/// rules and protobuf blobs").
fn blob<M: Message + Default>(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<M>> {
    let bytes: Option<Vec<u8>> = row.get(idx)?;
    bytes
        .map(|b| M::decode(b.as_slice()))
        .transpose()
        .map_err(|e| conversion(idx, Type::Blob, e))
}

/// Reads a JSON array of strings (disks, snapshots) through a validating
/// constructor.
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

//! The audit log in SQLite: appended, listed newest first, never changed
//! (the schema's triggers refuse UPDATE and DELETE on the table whatever
//! the code above does). Rows are read one at a time and only as far as
//! the page needs, each bounded as it is read ([`AuditRecord::stored`]).

use async_trait::async_trait;
use coloc_proto::domain::TenantName;
use rusqlite::types::Value;
use rusqlite::{Connection, Row, params, params_from_iter};

use super::{Db, SqliteError, SqliteStore, backend, corrupt, parsed, parsed_opt, unsigned};
use crate::store::audit::{AuditFields, AuditPage};
use crate::store::{AuditFilter, AuditOutcome, AuditRecord, AuditStore, StoreResult};

fn audit_outcome(s: String) -> Result<AuditOutcome, SqliteError> {
    match s.as_str() {
        "allowed" => Ok(AuditOutcome::Allowed),
        "denied" => Ok(AuditOutcome::Denied),
        "failed" => Ok(AuditOutcome::Failed),
        _ => Err(corrupt("audit.outcome", s)),
    }
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord::stored(
        unsigned(row, 0)?,
        AuditFields {
            at_unix_ms: row.get(1)?,
            actor: row.get(2)?,
            action: row.get(3)?,
            target: row.get(4)?,
            tenant: parsed_opt(row, 5, TenantName::new)?,
            outcome: parsed(row, 6, audit_outcome)?,
            detail: row.get(7)?,
        },
    ))
}

/// Appends one entry on `conn`, which may be a transaction that changes
/// what the entry records (an alert firing), so that both are written or
/// neither.
pub(super) fn insert_audit(conn: &Connection, entry: &AuditRecord) -> StoreResult<u64> {
    let e = entry.fields();
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO audit (at_unix_ms, actor, action, target, tenant, outcome, \
             detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
        )
        .db()?
        .query_row(
            params![
                e.at_unix_ms,
                e.actor,
                e.action,
                e.target,
                e.tenant.as_ref().map(TenantName::as_str),
                e.outcome.as_str(),
                e.detail
            ],
            |row| row.get(0),
        )
        .db()?;
    u64::try_from(id).map_err(backend)
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, entry: AuditRecord) -> StoreResult<u64> {
        self.run(move |conn| insert_audit(conn, &entry)).await
    }

    async fn list_audit(&self, filter: AuditFilter) -> StoreResult<AuditPage> {
        // One row past the page tells whether there is more.
        let limit = filter.page_size() + 1;
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
            let mut stmt = conn.prepare_cached(&sql).db()?;
            let rows = stmt
                .query_map(params_from_iter(args), audit_from_row)
                .db()?;
            AuditPage::collect(&filter, rows).db()
        })
        .await
    }
}

//! Health reports and alerts in SQLite: `node_health` (one protobuf blob
//! per node), `alerts` (deduplicated by a partial unique index on rule and
//! subject while firing) and `alert_events`, the notifier's outbox,
//! written in the transaction that changes the alert, with its audit
//! entry.

use async_trait::async_trait;
use coloc_proto::agent::v1::HealthReport;
use coloc_proto::domain::{NodeName, TenantName};
use prost::Message;
use rusqlite::types::{Type, Value};
use rusqlite::{Connection, Row, params, params_from_iter};
use std::sync::Arc;

use super::audit::insert_audit;
use super::{
    Db, SqliteError, SqliteStore, blob, conversion, corrupt, not_found, parsed, query_all,
    query_opt, to_i64, unsigned,
};
use crate::store::{
    ALERTS_DEFAULT_LIMIT, ALERTS_MAX_LIMIT, AlertAck, AlertChanges, AlertEvent, AlertEventKind,
    AlertFilter, AlertRecord, AlertSeverity, AlertSilence, AlertState, AlertStore, AlertSubject,
    AppliedAlerts, AuditFields, AuditOutcome, AuditRecord, NewAlert, StoreResult, StoredHealth,
    SubjectKind, UnixSecs,
};

const ALERT_COLUMNS: &str = "a.id, a.rule, a.severity, a.subject_kind, a.subject_node, \
     a.subject_name, a.subject_tenant, a.state, a.summary, a.started_unix, a.ended_unix, \
     a.acked_by, a.acked_unix, a.ack_comment, a.silenced_until_unix, a.silenced_by, \
     a.silence_comment";
/// How many columns [`ALERT_COLUMNS`] reads.
const ALERT_COLUMN_COUNT: usize = 17;

fn severity(s: String) -> Result<AlertSeverity, SqliteError> {
    AlertSeverity::parse(&s).ok_or_else(|| corrupt("alerts.severity", s))
}
fn subject_kind(s: String) -> Result<SubjectKind, SqliteError> {
    SubjectKind::parse(&s).ok_or_else(|| corrupt("alerts.subject_kind", s))
}
fn state(s: String) -> Result<AlertState, SqliteError> {
    AlertState::parse(&s).ok_or_else(|| corrupt("alerts.state", s))
}
fn event_kind(s: String) -> Result<AlertEventKind, SqliteError> {
    AlertEventKind::parse(&s).ok_or_else(|| corrupt("alert_events.kind", s))
}

/// An empty column for "none" (the dedup index needs comparable values).
fn opt_name<T, E>(
    row: &Row<'_>,
    idx: usize,
    parse: impl FnOnce(String) -> Result<T, E>,
) -> rusqlite::Result<Option<T>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(idx)?;
    if text.is_empty() {
        return Ok(None);
    }
    parse(text)
        .map(Some)
        .map_err(|e| conversion(idx, Type::Text, e))
}

/// Reads an alert from [`ALERT_COLUMNS`] starting at column `at`.
fn alert_at(row: &Row<'_>, at: usize) -> rusqlite::Result<AlertRecord> {
    let acked_by: Option<String> = row.get(at + 11)?;
    let silenced_by: Option<String> = row.get(at + 15)?;
    Ok(AlertRecord {
        id: unsigned(row, at)?,
        rule: row.get(at + 1)?,
        severity: parsed(row, at + 2, severity)?,
        subject: AlertSubject {
            kind: parsed(row, at + 3, subject_kind)?,
            node: opt_name(row, at + 4, NodeName::new)?,
            name: row.get(at + 5)?,
            tenant: opt_name(row, at + 6, TenantName::new)?,
        },
        state: parsed(row, at + 7, state)?,
        summary: row.get(at + 8)?,
        started_unix: row.get(at + 9)?,
        ended_unix: row.get(at + 10)?,
        ack: match acked_by {
            Some(by) => Some(AlertAck {
                by,
                at_unix: row.get(at + 12)?,
                comment: row.get::<_, Option<String>>(at + 13)?.unwrap_or_default(),
            }),
            None => None,
        },
        silence: match silenced_by {
            Some(by) => Some(AlertSilence {
                until_unix: row.get::<_, Option<i64>>(at + 14)?.unwrap_or(0),
                by,
                comment: row.get::<_, Option<String>>(at + 16)?.unwrap_or_default(),
            }),
            None => None,
        },
    })
}

fn alert_row(row: &Row<'_>) -> rusqlite::Result<AlertRecord> {
    alert_at(row, 0)
}

fn read_alert(conn: &Connection, id: u64) -> StoreResult<AlertRecord> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.id = ?1");
    query_opt(conn, &sql, params![to_i64("alert id", id)?], alert_row)?
        .ok_or_else(|| not_found("alert", id.to_string()))
}

fn node_text(node: &Option<NodeName>) -> &str {
    node.as_ref().map_or("", NodeName::as_str)
}

fn tenant_text(tenant: &Option<TenantName>) -> &str {
    tenant.as_ref().map_or("", TenantName::as_str)
}

/// The audit entry of a firing or resolution, by colocd itself.
fn audit_change(
    conn: &Connection,
    a: &AlertRecord,
    action: &str,
    now: UnixSecs,
) -> StoreResult<()> {
    let detail = match a.state {
        AlertState::Firing => format!("{} {}: {}", a.severity.as_str(), a.rule, a.summary),
        AlertState::Resolved => format!(
            "{} resolved after {} s (was: {})",
            a.rule,
            a.ended_unix.unwrap_or(now).saturating_sub(a.started_unix),
            a.summary
        ),
    };
    insert_audit(
        conn,
        &AuditRecord::new(AuditFields {
            at_unix_ms: now.saturating_mul(1000),
            actor: "system".into(),
            action: action.into(),
            target: format!("alert:{} {}", a.id, a.subject.describe()),
            tenant: a.subject.tenant.clone(),
            outcome: AuditOutcome::Allowed,
            detail,
        }),
    )?;
    Ok(())
}

fn insert_event(
    conn: &Connection,
    a: &AlertRecord,
    kind: AlertEventKind,
    now: UnixSecs,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO alert_events (alert_id, kind, created_unix, silenced) VALUES (?1, ?2, ?3, ?4)",
    )
    .db()?
    .execute(params![
        to_i64("alert id", a.id)?,
        kind.as_str(),
        now,
        a.silenced_at(now)
    ])
    .db()?;
    Ok(())
}

/// Fires one alert unless one of its rule and subject fires already.
fn fire(conn: &Connection, n: &NewAlert, now: UnixSecs) -> StoreResult<Option<AlertRecord>> {
    let id: Option<i64> = query_opt(
        conn,
        "INSERT INTO alerts (rule, severity, subject_kind, subject_node, subject_name, \
         subject_tenant, state, summary, started_unix) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'firing', ?7, ?8) \
         ON CONFLICT (rule, subject_kind, subject_node, subject_name) WHERE state = 'firing' \
         DO NOTHING RETURNING id",
        params![
            n.rule,
            n.severity.as_str(),
            n.subject.kind.as_str(),
            node_text(&n.subject.node),
            n.subject.name,
            tenant_text(&n.subject.tenant),
            n.summary,
            now
        ],
        |row| row.get(0),
    )?;
    let Some(id) = id else {
        return Ok(None);
    };
    let a = read_alert(conn, u64::try_from(id).map_err(super::backend)?)?;
    insert_event(conn, &a, AlertEventKind::Firing, now)?;
    audit_change(conn, &a, "alert.fire", now)?;
    Ok(Some(a))
}

fn resolve(conn: &Connection, id: u64, now: UnixSecs) -> StoreResult<Option<AlertRecord>> {
    let changed = conn
        .prepare_cached(
            "UPDATE alerts SET state = 'resolved', ended_unix = ?2 \
             WHERE id = ?1 AND state = 'firing'",
        )
        .db()?
        .execute(params![to_i64("alert id", id)?, now])
        .db()?;
    if changed == 0 {
        return Ok(None);
    }
    let a = read_alert(conn, id)?;
    insert_event(conn, &a, AlertEventKind::Resolved, now)?;
    audit_change(conn, &a, "alert.resolve", now)?;
    Ok(Some(a))
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn save_node_health(&self, reports: Vec<StoredHealth>) -> StoreResult<()> {
        self.write(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO node_health (node, received_unix, report) \
                     SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM nodes WHERE name = ?1) \
                     ON CONFLICT (node) DO UPDATE SET received_unix = excluded.received_unix, \
                     report = excluded.report",
                )
                .db()?;
            for r in &reports {
                stmt.execute(params![
                    r.node.as_str(),
                    r.received_unix,
                    r.report.encode_to_vec()
                ])
                .db()?;
            }
            Ok(())
        })
        .await
    }

    async fn load_node_health(&self) -> StoreResult<Vec<StoredHealth>> {
        self.run(|conn| {
            query_all(
                conn,
                "SELECT node, received_unix, report FROM node_health ORDER BY node",
                [],
                |row| {
                    Ok(StoredHealth {
                        node: parsed(row, 0, NodeName::new)?,
                        received_unix: row.get(1)?,
                        report: Arc::new(blob::<HealthReport>(row, 2)?.unwrap_or_default()),
                    })
                },
            )
        })
        .await
    }

    async fn apply_alert_changes(
        &self,
        changes: AlertChanges,
        now: UnixSecs,
    ) -> StoreResult<AppliedAlerts> {
        self.write(move |tx| {
            let mut out = AppliedAlerts::default();
            for n in &changes.fire {
                if let Some(a) = fire(tx, n, now)? {
                    out.fired.push(a);
                }
            }
            for id in &changes.resolve {
                if let Some(a) = resolve(tx, *id, now)? {
                    out.resolved.push(a);
                }
            }
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE alerts SET severity = ?2, summary = ?3 \
                     WHERE id = ?1 AND state = 'firing'",
                )
                .db()?;
            for (id, sev, summary) in &changes.update {
                out.updated += stmt
                    .execute(params![to_i64("alert id", *id)?, sev.as_str(), summary])
                    .db()?;
            }
            Ok(out)
        })
        .await
    }

    async fn firing_alerts(&self) -> StoreResult<Vec<AlertRecord>> {
        self.run(|conn| {
            let sql = format!(
                "SELECT {ALERT_COLUMNS} FROM alerts a WHERE a.state = 'firing' ORDER BY a.id"
            );
            query_all(conn, &sql, [], alert_row)
        })
        .await
    }

    async fn list_alerts(&self, filter: AlertFilter) -> StoreResult<Vec<AlertRecord>> {
        self.run(move |conn| {
            let mut sql = format!("SELECT {ALERT_COLUMNS} FROM alerts a WHERE 1 = 1");
            let mut args: Vec<Value> = Vec::new();
            if !filter.include_resolved {
                sql.push_str(" AND a.state = 'firing'");
            }
            if let Some(node) = &filter.node {
                sql.push_str(" AND a.subject_node = ?");
                args.push(Value::Text(node.as_str().to_owned()));
            }
            if let Some(tenant) = &filter.tenant {
                sql.push_str(" AND a.subject_tenant = ?");
                args.push(Value::Text(tenant.as_str().to_owned()));
            }
            if filter.tenant_subjects_only {
                sql.push_str(" AND a.subject_tenant <> ''");
            }
            let limit = match filter.limit {
                0 => ALERTS_DEFAULT_LIMIT,
                n => n.min(ALERTS_MAX_LIMIT),
            };
            sql.push_str(" ORDER BY a.id DESC LIMIT ?");
            args.push(Value::Integer(i64::from(limit)));
            query_all(conn, &sql, params_from_iter(args), alert_row)
        })
        .await
    }

    async fn get_alert(&self, id: u64) -> StoreResult<AlertRecord> {
        self.run(move |conn| read_alert(conn, id)).await
    }

    async fn ack_alert(&self, id: u64, ack: AlertAck) -> StoreResult<AlertRecord> {
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE alerts SET acked_by = ?2, acked_unix = ?3, ack_comment = ?4 \
                     WHERE id = ?1",
                )
                .db()?
                .execute(params![
                    to_i64("alert id", id)?,
                    ack.by,
                    ack.at_unix,
                    ack.comment
                ])
                .db()?;
            if changed == 0 {
                return Err(not_found("alert", id.to_string()));
            }
            read_alert(tx, id)
        })
        .await
    }

    async fn silence_alert(
        &self,
        id: u64,
        silence: Option<AlertSilence>,
    ) -> StoreResult<AlertRecord> {
        self.write(move |tx| {
            let id64 = to_i64("alert id", id)?;
            let changed = match &silence {
                Some(s) => tx
                    .prepare_cached(
                        "UPDATE alerts SET silenced_until_unix = ?2, silenced_by = ?3, \
                         silence_comment = ?4 WHERE id = ?1",
                    )
                    .db()?
                    .execute(params![id64, s.until_unix, s.by, s.comment])
                    .db()?,
                None => tx
                    .prepare_cached(
                        "UPDATE alerts SET silenced_until_unix = NULL, silenced_by = NULL, \
                         silence_comment = NULL WHERE id = ?1",
                    )
                    .db()?
                    .execute(params![id64])
                    .db()?,
            };
            if changed == 0 {
                return Err(not_found("alert", id.to_string()));
            }
            read_alert(tx, id)
        })
        .await
    }

    async fn pending_alert_events(
        &self,
        after_id: i64,
        limit: usize,
    ) -> StoreResult<Vec<AlertEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let sql = format!(
                "SELECT {ALERT_COLUMNS}, e.id, e.kind, e.created_unix, e.silenced \
                 FROM alert_events e JOIN alerts a ON a.id = e.alert_id \
                 WHERE e.id > ?1 AND e.notified_unix IS NULL ORDER BY e.id LIMIT ?2"
            );
            query_all(conn, &sql, params![after_id, limit], |row| {
                let alert = alert_at(row, 0)?;
                let n = ALERT_COLUMN_COUNT;
                Ok(AlertEvent {
                    id: row.get(n)?,
                    alert_id: alert.id,
                    kind: parsed(row, n + 1, event_kind)?,
                    created_unix: row.get(n + 2)?,
                    silenced: row.get(n + 3)?,
                    alert,
                })
            })
        })
        .await
    }

    async fn mark_alert_events_notified(&self, ids: &[i64], now: UnixSecs) -> StoreResult<()> {
        let ids = ids.to_vec();
        self.write(move |tx| {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE alert_events SET notified_unix = ?2 \
                     WHERE id = ?1 AND notified_unix IS NULL",
                )
                .db()?;
            for id in &ids {
                stmt.execute(params![id, now]).db()?;
            }
            Ok(())
        })
        .await
    }
}

//! App install requests, their discussion and decision, and app
//! instances in SQLite.
//!
//! An approval is one IMMEDIATE transaction: the request is decided
//! ([`crate::rules::requests`]), the port chosen from those in use on the
//! node ([`crate::rules::ports`]) and the instance inserted, so concurrent
//! approvals never share a port (the unique index would refuse it
//! anyway). Instance changes and reports go through
//! [`crate::rules::instances`]. [`desired_apps`] is read by the nodes area
//! for a node's desired configuration.

use std::collections::BTreeSet;

use async_trait::async_trait;
use coloc_proto::agent::v1::AppStatus;
use coloc_proto::apps::web::{PasswordHash, WebLogin, WebUser};
use coloc_proto::domain::{NodeName, TenantName, UserName};
use coloc_proto::storage::{VolumeId, VolumeName};
use prost::Message;
use rusqlite::types::Type;
use rusqlite::{Connection, Row, params};

use super::nodes::{bump_generation, removed_at, require_live_node};
use super::storage::{lifecycle_parse, load_volume, volume_label};
use super::tenancy::load_tenant;
use super::{
    Db, SqliteError, SqliteStore, backend, blob, conflict, conversion, corrupt, not_found, parsed,
    parsed_opt, query_all, query_opt, small, to_i64, unsigned,
};
use crate::rules::instances::{self, Wanted};
use crate::rules::orphans;
use crate::rules::ports;
use crate::rules::requests::{self, Decision};
use crate::store::{
    AppName, AppRequestRecord, AppStore, CommentRecord, DesiredApp, InstanceChange, InstanceFilter,
    InstanceRecord, InstanceState, NewAppRequest, RequestState, StoreError, StoreResult, UnixSecs,
    VolumeLifecycle,
};

/// Column list matching [`instance_from_row`]; column 13 is the tenant's
/// POSIX id, 15 when the node was removed, 16 and 17 the proxy's login.
macro_rules! instance_select {
    ($rest:literal) => {
        concat!(
            "SELECT i.tenant, i.app, i.node, i.volume_id, v.name, v.lifecycle, i.port, ",
            "i.state, i.restart_nonce, i.request_id, i.created_unix, i.gone, i.observed, ",
            "t.posix_id, t.suspended_unix IS NOT NULL, n.removed_unix, ",
            "i.web_user, i.web_password_hash ",
            "FROM app_instances AS i JOIN volumes AS v ON v.id = i.volume_id ",
            "JOIN tenants AS t ON t.name = i.tenant JOIN nodes AS n ON n.name = i.node ",
            $rest
        )
    };
}

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
    r.comments = query_all(
        conn,
        "SELECT author, at_unix, text FROM app_request_comments \
             WHERE request_id = ?1 ORDER BY seq",
        [to_i64("request id", r.id)?],
        |row| {
            Ok(CommentRecord {
                author: parsed(row, 0, UserName::new)?,
                at_unix: row.get(1)?,
                text: row.get(2)?,
            })
        },
    )?;
    Ok(r)
}

fn load_request(conn: &Connection, id: u64) -> StoreResult<AppRequestRecord> {
    let key = to_i64("request id", id)?;
    let r = query_opt(
        conn,
        &format!("{REQUEST_SELECT} WHERE r.id = ?1"),
        [key],
        request_from_row,
    )?
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

fn instance_state_parse(s: String) -> Result<InstanceState, SqliteError> {
    InstanceState::parse(&s).ok_or_else(|| corrupt("app_instances.state", s))
}

fn instance_from_row(row: &Row<'_>) -> rusqlite::Result<InstanceRecord> {
    let port: i64 = row.get(6)?;
    Ok(InstanceRecord {
        tenant: parsed(row, 0, TenantName::new)?,
        app: parsed(row, 1, AppName::new)?,
        node: parsed(row, 2, NodeName::new)?,
        volume_id: parsed(row, 3, VolumeId::new)?,
        volume_name: parsed(row, 4, VolumeName::new)?,
        volume_lifecycle: parsed(row, 5, lifecycle_parse)?,
        port: u16::try_from(port).map_err(|e| conversion(6, Type::Integer, e))?,
        state: parsed(row, 7, instance_state_parse)?,
        restart_nonce: unsigned(row, 8)?,
        request_id: unsigned(row, 9)?,
        created_unix: row.get(10)?,
        gone: row.get(11)?,
        observed: blob::<AppStatus>(row, 12)?,
        tenant_suspended: row.get(14)?,
        node_removed: row.get::<_, Option<UnixSecs>>(15)?.is_some(),
        web_login: match (
            parsed_opt(row, 16, WebUser::new)?,
            parsed_opt(row, 17, PasswordHash::new)?,
        ) {
            (Some(user), Some(hash)) => Some(WebLogin { user, hash }),
            _ => None,
        },
    })
}

fn load_instance(conn: &Connection, rowid: i64) -> StoreResult<InstanceRecord> {
    query_opt(
        conn,
        instance_select!("WHERE i.id = ?1"),
        [rowid],
        instance_from_row,
    )?
    .ok_or_else(|| not_found("instance", rowid.to_string()))
}

/// The row id of the tenant's instance of the app on a removed node that
/// is not gone yet (live, or removed and never reported gone), if any.
fn orphan_instance(conn: &Connection, tenant: &str, app: &str) -> StoreResult<Option<i64>> {
    query_opt(
        conn,
        "SELECT i.id FROM app_instances AS i JOIN nodes AS n ON n.name = i.node \
         WHERE i.tenant = ?1 AND i.app = ?2 AND i.gone = 0 AND n.removed_unix IS NOT NULL \
         ORDER BY i.state = 'removed', i.id DESC LIMIT 1",
        [tenant, app],
        |row| row.get(0),
    )
}

/// The one change an instance of a removed node takes: removing it
/// releases it at once ([`crate::rules::orphans`]); nothing is bumped, the
/// node is never told anything again.
fn release_orphan(
    tx: &Connection,
    rowid: i64,
    change: InstanceChange,
    label: &str,
) -> StoreResult<InstanceRecord> {
    let before = load_instance(tx, rowid)?;
    let removed = removed_at(tx, before.node.as_str())?.unwrap_or_default();
    orphans::instance_change(change, removed).map_err(|e| {
        conflict(
            "instance",
            label,
            format!("is on node {}, which {e}", before.node),
        )
    })?;
    tx.prepare_cached("UPDATE app_instances SET state = 'removed', gone = 1 WHERE id = ?1")
        .db()?
        .execute([rowid])
        .db()?;
    load_instance(tx, rowid)
}

/// The row id of the tenant's live (not removed) instance of the app.
fn live_instance(conn: &Connection, tenant: &str, app: &str) -> StoreResult<Option<i64>> {
    query_opt(
        conn,
        "SELECT id FROM app_instances WHERE tenant = ?1 AND app = ?2 AND state <> 'removed'",
        [tenant, app],
        |row| row.get(0),
    )
}

/// Why a change finds no live instance of the app: Conflict (`removed`,
/// the reason) when the tenant had one that was removed, NotFound when it
/// never had any.
fn no_live_instance(
    conn: &Connection,
    tenant: &TenantName,
    app: &AppName,
    removed: String,
) -> StoreResult<StoreError> {
    let label = format!("{tenant}/{app}");
    let existed = conn
        .prepare_cached("SELECT 1 FROM app_instances WHERE tenant = ?1 AND app = ?2")
        .db()?
        .exists([tenant.as_str(), app.as_str()])
        .db()?;
    Ok(if existed {
        conflict("instance", label, removed)
    } else {
        not_found("instance", label)
    })
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

/// The port for a new instance on the node, from the ports its instances
/// that are not gone hold ([`ports::lowest_free`]).
fn free_port(conn: &Connection, node: &str) -> StoreResult<u16> {
    let in_use: BTreeSet<u16> = conn
        .prepare_cached("SELECT port FROM app_instances WHERE node = ?1 AND gone = 0")
        .db()?
        .query_map([node], |row| row.get(0))
        .db()?
        .collect::<rusqlite::Result<_>>()
        .db()?;
    ports::lowest_free(&in_use).map_err(|e| conflict("node", node, e.to_string()))
}

/// Loads a request for `decision` and the state the decision gives it;
/// Conflict when it was decided before ([`requests::decide`]).
fn request_to_decide(
    conn: &Connection,
    id: u64,
    decision: Decision,
) -> StoreResult<(AppRequestRecord, RequestState)> {
    let r = load_request(conn, id)?;
    let state = requests::decide(r.state, r.decided_by.as_ref(), decision)
        .map_err(|e| conflict("request", id.to_string(), e.to_string()))?;
    Ok((r, state))
}

/// Writes a decision, and its comment when not empty.
fn record_decision(
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

/// The node's instances that are not gone, by tenant then app, with their
/// owner.
pub(super) fn desired_apps(conn: &Connection, node: &str) -> StoreResult<Vec<DesiredApp>> {
    query_all(
        conn,
        instance_select!("WHERE i.node = ?1 AND i.gone = 0 ORDER BY i.tenant, i.app, i.id"),
        [node],
        |row| {
            Ok(DesiredApp {
                instance: instance_from_row(row)?,
                owner: small(row, 13)?,
            })
        },
    )
}

#[async_trait]
impl AppStore for SqliteStore {
    async fn create_app_request(
        &self,
        request: NewAppRequest,
        now: UnixSecs,
    ) -> StoreResult<AppRequestRecord> {
        self.write(move |tx| {
            let tenant = request.tenant.as_str();
            let app = request.app.as_str();
            let node = request.node.as_str();
            load_tenant(tx, tenant)?;
            require_live_node(tx, node)?;
            let v = load_volume(tx, request.volume_id.as_str())?;
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
            check_no_live_instance(tx, tenant, app)?;
            let pending: Option<i64> = query_opt(
                tx,
                "SELECT id FROM app_requests WHERE tenant = ?1 AND app = ?2 \
                     AND state = 'pending'",
                [tenant, app],
                |row| row.get(0),
            )?;
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
                    tx,
                    id,
                    &CommentRecord {
                        author: request.requested_by.clone(),
                        at_unix: now,
                        text: request.comment.clone(),
                    },
                )?;
            }
            let record = load_request(tx, id)?;
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
            let requests = query_all(
                &tx,
                &format!(
                    "{REQUEST_SELECT} WHERE (?1 IS NULL OR r.tenant = ?1) \
                     AND (?2 IS NULL OR r.state = ?2) ORDER BY r.id"
                ),
                params![
                    tenant.as_ref().map(TenantName::as_str),
                    state.map(RequestState::as_str)
                ],
                request_from_row,
            )?;
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
        self.write(move |tx| {
            load_request(tx, id)?;
            add_comment(tx, id, &comment)?;
            let record = load_request(tx, id)?;
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
        self.write(move |tx| {
            let (r, state) = request_to_decide(tx, id, Decision::Approve)?;
            let (tenant, app, node) = (r.tenant.as_str(), r.app.as_str(), r.node.as_str());
            require_live_node(tx, node)?;
            check_no_live_instance(tx, tenant, app)?;
            let v = load_volume(tx, r.volume_id.as_str())?;
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
            let port = free_port(tx, node)?;
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
            record_decision(tx, id, state, &by, &comment, now)?;
            bump_generation(tx, node)?;
            let request = load_request(tx, id)?;
            let instance = load_instance(tx, rowid)?;
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
        self.write(move |tx| {
            let (_, state) = request_to_decide(tx, id, Decision::Reject)?;
            record_decision(tx, id, state, &by, &comment, now)?;
            let request = load_request(tx, id)?;
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
            query_opt(
                conn,
                instance_select!(
                    "WHERE i.tenant = ?1 AND i.app = ?2 \
                 ORDER BY i.state = 'removed', i.id DESC LIMIT 1"
                ),
                [tenant.as_str(), app.as_str()],
                instance_from_row,
            )?
            .ok_or_else(|| not_found("instance", format!("{tenant}/{app}")))
        })
        .await
    }

    async fn list_instances(&self, filter: InstanceFilter) -> StoreResult<Vec<InstanceRecord>> {
        self.run(move |conn| {
            query_all(
                conn,
                instance_select!(
                    "WHERE (?1 IS NULL OR i.tenant = ?1) AND (?2 IS NULL OR i.node = ?2) \
                 AND i.gone = 0 ORDER BY i.tenant, i.app, i.id"
                ),
                params![
                    filter.tenant.as_ref().map(TenantName::as_str),
                    filter.node.as_ref().map(NodeName::as_str)
                ],
                instance_from_row,
            )
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
        self.write(move |tx| {
            let label = format!("{tenant}/{app}");
            if let Some(rowid) = orphan_instance(tx, tenant.as_str(), app.as_str())? {
                return release_orphan(tx, rowid, change, &label);
            }
            let Some(rowid) = live_instance(tx, tenant.as_str(), app.as_str())? else {
                return Err(no_live_instance(
                    tx,
                    &tenant,
                    &app,
                    instances::Removed { change }.to_string(),
                )?);
            };
            let before = load_instance(tx, rowid)?;
            let current = Wanted {
                state: before.state,
                restart_nonce: before.restart_nonce,
            };
            let after = instances::apply(current, change)
                .map_err(|e| conflict("instance", label, e.to_string()))?;
            let Some(after) = after else {
                return Ok(before);
            };
            tx.prepare_cached(
                "UPDATE app_instances SET state = ?2, restart_nonce = ?3 WHERE id = ?1",
            )
            .db()?
            .execute(params![
                rowid,
                after.state.as_str(),
                to_i64("restart nonce", after.restart_nonce)?
            ])
            .db()?;
            bump_generation(tx, before.node.as_str())?;
            let record = load_instance(tx, rowid)?;
            Ok(record)
        })
        .await
    }

    async fn set_instance_web_login(
        &self,
        tenant: &TenantName,
        app: &AppName,
        login: WebLogin,
    ) -> StoreResult<InstanceRecord> {
        let tenant = tenant.clone();
        let app = app.clone();
        self.write(move |tx| {
            let label = format!("{tenant}/{app}");
            let Some(rowid) = live_instance(tx, tenant.as_str(), app.as_str())? else {
                return Err(no_live_instance(
                    tx,
                    &tenant,
                    &app,
                    "is removed: ask for the app again first".to_string(),
                )?);
            };
            let before = load_instance(tx, rowid)?;
            if before.node_removed {
                return Err(conflict(
                    "instance",
                    label,
                    "its node was removed: move or remove the app first".to_string(),
                ));
            }
            tx.prepare_cached(
                "UPDATE app_instances SET web_user = ?2, web_password_hash = ?3 WHERE id = ?1",
            )
            .db()?
            .execute(params![rowid, login.user.as_str(), login.hash.as_str()])
            .db()?;
            bump_generation(tx, before.node.as_str())?;
            load_instance(tx, rowid)
        })
        .await
    }

    async fn record_apps(
        &self,
        node: &NodeName,
        statuses: Vec<AppStatus>,
    ) -> StoreResult<Vec<InstanceRecord>> {
        let node = node.clone();
        self.write(move |tx| {
            let name = node.as_str();
            require_live_node(tx, name)?;
            let mut gone = Vec::new();
            for status in &statuses {
                // Only this node's instances: a node never writes another's.
                let found: Option<(i64, InstanceState)> = query_opt(
                    tx,
                    "SELECT id, state FROM app_instances \
                         WHERE node = ?1 AND tenant = ?2 AND app = ?3 AND gone = 0",
                    [name, status.tenant.as_str(), status.app.as_str()],
                    |row| Ok((row.get(0)?, parsed(row, 1, instance_state_parse)?)),
                )?;
                let Some((rowid, state)) = found else {
                    continue;
                };
                let becomes_gone = instances::gone_after_report(state, &status.active_state);
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
                bump_generation(tx, name)?;
            }
            let records = gone
                .iter()
                .map(|rowid| load_instance(tx, *rowid))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(records)
        })
        .await
    }
}

//! Sites, join tokens, enrollment and nodes in SQLite, and the read of a
//! node's desired configuration.
//!
//! Also home to the two node helpers the other areas use inside their own
//! transactions: [`node_exists`] and [`bump_generation`] (every change to
//! what a node should run bumps its desired generation, so the session
//! manager pushes it). The desired configuration reads the storage and
//! apps tables through those areas' helpers ([`storage::desired_volumes`],
//! [`apps::desired_apps`]), in one transaction with the node row.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use coloc_proto::agent::v1::NodeFacts;
use coloc_proto::domain::{NodeName, SiteName};
use prost::Message;
use rusqlite::{Connection, Row, params};

use super::{
    Db, SqliteStore, apps, backend, blob, conflict, corrupt, immediate, insert_err, not_found,
    parsed, parsed_opt, query_all, query_opt, storage, to_i64, unsigned,
};
use crate::rules::orphans::NodeRemoved;
use crate::store::{
    ConnState, JoinTokenRecord, LabelChange, NewNode, NodeCert, NodeDesired, NodeRecord, NodeStore,
    Removal, RemovedNode, SiteRecord, StoreError, StoreResult, UnixSecs,
};
use crate::time::date_of;

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
            "last_message, facts, cert_fingerprint, cert_not_after_unix, cert_renew_after_unix, ",
            "next_cert_fingerprint, next_cert_not_after_unix, next_cert_renew_after_unix, ",
            "removed_unix, removed_by FROM nodes ",
            $rest
        )
    };
}

const JOIN_TOKEN_SELECT: &str = "SELECT id, site, secret_hash, created_unix, expires_unix, \
     created_by, used_by_node, used_unix FROM join_tokens";

/// The join token with this hash if it can enroll a node at `now`, or why
/// not; the one check behind [`NodeStore::usable_join_token`] and
/// [`NodeStore::enroll_node`].
fn usable_join_token(
    conn: &Connection,
    secret_hash: &str,
    now: UnixSecs,
) -> StoreResult<JoinTokenRecord> {
    let token = query_opt(
        conn,
        &format!("{JOIN_TOKEN_SELECT} WHERE secret_hash = ?1"),
        [secret_hash],
        join_token_from_row,
    )?
    .ok_or(StoreError::JoinTokenUnknown)?;
    if let Some(node) = &token.used_by_node {
        return Err(StoreError::JoinTokenUsed {
            node: node.to_string(),
        });
    }
    if token.expires_unix <= now {
        return Err(StoreError::JoinTokenExpired);
    }
    Ok(token)
}

fn node_from_row(row: &Row<'_>) -> rusqlite::Result<NodeRecord> {
    let next_fingerprint: Option<String> = row.get(16)?;
    let next_cert = match next_fingerprint {
        Some(fingerprint) => Some(NodeCert {
            fingerprint,
            not_after_unix: row.get(17)?,
            renew_after_unix: row.get(18)?,
        }),
        None => None,
    };
    let removed_unix: Option<UnixSecs> = row.get(19)?;
    let removed = match removed_unix {
        Some(at_unix) => Some(Removal {
            at_unix,
            by: row.get::<_, Option<String>>(20)?.unwrap_or_default(),
        }),
        None => None,
    };
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
        facts: blob::<NodeFacts>(row, 12)?,
        cert: NodeCert {
            fingerprint: row.get(13)?,
            not_after_unix: row.get(14)?,
            renew_after_unix: row.get(15)?,
        },
        next_cert,
        removed,
    })
}

fn load_node(conn: &Connection, name: &str) -> StoreResult<NodeRecord> {
    query_opt(conn, node_select!("WHERE name = ?1"), [name], node_from_row)?
        .ok_or_else(|| not_found("node", name))
}

pub(super) fn node_exists(conn: &Connection, name: &str) -> StoreResult<bool> {
    conn.prepare_cached("SELECT 1 FROM nodes WHERE name = ?1")
        .db()?
        .exists([name])
        .db()
}

/// When the node was removed; None while it is in the fleet (or does not
/// exist).
pub(super) fn removed_at(conn: &Connection, name: &str) -> StoreResult<Option<UnixSecs>> {
    Ok(query_opt(
        conn,
        "SELECT removed_unix FROM nodes WHERE name = ?1",
        [name],
        |row| row.get::<_, Option<UnixSecs>>(0),
    )?
    .flatten())
}

/// The refusal of a change that needs a node which was removed.
fn node_removed(name: &str, at_unix: UnixSecs) -> StoreError {
    conflict("node", name, NodeRemoved { at_unix }.to_string())
}

/// NotFound for a node that does not exist, Conflict for a removed one:
/// what every change needing a node in the fleet checks first.
pub(super) fn require_live_node(conn: &Connection, name: &str) -> StoreResult<()> {
    if !node_exists(conn, name)? {
        return Err(not_found("node", name));
    }
    match removed_at(conn, name)? {
        Some(at) => Err(node_removed(name, at)),
        None => Ok(()),
    }
}

/// Tells the session manager the node has something new to run: every
/// change to a node's desired configuration calls this in its transaction.
/// A removed node is never told anything again, so the change is refused
/// (and the caller's transaction rolled back): its volumes and instances
/// only take their release ([`crate::rules::orphans`]), which does not
/// come here.
pub(super) fn bump_generation(conn: &Connection, node: &str) -> StoreResult<()> {
    if let Some(at) = removed_at(conn, node)? {
        return Err(node_removed(node, at));
    }
    conn.prepare_cached(
        "UPDATE nodes SET desired_generation = desired_generation + 1 WHERE name = ?1",
    )
    .db()?
    .execute([node])
    .db()?;
    Ok(())
}

fn labels_json(labels: &BTreeMap<String, String>) -> StoreResult<String> {
    serde_json::to_string(labels).map_err(backend)
}

fn node_desired(conn: &Connection, name: &str) -> StoreResult<NodeDesired> {
    Ok(NodeDesired {
        node: load_node(conn, name)?,
        pools: storage::pools_of(conn, Some(name))?,
        volumes: storage::desired_volumes(conn, name)?,
        apps: apps::desired_apps(conn, name)?,
    })
}

#[async_trait]
impl NodeStore for SqliteStore {
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
            query_opt(
                conn,
                &format!("{SITE_SELECT} WHERE name = ?1"),
                [name.as_str()],
                site_from_row,
            )?
            .ok_or_else(|| not_found("site", name.as_str()))
        })
        .await
    }

    async fn list_sites(&self) -> StoreResult<Vec<SiteRecord>> {
        self.run(|conn| {
            query_all(
                conn,
                &format!("{SITE_SELECT} ORDER BY name"),
                [],
                site_from_row,
            )
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
            query_all(
                conn,
                &format!("{JOIN_TOKEN_SELECT} ORDER BY id"),
                [],
                join_token_from_row,
            )
        })
        .await
    }

    async fn usable_join_token(
        &self,
        secret_hash: &str,
        now: UnixSecs,
    ) -> StoreResult<JoinTokenRecord> {
        let secret_hash = secret_hash.to_owned();
        self.run(move |conn| usable_join_token(conn, &secret_hash, now))
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
            let JoinTokenRecord {
                id: token_id, site, ..
            } = usable_join_token(&tx, &secret_hash, now)?;
            let site = site.as_str();
            let name = node.name.as_str();
            // Checked before touching the token, so that a refused name
            // leaves the token usable for a second try.
            if node_exists(&tx, name)? {
                return Err(match removed_at(&tx, name)? {
                    // Its volumes, instances, pools, grants and audit
                    // entries still name it: a new server under that
                    // name would inherit them.
                    Some(at) => conflict(
                        "node",
                        name,
                        format!(
                            "the name belonged to a node removed on {}; names of removed \
                             nodes are not reused, choose another",
                            date_of(at)
                        ),
                    ),
                    None => StoreError::AlreadyExists {
                        kind: "node",
                        name: name.to_owned(),
                    },
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
                 last_outcome, last_message, facts, cert_fingerprint, cert_not_after_unix, \
                 cert_renew_after_unix) \
                 VALUES (?1, ?2, ?3, NULL, ?4, ?3, 0, '{}', 1, 0, 0, '', ?5, ?6, ?7, ?8)",
            )
            .db()?
            .execute(params![
                name,
                site,
                now,
                ConnState::Enrolling.as_str(),
                facts,
                node.cert.fingerprint,
                node.cert.not_after_unix,
                node.cert.renew_after_unix
            ])
            .map_err(|e| insert_err(e, ("node", name), ("site", site)))?;
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
            query_opt(
                conn,
                node_select!("WHERE cert_fingerprint = ?1 OR next_cert_fingerprint = ?1"),
                [&fingerprint],
                node_from_row,
            )
        })
        .await
    }

    async fn list_nodes(&self, site: Option<&SiteName>) -> StoreResult<Vec<NodeRecord>> {
        let site = site.cloned();
        self.run(move |conn| {
            query_all(
                conn,
                node_select!("WHERE ?1 IS NULL OR site = ?1 ORDER BY name"),
                [site.as_ref().map(SiteName::as_str)],
                node_from_row,
            )
        })
        .await
    }

    async fn set_draining(&self, name: &NodeName, draining: bool) -> StoreResult<NodeRecord> {
        let name = name.clone();
        self.write(move |tx| {
            require_live_node(tx, name.as_str())?;
            tx.prepare_cached(
                "UPDATE nodes SET draining = ?2, desired_generation = desired_generation + 1 \
                 WHERE name = ?1 AND draining <> ?2",
            )
            .db()?
            .execute(params![name.as_str(), draining])
            .db()?;
            // NotFound comes from here when the node does not exist.
            let record = load_node(tx, name.as_str())?;
            Ok(record)
        })
        .await
    }

    async fn change_labels(&self, change: LabelChange) -> StoreResult<Vec<NodeRecord>> {
        self.run(move |conn| {
            let tx = immediate(conn)?;
            let names: BTreeSet<String> = if change.nodes.is_empty() {
                tx.prepare_cached("SELECT name FROM nodes WHERE removed_unix IS NULL")
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
                    require_live_node(&tx, name)?;
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

    async fn remove_node(
        &self,
        name: &NodeName,
        by: &str,
        now: UnixSecs,
    ) -> StoreResult<RemovedNode> {
        let name = name.clone();
        let by = by.to_owned();
        self.write(move |tx| {
            let node = name.as_str();
            let before = load_node(tx, node)?;
            if let Some(removed) = &before.removed {
                return Err(conflict(
                    "node",
                    node,
                    format!(
                        "was already removed on {} by {}",
                        date_of(removed.at_unix),
                        removed.by
                    ),
                ));
            }
            // A renewed certificate it never used goes with it; the
            // current one stays recorded, so that it is refused by name.
            tx.prepare_cached(
                "UPDATE nodes SET removed_unix = ?2, removed_by = ?3, \
                 next_cert_fingerprint = NULL, next_cert_not_after_unix = NULL, \
                 next_cert_renew_after_unix = NULL WHERE name = ?1",
            )
            .db()?
            .execute(params![node, now, by])
            .db()?;
            Ok(RemovedNode {
                node: load_node(tx, node)?,
                volumes: storage::desired_volumes(tx, node)?
                    .into_iter()
                    .map(|d| d.volume)
                    .collect(),
                instances: apps::desired_apps(tx, node)?
                    .into_iter()
                    .map(|d| d.instance)
                    .collect(),
            })
        })
        .await
    }

    async fn set_next_cert(&self, name: &NodeName, cert: NodeCert) -> StoreResult<NodeRecord> {
        let name = name.clone();
        self.write(move |tx| {
            require_live_node(tx, name.as_str())?;
            // One index per column: a fingerprint current elsewhere is
            // checked here.
            let taken = tx
                .prepare_cached(
                    "SELECT 1 FROM nodes WHERE cert_fingerprint = ?1 \
                     OR (next_cert_fingerprint = ?1 AND name <> ?2)",
                )
                .db()?
                .exists(params![cert.fingerprint, name.as_str()])
                .db()?;
            if taken {
                return Err(StoreError::AlreadyExists {
                    kind: "certificate",
                    name: cert.fingerprint.clone(),
                });
            }
            tx.prepare_cached(
                "UPDATE nodes SET next_cert_fingerprint = ?2, next_cert_not_after_unix = ?3, \
                 next_cert_renew_after_unix = ?4 WHERE name = ?1",
            )
            .db()?
            .execute(params![
                name.as_str(),
                cert.fingerprint,
                cert.not_after_unix,
                cert.renew_after_unix
            ])
            .db()?;
            load_node(tx, name.as_str())
        })
        .await
    }

    async fn promote_next_cert(
        &self,
        name: &NodeName,
        fingerprint: &str,
    ) -> StoreResult<NodeRecord> {
        let name = name.clone();
        let fingerprint = fingerprint.to_owned();
        self.write(move |tx| {
            require_live_node(tx, name.as_str())?;
            let changed = tx
                .prepare_cached(
                    "UPDATE nodes SET cert_fingerprint = next_cert_fingerprint, \
                     cert_not_after_unix = next_cert_not_after_unix, \
                     cert_renew_after_unix = next_cert_renew_after_unix, \
                     next_cert_fingerprint = NULL, next_cert_not_after_unix = NULL, \
                     next_cert_renew_after_unix = NULL \
                     WHERE name = ?1 AND next_cert_fingerprint = ?2",
                )
                .db()?
                .execute(params![name.as_str(), fingerprint])
                .db()?;
            if changed == 0 {
                return Err(conflict(
                    "node",
                    name.as_str(),
                    "the certificate presented is not its renewed one",
                ));
            }
            load_node(tx, name.as_str())
        })
        .await
    }

    async fn certs_due(&self, now: UnixSecs, limit: usize) -> StoreResult<Vec<NodeRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            // The rule is rules::certs::is_due (renew_after <= now), written
            // as the query so that the index finds the due nodes.
            query_all(
                conn,
                node_select!(
                    "WHERE removed_unix IS NULL AND cert_renew_after_unix <= ?1 \
                     AND conn_state = 'connected' ORDER BY cert_renew_after_unix, name LIMIT ?2"
                ),
                params![now, limit],
                node_from_row,
            )
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
            let mut names = query_all(
                conn,
                "UPDATE nodes SET conn_state = ?1, conn_changed_unix = ?2 \
                     WHERE conn_state = ?3 AND conn_changed_unix < ?4 RETURNING name",
                params![
                    ConnState::Unreachable.as_str(),
                    now,
                    ConnState::Disconnected.as_str(),
                    cutoff
                ],
                |row| parsed(row, 0, NodeName::new),
            )?;
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

    // ---- desired configuration

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
}

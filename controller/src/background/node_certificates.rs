//! `node-certificates`: renews node certificates over their sessions once
//! two thirds of their lifetime have passed (`agents::node_certs::renew`),
//! and ends a session whose certificate has expired at colocd's clock.
//!
//! The store finds the due nodes (connected, not removed) by an index, a
//! batch per run. A node whose renewal failed (an agent too old to know
//! the request, a session that dropped half-way) is tried again after
//! [`RETRY_AFTER_SECS`]; so is one renewed that has not reconnected with
//! its new certificate by then. The node keeps its current certificate
//! meanwhile: a failed renewal costs nothing but a retry.

use std::collections::HashMap;

use coloc_proto::domain::NodeName;
use coloc_proto::error_chain;
use futures::StreamExt;

use super::driver::{BackgroundTask, TaskError};
use super::summary::counted;
use crate::agents::node_certs::{close_session, renew};
use crate::context::Ctx;

/// Due nodes handled per run.
const BATCH: usize = 100;
/// Renewals under way at once (each is two round trips and a signature).
const PARALLEL: usize = 8;
/// How long a node waits before its renewal is tried again.
pub const RETRY_AFTER_SECS: i64 = 600;

pub(super) struct NodeCertificates {
    ctx: Ctx,
    /// Nodes tried recently, and when they may be tried again (colocd's
    /// clock). Memory only: after a restart every due node is tried once.
    retry_at: HashMap<NodeName, i64>,
}

impl NodeCertificates {
    pub(super) fn new(ctx: Ctx) -> Self {
        Self {
            ctx,
            retry_at: HashMap::new(),
        }
    }
}

#[async_trait::async_trait]
impl BackgroundTask for NodeCertificates {
    async fn activate(&mut self) -> Result<String, TaskError> {
        let ctx = &self.ctx;
        let now = ctx.clock.now();
        let due = ctx
            .store
            .certs_due(now, BATCH)
            .await
            .map_err(TaskError::store(
                "look for node certificates due for renewal",
            ))?;
        self.retry_at.retain(|_, at| *at > now);
        let mut expired = Vec::new();
        let mut waiting = Vec::new();
        let mut to_renew = Vec::new();
        for node in due {
            if node.cert.not_after_unix <= now {
                tracing::warn!(node = %node.name, "node certificate expired; closing its session");
                close_session(ctx, &node.name, "certificate expired").await;
                expired.push(node.name);
            } else if self.retry_at.contains_key(&node.name) {
                waiting.push(node.name);
            } else if ctx.sessions.is_connected(&node.name) {
                to_renew.push(node.name);
            }
        }
        let mut results: Vec<_> = futures::stream::iter(to_renew)
            .map(|node| async move {
                let result = renew(ctx, &node).await;
                (node, result)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        results.sort_by(|a, b| a.0.cmp(&b.0));
        let mut renewed = Vec::new();
        let mut failed = Vec::new();
        for (node, result) in results {
            self.retry_at.insert(node.clone(), now + RETRY_AFTER_SECS);
            match result {
                Ok(_) => renewed.push(node),
                Err(e) => {
                    let reason = error_chain(&e);
                    tracing::warn!(node = %node, error = %reason, "node certificate not renewed; trying again later");
                    failed.push(format!("{node} ({reason})"));
                }
            }
        }
        let mut done = Vec::new();
        if !renewed.is_empty() {
            done.push(format!(
                "renewed {}",
                counted(&renewed, "node certificate", "node certificates")
            ));
        }
        if !expired.is_empty() {
            done.push(format!(
                "closed {} with an expired certificate",
                counted(&expired, "session", "sessions")
            ));
        }
        if !waiting.is_empty() {
            done.push(format!(
                "{} to retry later",
                counted(&waiting, "node", "nodes")
            ));
        }
        let done = if done.is_empty() {
            "no node certificate due".to_string()
        } else {
            done.join("; ")
        };
        if failed.is_empty() {
            Ok(done)
        } else {
            Err(TaskError::Partly {
                done,
                failed: failed.join("; "),
            })
        }
    }
}

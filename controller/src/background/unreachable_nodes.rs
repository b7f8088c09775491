//! `unreachable-nodes`: a node whose session has been gone for
//! `unreachable_after_secs` is marked unreachable (the store compares the
//! time its connection state last changed), so that `coloc node list`
//! tells a node briefly reconnecting from one that is down.

use super::driver::{BackgroundTask, TaskError};
use super::summary::counted;
use crate::context::Ctx;

pub(super) struct UnreachableNodes {
    ctx: Ctx,
}

impl UnreachableNodes {
    pub(super) fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl BackgroundTask for UnreachableNodes {
    async fn activate(&mut self) -> Result<String, TaskError> {
        let ctx = &self.ctx;
        let now = ctx.clock.now();
        let after = i64::try_from(ctx.config.unreachable_after_secs).unwrap_or(i64::MAX);
        let names = ctx
            .store
            .mark_unreachable(now.saturating_sub(after), now)
            .await
            .map_err(TaskError::store("mark unreachable nodes"))?;
        for n in &names {
            tracing::warn!(node = %n, "node unreachable");
        }
        if !names.is_empty() {
            // The `alerts` task raises node-unreachable at its next run.
            ctx.health.poke();
        }
        if names.is_empty() {
            Ok("no node newly unreachable".to_string())
        } else {
            Ok(format!(
                "marked {} unreachable",
                counted(&names, "node", "nodes")
            ))
        }
    }
}

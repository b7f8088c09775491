//! `heartbeat-flush`: heartbeats are folded in memory by the session
//! registry (one entry per node, the latest time) and written here in one
//! batch, so that a large fleet costs one transaction per period instead of
//! one per heartbeat.

use super::driver::{BackgroundTask, TaskError};
use crate::context::Ctx;

pub(super) struct HeartbeatFlush {
    ctx: Ctx,
}

impl HeartbeatFlush {
    pub(super) fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl BackgroundTask for HeartbeatFlush {
    async fn activate(&mut self) -> Result<String, TaskError> {
        let seen = self.ctx.sessions.take_seen();
        if seen.is_empty() {
            return Ok("no heartbeat to record".to_string());
        }
        let nodes = seen.len();
        // Lost on failure, like before: the next heartbeat of each node
        // (a few seconds later) carries a newer time anyway.
        self.ctx
            .store
            .record_seen(seen)
            .await
            .map_err(TaskError::store("record heartbeats"))?;
        Ok(format!(
            "last seen times of {nodes} node{} recorded",
            if nodes == 1 { "" } else { "s" }
        ))
    }
}

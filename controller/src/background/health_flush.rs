//! `health-flush`: the health reports accepted since the last run
//! ([`crate::health::HealthBook`]) are written to the store in one batch,
//! so that a restart of colocd keeps each node's last known health; a
//! fleet reporting every minute costs one transaction per period.

use super::driver::{BackgroundTask, TaskError};
use crate::context::Ctx;

pub(super) struct HealthFlush {
    ctx: Ctx,
}

impl HealthFlush {
    pub(super) fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl BackgroundTask for HealthFlush {
    async fn activate(&mut self) -> Result<String, TaskError> {
        let reports = self.ctx.health.take_unsaved();
        if reports.is_empty() {
            return Ok("no new health report".to_string());
        }
        let nodes: Vec<_> = reports.iter().map(|r| r.node.clone()).collect();
        if let Err(e) = self.ctx.store.save_node_health(reports).await {
            // Tried again at the next run, with whatever is newest then.
            self.ctx.health.unsaved_again(nodes);
            return Err(TaskError::store("save health reports")(e));
        }
        Ok(format!(
            "health reports of {} node{} saved",
            nodes.len(),
            if nodes.len() == 1 { "" } else { "s" }
        ))
    }
}

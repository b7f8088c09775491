//! `volume-purge`: retained volumes past their grace period become
//! purging; their nodes are told to destroy them (docs/STORAGE.md), and
//! the audit log says so. The store decides which volumes are due, in one
//! transaction with the change, so a restore racing with the purge either
//! wins or finds the volume purging.

use coloc_proto::domain::NodeName;
use coloc_proto::storage::format_size;

use super::driver::{BackgroundTask, TaskError};
use super::summary::counted;
use crate::agents::push::push_nodes;
use crate::agents::system_audit::audit_system;
use crate::context::Ctx;

pub(super) struct VolumePurge {
    ctx: Ctx,
}

impl VolumePurge {
    pub(super) fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl BackgroundTask for VolumePurge {
    async fn activate(&mut self) -> Result<String, TaskError> {
        let ctx = &self.ctx;
        let due = ctx
            .store
            .purge_due(ctx.clock.now())
            .await
            .map_err(TaskError::store("look for volumes to purge"))?;
        if due.is_empty() {
            return Ok("no volume past its grace period".to_string());
        }
        let mut nodes: Vec<NodeName> = due.iter().map(|v| v.node.clone()).collect();
        nodes.sort();
        nodes.dedup();
        push_nodes(ctx, &nodes).await;
        for v in &due {
            tracing::info!(node = %v.node, tenant = %v.tenant, volume = %v.name, id = %v.id, "grace period over; purging volume");
            audit_system(
                ctx,
                "volume.purge",
                v,
                format!(
                    "grace period over: volume {} ({}) on node {} pool {} is destroyed",
                    v.id,
                    format_size(v.size_bytes),
                    v.node,
                    v.pool
                ),
            )
            .await;
        }
        let names: Vec<String> = due
            .iter()
            .map(|v| format!("{}/{}", v.tenant, v.name))
            .collect();
        Ok(format!("purging {}", counted(&names, "volume", "volumes")))
    }
}

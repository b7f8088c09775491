//! Telling connected nodes what they must now be, after a change: one
//! store read for every node concerned, rendered and handed to each
//! node's session. A node without a session gets the same configuration
//! when it next connects, so nothing here retries.

use coloc_proto::domain::NodeName;

use super::render::desired_of;
use crate::context::Ctx;

/// Sends the current desired configuration to each of these nodes that
/// has a session (one store read for all of them). A failure is logged:
/// the change is stored, and the node gets it at its next session.
pub async fn push_nodes(ctx: &Ctx, nodes: &[NodeName]) {
    let connected: Vec<NodeName> = nodes
        .iter()
        .filter(|n| ctx.sessions.is_connected(n))
        .cloned()
        .collect();
    if connected.is_empty() {
        return;
    }
    match ctx.store.desired_configs(&connected).await {
        Ok(configs) => {
            for d in &configs {
                ctx.sessions
                    .push_desired(&d.node.name, desired_of(d, &ctx.catalog, &ctx.config));
            }
        }
        Err(err) => {
            tracing::error!(nodes = connected.len(), error = %err, "cannot read desired configurations to push");
        }
    }
}

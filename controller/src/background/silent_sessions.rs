//! `silent-sessions`: a server that loses power sends no FIN, and its TCP
//! connection can look open for a long time. A session that sent nothing
//! for three heartbeat intervals (plus slack for a busy controller) is
//! closed here, and the node recorded as disconnected, which starts its
//! unreachable delay.

use coloc_proto::domain::NodeName;

use super::driver::{BackgroundTask, TaskError};
use super::summary::counted;
use crate::context::Ctx;
use crate::store::{ConnState, StoreError};

pub(super) struct SilentSessions {
    ctx: Ctx,
}

impl SilentSessions {
    pub(super) fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    /// Three missed heartbeats, plus slack for a busy controller.
    fn silence_ms(&self) -> i64 {
        (3 * i64::from(self.ctx.config.heartbeat_interval_secs) + 5) * 1000
    }
}

#[async_trait::async_trait]
impl BackgroundTask for SilentSessions {
    async fn activate(&mut self) -> Result<String, TaskError> {
        let ctx = &self.ctx;
        let mut closed: Vec<NodeName> = Vec::new();
        let mut failed: Vec<(NodeName, StoreError)> = Vec::new();
        for (name, id) in ctx.sessions.silent_for(self.silence_ms()) {
            if !ctx.sessions.close(&name, id) {
                // Replaced or closed meanwhile: not silent after all.
                continue;
            }
            tracing::warn!(node = %name, "session silent for too long; closing it");
            match ctx
                .store
                .set_conn_state(&name, ConnState::Disconnected, ctx.clock.now())
                .await
            {
                Ok(()) => closed.push(name),
                Err(err) => {
                    tracing::error!(node = %name, error = %err, "cannot record disconnection");
                    failed.push((name, err));
                }
            }
        }
        // Every silent session was closed either way; the error names the
        // nodes whose disconnection the store lacks.
        if !failed.is_empty() {
            let nodes: Vec<&NodeName> = failed.iter().map(|(n, _)| n).collect();
            let action = format!(
                "record the disconnection of {}",
                counted(&nodes, "node", "nodes")
            );
            let (_, source) = failed.swap_remove(0);
            return Err(TaskError::Store { action, source });
        }
        if closed.is_empty() {
            Ok("no silent session".to_string())
        } else {
            Ok(format!(
                "closed {}",
                counted(&closed, "silent session", "silent sessions")
            ))
        }
    }
}

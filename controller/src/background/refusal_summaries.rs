//! `refusal-summaries`: the calls the per-address limits counted without
//! writing them one by one (calls without valid credentials, enrollment
//! attempts) become one audit entry per address and closed window, "N
//! further refused calls from ADDR". The limiter hands each summary out
//! once; colocd writes what is still open when it stops
//! ([`write_summaries`] with `all`).

use super::driver::{BackgroundTask, TaskError};
use super::summary::counted;
use crate::context::Ctx;
use crate::limiter::{AddressLimiter, Summary};
use crate::store::{AuditFields, AuditOutcome, AuditRecord, StoreError};

pub(super) struct RefusalSummaries {
    ctx: Ctx,
}

impl RefusalSummaries {
    pub(super) fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl BackgroundTask for RefusalSummaries {
    async fn activate(&mut self) -> Result<String, TaskError> {
        let written = write_summaries(&self.ctx, false)
            .await
            .map_err(TaskError::store("write refusal summaries"))?;
        if written.is_empty() {
            Ok("no refusals to sum up".to_string())
        } else {
            Ok(format!(
                "summed up refusals from {}",
                counted(&written, "address", "addresses")
            ))
        }
    }
}

/// One kind of limited call and how its summaries read.
struct Kind<'a> {
    limiter: &'a AddressLimiter,
    action: &'static str,
    what: &'static str,
}

/// Writes the summaries of the windows closed by now (of every window
/// when `all`); returns the addresses summed up. A summary that cannot be
/// written is logged and lost, like any audit entry colocd cannot write,
/// and the others are still tried.
pub async fn write_summaries(ctx: &Ctx, all: bool) -> Result<Vec<String>, StoreError> {
    let now = ctx.clock.now_ms();
    let kinds = [
        Kind {
            limiter: &ctx.limits.api_refusals,
            action: "anonymous.refused",
            what: "refused calls",
        },
        Kind {
            limiter: &ctx.limits.enrollments,
            action: "node.enroll",
            what: "refused enrollment attempts",
        },
    ];
    let mut written = Vec::new();
    let mut failure = None;
    for kind in kinds {
        for s in kind.limiter.sweep(now, all) {
            let Summary {
                peer, count, to_ms, ..
            } = s;
            let entry = AuditRecord::new(AuditFields {
                at_unix_ms: to_ms,
                actor: "anonymous".into(),
                action: kind.action.into(),
                target: format!("address:{peer}"),
                tenant: None,
                outcome: AuditOutcome::Denied,
                detail: format!("{count} further {} from {peer}", kind.what),
            });
            tracing::warn!(address = %peer, count, action = kind.action, "refusals summed up");
            match ctx.store.append_audit(entry).await {
                Ok(_) => written.push(peer.to_string()),
                Err(err) => {
                    tracing::error!(address = %peer, error = %err, "cannot write audit entry");
                    failure = Some(err);
                }
            }
        }
    }
    match failure {
        Some(err) => Err(err),
        None => Ok(written),
    }
}

//! colocd's own audit entries (actor `system`): what it did by itself,
//! without a caller, such as destroying a volume past its grace period,
//! forgetting an app instance whose unit is gone or renewing a node's
//! certificate. A lost entry is logged
//! loudly; the action it describes has already happened and is not undone.

use coloc_proto::domain::{NodeName, TenantName};

use crate::context::Ctx;
use crate::store::{AuditFields, AuditOutcome, AuditRecord, VolumeRecord};

/// Writes an audit entry for something colocd did by itself.
pub async fn audit_system_entry(
    ctx: &Ctx,
    action: &str,
    target: String,
    tenant: &TenantName,
    detail: String,
) {
    append(ctx, action, target, Some(tenant.clone()), detail).await;
}

/// Writes an audit entry for something colocd did by itself to a node
/// (in no tenant's log).
pub async fn audit_system_node(ctx: &Ctx, action: &str, node: &NodeName, detail: String) {
    append(ctx, action, format!("node:{node}"), None, detail).await;
}

/// Writes an audit entry for something colocd did to itself (its own
/// certificate), in no tenant's log.
pub async fn audit_system_controller(ctx: &Ctx, action: &str, detail: String) {
    append(ctx, action, "controller".to_string(), None, detail).await;
}

async fn append(
    ctx: &Ctx,
    action: &str,
    target: String,
    tenant: Option<TenantName>,
    detail: String,
) {
    let entry = AuditRecord::new(AuditFields {
        at_unix_ms: ctx.clock.now_ms(),
        actor: "system".into(),
        action: action.into(),
        target: target.clone(),
        tenant,
        outcome: AuditOutcome::Allowed,
        detail,
    });
    if let Err(err) = ctx.store.append_audit(entry).await {
        tracing::error!(action, target = %target, error = %err, "cannot write audit entry");
    }
}

/// Writes an audit entry for something colocd did by itself to a volume.
pub async fn audit_system(ctx: &Ctx, action: &str, v: &VolumeRecord, detail: String) {
    audit_system_entry(
        ctx,
        action,
        format!("volume:{}/{}", v.tenant, v.name),
        &v.tenant,
        detail,
    )
    .await;
}

//! colocd's own audit entries (actor `system`): what it did by itself,
//! without a caller, such as destroying a volume past its grace period or
//! forgetting an app instance whose unit is gone. A lost entry is logged
//! loudly; the action it describes has already happened and is not undone.

use coloc_proto::domain::TenantName;

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
    let entry = AuditRecord::new(AuditFields {
        at_unix_ms: ctx.clock.now_ms(),
        actor: "system".into(),
        action: action.into(),
        target: target.clone(),
        tenant: Some(tenant.clone()),
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

//! The Alerts service (`coloc alert list/show/ack/silence`): the alerts
//! colocd's rules raise ([`crate::alerts`]) and what people do with them.
//!
//! Who sees what: admins every alert; members and operators of a tenant
//! the alerts whose subject belongs to their tenant (its volumes, apps and
//! membership), nothing about nodes, disks or colocd. An alert another
//! caller may not see reads as not found. Acknowledging and silencing:
//! admins, and the operators of the alert's tenant. Every change is
//! audited; firing and resolution are audited by the store as "system".

use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::alerts_server::Alerts;
use coloc_proto::domain::{InvalidInput, NodeName, TenantName, check_text};
use tonic::{Request, Response, Status};

use super::wire::shown;
use crate::auth::{self, Caller};
use crate::context::Ctx;
use crate::error::ApiResult;
use crate::store::{
    ALERTS_MAX_LIMIT, AlertAck, AlertFilter, AlertRecord, AlertSeverity, AlertSilence, AlertState,
    SubjectKind,
};

/// Longest acknowledgement or silence comment, in characters.
pub const ALERT_COMMENT_MAX_CHARS: usize = 500;
/// Longest silence.
pub const MAX_SILENCE_SECS: u32 = 30 * 86_400;

#[derive(Debug, Clone)]
pub struct AlertsApi(pub Ctx);

pub fn severity(s: AlertSeverity) -> pb::AlertSeverity {
    match s {
        AlertSeverity::Info => pb::AlertSeverity::Info,
        AlertSeverity::Warning => pb::AlertSeverity::Warning,
        AlertSeverity::Critical => pb::AlertSeverity::Critical,
    }
}

fn subject_kind(k: SubjectKind) -> pb::AlertSubjectKind {
    match k {
        SubjectKind::Node => pb::AlertSubjectKind::Node,
        SubjectKind::Disk => pb::AlertSubjectKind::Disk,
        SubjectKind::Pool => pb::AlertSubjectKind::Pool,
        SubjectKind::ThinPool => pb::AlertSubjectKind::ThinPool,
        SubjectKind::Volume => pb::AlertSubjectKind::Volume,
        SubjectKind::App => pb::AlertSubjectKind::App,
        SubjectKind::Unit => pb::AlertSubjectKind::Unit,
        SubjectKind::Filesystem => pb::AlertSubjectKind::Filesystem,
        SubjectKind::Sensor => pb::AlertSubjectKind::Sensor,
        SubjectKind::Certificate => pb::AlertSubjectKind::Certificate,
        SubjectKind::Tenant => pb::AlertSubjectKind::Tenant,
    }
}

/// An alert as the API shows it.
pub fn alert(a: AlertRecord) -> pb::Alert {
    let (acked_by, acked_unix, ack_comment) = a
        .ack
        .map(|k| (k.by, k.at_unix, k.comment))
        .unwrap_or_default();
    let (silenced_until_unix, silenced_by, silence_comment) = a
        .silence
        .map(|s| (s.until_unix, s.by, s.comment))
        .unwrap_or_default();
    pb::Alert {
        id: a.id,
        rule: a.rule,
        severity: severity(a.severity) as i32,
        subject: Some(pb::AlertSubject {
            kind: subject_kind(a.subject.kind) as i32,
            node: a.subject.node.map(|n| n.to_string()).unwrap_or_default(),
            name: a.subject.name,
            tenant: a.subject.tenant.map(|t| t.to_string()).unwrap_or_default(),
        }),
        state: match a.state {
            AlertState::Firing => pb::AlertState::Firing,
            AlertState::Resolved => pb::AlertState::Resolved,
        } as i32,
        summary: a.summary,
        started_unix: a.started_unix,
        ended_unix: a.ended_unix.unwrap_or(0),
        acked_by,
        acked_unix,
        ack_comment,
        silenced_until_unix,
        silenced_by,
        silence_comment,
    }
}

/// Reading an alert: admins, and the users of the tenant it belongs to.
fn require_alert_read(caller: &Caller, a: &AlertRecord) -> ApiResult<()> {
    let check = match &a.subject.tenant {
        _ if caller.is_admin() => Ok(()),
        Some(t) => auth::require_tenant_read(caller, t),
        None => auth::require_admin(caller, "an alert about the cooperative's hardware"),
    };
    auth::unseen("alert", a.id, check)
}

/// Acknowledging or silencing: admins, and the operators of its tenant.
/// A caller who may not even see it reads it as not found.
fn require_alert_change(caller: &Caller, a: &AlertRecord, what: &str) -> ApiResult<()> {
    require_alert_read(caller, a)?;
    match &a.subject.tenant {
        _ if caller.is_admin() => Ok(()),
        Some(t) => auth::require_tenant_operator(caller, t, what),
        None => auth::require_admin(caller, what),
    }
}

fn comment(value: &str, required: bool) -> Result<String, InvalidInput> {
    if required && value.trim().is_empty() {
        return Err(InvalidInput::field(
            "comment",
            "is required: say what is being done about it",
        ));
    }
    check_text("comment", value, ALERT_COMMENT_MAX_CHARS)?;
    Ok(value.to_string())
}

fn alert_id(id: u64) -> Result<u64, InvalidInput> {
    if id == 0 || i64::try_from(id).is_err() {
        return Err(InvalidInput::field("id", "no alert has this id"));
    }
    Ok(id)
}

#[tonic::async_trait]
impl Alerts for AlertsApi {
    async fn list_alerts(
        &self,
        req: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "alert.list",
            |r| format!("alerts tenant:{} node:{}", shown(&r.tenant), shown(&r.node)),
            async |caller, r, audit| {
                let node = match r.node.as_str() {
                    "" => None,
                    n => Some(NodeName::new(n)?),
                };
                let tenant = match r.tenant.as_str() {
                    "" => None,
                    t => Some(TenantName::new(t)?),
                };
                if r.limit > ALERTS_MAX_LIMIT {
                    return Err(InvalidInput::field(
                        "limit",
                        format!("at most {ALERTS_MAX_LIMIT}"),
                    )
                    .into());
                }
                audit.tenant = tenant.clone();
                let tenant = auth::listing_tenant(&caller, tenant)?;
                let alerts = ctx
                    .store
                    .list_alerts(AlertFilter {
                        include_resolved: r.include_resolved,
                        node,
                        tenant,
                        tenant_subjects_only: !caller.is_admin(),
                        limit: r.limit,
                    })
                    .await?;
                Ok(pb::ListAlertsResponse {
                    alerts: alerts.into_iter().map(alert).collect(),
                })
            },
        )
        .await
    }

    async fn get_alert(&self, req: Request<pb::AlertRef>) -> Result<Response<pb::Alert>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "alert.show",
            |r| format!("alert:{}", r.id),
            async |caller, r, audit| {
                let a = ctx.store.get_alert(alert_id(r.id)?).await?;
                audit.tenant = a.subject.tenant.clone();
                require_alert_read(&caller, &a)?;
                Ok(alert(a))
            },
        )
        .await
    }

    async fn ack_alert(
        &self,
        req: Request<pb::AckAlertRequest>,
    ) -> Result<Response<pb::Alert>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "alert.ack",
            |r| format!("alert:{}", r.id),
            async |caller, r, audit| {
                let id = alert_id(r.id)?;
                let comment = comment(&r.comment, true)?;
                let a = ctx.store.get_alert(id).await?;
                audit.tenant = a.subject.tenant.clone();
                audit.target = format!("alert:{id} {}", a.subject.describe());
                require_alert_change(&caller, &a, "acknowledge alerts")?;
                let a = ctx
                    .store
                    .ack_alert(
                        id,
                        AlertAck {
                            by: caller.actor(),
                            at_unix: ctx.clock.now(),
                            comment: comment.clone(),
                        },
                    )
                    .await?;
                audit.detail = format!("{} acknowledged: {comment}", a.rule);
                Ok(alert(a))
            },
        )
        .await
    }

    async fn silence_alert(
        &self,
        req: Request<pb::SilenceAlertRequest>,
    ) -> Result<Response<pb::Alert>, Status> {
        let ctx = &self.0;
        let action = if req.get_ref().duration_secs == 0 {
            "alert.unsilence"
        } else {
            "alert.silence"
        };
        ctx.mutation(
            req,
            action,
            |r| format!("alert:{}", r.id),
            async |caller, r, audit| {
                let id = alert_id(r.id)?;
                if r.duration_secs > MAX_SILENCE_SECS {
                    return Err(
                        InvalidInput::field("duration", "a silence lasts at most 30 days").into(),
                    );
                }
                // Optional: `coloc alert silence --for 2h` alone is enough.
                let comment = comment(&r.comment, false)?;
                let a = ctx.store.get_alert(id).await?;
                audit.tenant = a.subject.tenant.clone();
                audit.target = format!("alert:{id} {}", a.subject.describe());
                require_alert_change(&caller, &a, "silence alerts")?;
                let now = ctx.clock.now();
                let silence = (r.duration_secs > 0).then(|| AlertSilence {
                    until_unix: now + i64::from(r.duration_secs),
                    by: caller.actor(),
                    comment: comment.clone(),
                });
                let a = ctx.store.silence_alert(id, silence).await?;
                audit.detail = match &a.silence {
                    Some(s) => format!(
                        "{} silenced until {} ({} s){}{comment}",
                        a.rule,
                        crate::time::date_of(s.until_unix),
                        r.duration_secs,
                        if comment.is_empty() { "" } else { ": " },
                    ),
                    None => format!("{} silence lifted", a.rule),
                };
                Ok(alert(a))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_required_bounded_and_single_line() {
        assert!(comment("", true).is_err());
        assert!(comment("   ", true).is_err());
        assert_eq!(comment("", false).unwrap(), "");
        assert!(comment("replacing the disk", true).is_ok());
        assert!(comment("a\nforged line", true).is_err());
        assert!(comment(&"x".repeat(ALERT_COMMENT_MAX_CHARS + 1), true).is_err());
        assert!(alert_id(0).is_err());
        assert!(alert_id(u64::MAX).is_err());
    }
}

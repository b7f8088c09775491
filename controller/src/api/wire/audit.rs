//! The audit log request.

use coloc_proto::controller::v1 as pb;
use coloc_proto::domain::{InvalidInput, TenantName, Text};

use super::optional;
use crate::store::AuditFilter;
use crate::store::audit::AUDIT_MAX_LIMIT;

/// `ListAudit`: the store's filter; the handler narrows it to the
/// caller's tenant.
impl TryFrom<pb::ListAuditRequest> for AuditFilter {
    type Error = InvalidInput;
    fn try_from(r: pb::ListAuditRequest) -> Result<Self, InvalidInput> {
        let tenant = optional(&r.tenant, TenantName::new)?;
        if r.limit > AUDIT_MAX_LIMIT {
            return Err(InvalidInput::field(
                "limit",
                format!("at most {AUDIT_MAX_LIMIT}"),
            ));
        }
        let actor = optional(&r.actor, |a| Text::Actor.check(a).map(|()| a.to_owned()))?;
        Ok(AuditFilter {
            before: (r.before > 0).then_some(r.before),
            limit: r.limit,
            tenant,
            actor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::refused;

    #[test]
    fn audit_filters() {
        let f = AuditFilter::try_from(pb::ListAuditRequest {
            tenant: "asso-a".into(),
            actor: "user:alice".into(),
            limit: 0,
            before: 0,
        })
        .unwrap();
        assert_eq!(f.tenant.unwrap().as_str(), "asso-a");
        assert_eq!(f.actor.as_deref(), Some("user:alice"));
        assert_eq!((f.before, f.limit), (None, 0));
        let f = AuditFilter::try_from(pb::ListAuditRequest {
            before: 42,
            limit: AUDIT_MAX_LIMIT,
            ..Default::default()
        })
        .unwrap();
        assert_eq!((f.before, f.tenant, f.actor), (Some(42), None, None));
        for (bad, field) in [
            (
                pb::ListAuditRequest {
                    limit: AUDIT_MAX_LIMIT + 1,
                    ..Default::default()
                },
                "invalid limit",
            ),
            (
                pb::ListAuditRequest {
                    tenant: "Asso".into(),
                    ..Default::default()
                },
                "tenant name",
            ),
            (
                pb::ListAuditRequest {
                    actor: "user:a\nforged".into(),
                    ..Default::default()
                },
                "invalid actor",
            ),
            (
                pb::ListAuditRequest {
                    actor: "a".repeat(101),
                    ..Default::default()
                },
                "invalid actor",
            ),
        ] {
            refused(AuditFilter::try_from(bad), field);
        }
    }
}

//! The Health service (`coloc node health`, `coloc node scrub`): each
//! node's latest health report as colocd holds it, with its firing
//! alerts, and maintenance started on demand. Admins only: a node's
//! hardware belongs to the cooperative, not to a tenant.

use coloc_proto::agent::v1::{HealthReport, MaintenanceKind};
use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::health_server::Health;
use coloc_proto::domain::{InvalidInput, NodeName};
use coloc_proto::health::check_device_path;
use tonic::{Request, Response, Status};

use super::alerts::alert;
use super::wire::shown;
use crate::auth;
use crate::context::Ctx;
use crate::error::ApiError;
use crate::store::{ALERTS_MAX_LIMIT, AlertFilter};

#[derive(Debug, Clone)]
pub struct HealthApi(pub Ctx);

/// What a maintenance request names, checked against the node's latest
/// report: the pool or the device path the agent is sent.
pub fn maintenance_subject(
    report: Option<&HealthReport>,
    node: &NodeName,
    kind: MaintenanceKind,
    subject: &str,
) -> Result<String, ApiError> {
    if subject.is_empty() {
        return Err(InvalidInput::field("subject", "a pool or a disk is required").into());
    }
    if subject.len() > coloc_proto::health::MAX_TEXT_BYTES {
        return Err(InvalidInput::field("subject", "too long").into());
    }
    let no_report = || {
        ApiError::Conflict(format!(
            "node {node} has sent no health report yet: its pools and disks are not known"
        ))
    };
    match kind {
        MaintenanceKind::Scrub => {
            let report = report.ok_or_else(no_report)?;
            if report.zfs_pools.iter().any(|p| p.name == subject) {
                Ok(subject.to_string())
            } else {
                Err(ApiError::Store(crate::store::StoreError::NotFound {
                    kind: "ZFS pool in the node's latest health report",
                    name: shown(subject),
                }))
            }
        }
        MaintenanceKind::SmartShort | MaintenanceKind::SmartLong => {
            if subject.starts_with('/') {
                check_device_path(subject)
                    .map_err(|e| InvalidInput::field("subject", e.to_string()))?;
                return Ok(subject.to_string());
            }
            let report = report.ok_or_else(no_report)?;
            match report.disks.iter().find(|d| d.serial == subject) {
                Some(d) => {
                    check_device_path(&d.device)
                        .map_err(|e| InvalidInput::field("subject", e.to_string()))?;
                    Ok(d.device.clone())
                }
                None => Err(ApiError::Store(crate::store::StoreError::NotFound {
                    kind: "disk serial in the node's latest health report",
                    name: shown(subject),
                })),
            }
        }
        MaintenanceKind::Unspecified => {
            Err(InvalidInput::field("kind", "scrub, smart-short or smart-long").into())
        }
    }
}

#[tonic::async_trait]
impl Health for HealthApi {
    async fn get_node_health(
        &self,
        req: Request<pb::NodeHealthRequest>,
    ) -> Result<Response<pb::NodeHealth>, Status> {
        let ctx = &self.0;
        ctx.read(
            req,
            "node.health.show",
            |r| format!("node:{}", shown(&r.node)),
            async |caller, r, _| {
                auth::require_admin(&caller, "reading a node's health")?;
                let node = NodeName::new(r.node)?;
                ctx.store.get_node(&node).await?;
                let held = ctx.health.get(&node);
                let period = ctx.config.health.period();
                let alerts = ctx
                    .store
                    .list_alerts(AlertFilter {
                        node: Some(node.clone()),
                        limit: ALERTS_MAX_LIMIT,
                        ..AlertFilter::default()
                    })
                    .await?;
                Ok(pb::NodeHealth {
                    node: node.to_string(),
                    stale: held
                        .as_ref()
                        .is_none_or(|h| h.stale(ctx.clock.now(), period)),
                    received_unix: held.as_ref().map_or(0, |h| h.received_unix),
                    report: held.map(|h| (*h.report).clone()),
                    alerts: alerts.into_iter().map(alert).collect(),
                    period_secs: ctx.config.health.period_secs,
                })
            },
        )
        .await
    }

    async fn start_maintenance(
        &self,
        req: Request<pb::StartMaintenanceRequest>,
    ) -> Result<Response<pb::StartMaintenanceResponse>, Status> {
        let ctx = &self.0;
        ctx.mutation(
            req,
            "node.maintenance",
            |r| format!("node:{} {}", shown(&r.node), shown(&r.subject)),
            async |caller, r, audit| {
                auth::require_admin(&caller, "starting maintenance on a node")?;
                let node = NodeName::new(r.node)?;
                let kind = MaintenanceKind::try_from(r.kind)
                    .map_err(|_| InvalidInput::field("kind", "scrub, smart-short or smart-long"))?;
                ctx.store.get_node(&node).await?;
                let held = ctx.health.get(&node);
                let subject = maintenance_subject(
                    held.as_ref().map(|h| h.report.as_ref()),
                    &node,
                    kind,
                    &r.subject,
                )?;
                ctx.sessions.run_maintenance(&node, kind, &subject).await?;
                audit.detail = format!("{} of {subject} started", kind.as_str_name());
                Ok(pb::StartMaintenanceResponse { subject })
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use coloc_proto::agent::v1::{DiskHealth, ZfsPoolHealth};

    use super::*;

    #[test]
    fn maintenance_subjects_come_from_the_report_or_a_safe_path() {
        let node = NodeName::new("n1").unwrap();
        let report = HealthReport {
            zfs_pools: vec![ZfsPoolHealth {
                name: "tank".into(),
                ..ZfsPoolHealth::default()
            }],
            disks: vec![DiskHealth {
                device: "/dev/nvme0n1".into(),
                serial: "S1".into(),
                ..DiskHealth::default()
            }],
            ..HealthReport::default()
        };
        let r = Some(&report);
        assert_eq!(
            maintenance_subject(r, &node, MaintenanceKind::Scrub, "tank").unwrap(),
            "tank"
        );
        assert!(maintenance_subject(r, &node, MaintenanceKind::Scrub, "other").is_err());
        assert!(maintenance_subject(None, &node, MaintenanceKind::Scrub, "tank").is_err());
        assert_eq!(
            maintenance_subject(r, &node, MaintenanceKind::SmartShort, "S1").unwrap(),
            "/dev/nvme0n1"
        );
        assert_eq!(
            maintenance_subject(None, &node, MaintenanceKind::SmartLong, "/dev/sdb").unwrap(),
            "/dev/sdb"
        );
        for bad in ["/dev/../etc/passwd", "/dev/sda;reboot", "S2", ""] {
            assert!(
                maintenance_subject(r, &node, MaintenanceKind::SmartShort, bad).is_err(),
                "{bad}"
            );
        }
        assert!(maintenance_subject(r, &node, MaintenanceKind::Unspecified, "tank").is_err());
    }
}

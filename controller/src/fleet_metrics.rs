//! What `/metrics` shows of the fleet ([`crate::metrics::FleetSource`]),
//! read from colocd's own state at each render: the store's nodes,
//! volumes and instances, each node's latest health report (the
//! [`HealthBook`](crate::health::HealthBook), no copy: reports are shared
//! behind `Arc`), the firing alerts and the open sessions.
//!
//! Removed nodes and destroyed volumes are left out (they are records,
//! not parts of the fleet); instances that are gone too. A volume's use
//! is absent until its node reported it, never 0.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::alerts::ALL_RULES;
use crate::context::Ctx;
use crate::metrics::{
    AlertCount, AppMetrics, AppState, ColocdStatus, FleetSnapshot, FleetSource, NodeHealth,
    NodeMetrics, SnapshotError, VolumeMetrics,
};
use crate::store::{ConnState, InstanceFilter, VolumeFilter, VolumeLifecycle};

/// The severities every rule is listed with, so that a query for any of
/// them has a series (0 when nothing fires).
const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];

/// colocd's fleet, as `/metrics` renders it.
pub struct ColocdFleet {
    ctx: Ctx,
}

impl ColocdFleet {
    pub fn new(ctx: Ctx) -> ColocdFleet {
        ColocdFleet { ctx }
    }
}

#[async_trait]
impl FleetSource for ColocdFleet {
    async fn snapshot(&self) -> Result<FleetSnapshot, SnapshotError> {
        let store = &self.ctx.store;
        let health = self.ctx.health.snapshot();
        let nodes = store
            .list_nodes(None)
            .await
            .map_err(SnapshotError::new)?
            .into_iter()
            .filter(|n| n.removed.is_none())
            .map(|n| NodeMetrics {
                health: health.get(&n.name).map(|h| NodeHealth {
                    received_unix: h.received_unix,
                    report: h.report.clone(),
                }),
                name: n.name.to_string(),
                site: n.site.to_string(),
                connected: n.conn_state == ConnState::Connected,
                last_seen_unix: n.last_seen_unix,
                desired_generation: n.desired_generation,
                applied_generation: n.applied_generation,
            })
            .collect();

        let volumes = store
            .list_volumes(VolumeFilter {
                tenant: None,
                node: None,
                include_destroyed: false,
            })
            .await
            .map_err(SnapshotError::new)?
            .into_iter()
            .filter(|v| v.lifecycle != VolumeLifecycle::Destroyed && !v.node_removed)
            .map(|v| VolumeMetrics {
                used_bytes: v.observed.as_ref().map(|o| o.used_bytes),
                tenant: v.tenant.to_string(),
                node: v.node.to_string(),
                volume: v.name.to_string(),
                size_bytes: v.size_bytes,
            })
            .collect();

        let apps = store
            .list_instances(InstanceFilter {
                tenant: None,
                node: None,
            })
            .await
            .map_err(SnapshotError::new)?
            .into_iter()
            .filter(|i| !i.gone && !i.node_removed)
            .map(|i| {
                let observed = i.observed.as_ref();
                AppMetrics {
                    tenant: i.tenant.to_string(),
                    app: i.app.to_string(),
                    node: i.node.to_string(),
                    state: observed.map_or(AppState::Unknown, |o| {
                        AppState::from_active_state(&o.active_state)
                    }),
                    healthy: observed.map(|o| o.healthy),
                    memory_bytes: observed
                        .and_then(|o| (o.memory_bytes > 0).then_some(o.memory_bytes)),
                    restarts: observed.map_or(0, |o| o.restarts),
                }
            })
            .collect();

        let mut counts: BTreeMap<(String, String), u64> = ALL_RULES
            .iter()
            .flat_map(|rule| SEVERITIES.map(|s| ((rule.to_string(), s.to_string()), 0)))
            .collect();
        for alert in store.firing_alerts().await.map_err(SnapshotError::new)? {
            *counts
                .entry((alert.rule.clone(), alert.severity.as_str().to_string()))
                .or_default() += 1;
        }
        let alerts = counts
            .into_iter()
            .map(|((rule, severity), count)| AlertCount {
                rule,
                severity,
                count,
            })
            .collect();

        Ok(FleetSnapshot {
            nodes,
            volumes,
            apps,
            alerts,
            colocd: ColocdStatus {
                sessions: self.ctx.sessions.connected_count(),
            },
        })
    }
}

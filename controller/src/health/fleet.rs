//! The fleet as the metrics endpoint renders it ([`FleetSource`]): the
//! store's nodes, volumes and app instances, each node's latest health
//! report from the [`HealthBook`](super::HealthBook), the open sessions,
//! and the firing alerts counted per rule and severity (every rule
//! listed, with 0 when none fires).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use crate::alerts::RULES;
use crate::context::Ctx;
use crate::metrics::{
    AlertCount, AppMetrics, AppState, ColocdStatus, FleetSnapshot, FleetSource, NodeHealth,
    NodeMetrics, SnapshotError, VolumeMetrics,
};
use crate::store::{AlertSeverity, InstanceFilter, VolumeFilter, VolumeLifecycle};

/// colocd's own records, for `/metrics`.
#[derive(Debug, Clone)]
pub struct CtxFleet(pub Ctx);

#[async_trait]
impl FleetSource for CtxFleet {
    async fn snapshot(&self) -> Result<FleetSnapshot, SnapshotError> {
        let ctx = &self.0;
        let connected = ctx.sessions.connected_nodes();
        let reports = ctx.health.snapshot();
        let nodes = ctx
            .store
            .list_nodes(None)
            .await
            .map_err(SnapshotError::new)?;
        let volumes = ctx
            .store
            .list_volumes(VolumeFilter::default())
            .await
            .map_err(SnapshotError::new)?;
        let instances = ctx
            .store
            .list_instances(InstanceFilter::default())
            .await
            .map_err(SnapshotError::new)?;
        let firing = ctx
            .store
            .firing_alerts()
            .await
            .map_err(SnapshotError::new)?;

        // Each volume's use, from its node's latest report.
        let used: HashMap<&str, u64> = reports
            .values()
            .flat_map(|h| h.report.filesystems.iter())
            .filter(|f| f.unknown.is_empty() && !f.volume_id.is_empty())
            .map(|f| (f.volume_id.as_str(), f.used_bytes))
            .collect();
        let volumes = volumes
            .iter()
            .filter(|v| v.lifecycle == VolumeLifecycle::Active && !v.node_removed)
            .map(|v| VolumeMetrics {
                tenant: v.tenant.to_string(),
                node: v.node.to_string(),
                volume: v.name.to_string(),
                size_bytes: v.size_bytes,
                used_bytes: used.get(v.id.as_str()).copied(),
            })
            .collect();
        let apps = instances
            .iter()
            .filter(|i| !i.gone && !i.node_removed)
            .map(|i| {
                let o = i.observed.as_ref();
                AppMetrics {
                    tenant: i.tenant.to_string(),
                    app: i.app.to_string(),
                    node: i.node.to_string(),
                    state: o.map_or(AppState::Unknown, |o| {
                        AppState::from_active_state(&o.active_state)
                    }),
                    // A probe has run once the agent says anything of it.
                    healthy: o
                        .filter(|o| o.healthy || !o.health_detail.is_empty())
                        .map(|o| o.healthy),
                    memory_bytes: o.map(|o| o.memory_bytes).filter(|m| *m > 0),
                    restarts: o.map_or(0, |o| o.restarts),
                }
            })
            .collect();
        let nodes = nodes
            .into_iter()
            .filter(|n| n.removed.is_none())
            .map(|n| NodeMetrics {
                connected: connected.contains(&n.name),
                health: reports.get(&n.name).map(|h| NodeHealth {
                    received_unix: h.received_unix,
                    report: h.report.clone(),
                }),
                name: n.name.to_string(),
                site: n.site.to_string(),
                last_seen_unix: n.last_seen_unix,
                desired_generation: n.desired_generation,
                applied_generation: n.applied_generation,
            })
            .collect();
        Ok(FleetSnapshot {
            nodes,
            volumes,
            apps,
            alerts: alert_counts(firing.iter().map(|a| (a.rule.as_str(), a.severity))),
            colocd: ColocdStatus {
                sessions: connected.len(),
            },
        })
    }
}

/// Firing alerts per rule and severity: every (rule, severity) a rule can
/// raise, 0 when none fires, and whatever else is firing (a rule of an
/// older colocd still in the table).
pub fn alert_counts<'a>(
    firing: impl IntoIterator<Item = (&'a str, AlertSeverity)>,
) -> Vec<AlertCount> {
    let mut counts: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    for (rule, severities) in RULES {
        for s in *severities {
            counts.insert((rule.to_string(), s.as_str()), 0);
        }
    }
    for (rule, severity) in firing {
        *counts
            .entry((rule.to_string(), severity.as_str()))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((rule, severity), count)| AlertCount {
            rule,
            severity: severity.to_string(),
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_its_series_and_firing_ones_are_counted() {
        let counts = alert_counts([
            ("disk-sectors", AlertSeverity::Warning),
            ("disk-sectors", AlertSeverity::Warning),
            ("pool-capacity", AlertSeverity::Critical),
        ]);
        let get = |rule: &str, severity: &str| {
            counts
                .iter()
                .find(|c| c.rule == rule && c.severity == severity)
                .map(|c| c.count)
        };
        assert_eq!(get("disk-sectors", "warning"), Some(2));
        assert_eq!(get("pool-capacity", "critical"), Some(1));
        assert_eq!(get("pool-capacity", "warning"), Some(0));
        assert_eq!(get("node-unreachable", "critical"), Some(0));
        assert_eq!(get("reboot-required", "info"), Some(0));
        let series: usize = RULES.iter().map(|(_, s)| s.len()).sum();
        assert_eq!(counts.len(), series);
    }
}

//! Rules about what tenants hold, which their own members and operators
//! see: a volume filling up, an app failed or restarting in a loop.

use coloc_proto::agent::v1::HealthReport;
use coloc_proto::domain::NodeName;

use super::{Condition, Inputs, condition};
use crate::config::AlertsConfig;
use crate::store::{AlertSeverity, AlertSubject, InstanceState, SubjectKind, VolumeRecord};

pub const VOLUME_FULL: &str = "volume-full";
pub const APP_FAILED: &str = "app-failed";
pub const APP_RESTART_LOOP: &str = "app-restart-loop";

/// `volume-full`: a volume's use against its size (the size the tenant
/// asked for; the filesystem's when the record has none).
pub fn volumes(
    node: &NodeName,
    r: &HealthReport,
    volumes: &[VolumeRecord],
    t: &AlertsConfig,
) -> Vec<Condition> {
    let mut out = Vec::new();
    for f in r
        .filesystems
        .iter()
        .filter(|f| f.unknown.is_empty() && !f.volume_id.is_empty())
    {
        let Some(v) = volumes
            .iter()
            .find(|v| v.id.as_str() == f.volume_id && &v.node == node)
        else {
            continue;
        };
        let size = if v.size_bytes > 0 {
            v.size_bytes
        } else {
            f.size_bytes
        };
        if size == 0 {
            continue;
        }
        let percent = f.used_bytes as f64 * 100.0 / size as f64;
        if percent >= f64::from(t.volume_percent) {
            out.push(condition(
                VOLUME_FULL,
                AlertSeverity::Warning,
                AlertSubject {
                    kind: SubjectKind::Volume,
                    node: Some(node.clone()),
                    name: v.name.to_string(),
                    tenant: Some(v.tenant.clone()),
                },
                format!(
                    "volume {} of {} on {node}: {percent:.0} % of its {} used",
                    v.name,
                    v.tenant,
                    coloc_proto::storage::format_size(size)
                ),
            ));
        }
    }
    out
}

/// `app-failed` and `app-restart-loop`, for instances meant to run.
pub fn apps(inputs: &Inputs<'_>) -> Vec<Condition> {
    let mut out = Vec::new();
    for i in inputs
        .instances
        .iter()
        .filter(|i| !i.gone && !i.node_removed && i.state == InstanceState::Running)
    {
        let subject = AlertSubject {
            kind: SubjectKind::App,
            node: Some(i.node.clone()),
            name: i.app.to_string(),
            tenant: Some(i.tenant.clone()),
        };
        if let Some(o) = i.observed.as_ref().filter(|o| o.active_state == "failed") {
            let why = if o.error.is_empty() {
                o.sub_state.clone()
            } else {
                o.error.clone()
            };
            out.push(condition(
                APP_FAILED,
                AlertSeverity::Critical,
                subject.clone(),
                format!("app {}/{} failed on {}: {why}", i.tenant, i.app, i.node),
            ));
        }
        let key = (i.node.clone(), i.tenant.clone(), i.app.clone());
        if let Some(g) = inputs.restarts.get(&key)
            && g.grown >= inputs.thresholds.app_restarts
        {
            out.push(condition(
                APP_RESTART_LOOP,
                AlertSeverity::Warning,
                subject,
                format!(
                    "app {}/{} restarted {} times within {} s on {}",
                    i.tenant, i.app, g.grown, inputs.thresholds.app_restart_window_secs, i.node
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use coloc_proto::agent::v1::{AppStatus, FilesystemUse};

    use super::*;
    use crate::alerts::RestartGrowth;
    use crate::alerts::testing::{inputs_for, instance, node, node_record, rules, volume};

    #[test]
    fn a_volume_over_90_percent_of_its_size_names_its_tenant() {
        let v = volume("asso", "data", "n1", 1000);
        let report = |used| HealthReport {
            filesystems: vec![FilesystemUse {
                mount_path: "/srv/tenants/asso/data".into(),
                volume_id: v.id.to_string(),
                size_bytes: 2000,
                used_bytes: used,
                available_bytes: 2000 - used,
                unknown: String::new(),
            }],
            ..HealthReport::default()
        };
        let t = AlertsConfig::default();
        assert!(volumes(&node("n1"), &report(899), std::slice::from_ref(&v), &t).is_empty());
        let c = volumes(&node("n1"), &report(900), std::slice::from_ref(&v), &t);
        assert_eq!(rules(&c), vec![VOLUME_FULL]);
        assert_eq!(c[0].subject.tenant.as_ref().unwrap().as_str(), "asso");
        assert_eq!(c[0].subject.name, "data");
        // A filesystem of a volume on another node, or unknown: nothing.
        assert!(volumes(&node("n2"), &report(990), std::slice::from_ref(&v), &t).is_empty());
    }

    #[test]
    fn failed_and_looping_apps() {
        let t = AlertsConfig::default();
        let nodes = vec![node_record("n1")];
        let connected = HashSet::new();
        let reports = HashMap::new();
        let mut failed = instance("asso", "wiki", "n1");
        failed.observed = Some(AppStatus {
            active_state: "failed".into(),
            sub_state: "failed".into(),
            error: "exit code 1".into(),
            ..AppStatus::default()
        });
        let mut stopped = failed.clone();
        stopped.app = crate::store::AppName::new("pad").unwrap();
        stopped.state = InstanceState::Stopped;
        let looping = instance("asso", "chat", "n1");
        let instances = vec![failed, stopped, looping.clone()];
        let mut restarts = HashMap::new();
        restarts.insert(
            (
                looping.node.clone(),
                looping.tenant.clone(),
                looping.app.clone(),
            ),
            RestartGrowth {
                grown: 5,
                covers_window: true,
            },
        );
        let mut inputs = inputs_for(1000, &t, &nodes, &connected, &reports);
        inputs.instances = &instances;
        inputs.restarts = &restarts;
        let c = apps(&inputs);
        assert_eq!(rules(&c), vec![APP_FAILED, APP_RESTART_LOOP]);
        assert!(c[0].summary.contains("exit code 1"));
        assert_eq!(c[1].subject.name, "chat");
        let mut fewer = restarts.clone();
        fewer.values_mut().for_each(|g| g.grown = 4);
        inputs.restarts = &fewer;
        assert_eq!(rules(&apps(&inputs)), vec![APP_FAILED]);
    }
}

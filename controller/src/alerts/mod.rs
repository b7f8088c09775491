//! colocd's alert rules (docs/HEALTH.md, "Alert rules"): pure functions
//! from what colocd knows now (each node's latest health report, the
//! store's nodes, volumes, instances and tenants, the certificates) to the
//! conditions that hold now ([`evaluate`]), and the one rule that decides
//! whether a firing alert whose condition is no longer seen may resolve
//! ([`may_resolve`]): never because the data that raised it is missing.
//!
//! One module per family: [`disks`] (SMART), [`pools`] (ZFS pools and
//! scrubs, LVM thin pools), [`node`] (reachability, root filesystem,
//! units, clock, reboot, temperatures, unknown parts), [`tenants`]
//! (volumes and apps, with the [`restarts`] history), [`expiry`]
//! (certificates and memberships). The
//! `alerts` background task runs them and writes the difference with the
//! alerts table; nothing here reads a clock or the store, except
//! [`outbox`], the store's alert events as the notifier reads them.

pub mod disks;
pub mod expiry;
pub mod node;
pub mod outbox;
pub mod pools;
pub mod restarts;
pub mod tenants;

use std::collections::{HashMap, HashSet};

use coloc_proto::agent::v1::HealthReport;
use coloc_proto::domain::{NodeName, TenantName};

use crate::config::AlertsConfig;
use crate::health::NodeHealth;
use crate::store::{
    AlertRecord, AlertSeverity, AlertSubject, AppName, InstanceRecord, NodeRecord, SubjectKind,
    TenantRecord, UnixSecs, VolumeRecord,
};

/// Every rule colocd evaluates, with the severities it can raise (for the
/// metrics endpoint, which writes a zero for each so that a query on a
/// rule always finds its series; and for docs/HEALTH.md's table).
pub const RULES: &[(&str, &[AlertSeverity])] = {
    use AlertSeverity::{Critical, Info, Warning};
    &[
        (node::UNREACHABLE, &[Critical]),
        (disks::SMART_FAILING, &[Critical]),
        (disks::NVME_CRITICAL_WARNING, &[Critical]),
        (disks::SECTORS, &[Warning]),
        (disks::CRC_ERRORS, &[Warning]),
        (disks::TEMPERATURE, &[Warning]),
        (disks::SPARE_LOW, &[Critical]),
        (disks::WEAROUT, &[Warning]),
        (pools::POOL_DEGRADED, &[Warning, Critical]),
        (pools::POOL_ERRORS, &[Warning, Critical]),
        (pools::SCRUB_OVERDUE, &[Warning]),
        (pools::SCRUB_ERRORS, &[Warning]),
        (pools::POOL_CAPACITY, &[Warning, Critical]),
        (pools::THIN_POOL_DATA, &[Warning, Critical]),
        (pools::THIN_POOL_METADATA, &[Warning, Critical]),
        (node::FILESYSTEM_FULL, &[Critical]),
        (tenants::VOLUME_FULL, &[Warning]),
        (tenants::APP_FAILED, &[Critical]),
        (tenants::APP_RESTART_LOOP, &[Warning]),
        (node::UNITS_FAILED, &[Warning]),
        (node::CLOCK_UNSYNCHRONISED, &[Warning]),
        (node::REBOOT_REQUIRED, &[Info]),
        (node::TEMPERATURE, &[Warning, Critical]),
        (node::HEALTH_UNKNOWN, &[Warning]),
        (expiry::CERTIFICATE, &[Warning, Critical]),
        (expiry::MEMBERSHIP, &[Warning, Critical]),
    ]
};

/// A condition a rule sees now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub rule: &'static str,
    pub severity: AlertSeverity,
    pub subject: AlertSubject,
    pub summary: String,
}

/// What identifies an alert for deduplication: its rule and subject.
pub type AlertKey = (String, SubjectKind, Option<NodeName>, String);

impl Condition {
    pub fn key(&self) -> AlertKey {
        (
            self.rule.to_string(),
            self.subject.kind,
            self.subject.node.clone(),
            self.subject.name.clone(),
        )
    }
}

pub fn key_of(a: &AlertRecord) -> AlertKey {
    (
        a.rule.clone(),
        a.subject.kind,
        a.subject.node.clone(),
        a.subject.name.clone(),
    )
}

/// A subject on a node, without a tenant.
pub(crate) fn on_node(node: &NodeName, kind: SubjectKind, name: impl Into<String>) -> AlertSubject {
    AlertSubject {
        kind,
        node: Some(node.clone()),
        name: name.into(),
        tenant: None,
    }
}

pub(crate) fn condition(
    rule: &'static str,
    severity: AlertSeverity,
    subject: AlertSubject,
    summary: String,
) -> Condition {
    Condition {
        rule,
        severity,
        subject,
        summary: one_line(&summary),
    }
}

/// Longest summary, in characters.
pub const SUMMARY_MAX_CHARS: usize = 500;

/// A summary goes to e-mails, webhooks and terminals: the reasons an agent
/// gives (a tool's stderr) may hold newlines or escapes, which become
/// spaces here, and a long one is cut.
pub fn one_line(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(SUMMARY_MAX_CHARS)
        .collect();
    if text.chars().count() > SUMMARY_MAX_CHARS {
        out.push('…');
    }
    out
}

/// An app instance, for the restart history.
pub type InstanceKey = (NodeName, TenantName, AppName);

/// What the `alerts` task knows of an instance's restarts within the
/// window: how much the counter grew, and whether the history already
/// covers the whole window (before that, a quiet history proves nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestartGrowth {
    pub grown: u32,
    pub covers_window: bool,
}

/// Everything the rules read, gathered by the `alerts` task.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub now: UnixSecs,
    /// The health period agents were given, in seconds.
    pub period_secs: i64,
    /// None when scrubs are off.
    pub scrub_period_days: Option<u32>,
    pub thresholds: &'a AlertsConfig,
    pub nodes: &'a [NodeRecord],
    /// Nodes with an open session now.
    pub connected: &'a HashSet<NodeName>,
    pub reports: &'a HashMap<NodeName, NodeHealth>,
    pub volumes: &'a [VolumeRecord],
    pub instances: &'a [InstanceRecord],
    pub restarts: &'a HashMap<InstanceKey, RestartGrowth>,
    pub tenants: &'a [TenantRecord],
    /// When colocd's own server certificate ends.
    pub server_cert_not_after: UnixSecs,
}

impl Inputs<'_> {
    fn live_nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.iter().filter(|n| n.removed.is_none())
    }

    /// A node's report, when it has one that is not older than two
    /// periods.
    fn fresh_report(&self, node: &NodeName) -> Option<&HealthReport> {
        self.reports
            .get(node)
            .filter(|h| !h.stale(self.now, self.period_secs))
            .map(|h| h.report.as_ref())
    }
}

/// Every condition that holds now, each subject once per rule.
pub fn evaluate(inputs: &Inputs<'_>) -> Vec<Condition> {
    let mut out = Vec::new();
    for n in inputs.live_nodes() {
        out.extend(node::unreachable(inputs, n));
        // A silent node's last report still stands: its conditions stay
        // (they are what was last known), and its alerts too.
        if let Some(h) = inputs.reports.get(&n.name) {
            let r = h.report.as_ref();
            out.extend(disks::evaluate(&n.name, r, inputs.thresholds));
            out.extend(pools::evaluate(
                &n.name,
                r,
                inputs.thresholds,
                inputs.scrub_period_days,
                inputs.now,
            ));
            out.extend(node::evaluate(&n.name, r, inputs.thresholds));
            out.extend(tenants::volumes(
                &n.name,
                r,
                inputs.volumes,
                inputs.thresholds,
            ));
        }
        out.extend(expiry::node_certificate(n, inputs.now, inputs.thresholds));
    }
    out.extend(tenants::apps(inputs));
    out.extend(expiry::server_certificate(
        inputs.server_cert_not_after,
        inputs.now,
        inputs.thresholds,
    ));
    out.extend(
        inputs
            .tenants
            .iter()
            .filter_map(|t| expiry::membership(t, inputs.now, inputs.thresholds)),
    );
    dedup(out)
}

/// One condition per rule and subject, the most severe kept.
fn dedup(mut conditions: Vec<Condition>) -> Vec<Condition> {
    conditions.sort_by(|a, b| a.key().cmp(&b.key()).then(b.severity.cmp(&a.severity)));
    conditions.dedup_by(|later, first| later.key() == first.key());
    conditions
}

/// The health source a rule reads (HealthReport.unobserved names them).
fn source_of(rule: &str) -> Option<&'static str> {
    Some(match rule {
        r if r.starts_with("disk-") => "disks",
        "pool-degraded" | "pool-errors" | "scrub-overdue" | "scrub-errors" | "pool-capacity" => {
            "zfs"
        }
        "thin-pool-data" | "thin-pool-metadata" => "lvm",
        "filesystem-full" | "volume-full" => "filesystems",
        "units-failed" => "units",
        "clock-unsynchronised" => "clock",
        "reboot-required" => "reboot",
        "temperature" => "temperatures",
        _ => return None,
    })
}

/// Whether a firing alert whose condition is not seen now may resolve: only
/// when what raised it was observed again and found fine. While its node is
/// silent (no report for two periods, or no session for app rules), its
/// source unobserved, or its subject reported unknown, it stays firing.
pub fn may_resolve(inputs: &Inputs<'_>, alert: &AlertRecord) -> bool {
    let rule = alert.rule.as_str();
    match rule {
        // Read from the store and the certificates, always known.
        node::UNREACHABLE | expiry::CERTIFICATE | expiry::MEMBERSHIP => return true,
        _ => {}
    }
    let Some(node) = &alert.subject.node else {
        return true;
    };
    match inputs.nodes.iter().find(|n| &n.name == node) {
        // The node was removed: nothing of it is watched any more.
        None => return true,
        Some(n) if n.removed.is_some() => return true,
        Some(_) => {}
    }
    match rule {
        tenants::APP_FAILED => return inputs.connected.contains(node),
        tenants::APP_RESTART_LOOP => {
            let Some(tenant) = &alert.subject.tenant else {
                return true;
            };
            let Ok(app) = AppName::new(alert.subject.name.clone()) else {
                return true;
            };
            return inputs.connected.contains(node)
                && inputs
                    .restarts
                    .get(&(node.clone(), tenant.clone(), app))
                    .is_none_or(|g| g.covers_window);
        }
        _ => {}
    }
    let Some(report) = inputs.fresh_report(node) else {
        return false;
    };
    if rule == node::HEALTH_UNKNOWN {
        return true;
    }
    if let Some(source) = source_of(rule)
        && report.unobserved.iter().any(|u| u.source == source)
    {
        return false;
    }
    !node::subject_unknown(report, inputs.volumes, rule, &alert.subject)
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

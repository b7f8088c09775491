//! `alerts`: runs colocd's alert rules ([`crate::alerts`]) over each
//! node's latest health report and the store, and writes the difference
//! with the alerts table: a condition without a firing alert fires one, a
//! firing alert whose condition is gone resolves (only when
//! [`crate::alerts::may_resolve`] says what raised it was observed again),
//! a changed severity is updated in place. Each firing and resolution is
//! audited and put in the notifier's outbox by the store, in the same
//! transaction.
//!
//! The task runs every second but evaluates only when a health report
//! arrived since its last pass, or every [`EVALUATE_EVERY`] otherwise
//! (reachability, certificates and memberships change with time alone).
//!
//! A pass reads the whole fleet. With thousands of nodes, reports arrive
//! every second, so the task also waits [`BUDGET_FACTOR`] times as long as
//! its last pass took before the next one: evaluating stays under about a
//! tenth of a core whatever the fleet's size, and an alert is late by
//! that wait at most (seconds, against a health period of a minute).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::driver::{BackgroundTask, TaskError};
use super::summary::counted;
use crate::alerts::restarts::RestartHistory;
use crate::alerts::{Inputs, evaluate, key_of, may_resolve};
use crate::context::Ctx;
use crate::store::{AlertChanges, InstanceFilter, NewAlert, VolumeFilter};

/// Longest time between two evaluations when no report arrives.
pub(super) const EVALUATE_EVERY: Duration = Duration::from_secs(10);

/// The wait between two passes is at least this many times the last
/// pass's duration.
pub(super) const BUDGET_FACTOR: u32 = 10;

pub(super) struct Alerts {
    ctx: Ctx,
    last: Option<Instant>,
    /// How long the last pass took.
    cost: Duration,
    restarts: RestartHistory,
}

impl Alerts {
    pub(super) fn new(ctx: Ctx) -> Self {
        Self {
            ctx,
            last: None,
            cost: Duration::ZERO,
            restarts: RestartHistory::default(),
        }
    }
}

#[async_trait::async_trait]
impl BackgroundTask for Alerts {
    async fn activate(&mut self) -> Result<String, TaskError> {
        let arrived = self.ctx.health.take_arrived();
        if !arrived && self.last.is_some_and(|t| t.elapsed() < EVALUATE_EVERY) {
            return Ok("nothing new since the last evaluation".to_string());
        }
        if self
            .last
            .is_some_and(|t| t.elapsed() < self.cost * BUDGET_FACTOR)
        {
            // Kept for the next run.
            self.ctx.health.poke();
            return Ok("waiting: the last evaluation was recent and long".to_string());
        }
        let started = Instant::now();
        self.last = Some(started);
        let outcome = self.evaluate().await;
        self.cost = started.elapsed();
        outcome
    }
}

impl Alerts {
    async fn evaluate(&mut self) -> Result<String, TaskError> {
        let ctx = &self.ctx;
        let store = &ctx.store;
        let now = ctx.clock.now();
        // Connections first: a node seen connected here and gone in the
        // store read below is the safe side (not yet unreachable).
        let connected: HashSet<_> = ctx.sessions.connected_nodes();
        let nodes = store
            .list_nodes(None)
            .await
            .map_err(TaskError::store("list nodes"))?;
        let volumes = store
            .list_volumes(VolumeFilter::default())
            .await
            .map_err(TaskError::store("list volumes"))?;
        let instances = store
            .list_instances(InstanceFilter::default())
            .await
            .map_err(TaskError::store("list app instances"))?;
        let tenants = store
            .list_tenants()
            .await
            .map_err(TaskError::store("list tenants"))?;
        let firing = store
            .firing_alerts()
            .await
            .map_err(TaskError::store("read firing alerts"))?;
        let reports = ctx.health.snapshot();
        let t = &ctx.config.alerts;
        let restarts = self.restarts.observe(
            instances.iter().filter(|i| !i.gone).filter_map(|i| {
                let o = i.observed.as_ref()?;
                Some((
                    (i.node.clone(), i.tenant.clone(), i.app.clone()),
                    o.restarts,
                ))
            }),
            now,
            i64::from(t.app_restart_window_secs),
        );
        let policy = &ctx.config.health;
        let inputs = Inputs {
            now,
            period_secs: policy.period(),
            scrub_period_days: (policy.scrub_period_days > 0).then_some(policy.scrub_period_days),
            thresholds: t,
            nodes: &nodes,
            connected: &connected,
            reports: &reports,
            volumes: &volumes,
            instances: &instances,
            restarts: &restarts,
            tenants: &tenants,
            server_cert_not_after: ctx.server_cert.info().not_after_unix,
        };
        let conditions = evaluate(&inputs);
        let by_key: HashMap<_, _> = firing.iter().map(|a| (key_of(a), a)).collect();
        let mut changes = AlertChanges::default();
        let mut seen = HashSet::new();
        for c in conditions {
            let key = c.key();
            match by_key.get(&key) {
                None => changes.fire.push(NewAlert {
                    rule: c.rule.to_string(),
                    severity: c.severity,
                    subject: c.subject,
                    summary: c.summary,
                }),
                Some(a) if a.severity != c.severity => {
                    changes.update.push((a.id, c.severity, c.summary))
                }
                Some(_) => {}
            }
            seen.insert(key);
        }
        for a in &firing {
            if !seen.contains(&key_of(a)) && may_resolve(&inputs, a) {
                changes.resolve.push(a.id);
            }
        }
        if changes.is_empty() {
            return Ok(format!("{} alerts firing, no change", firing.len()));
        }
        let applied = store
            .apply_alert_changes(changes, now)
            .await
            .map_err(TaskError::store("write alert changes"))?;
        for a in &applied.fired {
            tracing::warn!(alert = a.id, rule = %a.rule, severity = a.severity.as_str(), subject = %a.subject.describe(), summary = %a.summary, "alert firing");
        }
        for a in &applied.resolved {
            tracing::info!(alert = a.id, rule = %a.rule, subject = %a.subject.describe(), "alert resolved");
        }
        let name = |a: &crate::store::AlertRecord| format!("{} {}", a.rule, a.subject.describe());
        let fired: Vec<String> = applied.fired.iter().map(name).collect();
        let resolved: Vec<String> = applied.resolved.iter().map(name).collect();
        let mut parts = Vec::new();
        if !fired.is_empty() {
            parts.push(format!("fired {}", counted(&fired, "alert", "alerts")));
        }
        if !resolved.is_empty() {
            parts.push(format!(
                "resolved {}",
                counted(&resolved, "alert", "alerts")
            ));
        }
        if applied.updated > 0 {
            parts.push(format!("{} severities changed", applied.updated));
        }
        Ok(parts.join("; "))
    }
}

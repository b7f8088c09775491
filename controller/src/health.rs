//! Each node's health as colocd holds it: the latest accepted report and
//! when it arrived, in memory ([`HealthBook`]), written to the store in
//! batches by the `health-flush` task and read back when colocd starts,
//! so that a restart keeps the last known health.
//!
//! A report is checked before it is kept ([`check_report`]): the bounds of
//! `coloc_proto::health` and no control character in any name (a name
//! ends up in alerts, logs, e-mails and terminals). A refused report
//! changes nothing; the previous one stays. The book decides nothing
//! about alerts: it tells the `alerts` task that something arrived.
//!
//! [`fleet`] hands the metrics endpoint the fleet as colocd knows it.

pub mod fleet;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use coloc_proto::agent::v1::HealthReport;
use coloc_proto::domain::NodeName;
use coloc_proto::health::ReportRefused;

use crate::store::{StoredHealth, UnixSecs};

/// A refused report is audited at most once per node this often (a broken
/// or hostile agent sends one every period).
pub const REFUSAL_AUDIT_INTERVAL_SECS: i64 = 3600;

/// A node's latest accepted report.
#[derive(Debug, Clone)]
pub struct NodeHealth {
    pub report: Arc<HealthReport>,
    pub received_unix: UnixSecs,
}

impl NodeHealth {
    /// Older than two health periods: the node is silent, what it says
    /// may no longer hold.
    pub fn stale(&self, now: UnixSecs, period_secs: i64) -> bool {
        self.received_unix < now.saturating_sub(2 * period_secs)
    }
}

#[derive(Debug, Default)]
pub struct HealthBook {
    latest: Mutex<HashMap<NodeName, NodeHealth>>,
    /// Nodes whose report changed since the last flush.
    unsaved: Mutex<HashSet<NodeName>>,
    /// When a refusal was last audited, per node.
    refusals: Mutex<HashMap<NodeName, UnixSecs>>,
    /// A report arrived (or a session opened, closed or went unreachable)
    /// since the `alerts` task last looked.
    arrived: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps: still consistent after a panic elsewhere.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HealthBook {
    /// Fills the book with what the store kept (at start).
    pub fn restore(&self, stored: Vec<StoredHealth>) {
        let mut latest = lock(&self.latest);
        for s in stored {
            latest.insert(
                s.node,
                NodeHealth {
                    report: s.report,
                    received_unix: s.received_unix,
                },
            );
        }
    }

    /// Keeps `report` as the node's latest (it was checked).
    pub fn accept(&self, node: &NodeName, report: HealthReport, now: UnixSecs) {
        lock(&self.latest).insert(
            node.clone(),
            NodeHealth {
                report: Arc::new(report),
                received_unix: now,
            },
        );
        lock(&self.unsaved).insert(node.clone());
        self.arrived.store(true, Ordering::Release);
    }

    pub fn get(&self, node: &NodeName) -> Option<NodeHealth> {
        lock(&self.latest).get(node).cloned()
    }

    /// Every node's latest report (the reports are shared, not copied).
    pub fn snapshot(&self) -> HashMap<NodeName, NodeHealth> {
        lock(&self.latest).clone()
    }

    /// The reports changed since the last call, for the store.
    pub fn take_unsaved(&self) -> Vec<StoredHealth> {
        let nodes = std::mem::take(&mut *lock(&self.unsaved));
        let latest = lock(&self.latest);
        nodes
            .into_iter()
            .filter_map(|node| {
                let h = latest.get(&node)?;
                Some(StoredHealth {
                    received_unix: h.received_unix,
                    report: Arc::clone(&h.report),
                    node,
                })
            })
            .collect()
    }

    /// Puts back nodes whose write failed, unless a newer report is
    /// already waiting (it is in the set anyway).
    pub fn unsaved_again(&self, nodes: impl IntoIterator<Item = NodeName>) {
        lock(&self.unsaved).extend(nodes);
    }

    /// Asks the `alerts` task to evaluate at its next run: something its
    /// rules read changed (a session opened or closed, a node became
    /// unreachable).
    pub fn poke(&self) {
        self.arrived.store(true, Ordering::Release);
    }

    /// Whether a report arrived (or [`HealthBook::poke`]) since the last
    /// call.
    pub fn take_arrived(&self) -> bool {
        self.arrived.swap(false, Ordering::AcqRel)
    }

    /// Whether a refusal of this node's report is worth an audit entry
    /// now: the first one, then one per [`REFUSAL_AUDIT_INTERVAL_SECS`].
    pub fn refusal_to_audit(&self, node: &NodeName, now: UnixSecs) -> bool {
        let mut refusals = lock(&self.refusals);
        match refusals.get(node) {
            Some(at) if now.saturating_sub(*at) < REFUSAL_AUDIT_INTERVAL_SECS => false,
            _ => {
                refusals.insert(node.clone(), now);
                true
            }
        }
    }
}

/// The checks a report passes before colocd keeps it: the shared bounds,
/// then no control character in any name or text.
pub fn check_report(r: &HealthReport) -> Result<(), ReportRefused> {
    coloc_proto::health::check_report(r)?;
    let mut texts: Vec<(&str, &String)> = Vec::new();
    for d in &r.disks {
        texts.extend([
            ("disk device", &d.device),
            ("disk model", &d.model),
            ("disk serial", &d.serial),
            ("disk transport", &d.transport),
        ]);
        texts.extend(d.failing_attributes.iter().map(|a| ("disk attribute", a)));
    }
    for p in &r.zfs_pools {
        texts.extend([("pool name", &p.name), ("pool state", &p.state)]);
        for v in &p.vdevs {
            texts.extend([("vdev name", &v.name), ("vdev state", &v.state)]);
        }
    }
    for t in &r.thin_pools {
        texts.extend([("volume group", &t.volume_group), ("thin pool", &t.name)]);
    }
    for f in &r.filesystems {
        texts.extend([("mount path", &f.mount_path), ("volume id", &f.volume_id)]);
    }
    texts.extend(r.temperatures.iter().map(|t| ("sensor", &t.sensor)));
    texts.extend(r.nics.iter().map(|n| ("NIC", &n.name)));
    texts.extend(
        r.unobserved
            .iter()
            .map(|u| ("unobserved source", &u.source)),
    );
    texts.extend(
        r.maintenance
            .iter()
            .map(|m| ("maintenance subject", &m.subject)),
    );
    if let Some(u) = &r.units {
        for f in &u.failed {
            texts.extend([("unit", &f.name), ("unit result", &f.result)]);
        }
    }
    for (what, text) in texts {
        if text.chars().any(char::is_control) {
            return Err(ReportRefused(format!(
                "a {what} holds a control character: {:?}",
                text.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use coloc_proto::agent::v1::{DiskHealth, FailedUnit, UnitsHealth};

    use super::*;

    fn node(n: &str) -> NodeName {
        NodeName::new(n).unwrap()
    }

    #[test]
    fn names_with_control_characters_are_refused() {
        let ok = HealthReport {
            disks: vec![DiskHealth {
                device: "/dev/sda".into(),
                serial: "S3X9 NE0M".into(),
                ..DiskHealth::default()
            }],
            ..HealthReport::default()
        };
        check_report(&ok).unwrap();
        let bad = HealthReport {
            disks: vec![DiskHealth {
                serial: "S3X\n9".into(),
                ..DiskHealth::default()
            }],
            ..HealthReport::default()
        };
        assert!(check_report(&bad).unwrap_err().0.contains("disk serial"));
        let bad = HealthReport {
            units: Some(UnitsHealth {
                failed: vec![FailedUnit {
                    name: "a\u{1b}[31m.service".into(),
                    result: "exit-code".into(),
                }],
                unknown: String::new(),
            }),
            ..HealthReport::default()
        };
        assert!(check_report(&bad).unwrap_err().0.contains("unit"));
    }

    #[test]
    fn the_book_keeps_the_latest_and_hands_unsaved_ones_once() {
        let book = HealthBook::default();
        assert!(!book.take_arrived());
        book.accept(&node("n1"), HealthReport::default(), 10);
        book.accept(
            &node("n1"),
            HealthReport {
                collected_unix_ms: 7,
                ..HealthReport::default()
            },
            20,
        );
        assert!(book.take_arrived());
        assert!(!book.take_arrived());
        let h = book.get(&node("n1")).unwrap();
        assert_eq!((h.received_unix, h.report.collected_unix_ms), (20, 7));
        assert!(!h.stale(139, 60) && h.stale(141, 60));
        let saved = book.take_unsaved();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].received_unix, 20);
        assert!(book.take_unsaved().is_empty());
    }

    #[test]
    fn refusals_are_audited_once_an_hour_per_node() {
        let book = HealthBook::default();
        assert!(book.refusal_to_audit(&node("n1"), 100));
        assert!(!book.refusal_to_audit(&node("n1"), 3000));
        assert!(book.refusal_to_audit(&node("n2"), 3000));
        assert!(book.refusal_to_audit(&node("n1"), 3700));
    }
}

//! The fleet snapshot and colocd's own measurements as Prometheus text.
//!
//! The format wants every sample of a family together, so the renderer
//! first indexes the snapshot's reports into flat rows (one per disk,
//! pool, vdev, ...; repeated label sets within one node dropped), then
//! writes one family at a time over those rows. Families are split by
//! what they describe: [`fleet`] (nodes, volumes, apps, alerts, colocd
//! itself) and [`host`] (what the nodes' health reports say).

mod fleet;
mod host;

use std::collections::HashSet;

use coloc_proto::agent::v1::{
    DiskHealth, FailedUnit, FilesystemUse, HealthReport, NicHealth, SmartVerdict, Temperature,
    ThinPoolHealth, VdevHealth, ZfsPoolHealth,
};

use super::registry::Metrics;
use super::snapshot::FleetSnapshot;
use super::text::{Kind, Value, Writer};

/// Renders everything: the exposition format's text, ready to serve.
pub fn render(snapshot: &FleetSnapshot, metrics: &Metrics) -> String {
    let index = Index::build(snapshot);
    // Measured (benches/metrics_render.rs): about 10 KiB for a node with
    // 4 disks and a pool, 250 bytes a volume, 1.6 KiB an app. Reserve
    // once rather than grow through a hundred megabytes; pages reserved
    // and not written are never resident.
    let estimate = 64 * 1024
        + snapshot.nodes.len() * 12 * 1024
        + snapshot.volumes.len() * 320
        + snapshot.apps.len() * 2 * 1024;
    let mut w = Writer::with_capacity(estimate);
    fleet::nodes(&mut w, snapshot);
    host::reports(&mut w, &index);
    host::disks(&mut w, &index);
    host::zfs(&mut w, &index);
    host::thin_pools(&mut w, &index);
    host::filesystems(&mut w, &index);
    host::system(&mut w, &index);
    fleet::volumes(&mut w, snapshot);
    fleet::apps(&mut w, snapshot);
    fleet::alerts(&mut w, snapshot);
    fleet::colocd(&mut w, snapshot, metrics);
    w.finish()
}

/// Writes one family over `rows`: its header, then a sample for each row
/// whose `value` is known (an unknown value is left out, never written
/// as 0).
fn family<'a, T, const N: usize>(
    w: &mut Writer,
    name: &str,
    help: &str,
    kind: Kind,
    rows: &'a [T],
    labels: impl Fn(&'a T) -> [(&'static str, &'a str); N],
    value: impl Fn(&'a T) -> Option<Value>,
) {
    w.family(name, help, kind);
    for row in rows {
        if let Some(v) = value(row) {
            w.sample(name, &labels(row), v);
        }
    }
}

pub(super) struct ReportRow<'a> {
    node: &'a str,
    received_unix: i64,
    report: &'a HealthReport,
}

pub(super) struct DiskRow<'a> {
    node: &'a str,
    disk: &'a DiskHealth,
}

pub(super) struct PoolRow<'a> {
    node: &'a str,
    pool: &'a ZfsPoolHealth,
}

pub(super) struct VdevRow<'a> {
    node: &'a str,
    pool: &'a str,
    vdev: &'a VdevHealth,
}

pub(super) struct ThinRow<'a> {
    node: &'a str,
    thin: &'a ThinPoolHealth,
}

pub(super) struct FsRow<'a> {
    node: &'a str,
    fs: &'a FilesystemUse,
}

pub(super) struct TempRow<'a> {
    node: &'a str,
    temp: &'a Temperature,
}

pub(super) struct NicRow<'a> {
    node: &'a str,
    nic: &'a NicHealth,
}

pub(super) struct UnitRow<'a> {
    node: &'a str,
    unit: &'a FailedUnit,
}

/// Something a report could not observe: `source` as in
/// `HealthReport.unobserved` ("disks", "zfs", ...), `subject` the part
/// (a disk's device, a pool) or empty for the whole source.
pub(super) struct UnknownRow<'a> {
    node: &'a str,
    source: &'static str,
    subject: &'a str,
}

/// The reports flattened into rows, one vector per family group.
#[derive(Default)]
pub(super) struct Index<'a> {
    reports: Vec<ReportRow<'a>>,
    disks: Vec<DiskRow<'a>>,
    pools: Vec<PoolRow<'a>>,
    vdevs: Vec<VdevRow<'a>>,
    thins: Vec<ThinRow<'a>>,
    filesystems: Vec<FsRow<'a>>,
    temps: Vec<TempRow<'a>>,
    nics: Vec<NicRow<'a>>,
    units: Vec<UnitRow<'a>>,
    unknown: Vec<UnknownRow<'a>>,
}

/// The `source` names of `HealthReport.unobserved` that colocd knows;
/// anything else a report names is counted as "other".
const SOURCES: [&str; 10] = [
    "disks",
    "zfs",
    "lvm",
    "filesystems",
    "system",
    "temperatures",
    "units",
    "nics",
    "clock",
    "reboot",
];

fn source_label(source: &str) -> &'static str {
    SOURCES
        .iter()
        .find(|s| **s == source)
        .copied()
        .unwrap_or("other")
}

impl<'a> Index<'a> {
    fn build(snapshot: &'a FleetSnapshot) -> Self {
        let mut ix = Index::default();
        // Reused per node: which label sets this node already gave.
        let mut seen: HashSet<(&'static str, &'a str, &'a str)> = HashSet::new();
        let mut seen_nodes: HashSet<&'a str> = HashSet::new();
        for node in &snapshot.nodes {
            let Some(health) = &node.health else { continue };
            if !seen_nodes.insert(&node.name) {
                continue;
            }
            seen.clear();
            let name = node.name.as_str();
            let report: &'a HealthReport = &health.report;
            ix.reports.push(ReportRow {
                node: name,
                received_unix: health.received_unix,
                report,
            });
            ix.index_report(name, report, &mut seen);
        }
        ix
    }

    fn unknown(
        &mut self,
        seen: &mut HashSet<(&'static str, &'a str, &'a str)>,
        node: &'a str,
        source: &'static str,
        subject: &'a str,
    ) {
        if !seen.insert(("unknown", source, subject)) {
            return;
        }
        self.unknown.push(UnknownRow {
            node,
            source,
            subject,
        });
    }

    fn index_report(
        &mut self,
        node: &'a str,
        report: &'a HealthReport,
        seen: &mut HashSet<(&'static str, &'a str, &'a str)>,
    ) {
        for u in &report.unobserved {
            self.unknown(seen, node, source_label(&u.source), "");
        }
        for disk in &report.disks {
            if !seen.insert(("disk", &disk.device, "")) {
                continue;
            }
            // Unknown is never healthy: a verdict smartctl could not give
            // counts as unknown even without a reason.
            let verdict = disk.smart();
            if !disk.unknown.is_empty()
                || matches!(verdict, SmartVerdict::Unknown | SmartVerdict::Unspecified)
            {
                self.unknown(seen, node, "disks", &disk.device);
            }
            self.disks.push(DiskRow { node, disk });
        }
        for pool in &report.zfs_pools {
            if !seen.insert(("pool", &pool.name, "")) {
                continue;
            }
            if !pool.unknown.is_empty() {
                self.unknown(seen, node, "zfs", &pool.name);
            } else {
                for vdev in &pool.vdevs {
                    if seen.insert(("vdev", &pool.name, &vdev.name)) {
                        self.vdevs.push(VdevRow {
                            node,
                            pool: &pool.name,
                            vdev,
                        });
                    }
                }
            }
            self.pools.push(PoolRow { node, pool });
        }
        for thin in &report.thin_pools {
            if !seen.insert(("thin", &thin.volume_group, &thin.name)) {
                continue;
            }
            if thin.unknown.is_empty() {
                self.thins.push(ThinRow { node, thin });
            } else {
                self.unknown(seen, node, "lvm", &thin.name);
            }
        }
        for fs in &report.filesystems {
            if !seen.insert(("fs", &fs.mount_path, "")) {
                continue;
            }
            if fs.unknown.is_empty() {
                self.filesystems.push(FsRow { node, fs });
            } else {
                self.unknown(seen, node, "filesystems", &fs.mount_path);
            }
        }
        if let Some(system) = &report.system
            && !system.unknown.is_empty()
        {
            self.unknown(seen, node, "system", "");
        }
        for temp in &report.temperatures {
            if !seen.insert(("temp", &temp.sensor, "")) {
                continue;
            }
            if temp.unknown.is_empty() {
                self.temps.push(TempRow { node, temp });
            } else {
                self.unknown(seen, node, "temperatures", &temp.sensor);
            }
        }
        if let Some(units) = &report.units {
            if units.unknown.is_empty() {
                for unit in &units.failed {
                    if seen.insert(("unit", &unit.name, "")) {
                        self.units.push(UnitRow { node, unit });
                    }
                }
            } else {
                self.unknown(seen, node, "units", "");
            }
        }
        for nic in &report.nics {
            if seen.insert(("nic", &nic.name, "")) {
                self.nics.push(NicRow { node, nic });
            }
        }
        if let Some(clock) = &report.clock
            && !clock.unknown.is_empty()
        {
            self.unknown(seen, node, "clock", "");
        }
        if let Some(reboot) = &report.reboot
            && !reboot.unknown.is_empty()
        {
            self.unknown(seen, node, "reboot", "");
        }
    }
}

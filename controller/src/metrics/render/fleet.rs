//! Families from colocd's own records: nodes, volumes, apps, alerts, and
//! colocd itself (sessions, RPC and store latency).

use super::family;
use crate::metrics::registry::{HistogramValues, LATENCY_BUCKETS, Metrics};
use crate::metrics::snapshot::{AppMetrics, AppState, FleetSnapshot, NodeMetrics, VolumeMetrics};
use crate::metrics::text::{Kind, Value, Writer, le_label};

fn node_labels(n: &NodeMetrics) -> [(&'static str, &str); 1] {
    [("node", n.name.as_str())]
}

fn volume_labels(v: &VolumeMetrics) -> [(&'static str, &str); 3] {
    [
        ("tenant", v.tenant.as_str()),
        ("node", v.node.as_str()),
        ("volume", v.volume.as_str()),
    ]
}

fn app_labels(a: &AppMetrics) -> [(&'static str, &str); 3] {
    [
        ("tenant", a.tenant.as_str()),
        ("app", a.app.as_str()),
        ("node", a.node.as_str()),
    ]
}

pub(super) fn nodes(w: &mut Writer, snap: &FleetSnapshot) {
    let rows = &snap.nodes;
    let node = node_labels;
    family(
        w,
        "coloc_node_up",
        "1 while the node's agent holds a session with colocd.",
        Kind::Gauge,
        rows,
        |n| [("node", n.name.as_str()), ("site", n.site.as_str())],
        |n| Some(n.connected.into()),
    );
    family(
        w,
        "coloc_node_last_seen_timestamp_seconds",
        "When colocd last heard from the node's agent.",
        Kind::Gauge,
        rows,
        node,
        |n| n.last_seen_unix.map(Value::from),
    );
    family(
        w,
        "coloc_node_generation_lag",
        "Desired configuration generations the node has not applied yet.",
        Kind::Gauge,
        rows,
        node,
        |n| {
            Some(
                n.desired_generation
                    .saturating_sub(n.applied_generation)
                    .into(),
            )
        },
    );
}

pub(super) fn volumes(w: &mut Writer, snap: &FleetSnapshot) {
    let labels = volume_labels;
    family(
        w,
        "coloc_volume_size_bytes",
        "Size (quota) of a tenant's volume.",
        Kind::Gauge,
        &snap.volumes,
        labels,
        |v| Some(v.size_bytes.into()),
    );
    family(
        w,
        "coloc_volume_used_bytes",
        "Space used in a tenant's volume, from its node's latest health report.",
        Kind::Gauge,
        &snap.volumes,
        labels,
        |v| v.used_bytes.map(Value::from),
    );
}

pub(super) fn apps(w: &mut Writer, snap: &FleetSnapshot) {
    let labels = app_labels;
    let name = "coloc_app_state";
    w.family(
        name,
        "1 for the app unit's current state (systemd's ActiveState, or removed), 0 for the others.",
        Kind::Gauge,
    );
    for a in &snap.apps {
        for state in AppState::ALL {
            w.sample_with(
                name,
                &labels(a),
                Some(("state", state.as_str())),
                (state == a.state).into(),
            );
        }
    }
    family(
        w,
        "coloc_app_healthy",
        "1 when the app's last health probe passed, 0 when it failed; absent before the first.",
        Kind::Gauge,
        &snap.apps,
        labels,
        |a| a.healthy.map(Value::from),
    );
    family(
        w,
        "coloc_app_memory_bytes",
        "Memory the app's unit uses (its cgroup).",
        Kind::Gauge,
        &snap.apps,
        labels,
        |a| a.memory_bytes.map(Value::from),
    );
    family(
        w,
        "coloc_app_restarts_total",
        "Times systemd restarted the app's unit.",
        Kind::Counter,
        &snap.apps,
        labels,
        |a| Some(a.restarts.into()),
    );
}

pub(super) fn alerts(w: &mut Writer, snap: &FleetSnapshot) {
    family(
        w,
        "coloc_alerts_firing",
        "Alerts firing now, by colocd's rule and severity (0 for a rule with none).",
        Kind::Gauge,
        &snap.alerts,
        |a| [("rule", a.rule.as_str()), ("severity", a.severity.as_str())],
        |a| Some(a.count.into()),
    );
}

pub(super) fn colocd(w: &mut Writer, snap: &FleetSnapshot, metrics: &Metrics) {
    w.family(
        "colocd_sessions",
        "Agent sessions colocd holds open.",
        Kind::Gauge,
    );
    w.sample("colocd_sessions", &[], snap.colocd.sessions);
    histograms(
        w,
        "colocd_rpc_duration_seconds",
        "Time colocd took to answer a gRPC call, by service, method and status code.",
        &["service", "method", "code"],
        &metrics.rpc_values(),
    );
    histograms(
        w,
        "colocd_store_duration_seconds",
        "Time one store operation took, by operation.",
        &["op"],
        &metrics.store_values(),
    );
}

fn histograms(
    w: &mut Writer,
    name: &str,
    help: &str,
    label_names: &[&'static str],
    series: &[(Vec<Box<str>>, HistogramValues)],
) {
    w.family(name, help, Kind::Histogram);
    let bucket = format!("{name}_bucket");
    let sum = format!("{name}_sum");
    let count = format!("{name}_count");
    let bounds: Vec<String> = LATENCY_BUCKETS.iter().map(|b| le_label(*b)).collect();
    for (values, h) in series {
        let labels: Vec<(&str, &str)> = label_names
            .iter()
            .copied()
            .zip(values.iter().map(|v| &**v))
            .collect();
        for (le, n) in bounds.iter().zip(h.cumulative) {
            w.sample_with(&bucket, &labels, Some(("le", le)), n.into());
        }
        w.sample_with(&bucket, &labels, Some(("le", "+Inf")), h.count.into());
        w.sample(&sum, &labels, h.sum_seconds);
        w.sample(&count, &labels, h.count);
    }
}

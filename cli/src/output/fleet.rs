//! The fleet: sites, one-time join tokens, nodes with their labels and
//! hardware facts, `coloc node ping` and colocd's session counters.

use std::collections::HashMap;

use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1 as pb;
use coloc_proto::domain;
use serde_json::{Value, json};

use super::alerts::FleetHealth;
use super::{
    Details, Table, clean, fmt_bytes, fmt_time, fmt_time_ms, joined, or_dash, with_secret, yes_no,
};

// ---------------------------------------------------------------- status words

pub fn node_status(status: i32) -> &'static str {
    match pb::NodeStatus::try_from(status) {
        Ok(pb::NodeStatus::Enrolling) => "enrolling",
        Ok(pb::NodeStatus::Ready) => "ready",
        Ok(pb::NodeStatus::Unreachable) => "unreachable",
        Ok(pb::NodeStatus::Draining) => "draining",
        Ok(pb::NodeStatus::Removed) => "removed",
        Ok(pb::NodeStatus::Unspecified) | Err(_) => "unknown",
    }
}

pub fn reconcile_outcome(outcome: i32) -> &'static str {
    match agent::ReconcileOutcome::try_from(outcome) {
        Ok(agent::ReconcileOutcome::Applied) => "applied",
        Ok(agent::ReconcileOutcome::Failed) => "failed",
        Ok(agent::ReconcileOutcome::StaleRejected) => "stale generation rejected",
        Ok(agent::ReconcileOutcome::Unspecified) | Err(_) => "none yet",
    }
}

/// A join token as people think of it.
pub fn join_token_state(t: &pb::JoinToken, now_unix: i64) -> String {
    if !t.used_by_node.is_empty() {
        format!("used by {}", clean(&t.used_by_node))
    } else if t.expires_unix <= now_unix {
        "expired".to_string()
    } else {
        "unused".to_string()
    }
}

// ---------------------------------------------------------------- labels

/// `k=v, k2=v2`, sorted by key; `-` when empty.
pub fn fmt_labels(labels: &HashMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".to_string();
    }
    let mut pairs: Vec<_> = labels.iter().collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn labels_json(labels: &HashMap<String, String>) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// A node whose desired configuration changed, with its new generation.
pub fn node_generation_json(n: &pb::NodeGeneration) -> Value {
    json!({ "name": n.name, "desired_generation": n.desired_generation })
}

pub fn node_generations_table(nodes: &[pb::NodeGeneration]) -> String {
    Table::new(&["NODE", "DESIRED GENERATION"])
        .rows(nodes, |n| {
            vec![clean(&n.name).into(), n.desired_generation.to_string()]
        })
        .render_or("no node changed")
}

// ---------------------------------------------------------------- sites

pub fn site_json(s: &pb::Site) -> Value {
    json!({
        "name": s.name,
        "country": s.country,
        "city": s.city,
        "description": s.description,
        "created_unix": s.created_unix,
    })
}

pub fn site_details(s: &pb::Site) -> String {
    Details::new()
        .field("Name", clean(&s.name))
        .field("Country", clean(&s.country))
        .field("City", or_dash(&s.city))
        .field("Description", or_dash(&s.description))
        .field("Created", fmt_time(s.created_unix))
        .render()
}

pub fn sites_table(sites: &[pb::Site]) -> String {
    Table::new(&["NAME", "COUNTRY", "CITY", "CREATED", "DESCRIPTION"])
        .rows(sites, |s| {
            vec![
                clean(&s.name).into(),
                clean(&s.country).into(),
                or_dash(&s.city).into(),
                fmt_time(s.created_unix),
                or_dash(&s.description).into(),
            ]
        })
        .render_or("no sites")
}

// ---------------------------------------------------------------- join tokens

pub fn join_token_json(t: &pb::JoinToken) -> Value {
    let v = json!({
        "id": t.id,
        "site": t.site,
        "created_unix": t.created_unix,
        "expires_unix": t.expires_unix,
        "used_by_node": t.used_by_node,
        "created_by": t.created_by,
    });
    with_secret(v, &t.secret)
}

pub fn join_tokens_table(tokens: &[pb::JoinToken], now_unix: i64) -> String {
    Table::new(&["ID", "SITE", "STATE", "CREATED", "EXPIRES", "CREATED BY"])
        .rows(tokens, |j| {
            vec![
                clean(&j.id).into(),
                clean(&j.site).into(),
                join_token_state(j, now_unix),
                fmt_time(j.created_unix),
                fmt_time(j.expires_unix),
                or_dash(&j.created_by).into(),
            ]
        })
        .render_or("no join tokens")
}

// ---------------------------------------------------------------- nodes

pub fn facts_json(f: &agent::NodeFacts) -> Value {
    json!({
        "hostname": f.hostname,
        "cpu_model": f.cpu_model,
        "cpu_count": f.cpu_count,
        "memory_bytes": f.memory_bytes,
        "disks": f.disks.iter().map(|d| json!({
            "name": d.name,
            "model": d.model,
            "serial": d.serial,
            "size_bytes": d.size_bytes,
            "transport": d.transport,
            "rotational": d.rotational,
        })).collect::<Vec<_>>(),
        "nics": f.nics.iter().map(|n| json!({
            "name": n.name,
            "mac": n.mac,
            "addresses": n.addresses,
        })).collect::<Vec<_>>(),
        "kernel_version": f.kernel_version,
        "os_name": f.os_name,
        "agent_version": f.agent_version,
        "boot_time_unix": f.boot_time_unix,
    })
}

pub fn node_json(n: &pb::Node) -> Value {
    json!({
        "name": n.name,
        "site": n.site,
        "status": node_status(n.status),
        "draining": n.draining,
        "connected": n.connected,
        "enrolled_unix": n.enrolled_unix,
        "last_seen_unix": n.last_seen_unix,
        "desired_generation": n.desired_generation,
        "applied_generation": n.applied_generation,
        "last_outcome": reconcile_outcome(n.last_outcome),
        "last_message": n.last_message,
        "labels": labels_json(&n.labels),
        "cert_fingerprint": n.cert_fingerprint,
        "cert_not_after_unix": n.cert_not_after_unix,
        "cert_renew_after_unix": n.cert_renew_after_unix,
        "next_cert_fingerprint": n.next_cert_fingerprint,
        "removed_unix": n.removed_unix,
        "removed_by": n.removed_by,
        "facts": n.facts.as_ref().map(facts_json),
    })
}

fn generation(n: &pb::Node) -> String {
    format!("{}/{}", n.applied_generation, n.desired_generation)
}

/// A node in `coloc node list --json`: the node, and `health` (null when
/// the caller may not see it).
pub fn node_list_json(n: &pb::Node, health: &FleetHealth) -> Value {
    let mut v = node_json(n);
    v["health"] = health.json(n);
    v
}

pub fn nodes_table(nodes: &[pb::Node], health: &FleetHealth) -> String {
    Table::new(&[
        "NAME",
        "SITE",
        "STATUS",
        "HEALTH",
        "LAST SEEN",
        "APPLIED/DESIRED",
        "LABELS",
    ])
    .rows(nodes, |n| {
        vec![
            clean(&n.name).into(),
            clean(&n.site).into(),
            node_status(n.status).to_string(),
            health.word(n),
            fmt_time(n.last_seen_unix),
            generation(n),
            fmt_labels(&n.labels),
        ]
    })
    .render_or("no nodes")
}

pub fn node_details(n: &pb::Node) -> String {
    let status = format!(
        "{} ({})",
        node_status(n.status),
        if n.connected {
            "connected"
        } else {
            "not connected"
        }
    );
    let sync = if n.applied_generation >= n.desired_generation {
        "up to date"
    } else {
        "behind"
    };
    let outcome = if n.last_message.is_empty() {
        reconcile_outcome(n.last_outcome).to_string()
    } else {
        format!(
            "{}: {}",
            reconcile_outcome(n.last_outcome),
            clean(&n.last_message)
        )
    };
    let mut out = Details::new()
        .field("Name", clean(&n.name))
        .field("Site", clean(&n.site))
        .field("Status", status)
        .field("Draining", yes_no(n.draining))
        .field("Enrolled", fmt_time(n.enrolled_unix))
        .field("Last seen", fmt_time(n.last_seen_unix))
        .field(
            "Generation",
            format!(
                "{} applied, {} desired ({sync})",
                n.applied_generation, n.desired_generation
            ),
        )
        .field("Last outcome", outcome)
        .field("Labels", fmt_labels(&n.labels))
        .field(
            "Certificate",
            format!("sha256 {}", or_dash(&n.cert_fingerprint)),
        )
        .field("Certificate ends", cert_dates(n));
    if !n.next_cert_fingerprint.is_empty() {
        out = out.field(
            "Renewed certificate",
            format!("sha256 {} (not used yet)", clean(&n.next_cert_fingerprint)),
        );
    }
    if n.removed_unix > 0 {
        out = out.field(
            "Removed",
            format!("{} by {}", fmt_time(n.removed_unix), clean(&n.removed_by)),
        );
    }
    let mut out = out.render();
    match &n.facts {
        None => out.push_str("\nFacts: not reported yet\n"),
        Some(f) => {
            out.push_str("\nFacts\n");
            out.push_str(&facts_details(f));
        }
    }
    out
}

/// When the node's certificate ends and when colocd renews it.
fn cert_dates(n: &pb::Node) -> String {
    if n.cert_not_after_unix == 0 {
        return "-".to_string();
    }
    format!(
        "{} (renewed from {})",
        fmt_time(n.cert_not_after_unix),
        fmt_time(n.cert_renew_after_unix)
    )
}

pub fn node_removed_json(r: &pb::RemoveNodeResponse) -> Value {
    json!({
        "node": r.node.as_ref().map(node_json),
        "orphaned_volumes": r.orphaned_volumes,
        "orphaned_instances": r.orphaned_instances,
    })
}

/// What a removal did, and what it leaves for an admin to clean up.
pub fn node_removed_text(r: &pb::RemoveNodeResponse) -> String {
    let name = r.node.as_ref().map_or("?", |n| n.name.as_str());
    let mut out = format!(
        "Node {} removed: its certificate is refused from now on and its session was closed. Nothing was destroyed.\n",
        clean(name)
    );
    let list = |items: &[String]| {
        items
            .iter()
            .map(|i| clean(i).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if r.orphaned_volumes.is_empty() && r.orphaned_instances.is_empty() {
        out.push_str("It held no volumes and no apps.\n");
        return out;
    }
    if !r.orphaned_volumes.is_empty() {
        out.push_str(&format!(
            "Orphaned volumes ({}): {}. Delete each with coloc volume delete once its data is safe elsewhere.\n",
            r.orphaned_volumes.len(),
            list(&r.orphaned_volumes)
        ));
    }
    if !r.orphaned_instances.is_empty() {
        out.push_str(&format!(
            "Orphaned apps ({}): {}. Remove each with coloc app remove, then request it again on another node.\n",
            r.orphaned_instances.len(),
            list(&r.orphaned_instances)
        ));
    }
    out
}

fn facts_details(f: &agent::NodeFacts) -> String {
    let cpu = if f.cpu_model.is_empty() {
        format!("{} cores", f.cpu_count)
    } else {
        format!("{} × {}", f.cpu_count, clean(&f.cpu_model))
    };
    let mut out = Details::new()
        .field("Hostname", or_dash(&f.hostname))
        .field("CPU", cpu)
        .field("Memory", fmt_bytes(f.memory_bytes))
        .field("Kernel", or_dash(&f.kernel_version))
        .field("OS", or_dash(&f.os_name))
        .field("Agent", or_dash(&f.agent_version))
        .field(
            "Booted",
            fmt_time(i64::try_from(f.boot_time_unix).unwrap_or(i64::MAX)),
        )
        .render();

    let disks =
        Table::new(&["DISK", "MODEL", "SERIAL", "SIZE", "TRANSPORT", "TYPE"]).rows(&f.disks, |d| {
            vec![
                clean(&d.name).into(),
                or_dash(&d.model).into(),
                or_dash(&d.serial).into(),
                fmt_bytes(d.size_bytes),
                or_dash(&d.transport).into(),
                if d.rotational { "hdd" } else { "ssd" }.to_string(),
            ]
        });
    out.push('\n');
    out.push_str(&disks.render_or("no disks reported"));

    let nics = Table::new(&["NIC", "MAC", "ADDRESSES"]).rows(&f.nics, |n| {
        vec![
            clean(&n.name).into(),
            or_dash(&n.mac).into(),
            joined(&n.addresses),
        ]
    });
    out.push('\n');
    out.push_str(&nics.render_or("no network interfaces reported"));
    out
}

/// `n1 answered in 1.2 ms (agent clock 2026-01-01 00:00:01 UTC)`.
pub fn ping_line(node: &domain::NodeName, pong: &pb::PingNodeResponse) -> String {
    let ms = pong.round_trip_us as f64 / 1000.0;
    let clock = fmt_time_ms(i64::try_from(pong.agent_unix_ms).unwrap_or(i64::MAX));
    format!("{node} answered in {ms:.1} ms (agent clock {clock} UTC)\n")
}

pub fn stats_json(s: &pb::ControllerStats) -> Value {
    json!({
        "sessions": s.sessions,
        "sessions_opened": s.sessions_opened,
        "heartbeats": s.heartbeats,
        "observed": s.observed,
        "unmatched_results": s.unmatched_results,
        "started_unix": s.started_unix,
    })
}

pub fn stats_details(s: &pb::ControllerStats) -> String {
    Details::new()
        .field("Started", fmt_time(s.started_unix))
        .field("Sessions open", s.sessions.to_string())
        .field("Sessions opened", s.sessions_opened.to_string())
        .field("Heartbeats", s.heartbeats.to_string())
        .field("Observed reports", s.observed.to_string())
        .field("Unmatched results", s.unmatched_results.to_string())
        .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_words() {
        assert_eq!(node_status(pb::NodeStatus::Ready as i32), "ready");
        assert_eq!(node_status(pb::NodeStatus::Draining as i32), "draining");
        assert_eq!(node_status(99), "unknown");
        assert_eq!(
            reconcile_outcome(agent::ReconcileOutcome::StaleRejected as i32),
            "stale generation rejected"
        );
    }

    #[test]
    fn labels_sorted() {
        let labels: HashMap<String, String> = [("zone", "paris"), ("role", "web")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(fmt_labels(&labels), "role=web, zone=paris");
        assert_eq!(fmt_labels(&HashMap::new()), "-");
    }

    fn sample_node() -> pb::Node {
        pb::Node {
            name: "n1".into(),
            site: "paris-1".into(),
            status: pb::NodeStatus::Ready as i32,
            connected: true,
            enrolled_unix: 1_767_225_600,
            last_seen_unix: 1_767_229_200,
            desired_generation: 4,
            applied_generation: 3,
            last_outcome: agent::ReconcileOutcome::Applied as i32,
            labels: [("role".to_string(), "web".to_string())].into(),
            cert_fingerprint: "ab12".into(),
            facts: Some(agent::NodeFacts {
                hostname: "n1".into(),
                cpu_model: "AMD EPYC 7302P".into(),
                cpu_count: 32,
                memory_bytes: 128 * 1024 * 1024 * 1024,
                disks: vec![agent::Disk {
                    name: "nvme0n1".into(),
                    model: "Samsung PM983".into(),
                    serial: "S4GNNX0N".into(),
                    size_bytes: 1_920_383_410_176,
                    transport: "nvme".into(),
                    rotational: false,
                }],
                nics: vec![agent::Nic {
                    name: "eno1".into(),
                    mac: "0c:c4:7a:00:00:01".into(),
                    addresses: vec!["192.0.2.10/24".into(), "2001:db8::10/64".into()],
                }],
                kernel_version: "6.1.0-28-amd64".into(),
                os_name: "Debian GNU/Linux 12 (bookworm)".into(),
                agent_version: "0.1.0".into(),
                boot_time_unix: 1_767_220_000,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn node_show_has_the_facts() {
        let text = node_details(&sample_node());
        for needle in [
            "ready (connected)",
            "3 applied, 4 desired (behind)",
            "role=web",
            "32 × AMD EPYC 7302P",
            "128.0 GiB",
            "Samsung PM983",
            "S4GNNX0N",
            "1.7 TiB",
            "nvme",
            "ssd",
            "0c:c4:7a:00:00:01",
            "192.0.2.10/24, 2001:db8::10/64",
            "6.1.0-28-amd64",
            "Debian GNU/Linux 12 (bookworm)",
            "Agent:",
            "2026-01-01 01:00",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in\n{text}");
        }
        let mut bare = sample_node();
        bare.facts = None;
        assert!(node_details(&bare).contains("not reported yet"));
    }

    #[test]
    fn node_json_uses_words_and_nests_facts() {
        let v = node_json(&sample_node());
        assert_eq!(v["status"], "ready");
        assert_eq!(v["last_outcome"], "applied");
        assert_eq!(v["labels"]["role"], "web");
        assert_eq!(v["facts"]["disks"][0]["serial"], "S4GNNX0N");
        assert_eq!(v["facts"]["memory_bytes"], 128_u64 * 1024 * 1024 * 1024);
    }

    #[test]
    fn token_states() {
        let now = 1_000;
        let mut j = pb::JoinToken {
            expires_unix: 2_000,
            ..Default::default()
        };
        assert_eq!(join_token_state(&j, now), "unused");
        j.expires_unix = 999;
        assert_eq!(join_token_state(&j, now), "expired");
        j.used_by_node = "n1".into();
        assert_eq!(join_token_state(&j, now), "used by n1");
    }

    #[test]
    fn ping_in_milliseconds() {
        let node = domain::NodeName::new("n1").unwrap();
        let pong = pb::PingNodeResponse {
            round_trip_us: 1_250,
            agent_unix_ms: 1_767_225_601_000,
        };
        assert_eq!(
            ping_line(&node, &pong),
            "n1 answered in 1.2 ms (agent clock 2026-01-01 00:00:01 UTC)\n"
        );
    }
}

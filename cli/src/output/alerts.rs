//! Alerts: their words (severity, state, subject), the list and the
//! detail of `coloc alert`, and the HEALTH column of `coloc node list`
//! made from the firing alerts.

use std::collections::HashMap;

use coloc_proto::controller::v1 as pb;
use serde_json::{Value, json};

use super::{Details, Table, clean, fmt_time, or_dash};

// ---------------------------------------------------------------- words

/// Upper case so that a critical line stands out without colour.
pub fn severity_word(severity: i32) -> &'static str {
    match pb::AlertSeverity::try_from(severity) {
        Ok(pb::AlertSeverity::Critical) => "CRITICAL",
        Ok(pb::AlertSeverity::Warning) => "WARNING",
        Ok(pb::AlertSeverity::Info) => "INFO",
        Ok(pb::AlertSeverity::Unspecified) | Err(_) => "UNKNOWN",
    }
}

pub fn alert_state_word(state: i32) -> &'static str {
    match pb::AlertState::try_from(state) {
        Ok(pb::AlertState::Firing) => "firing",
        Ok(pb::AlertState::Resolved) => "resolved",
        Ok(pb::AlertState::Unspecified) | Err(_) => "unknown",
    }
}

pub fn subject_kind_word(kind: i32) -> &'static str {
    match pb::AlertSubjectKind::try_from(kind) {
        Ok(pb::AlertSubjectKind::Node) => "node",
        Ok(pb::AlertSubjectKind::Disk) => "disk",
        Ok(pb::AlertSubjectKind::Pool) => "pool",
        Ok(pb::AlertSubjectKind::ThinPool) => "thin pool",
        Ok(pb::AlertSubjectKind::Volume) => "volume",
        Ok(pb::AlertSubjectKind::App) => "app",
        Ok(pb::AlertSubjectKind::Unit) => "unit",
        Ok(pb::AlertSubjectKind::Filesystem) => "filesystem",
        Ok(pb::AlertSubjectKind::Sensor) => "sensor",
        Ok(pb::AlertSubjectKind::Certificate) => "certificate",
        Ok(pb::AlertSubjectKind::Tenant) => "tenant",
        Ok(pb::AlertSubjectKind::Unspecified) | Err(_) => "subject",
    }
}

/// `disk S4GNNX0N on n1`, `volume asso-x/data on n1`, `tenant asso-x`,
/// `node n1`.
pub fn subject_text(subject: Option<&pb::AlertSubject>) -> String {
    let Some(s) = subject else {
        return "-".to_string();
    };
    let kind = pb::AlertSubjectKind::try_from(s.kind).unwrap_or_default();
    let name = match kind {
        pb::AlertSubjectKind::Volume | pb::AlertSubjectKind::App if !s.tenant.is_empty() => {
            format!("{}/{}", clean(&s.tenant), clean(&s.name))
        }
        pb::AlertSubjectKind::Tenant if s.name.is_empty() => clean(&s.tenant).into_owned(),
        _ => or_dash(&s.name).into_owned(),
    };
    let mut text = format!("{} {name}", subject_kind_word(s.kind));
    if !s.node.is_empty() && kind != pb::AlertSubjectKind::Node {
        text.push_str(&format!(" on {}", clean(&s.node)));
    }
    text
}

/// Whether a silence holds now: one in the past no longer does.
fn silenced(a: &pb::Alert, now_unix: i64) -> bool {
    a.silenced_until_unix > now_unix
}

/// Who is on it: `acked by mia`, `silenced until 2026-01-02 10:00`.
fn handling(a: &pb::Alert, now_unix: i64) -> String {
    let mut parts = Vec::new();
    if !a.acked_by.is_empty() {
        parts.push(format!("acked by {}", clean(&a.acked_by)));
    }
    if silenced(a, now_unix) {
        parts.push(format!(
            "silenced until {}",
            fmt_time(a.silenced_until_unix)
        ));
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(", ")
    }
}

/// `firing` or `resolved 2026-01-01 03:00`.
fn state_text(a: &pb::Alert) -> String {
    let word = alert_state_word(a.state);
    if a.state == pb::AlertState::Resolved as i32 && a.ended_unix > 0 {
        format!("{word} {}", fmt_time(a.ended_unix))
    } else {
        word.to_string()
    }
}

// ---------------------------------------------------------------- alerts

fn subject_json(s: &pb::AlertSubject) -> Value {
    json!({
        "kind": subject_kind_word(s.kind),
        "node": s.node,
        "name": s.name,
        "tenant": s.tenant,
    })
}

pub fn alert_json(a: &pb::Alert) -> Value {
    json!({
        "id": a.id,
        "rule": a.rule,
        "severity": severity_word(a.severity).to_ascii_lowercase(),
        "subject": a.subject.as_ref().map(subject_json),
        "state": alert_state_word(a.state),
        "summary": a.summary,
        "started_unix": a.started_unix,
        "ended_unix": a.ended_unix,
        "acked_by": a.acked_by,
        "acked_unix": a.acked_unix,
        "ack_comment": a.ack_comment,
        "silenced_until_unix": a.silenced_until_unix,
        "silenced_by": a.silenced_by,
        "silence_comment": a.silence_comment,
    })
}

/// Alerts as colocd lists them (newest first), the summary last since it
/// is the longest cell.
pub fn alerts_table(alerts: &[pb::Alert], now_unix: i64) -> String {
    Table::new(&[
        "ID", "SEVERITY", "STATE", "STARTED", "SUBJECT", "HANDLED", "SUMMARY",
    ])
    .rows(alerts, |a| {
        vec![
            a.id.to_string(),
            severity_word(a.severity).to_string(),
            state_text(a),
            fmt_time(a.started_unix),
            subject_text(a.subject.as_ref()),
            handling(a, now_unix),
            or_dash(&a.summary).into_owned(),
        ]
    })
    .render_or("no alerts")
}

/// One alert with who did what about it.
pub fn alert_details(a: &pb::Alert, now_unix: i64) -> String {
    let state = match pb::AlertState::try_from(a.state) {
        Ok(pb::AlertState::Firing) => format!("FIRING since {} UTC", fmt_time(a.started_unix)),
        Ok(pb::AlertState::Resolved) => format!(
            "resolved {} UTC (fired {} UTC)",
            fmt_time(a.ended_unix),
            fmt_time(a.started_unix)
        ),
        Ok(pb::AlertState::Unspecified) | Err(_) => {
            format!("unknown (started {} UTC)", fmt_time(a.started_unix))
        }
    };
    let ack = if a.acked_by.is_empty() {
        "no".to_string()
    } else {
        let mut text = format!(
            "by {} on {} UTC",
            clean(&a.acked_by),
            fmt_time(a.acked_unix)
        );
        if !a.ack_comment.is_empty() {
            text.push_str(&format!(": {}", clean(&a.ack_comment)));
        }
        text
    };
    let silence = if a.silenced_until_unix == 0 {
        "no".to_string()
    } else {
        let when = if silenced(a, now_unix) {
            format!("until {} UTC", fmt_time(a.silenced_until_unix))
        } else {
            format!("ended {} UTC", fmt_time(a.silenced_until_unix))
        };
        let mut text = format!("{when} by {}", or_dash(&a.silenced_by));
        if !a.silence_comment.is_empty() {
            text.push_str(&format!(": {}", clean(&a.silence_comment)));
        }
        text
    };
    let mut d = Details::new()
        .field("Alert", a.id.to_string())
        .field("Severity", severity_word(a.severity))
        .field("State", state)
        .field("Subject", subject_text(a.subject.as_ref()))
        .field("Summary", or_dash(&a.summary))
        .field("Rule", or_dash(&a.rule));
    if let Some(tenant) = a.subject.as_ref().map(|s| &s.tenant)
        && !tenant.is_empty()
    {
        d = d.field("Tenant", clean(tenant));
    }
    d.field("Acknowledged", ack)
        .field("Silenced", silence)
        .render()
}

/// What `coloc alert ack`, `silence` and `unsilence` say after colocd
/// answered.
pub fn alert_changed_text(verb: &str, a: &pb::Alert, now_unix: i64) -> String {
    format!("Alert {} {verb}.\n{}", a.id, alert_details(a, now_unix))
}

// ---------------------------------------------------------------- node list

/// Firing alerts counted per node, for the HEALTH column of `coloc node
/// list`, or why the column cannot be filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetHealth {
    /// Built from every firing alert (the caller is an admin).
    Counted(HashMap<String, AlertCounts>),
    /// The caller may not see nodes' health, or colocd could not say.
    Hidden,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertCounts {
    pub critical: u32,
    /// Warnings, and alerts of a severity this CLI does not know.
    pub warning: u32,
}

impl FleetHealth {
    /// Counts the firing alerts by the node their subject is on; alerts
    /// with no node (a tenant, colocd's certificate) count for none.
    pub fn from_alerts(alerts: &[pb::Alert]) -> FleetHealth {
        let mut counts: HashMap<String, AlertCounts> = HashMap::new();
        for a in alerts {
            if a.state != pb::AlertState::Firing as i32 {
                continue;
            }
            let Some(node) = a.subject.as_ref().map(|s| &s.node) else {
                continue;
            };
            if node.is_empty() {
                continue;
            }
            let c = counts.entry(node.clone()).or_default();
            if a.severity == pb::AlertSeverity::Critical as i32 {
                c.critical += 1;
            } else {
                c.warning += 1;
            }
        }
        FleetHealth::Counted(counts)
    }

    fn counts(&self, node: &pb::Node) -> Option<AlertCounts> {
        match self {
            FleetHealth::Counted(counts) => {
                Some(counts.get(&node.name).copied().unwrap_or_default())
            }
            FleetHealth::Hidden => None,
        }
    }

    /// `ok`, `1 critical, 2 warning`, `unknown` (never reported), `-`
    /// (hidden, or a removed node).
    pub fn word(&self, node: &pb::Node) -> String {
        let Some(c) = self.counts(node) else {
            return "-".to_string();
        };
        if node.status == pb::NodeStatus::Removed as i32 {
            return "-".to_string();
        }
        match (c.critical, c.warning) {
            (0, 0) if never_reported(node) => "unknown".to_string(),
            (0, 0) => "ok".to_string(),
            (0, w) => format!("{w} warning"),
            (k, 0) => format!("{k} critical"),
            (k, w) => format!("{k} critical, {w} warning"),
        }
    }

    /// `{"state": "critical", "critical": 1, "warning": 2}`, or null when
    /// hidden.
    pub fn json(&self, node: &pb::Node) -> Value {
        let Some(c) = self.counts(node) else {
            return Value::Null;
        };
        let state = if node.status == pb::NodeStatus::Removed as i32 {
            "removed"
        } else if c.critical > 0 {
            "critical"
        } else if c.warning > 0 {
            "warning"
        } else if never_reported(node) {
            "unknown"
        } else {
            "ok"
        };
        json!({ "state": state, "critical": c.critical, "warning": c.warning })
    }
}

/// A node that never spoke to colocd has sent no health report either.
fn never_reported(node: &pb::Node) -> bool {
    node.last_seen_unix <= 0 || node.status == pb::NodeStatus::Enrolling as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600;

    fn disk_alert() -> pb::Alert {
        pb::Alert {
            id: 12,
            rule: "disk-nvme-critical-warning".into(),
            severity: pb::AlertSeverity::Critical as i32,
            subject: Some(pb::AlertSubject {
                kind: pb::AlertSubjectKind::Disk as i32,
                node: "n1".into(),
                name: "S4GNNX0N".into(),
                tenant: String::new(),
            }),
            state: pb::AlertState::Firing as i32,
            summary: "NVMe critical warning: reliability degraded".into(),
            started_unix: NOW - 3600,
            ..Default::default()
        }
    }

    fn volume_alert() -> pb::Alert {
        pb::Alert {
            id: 13,
            rule: "volume-full".into(),
            severity: pb::AlertSeverity::Warning as i32,
            subject: Some(pb::AlertSubject {
                kind: pb::AlertSubjectKind::Volume as i32,
                node: "n1".into(),
                name: "data".into(),
                tenant: "asso-x".into(),
            }),
            state: pb::AlertState::Firing as i32,
            summary: "volume asso-x/data is 93 % full".into(),
            started_unix: NOW - 60,
            ..Default::default()
        }
    }

    #[test]
    fn subjects_read_as_words() {
        assert_eq!(
            subject_text(disk_alert().subject.as_ref()),
            "disk S4GNNX0N on n1"
        );
        assert_eq!(
            subject_text(volume_alert().subject.as_ref()),
            "volume asso-x/data on n1"
        );
        let node = pb::AlertSubject {
            kind: pb::AlertSubjectKind::Node as i32,
            node: "n1".into(),
            name: "n1".into(),
            tenant: String::new(),
        };
        assert_eq!(subject_text(Some(&node)), "node n1");
        let tenant = pb::AlertSubject {
            kind: pb::AlertSubjectKind::Tenant as i32,
            tenant: "asso-x".into(),
            ..Default::default()
        };
        assert_eq!(subject_text(Some(&tenant)), "tenant asso-x");
        assert_eq!(subject_text(None), "-");
    }

    #[test]
    fn alert_list_says_who_handles_what() {
        let mut acked = disk_alert();
        acked.acked_by = "mia".into();
        acked.acked_unix = NOW - 600;
        acked.ack_comment = "spare ordered".into();
        acked.silenced_until_unix = NOW + 7200;
        acked.silenced_by = "mia".into();
        let mut old_silence = volume_alert();
        old_silence.silenced_until_unix = NOW - 1;
        let table = alerts_table(&[acked.clone(), old_silence], NOW);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ID  SEVERITY  STATE"), "{table}");
        assert!(
            lines[1].contains("CRITICAL  firing")
                && lines[1].contains("disk S4GNNX0N on n1")
                && lines[1].contains("acked by mia, silenced until 2026-01-01 02:00")
                && lines[1].ends_with("NVMe critical warning: reliability degraded"),
            "{table}"
        );
        // A silence in the past no longer holds.
        assert!(
            lines[2].contains("WARNING   firing") && !lines[2].contains("silenced"),
            "{table}"
        );
        assert_eq!(alerts_table(&[], NOW), "no alerts\n");

        let text = alert_details(&acked, NOW);
        for needle in [
            "Alert:         12\n",
            "Severity:      CRITICAL\n",
            "State:         FIRING since 2025-12-31 23:00 UTC\n",
            "Subject:       disk S4GNNX0N on n1\n",
            "Rule:          disk-nvme-critical-warning\n",
            "Acknowledged:  by mia on 2025-12-31 23:50 UTC: spare ordered\n",
            "Silenced:      until 2026-01-01 02:00 UTC by mia\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in\n{text}");
        }
        let mut resolved = volume_alert();
        resolved.state = pb::AlertState::Resolved as i32;
        resolved.ended_unix = NOW;
        let text = alert_details(&resolved, NOW);
        assert!(
            text.contains("resolved 2026-01-01 00:00 UTC (fired 2025-12-31 23:59 UTC)"),
            "{text}"
        );
        assert!(text.contains("Tenant:        asso-x"), "{text}");
        assert!(text.contains("Acknowledged:  no"), "{text}");
        assert!(alerts_table(&[resolved], NOW).contains("resolved 2026-01-01 00:00"));
    }

    #[test]
    fn alert_json_round_trips_with_words() {
        let mut a = disk_alert();
        a.ack_comment = "on it \u{1b}[2J".into();
        let v = alert_json(&a);
        let back: Value = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(back, v);
        assert_eq!(back["id"], 12);
        assert_eq!(back["severity"], "critical");
        assert_eq!(back["state"], "firing");
        assert_eq!(back["subject"]["kind"], "disk");
        assert_eq!(back["subject"]["name"], "S4GNNX0N");
        assert_eq!(back["ended_unix"], 0);
        // JSON carries the text as colocd sent it; scripts escape it.
        assert_eq!(back["ack_comment"], "on it \u{1b}[2J");
        assert!(!alert_details(&a, NOW).contains('\u{1b}'));
    }

    fn node(name: &str, status: pb::NodeStatus, last_seen: i64) -> pb::Node {
        pb::Node {
            name: name.into(),
            status: status as i32,
            last_seen_unix: last_seen,
            ..Default::default()
        }
    }

    #[test]
    fn node_list_health_column() {
        let mut other = disk_alert();
        other.subject.as_mut().unwrap().node = "n2".into();
        let mut resolved = disk_alert();
        resolved.state = pb::AlertState::Resolved as i32;
        let tenant_wide = pb::Alert {
            severity: pb::AlertSeverity::Critical as i32,
            state: pb::AlertState::Firing as i32,
            subject: Some(pb::AlertSubject {
                kind: pb::AlertSubjectKind::Tenant as i32,
                tenant: "asso-x".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let health =
            FleetHealth::from_alerts(&[disk_alert(), volume_alert(), other, resolved, tenant_wide]);
        let n1 = node("n1", pb::NodeStatus::Ready, NOW);
        let n2 = node("n2", pb::NodeStatus::Unreachable, NOW);
        let n3 = node("n3", pb::NodeStatus::Ready, NOW);
        let fresh = node("n4", pb::NodeStatus::Enrolling, 0);
        let gone = node("n5", pb::NodeStatus::Removed, NOW);
        assert_eq!(health.word(&n1), "1 critical, 1 warning");
        assert_eq!(health.word(&n2), "1 critical");
        assert_eq!(health.word(&n3), "ok");
        assert_eq!(health.word(&fresh), "unknown");
        assert_eq!(health.word(&gone), "-");
        assert_eq!(
            health.json(&n1),
            json!({"state": "critical", "critical": 1, "warning": 1})
        );
        assert_eq!(health.json(&n3)["state"], "ok");
        assert_eq!(health.json(&fresh)["state"], "unknown");
        assert_eq!(FleetHealth::Hidden.word(&n1), "-");
        assert_eq!(FleetHealth::Hidden.json(&n1), Value::Null);
        let only_warnings = FleetHealth::from_alerts(&[volume_alert()]);
        assert_eq!(only_warnings.word(&n1), "1 warning");
        assert_eq!(only_warnings.json(&n1)["state"], "warning");
    }
}

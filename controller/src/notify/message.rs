//! What a group of events looks like to people and to programs: one
//! subject line, one plain-text body (e-mail, ntfy, and the `text` field
//! chat bridges read), one JSON document. Pure functions, tested here.

use std::fmt::Write;

use serde_json::json;

use super::{AlertEvent, EventKind, Severity};

/// Events listed in a text body; the rest are counted (the JSON document
/// carries them all).
const LISTED: usize = 50;
/// Longest subject, in characters: mail clients and phones cut beyond.
const SUBJECT_CHARS: usize = 160;

fn counts(events: &[AlertEvent]) -> (usize, usize) {
    let firing = events
        .iter()
        .filter(|e| e.kind == EventKind::Firing)
        .count();
    (firing, events.len() - firing)
}

/// "2 firing, 1 resolved" (a zero count is left out).
fn count_phrase(events: &[AlertEvent]) -> String {
    let (firing, resolved) = counts(events);
    let mut parts = Vec::new();
    if firing > 0 {
        parts.push(format!("{firing} firing"));
    }
    if resolved > 0 {
        parts.push(format!("{resolved} resolved"));
    }
    parts.join(", ")
}

/// The event people should read first: a firing critical one, then any
/// firing one, then the first.
fn headline(events: &[AlertEvent]) -> Option<&AlertEvent> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Firing)
        .max_by_key(|e| (e.severity, std::cmp::Reverse(e.id)))
        .or_else(|| events.first())
}

/// `[coloc] 2 firing, 1 resolved: disk-nvme-critical-warning on disk S1 on node-a, and 2 more`.
pub fn render_subject(events: &[AlertEvent]) -> String {
    let Some(first) = headline(events) else {
        return "[coloc] no alerts".to_string();
    };
    let mut subject = format!(
        "[coloc] {}: {} on {}",
        count_phrase(events),
        first.rule,
        first.subject
    );
    if events.len() > 1 {
        let _ = write!(subject, ", and {} more", events.len() - 1);
    }
    // Control characters would break a mail header or an HTTP header.
    let mut clean: String = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() > SUBJECT_CHARS {
        clean = clean.chars().take(SUBJECT_CHARS - 3).collect();
        clean.push_str("...");
    }
    clean
}

/// "2026-12-05 21:03:00 UTC".
fn when(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// "1 h 5 min", "42 s".
fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// The plain-text body: a count line, then each event with its severity,
/// subject, summary, times and the command that shows it.
pub fn render_text(events: &[AlertEvent]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "coloc alerts: {}.", count_phrase(events));
    for event in events.iter().take(LISTED) {
        text.push('\n');
        let _ = writeln!(
            text,
            "{} {} {}",
            event.kind.as_str().to_uppercase(),
            event.severity.as_str(),
            event.rule
        );
        let _ = writeln!(text, "  subject: {}", event.subject);
        if let Some(tenant) = &event.tenant {
            let _ = writeln!(text, "  tenant:  {tenant}");
        }
        let _ = writeln!(text, "  {}", event.summary);
        match (event.kind, event.ended_unix) {
            (EventKind::Resolved, Some(ended)) => {
                let _ = writeln!(
                    text,
                    "  from {} to {} ({})",
                    when(event.started_unix),
                    when(ended),
                    duration(ended - event.started_unix)
                );
            }
            _ => {
                let _ = writeln!(text, "  since {}", when(event.started_unix));
            }
        }
        if event.alert_id > 0 {
            let _ = writeln!(text, "  coloc alert show {}", event.alert_id);
        }
    }
    if events.len() > LISTED {
        let _ = writeln!(
            text,
            "\n... and {} more: coloc alert list",
            events.len() - LISTED
        );
    }
    text
}

/// The group's status for programs: "firing" while any event in it fires.
fn status(events: &[AlertEvent]) -> &'static str {
    if counts(events).0 > 0 {
        EventKind::Firing.as_str()
    } else {
        EventKind::Resolved.as_str()
    }
}

/// `{"version":1,"status":"firing|resolved","title":...,"text":...,"events":[...]}`.
pub fn json_payload(events: &[AlertEvent]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "alert_id": e.alert_id,
                "status": e.kind.as_str(),
                "rule": e.rule,
                "severity": e.severity.as_str(),
                "node": e.node,
                "tenant": e.tenant,
                "subject": e.subject,
                "summary": e.summary,
                "started_unix": e.started_unix,
                "ended_unix": e.ended_unix,
            })
        })
        .collect();
    json!({
        "version": 1,
        "status": status(events),
        "title": render_subject(events),
        "text": render_text(events),
        "events": list,
    })
}

/// ntfy's Priority header: urgent for a firing critical alert, high for a
/// firing warning, default for information, low when everything resolved.
pub(super) fn ntfy_priority(events: &[AlertEvent]) -> &'static str {
    let firing = events.iter().filter(|e| e.kind == EventKind::Firing);
    match firing.map(|e| e.severity).max() {
        Some(Severity::Critical) => "urgent",
        Some(Severity::Warning) => "high",
        Some(Severity::Info) => "default",
        None => "low",
    }
}

/// ntfy's Tags header (shown as emoji) and the group's status.
pub(super) fn ntfy_tags(events: &[AlertEvent]) -> String {
    let firing = events.iter().filter(|e| e.kind == EventKind::Firing);
    let icon = match firing.map(|e| e.severity).max() {
        Some(Severity::Critical) => "rotating_light",
        Some(Severity::Warning) => "warning",
        Some(Severity::Info) => "information_source",
        None => "white_check_mark",
    };
    format!("{icon},coloc,{}", status(events))
}

/// An HTTP header value keeps to visible ASCII.
pub(super) fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        id: i64,
        kind: EventKind,
        severity: Severity,
        rule: &str,
        subject: &str,
    ) -> AlertEvent {
        AlertEvent {
            id,
            alert_id: id as u64 + 100,
            kind,
            rule: rule.to_string(),
            severity,
            node: Some("node-a".to_string()),
            tenant: None,
            subject: subject.to_string(),
            summary: "something measured".to_string(),
            started_unix: 1_764_968_400,
            ended_unix: (kind == EventKind::Resolved).then_some(1_764_968_400 + 3900),
            silenced: false,
        }
    }

    #[test]
    fn subject_counts_and_leads_with_the_worst_firing_event() {
        let events = vec![
            event(
                1,
                EventKind::Resolved,
                Severity::Warning,
                "pool-capacity",
                "pool tank on node-b",
            ),
            event(
                2,
                EventKind::Firing,
                Severity::Warning,
                "disk-temperature",
                "disk S2 on node-a",
            ),
            event(
                3,
                EventKind::Firing,
                Severity::Critical,
                "disk-nvme-critical-warning",
                "disk S1 on node-a",
            ),
        ];
        assert_eq!(
            render_subject(&events),
            "[coloc] 2 firing, 1 resolved: disk-nvme-critical-warning on disk S1 on node-a, and 2 more"
        );
        assert_eq!(
            render_subject(&events[..1]),
            "[coloc] 1 resolved: pool-capacity on pool tank on node-b"
        );
        assert_eq!(ntfy_priority(&events), "urgent");
        assert_eq!(ntfy_priority(&events[..1]), "low");
        assert_eq!(ntfy_tags(&events[..2]), "warning,coloc,firing");
    }

    #[test]
    fn subject_is_one_bounded_line() {
        let long = "x".repeat(400);
        let events = vec![event(
            1,
            EventKind::Firing,
            Severity::Warning,
            "r\nule",
            &long,
        )];
        let subject = render_subject(&events);
        assert!(!subject.contains('\n'));
        assert_eq!(subject.chars().count(), SUBJECT_CHARS);
        assert!(subject.ends_with("..."));
    }

    #[test]
    fn text_lists_each_event_with_times_and_command() {
        let events = vec![
            event(
                1,
                EventKind::Firing,
                Severity::Critical,
                "disk-smart-failing",
                "disk S1 on node-a",
            ),
            event(
                2,
                EventKind::Resolved,
                Severity::Warning,
                "pool-capacity",
                "pool tank on node-a",
            ),
        ];
        let text = render_text(&events);
        assert!(
            text.starts_with("coloc alerts: 1 firing, 1 resolved.\n"),
            "{text}"
        );
        assert!(text.contains("FIRING critical disk-smart-failing\n  subject: disk S1 on node-a\n  something measured\n  since 2025-12-05 21:00:00 UTC\n  coloc alert show 101\n"), "{text}");
        assert!(
            text.contains("from 2025-12-05 21:00:00 UTC to 2025-12-05 22:05:00 UTC (1 h 5 min)"),
            "{text}"
        );
        assert!(text.contains("coloc alert show 102"));
    }

    #[test]
    fn long_groups_are_counted_not_listed() {
        let events: Vec<AlertEvent> = (1..=60)
            .map(|i| {
                event(
                    i,
                    EventKind::Firing,
                    Severity::Warning,
                    "unit-failed",
                    "unit x",
                )
            })
            .collect();
        let text = render_text(&events);
        assert_eq!(text.matches("coloc alert show").count(), LISTED);
        assert!(
            text.ends_with("... and 10 more: coloc alert list\n"),
            "{text}"
        );
        assert_eq!(
            json_payload(&events)["events"].as_array().unwrap().len(),
            60
        );
    }

    #[test]
    fn json_has_version_status_and_every_event() {
        let events = vec![event(
            7,
            EventKind::Resolved,
            Severity::Critical,
            "node-unreachable",
            "node node-a",
        )];
        let doc = json_payload(&events);
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["status"], "resolved");
        assert_eq!(doc["events"][0]["id"], 7);
        assert_eq!(doc["events"][0]["alert_id"], 107);
        assert_eq!(doc["events"][0]["severity"], "critical");
        assert_eq!(doc["events"][0]["node"], "node-a");
        assert!(doc["events"][0]["tenant"].is_null());
        assert_eq!(doc["events"][0]["ended_unix"], 1_764_968_400 + 3900);
        assert!(doc["text"].as_str().unwrap().contains("node-unreachable"));
    }

    #[test]
    fn headers_stay_ascii() {
        assert_eq!(header_safe("disk é\tok"), "disk ??ok");
    }
}

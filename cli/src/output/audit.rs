//! The audit log: who did what to what, allowed, denied or failed,
//! newest first.

use coloc_proto::controller::v1 as pb;
use serde_json::{Value, json};

use super::{Table, clean, fmt_time_ms, or_dash};

pub fn audit_outcome(outcome: i32) -> &'static str {
    match pb::AuditOutcome::try_from(outcome) {
        Ok(pb::AuditOutcome::Allowed) => "allowed",
        Ok(pb::AuditOutcome::Denied) => "denied",
        Ok(pb::AuditOutcome::Failed) => "failed",
        Ok(pb::AuditOutcome::Unspecified) | Err(_) => "unknown",
    }
}

pub fn audit_json(e: &pb::AuditEntry) -> Value {
    json!({
        "id": e.id,
        "at_unix_ms": e.at_unix_ms,
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "tenant": e.tenant,
        "outcome": audit_outcome(e.outcome),
        "detail": e.detail,
    })
}

pub fn audit_table(entries: &[pb::AuditEntry]) -> String {
    Table::new(&[
        "ID",
        "TIME (UTC)",
        "ACTOR",
        "ACTION",
        "TARGET",
        "TENANT",
        "OUTCOME",
        "DETAIL",
    ])
    .rows(entries, |e| {
        vec![
            e.id.to_string(),
            fmt_time_ms(e.at_unix_ms),
            clean(&e.actor).into(),
            clean(&e.action).into(),
            or_dash(&e.target).into(),
            or_dash(&e.tenant).into(),
            audit_outcome(e.outcome).to_string(),
            or_dash(&e.detail).into(),
        ]
    })
    .render_or("no audit entries")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_words() {
        assert_eq!(audit_outcome(pb::AuditOutcome::Denied as i32), "denied");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("plain é"), "plain é");
        assert_eq!(clean("a\x1b[31mb\nc"), "a\\u{1b}[31mb\\nc");
        let mut e = pb::AuditEntry {
            id: 7,
            actor: "anonymous".into(),
            action: "node.enroll".into(),
            detail: "bad name \"\x1b]0;pwned\x07\"".into(),
            ..Default::default()
        };
        e.outcome = pb::AuditOutcome::Denied as i32;
        let text = audit_table(&[e]);
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(text.contains("denied"));
    }
}

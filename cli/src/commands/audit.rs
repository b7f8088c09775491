//! `coloc audit`: a page of the audit log, and the command that shows the
//! next one.

use coloc_proto::controller::v1 as pb;

use super::{call, connect};
use crate::args::{AuditArgs, GlobalArgs};
use crate::error::Failure;
use crate::output::Printer;
use crate::output::audit::{audit_json, audit_table};

/// colocd's page size when none is asked for.
const AUDIT_DEFAULT_LIMIT: u32 = 100;

pub async fn audit(global: &GlobalArgs, out: Printer, args: AuditArgs) -> Result<(), Failure> {
    let limit = args.limit.unwrap_or(AUDIT_DEFAULT_LIMIT);
    let request = pb::ListAuditRequest {
        before: args.before.unwrap_or(0),
        limit,
        tenant: args
            .tenant
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_default(),
        actor: args.actor.clone().unwrap_or_default(),
    };
    let api = connect(global).await?;
    let list = call(&api, api.audit().list_audit(request)).await?;
    out.list(&list.entries, audit_json, audit_table)?;
    if let Some(hint) = next_audit_page(&args, limit, &list.entries) {
        out.note(&format!("Older entries may exist: {hint}"));
    }
    Ok(())
}

/// The command that shows the page after a full one (same filters, older
/// entries), or None when the page was not full.
fn next_audit_page(args: &AuditArgs, limit: u32, entries: &[pb::AuditEntry]) -> Option<String> {
    if entries.len() < limit as usize {
        return None;
    }
    let oldest = entries.iter().map(|e| e.id).min()?;
    let mut hint = format!("coloc audit --before {oldest}");
    if let Some(tenant) = &args.tenant {
        hint.push_str(&format!(" --tenant {tenant}"));
    }
    if let Some(actor) = &args.actor {
        hint.push_str(&format!(" --actor {}", shell_word(actor)));
    }
    if let Some(limit) = args.limit {
        hint.push_str(&format!(" --limit {limit}"));
    }
    Some(hint)
}

/// Quotes a word for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '@' | '/'));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coloc_proto::domain;

    fn entries(ids: &[u64]) -> Vec<pb::AuditEntry> {
        ids.iter()
            .map(|&id| pb::AuditEntry {
                id,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn audit_paging_hint_keeps_the_filters() {
        let args = AuditArgs {
            tenant: Some(domain::TenantName::new("asso-x").unwrap()),
            actor: Some("user:alice".into()),
            limit: Some(3),
            before: None,
        };
        assert_eq!(
            next_audit_page(&args, 3, &entries(&[12, 11, 9])).as_deref(),
            Some("coloc audit --before 9 --tenant asso-x --actor user:alice --limit 3")
        );
        assert_eq!(next_audit_page(&args, 3, &entries(&[12, 11])), None);
        let plain = AuditArgs {
            tenant: None,
            actor: Some("it's me".into()),
            limit: None,
            before: Some(50),
        };
        assert_eq!(
            next_audit_page(&plain, 2, &entries(&[49, 48])).as_deref(),
            Some("coloc audit --before 48 --actor 'it'\\''s me'")
        );
    }
}

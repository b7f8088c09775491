//! `coloc audit`: the entries asked for, read page by page (colocd
//! bounds each page in bytes, so a log of large entries never yields a
//! message too large to read), and the command that shows the next ones.

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
    let api = connect(global).await?;
    let mut entries: Vec<pb::AuditEntry> = Vec::new();
    let mut before = args.before.unwrap_or(0);
    let more = loop {
        let wanted = limit.saturating_sub(entries.len() as u32);
        let request = pb::ListAuditRequest {
            before,
            limit: wanted,
            tenant: args
                .tenant
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_default(),
            actor: args.actor.clone().unwrap_or_default(),
        };
        let page = call(&api, api.audit().list_audit(request)).await?;
        let got = page.entries.len();
        entries.extend(page.entries);
        match next_page(
            page.next_before,
            got,
            (limit as usize).saturating_sub(entries.len()),
        ) {
            Next::Fetch(next) => before = next,
            Next::Done { more } => break more.then_some(page.next_before),
        }
    };
    out.list(&entries, audit_json, audit_table)?;
    if let Some(oldest) = more {
        out.note(&format!(
            "Older entries may exist: {}",
            next_audit_command(&args, oldest)
        ));
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Ask again, before this id.
    Fetch(u64),
    /// Stop; `more` when colocd has older entries than those shown.
    Done { more: bool },
}

/// What to do after a page of `got` entries whose cursor is
/// `next_before` (0: none), with `left` entries still wanted.
fn next_page(next_before: u64, got: usize, left: usize) -> Next {
    match (next_before, left) {
        (0, _) => Next::Done { more: false },
        (_, 0) => Next::Done { more: true },
        // A page without entries would never end; colocd always sends one.
        _ if got == 0 => Next::Done { more: true },
        (next, _) => Next::Fetch(next),
    }
}

/// The command that shows the entries older than `oldest` with the same
/// filters.
fn next_audit_command(args: &AuditArgs, oldest: u64) -> String {
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
    hint
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

    #[test]
    fn audit_paging_hint_keeps_the_filters() {
        let args = AuditArgs {
            tenant: Some(domain::TenantName::new("asso-x").unwrap()),
            actor: Some("user:alice".into()),
            limit: Some(3),
            before: None,
        };
        assert_eq!(
            next_audit_command(&args, 9),
            "coloc audit --before 9 --tenant asso-x --actor user:alice --limit 3"
        );
        let plain = AuditArgs {
            tenant: None,
            actor: Some("it's me".into()),
            limit: None,
            before: Some(50),
        };
        assert_eq!(
            next_audit_command(&plain, 48),
            "coloc audit --before 48 --actor 'it'\\''s me'"
        );
    }

    #[test]
    fn pages_are_followed_until_enough_or_the_end() {
        assert_eq!(next_page(0, 100, 0), Next::Done { more: false });
        assert_eq!(next_page(0, 40, 60), Next::Done { more: false });
        assert_eq!(next_page(41, 100, 0), Next::Done { more: true });
        assert_eq!(next_page(41, 40, 60), Next::Fetch(41));
        assert_eq!(next_page(41, 0, 60), Next::Done { more: true });
    }
}

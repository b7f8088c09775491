//! The audit area of the store: an append-only log of who did what to
//! which object, allowed, denied or failed.
//!
//! Entries are appended and listed, never changed or removed: the trait
//! has no method that could, and a backend refuses it below the trait as
//! well (the SQLite schema's triggers). What is worth an entry is decided
//! by the API layer, not here.
//!
//! What an entry may hold is decided here, once: every text field goes
//! through [`audit_text`] when an [`AuditRecord`] is made, whether a
//! writer makes it (the API frame, colocd's own tasks, enrollment,
//! `colocd init`) or a backend reads it back, so no writer can store a
//! raw request field and an entry written before the rule existed is
//! listed bounded too. Listings are bounded in bytes as well as in
//! entries ([`AUDIT_PAGE_BYTES`]), so a page always fits in a message.

use async_trait::async_trait;
use coloc_proto::domain::TenantName;

use super::StoreResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    Allowed,
    Denied,
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allowed => "allowed",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }
}

/// Longest actor kept, in bytes (`user:<name>`, `node:<name>`, `anonymous`).
pub const AUDIT_ACTOR_BYTES: usize = 128;
/// Longest action kept, in bytes (`volume.create`).
pub const AUDIT_ACTION_BYTES: usize = 64;
/// Longest target kept, in bytes (`app:<tenant>/<app>`, or what a caller
/// wrote, each part already cut by the API's `shown`).
pub const AUDIT_TARGET_BYTES: usize = 512;
/// Longest detail kept, in bytes (an error message, what changed).
pub const AUDIT_DETAIL_BYTES: usize = 1024;

/// The one rule for text in the audit log: characters that could break
/// or disguise a line (control characters, Unicode line separators and
/// bidirectional overrides) are shown escaped, as `\n`, `\t`, `\r` or
/// `\u{1b}`, and a value longer than `max_bytes` once escaped is cut at
/// a character boundary and ends with `… (N bytes)`, N being the length
/// of the value as given. The result is never longer than `max_bytes`
/// and contains nothing this rule escapes, so applying it again changes
/// nothing.
pub fn audit_text(text: &str, max_bytes: usize) -> String {
    if let Some(whole) = escaped_within(text, max_bytes) {
        return whole;
    }
    let note = format!("… ({} bytes)", text.len());
    let mut out = String::with_capacity(max_bytes);
    push_escaped(&mut out, text, max_bytes.saturating_sub(note.len()));
    out.push_str(&note);
    out
}

/// `text` escaped, or None when that is longer than `max_bytes`.
fn escaped_within(text: &str, max_bytes: usize) -> Option<String> {
    if text.len() <= max_bytes && !text.chars().any(needs_escape) {
        return Some(text.to_owned());
    }
    let mut out = String::with_capacity(text.len().min(max_bytes));
    push_escaped(&mut out, text, max_bytes).then_some(out)
}

/// Appends `text` escaped to `out`, whole characters and whole escapes
/// only, as long as `out` stays within `max_bytes`; true when all of it
/// fitted.
fn push_escaped(out: &mut String, text: &str, max_bytes: usize) -> bool {
    for c in text.chars() {
        let escape = needs_escape(c).then(|| match c {
            '\n' => "\\n".to_string(),
            '\r' => "\\r".to_string(),
            '\t' => "\\t".to_string(),
            _ => format!("\\u{{{:x}}}", u32::from(c)),
        });
        let len = escape.as_ref().map_or(c.len_utf8(), String::len);
        if out.len() + len > max_bytes {
            return false;
        }
        match escape {
            Some(e) => out.push_str(&e),
            None => out.push(c),
        }
    }
    true
}

/// Characters that could end a line or reorder what a reader sees.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' // line and paragraph separators
                | '\u{200e}' | '\u{200f}' | '\u{061c}' // direction marks
                | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' // embeddings, overrides, isolates
        )
}

/// What a writer (or a backend reading a row back) says about an entry,
/// as raw as it comes; [`AuditRecord::new`] bounds it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditFields {
    pub at_unix_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// Tenant the target belongs to; None for cooperative-wide objects.
    pub tenant: Option<TenantName>,
    pub outcome: AuditOutcome,
    pub detail: String,
}

/// One audit entry, every text field bounded and escaped by
/// [`audit_text`]. The fields are private so that the only ways to make
/// one are [`AuditRecord::new`] and [`AuditRecord::stored`].
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    id: u64,
    fields: AuditFields,
}

impl AuditRecord {
    /// A new entry; the store assigns its id when appending it.
    pub fn new(fields: AuditFields) -> Self {
        Self::stored(0, fields)
    }

    /// An entry read back from a backend, bounded by the same rule (rows
    /// written before it may hold anything).
    pub fn stored(id: u64, f: AuditFields) -> Self {
        Self {
            id,
            fields: AuditFields {
                at_unix_ms: f.at_unix_ms,
                actor: audit_text(&f.actor, AUDIT_ACTOR_BYTES),
                action: audit_text(&f.action, AUDIT_ACTION_BYTES),
                target: audit_text(&f.target, AUDIT_TARGET_BYTES),
                tenant: f.tenant,
                outcome: f.outcome,
                detail: audit_text(&f.detail, AUDIT_DETAIL_BYTES),
            },
        }
    }

    /// 0 until the store has appended it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The entry's fields, bounded.
    pub fn fields(&self) -> &AuditFields {
        &self.fields
    }

    pub fn into_fields(self) -> AuditFields {
        self.fields
    }

    /// About what the entry takes in a listing message: its text and a
    /// fixed allowance for the numbers and the framing.
    pub fn listed_bytes(&self) -> usize {
        let f = &self.fields;
        64 + f.actor.len()
            + f.action.len()
            + f.target.len()
            + f.tenant.as_ref().map_or(0, |t| t.as_str().len())
            + f.detail.len()
    }
}

/// Audit listing: page size when the caller asks for 0, and the most a
/// caller may ask for.
pub const AUDIT_DEFAULT_LIMIT: u32 = 100;
pub const AUDIT_MAX_LIMIT: u32 = 1000;
/// Most bytes of entries one listing returns ([`AuditRecord::listed_bytes`]):
/// a quarter of what a client decodes (`coloc_proto::MAX_MESSAGE_BYTES`),
/// so a page always fits whatever the entries hold.
pub const AUDIT_PAGE_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries with id < before.
    pub before: Option<u64>,
    /// Newest first, at most this many ([`AuditFilter::page_size`]).
    pub limit: u32,
    pub tenant: Option<TenantName>,
    pub actor: Option<String>,
}

impl AuditFilter {
    /// How many entries a listing returns at most: the limit asked,
    /// [`AUDIT_DEFAULT_LIMIT`] for 0, never more than [`AUDIT_MAX_LIMIT`].
    pub fn page_size(&self) -> u32 {
        match self.limit {
            0 => AUDIT_DEFAULT_LIMIT,
            n => n.min(AUDIT_MAX_LIMIT),
        }
    }
}

/// One page of the log, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditPage {
    pub entries: Vec<AuditRecord>,
    /// Set when older entries may match too: list again with this as
    /// `before` (the oldest id of this page).
    pub next_before: Option<u64>,
}

impl AuditPage {
    /// Builds a page from rows read newest first, stopping at the
    /// filter's page size or at [`AUDIT_PAGE_BYTES`], whichever comes
    /// first (one entry always fits, being bounded). A backend hands over
    /// at most one row past the page size, lazily, so that a row it need
    /// not read is never read; a row past the page means there is more.
    pub fn collect<E>(
        filter: &AuditFilter,
        rows: impl IntoIterator<Item = Result<AuditRecord, E>>,
    ) -> Result<Self, E> {
        let limit = filter.page_size() as usize;
        let mut page = AuditPage::default();
        let mut bytes = 0;
        for entry in rows {
            let entry = entry?;
            let size = entry.listed_bytes();
            if page.entries.len() == limit
                || (!page.entries.is_empty() && bytes + size > AUDIT_PAGE_BYTES)
            {
                page.next_before = page.entries.last().map(AuditRecord::id);
                break;
            }
            bytes += size;
            page.entries.push(entry);
        }
        Ok(page)
    }
}

#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    async fn append_audit(&self, entry: AuditRecord) -> StoreResult<u64>;
    /// Newest first, at most [`AuditFilter::page_size`] entries and
    /// [`AUDIT_PAGE_BYTES`] of them.
    async fn list_audit(&self, filter: AuditFilter) -> StoreResult<AuditPage>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_plain_text_is_kept() {
        assert_eq!(audit_text("node:n1", 64), "node:n1");
        assert_eq!(audit_text("tenant:asso-é", 64), "tenant:asso-é");
        assert_eq!(audit_text("C:\\path", 64), "C:\\path");
    }

    #[test]
    fn line_breaks_and_terminal_controls_are_shown_escaped() {
        assert_eq!(audit_text("a\nb\rc\td", 64), "a\\nb\\rc\\td");
        assert_eq!(audit_text("\u{1b}[31mred", 64), "\\u{1b}[31mred");
        assert_eq!(audit_text("x\u{7f}\u{85}", 64), "x\\u{7f}\\u{85}");
        assert_eq!(
            audit_text("a\u{2028}b\u{202e}c", 64),
            "a\\u{2028}b\\u{202e}c"
        );
        assert_eq!(audit_text("\u{2066}\u{200f}", 64), "\\u{2066}\\u{200f}");
    }

    #[test]
    fn long_text_is_cut_with_its_length_noted() {
        let long = "a".repeat(1000);
        let shown = audit_text(&long, 100);
        assert!(shown.len() <= 100, "{}", shown.len());
        assert!(shown.starts_with("aaaa"));
        assert!(shown.ends_with("… (1000 bytes)"), "{shown}");
        // Exactly at the limit: kept whole.
        assert_eq!(audit_text(&"b".repeat(100), 100), "b".repeat(100));
    }

    #[test]
    fn cuts_fall_between_characters_and_escapes() {
        let text = "é".repeat(200);
        let shown = audit_text(&text, 101);
        assert!(shown.len() <= 101);
        assert!(shown.ends_with("… (400 bytes)"));
        let escapes = "\u{1b}".repeat(100);
        let shown = audit_text(&escapes, 64);
        assert!(shown.len() <= 64);
        let kept = shown.split('…').next().unwrap();
        assert!(kept.len().is_multiple_of("\\u{1b}".len()), "{shown}");
        assert!(kept.chars().all(|c| "\\u{1b}".contains(c)), "{shown}");
    }

    #[test]
    fn the_rule_applied_twice_changes_nothing() {
        for text in [
            "plain".to_string(),
            "a\nb\u{1b}".repeat(50),
            "é\u{202e}".repeat(300),
            "x".repeat(5000),
        ] {
            for max in [40, 100, 512] {
                let once = audit_text(&text, max);
                assert!(once.len() <= max);
                assert_eq!(audit_text(&once, max), once, "{text:?} at {max}");
            }
        }
    }

    #[test]
    fn records_are_bounded_whoever_makes_them() {
        let r = AuditRecord::new(AuditFields {
            at_unix_ms: 7,
            actor: "anonymous\n".into(),
            action: "a".repeat(500),
            target: "t".repeat(10_000),
            tenant: None,
            outcome: AuditOutcome::Denied,
            detail: "d\u{0}".repeat(10_000),
        });
        let f = r.fields();
        assert_eq!(r.id(), 0);
        assert_eq!(f.actor, "anonymous\\n");
        assert!(f.action.len() <= AUDIT_ACTION_BYTES);
        assert!(f.target.len() <= AUDIT_TARGET_BYTES);
        assert!(f.detail.len() <= AUDIT_DETAIL_BYTES);
        assert!(f.detail.ends_with("… (20000 bytes)"), "{}", f.detail);
        assert!(r.listed_bytes() < 2048);
        assert_eq!(AuditRecord::stored(3, r.clone().into_fields()).fields(), f);
    }

    #[test]
    fn pages_stop_at_their_size_or_their_bytes() {
        let entry = |id: u64, bytes: usize| {
            Ok::<_, ()>(AuditRecord::stored(
                id,
                AuditFields {
                    at_unix_ms: 0,
                    actor: "user:a".into(),
                    action: "x".into(),
                    target: String::new(),
                    tenant: None,
                    outcome: AuditOutcome::Allowed,
                    detail: "d".repeat(bytes),
                },
            ))
        };
        let small = AuditFilter {
            limit: 2,
            ..AuditFilter::default()
        };
        let page = AuditPage::collect(&small, (1..=3).rev().map(|id| entry(id, 1))).unwrap();
        assert_eq!(page.entries.len(), 2);
        assert_eq!(page.next_before, Some(2));
        let page = AuditPage::collect(&small, (1..=2).rev().map(|id| entry(id, 1))).unwrap();
        assert_eq!((page.entries.len(), page.next_before), (2, None));

        let big = AuditFilter {
            limit: 1000,
            ..AuditFilter::default()
        };
        let rows = (1..=1001u64).rev().map(|id| entry(id, AUDIT_DETAIL_BYTES));
        let page = AuditPage::collect(&big, rows).unwrap();
        let bytes: usize = page.entries.iter().map(AuditRecord::listed_bytes).sum();
        assert!(bytes <= AUDIT_PAGE_BYTES);
        assert!(page.entries.len() > 100 && page.entries.len() < 1000);
        assert_eq!(page.next_before, page.entries.last().map(AuditRecord::id));
    }
}

//! Where the agent's logs go, and what a sysadmin can filter them on.
//!
//! Under systemd (stderr connected to the journal) every `tracing` event
//! goes to journald through [`JournalLayer`], with the syslog identifier
//! `coloc-agent`: its message (followed by its fields, for the default
//! `journalctl` view), and each structured field as a journal field of its
//! own, so that `journalctl -u coloc-agent GENERATION=4` or
//! `journalctl COLOC_TENANT=asso-x` select entries. Field names map by
//! [`journal_field`]; key events carry a constant `MESSAGE_ID` from
//! [`ids`] (`journalctl MESSAGE_ID=…`), documented in docs/ARCHITECTURE.md.
//! Elsewhere (a terminal, a test harness) a `tracing_subscriber` formatter
//! writes to stderr. Both honour `RUST_LOG` (per-target directives
//! included), default `info`.
//!
//! What is logged at which level: a pass that changes nothing logs at
//! debug; what changes (a volume created, an app restarted, a refusal, a
//! pass that starts or stops failing) logs once at info or above.

use std::fmt::Write as _;

use systemd_journal_logger::JournalLog;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// The syslog identifier of every journal entry the agent writes.
pub const SYSLOG_IDENTIFIER: &str = "coloc-agent";

/// The `MESSAGE_ID`s of the agent's key events: constant 128-bit ids, as
/// systemd's own catalog uses, so that a sysadmin or an alert rule can
/// select one kind of event whatever its wording becomes. An event carries
/// one as its `message_id` field. Never change a value: add a new one.
pub mod ids {
    /// A desired configuration generation was applied for the first time
    /// (or applies again after failing passes).
    pub const CONFIG_APPLIED: &str = "4d407ffca02246188bc251d88a8d718b";
    /// A desired configuration was refused as a whole (invalid, another
    /// node's, or older than the ledger's).
    pub const CONFIG_REFUSED: &str = "592c0116d76d4361a76147e5c1fadedb";
    /// A pass started failing, or fails differently.
    pub const PASS_FAILED: &str = "d8d653ee17684e2488b84939ae194a70";
    /// A storage pool was created or imported.
    pub const POOL_CREATED: &str = "3a12d393847f40c2a94c1b53bd4e4823";
    /// A tenant's volume was created.
    pub const VOLUME_CREATED: &str = "55e61efe0a7f47a1b7cf727f6b19dd11";
    /// A PURGED volume was destroyed with its snapshots.
    pub const VOLUME_DESTROYED: &str = "4d6516065cc3464c81ee149708be80bb";
    /// A volume was rolled back to its latest snapshot.
    pub const VOLUME_ROLLED_BACK: &str = "948939858d4a4ea1a540acb0445831b0";
    /// An object carrying a coloc id the configuration does not name was
    /// found (and left alone).
    pub const ORPHAN_FOUND: &str = "53245f0a377544a98b5f9574df7890c7";
    /// An app instance was (re)started because its nonce or files changed.
    pub const APP_RESTARTED: &str = "94dbcb075f674ce694ccdfbe1de81a7f";
    /// An app instance was removed (unit and configuration; data kept).
    pub const APP_REMOVED: &str = "bfc7e9a21bc941b5a7f888ea8d564241";
    /// The node enrolled with the controller.
    pub const ENROLLED: &str = "78cc17cea4e84d039a1008e7a625c815";

    /// Every id with its name, for the documentation test.
    pub const ALL: &[(&str, &str)] = &[
        ("CONFIG_APPLIED", CONFIG_APPLIED),
        ("CONFIG_REFUSED", CONFIG_REFUSED),
        ("PASS_FAILED", PASS_FAILED),
        ("POOL_CREATED", POOL_CREATED),
        ("VOLUME_CREATED", VOLUME_CREATED),
        ("VOLUME_DESTROYED", VOLUME_DESTROYED),
        ("VOLUME_ROLLED_BACK", VOLUME_ROLLED_BACK),
        ("ORPHAN_FOUND", ORPHAN_FOUND),
        ("APP_RESTARTED", APP_RESTARTED),
        ("APP_REMOVED", APP_REMOVED),
        ("ENROLLED", ENROLLED),
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot open the journal socket")]
    Journal(#[source] std::io::Error),
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(String),
}

/// Where logs went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Journal,
    Stderr,
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the agent's logger, once per process.
pub fn init() -> Result<LogTarget, LoggingError> {
    if systemd_journal_logger::connected_to_journal() {
        let journal = JournalLog::new()
            .map_err(LoggingError::Journal)?
            .with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned());
        tracing_subscriber::registry()
            .with(filter())
            .with(JournalLayer::new(move |entry: &Entry| {
                // A full or absent journal must not stop the agent.
                let _ = entry.with_record(|record| journal.journal_send(record));
            }))
            .try_init()
            .map_err(|e| LoggingError::Subscriber(e.to_string()))?;
        Ok(LogTarget::Journal)
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
            .map_err(|e| LoggingError::Subscriber(e.to_string()))?;
        Ok(LogTarget::Stderr)
    }
}

/// The journal field a `tracing` field is written to: its name in upper
/// case, except the tenant, written `COLOC_TENANT` (apps' own entries in
/// the same journal may well carry a `TENANT` of another meaning), and
/// `message_id`, which is journald's `MESSAGE_ID`. Characters journald
/// does not allow in a field name become `_`.
pub fn journal_field(name: &str) -> String {
    match name {
        "tenant" => "COLOC_TENANT".to_owned(),
        "message_id" => "MESSAGE_ID".to_owned(),
        other => other
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect::<String>()
            .trim_start_matches('_')
            .to_owned(),
    }
}

/// One event as the journal gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub level: Level,
    pub target: String,
    /// The message, then ` name=value` for each field (but the message id),
    /// as the plain `journalctl` view shows it.
    pub message: String,
    /// (journal field name, value), in the event's order.
    pub fields: Vec<(String, String)>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub module: Option<String>,
}

impl Entry {
    /// Lends the entry to `f` as a `log` record, fields as key-values: the
    /// shape the journal writer takes.
    pub fn with_record<R>(&self, f: impl FnOnce(&log::Record<'_>) -> R) -> R {
        let level = match self.level {
            Level::ERROR => log::Level::Error,
            Level::WARN => log::Level::Warn,
            Level::INFO => log::Level::Info,
            Level::DEBUG => log::Level::Debug,
            Level::TRACE => log::Level::Trace,
        };
        f(&log::Record::builder()
            .args(format_args!("{}", self.message))
            .level(level)
            .target(&self.target)
            .file(self.file.as_deref())
            .line(self.line)
            .module_path(self.module.as_deref())
            .key_values(self)
            .build())
    }
}

impl log::kv::Source for Entry {
    fn visit<'kvs>(
        &'kvs self,
        visitor: &mut dyn log::kv::VisitSource<'kvs>,
    ) -> Result<(), log::kv::Error> {
        for (key, value) in &self.fields {
            visitor.visit_pair(
                log::kv::Key::from_str(key),
                log::kv::Value::from(value.as_str()),
            )?;
        }
        Ok(())
    }
}

/// A `tracing` layer that turns each event into an [`Entry`] and hands it
/// to `send` (the journal in production, a vector in tests).
pub struct JournalLayer<F> {
    send: F,
}

impl<F: Fn(&Entry) + Send + Sync + 'static> JournalLayer<F> {
    pub fn new(send: F) -> JournalLayer<F> {
        JournalLayer { send }
    }
}

/// Collects an event's message and fields.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

impl Fields {
    fn push(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.fields.push((field.name().to_owned(), value));
        }
    }
}

impl<S: Subscriber, F: Fn(&Entry) + Send + Sync + 'static> Layer<S> for JournalLayer<F> {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visited = Fields::default();
        event.record(&mut visited);
        let meta = event.metadata();
        let mut message = visited.message;
        for (name, value) in &visited.fields {
            if name != "message_id" {
                let _ = write!(message, " {name}={value}");
            }
        }
        let entry = Entry {
            level: *meta.level(),
            target: meta.target().to_owned(),
            message,
            fields: visited
                .fields
                .into_iter()
                .map(|(name, value)| (journal_field(&name), value))
                .collect(),
            file: meta.file().map(str::to_owned),
            line: meta.line(),
            module: meta.module_path().map(str::to_owned),
        };
        (self.send)(&entry);
    }
}

#[cfg(test)]
mod tests;

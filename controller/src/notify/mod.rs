//! Notifications: telling the sysadmins, by e-mail and webhooks, that an
//! alert fired or resolved.
//!
//! The alert store writes every firing and resolution as an event in an
//! outbox ([`Outbox`]); the [`Notifier`] reads the outbox, waits
//! `group_wait_secs` after the first new event so that a burst gives one
//! message per target, sends that message to every target and marks the
//! events notified once every target took it (or was given up after
//! `retry_give_up_secs`). Each target keeps its own progress and backoff:
//! a webhook that fails is retried alone, the e-mail already sent is not
//! sent again, and a target that hangs delays only itself. Delivery is at
//! least once: a colocd stopped between a send and the marking sends that
//! message again when it starts.
//!
//! This module never decides what is an alert (the rules do) nor whether
//! an alert is silenced (the store does, and says so on the event); it
//! never blocks colocd: sends run in their own tokio tasks with a
//! timeout, and the notifier itself is one background task among the
//! others (`notify`, see [`Notifier::task_definition`]).
//!
//! Layout: [`config`] (`[notify]` in colocd.toml), `message` (subjects,
//! bodies, the JSON and ntfy renderings), `email` and `webhook` (one
//! target each), `notifier` (grouping, retries, marking).

pub mod config;
mod email;
mod files;
mod message;
mod notifier;
mod webhook;

use std::path::PathBuf;

use async_trait::async_trait;

pub use config::{
    EmailConfig, NotifyConfig, NotifyConfigError, SmtpTls, WebhookConfig, WebhookFormat,
};
pub use message::{json_payload, render_subject, render_text};
pub use notifier::{BatchStatus, Notifier, TargetState, TargetStatus};

use crate::store::StoreResult;

/// Whether an event says an alert started or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Firing,
    Resolved,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Firing => "firing",
            EventKind::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing, nothing to do now (a reboot pending).
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One entry of the outbox: an alert fired or resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    /// The event's own id, increasing: the outbox is read after the last
    /// id seen.
    pub id: i64,
    /// The alert it is about (`coloc alert show ALERT_ID`); an alert that
    /// fires and resolves gives two events with the same alert id.
    pub alert_id: u64,
    pub kind: EventKind,
    /// The rule that raised it ("disk-nvme-critical-warning").
    pub rule: String,
    pub severity: Severity,
    pub node: Option<String>,
    pub tenant: Option<String>,
    /// The subject for people: "disk S3Z1NB0K on node-a".
    pub subject: String,
    /// One line: what is wrong, with the value measured.
    pub summary: String,
    pub started_unix: i64,
    /// Set on a resolution.
    pub ended_unix: Option<i64>,
    /// Silenced when the event was written: marked notified, never sent.
    pub silenced: bool,
}

/// Where the notifier reads events and records that they were notified.
/// The alert store implements it; its errors are the store's.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Events not yet notified with an id above `after`, oldest first, at
    /// most `limit`.
    async fn pending(&self, after: i64, limit: usize) -> StoreResult<Vec<AlertEvent>>;
    /// Marks these events notified (idempotent: ids already marked, or
    /// unknown, are ignored).
    async fn mark_notified(&self, ids: &[i64]) -> StoreResult<()>;
}

/// Why the notifier could not start, or a target could not take a message.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("invalid [notify] configuration")]
    Config(#[from] NotifyConfigError),
    #[error("cannot read {key} {}", path.display())]
    ReadFile {
        key: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key} {} is empty", path.display())]
    EmptyFile { key: String, path: PathBuf },
    #[error("{key} {}: {reason}", path.display())]
    CaFile {
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot set up TLS for {target}")]
    Tls {
        target: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no notification target is configured ([notify.email] or [[notify.webhook]])")]
    NoTargets,
    #[error("cannot build the e-mail")]
    Message(#[source] lettre::error::Error),
    #[error("{target}: the SMTP server did not take the message")]
    Smtp {
        target: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("{target}: the request failed")]
    Http {
        target: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{target}: the endpoint answered HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    HttpStatus {
        target: String,
        status: u16,
        /// The start of the answer's body, for the log.
        body: String,
    },
    #[error("{target}: no answer within {secs} s")]
    Timeout { target: String, secs: u64 },
    /// `notify-test`: what failed, target by target; the others got the
    /// message.
    #[error("{}", failures.join("; "))]
    TestFailed { failures: Vec<String> },
}

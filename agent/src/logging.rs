//! Where the agent's logs go.
//!
//! Under systemd (stderr connected to the journal) events go straight to
//! journald through `systemd-journal-logger`, with the syslog identifier
//! `coloc-agent`: `tracing` events reach it through tracing's `log`
//! bridge, which is active exactly when no tracing subscriber is
//! installed. Elsewhere (a terminal, a test harness) a `tracing_subscriber`
//! formatter writes to stderr. Both honour `RUST_LOG`, default `info`.
//! Events carry structured fields (`node=`, `generation=`) rather than
//! values glued into sentences.

use systemd_journal_logger::JournalLog;
use tracing_subscriber::EnvFilter;

/// The syslog identifier of every journal entry the agent writes.
pub const SYSLOG_IDENTIFIER: &str = "coloc-agent";

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot open the journal socket")]
    Journal(#[source] std::io::Error),
    #[error("a logger is already installed")]
    AlreadySet(#[source] log::SetLoggerError),
    #[error("cannot install the log formatter: {0}")]
    Subscriber(String),
}

/// Where logs went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Journal,
    Stderr,
}

/// Installs the agent's logger, once per process.
pub fn init() -> Result<LogTarget, LoggingError> {
    if systemd_journal_logger::connected_to_journal() {
        JournalLog::new()
            .map_err(LoggingError::Journal)?
            .with_syslog_identifier(SYSLOG_IDENTIFIER.to_owned())
            .install()
            .map_err(LoggingError::AlreadySet)?;
        log::set_max_level(journal_level(std::env::var("RUST_LOG").ok().as_deref()));
        Ok(LogTarget::Journal)
    } else {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
            .map_err(|e| LoggingError::Subscriber(e.to_string()))?;
        Ok(LogTarget::Stderr)
    }
}

/// The journal path has no per-target filter: `RUST_LOG` is read as a
/// single level (`debug`, `warn`, ...); anything else means `info`.
pub fn journal_level(rust_log: Option<&str>) -> log::LevelFilter {
    rust_log
        .and_then(|v| v.trim().parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_level_reads_simple_levels_only() {
        assert_eq!(journal_level(None), log::LevelFilter::Info);
        assert_eq!(journal_level(Some("debug")), log::LevelFilter::Debug);
        assert_eq!(journal_level(Some("WARN")), log::LevelFilter::Warn);
        assert_eq!(
            journal_level(Some("coloc_agent=debug,tonic=warn")),
            log::LevelFilter::Info
        );
    }
}

//! [`HostError`]: everything that can go wrong between the agent and its
//! host, each variant naming the object it is about (tool, device, unit)
//! and keeping the underlying cause as its `source`.

use std::fmt;

use crate::runner::CommandError;

use crate::UnitName;

/// A systemd operation, for errors that must say which one failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitOp {
    /// Reading a unit's state.
    Query,
    Start,
    Stop,
    Restart,
    ReloadOrRestart,
    Enable,
    Disable,
    Mask,
    ResetFailed,
}

impl fmt::Display for UnitOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnitOp::Query => "query",
            UnitOp::Start => "start",
            UnitOp::Stop => "stop",
            UnitOp::Restart => "restart",
            UnitOp::ReloadOrRestart => "reload or restart",
            UnitOp::Enable => "enable",
            UnitOp::Disable => "disable",
            UnitOp::Mask => "mask",
            UnitOp::ResetFailed => "reset the failed state of",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The tool needed for this query is not installed. Distinct from an
    /// empty answer: "no zpool binary" is not "no pools".
    #[error("{tool} is not installed on this host")]
    ToolMissing { tool: String },

    #[error("could not list block devices")]
    Disks {
        #[source]
        source: CommandError,
    },

    #[error("could not list ZFS pools")]
    Zpools {
        #[source]
        source: CommandError,
    },

    #[error("could not list LVM volume groups")]
    VolumeGroups {
        #[source]
        source: CommandError,
    },

    /// `smartctl` could not be run to completion.
    #[error("could not read SMART data of {device}")]
    Smart {
        device: String,
        #[source]
        source: CommandError,
    },

    /// `smartctl` ran but could not query the device (exit status bits 0
    /// or 1: bad command line, or the device could not be opened).
    #[error("smartctl could not query {device} (exit status {status}): {messages}")]
    SmartFailed {
        device: String,
        status: i32,
        messages: String,
    },

    /// The device answered but reports no SMART health verdict (no SMART
    /// support, or SMART disabled).
    #[error("{device} reports no SMART health status")]
    SmartUnavailable { device: String },

    /// A device path refused before anything ran.
    #[error("refused device path {device:?}: {reason}")]
    InvalidDevice {
        device: String,
        reason: &'static str,
    },

    /// Tool output that does not have the documented shape.
    #[error("could not parse {what}: {detail}")]
    Parse { what: &'static str, detail: String },

    /// The kernel or sysinfo could not tell us something.
    #[error("could not read {what} from the system")]
    System {
        what: &'static str,
        #[source]
        source: sysinfo::Error,
    },

    /// A blocking host query (run off the async runtime) panicked or was
    /// cancelled.
    #[error("a blocking host query did not complete")]
    Blocking {
        #[source]
        source: tokio::task::JoinError,
    },

    /// The system bus or systemd's manager object is unreachable.
    #[error("could not reach systemd on the system bus")]
    Bus {
        #[source]
        source: zbus::Error,
    },

    /// systemd refused or failed a call about `unit`.
    #[error("systemd could not {op} {unit}")]
    Unit {
        unit: UnitName,
        op: UnitOp,
        #[source]
        source: zbus::Error,
    },

    /// systemd has no such unit (start of a unit with no unit file).
    #[error("unit {unit} does not exist")]
    NoSuchUnit { unit: UnitName },

    /// The job systemd queued for `unit` finished without success;
    /// `result` is systemd's word for why ("failed", "dependency",
    /// "timeout", "canceled", ...).
    #[error("{op} {unit}: systemd job finished with result {result:?}")]
    UnitJob {
        unit: UnitName,
        op: UnitOp,
        result: String,
    },

    /// A storage command (zfs, zpool, lvm, cryptsetup, mkfs, mount, ...)
    /// failed; `op` says what the agent was doing, `object` on what.
    #[error("could not {op} {object}")]
    Storage {
        op: &'static str,
        object: String,
        #[source]
        source: CommandError,
    },

    /// The backend cannot do this (shrinking an ext4 volume, a reservation
    /// on LVM thin, ...). Nothing was changed.
    #[error("{object}: {what} is not supported")]
    Unsupported { object: String, what: String },

    /// The operation was refused before anything ran, because it would
    /// lose data or cannot succeed (a disk holding data, a quota below the
    /// space used, a volume whose pool is gone). Nothing was changed.
    #[error("{object}: {reason}")]
    Refused { object: String, reason: String },

    /// A file operation on the host (key files, mount points) failed.
    #[error("{what}: {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// systemd did not report the end of the job in time.
    #[error("{op} {unit}: systemd job did not finish within {secs} s")]
    UnitJobTimeout {
        unit: UnitName,
        op: UnitOp,
        secs: u64,
    },
}

impl HostError {
    /// True when the query failed only because its tool is not installed.
    pub fn is_tool_missing(&self) -> bool {
        matches!(self, HostError::ToolMissing { .. })
    }

    /// Maps a runner error: a program that is not installed becomes
    /// [`HostError::ToolMissing`], anything else is wrapped by `wrap`.
    pub(crate) fn from_command(
        source: CommandError,
        wrap: impl FnOnce(CommandError) -> HostError,
    ) -> HostError {
        match source {
            CommandError::NotFound { program } => HostError::ToolMissing { tool: program },
            other => wrap(other),
        }
    }

    /// Maps a runner error of a storage command.
    pub(crate) fn storage(
        op: &'static str,
        object: impl Into<String>,
        source: CommandError,
    ) -> HostError {
        let object = object.into();
        HostError::from_command(source, |source| HostError::Storage { op, object, source })
    }

    pub(crate) fn parse(what: &'static str, detail: impl Into<String>) -> HostError {
        HostError::Parse {
            what,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_becomes_tool_missing_and_the_rest_keeps_its_source() {
        let missing = HostError::from_command(
            CommandError::NotFound {
                program: "zpool".into(),
            },
            |source| HostError::Zpools { source },
        );
        assert!(missing.is_tool_missing());
        assert_eq!(missing.to_string(), "zpool is not installed on this host");

        let failed = HostError::from_command(
            CommandError::Failed {
                command: "/usr/sbin/zpool list".into(),
                status: 1,
                stderr_tail: "The ZFS modules are not loaded.".into(),
            },
            |source| HostError::Zpools { source },
        );
        assert!(!failed.is_tool_missing());
        assert_eq!(failed.to_string(), "could not list ZFS pools");
        let cause = std::error::Error::source(&failed).expect("source kept");
        assert!(cause.to_string().contains("ZFS modules are not loaded"));
    }
}

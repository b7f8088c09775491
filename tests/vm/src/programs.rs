//! The one place the QEMU harness makes a process: QEMU and `qemu-img`,
//! `ssh` into a guest, the baseline guest's build tools, and a local
//! shell in the quoting test.
//!
//! The workspace refuses `Command::new` outside the command runners
//! (clippy.toml). The agent's runner is for host commands on a node; the
//! harness is a test tool that drives QEMU itself, with its own cleared
//! environment, timeouts and log capture at each call site. So the lint is
//! allowed here only, and every spawn in coloc-vm starts from [`command`].

use std::ffi::OsStr;

/// A command for `program`, for the caller to fill in (arguments,
/// environment, standard streams). Use `tokio::process::Command::from` for
/// an async one.
#[allow(clippy::disallowed_methods)] // coloc-vm's one spawn point (module doc)
pub(crate) fn command(program: impl AsRef<OsStr>) -> std::process::Command {
    std::process::Command::new(program)
}

//! coloc-host: the agent's access to its host. Every byte that goes to or
//! comes from the machine passes through here.
//!
//! It owns the traits the agent sees the machine through — [`Units`]
//! (systemd units over D-Bus), [`Health`] (node facts, SMART),
//! [`Packages`] (apt), [`Journal`], [`Accounts`], [`Firewall`] (coloc's
//! nftables table) and, in [`volumes`], the
//! disks, pools and tenants' volumes the storage reconciler manages —
//! their real implementations, the pure parsers that turn tool output into
//! typed values (one parser per tool output, tested against recorded
//! outputs in `tests/fixtures/`), and in-memory fakes good enough to run a
//! whole simulated agent ([`FakeHost`]).
//!
//! Its only ways to the system are the one command [`Runner`]
//! (every host tool: `lsblk`, `zpool`, `lvs`, `apt-get`, `smartctl`, ...),
//! the system bus for systemd (zbus, in `units.rs`), `sysinfo` for the
//! kernel's CPU, memory, network and boot figures, and the plain file
//! operations it must do itself: durable key files ([`durable`]), mount
//! points and the owner of a volume's root, `/dev/disk/by-id`,
//! `/etc/os-release`, apt's `policy-rc.d`. It depends on nothing of the
//! agent.
//!
//! It must not decide policy. It reports what the host says — a degraded
//! pool, a failing drive, a unit that does not exist — as typed values and
//! typed errors, and executes exactly the operation it is asked for; whether
//! a failing drive should drain the node or a missing `zpool` binary is an
//! error is for the agent's reconcilers to decide. It also refuses, before
//! anything runs, inputs that could be misread by a tool, because this is
//! the last place that can: device paths and journal cursors are checked
//! here, unit names arrive as proto's [`UnitName`] and package names go
//! through proto's `PackageName` rule.
//!
//! Layout: the traits and [`Host`] (all of them, cheap to clone) are here;
//! each real implementation is in its own module: `units` (systemd over
//! D-Bus), `facts` (the real [`Health`]'s facts), [`health`] (health
//! reports, maintenance and device events: the real collection, its
//! parsers and the simulated node's health), `smart` (`smartctl --json`),
//! `lsblk` (the one `lsblk` parser, for the facts and the disk prober),
//! `packages` (apt and dpkg-query), `journal` (`journalctl -o json`),
//! `accounts` (tenants' system users and groups), [`firewall`] (`nft`)
//! and [`volumes`] (the disk
//! prober and the ZFS and LVM thin backends). Around them: [`runner`] (the
//! one command runner), [`durable`] (crash-safe file replacement),
//! `error` ([`HostError`]), `types` (the values handed out) and `fake`
//! (the in-memory fakes and [`FakeHost`]).

mod accounts;
pub mod durable;
mod error;
mod facts;
mod fake;
pub mod firewall;
pub mod health;
mod journal;
mod lsblk;
mod packages;
pub mod runner;
mod smart;
mod types;
mod units;
pub mod volumes;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use coloc_proto::agent::v1::{HealthReport, MaintenanceKind, NodeFacts};

use runner::Runner;
use volumes::Volumes;

pub use accounts::{FakeAccounts, RealAccounts, account_name};
pub use coloc_proto::units::UnitName;
pub use error::{HostError, UnitOp};
pub use facts::{RealHealth, parse_os_release_pretty_name};
pub use fake::{FAKE_START_LIMIT_BURST, FakeHealth, FakeHost, FakeUnits};
pub use firewall::{FakeFirewall, RealFirewall};
pub use journal::{
    FakeJournal, MAX_CURSOR_LEN, RealJournal, parse_journal_json, rfc3339_utc_seconds,
    validate_cursor,
};
pub use lsblk::{LsblkDevice, list_disks, parse_lsblk};
pub use packages::{
    FakePackages, RealPackages, parse_apt_unavailable, parse_dpkg_installed, parse_unit_files,
    validate_package_name,
};
pub use smart::{parse_smartctl, smartctl_status_is_fatal, validate_device};
pub use types::{BlockDevice, SmartReport, UnitState};
pub use units::{DEFAULT_JOB_TIMEOUT, RealUnits};
pub use volumes::FakeOp;

/// The host as the agent sees it. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    pub units: Arc<dyn Units>,
    pub health: Arc<dyn Health>,
    /// Pools and tenants' volumes (ZFS, LVM thin) and the disk prober.
    pub volumes: Volumes,
    pub packages: Arc<dyn Packages>,
    pub journal: Arc<dyn Journal>,
    pub accounts: Arc<dyn Accounts>,
    pub firewall: Arc<dyn Firewall>,
}

impl Host {
    /// The real host: tools run through `runner`, systemd reached over the
    /// system bus on first use, volume encryption keys kept in `key_dir`,
    /// the firewall ruleset last applied kept at `firewall_file`.
    pub fn real(runner: Runner, key_dir: PathBuf, firewall_file: PathBuf) -> Host {
        Host {
            units: Arc::new(RealUnits::new()),
            health: Arc::new(RealHealth::new(runner.clone())),
            volumes: Volumes::real(runner.clone(), key_dir),
            packages: Arc::new(RealPackages::new(runner.clone())),
            journal: Arc::new(RealJournal::new(runner.clone())),
            accounts: Arc::new(RealAccounts::new(runner.clone())),
            firewall: Arc::new(RealFirewall::new(runner, firewall_file)),
        }
    }

    /// In-memory fakes with plausible facts derived from `node_name`. Use
    /// [`FakeHost`] instead when a test needs to poke the fakes' state.
    pub fn fake(node_name: &str) -> Host {
        FakeHost::new(node_name).host()
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

/// What the node is and how healthy it is.
#[async_trait]
pub trait Health: Send + Sync {
    /// Hardware and OS facts, as sent to the controller.
    async fn facts(&self) -> Result<NodeFacts, HostError>;
    /// SMART health of one drive; `device` is an absolute `/dev` path.
    async fn smart(&self, device: &str) -> Result<SmartReport, HostError>;
    /// One observation of the whole node (docs/HEALTH.md). Never fails:
    /// whatever could not be read is an `unobserved` entry, or a disk,
    /// pool, filesystem or sensor marked unknown with its reason. Not
    /// trimmed: see [`health::trim_report`].
    async fn report(&self, inputs: &health::HealthInputs) -> HealthReport;
    /// Starts maintenance now: a scrub of the pool `subject`
    /// (`zpool scrub`), or a SMART self-test (`smartctl -t short|long`) of
    /// the disk `subject` names, a device path under /dev/ or a serial.
    /// Returns what it started on (the pool, or the device path). The
    /// subject is checked before anything runs.
    async fn start_maintenance(
        &self,
        kind: MaintenanceKind,
        subject: &str,
    ) -> Result<String, HostError>;
}

/// What the app reconciler reads of a unit (systemd's own property names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitDetails {
    pub active_state: String,
    pub sub_state: String,
    pub load_state: String,
    /// `NRestarts`: automatic restarts since the unit was started.
    pub restarts: u32,
    /// `MemoryCurrent`; `None` when systemd does not account it
    /// (u64::MAX on the bus) or the unit is not running.
    pub memory_bytes: Option<u64>,
    /// `Result`: "success", "exit-code", "start-limit-hit", ...
    pub result: String,
}

/// Debian packages, installed with apt.
#[async_trait]
pub trait Packages: Send + Sync {
    /// Installs whatever of `packages` is missing, non-interactively,
    /// without starting the services they ship (policy-rc.d), running
    /// `apt-get update` once if a package is unknown. A package still
    /// unknown after that is [`HostError::Refused`] naming it. Idempotent:
    /// nothing runs when all are installed. Names are validated
    /// (Debian's package name rule) before anything runs.
    async fn ensure_installed(&self, packages: &[String]) -> Result<(), HostError>;
    /// The systemd units whose unit files the installed `package` put in
    /// systemd's system unit directories (`dpkg-query -L`). A package that
    /// is not installed is [`HostError::Refused`].
    async fn unit_files(&self, package: &str) -> Result<BTreeSet<UnitName>, HostError>;
}

/// The node's packet filter, as far as coloc owns it: the nftables table
/// `inet coloc` (see [`firewall`]); other tables are never touched.
#[async_trait]
pub trait Firewall: Send + Sync {
    /// The comment coloc's table carries in the kernel (the agent tags
    /// each ruleset it writes); `None` when the table does not exist.
    async fn table_comment(&self) -> Result<Option<String>, HostError>;
    /// Replaces coloc's table with `ruleset`, a whole `nft -f` file that
    /// touches that table only ([`firewall::check_scope`]), in one
    /// transaction: afterwards all of it is in force or, on error, the
    /// table as it was. The file is kept for the next boot.
    async fn apply(&self, ruleset: &str) -> Result<(), HostError>;
}

/// Tenants' system accounts (see `accounts.rs`).
#[async_trait]
pub trait Accounts: Send + Sync {
    /// Makes sure group `gid` and user `uid` exist (named `ct<id>`, no
    /// home, no shell). Idempotent. Ids below 1000 are refused.
    async fn ensure(&self, uid: u32, gid: u32) -> Result<(), HostError>;
}

/// One journal entry as one line, with the cursor that points at it (a
/// page cut after this entry goes on from there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalEntry {
    /// "2026-11-28T21:10:00Z message".
    pub line: String,
    pub cursor: String,
}

/// One page of a unit's journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalPage {
    /// Oldest first.
    pub entries: Vec<JournalEntry>,
    /// The cursor of the last entry (or the one given when none came).
    pub cursor: String,
}

impl JournalPage {
    /// The entries' lines, oldest first.
    pub fn lines(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.line.as_str()).collect()
    }

    /// The entries' lines, oldest first, without their cursors.
    pub fn into_lines(self) -> Vec<String> {
        self.entries.into_iter().map(|e| e.line).collect()
    }
}

/// The systemd journal.
#[async_trait]
pub trait Journal: Send + Sync {
    /// At most `lines` entries of `unit`, the last ones, or those after
    /// `after_cursor` when given (`journalctl -u <unit> -o json
    /// [--after-cursor C] -n N`).
    async fn unit_lines(
        &self,
        unit: &UnitName,
        lines: u32,
        after_cursor: Option<&str>,
    ) -> Result<JournalPage, HostError>;
}

/// systemd units.
#[async_trait]
pub trait Units: Send + Sync {
    /// Load, active and sub state. A unit systemd does not know is reported
    /// with `load_state == "not-found"`, not as an error.
    async fn unit_state(&self, unit: &UnitName) -> Result<UnitState, HostError>;
    /// Starts the unit and waits for systemd's job to finish. Starting an
    /// active unit succeeds; a unit that does not exist is
    /// [`HostError::NoSuchUnit`].
    async fn start(&self, unit: &UnitName) -> Result<(), HostError>;
    /// Stops the unit and waits for systemd's job to finish. Stopping an
    /// inactive or unknown unit succeeds: the unit is not running either way.
    async fn stop(&self, unit: &UnitName) -> Result<(), HostError>;
    /// `RestartUnit` and wait for the job, like [`Units::start`].
    async fn restart(&self, unit: &UnitName) -> Result<(), HostError>;
    /// `ReloadOrRestartUnit` and wait for the job.
    async fn reload_or_restart(&self, unit: &UnitName) -> Result<(), HostError>;
    /// `Reload` (daemon-reload): systemd re-reads unit files. Returns once
    /// systemd has done so.
    async fn daemon_reload(&self) -> Result<(), HostError>;
    /// `EnableUnitFiles` (runtime false, force true). Idempotent.
    async fn enable(&self, unit: &UnitName) -> Result<(), HostError>;
    /// `DisableUnitFiles`. Idempotent, also for unknown units.
    async fn disable(&self, unit: &UnitName) -> Result<(), HostError>;
    /// `MaskUnitFiles` (runtime false, force true). Idempotent.
    async fn mask(&self, unit: &UnitName) -> Result<(), HostError>;
    /// `ResetFailedUnit`; nothing to do for a unit that has not failed.
    async fn reset_failed(&self, unit: &UnitName) -> Result<(), HostError>;
    /// States, restarts, memory and result of the last run.
    async fn details(&self, unit: &UnitName) -> Result<UnitDetails, HostError>;
}

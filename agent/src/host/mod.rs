//! The agent's host-access layer: every byte that goes to or comes from the
//! host passes through here.
//!
//! It owns the traits the rest of the agent sees the machine through —
//! [`Storage`] (block devices, ZFS pools, LVM volume groups), [`Units`]
//! (systemd units over D-Bus), [`Health`] (node facts, SMART) and, in
//! [`volumes`], the pools and tenants' volumes the storage reconciler
//! manages — their
//! real implementations, which run host tools through the one
//! [`Runner`](crate::runner::Runner) or talk to systemd over the system bus,
//! the pure parsers that turn tool output into typed values (tested against
//! recorded outputs in `agent/tests/fixtures/`), and in-memory fakes good
//! enough to run a whole simulated agent.
//!
//! It must not decide policy. It reports what the host says — a degraded
//! pool, a failing drive, a unit that does not exist — as typed values and
//! typed errors, and executes exactly the operation it is asked for; whether
//! a failing drive should drain the node or a missing `zpool` binary is an
//! error is for the reconciler to decide. It also refuses, before anything
//! runs, inputs that could be misread by a tool (device paths and unit names
//! are validated here), because this is the last place that can.

mod error;
mod facts;
mod fake;
mod smart;
mod storage;
mod types;
mod units;
pub mod volumes;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use coloc_proto::agent::v1::NodeFacts;

use crate::runner::Runner;
use volumes::Volumes;

pub use error::{HostError, UnitOp};
pub use facts::{RealHealth, parse_os_release_pretty_name};
pub use fake::{FakeHealth, FakeHost, FakeOp, FakeStorage, FakeUnits};
pub use smart::{parse_smartctl, smartctl_status_is_fatal, validate_device};
pub use storage::{RealStorage, parse_lsblk, parse_vgs, parse_zpool_list};
pub use types::{
    BlockDevice, PoolHealth, SmartReport, UnitName, UnitState, VolumeGroupInfo, ZpoolInfo,
};
pub use units::{DEFAULT_JOB_TIMEOUT, RealUnits};

/// The host as the agent sees it. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    pub storage: Arc<dyn Storage>,
    pub units: Arc<dyn Units>,
    pub health: Arc<dyn Health>,
    /// Pools and tenants' volumes (ZFS, LVM thin) and the disk prober.
    pub volumes: Volumes,
}

impl Host {
    /// The real host: tools run through `runner`, systemd reached over the
    /// system bus on first use, volume encryption keys kept in `key_dir`.
    pub fn real(runner: Runner, key_dir: PathBuf) -> Host {
        Host {
            storage: Arc::new(RealStorage::new(runner.clone())),
            units: Arc::new(RealUnits::new()),
            health: Arc::new(RealHealth::new(runner.clone())),
            volumes: Volumes::real(runner, key_dir),
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

/// What the node is and how healthy its drives are.
#[async_trait]
pub trait Health: Send + Sync {
    /// Hardware and OS facts, as sent to the controller.
    async fn facts(&self) -> Result<NodeFacts, HostError>;
    /// SMART health of one drive; `device` is an absolute `/dev` path.
    async fn smart(&self, device: &str) -> Result<SmartReport, HostError>;
}

/// Block devices and the storage stacks built on them.
#[async_trait]
pub trait Storage: Send + Sync {
    /// Whole disks (not partitions, loop, RAM or zram devices).
    async fn disks(&self) -> Result<Vec<BlockDevice>, HostError>;
    /// Imported ZFS pools. [`HostError::ToolMissing`] if ZFS is not
    /// installed: that is not the same as "no pools".
    async fn zpools(&self) -> Result<Vec<ZpoolInfo>, HostError>;
    /// LVM volume groups. [`HostError::ToolMissing`] if LVM is not installed.
    async fn volume_groups(&self) -> Result<Vec<VolumeGroupInfo>, HostError>;
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
}

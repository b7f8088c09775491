//! Health collection: what [`Health::report`](crate::Health::report)
//! observes of the node (docs/HEALTH.md, "What the agent watches"), the
//! maintenance it can start, and the kernel's device events that tell the
//! agent to look again.
//!
//! The rule every part keeps: unknown is never healthy. A source that
//! could not be read at all is an `unobserved` entry with its reason; a
//! disk, pool or sensor that could not be read is listed with its
//! `unknown` reason; a number the tool did not give stays unset. A source
//! never stops another: each runs with its own deadline.
//!
//! Layout: the pure parsers, one per tool output or kernel file, each
//! tested on fixtures (`smart` for `smartctl --json -a`, `zpool` for
//! `zpool list -Hp` and `zpool status -p`, `lvm` for `lvs`, `system` for
//! `/proc`, `/sys` and `/run`), `real` (the collection on the host, with
//! its deadlines and test roots), `dbus` (failed units and the clock from
//! systemd), `maintenance` (scrubs and self-tests, checked before they
//! run), `trim` (the report's bounds), `uevent` (device events) and
//! `fake` (the in-memory health of a simulated node).

mod dbus;
pub(crate) mod fake;
#[cfg(test)]
mod fake_tests;
mod lvm;
mod maintenance;
pub(crate) mod real;
mod smart;
mod system;
mod trim;
mod uevent;
mod zpool;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use lvm::parse_lvs_thin_pools;
pub use maintenance::{check_pool_name, check_serial};
pub use real::{HealthPaths, Source};
pub use smart::parse_disk_health;
pub use system::{
    CpuSample, parse_cpu_sample, parse_loadavg, parse_meminfo, parse_uptime, read_hwmon, read_nics,
    read_reboot,
};
pub use trim::trim_report;
pub use uevent::{
    DeviceEvent, DeviceEvents, FakeDeviceEvents, RealDeviceEvents, UeventError, parse_uevent,
};
pub use zpool::parse_zpool_status;

/// What the agent tells the collection about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthInputs {
    /// Mounted coloc volumes: volume id → mount path. Their use is
    /// reported in `filesystems`, after "/".
    pub volumes: BTreeMap<String, PathBuf>,
}

//! Families from the nodes' health reports: disks, ZFS, thin pools,
//! filesystems, memory and load, temperatures, units, NICs, clock and
//! reboot. A part the report marks unknown has no value samples, only a
//! `coloc_health_unknown` series, so that a query never reads stale or
//! made-up numbers as healthy.

use coloc_proto::agent::v1::{ScrubState, SmartVerdict};

use super::{DiskRow, FsRow, Index, PoolRow, ReportRow, ThinRow, family};
use crate::metrics::text::{Kind, Value, Writer};

fn report_labels<'a>(r: &'a ReportRow<'_>) -> [(&'static str, &'a str); 1] {
    [("node", r.node)]
}

fn disk_labels<'a>(r: &'a DiskRow<'_>) -> [(&'static str, &'a str); 4] {
    [
        ("node", r.node),
        ("serial", r.disk.serial.as_str()),
        ("model", r.disk.model.as_str()),
        ("device", r.disk.device.as_str()),
    ]
}

fn pool_labels<'a>(r: &'a PoolRow<'_>) -> [(&'static str, &'a str); 2] {
    [("node", r.node), ("pool", r.pool.name.as_str())]
}

fn thin_labels<'a>(r: &'a ThinRow<'_>) -> [(&'static str, &'a str); 3] {
    [
        ("node", r.node),
        ("volume_group", r.thin.volume_group.as_str()),
        ("thin_pool", r.thin.name.as_str()),
    ]
}

fn fs_labels<'a>(r: &'a FsRow<'_>) -> [(&'static str, &'a str); 2] {
    [("node", r.node), ("mountpoint", r.fs.mount_path.as_str())]
}

pub(super) fn reports(w: &mut Writer, ix: &Index<'_>) {
    family(
        w,
        "coloc_node_health_report_timestamp_seconds",
        "When colocd received the node's latest health report.",
        Kind::Gauge,
        &ix.reports,
        |r| [("node", r.node)],
        |r| Some(r.received_unix.into()),
    );
    family(
        w,
        "coloc_health_unknown",
        "1 for each part of a node the agent could not observe (source: disks, zfs, lvm, \
         filesystems, system, temperatures, units, nics, clock, reboot; subject: the part, \
         empty for the whole source).",
        Kind::Gauge,
        &ix.unknown,
        |u| {
            [
                ("node", u.node),
                ("source", u.source),
                ("subject", u.subject),
            ]
        },
        |_| Some(1u64.into()),
    );
}

pub(super) fn disks(w: &mut Writer, ix: &Index<'_>) {
    let rows = &ix.disks;
    let labels = disk_labels;
    // Values of a disk whose SMART could not be read are not meaningful.
    let known = |r: &DiskRow<'_>| r.disk.unknown.is_empty();
    family(
        w,
        "coloc_disk_size_bytes",
        "Size of the disk.",
        Kind::Gauge,
        rows,
        labels,
        |r| Some(r.disk.size_bytes.into()),
    );
    family(
        w,
        "coloc_disk_smart_passed",
        "1 when the disk's SMART overall-health self-assessment passed, 0 when it failed; \
         absent when the disk has no SMART or it could not be read.",
        Kind::Gauge,
        rows,
        labels,
        |r| match r.disk.smart() {
            _ if !known(r) => None,
            SmartVerdict::Passed => Some(1u64.into()),
            SmartVerdict::Failed => Some(0u64.into()),
            SmartVerdict::Unsupported | SmartVerdict::Unknown | SmartVerdict::Unspecified => None,
        },
    );
    let opt = |v: Option<Value>, r: &DiskRow<'_>| if known(r) { v } else { None };
    family(
        w,
        "coloc_disk_temperature_celsius",
        "The disk's temperature.",
        Kind::Gauge,
        rows,
        labels,
        |r| opt(r.disk.temperature_c.map(Value::from), r),
    );
    family(
        w,
        "coloc_disk_temperature_limit_celsius",
        "The disk's own warning temperature (NVMe WCTEMP).",
        Kind::Gauge,
        rows,
        labels,
        |r| opt(r.disk.temperature_limit_c.map(Value::from), r),
    );
    family(
        w,
        "coloc_disk_power_on_seconds_total",
        "The disk's power-on time (SMART power-on hours).",
        Kind::Counter,
        rows,
        labels,
        |r| {
            opt(
                r.disk.power_on_hours.map(|h| h.saturating_mul(3600).into()),
                r,
            )
        },
    );
    family(
        w,
        "coloc_disk_reallocated_sectors",
        "ATA attribute 5, reallocated sectors (raw).",
        Kind::Gauge,
        rows,
        labels,
        |r| opt(r.disk.reallocated_sectors.map(Value::from), r),
    );
    family(
        w,
        "coloc_disk_pending_sectors",
        "ATA attribute 197, sectors pending reallocation (raw).",
        Kind::Gauge,
        rows,
        labels,
        |r| opt(r.disk.pending_sectors.map(Value::from), r),
    );
    family(
        w,
        "coloc_disk_offline_uncorrectable_sectors",
        "ATA attribute 198, offline uncorrectable sectors (raw).",
        Kind::Gauge,
        rows,
        labels,
        |r| opt(r.disk.offline_uncorrectable.map(Value::from), r),
    );
    family(
        w,
        "coloc_disk_crc_errors_total",
        "ATA attribute 199, interface CRC errors (raw).",
        Kind::Counter,
        rows,
        labels,
        |r| opt(r.disk.crc_errors.map(Value::from), r),
    );
    family(
        w,
        "coloc_disk_failing_attributes",
        "ATA attributes at or below their threshold now (FAILING_NOW).",
        Kind::Gauge,
        rows,
        labels,
        |r| opt(Some(r.disk.failing_attributes.len().into()), r),
    );
    family(
        w,
        "coloc_disk_nvme_critical_warning",
        "NVMe critical-warning bit mask (1 spare, 2 temperature, 4 reliability degraded, \
         8 read-only, 16 volatile backup, 32 persistent memory read-only); 0 when none.",
        Kind::Gauge,
        rows,
        labels,
        |r| opt(r.disk.critical_warning.map(Value::from), r),
    );
    family(
        w,
        "coloc_disk_percentage_used_ratio",
        "NVMe percentage used of the drive's rated endurance, as a ratio (may exceed 1).",
        Kind::Gauge,
        rows,
        labels,
        |r| {
            opt(
                r.disk
                    .percentage_used
                    .map(|p| (f64::from(p) / 100.0).into()),
                r,
            )
        },
    );
    family(
        w,
        "coloc_disk_available_spare_ratio",
        "NVMe available spare, as a ratio.",
        Kind::Gauge,
        rows,
        labels,
        |r| {
            opt(
                r.disk
                    .available_spare
                    .map(|p| (f64::from(p) / 100.0).into()),
                r,
            )
        },
    );
    family(
        w,
        "coloc_disk_available_spare_threshold_ratio",
        "NVMe available spare threshold, as a ratio.",
        Kind::Gauge,
        rows,
        labels,
        |r| {
            opt(
                r.disk
                    .available_spare_threshold
                    .map(|p| (f64::from(p) / 100.0).into()),
                r,
            )
        },
    );
    family(
        w,
        "coloc_disk_media_errors_total",
        "NVMe media and data integrity errors.",
        Kind::Counter,
        rows,
        labels,
        |r| opt(r.disk.media_errors.map(Value::from), r),
    );
    family(
        w,
        "coloc_disk_last_self_test_passed",
        "1 when the newest SMART self-test completed without error, 0 when it did not; \
         absent while one runs or when the log is empty.",
        Kind::Gauge,
        rows,
        labels,
        |r| {
            let test = r.disk.last_self_test.as_ref()?;
            if test.running || test.status.is_empty() {
                return None;
            }
            opt(Some(test.passed.into()), r)
        },
    );
}

/// The pool states `zpool` reports, as the `state` label spells them;
/// "unknown" for a pool the agent could not read or a state it did not
/// recognise.
pub const POOL_STATES: [&str; 8] = [
    "online",
    "degraded",
    "faulted",
    "offline",
    "unavail",
    "removed",
    "suspended",
    "unknown",
];

fn pool_state(pool: &coloc_proto::agent::v1::ZfsPoolHealth) -> &'static str {
    if !pool.unknown.is_empty() {
        return "unknown";
    }
    POOL_STATES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(&pool.state))
        .copied()
        .unwrap_or("unknown")
}

pub(super) fn zfs(w: &mut Writer, ix: &Index<'_>) {
    let rows = &ix.pools;
    let labels = pool_labels;
    let name = "coloc_zfs_pool_state";
    w.family(
        name,
        "1 for the ZFS pool's current state, 0 for the others.",
        Kind::Gauge,
    );
    for r in rows {
        let current = pool_state(r.pool);
        for state in POOL_STATES {
            w.sample_with(
                name,
                &labels(r),
                Some(("state", state)),
                Value::from(state == current),
            );
        }
    }
    let known = |r: &PoolRow<'_>, v: Value| r.pool.unknown.is_empty().then_some(v);
    family(
        w,
        "coloc_zfs_pool_size_bytes",
        "Size of the ZFS pool.",
        Kind::Gauge,
        rows,
        labels,
        |r| known(r, r.pool.size_bytes.into()),
    );
    family(
        w,
        "coloc_zfs_pool_allocated_bytes",
        "Space allocated in the ZFS pool.",
        Kind::Gauge,
        rows,
        labels,
        |r| known(r, r.pool.allocated_bytes.into()),
    );
    family(
        w,
        "coloc_zfs_pool_free_bytes",
        "Free space in the ZFS pool.",
        Kind::Gauge,
        rows,
        labels,
        |r| known(r, r.pool.free_bytes.into()),
    );
    family(
        w,
        "coloc_zfs_pool_data_errors",
        "Data errors zpool status reports for the pool.",
        Kind::Gauge,
        rows,
        labels,
        |r| known(r, r.pool.data_errors.into()),
    );
    family(
        w,
        "coloc_zfs_pool_scrub_running",
        "1 while a scrub of the pool runs.",
        Kind::Gauge,
        rows,
        labels,
        |r| {
            let scrub = r.pool.scrub.as_ref()?;
            known(r, (scrub.state() == ScrubState::Running).into())
        },
    );
    family(
        w,
        "coloc_zfs_pool_scrub_end_timestamp_seconds",
        "When the pool's last scrub finished; 0 when it was never scrubbed.",
        Kind::Gauge,
        rows,
        labels,
        |r| {
            let scrub = r.pool.scrub.as_ref()?;
            match scrub.state() {
                ScrubState::Never => known(r, 0u64.into()),
                ScrubState::Finished | ScrubState::Canceled if scrub.finished_unix > 0 => {
                    known(r, scrub.finished_unix.into())
                }
                _ => None,
            }
        },
    );
    family(
        w,
        "coloc_zfs_pool_scrub_errors",
        "Errors found by the pool's last (or running) scrub.",
        Kind::Gauge,
        rows,
        labels,
        |r| {
            let scrub = r.pool.scrub.as_ref()?;
            match scrub.state() {
                ScrubState::Finished | ScrubState::Running | ScrubState::Canceled => {
                    known(r, scrub.errors.into())
                }
                ScrubState::Never | ScrubState::Unspecified => None,
            }
        },
    );
    let name = "coloc_zfs_vdev_errors_total";
    w.family(
        name,
        "Read, write and checksum errors of each vdev of a ZFS pool (the pool itself, \
         its top-level vdevs and their disks), as zpool status counts them.",
        Kind::Counter,
    );
    for r in &ix.vdevs {
        let labels = [
            ("node", r.node),
            ("pool", r.pool),
            ("vdev", r.vdev.name.as_str()),
        ];
        let kinds = [
            ("read", r.vdev.read_errors),
            ("write", r.vdev.write_errors),
            ("checksum", r.vdev.checksum_errors),
        ];
        for (kind, count) in kinds {
            w.sample_with(name, &labels, Some(("kind", kind)), count.into());
        }
    }
    let name = "coloc_zfs_vdev_state";
    w.family(
        name,
        "1, with the vdev's state as zpool status gives it, lower case (online, degraded, \
         faulted, offline, unavail, removed, avail, inuse, ...).",
        Kind::Gauge,
    );
    for r in &ix.vdevs {
        let state = r.vdev.state.to_ascii_lowercase();
        w.sample_with(
            name,
            &[
                ("node", r.node),
                ("pool", r.pool),
                ("vdev", r.vdev.name.as_str()),
            ],
            Some(("state", &state)),
            1u64.into(),
        );
    }
}

pub(super) fn thin_pools(w: &mut Writer, ix: &Index<'_>) {
    let rows = &ix.thins;
    let labels = thin_labels;
    family(
        w,
        "coloc_thin_pool_size_bytes",
        "Size of the LVM thin pool.",
        Kind::Gauge,
        rows,
        labels,
        |r| Some(r.thin.size_bytes.into()),
    );
    family(
        w,
        "coloc_thin_pool_data_ratio",
        "Share of the LVM thin pool's data space in use.",
        Kind::Gauge,
        rows,
        labels,
        |r| Some((r.thin.data_percent / 100.0).into()),
    );
    family(
        w,
        "coloc_thin_pool_metadata_ratio",
        "Share of the LVM thin pool's metadata space in use.",
        Kind::Gauge,
        rows,
        labels,
        |r| Some((r.thin.metadata_percent / 100.0).into()),
    );
}

pub(super) fn filesystems(w: &mut Writer, ix: &Index<'_>) {
    let rows = &ix.filesystems;
    let labels = fs_labels;
    family(
        w,
        "coloc_filesystem_size_bytes",
        "Size of the filesystem (the root filesystem and each mounted coloc volume).",
        Kind::Gauge,
        rows,
        labels,
        |r| Some(r.fs.size_bytes.into()),
    );
    family(
        w,
        "coloc_filesystem_used_bytes",
        "Space used in the filesystem.",
        Kind::Gauge,
        rows,
        labels,
        |r| Some(r.fs.used_bytes.into()),
    );
    family(
        w,
        "coloc_filesystem_available_bytes",
        "Space available to unprivileged users in the filesystem.",
        Kind::Gauge,
        rows,
        labels,
        |r| Some(r.fs.available_bytes.into()),
    );
}

pub(super) fn system(w: &mut Writer, ix: &Index<'_>) {
    let rows = &ix.reports;
    let node = report_labels;
    type Field = fn(&coloc_proto::agent::v1::SystemLoad) -> Value;
    let fields: [(&str, &str, Field); 10] = [
        ("coloc_node_memory_total_bytes", "The node's memory.", |s| {
            s.memory_total_bytes.into()
        }),
        (
            "coloc_node_memory_available_bytes",
            "Memory available for new work (MemAvailable).",
            |s| s.memory_available_bytes.into(),
        ),
        (
            "coloc_node_swap_total_bytes",
            "The node's swap space.",
            |s| s.swap_total_bytes.into(),
        ),
        ("coloc_node_swap_free_bytes", "Free swap space.", |s| {
            s.swap_free_bytes.into()
        }),
        ("coloc_node_load1", "1-minute load average.", |s| {
            s.load1.into()
        }),
        ("coloc_node_load5", "5-minute load average.", |s| {
            s.load5.into()
        }),
        ("coloc_node_load15", "15-minute load average.", |s| {
            s.load15.into()
        }),
        ("coloc_node_cpus", "CPUs of the node.", |s| {
            s.cpu_count.into()
        }),
        (
            "coloc_node_cpu_busy_ratio",
            "Share of all CPUs' time spent busy since the previous report.",
            |s| s.cpu_busy_ratio.into(),
        ),
        (
            "coloc_node_uptime_seconds",
            "Time since the node booted.",
            |s| s.uptime_secs.into(),
        ),
    ];
    for (name, help, field) in fields {
        w.family(name, help, Kind::Gauge);
        for r in rows {
            if let Some(s) = r.report.system.as_ref().filter(|s| s.unknown.is_empty()) {
                w.sample(name, &node(r), field(s));
            }
        }
    }
    family(
        w,
        "coloc_temperature_celsius",
        "A hardware sensor's temperature (hwmon).",
        Kind::Gauge,
        &ix.temps,
        |r| [("node", r.node), ("sensor", r.temp.sensor.as_str())],
        |r| Some(r.temp.celsius.into()),
    );
    family(
        w,
        "coloc_temperature_critical_celsius",
        "A hardware sensor's own critical threshold.",
        Kind::Gauge,
        &ix.temps,
        |r| [("node", r.node), ("sensor", r.temp.sensor.as_str())],
        |r| r.temp.critical_celsius.map(Value::from),
    );
    family(
        w,
        "coloc_node_failed_units",
        "systemd units in the failed state on the node.",
        Kind::Gauge,
        rows,
        node,
        |r| {
            let units = r.report.units.as_ref()?;
            units.unknown.is_empty().then(|| units.failed.len().into())
        },
    );
    family(
        w,
        "coloc_unit_failed",
        "1 for each failed systemd unit, with systemd's Result.",
        Kind::Gauge,
        &ix.units,
        |r| {
            [
                ("node", r.node),
                ("unit", r.unit.name.as_str()),
                ("result", r.unit.result.as_str()),
            ]
        },
        |_| Some(1u64.into()),
    );
    family(
        w,
        "coloc_nic_up",
        "1 when the network interface's operstate is up.",
        Kind::Gauge,
        &ix.nics,
        |r| [("node", r.node), ("nic", r.nic.name.as_str())],
        |r| Some(r.nic.up.into()),
    );
    family(
        w,
        "coloc_nic_speed_bytes",
        "The network interface's link speed, in bytes per second.",
        Kind::Gauge,
        &ix.nics,
        |r| [("node", r.node), ("nic", r.nic.name.as_str())],
        |r| r.nic.speed_mbps.map(|m| (u64::from(m) * 125_000).into()),
    );
    family(
        w,
        "coloc_node_clock_synchronised",
        "1 when the kernel says the node's clock is synchronised.",
        Kind::Gauge,
        rows,
        node,
        |r| {
            let clock = r.report.clock.as_ref()?;
            clock.unknown.is_empty().then(|| clock.synchronised.into())
        },
    );
    family(
        w,
        "coloc_node_clock_max_error_seconds",
        "The kernel's estimate of the clock's maximum error.",
        Kind::Gauge,
        rows,
        node,
        |r| {
            let clock = r.report.clock.as_ref()?;
            if !clock.unknown.is_empty() {
                return None;
            }
            clock.max_error_secs.map(Value::from)
        },
    );
    family(
        w,
        "coloc_node_reboot_required",
        "1 when the node needs a reboot to run what is installed (a new kernel).",
        Kind::Gauge,
        rows,
        node,
        |r| {
            let reboot = r.report.reboot.as_ref()?;
            reboot.unknown.is_empty().then(|| reboot.required.into())
        },
    );
}

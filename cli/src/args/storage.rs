//! `coloc pool` and `coloc volume` (with its snapshots), with the pool
//! types and layouts they take.

use clap::{Subcommand, ValueEnum};
use coloc_proto::agent::v1 as agent;
use coloc_proto::domain::{NodeName, TenantName};
use coloc_proto::storage::{DiskRef, PoolName, SnapshotName, VolumeName};

use crate::input::{VolumeRef, parse_size, parse_volume_ref, parse_volume_size};

/// Storage backends a pool can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolTypeArg {
    /// A ZFS pool.
    Zfs,
    /// An LVM volume group holding one thin pool.
    Lvm,
}

impl From<PoolTypeArg> for agent::PoolKind {
    fn from(t: PoolTypeArg) -> Self {
        match t {
            PoolTypeArg::Zfs => agent::PoolKind::Zfs,
            PoolTypeArg::Lvm => agent::PoolKind::LvmThin,
        }
    }
}

/// How a pool spreads data over its disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolLayoutArg {
    /// No redundancy: the disks' space is added up (the only layout for lvm).
    Single,
    /// Every disk holds the same data (zfs, at least 2 disks).
    Mirror,
    /// One disk's worth of parity (zfs, at least 2 disks).
    Raidz1,
    /// Two disks' worth of parity (zfs, at least 3 disks).
    Raidz2,
}

impl PoolLayoutArg {
    /// Fewest disks the layout can be built from.
    pub fn min_disks(self) -> usize {
        match self {
            PoolLayoutArg::Single => 1,
            PoolLayoutArg::Mirror => 2,
            PoolLayoutArg::Raidz1 => 3,
            PoolLayoutArg::Raidz2 => 4,
        }
    }
}

impl From<PoolLayoutArg> for agent::PoolLayout {
    fn from(l: PoolLayoutArg) -> Self {
        match l {
            PoolLayoutArg::Single => agent::PoolLayout::Single,
            PoolLayoutArg::Mirror => agent::PoolLayout::Mirror,
            PoolLayoutArg::Raidz1 => agent::PoolLayout::Raidz1,
            PoolLayoutArg::Raidz2 => agent::PoolLayout::Raidz2,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Declare a pool on a node; its agent creates it on blank disks only (unless --force).
    #[command(
        after_help = "Examples:\n  coloc pool create --node n1 --name tank --type zfs --layout mirror --disk serial:COLOC0001 --disk serial:COLOC0002\n  coloc pool create --node n2 --name vg-data --type lvm --disk id:nvme-QEMU_NVMe_Ctrl_COLOC0003"
    )]
    Create {
        /// Node the disks are in.
        #[arg(long)]
        node: NodeName,
        /// Pool (or volume group) name, e.g. tank; at most 32 characters, not a ZFS keyword.
        #[arg(long)]
        name: PoolName,
        /// Storage backend.
        #[arg(long = "type", value_enum, value_name = "TYPE")]
        kind: PoolTypeArg,
        /// How data is spread over the disks (default single; lvm is single only).
        #[arg(long, value_enum)]
        layout: Option<PoolLayoutArg>,
        /// A disk, by serial (serial:XXX) or by its name under /dev/disk/by-id (id:YYY); repeat for each disk.
        #[arg(long = "disk", value_name = "DISK", required = true)]
        disks: Vec<DiskRef>,
        /// Wipe declared disks that hold data (partitions, filesystems, RAID/LVM/ZFS signatures) when creating the pool.
        #[arg(long)]
        force: bool,
    },
    /// List pools with their size, free space, health and problems.
    List {
        /// Only pools on this node.
        #[arg(long)]
        node: Option<NodeName>,
    },
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume for a tenant in a node's pool, mounted at /srv/tenants/<tenant>/<name>.
    #[command(
        after_help = "Example:\n  coloc volume create --tenant asso-x --node n1 --pool tank --size 20G --name data --encrypted"
    )]
    Create {
        /// Tenant the volume belongs to.
        #[arg(long)]
        tenant: TenantName,
        /// Node it lives on.
        #[arg(long)]
        node: NodeName,
        /// Pool on that node.
        #[arg(long)]
        pool: PoolName,
        /// Size the tenant sees, e.g. 20G or 512M (binary units; at least 64M, rounded up to 4M).
        #[arg(long, value_name = "SIZE", value_parser = parse_volume_size)]
        size: u64,
        /// Volume name inside the tenant.
        #[arg(long, default_value = "data")]
        name: VolumeName,
        /// Space set aside in the pool for this volume, e.g. 5G (ZFS pools only; at most --size).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        reserve: Option<u64>,
        /// Encrypt it at rest with a key kept on the node's root disk.
        #[arg(long)]
        encrypted: bool,
    },
    /// List volumes with their use and state.
    List {
        /// Only this tenant's volumes.
        #[arg(long)]
        tenant: Option<TenantName>,
        /// Only volumes on this node.
        #[arg(long)]
        node: Option<NodeName>,
        /// Also list destroyed volumes.
        #[arg(long)]
        all: bool,
    },
    /// Show everything about one volume, its snapshots included.
    Show {
        /// <tenant>/<name>, e.g. asso-x/data, or the volume's id.
        #[arg(value_name = "TENANT/NAME|ID", value_parser = parse_volume_ref)]
        volume: VolumeRef,
    },
    /// Change a volume's size (growing is online; shrinking needs --force and ZFS).
    Resize {
        /// <tenant>/<name>, e.g. asso-x/data, or the volume's id.
        #[arg(value_name = "TENANT/NAME|ID", value_parser = parse_volume_ref)]
        volume: VolumeRef,
        /// New size, e.g. 40G (binary units; at least 64M, rounded up to 4M).
        #[arg(long, value_name = "SIZE", value_parser = parse_volume_size)]
        size: u64,
        /// Allow a smaller size than now (ZFS only, never below the space used).
        #[arg(long)]
        force: bool,
    },
    /// Delete a volume: unmounted at once, kept read-only for the tenant's grace period, then destroyed.
    Delete {
        /// <tenant>/<name>, e.g. asso-x/data, or the volume's id.
        #[arg(value_name = "TENANT/NAME|ID", value_parser = parse_volume_ref)]
        volume: VolumeRef,
    },
    /// Bring back a deleted volume before its grace period ends.
    Restore {
        /// <tenant>/<name>, e.g. asso-x/data, or the volume's id.
        #[arg(value_name = "TENANT/NAME|ID", value_parser = parse_volume_ref)]
        volume: VolumeRef,
    },
    /// Manage a volume's snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Roll a volume back to its most recent snapshot, losing every change made since.
    #[command(
        after_help = "Only the most recent snapshot can be rolled back to, so that no other snapshot is lost; delete later snapshots first to go further back. Without --confirm nothing is sent (exit 2); with a --confirm that does not match, neither (exit 7).\n\nExample:\n  coloc volume rollback asso-x/data before-upgrade --confirm asso-x/data"
    )]
    Rollback {
        /// <tenant>/<name>, e.g. asso-x/data, or the volume's id.
        #[arg(value_name = "TENANT/NAME|ID", value_parser = parse_volume_ref)]
        volume: VolumeRef,
        /// Snapshot to go back to (the volume's most recent one).
        snapshot: SnapshotName,
        /// The volume's <tenant>/<name> typed again, to confirm that changes since the snapshot are lost.
        #[arg(long, value_name = "TENANT/NAME")]
        confirm: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot of a volume (the agent takes it at its next pass).
    Create {
        /// <tenant>/<name>, e.g. asso-x/data, or the volume's id.
        #[arg(value_name = "TENANT/NAME|ID", value_parser = parse_volume_ref)]
        volume: VolumeRef,
        /// Snapshot name, e.g. before-upgrade.
        snapshot: SnapshotName,
    },
    /// List a volume's snapshots with the space each holds.
    List {
        /// <tenant>/<name>, e.g. asso-x/data, or the volume's id.
        #[arg(value_name = "TENANT/NAME|ID", value_parser = parse_volume_ref)]
        volume: VolumeRef,
    },
    /// Delete a snapshot of a volume.
    Delete {
        /// <tenant>/<name>, e.g. asso-x/data, or the volume's id.
        #[arg(value_name = "TENANT/NAME|ID", value_parser = parse_volume_ref)]
        volume: VolumeRef,
        /// Snapshot name.
        snapshot: SnapshotName,
    },
}

//! The command tree: every command, argument and flag of `coloc`, with the
//! help sentence people read. Values are parsed into validated types here
//! (names through `coloc_proto::domain`, sizes, pools, disks and volumes
//! through `coloc_proto::storage`), so a bad value stops the command
//! before any connection is made. This module does no I/O.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use coloc_proto::agent::v1 as agent;
use coloc_proto::controller::v1 as pb;
use coloc_proto::domain::{self, Country, NodeName, SiteName, TenantName, UserName};
use coloc_proto::storage::{DiskRef, PoolName, SnapshotName, VolumeName};

use crate::error::EXIT_CODES_HELP;
use coloc_proto::apps::AppName;

use crate::input::{
    InstanceRef, Ttl, VolumeRef, parse_actor, parse_app_name, parse_city, parse_comment,
    parse_country, parse_date, parse_display_name, parse_instance_ref, parse_site_description,
    parse_size, parse_token_description, parse_token_id, parse_ttl, parse_volume_ref,
    parse_volume_size,
};

const LONG_ABOUT: &str = "\
coloc drives colocd, the cooperative's fleet controller: sites, servers \
(nodes), tenants (associations), storage pools and volumes, apps and the \
requests that install them, users, API tokens and the audit log.

Every call goes over TLS to colocd, whose certificate must be signed by the \
cooperative's CA (--ca-file) and carry the name 'colocd', whatever address \
is dialled. You authenticate with a bearer token or a client certificate.";

const CONFIG_HELP: &str = "\
Configuration, highest precedence first:
  1. flags: --server, --ca-file, --token, --cert/--key
  2. environment: COLOC_SERVER, COLOC_CA_FILE, COLOC_TOKEN, COLOC_CERT/COLOC_KEY
  3. config file: --config FILE, else COLOC_CONFIG, else
     $XDG_CONFIG_HOME/coloc/config.toml or ~/.config/coloc/config.toml
Each setting is taken from the highest source that has it. The credential
(a token, or a certificate with its key) is taken whole from the highest
source that has any part of one. The config file is TOML, the same format
`colocd init` writes to <data_dir>/admin.toml:
  server = \"https://127.0.0.1:7443\"
  ca_file = \"ca.pem\"        # relative to the config file's folder
  token = \"cat_...\"         # or token_file = \"...\", or cert_file + key_file

With --json every command prints its result as JSON on stdout (an object,
or an array for lists); errors stay plain sentences on stderr.";

fn long_help_footer() -> String {
    format!("{CONFIG_HELP}\n\n{EXIT_CODES_HELP}")
}

/// The `coloc` command line.
#[derive(Debug, Parser)]
#[command(
    name = "coloc",
    version,
    about = "Manage the cooperative's sites, servers, tenants, storage, apps and users through colocd.",
    long_about = LONG_ABOUT,
    after_help = "Run 'coloc --help' for configuration and exit codes.",
    after_long_help = long_help_footer(),
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Connection, credentials and output format; accepted before or after the
/// subcommand.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Connection and output")]
pub struct GlobalArgs {
    /// URL of colocd, e.g. https://127.0.0.1:7443 (env COLOC_SERVER).
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,

    /// PEM file of the cooperative's CA, used to verify colocd (env COLOC_CA_FILE).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Bearer token; prefer COLOC_TOKEN or the config file, since flags are visible to other local users.
    #[arg(long, global = true, value_name = "TOKEN", conflicts_with_all = ["cert", "key"])]
    pub token: Option<String>,

    /// Client certificate (PEM) to authenticate with instead of a token; needs --key (env COLOC_CERT).
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of the client certificate (env COLOC_KEY).
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Config file to read instead of the default one (env COLOC_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print results as JSON on stdout, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage sites (rooms or members' premises where servers live).
    Site {
        #[command(subcommand)]
        command: SiteCommand,
    },
    /// Manage servers (nodes): join tokens, listing, draining, labels.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Manage tenants (member associations).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage storage pools (ZFS pools, LVM thin pools) declared on nodes.
    Pool {
        #[command(subcommand)]
        command: PoolCommand,
    },
    /// Manage tenants' volumes: create, resize, delete and restore, snapshots, rollback.
    Volume {
        #[command(subcommand)]
        command: VolumeCommand,
    },
    /// Apps: the catalog, asking for one, and the apps tenants run (status, logs, start/stop).
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Requests for apps: list, read and add to the discussion, approve or reject (admins).
    Request {
        #[command(subcommand)]
        command: RequestCommand,
    },
    /// Manage users, their node grants and client certificates.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Show who colocd thinks you are.
    Whoami,
    /// Show colocd's session counters since it started (admins only).
    Stats,
    /// Show colocd's background tasks: period, last run, duration, outcome, last error (admins only).
    Tasks,
    /// Show the audit log, newest first.
    Audit(AuditArgs),
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Create a site.
    Create {
        /// Site name: lowercase letters, digits and '-', e.g. paris-1.
        name: SiteName,
        /// Two-letter ISO 3166 country code (colocd only accepts FR).
        #[arg(long, value_parser = parse_country)]
        country: Country,
        /// City the site is in.
        #[arg(long, value_parser = parse_city)]
        city: Option<String>,
        /// Free text describing the site.
        #[arg(long, value_parser = parse_site_description)]
        description: Option<String>,
    },
    /// List sites.
    List,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Manage one-time join tokens for new servers.
    Token {
        #[command(subcommand)]
        command: NodeTokenCommand,
    },
    /// List nodes.
    List {
        /// Only nodes at this site.
        #[arg(long)]
        site: Option<SiteName>,
    },
    /// Show a node: status, generations, labels and hardware facts.
    Show {
        /// Node name.
        name: NodeName,
    },
    /// Stop placing new workload on a node; what runs there keeps running.
    Drain {
        /// Node name.
        name: NodeName,
    },
    /// Let a drained node take new workload again.
    Undrain {
        /// Node name.
        name: NodeName,
    },
    /// Check that a node answers through its session, and how fast.
    Ping {
        /// Node name.
        name: NodeName,
    },
    /// Ask a node's agent to re-read its hardware facts now, then show the node.
    RefreshFacts {
        /// Node name.
        name: NodeName,
    },
    /// Set or remove labels on nodes.
    #[command(
        after_help = "Examples:\n  coloc node label n1 n2 role=web zone=paris\n  coloc node label n1 --remove zone\n  coloc node label --all tier=standard"
    )]
    Label {
        /// Node names followed by key=value labels to set, in any order.
        #[arg(value_name = "NODE|KEY=VALUE")]
        words: Vec<String>,
        /// Label key to remove (repeatable).
        #[arg(long, value_name = "KEY")]
        remove: Vec<String>,
        /// Change every node instead of named ones.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeTokenCommand {
    /// Create a one-time join token for a new server at a site; the secret is shown only once.
    Create {
        /// Site the new server belongs to.
        #[arg(long)]
        site: SiteName,
        /// Lifetime, e.g. 30m, 1h or 2d (default 1h, at most 7d).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Ttl>,
    },
    /// List join tokens, used or not.
    List,
}

/// The cooperative's two plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OfferArg {
    /// Managed: the association uses the services.
    Responsable,
    /// The association's members help run the servers.
    Participatif,
}

impl From<OfferArg> for domain::Offer {
    fn from(o: OfferArg) -> Self {
        match o {
            OfferArg::Responsable => domain::Offer::Responsable,
            OfferArg::Participatif => domain::Offer::Participatif,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (a member association).
    Create {
        /// Tenant name: lowercase letters, digits and '-', e.g. asso-x.
        name: TenantName,
        /// Plan the association subscribed to.
        #[arg(long, value_enum)]
        offer: OfferArg,
        /// Last day of membership, YYYY-MM-DD.
        #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
        expires: String,
        /// Name shown to people, e.g. "Les Amis du Vélo".
        #[arg(long, value_parser = parse_display_name)]
        display_name: Option<String>,
    },
    /// List tenants.
    List,
    /// Show one tenant, with its storage quota and use.
    Show {
        /// Tenant name.
        name: TenantName,
    },
    /// Change a tenant's storage quota (admins) or how long its deleted volumes are kept.
    #[command(
        after_help = "Examples:\n  coloc tenant set-storage asso-x --quota 500G\n  coloc tenant set-storage asso-x --grace-days 60"
    )]
    SetStorage {
        /// Tenant name.
        name: TenantName,
        /// Most the sizes of the tenant's active and deleted-but-kept volumes may add up to, e.g. 500G (admins only).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        quota: Option<u64>,
        /// Days a deleted volume is kept before it is destroyed, 1 to 3650 (operators may only lengthen it).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=3650))]
        grace_days: Option<u32>,
    },
}

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

/// Value name and help shared by every command that names an instance.
const INSTANCE_HELP: &str = "<tenant>/<app>, e.g. asso-x/radicale.";

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// List the apps the cooperative offers, with their limits and who may ask for them.
    Catalog,
    /// Ask for an app for a tenant on a node; an administrator discusses and approves it.
    #[command(
        after_help = "Example:\n  coloc app request --tenant asso-x --app radicale --node n1 --comment \"Calendars for our 12 volunteers\"\n\nFollow the request with 'coloc request show N'."
    )]
    Request {
        /// Tenant the app is for (you must be one of its operators or members).
        #[arg(long)]
        tenant: TenantName,
        /// App from the catalog ('coloc app catalog'), e.g. radicale.
        #[arg(long, value_parser = parse_app_name)]
        app: AppName,
        /// Node to run it on; the tenant needs an active volume there.
        #[arg(long)]
        node: NodeName,
        /// The tenant's volume on that node holding the app's data (default: its only one there, or the one named data).
        #[arg(long)]
        volume: Option<VolumeName>,
        /// Why the association wants it, for the administrators (one line, at most 2000 characters).
        #[arg(long, value_parser = parse_comment)]
        comment: String,
    },
    /// List app instances with their state on the node.
    List {
        /// Only this tenant's apps.
        #[arg(long)]
        tenant: Option<TenantName>,
        /// Only apps on this node.
        #[arg(long)]
        node: Option<NodeName>,
    },
    /// Show everything about one app instance: unit, state, health, error and last log lines.
    Status {
        #[arg(value_name = "TENANT/APP", value_parser = parse_instance_ref, help = INSTANCE_HELP)]
        instance: InstanceRef,
    },
    /// Start a stopped app (admins, and the tenant's operators on nodes they are granted).
    Start {
        #[arg(value_name = "TENANT/APP", value_parser = parse_instance_ref, help = INSTANCE_HELP)]
        instance: InstanceRef,
    },
    /// Stop an app; it stays stopped until started again.
    Stop {
        #[arg(value_name = "TENANT/APP", value_parser = parse_instance_ref, help = INSTANCE_HELP)]
        instance: InstanceRef,
    },
    /// Restart an app's unit.
    Restart {
        #[arg(value_name = "TENANT/APP", value_parser = parse_instance_ref, help = INSTANCE_HELP)]
        instance: InstanceRef,
    },
    /// Remove an app (admins): its unit is stopped and disabled and its web route removed; its data stays on the volume.
    #[command(
        after_help = "The app's files under <volume>/apps/<app> are left as they are: a new request for the same app on the same volume finds them again. Without --confirm nothing is sent (exit 2); with a --confirm that does not match, neither (exit 7).\n\nExample:\n  coloc app remove asso-x/radicale --confirm asso-x/radicale"
    )]
    Remove {
        #[arg(value_name = "TENANT/APP", value_parser = parse_instance_ref, help = INSTANCE_HELP)]
        instance: InstanceRef,
        /// The instance's <tenant>/<app> typed again, to confirm.
        #[arg(long, value_name = "TENANT/APP")]
        confirm: Option<String>,
    },
    /// Show an app's journal, read on its node; -f keeps printing new lines until Ctrl-C.
    #[command(
        after_help = "With --json: one object {\"lines\": [...], \"cursor\": \"...\"}; with -f, one such object per line (JSON Lines) each time new lines arrive."
    )]
    Logs {
        #[arg(value_name = "TENANT/APP", value_parser = parse_instance_ref, help = INSTANCE_HELP)]
        instance: InstanceRef,
        /// How many of the last lines to show first, 1 to 1000.
        #[arg(short = 'n', long, value_name = "LINES", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        lines: u32,
        /// Keep asking the node every second for new lines, until Ctrl-C.
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RequestStateArg {
    /// Waiting for an administrator's decision.
    Pending,
    /// Approved: the app was created.
    Approved,
    /// Rejected, with the reason in the thread.
    Rejected,
}

impl From<RequestStateArg> for pb::RequestState {
    fn from(s: RequestStateArg) -> Self {
        match s {
            RequestStateArg::Pending => pb::RequestState::Pending,
            RequestStateArg::Approved => pb::RequestState::Approved,
            RequestStateArg::Rejected => pb::RequestState::Rejected,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// List app requests you may see (your tenant's, or every one for admins).
    List {
        /// Only this tenant's requests.
        #[arg(long)]
        tenant: Option<TenantName>,
        /// Only requests in this state.
        #[arg(long, value_enum)]
        state: Option<RequestStateArg>,
    },
    /// Show a request: what is asked, its state, the discussion and the decision.
    Show {
        /// Request number, as shown by 'coloc request list'.
        #[arg(value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
    },
    /// Add a comment to a request's discussion.
    Comment {
        /// Request number.
        #[arg(value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// The comment (one line, at most 2000 characters).
        #[arg(value_name = "TEXT", value_parser = parse_comment)]
        text: String,
    },
    /// Approve a pending request (admins): the app is created and its node installs and starts it.
    Approve {
        /// Request number.
        #[arg(value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// A word for the tenant, added to the discussion.
        #[arg(long, value_parser = parse_comment)]
        comment: Option<String>,
    },
    /// Reject a pending request (admins); the reason is required and goes to the tenant.
    Reject {
        /// Request number.
        #[arg(value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// Why, for the tenant (required).
        #[arg(long, value_parser = parse_comment)]
        comment: Option<String>,
    },
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// The cooperative's sysadmins (no tenant).
    Admin,
    /// Members of a participatory tenant, with rights on granted nodes.
    Operator,
    /// Reads its own tenant.
    Member,
}

impl From<RoleArg> for domain::Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => domain::Role::Admin,
            RoleArg::Operator => domain::Role::Operator,
            RoleArg::Member => domain::Role::Member,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create {
        /// Login: lowercase letters, digits and '-'.
        name: UserName,
        /// What the user may do.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Tenant the user belongs to (required for operator and member, refused for admin).
        #[arg(long)]
        tenant: Option<TenantName>,
        /// Name shown to people.
        #[arg(long, value_parser = parse_display_name)]
        display_name: Option<String>,
    },
    /// List users.
    List {
        /// Only users of this tenant.
        #[arg(long)]
        tenant: Option<TenantName>,
    },
    /// Grant an operator rights on a node.
    Grant {
        /// User to grant.
        user: UserName,
        /// Node the user may operate.
        #[arg(long)]
        node: NodeName,
    },
    /// Take back an operator's rights on a node.
    RevokeGrant {
        /// User to revoke from.
        user: UserName,
        /// Node the user may no longer operate.
        #[arg(long)]
        node: NodeName,
    },
    /// Get a client certificate for a user: the key is generated here and never leaves this machine.
    Cert {
        /// User the certificate is for (its common name).
        user: UserName,
        /// Folder to write USER.key (mode 0600) and USER.crt into; created if missing.
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// Lifetime, e.g. 30d (default 90d, at most 365d).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Ttl>,
        /// Overwrite USER.key and USER.crt if they exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token for yourself or (admins) another user; the secret is shown only once.
    Create {
        /// User the token is for (default: yourself).
        #[arg(long)]
        user: Option<UserName>,
        /// What the token is for, e.g. "backup script".
        #[arg(long, value_parser = parse_token_description)]
        description: Option<String>,
        /// Lifetime, e.g. 7d (default 30d, at most 365d).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Ttl>,
    },
    /// List tokens (secrets are never shown again).
    List {
        /// Only this user's tokens (default: yours).
        #[arg(long, conflicts_with = "all")]
        user: Option<UserName>,
        /// Every user's tokens (admins only).
        #[arg(long)]
        all: bool,
    },
    /// Revoke a token at once.
    Revoke {
        /// Token id, as shown by 'coloc token list'.
        #[arg(value_parser = parse_token_id)]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries about this tenant.
    #[arg(long)]
    pub tenant: Option<TenantName>,
    /// Only entries by this actor, e.g. user:alice or node:n1.
    #[arg(long, value_parser = parse_actor)]
    pub actor: Option<String>,
    /// How many entries to show, 1 to 1000 (default 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Only entries older than this entry id, to page back.
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub before: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("coloc").chain(args.iter().copied()))
    }

    #[test]
    fn tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str) {
            let here = format!("{path} {}", cmd.get_name());
            if cmd.get_name() != "help" {
                assert!(cmd.get_about().is_some(), "{here} has no help");
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{here} --{id} has no help");
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &here);
            }
        }
        walk(&Cli::command(), "");
    }

    #[test]
    fn globals_go_anywhere() {
        let cli = parse(&["node", "list", "--json", "--server", "https://x:1"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.server.as_deref(), Some("https://x:1"));
    }

    #[test]
    fn names_are_validated_while_parsing() {
        let err = parse(&["node", "show", "Bad_Name"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert!(err.to_string().contains("node name"), "{err}");
        let err = parse(&[
            "tenant",
            "create",
            "asso-x",
            "--offer",
            "gratuit",
            "--expires",
            "2027-01-01",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn commands_parse_into_typed_values() {
        let cli = parse(&[
            "tenant",
            "create",
            "asso-x",
            "--offer",
            "participatif",
            "--expires",
            "2027-06-30",
        ])
        .unwrap();
        match cli.command {
            Command::Tenant {
                command:
                    TenantCommand::Create {
                        name,
                        offer,
                        expires,
                        display_name,
                    },
            } => {
                assert_eq!(name.as_str(), "asso-x");
                assert_eq!(offer, OfferArg::Participatif);
                assert_eq!(expires, "2027-06-30");
                assert_eq!(display_name, None);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = parse(&[
            "node", "token", "create", "--site", "paris-1", "--ttl", "2h",
        ])
        .unwrap();
        match cli.command {
            Command::Node {
                command:
                    NodeCommand::Token {
                        command: NodeTokenCommand::Create { site, ttl },
                    },
            } => {
                assert_eq!(site.as_str(), "paris-1");
                assert_eq!(ttl.map(Ttl::secs), Some(7200));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn credential_flags_exclude_each_other() {
        assert!(parse(&["whoami", "--token", "t", "--cert", "c", "--key", "k"]).is_err());
        assert!(parse(&["whoami", "--cert", "c"]).is_err());
        assert!(parse(&["whoami", "--cert", "c", "--key", "k"]).is_ok());
    }

    #[test]
    fn storage_commands_parse() {
        let cli = parse(&[
            "pool",
            "create",
            "--node",
            "n1",
            "--name",
            "tank",
            "--type",
            "zfs",
            "--layout",
            "mirror",
            "--disk",
            "serial:A1",
            "--disk",
            "id:nvme-X",
        ])
        .unwrap();
        match cli.command {
            Command::Pool {
                command:
                    PoolCommand::Create {
                        kind,
                        layout,
                        disks,
                        force,
                        ..
                    },
            } => {
                assert_eq!(kind, PoolTypeArg::Zfs);
                assert_eq!(layout, Some(PoolLayoutArg::Mirror));
                assert_eq!(disks.len(), 2);
                assert!(!force);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = parse(&[
            "volume", "create", "--tenant", "asso-x", "--node", "n1", "--pool", "tank", "--size",
            "20G",
        ])
        .unwrap();
        match cli.command {
            Command::Volume {
                command: VolumeCommand::Create { size, name, .. },
            } => {
                assert_eq!(size, 20 << 30);
                assert_eq!(name.as_str(), "data");
            }
            other => panic!("parsed as {other:?}"),
        }
        for bad in [
            &[
                "volume", "create", "--tenant", "asso-x", "--node", "n1", "--pool", "tank",
                "--size", "20X",
            ][..],
            &["volume", "resize", "asso-x/data", "--size", "1M"],
            &["volume", "show", "data"],
            &[
                "pool", "create", "--node", "n1", "--name", "mirror", "--type", "zfs", "--disk",
                "serial:A",
            ],
            &[
                "pool", "create", "--node", "n1", "--name", "tank", "--type", "zfs", "--disk",
                "sda",
            ],
            &["tenant", "set-storage", "asso-x", "--grace-days", "0"],
            &["volume", "snapshot", "create", "asso-x/data", "Snap"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad:?}: {err}");
        }
        assert_eq!(
            parse(&[
                "pool", "create", "--node", "n1", "--name", "tank", "--type", "zfs"
            ])
            .unwrap_err()
            .kind(),
            ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn app_commands_parse() {
        let cli = parse(&["app", "logs", "asso-x/radicale", "-f"]).unwrap();
        match cli.command {
            Command::App {
                command:
                    AppCommand::Logs {
                        instance,
                        lines,
                        follow,
                    },
            } => {
                assert_eq!(instance.to_string(), "asso-x/radicale");
                assert_eq!(lines, 100);
                assert!(follow);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = parse(&["request", "list", "--state", "approved"]).unwrap();
        match cli.command {
            Command::Request {
                command: RequestCommand::List { tenant, state },
            } => {
                assert_eq!(tenant, None);
                assert_eq!(
                    state.map(pb::RequestState::from),
                    Some(pb::RequestState::Approved)
                );
            }
            other => panic!("parsed as {other:?}"),
        }
        for bad in [
            &["app", "logs", "asso-x/radicale", "-n", "0"][..],
            &["app", "status", "asso-x"],
            &["request", "show", "0"],
            &["request", "comment", "1", "a\nb"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad:?}: {err}");
        }
    }

    #[test]
    fn audit_limits() {
        assert!(parse(&["audit", "--limit", "0"]).is_err());
        assert!(parse(&["audit", "--limit", "1001"]).is_err());
        assert!(parse(&["audit", "--limit", "1000", "--before", "42"]).is_ok());
    }
}

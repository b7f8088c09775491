//! `coloc site` and `coloc node` (with its join tokens).

use clap::Subcommand;
use coloc_proto::domain::{Country, NodeName, SiteName};

use crate::input::{
    DiskRef, Ttl, parse_city, parse_country, parse_disk_ref, parse_site_description, parse_ttl,
    parse_zpool_name,
};

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
    /// List nodes, with a HEALTH column from the firing alerts (admins).
    #[command(
        after_help = "HEALTH is 'ok', or the firing alerts about the node and what it holds ('1 critical, 2 warning'), 'unknown' for a node that never reported, and '-' when you may not see nodes' health (only admins do)."
    )]
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
    /// Decommission a node (admins): its certificate is refused from now on and its session closed; its volumes and apps stay, as orphans.
    #[command(
        after_help = "Nothing is destroyed: the node's volumes and app instances are listed as orphans (coloc volume list, coloc app list) until an admin deletes them (coloc volume delete, coloc app remove), which releases their names and quota without touching the server's disks. The node's record stays, and its name is not given to another node. Without --confirm nothing is sent (exit 2); with a --confirm that does not match, neither (exit 7).\n\nExample:\n  coloc node remove n3 --confirm n3"
    )]
    Remove {
        /// Node name.
        name: NodeName,
        /// The node's name typed again, to confirm.
        #[arg(long, value_name = "NODE")]
        confirm: Option<String>,
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
    /// Show a node's health (admins): problems first, then disks with their SMART summary, ZFS and thin pools, filesystems, load, temperatures, failed units, NICs, clock, maintenance runs and firing alerts.
    #[command(
        after_help = "Problems are listed first, in words. A report older than two health periods is marked STALE: the node is silent and what it says may no longer be true. A part the agent could not read says 'unknown' with the reason: unknown is never healthy.\n\nExample:\n  coloc node health n1"
    )]
    Health {
        /// Node name.
        name: NodeName,
    },
    /// Start a ZFS scrub of one of a node's pools now (admins; audited); its progress shows in 'coloc node health'.
    Scrub {
        /// Node name.
        name: NodeName,
        /// The ZFS pool to scrub, as 'coloc node health' lists it.
        #[arg(value_parser = parse_zpool_name)]
        pool: String,
    },
    /// Start a SMART self-test of one of a node's disks now (admins; audited): short by default, --long for the full surface scan.
    #[command(
        after_help = "The result shows in 'coloc node health' once the drive finishes (a short test takes about two minutes, a long one hours).\n\nExamples:\n  coloc node self-test n1 /dev/nvme0n1\n  coloc node self-test n1 S4GNNX0N --long"
    )]
    SelfTest {
        /// Node name.
        name: NodeName,
        /// The disk: its device path (/dev/sda) or its serial, as 'coloc node health' lists them.
        #[arg(value_name = "DEVICE_OR_SERIAL", value_parser = parse_disk_ref)]
        disk: DiskRef,
        /// Run the long (extended) self-test instead of the short one.
        #[arg(long)]
        long: bool,
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

//! The command tree: every command, argument and flag of `coloc`, with the
//! help sentence people read. Values are parsed into validated types here
//! (names through `coloc_proto::domain`, sizes, pools, disks and volumes
//! through `coloc_proto::storage`), so a bad value stops the command
//! before any connection is made. This module does no I/O.
//!
//! The top of the tree, the global flags and `coloc audit`'s arguments are
//! here; each area's subcommands are in its module, as in
//! [`crate::commands`]: [`fleet`] (site, node), [`tenancy`] (tenant, user,
//! token), [`storage`] (pool, volume), [`apps`] (app, request) and
//! [`health`] (alert).

pub mod apps;
pub mod fleet;
pub mod health;
pub mod storage;
pub mod tenancy;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use coloc_proto::domain::TenantName;

use crate::error::EXIT_CODES_HELP;
use crate::input::parse_actor;

const LONG_ABOUT: &str = "\
coloc drives colocd, the cooperative's fleet controller: sites, servers \
(nodes), tenants (associations), storage pools and volumes, apps and the \
requests that install them, the servers' health and alerts, users, API \
tokens and the audit log.

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
        command: fleet::SiteCommand,
    },
    /// Manage servers (nodes): join tokens, listing, health, draining, labels, scrubs and self-tests.
    Node {
        #[command(subcommand)]
        command: fleet::NodeCommand,
    },
    /// Manage tenants (member associations).
    Tenant {
        #[command(subcommand)]
        command: tenancy::TenantCommand,
    },
    /// Manage storage pools (ZFS pools, LVM thin pools) declared on nodes.
    Pool {
        #[command(subcommand)]
        command: storage::PoolCommand,
    },
    /// Manage tenants' volumes: create, resize, delete and restore, snapshots, rollback.
    Volume {
        #[command(subcommand)]
        command: storage::VolumeCommand,
    },
    /// Apps: the catalog, asking for one, and the apps tenants run (status, logs, start/stop).
    App {
        #[command(subcommand)]
        command: apps::AppCommand,
    },
    /// Requests for apps: list, read and add to the discussion, approve or reject (admins).
    Request {
        #[command(subcommand)]
        command: apps::RequestCommand,
    },
    /// Alerts raised by colocd's health rules: list, show, acknowledge, silence.
    Alert {
        #[command(subcommand)]
        command: health::AlertCommand,
    },
    /// Manage users, their node grants and client certificates.
    User {
        #[command(subcommand)]
        command: tenancy::UserCommand,
    },
    /// Manage API bearer tokens.
    Token {
        #[command(subcommand)]
        command: tenancy::TokenCommand,
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

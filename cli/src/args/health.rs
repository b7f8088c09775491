//! `coloc alert`: the alerts colocd's health rules raise, and what people
//! do with them (acknowledge, silence). `coloc node health`, `scrub` and
//! `self-test` are under `coloc node`, in [`super::fleet`].

use clap::Subcommand;
use coloc_proto::domain::{NodeName, TenantName};

use crate::input::{parse_alert_id, parse_comment, parse_silence};

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// List alerts, newest first: firing ones unless --all (admins see every alert, members their tenant's).
    #[command(
        after_help = "Examples:\n  coloc alert list\n  coloc alert list --all --node n1 --limit 50"
    )]
    List {
        /// Include resolved alerts, not only firing ones.
        #[arg(long)]
        all: bool,
        /// Only alerts about this node and what it holds.
        #[arg(long)]
        node: Option<NodeName>,
        /// Only alerts about this tenant's volumes, apps and membership.
        #[arg(long)]
        tenant: Option<TenantName>,
        /// How many alerts to show, 1 to 1000 (default 200).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
    /// Show one alert: what is wrong, since when, who acknowledged or silenced it.
    Show {
        /// Alert id, as 'coloc alert list' shows it.
        #[arg(value_name = "ID", value_parser = parse_alert_id)]
        id: u64,
    },
    /// Acknowledge an alert: say someone is on it. Notifications stop repeating; the alert still resolves by itself (audited).
    #[command(
        after_help = "Example:\n  coloc alert ack 12 --comment \"Replacing the disk Tuesday, spare ordered\""
    )]
    Ack {
        /// Alert id.
        #[arg(value_name = "ID", value_parser = parse_alert_id)]
        id: u64,
        /// What is being done about it (required; one line).
        #[arg(long, value_name = "TEXT", value_parser = parse_comment)]
        comment: String,
    },
    /// Silence an alert for a while: no notifications, still listed, still resolves (audited).
    #[command(
        after_help = "Example:\n  coloc alert silence 12 --for 2h --comment \"disk swap in progress\""
    )]
    Silence {
        /// Alert id.
        #[arg(value_name = "ID", value_parser = parse_alert_id)]
        id: u64,
        /// How long, from now: e.g. 30m, 2h, 3d (at most 30d).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_silence)]
        duration_secs: u32,
        /// Why (one line).
        #[arg(long, value_name = "TEXT", value_parser = parse_comment)]
        comment: Option<String>,
    },
    /// Lift an alert's silence now: notifications resume (audited).
    Unsilence {
        /// Alert id.
        #[arg(value_name = "ID", value_parser = parse_alert_id)]
        id: u64,
    },
}

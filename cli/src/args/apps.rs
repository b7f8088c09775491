//! `coloc app` and `coloc request`, with the request states they take.

use clap::{Subcommand, ValueEnum};
use coloc_proto::apps::AppName;
use coloc_proto::apps::web::WebUser;
use coloc_proto::controller::v1 as pb;
use coloc_proto::domain::{NodeName, TenantName};
use coloc_proto::storage::VolumeName;

use crate::input::{InstanceRef, parse_app_name, parse_comment, parse_instance_ref};

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
    /// Set the login the node's proxy asks for in front of an app without one of its own, such as Syncthing's web UI (admins and the tenant's operators).
    #[command(
        after_help = "The password is asked twice without echo (or read from the first line of standard input with --password-stdin), hashed with bcrypt on this computer, and only the hash is sent: colocd and the node never see the password. Until a password is set, such an app answers 503 at its address. Setting it again replaces the login. At least 12 characters, at most 72 bytes.\n\nExample:\n  coloc app set-password asso-x/syncthing --user asso-x"
    )]
    SetPassword {
        #[arg(value_name = "TENANT/APP", value_parser = parse_instance_ref, help = INSTANCE_HELP)]
        instance: InstanceRef,
        /// The user name to type at the login prompt (a-z, 0-9 and '-'; default: the tenant's name).
        #[arg(long)]
        user: Option<WebUser>,
        /// Read the password from the first line of standard input instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
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

//! `coloc tenant`, `coloc user` (with `coloc user cert`) and `coloc
//! token`, with the offers and roles they take.

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use coloc_proto::domain::{self, CertSerial, NodeName, TenantName, UserName};

use crate::input::{
    Ttl, parse_date, parse_display_name, parse_size, parse_suspension_reason,
    parse_token_description, parse_token_id, parse_ttl,
};

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
    /// Record a paid membership: its new last day (admins). An expired or
    /// frozen tenant is current again at once.
    #[command(after_help = "Example:\n  coloc tenant renew asso-x --expires 2027-12-31")]
    Renew {
        /// Tenant name.
        name: TenantName,
        /// New last day of membership, YYYY-MM-DD, today or later.
        #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
        expires: String,
    },
    /// Stop every app of a tenant on its nodes until it is resumed (admins).
    /// Nothing is deleted: instances, volumes and data stay; its users are
    /// told why on every call.
    #[command(
        after_help = "Example:\n  coloc tenant suspend asso-x --reason \"relays spam, see ticket 42\""
    )]
    Suspend {
        /// Tenant name.
        name: TenantName,
        /// Why, in a sentence: the tenant's users read it (at most 500 characters).
        #[arg(long, value_parser = parse_suspension_reason)]
        reason: String,
    },
    /// Start a suspended tenant's apps again (admins).
    Resume {
        /// Tenant name.
        name: TenantName,
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
    /// Client certificates: get one, list them, revoke one.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Change a user's role (admins); an operator who stops being one loses their node grants.
    #[command(
        after_help = "Users keep their tenant; an admin who becomes an operator or a member joins the --tenant given. The last enabled admin cannot be made anything else.\n\nExamples:\n  coloc user set-role mia --role operator\n  coloc user set-role root2 --role member --tenant asso-x"
    )]
    SetRole {
        /// User whose role changes.
        user: UserName,
        /// The new role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Only for an admin who becomes an operator or member: the tenant they join.
        #[arg(long)]
        tenant: Option<TenantName>,
    },
    /// Refuse every credential of a user at once, until enabled again (admins).
    Disable {
        /// User to disable.
        user: UserName,
    },
    /// Accept a disabled user's credentials again (admins).
    Enable {
        /// User to enable.
        user: UserName,
    },
    /// Delete a user and their tokens and certificates (admins); the name is never given again.
    #[command(
        after_help = "Credentials other users minted with the deleted user's are revoked. Without --confirm nothing is sent (exit 2); with a --confirm that does not match, neither (exit 7).\n\nExample:\n  coloc user delete mia --confirm mia"
    )]
    Delete {
        /// User to delete.
        user: UserName,
        /// The user's name typed again, to confirm.
        #[arg(long, value_name = "USER")]
        confirm: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Get a client certificate for a user: the key is generated here and never leaves this machine.
    #[command(
        after_help = "The certificate expires no later than the credential you ask with, and is revoked with it.\n\nExample:\n  coloc user cert issue mia --out-dir ~/.config/coloc --ttl 90d"
    )]
    Issue {
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
    /// List client certificates by serial.
    List {
        /// Only this user's certificates (default: yours).
        #[arg(long, conflicts_with = "all")]
        user: Option<UserName>,
        /// Every user's certificates (admins only).
        #[arg(long)]
        all: bool,
    },
    /// Revoke a client certificate at once, with every credential minted with it.
    Revoke {
        /// Serial, as shown by 'coloc user cert list'.
        serial: CertSerial,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token for yourself or (admins) another user; the secret is shown only once.
    #[command(
        after_help = "The token expires no later than the credential you ask with, and is revoked with it."
    )]
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
    /// Revoke a token at once, with every credential minted with it.
    Revoke {
        /// Token id, as shown by 'coloc token list'.
        #[arg(value_parser = parse_token_id)]
        id: String,
    },
}

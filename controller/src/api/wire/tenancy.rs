//! Tenants, users, tokens and user certificates requests.

use coloc_proto::controller::v1 as pb;
use coloc_proto::domain::{
    CertSerial, InvalidInput, NodeName, Offer, Role, TenantName, Text, UserName, clip,
};

use super::{optional, required};
pub use crate::rules::credentials::{MAX_CREDENTIAL_TTL, MIN_CREDENTIAL_TTL};
use crate::store::RoleChange;
use crate::time::parse_date;

/// Lifetime of an API token and of a user certificate when the caller
/// asks for 0.
pub const API_TOKEN_DEFAULT_TTL: u64 = 30 * 86400;
pub const USER_CERT_DEFAULT_TTL: u64 = 90 * 86400;
/// A P-256 CSR is well under 1 KiB; this leaves room for RSA.
pub const MAX_CSR_BYTES: usize = 16 * 1024;
/// Longest API token id (`tok-` and a few hex digits today).
pub const MAX_TOKEN_ID_LEN: usize = 40;

/// A credential's lifetime: 0 asks for `default`.
fn credential_ttl(asked: u64, default: u64) -> Result<u64, InvalidInput> {
    match asked {
        0 => Ok(default),
        t if (MIN_CREDENTIAL_TTL..=MAX_CREDENTIAL_TTL).contains(&t) => Ok(t),
        t => Err(InvalidInput::field(
            "ttl",
            format!("{t} s is outside 60 s to 365 days"),
        )),
    }
}

/// `CreateTenant`. Whether the expiry is already past depends on the
/// clock: the handler's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTenant {
    pub name: TenantName,
    pub offer: Offer,
    pub display_name: String,
    pub membership_expires: time::Date,
}

/// A membership's last day, "YYYY-MM-DD".
fn membership_expiry(text: &str) -> Result<time::Date, InvalidInput> {
    parse_date(text).ok_or_else(|| {
        InvalidInput::field(
            "membership expiry",
            format!("{:?} is not a date YYYY-MM-DD", clip(text)),
        )
    })
}

impl TryFrom<pb::CreateTenantRequest> for CreateTenant {
    type Error = InvalidInput;
    fn try_from(r: pb::CreateTenantRequest) -> Result<Self, InvalidInput> {
        let name = required(r.name)?;
        let offer = Offer::try_from(r.offer)?;
        Text::DisplayName.check(&r.display_name)?;
        let membership_expires = membership_expiry(&r.membership_expires)?;
        Ok(CreateTenant {
            name,
            offer,
            display_name: r.display_name,
            membership_expires,
        })
    }
}

/// `GetTenant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetTenant {
    pub name: TenantName,
}

impl TryFrom<pb::GetTenantRequest> for GetTenant {
    type Error = InvalidInput;
    fn try_from(r: pb::GetTenantRequest) -> Result<Self, InvalidInput> {
        Ok(GetTenant {
            name: required(r.name)?,
        })
    }
}

/// `RenewMembership`. Whether the date is already past depends on the
/// clock: the handler's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewMembership {
    pub name: TenantName,
    pub membership_expires: time::Date,
}

impl TryFrom<pb::RenewMembershipRequest> for RenewMembership {
    type Error = InvalidInput;
    fn try_from(r: pb::RenewMembershipRequest) -> Result<Self, InvalidInput> {
        Ok(RenewMembership {
            name: required(r.name)?,
            membership_expires: membership_expiry(&r.membership_expires)?,
        })
    }
}

/// `SuspendTenant`: a reason is required, since the tenant's users read
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspendTenant {
    pub name: TenantName,
    pub reason: String,
}

impl TryFrom<pb::SuspendTenantRequest> for SuspendTenant {
    type Error = InvalidInput;
    fn try_from(r: pb::SuspendTenantRequest) -> Result<Self, InvalidInput> {
        let name = required(r.name)?;
        Text::SuspensionReason.check(&r.reason)?;
        if r.reason.trim().is_empty() {
            return Err(InvalidInput::field(
                Text::SuspensionReason.field(),
                "say why the tenant is suspended: its users read it",
            ));
        }
        Ok(SuspendTenant {
            name,
            reason: r.reason,
        })
    }
}

/// `ResumeTenant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeTenant {
    pub name: TenantName,
}

impl TryFrom<pb::ResumeTenantRequest> for ResumeTenant {
    type Error = InvalidInput;
    fn try_from(r: pb::ResumeTenantRequest) -> Result<Self, InvalidInput> {
        Ok(ResumeTenant {
            name: required(r.name)?,
        })
    }
}

/// `CreateUser`: admins are the cooperative's and belong to no tenant,
/// everyone else to exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateUser {
    pub name: UserName,
    pub role: Role,
    pub display_name: String,
    /// `None` exactly for admins.
    pub tenant: Option<TenantName>,
}

impl TryFrom<pb::CreateUserRequest> for CreateUser {
    type Error = InvalidInput;
    fn try_from(r: pb::CreateUserRequest) -> Result<Self, InvalidInput> {
        let name = required(r.name)?;
        let role = Role::try_from(r.role)?;
        Text::DisplayName.check(&r.display_name)?;
        let tenant = match (role, optional(&r.tenant, TenantName::new)) {
            (Role::Admin, Ok(None)) => None,
            (Role::Admin, _) => {
                return Err(InvalidInput::field(
                    "tenant",
                    "admins are the cooperative's and belong to no tenant",
                ));
            }
            (Role::Operator | Role::Member, Ok(None)) => {
                return Err(InvalidInput::field(
                    "tenant",
                    "operators and members belong to a tenant",
                ));
            }
            (Role::Operator | Role::Member, tenant) => tenant?,
        };
        Ok(CreateUser {
            name,
            role,
            display_name: r.display_name,
            tenant,
        })
    }
}

/// `ListUsers`: one tenant's, or (for admins) everyone's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListUsers {
    pub tenant: Option<TenantName>,
}

impl TryFrom<pb::ListUsersRequest> for ListUsers {
    type Error = InvalidInput;
    fn try_from(r: pb::ListUsersRequest) -> Result<Self, InvalidInput> {
        Ok(ListUsers {
            tenant: optional(&r.tenant, TenantName::new)?,
        })
    }
}

/// `GrantNode`, `RevokeNodeGrant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGrant {
    pub user: UserName,
    pub node: NodeName,
}

impl TryFrom<pb::GrantNodeRequest> for NodeGrant {
    type Error = InvalidInput;
    fn try_from(r: pb::GrantNodeRequest) -> Result<Self, InvalidInput> {
        Ok(NodeGrant {
            user: required(r.user)?,
            node: required(r.node)?,
        })
    }
}

/// `DisableUser`, `EnableUser`, `DeleteUser`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub name: UserName,
}

impl TryFrom<pb::UserRef> for UserRef {
    type Error = InvalidInput;
    fn try_from(r: pb::UserRef) -> Result<Self, InvalidInput> {
        Ok(UserRef {
            name: required(r.name)?,
        })
    }
}

/// `SetUserRole`: the role, and the tenant only as given (the store's
/// rule decides whether one is needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetUserRole {
    pub user: UserName,
    pub change: RoleChange,
}

impl TryFrom<pb::SetUserRoleRequest> for SetUserRole {
    type Error = InvalidInput;
    fn try_from(r: pb::SetUserRoleRequest) -> Result<Self, InvalidInput> {
        Ok(SetUserRole {
            user: required(r.user)?,
            change: RoleChange {
                role: Role::try_from(r.role)?,
                tenant: optional(&r.tenant, TenantName::new)?,
            },
        })
    }
}

/// `IssueUserCertificate`, its lifetime resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueUserCertificate {
    /// `None`: the caller.
    pub user: Option<UserName>,
    /// At most [`MAX_CSR_BYTES`]; the CA parses it.
    pub csr_pem: String,
    pub ttl_secs: u64,
}

impl TryFrom<pb::IssueUserCertificateRequest> for IssueUserCertificate {
    type Error = InvalidInput;
    fn try_from(r: pb::IssueUserCertificateRequest) -> Result<Self, InvalidInput> {
        let user = optional(&r.user, UserName::new)?;
        if r.csr_pem.len() > MAX_CSR_BYTES {
            return Err(InvalidInput::field("csr", "larger than 16 KiB"));
        }
        Ok(IssueUserCertificate {
            user,
            csr_pem: r.csr_pem,
            ttl_secs: credential_ttl(r.ttl_secs, USER_CERT_DEFAULT_TTL)?,
        })
    }
}

/// `CreateToken`, its lifetime resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateToken {
    /// `None`: the caller.
    pub user: Option<UserName>,
    pub description: String,
    pub ttl_secs: u64,
}

impl TryFrom<pb::CreateTokenRequest> for CreateToken {
    type Error = InvalidInput;
    fn try_from(r: pb::CreateTokenRequest) -> Result<Self, InvalidInput> {
        let user = optional(&r.user, UserName::new)?;
        Text::TokenDescription.check(&r.description)?;
        Ok(CreateToken {
            user,
            description: r.description,
            ttl_secs: credential_ttl(r.ttl_secs, API_TOKEN_DEFAULT_TTL)?,
        })
    }
}

/// `ListTokens`, `ListUserCertificates`: whose credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whose {
    /// Everyone's (admins only); the user field is then ignored.
    All,
    /// The caller's.
    Own,
    Of(UserName),
}

impl Whose {
    fn new(user: &str, all: bool) -> Result<Self, InvalidInput> {
        if all {
            return Ok(Whose::All);
        }
        Ok(optional(user, UserName::new)?.map_or(Whose::Own, Whose::Of))
    }
}

impl TryFrom<pb::ListTokensRequest> for Whose {
    type Error = InvalidInput;
    fn try_from(r: pb::ListTokensRequest) -> Result<Self, InvalidInput> {
        Whose::new(&r.user, r.all)
    }
}

impl TryFrom<pb::ListUserCertificatesRequest> for Whose {
    type Error = InvalidInput;
    fn try_from(r: pb::ListUserCertificatesRequest) -> Result<Self, InvalidInput> {
        Whose::new(&r.user, r.all)
    }
}

/// `RevokeUserCertificate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeUserCertificate {
    pub serial: CertSerial,
}

impl TryFrom<pb::RevokeUserCertificateRequest> for RevokeUserCertificate {
    type Error = InvalidInput;
    fn try_from(r: pb::RevokeUserCertificateRequest) -> Result<Self, InvalidInput> {
        Ok(RevokeUserCertificate {
            serial: required(r.serial)?,
        })
    }
}

/// `RevokeToken`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeToken {
    /// `[A-Za-z0-9-]`, at most [`MAX_TOKEN_ID_LEN`].
    pub id: String,
}

impl TryFrom<pb::RevokeTokenRequest> for RevokeToken {
    type Error = InvalidInput;
    fn try_from(r: pb::RevokeTokenRequest) -> Result<Self, InvalidInput> {
        let id = r.id;
        if id.is_empty()
            || id.len() > MAX_TOKEN_ID_LEN
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(InvalidInput::field(
                "token id",
                "not a token id such as tok-1a2b3c",
            ));
        }
        Ok(RevokeToken { id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::refused;

    fn tenant(name: &str, offer: i32, display: &str, expires: &str) -> pb::CreateTenantRequest {
        pb::CreateTenantRequest {
            name: name.into(),
            display_name: display.into(),
            offer,
            membership_expires: expires.into(),
        }
    }

    #[test]
    fn tenants() {
        let p = pb::Offer::Participatif as i32;
        let t = CreateTenant::try_from(tenant("asso-x", p, "Asso X", "2099-01-31")).unwrap();
        assert_eq!(t.name.as_str(), "asso-x");
        assert_eq!(t.offer, Offer::Participatif);
        assert_eq!(t.membership_expires.to_string(), "2099-01-31");
        refused(
            CreateTenant::try_from(tenant("", p, "", "2099-01-01")),
            "tenant name",
        );
        refused(
            CreateTenant::try_from(tenant("a b", p, "", "2099-01-01")),
            "tenant name",
        );
        refused(
            CreateTenant::try_from(tenant("x", 0, "", "2099-01-01")),
            "invalid offer",
        );
        refused(
            CreateTenant::try_from(tenant("x", 9, "", "2099-01-01")),
            "invalid offer",
        );
        refused(
            CreateTenant::try_from(tenant("x", p, "a\r\nb", "2099-01-01")),
            "display name",
        );
        refused(
            CreateTenant::try_from(tenant("x", p, &"d".repeat(101), "2099-01-01")),
            "display name",
        );
        for bad in ["", "2099-02-30", "2099-1-1", "01/01/2099", "2099-01-01x"] {
            refused(
                CreateTenant::try_from(tenant("x", p, "", bad)),
                "membership expiry",
            );
        }
        let r = RenewMembership::try_from(pb::RenewMembershipRequest {
            name: "asso-x".into(),
            membership_expires: "2027-01-31".into(),
        })
        .unwrap();
        assert_eq!(r.membership_expires.to_string(), "2027-01-31");
        for (name, expires, field) in [
            ("", "2027-01-31", "tenant name"),
            ("asso-x", "", "membership expiry"),
            ("asso-x", "2027-02-29", "membership expiry"),
            ("asso-x", "next year", "membership expiry"),
        ] {
            refused(
                RenewMembership::try_from(pb::RenewMembershipRequest {
                    name: name.into(),
                    membership_expires: expires.into(),
                }),
                field,
            );
        }
        let suspend = |name: &str, reason: &str| {
            SuspendTenant::try_from(pb::SuspendTenantRequest {
                name: name.into(),
                reason: reason.into(),
            })
        };
        assert_eq!(
            suspend("asso-x", "spam relay").unwrap().reason,
            "spam relay"
        );
        refused(suspend("asso-x", ""), "reason");
        refused(suspend("asso-x", "  "), "reason");
        refused(suspend("asso-x", "a\u{1b}[2Jb"), "reason");
        refused(suspend("asso-x", &"r".repeat(501)), "reason");
        refused(suspend("Asso", "spam"), "tenant name");
        refused(
            ResumeTenant::try_from(pb::ResumeTenantRequest { name: "".into() }),
            "tenant name",
        );
        let t = GetTenant::try_from(pb::GetTenantRequest {
            name: "asso-x".into(),
        })
        .unwrap();
        assert_eq!(t.name.as_str(), "asso-x");
        refused(
            GetTenant::try_from(pb::GetTenantRequest::default()),
            "tenant name",
        );
    }

    #[test]
    fn users_belong_to_a_tenant_unless_admins() {
        let user = |role: pb::Role, tenant: &str| pb::CreateUserRequest {
            name: "alice".into(),
            tenant: tenant.into(),
            role: role as i32,
            display_name: "Alice".into(),
        };
        let admin = CreateUser::try_from(user(pb::Role::Admin, "")).unwrap();
        assert_eq!((admin.role, admin.tenant), (Role::Admin, None));
        let member = CreateUser::try_from(user(pb::Role::Member, "asso-a")).unwrap();
        assert_eq!(member.tenant.unwrap().as_str(), "asso-a");
        refused(
            CreateUser::try_from(user(pb::Role::Admin, "asso-a")),
            "invalid tenant",
        );
        refused(
            CreateUser::try_from(user(pb::Role::Admin, "A;b")),
            "invalid tenant",
        );
        refused(
            CreateUser::try_from(user(pb::Role::Member, "")),
            "invalid tenant",
        );
        refused(
            CreateUser::try_from(user(pb::Role::Operator, "")),
            "invalid tenant",
        );
        refused(
            CreateUser::try_from(user(pb::Role::Operator, "A;b")),
            "tenant name",
        );
        refused(
            CreateUser::try_from(user(pb::Role::Unspecified, "asso-a")),
            "invalid role",
        );
        let mut bad = user(pb::Role::Member, "asso-a");
        bad.name = "Alice".into();
        refused(CreateUser::try_from(bad), "user name");
        let mut bad = user(pb::Role::Member, "asso-a");
        bad.display_name = "\u{7}".into();
        refused(CreateUser::try_from(bad), "display name");
    }

    #[test]
    fn user_listings_and_grants() {
        let l = |t: &str| ListUsers::try_from(pb::ListUsersRequest { tenant: t.into() });
        assert_eq!(l("").unwrap().tenant, None);
        assert_eq!(l("asso-a").unwrap().tenant.unwrap().as_str(), "asso-a");
        refused(l("../x"), "tenant name");
        let g = |user: &str, node: &str| {
            NodeGrant::try_from(pb::GrantNodeRequest {
                user: user.into(),
                node: node.into(),
            })
        };
        let ok = g("op-a", "n1").unwrap();
        assert_eq!((ok.user.as_str(), ok.node.as_str()), ("op-a", "n1"));
        refused(g("", "n1"), "user name");
        refused(g("op-a", ""), "node name");
    }

    #[test]
    fn credentials() {
        let cert = |user: &str, csr_pem: String, ttl_secs| {
            IssueUserCertificate::try_from(pb::IssueUserCertificateRequest {
                user: user.into(),
                csr_pem,
                ttl_secs,
            })
        };
        let ok = cert("", "PEM".into(), 0).unwrap();
        assert_eq!((ok.user, ok.ttl_secs), (None, USER_CERT_DEFAULT_TTL));
        assert_eq!(cert("bob", String::new(), 3600).unwrap().ttl_secs, 3600);
        refused(cert("Bob", String::new(), 0), "user name");
        refused(cert("", "x".repeat(MAX_CSR_BYTES + 1), 0), "invalid csr");
        refused(cert("", String::new(), 59), "invalid ttl");
        refused(
            cert("", String::new(), MAX_CREDENTIAL_TTL + 1),
            "invalid ttl",
        );

        let token = |user: &str, description: &str, ttl_secs| {
            CreateToken::try_from(pb::CreateTokenRequest {
                user: user.into(),
                description: description.into(),
                ttl_secs,
            })
        };
        let ok = token("bob", "backup script", 0).unwrap();
        assert_eq!(ok.user.unwrap().as_str(), "bob");
        assert_eq!(ok.ttl_secs, API_TOKEN_DEFAULT_TTL);
        refused(token("", &"d".repeat(201), 0), "description");
        refused(token("", "a\nb", 0), "description");
        refused(token("", "", 1), "invalid ttl");
        refused(token("b b", "", 0), "user name");
    }

    #[test]
    fn token_listings_and_ids() {
        let l = |user: &str, all| {
            Whose::try_from(pb::ListTokensRequest {
                user: user.into(),
                all,
            })
        };
        assert_eq!(l("", false).unwrap(), Whose::Own);
        assert_eq!(l("Not Checked", true).unwrap(), Whose::All);
        assert!(matches!(l("bob", false).unwrap(), Whose::Of(u) if u.as_str() == "bob"));
        refused(l("B", false), "user name");
        let r = |id: &str| RevokeToken::try_from(pb::RevokeTokenRequest { id: id.into() });
        assert_eq!(r("tok-1a2b").unwrap().id, "tok-1a2b");
        for bad in [
            "",
            "tok 1",
            "tok-1\n",
            "../x",
            &"t".repeat(MAX_TOKEN_ID_LEN + 1),
        ] {
            refused(r(bad), "token id");
        }
    }

    #[test]
    fn certificate_listings_and_serials() {
        let l = |user: &str, all| {
            Whose::try_from(pb::ListUserCertificatesRequest {
                user: user.into(),
                all,
            })
        };
        assert_eq!(l("", false).unwrap(), Whose::Own);
        assert_eq!(l("", true).unwrap(), Whose::All);
        assert!(matches!(l("mia", false).unwrap(), Whose::Of(u) if u.as_str() == "mia"));
        refused(l("Mia", false), "user name");
        let r = |serial: &str| {
            RevokeUserCertificate::try_from(pb::RevokeUserCertificateRequest {
                serial: serial.into(),
            })
        };
        assert_eq!(r("7f3a").unwrap().serial.as_str(), "7f3a");
        for bad in ["", "7F3A", "7f:3a", "../x", &"a".repeat(65)] {
            refused(r(bad), "certificate serial");
        }
    }

    #[test]
    fn user_refs_and_role_changes() {
        assert_eq!(
            UserRef::try_from(pb::UserRef { name: "mia".into() })
                .unwrap()
                .name
                .as_str(),
            "mia"
        );
        refused(UserRef::try_from(pb::UserRef::default()), "user name");
        let set = |user: &str, role: pb::Role, tenant: &str| {
            SetUserRole::try_from(pb::SetUserRoleRequest {
                user: user.into(),
                role: role as i32,
                tenant: tenant.into(),
            })
        };
        let ok = set("mia", pb::Role::Operator, "").unwrap();
        assert_eq!(
            ok.change,
            RoleChange {
                role: Role::Operator,
                tenant: None
            }
        );
        let ok = set("root", pb::Role::Member, "asso-x").unwrap();
        assert_eq!(ok.change.tenant.unwrap().as_str(), "asso-x");
        refused(set("mia", pb::Role::Unspecified, ""), "invalid role");
        refused(set("mia", pb::Role::Member, "A b"), "tenant name");
        refused(set("", pb::Role::Member, ""), "user name");
    }
}

//! What may become of a user: which role in which tenant, and that the
//! cooperative always keeps an enabled admin.
//!
//! The invariants on (role, tenant) are the ones users are created with:
//! admins are the cooperative's and belong to no tenant, operators and
//! members to exactly one; operators exist only in participatif tenants;
//! only operators hold node grants. A role change keeps them: a user keeps
//! their tenant (users do not move between associations), an admin who
//! becomes an operator or member joins the tenant given, and whoever stops
//! being an operator loses their grants.

use coloc_proto::domain::{Offer, Role, TenantName};

use crate::store::{RoleChange, TenantRecord, UserRecord};

/// Why a user cannot take a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleRefusal {
    #[error("admins are the cooperative's and belong to no tenant: drop the tenant {0}")]
    AdminInTenant(TenantName),
    #[error(
        "an admin who becomes {} {role} joins a tenant: name it",
        article(role)
    )]
    NoTenant { role: Role },
    #[error(
        "users do not move between tenants: {user} belongs to {from}, not {to}; create a user in \
         {to} instead"
    )]
    OtherTenant {
        user: String,
        from: TenantName,
        to: TenantName,
    },
    #[error("tenant {tenant} has the {offer} offer; operators exist only in participatif tenants")]
    OperatorOffer { tenant: TenantName, offer: Offer },
}

/// "a member", "an operator".
fn article(role: &Role) -> &'static str {
    match role {
        Role::Admin | Role::Operator => "an",
        Role::Member => "a",
    }
}

/// A role change as the store applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleOutcome {
    pub role: Role,
    pub tenant: Option<TenantName>,
    /// The user stops being an operator and held grants: they go.
    pub drops_grants: bool,
}

/// What `user` becomes with `change`. The tenant's offer is then checked
/// with [`operator_offer`] once the store has read that tenant.
pub fn role_change(user: &UserRecord, change: &RoleChange) -> Result<RoleOutcome, RoleRefusal> {
    let tenant = match (change.role, &change.tenant, &user.tenant) {
        (Role::Admin, Some(asked), _) => return Err(RoleRefusal::AdminInTenant(asked.clone())),
        (Role::Admin, None, _) => None,
        (role, None, None) => return Err(RoleRefusal::NoTenant { role }),
        (_, Some(asked), None) => Some(asked.clone()),
        (_, None, Some(own)) => Some(own.clone()),
        (_, Some(asked), Some(own)) if asked == own => Some(own.clone()),
        (_, Some(asked), Some(own)) => {
            return Err(RoleRefusal::OtherTenant {
                user: user.name.to_string(),
                from: own.clone(),
                to: asked.clone(),
            });
        }
    };
    Ok(RoleOutcome {
        role: change.role,
        tenant,
        drops_grants: change.role != Role::Operator && !user.node_grants.is_empty(),
    })
}

/// Operators exist only in participatif tenants (on creation and on a
/// role change alike).
pub fn operator_offer(role: Role, tenant: &TenantRecord) -> Result<(), RoleRefusal> {
    if role == Role::Operator && tenant.offer != Offer::Participatif {
        return Err(RoleRefusal::OperatorOffer {
            tenant: tenant.name.clone(),
            offer: tenant.offer,
        });
    }
    Ok(())
}

/// What is about to happen to an enabled admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminLoss {
    Disabled,
    Deleted,
    Demoted(Role),
}

/// The change would leave the cooperative with no enabled admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{user} is the only enabled admin: {} would leave the cooperative with none; make \
     another admin first",
    match loss {
        AdminLoss::Disabled => "disabling them".to_string(),
        AdminLoss::Deleted => "deleting them".to_string(),
        AdminLoss::Demoted(role) => format!("making them {} {role}", article(role)),
    }
)]
pub struct LastAdmin {
    pub user: String,
    pub loss: AdminLoss,
}

/// Whether `user` may suffer `loss` while `other_enabled_admins` other
/// enabled admins remain. Only an enabled admin's loss counts: a member's
/// deletion or a disabled admin's demotion takes no admin away.
pub fn keeps_an_admin(
    user: &UserRecord,
    loss: AdminLoss,
    other_enabled_admins: usize,
) -> Result<(), LastAdmin> {
    let takes_one = user.role == Role::Admin
        && user.disabled_unix.is_none()
        && loss != AdminLoss::Demoted(Role::Admin);
    if takes_one && other_enabled_admins == 0 {
        return Err(LastAdmin {
            user: user.name.to_string(),
            loss,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use coloc_proto::domain::{NodeName, UserName};

    use super::*;

    fn user(role: Role, tenant: Option<&str>, grants: &[&str]) -> UserRecord {
        UserRecord {
            name: UserName::new("alice").unwrap(),
            tenant: tenant.map(|t| TenantName::new(t).unwrap()),
            role,
            display_name: String::new(),
            created_unix: 0,
            node_grants: grants.iter().map(|g| NodeName::new(*g).unwrap()).collect(),
            disabled_unix: None,
        }
    }

    fn change(role: Role, tenant: Option<&str>) -> RoleChange {
        RoleChange {
            role,
            tenant: tenant.map(|t| TenantName::new(t).unwrap()),
        }
    }

    fn tenant(name: &str) -> Option<TenantName> {
        Some(TenantName::new(name).unwrap())
    }

    #[test]
    fn users_keep_their_tenant() {
        let member = user(Role::Member, Some("asso-x"), &[]);
        let op = role_change(&member, &change(Role::Operator, None)).unwrap();
        assert_eq!(
            op,
            RoleOutcome {
                role: Role::Operator,
                tenant: tenant("asso-x"),
                drops_grants: false
            }
        );
        // Naming their own tenant is the same.
        assert_eq!(
            role_change(&member, &change(Role::Operator, Some("asso-x"))).unwrap(),
            op
        );
        let err = role_change(&member, &change(Role::Operator, Some("asso-y"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "users do not move between tenants: alice belongs to asso-x, not asso-y; create a \
             user in asso-y instead"
        );
    }

    #[test]
    fn admins_leave_and_join_tenants() {
        let member = user(Role::Member, Some("asso-x"), &[]);
        let admin = role_change(&member, &change(Role::Admin, None)).unwrap();
        assert_eq!(admin.tenant, None);
        assert!(matches!(
            role_change(&member, &change(Role::Admin, Some("asso-x"))),
            Err(RoleRefusal::AdminInTenant(_))
        ));
        let root = user(Role::Admin, None, &[]);
        assert_eq!(
            role_change(&root, &change(Role::Member, None)),
            Err(RoleRefusal::NoTenant { role: Role::Member })
        );
        let joined = role_change(&root, &change(Role::Member, Some("asso-y"))).unwrap();
        assert_eq!(joined.tenant, tenant("asso-y"));
    }

    #[test]
    fn only_operators_keep_grants() {
        let op = user(Role::Operator, Some("asso-x"), &["n1"]);
        assert!(
            role_change(&op, &change(Role::Member, None))
                .unwrap()
                .drops_grants
        );
        assert!(
            role_change(&op, &change(Role::Admin, None))
                .unwrap()
                .drops_grants
        );
        assert!(
            !role_change(&op, &change(Role::Operator, None))
                .unwrap()
                .drops_grants
        );
    }

    #[test]
    fn operators_only_in_participatif_tenants() {
        let mut t = TenantRecord {
            name: TenantName::new("asso-r").unwrap(),
            display_name: String::new(),
            offer: Offer::Responsable,
            membership_expires: time::Date::MAX,
            membership_noted: crate::store::MembershipPhase::Current,
            suspension: None,
            created_unix: 0,
            storage_quota_bytes: 0,
            volume_grace_days: 30,
            posix_id: 200_000,
            storage_used_bytes: 0,
        };
        let err = operator_offer(Role::Operator, &t).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tenant asso-r has the responsable offer; operators exist only in participatif tenants"
        );
        assert!(operator_offer(Role::Member, &t).is_ok());
        t.offer = Offer::Participatif;
        assert!(operator_offer(Role::Operator, &t).is_ok());
    }

    #[test]
    fn the_last_enabled_admin_stays() {
        let admin = user(Role::Admin, None, &[]);
        for loss in [
            AdminLoss::Disabled,
            AdminLoss::Deleted,
            AdminLoss::Demoted(Role::Member),
        ] {
            assert!(keeps_an_admin(&admin, loss, 1).is_ok());
            assert!(keeps_an_admin(&admin, loss, 0).is_err(), "{loss:?}");
        }
        assert_eq!(
            keeps_an_admin(&admin, AdminLoss::Demoted(Role::Operator), 0)
                .unwrap_err()
                .to_string(),
            "alice is the only enabled admin: making them an operator would leave the \
             cooperative with none; make another admin first"
        );
        // Staying an admin, or an admin already disabled, takes none away.
        assert!(keeps_an_admin(&admin, AdminLoss::Demoted(Role::Admin), 0).is_ok());
        let disabled = UserRecord {
            disabled_unix: Some(1),
            ..admin
        };
        assert!(keeps_an_admin(&disabled, AdminLoss::Deleted, 0).is_ok());
        let member = user(Role::Member, Some("asso-x"), &[]);
        assert!(keeps_an_admin(&member, AdminLoss::Deleted, 0).is_ok());
    }
}

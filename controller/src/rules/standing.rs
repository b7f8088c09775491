//! Where an association stands with the cooperative: its membership
//! (current, expired, frozen), a plain function of the last day it was
//! paid for, the grace period colocd.toml gives every association
//! (`membership_grace_days`) and today; an admin's suspension of its apps;
//! and the notices its users read on every answer.
//!
//! Neither expiry nor freezing changes what nodes run or deletes
//! anything: a frozen association's apps keep serving and its data stays.
//! Who may do what while frozen is [`crate::auth`]'s
//! (`require_not_frozen`), the audit entry of each transition the
//! `membership` background task's; this module decides the phase and
//! words it.

use coloc_proto::domain::TenantName;
use time::{Date, Duration};

use crate::store::{MembershipPhase, Suspension, TenantRecord};
use crate::time::{date_of, day_of};

/// An association's membership on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The last day paid for.
    pub paid_until: Date,
    /// The first day of the freeze, if the membership is not renewed
    /// before.
    pub frozen_from: Date,
    pub phase: MembershipPhase,
}

/// The membership paid until `paid_until` (inclusive), on `today`, with
/// `grace_days` between expiry and the freeze: current up to
/// `paid_until`, expired from the next day, frozen `grace_days` days
/// after that (with no grace, the day after `paid_until`). Dates are UTC
/// days.
pub fn membership(paid_until: Date, grace_days: u32, today: Date) -> Membership {
    let frozen_from = paid_until
        .checked_add(Duration::days(i64::from(grace_days) + 1))
        .unwrap_or(Date::MAX);
    let phase = if today <= paid_until {
        MembershipPhase::Current
    } else if today < frozen_from {
        MembershipPhase::Expired
    } else {
        MembershipPhase::Frozen
    };
    Membership {
        paid_until,
        frozen_from,
        phase,
    }
}

/// A change refused because the association is frozen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "association {tenant} is frozen since {frozen_from}: its membership was paid until \
     {paid_until} and not renewed; renew it to make changes (reading works and its apps keep \
     running)"
)]
pub struct Frozen {
    pub tenant: TenantName,
    pub paid_until: Date,
    pub frozen_from: Date,
}

/// Starting an app of a suspended association.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the apps of tenant {tenant} are suspended by the cooperative's admins since {}: they stay \
     stopped until an admin resumes the tenant (coloc tenant resume {tenant})",
    date_of(*since_unix)
)]
pub struct Suspended {
    pub tenant: TenantName,
    pub since_unix: i64,
}

impl Membership {
    /// The tenant's membership at `now_unix`.
    pub fn of(tenant: &TenantRecord, grace_days: u32, now_unix: i64) -> Membership {
        membership(tenant.membership_expires, grace_days, day_of(now_unix))
    }

    /// The refusal of a change, when the association is frozen.
    pub fn frozen(&self, tenant: &TenantName) -> Option<Frozen> {
        (self.phase == MembershipPhase::Frozen).then(|| Frozen {
            tenant: tenant.clone(),
            paid_until: self.paid_until,
            frozen_from: self.frozen_from,
        })
    }

    /// What the association's users are told on every answer; None while
    /// the membership is current.
    pub fn notice(&self, tenant: &TenantName) -> Option<String> {
        let Membership {
            paid_until,
            frozen_from,
            phase,
        } = self;
        match phase {
            MembershipPhase::Current => None,
            MembershipPhase::Expired => Some(format!(
                "the membership of association {tenant} was paid until {paid_until} and has \
                 expired: renew it before {frozen_from}, when {tenant} will be frozen (its users \
                 will read but not change anything; its apps keep running)"
            )),
            MembershipPhase::Frozen => Some(
                self.frozen(tenant)
                    .map(|f| f.to_string())
                    .unwrap_or_default(),
            ),
        }
    }
}

/// Refuses starting (or restarting) an app of a suspended tenant: the
/// node would keep it stopped anyway.
pub fn check_apps_may_run(tenant: &TenantRecord) -> Result<(), Suspended> {
    match &tenant.suspension {
        Some(s) => Err(Suspended {
            tenant: tenant.name.clone(),
            since_unix: s.since_unix,
        }),
        None => Ok(()),
    }
}

fn suspension_notice(tenant: &TenantName, s: &Suspension) -> String {
    format!(
        "the cooperative's admins suspended association {tenant} on {}: its apps are stopped \
         until they resume it; its data is kept (coloc tenant show {tenant} says why)",
        date_of(s.since_unix)
    )
}

/// Every notice for the tenant's users, membership first: ASCII
/// sentences, each sent as one response header value
/// ([`coloc_proto::TENANT_NOTICE_HEADER`]).
pub fn notices(tenant: &TenantRecord, membership: &Membership) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(membership.notice(&tenant.name));
    out.extend(
        tenant
            .suspension
            .as_ref()
            .map(|s| suspension_notice(&tenant.name, s)),
    );
    out
}

#[cfg(test)]
mod tests {
    use coloc_proto::domain::{Offer, UserName};
    use time::macros::date;

    use super::*;

    fn phase(paid_until: Date, grace: u32, today: Date) -> MembershipPhase {
        membership(paid_until, grace, today).phase
    }

    #[test]
    fn current_then_expired_then_frozen() {
        use MembershipPhase::*;
        let paid = date!(2026 - 01 - 31);
        let m = membership(paid, 30, date!(2026 - 01 - 31));
        assert_eq!(m.phase, Current, "the last day is paid for");
        assert_eq!(m.frozen_from, date!(2026 - 03 - 03));
        assert_eq!(phase(paid, 30, date!(2025 - 06 - 01)), Current);
        assert_eq!(phase(paid, 30, date!(2026 - 02 - 01)), Expired);
        assert_eq!(phase(paid, 30, date!(2026 - 03 - 02)), Expired, "grace");
        assert_eq!(phase(paid, 30, date!(2026 - 03 - 03)), Frozen);
        assert_eq!(phase(paid, 30, date!(2031 - 01 - 01)), Frozen);
        // No grace: frozen the day after the last paid day.
        assert_eq!(phase(paid, 0, date!(2026 - 01 - 31)), Current);
        assert_eq!(phase(paid, 0, date!(2026 - 02 - 01)), Frozen);
        // A renewal is a later paid_until: current again.
        assert_eq!(
            phase(date!(2027 - 01 - 31), 30, date!(2026 - 04 - 01)),
            Current
        );
        // The end of the calendar does not overflow.
        let m = membership(Date::MAX, 365, Date::MAX);
        assert_eq!((m.phase, m.frozen_from), (Current, Date::MAX));
    }

    fn record(paid_until: Date, suspension: Option<Suspension>) -> TenantRecord {
        TenantRecord {
            name: TenantName::new("asso-x").unwrap(),
            display_name: String::new(),
            offer: Offer::Participatif,
            membership_expires: paid_until,
            membership_noted: MembershipPhase::Current,
            suspension,
            created_unix: 0,
            storage_quota_bytes: 0,
            volume_grace_days: 30,
            posix_id: 200_000,
            storage_used_bytes: 0,
        }
    }

    /// 2026-02-15 12:00 UTC.
    const FEB_15: i64 = 1_771_156_800;

    #[test]
    fn notices_and_refusals_read_well() {
        let t = record(date!(2026 - 01 - 31), None);
        let m = Membership::of(&t, 30, FEB_15);
        assert_eq!(m.phase, MembershipPhase::Expired);
        assert_eq!(m.frozen(&t.name), None);
        assert_eq!(
            notices(&t, &m),
            [
                "the membership of association asso-x was paid until 2026-01-31 and has expired: \
              renew it before 2026-03-03, when asso-x will be frozen (its users will read but \
              not change anything; its apps keep running)"
            ]
        );
        let m = Membership::of(&t, 10, FEB_15);
        let refusal = m.frozen(&t.name).expect("frozen after 10 days of grace");
        let text = "association asso-x is frozen since 2026-02-11: its membership was paid \
                    until 2026-01-31 and not renewed; renew it to make changes (reading works \
                    and its apps keep running)";
        assert_eq!(refusal.to_string(), text);
        assert_eq!(notices(&t, &m), [text]);

        let current = record(date!(2026 - 12 - 31), None);
        let m = Membership::of(&current, 30, FEB_15);
        assert!(notices(&current, &m).is_empty());
        assert!(check_apps_may_run(&current).is_ok());

        let suspended = record(
            date!(2026 - 12 - 31),
            Some(Suspension {
                since_unix: FEB_15,
                by: UserName::new("admin").unwrap(),
                reason: "spam relay".into(),
            }),
        );
        assert_eq!(
            notices(&suspended, &m),
            [
                "the cooperative's admins suspended association asso-x on 2026-02-15: its apps are \
              stopped until they resume it; its data is kept (coloc tenant show asso-x says why)"
            ]
        );
        assert_eq!(
            check_apps_may_run(&suspended).unwrap_err().to_string(),
            "the apps of tenant asso-x are suspended by the cooperative's admins since \
             2026-02-15: they stay stopped until an admin resumes the tenant (coloc tenant \
             resume asso-x)"
        );
        // Every notice travels as a header value: visible ASCII only.
        let expired = record(date!(2026 - 01 - 31), suspended.suspension.clone());
        let all = notices(&expired, &Membership::of(&expired, 30, FEB_15));
        assert_eq!(all.len(), 2);
        for n in all {
            assert!(n.bytes().all(|b| (0x20..0x7f).contains(&b)), "{n}");
        }
    }
}

//! `membership`: writes to the audit log, once per transition, that an
//! association's membership expired or that it is now frozen
//! ([`crate::rules::standing`]), so that the cooperative's admins see it
//! in `coloc audit` (and `coloc tenant list`, which computes the same
//! phase). The phase a tenant was last noted in is kept in the store,
//! changed with a compare-and-set, so a restart or a second pass never
//! writes the same entry twice.
//!
//! It only records: expiry changes nothing a node runs and deletes
//! nothing (the freeze itself is the API's, applied per call).

use super::driver::{BackgroundTask, TaskError};
use super::summary::counted;
use crate::agents::system_audit::audit_system_entry;
use crate::context::Ctx;
use crate::rules::standing::Membership;
use crate::store::{MembershipPhase, TenantRecord};

pub(super) struct MembershipNotes {
    ctx: Ctx,
}

impl MembershipNotes {
    pub(super) fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    /// The audit entry for a tenant newly in `m`'s phase; None for a
    /// membership current again (the renewal was audited when an admin
    /// made it).
    fn entry(&self, t: &TenantRecord, m: &Membership) -> Option<(&'static str, String)> {
        let grace = self.ctx.config.membership_grace_days;
        match m.phase {
            MembershipPhase::Current => None,
            MembershipPhase::Expired => Some((
                "tenant.membership.expired",
                format!(
                    "membership paid until {} expired; its users are warned, and it is frozen \
                     from {} unless renewed (membership_grace_days = {grace})",
                    m.paid_until, m.frozen_from
                ),
            )),
            MembershipPhase::Frozen => Some((
                "tenant.membership.frozen",
                format!(
                    "membership paid until {} not renewed within {grace} days: frozen since {}; \
                     its users can read but not change anything, its apps keep running{}",
                    m.paid_until,
                    m.frozen_from,
                    if t.suspension.is_some() {
                        " (suspended by the admins)"
                    } else {
                        ""
                    }
                ),
            )),
        }
    }
}

#[async_trait::async_trait]
impl BackgroundTask for MembershipNotes {
    async fn activate(&mut self) -> Result<String, TaskError> {
        let ctx = &self.ctx;
        let tenants = ctx
            .store
            .list_tenants()
            .await
            .map_err(TaskError::store("list tenants"))?;
        let now = ctx.clock.now();
        let mut noted: Vec<String> = Vec::new();
        for t in &tenants {
            let m = Membership::of(t, ctx.config.membership_grace_days, now);
            if m.phase == t.membership_noted {
                continue;
            }
            let won = ctx
                .store
                .note_membership(&t.name, t.membership_noted, m.phase)
                .await
                .map_err(TaskError::store(format!(
                    "record the membership of tenant {}",
                    t.name
                )))?;
            if !won {
                continue;
            }
            if let Some((action, detail)) = self.entry(t, &m) {
                tracing::warn!(tenant = %t.name, membership = m.phase.as_str(), paid_until = %m.paid_until, "membership changed phase");
                audit_system_entry(ctx, action, format!("tenant:{}", t.name), &t.name, detail)
                    .await;
            }
            noted.push(format!("{} {}", t.name, m.phase.as_str()));
        }
        if noted.is_empty() {
            Ok(format!(
                "no membership changed phase ({})",
                counted_word(tenants.len())
            ))
        } else {
            Ok(format!(
                "noted {}",
                counted(&noted, "membership", "memberships")
            ))
        }
    }
}

fn counted_word(n: usize) -> String {
    match n {
        1 => "1 tenant".to_string(),
        n => format!("{n} tenants"),
    }
}

//! Things that end on a date: node certificates and colocd's own server
//! certificate (renewed automatically: an alert here means renewal is not
//! happening), and tenants' memberships.

use super::{Condition, condition, on_node};
use crate::config::AlertsConfig;
use crate::store::{AlertSeverity, AlertSubject, NodeRecord, SubjectKind, TenantRecord, UnixSecs};
use crate::time::{date_of, day_of};

pub const CERTIFICATE: &str = "certificate-expiry";
pub const MEMBERSHIP: &str = "membership-expiry";

const DAY: i64 = 86_400;

fn certificate_severity(
    not_after: UnixSecs,
    now: UnixSecs,
    t: &AlertsConfig,
) -> Option<AlertSeverity> {
    let left = not_after.saturating_sub(now);
    if left <= i64::from(t.certificate_critical_days) * DAY {
        Some(AlertSeverity::Critical)
    } else if left <= i64::from(t.certificate_warning_days) * DAY {
        Some(AlertSeverity::Warning)
    } else {
        None
    }
}

fn ends(not_after: UnixSecs, now: UnixSecs) -> String {
    if not_after <= now {
        format!("expired on {}", date_of(not_after))
    } else {
        format!(
            "expires on {} (in {} days)",
            date_of(not_after),
            (not_after - now) / DAY
        )
    }
}

/// The certificate a node authenticates with, once its renewal is due
/// and has not happened (a short lifetime is renewed with less than the
/// warning's days left: that is no news).
pub fn node_certificate(n: &NodeRecord, now: UnixSecs, t: &AlertsConfig) -> Option<Condition> {
    let not_after = n.cert.not_after_unix;
    if now < n.cert.renew_after_unix {
        return None;
    }
    let severity = certificate_severity(not_after, now, t)?;
    Some(condition(
        CERTIFICATE,
        severity,
        on_node(&n.name, SubjectKind::Certificate, "node"),
        format!(
            "certificate of node {} {}; colocd renews it over the node's session",
            n.name,
            ends(not_after, now)
        ),
    ))
}

/// colocd's own server certificate.
pub fn server_certificate(
    not_after: UnixSecs,
    now: UnixSecs,
    t: &AlertsConfig,
) -> Option<Condition> {
    let severity = certificate_severity(not_after, now, t)?;
    Some(condition(
        CERTIFICATE,
        severity,
        AlertSubject {
            kind: SubjectKind::Certificate,
            node: None,
            name: "colocd".into(),
            tenant: None,
        },
        format!(
            "colocd's server certificate {}; see the server-certificate task",
            ends(not_after, now)
        ),
    ))
}

/// A membership within `membership_warning_days` of its last paid day
/// (warning), or past it (critical).
pub fn membership(tenant: &TenantRecord, now: UnixSecs, t: &AlertsConfig) -> Option<Condition> {
    let today = day_of(now);
    let paid_until = tenant.membership_expires;
    let left = (paid_until - today).whole_days();
    let (severity, says) = if left < 0 {
        (
            AlertSeverity::Critical,
            format!("expired: paid until {paid_until} (frozen after membership_grace_days)"),
        )
    } else if left <= i64::from(t.membership_warning_days) {
        (
            AlertSeverity::Warning,
            format!("paid until {paid_until}, {left} days left"),
        )
    } else {
        return None;
    };
    Some(condition(
        MEMBERSHIP,
        severity,
        AlertSubject {
            kind: SubjectKind::Tenant,
            node: None,
            name: tenant.name.to_string(),
            tenant: Some(tenant.name.clone()),
        },
        format!("membership of {}: {says}", tenant.name),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::testing::{node_record, tenant};

    const NOW: UnixSecs = 1_800_000_000;

    #[test]
    fn certificates_warn_within_14_days_and_are_critical_within_3() {
        let t = AlertsConfig::default();
        let mut n = node_record("n1");
        n.cert.renew_after_unix = NOW - 1;
        n.cert.not_after_unix = NOW + 15 * DAY;
        assert!(node_certificate(&n, NOW, &t).is_none());
        n.cert.not_after_unix = NOW + 14 * DAY;
        let c = node_certificate(&n, NOW, &t).unwrap();
        assert_eq!((c.rule, c.severity), (CERTIFICATE, AlertSeverity::Warning));
        assert_eq!(c.subject.name, "node");
        n.cert.not_after_unix = NOW + 3 * DAY;
        assert_eq!(
            node_certificate(&n, NOW, &t).unwrap().severity,
            AlertSeverity::Critical
        );
        n.cert.not_after_unix = NOW - 1;
        assert!(
            node_certificate(&n, NOW, &t)
                .unwrap()
                .summary
                .contains("expired")
        );
        let c = server_certificate(NOW + 2 * DAY, NOW, &t).unwrap();
        assert_eq!(c.subject.node, None);
        assert_eq!(c.subject.name, "colocd");
        assert!(server_certificate(NOW + 300 * DAY, NOW, &t).is_none());
    }

    #[test]
    fn memberships_warn_within_30_days_and_are_critical_once_past() {
        let t = AlertsConfig::default();
        let today = day_of(NOW);
        let mut tn = tenant("asso");
        tn.membership_expires = today + time::Duration::days(31);
        assert!(membership(&tn, NOW, &t).is_none());
        tn.membership_expires = today + time::Duration::days(30);
        let c = membership(&tn, NOW, &t).unwrap();
        assert_eq!(c.severity, AlertSeverity::Warning);
        assert_eq!(c.subject.tenant, Some(tn.name.clone()));
        assert_eq!(c.subject.node, None);
        tn.membership_expires = today;
        assert_eq!(
            membership(&tn, NOW, &t).unwrap().severity,
            AlertSeverity::Warning
        );
        tn.membership_expires = today - time::Duration::days(1);
        assert_eq!(
            membership(&tn, NOW, &t).unwrap().severity,
            AlertSeverity::Critical
        );
    }
}

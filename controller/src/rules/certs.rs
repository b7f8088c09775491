//! Certificates' lives: when one is due for renewal, and which node
//! certificate may open a session (docs/DECISIONS.md, "Node removal and
//! certificates").
//!
//! A certificate is renewed once two thirds of its lifetime have passed,
//! so a third of it is left to get the new one through. A node holds one
//! current certificate and, after a renewal, the next one; the current one
//! stays valid until the node first opens a session with the next one
//! (which then becomes current) or until it expires, whichever comes
//! first. A removed node's certificates are refused whatever they are.
//! Times are colocd's clock (`crate::time`), never the node's.

use crate::store::{NodeRecord, UnixSecs};
use crate::time::date_of;

/// When a certificate valid from `not_before` to `not_after` is due for
/// renewal: after two thirds of its lifetime.
pub fn renew_after(not_before: UnixSecs, not_after: UnixSecs) -> UnixSecs {
    let lifetime = i128::from(not_after) - i128::from(not_before);
    let at = i128::from(not_before) + lifetime.max(0) * 2 / 3;
    // Both ends are i64, so two thirds of the way between them is too.
    i64::try_from(at).unwrap_or(not_after)
}

/// Whether a certificate is due for renewal at `now`.
pub fn is_due(renew_after_unix: UnixSecs, now: UnixSecs) -> bool {
    renew_after_unix <= now
}

/// Which of its node's certificates a peer presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// The certificate the node has been using.
    Current,
    /// The renewed one, used for the first time: it becomes current and
    /// the old one is refused from now on.
    Next,
}

/// Why a node may not open a session with the certificate it presented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefused {
    #[error(
        "node {node} was removed on {} by {by}; its certificates are refused",
        date_of(*at_unix)
    )]
    Removed {
        node: String,
        at_unix: UnixSecs,
        by: String,
    },
    #[error(
        "the certificate of node {node} expired on {}; the node must be enrolled again \
         (remove it, then enroll it under a new name)",
        date_of(*not_after_unix)
    )]
    Expired {
        node: String,
        not_after_unix: UnixSecs,
    },
    #[error("this certificate is not one node {node} may use (replaced since)")]
    NotItsCertificate { node: String },
}

/// Checks the certificate with `fingerprint` that a peer presented for
/// `node` (found by that fingerprint) at `now`.
pub fn check_presented(
    node: &NodeRecord,
    fingerprint: &str,
    now: UnixSecs,
) -> Result<Presented, SessionRefused> {
    let name = node.name.to_string();
    if let Some(removed) = &node.removed {
        return Err(SessionRefused::Removed {
            node: name,
            at_unix: removed.at_unix,
            by: removed.by.clone(),
        });
    }
    let (presented, cert) = if node.cert.fingerprint == fingerprint {
        (Presented::Current, &node.cert)
    } else {
        match &node.next_cert {
            Some(next) if next.fingerprint == fingerprint => (Presented::Next, next),
            _ => return Err(SessionRefused::NotItsCertificate { node: name }),
        }
    };
    if cert.not_after_unix <= now {
        return Err(SessionRefused::Expired {
            node: name,
            not_after_unix: cert.not_after_unix,
        });
    }
    Ok(presented)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use coloc_proto::domain::{NodeName, SiteName};

    use super::*;
    use crate::store::{ConnState, NodeCert, Removal};

    const T0: UnixSecs = 1_800_000_000;
    const YEAR: UnixSecs = 365 * 86_400;

    fn cert(fp: &str, not_after: UnixSecs) -> NodeCert {
        NodeCert {
            fingerprint: fp.into(),
            not_after_unix: not_after,
            renew_after_unix: renew_after(T0, not_after),
        }
    }

    fn node() -> NodeRecord {
        NodeRecord {
            name: NodeName::new("n1").unwrap(),
            site: SiteName::new("paris-1").unwrap(),
            enrolled_unix: T0,
            last_seen_unix: None,
            conn_state: ConnState::Connected,
            conn_changed_unix: T0,
            draining: false,
            labels: BTreeMap::new(),
            desired_generation: 1,
            applied_generation: 1,
            last_outcome: 0,
            last_message: String::new(),
            facts: None,
            cert: cert("old", T0 + YEAR),
            next_cert: None,
            removed: None,
        }
    }

    #[test]
    fn renewal_comes_after_two_thirds() {
        assert_eq!(renew_after(T0, T0 + 300), T0 + 200);
        assert_eq!(renew_after(T0, T0 + YEAR), T0 + 2 * YEAR / 3);
        // A certificate that ends before it starts is due at once.
        assert_eq!(renew_after(T0, T0 - 10), T0);
        // No overflow at the ends of time.
        assert_eq!(renew_after(0, i64::MAX), i64::MAX / 3 * 2);
        assert!(!is_due(T0 + 200, T0 + 199));
        assert!(is_due(T0 + 200, T0 + 200));
    }

    #[test]
    fn current_and_next_certificates() {
        let mut n = node();
        assert_eq!(check_presented(&n, "old", T0 + 1), Ok(Presented::Current));
        n.next_cert = Some(cert("new", T0 + 2 * YEAR));
        // The old one still works until the new one is used.
        assert_eq!(check_presented(&n, "old", T0 + 1), Ok(Presented::Current));
        assert_eq!(check_presented(&n, "new", T0 + 1), Ok(Presented::Next));
        assert_eq!(
            check_presented(&n, "other", T0 + 1),
            Err(SessionRefused::NotItsCertificate { node: "n1".into() })
        );
    }

    #[test]
    fn expired_and_removed_are_refused() {
        let mut n = node();
        let refused = check_presented(&n, "old", T0 + YEAR).unwrap_err();
        assert!(matches!(refused, SessionRefused::Expired { .. }));
        assert!(refused.to_string().contains("expired on"), "{refused}");
        n.next_cert = Some(cert("new", T0 + 2 * YEAR));
        assert_eq!(check_presented(&n, "new", T0 + YEAR), Ok(Presented::Next));
        n.removed = Some(Removal {
            at_unix: T0 + 5,
            by: "user:admin".into(),
        });
        for fp in ["old", "new"] {
            let refused = check_presented(&n, fp, T0 + 10).unwrap_err();
            assert!(
                refused
                    .to_string()
                    .starts_with("node n1 was removed on 2027-01-15 by user:admin"),
                "{refused}"
            );
        }
    }
}

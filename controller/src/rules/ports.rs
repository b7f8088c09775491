//! Which local port a new app instance gets on its node.
//!
//! An instance listens on `127.0.0.1:<port>` and the node's proxy routes its
//! host name there. Ports are per node, handed out lowest first from
//! [`FIRST_APP_PORT`], and a port stays taken until its instance is gone
//! (a removed instance keeps it until its node reports the unit removed).
//! The store reads the ports in use and makes the choice inside the
//! approval's transaction, so that concurrent approvals never share one.

use std::collections::BTreeSet;

use crate::store::FIRST_APP_PORT;

/// Every port from [`FIRST_APP_PORT`] to 65535 is in use on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("has no free app port left above {FIRST_APP_PORT}")]
pub struct PortsExhausted;

/// The lowest port from [`FIRST_APP_PORT`] that is not in `in_use`.
/// Ports below [`FIRST_APP_PORT`] in `in_use` are ignored.
pub fn lowest_free(in_use: &BTreeSet<u16>) -> Result<u16, PortsExhausted> {
    // Walking the sorted ports finds the first gap without trying each of
    // the 45,536 candidates on a full node.
    let mut candidate = FIRST_APP_PORT;
    for &port in in_use.range(FIRST_APP_PORT..) {
        if port != candidate {
            break;
        }
        candidate = candidate.checked_add(1).ok_or(PortsExhausted)?;
    }
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(p: impl IntoIterator<Item = u16>) -> BTreeSet<u16> {
        p.into_iter().collect()
    }

    #[test]
    fn an_empty_node_gets_the_first_port() {
        assert_eq!(lowest_free(&ports([])), Ok(FIRST_APP_PORT));
        assert_eq!(lowest_free(&ports([22, 443, 19_999])), Ok(FIRST_APP_PORT));
    }

    #[test]
    fn the_lowest_gap_is_reused() {
        let f = FIRST_APP_PORT;
        assert_eq!(lowest_free(&ports([f, f + 1, f + 2])), Ok(f + 3));
        assert_eq!(lowest_free(&ports([f, f + 2, f + 3])), Ok(f + 1));
        assert_eq!(lowest_free(&ports([f + 1, f + 2])), Ok(f));
    }

    #[test]
    fn the_last_port_is_handed_out_then_none_is_left() {
        assert_eq!(lowest_free(&ports(FIRST_APP_PORT..u16::MAX)), Ok(u16::MAX));
        assert_eq!(
            lowest_free(&ports(FIRST_APP_PORT..=u16::MAX)),
            Err(PortsExhausted)
        );
        assert_eq!(
            PortsExhausted.to_string(),
            "has no free app port left above 20000"
        );
        // A gap anywhere below is still found on an otherwise full node.
        let mut full = ports(FIRST_APP_PORT..=u16::MAX);
        full.remove(&40_000);
        assert_eq!(lowest_free(&full), Ok(40_000));
    }
}

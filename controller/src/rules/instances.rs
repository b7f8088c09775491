//! What people's changes and nodes' reports do to an app instance.
//!
//! An instance is running, stopped or removed as people decide (`coloc app
//! start|stop|restart|remove`); a restart is a new restart nonce, which the
//! node sees as a reason to restart the unit. A removed instance stays in
//! its node's configuration until the node reports the unit removed; then
//! it is gone. The store finds the instance and writes what these rules
//! return.

use crate::store::{InstanceChange, InstanceState};

/// What an instance should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub state: InstanceState,
    /// A new value restarts the unit.
    pub restart_nonce: u64,
}

/// A removed instance takes no more changes: the app is requested again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("is removed; it cannot {} (request the app again)", change.as_str())]
pub struct Removed {
    pub change: InstanceChange,
}

/// What `change` makes of an instance wanted as `current`; None when it
/// changes nothing (starting a running instance, stopping a stopped one),
/// so that the node's configuration is not sent again for nothing. A
/// restart of a stopped instance starts it.
pub fn apply(current: Wanted, change: InstanceChange) -> Result<Option<Wanted>, Removed> {
    let state = match (current.state, change) {
        (InstanceState::Removed, _) => return Err(Removed { change }),
        (InstanceState::Running, InstanceChange::Start)
        | (InstanceState::Stopped, InstanceChange::Stop) => return Ok(None),
        (_, InstanceChange::Start | InstanceChange::Restart) => InstanceState::Running,
        (_, InstanceChange::Stop) => InstanceState::Stopped,
        (_, InstanceChange::Remove) => InstanceState::Removed,
    };
    let restart_nonce = match change {
        // Any value the unit has not seen restarts it; wrapping keeps that
        // true at the end of the range.
        InstanceChange::Restart => current.restart_nonce.wrapping_add(1),
        _ => current.restart_nonce,
    };
    Ok(Some(Wanted {
        state,
        restart_nonce,
    }))
}

/// Whether a node's report makes an instance gone: it was removed and the
/// node says its unit is ("removed" as the reported active state). Any
/// other report is only recorded.
pub fn gone_after_report(state: InstanceState, reported_active_state: &str) -> bool {
    state == InstanceState::Removed && reported_active_state == "removed"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(state: InstanceState, restart_nonce: u64) -> Wanted {
        Wanted {
            state,
            restart_nonce,
        }
    }

    #[test]
    fn each_change_from_running_and_stopped() {
        use InstanceChange::*;
        use InstanceState::*;
        let cases = [
            (Running, Start, None),
            (Running, Stop, Some(wanted(Stopped, 3))),
            (Running, Restart, Some(wanted(Running, 4))),
            (Running, Remove, Some(wanted(Removed, 3))),
            (Stopped, Start, Some(wanted(Running, 3))),
            (Stopped, Stop, None),
            (Stopped, Restart, Some(wanted(Running, 4))),
            (Stopped, Remove, Some(wanted(Removed, 3))),
        ];
        for (state, change, expected) in cases {
            assert_eq!(
                apply(wanted(state, 3), change),
                Ok(expected),
                "{state:?} {change:?}"
            );
        }
    }

    #[test]
    fn a_removed_instance_takes_no_change() {
        for change in [
            InstanceChange::Start,
            InstanceChange::Stop,
            InstanceChange::Restart,
            InstanceChange::Remove,
        ] {
            let err = apply(wanted(InstanceState::Removed, 0), change).unwrap_err();
            assert_eq!(err, Removed { change });
            assert_eq!(
                err.to_string(),
                format!(
                    "is removed; it cannot {} (request the app again)",
                    change.as_str()
                )
            );
        }
    }

    #[test]
    fn a_restart_at_the_last_nonce_still_changes_it() {
        let after = apply(
            wanted(InstanceState::Running, u64::MAX),
            InstanceChange::Restart,
        );
        assert_eq!(after, Ok(Some(wanted(InstanceState::Running, 0))));
    }

    #[test]
    fn only_a_removed_instance_reported_removed_is_gone() {
        assert!(gone_after_report(InstanceState::Removed, "removed"));
        assert!(!gone_after_report(InstanceState::Removed, "active"));
        assert!(!gone_after_report(InstanceState::Running, "removed"));
        assert!(!gone_after_report(InstanceState::Stopped, "removed"));
    }
}

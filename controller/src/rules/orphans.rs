//! What becomes of a removed node's volumes and app instances: orphans.
//!
//! A removed node is never told anything again, so nothing of it changes
//! by itself (no purge, no push) and nothing is destroyed: its volumes and
//! instances stay as they were, shown as orphans, until a person releases
//! each one. Releasing is the only change they take: a volume released is
//! destroyed as a record at once (its name and quota freed; there is no
//! node to keep it for a grace period or to destroy it, so whatever the
//! removed server's disks hold is left alone), an instance released is
//! removed and gone at once (its port, unit and name freed). Anything else
//! is refused with [`NodeRemoved`].

use crate::store::{InstanceChange, UnixSecs, VolumeLifecycle};
use crate::time::date_of;

use super::volumes::{DeleteRefused, Retention};

/// A change refused because the node it needs was removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "was removed on {}; its volumes and app instances are orphans, which can only be \
     deleted (coloc volume delete, coloc app remove)",
    date_of(*at_unix)
)]
pub struct NodeRemoved {
    pub at_unix: UnixSecs,
}

/// Deleting a volume of a removed node releases it at once; `deleted_unix`
/// is kept if it was already deleted. Refused only when it is destroyed
/// already.
pub fn release_volume(
    lifecycle: VolumeLifecycle,
    deleted_unix: Option<UnixSecs>,
    now: UnixSecs,
) -> Result<Retention, DeleteRefused> {
    match lifecycle {
        VolumeLifecycle::Destroyed => Err(DeleteRefused::Gone { lifecycle }),
        VolumeLifecycle::Active | VolumeLifecycle::Retained | VolumeLifecycle::Purging => {
            Ok(Retention {
                deleted_unix: deleted_unix.unwrap_or(now),
                purge_after_unix: now,
            })
        }
    }
}

/// Removing an instance of a removed node releases it (removed and gone at
/// once); starting, stopping or restarting it is refused.
pub fn instance_change(change: InstanceChange, removed_unix: UnixSecs) -> Result<(), NodeRemoved> {
    match change {
        InstanceChange::Remove => Ok(()),
        InstanceChange::Start | InstanceChange::Stop | InstanceChange::Restart => {
            Err(NodeRemoved {
                at_unix: removed_unix,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixSecs = 1_800_000_000;

    #[test]
    fn volumes_are_released_whatever_their_state_but_once() {
        for lifecycle in [
            VolumeLifecycle::Active,
            VolumeLifecycle::Retained,
            VolumeLifecycle::Purging,
        ] {
            assert_eq!(
                release_volume(lifecycle, None, NOW),
                Ok(Retention {
                    deleted_unix: NOW,
                    purge_after_unix: NOW
                })
            );
        }
        assert_eq!(
            release_volume(VolumeLifecycle::Retained, Some(NOW - 50), NOW)
                .unwrap()
                .deleted_unix,
            NOW - 50
        );
        assert!(release_volume(VolumeLifecycle::Destroyed, Some(NOW - 5), NOW).is_err());
    }

    #[test]
    fn instances_are_only_removed() {
        assert_eq!(instance_change(InstanceChange::Remove, NOW), Ok(()));
        for change in [
            InstanceChange::Start,
            InstanceChange::Stop,
            InstanceChange::Restart,
        ] {
            let refused = instance_change(change, NOW).unwrap_err();
            assert!(
                refused.to_string().starts_with(
                    "was removed on 2027-01-15; its volumes and app instances are orphans"
                ),
                "{refused}"
            );
        }
    }
}

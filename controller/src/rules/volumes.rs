//! A volume's life and what an active volume accepts (docs/STORAGE.md).
//!
//! Active; deleted, it is retained for its tenant's grace period and may
//! be restored until then; once due it is purging (its node is told to
//! destroy it); destroyed when its node reports so, and kept as a record.
//! Only an active volume is resized or snapshotted, within the limits
//! here. The store reads the volume, asks these rules and writes the
//! answer in one transaction; the tenant's quota is [`super::quota`]'s.

use coloc_proto::agent::v1::VolumePhase;
use coloc_proto::storage::SnapshotName;

use crate::store::{MAX_SNAPSHOTS_PER_VOLUME, UnixSecs, VolumeLifecycle};
use crate::time::date_of;

const SECS_PER_DAY: i64 = 86_400;

/// The volume is not active, and `change` needs it to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("is {}; only an active volume can be {change}", lifecycle.as_str())]
pub struct NotActive {
    pub lifecycle: VolumeLifecycle,
    /// What was asked, as a past participle: "resized", "snapshotted".
    pub change: &'static str,
}

/// Only an active volume changes (size, snapshots, rollback).
pub fn check_active(lifecycle: VolumeLifecycle, change: &'static str) -> Result<(), NotActive> {
    if lifecycle != VolumeLifecycle::Active {
        return Err(NotActive { lifecycle, change });
    }
    Ok(())
}

/// A retained volume's grace period is over at its purge time: from that
/// second on it is purged and can no longer be restored.
pub fn is_due(purge_after_unix: UnixSecs, now: UnixSecs) -> bool {
    purge_after_unix <= now
}

/// When a deleted volume was deleted and until when it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub deleted_unix: UnixSecs,
    pub purge_after_unix: UnixSecs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeleteRefused {
    #[error(
        "is already deleted; it is kept until {} and destroyed then",
        date_of(*purge_after_unix)
    )]
    AlreadyDeleted { purge_after_unix: UnixSecs },
    #[error("is {} already", lifecycle.as_str())]
    Gone { lifecycle: VolumeLifecycle },
}

/// Deleting an active volume retains it for `grace_days` from `now`.
/// `purge_after_unix` is the volume's, shown when it is already deleted.
pub fn delete(
    lifecycle: VolumeLifecycle,
    purge_after_unix: Option<UnixSecs>,
    grace_days: u32,
    now: UnixSecs,
) -> Result<Retention, DeleteRefused> {
    match lifecycle {
        VolumeLifecycle::Active => Ok(Retention {
            deleted_unix: now,
            // Saturates rather than wraps: a clock near the end of time
            // keeps the volume forever, never purges it at once.
            purge_after_unix: now.saturating_add(i64::from(grace_days) * SECS_PER_DAY),
        }),
        VolumeLifecycle::Retained => Err(DeleteRefused::AlreadyDeleted {
            purge_after_unix: purge_after_unix.unwrap_or_default(),
        }),
        VolumeLifecycle::Purging | VolumeLifecycle::Destroyed => {
            Err(DeleteRefused::Gone { lifecycle })
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RestoreRefused {
    #[error("its grace period is over; it is being destroyed")]
    GraceOver,
    #[error("is not deleted")]
    NotDeleted,
    #[error("is {}: past its grace period, it cannot come back", lifecycle.as_str())]
    Gone { lifecycle: VolumeLifecycle },
}

/// A retained volume may come back until it is due (the quota is checked
/// apart, [`super::quota::Usage::check_restore`]).
pub fn check_restore(
    lifecycle: VolumeLifecycle,
    purge_after_unix: Option<UnixSecs>,
    now: UnixSecs,
) -> Result<(), RestoreRefused> {
    match (lifecycle, purge_after_unix) {
        (VolumeLifecycle::Retained, Some(due)) if !is_due(due, now) => Ok(()),
        (VolumeLifecycle::Retained, _) => Err(RestoreRefused::GraceOver),
        (VolumeLifecycle::Active, _) => Err(RestoreRefused::NotDeleted),
        (VolumeLifecycle::Purging | VolumeLifecycle::Destroyed, _) => {
            Err(RestoreRefused::Gone { lifecycle })
        }
    }
}

/// What a node's report of a volume's status does to the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportEffect {
    /// The volume is destroyed: its record is final, the report ignored.
    Ignored,
    /// The status is recorded as observed; the lifecycle stays.
    Recorded,
    /// A purging volume the node destroyed: recorded, and destroyed.
    Destroyed,
}

/// `reported_phase` is the report's `VolumePhase` as sent (an i32, so
/// that a phase this colocd does not know is simply not "destroyed").
pub fn after_report(lifecycle: VolumeLifecycle, reported_phase: i32) -> ReportEffect {
    match lifecycle {
        VolumeLifecycle::Destroyed => ReportEffect::Ignored,
        VolumeLifecycle::Purging if reported_phase == VolumePhase::Destroyed as i32 => {
            ReportEffect::Destroyed
        }
        VolumeLifecycle::Active | VolumeLifecycle::Retained | VolumeLifecycle::Purging => {
            ReportEffect::Recorded
        }
    }
}

/// A size change to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resize {
    pub size_bytes: u64,
    /// Whether the agent may shrink the volume: only for a shrink asked
    /// with the permission (a grow clears it).
    pub allow_shrink: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the new size is below the volume's reservation")]
pub struct BelowReservation;

/// A new size for an active volume of `size_bytes` with `reservation_bytes`
/// reserved; None when the size does not change (the quota is checked
/// apart, [`super::quota::Usage::check_change`]).
pub fn resize(
    size_bytes: u64,
    reservation_bytes: u64,
    new_size_bytes: u64,
    allow_shrink: bool,
) -> Result<Option<Resize>, BelowReservation> {
    if new_size_bytes == size_bytes {
        return Ok(None);
    }
    if new_size_bytes < reservation_bytes {
        return Err(BelowReservation);
    }
    Ok(Some(Resize {
        size_bytes: new_size_bytes,
        allow_shrink: allow_shrink && new_size_bytes < size_bytes,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotRefused {
    #[error("the volume already has a snapshot of that name")]
    Exists,
    #[error("has {MAX_SNAPSHOTS_PER_VOLUME} snapshots, the most allowed; delete one first")]
    TooMany,
}

/// Appends `name` to a volume's snapshots (oldest first), at most
/// [`MAX_SNAPSHOTS_PER_VOLUME`], each name once.
pub fn add_snapshot(
    snapshots: &mut Vec<SnapshotName>,
    name: SnapshotName,
) -> Result<(), SnapshotRefused> {
    if snapshots.contains(&name) {
        return Err(SnapshotRefused::Exists);
    }
    if snapshots.len() >= MAX_SNAPSHOTS_PER_VOLUME {
        return Err(SnapshotRefused::TooMany);
    }
    snapshots.push(name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use VolumeLifecycle::*;

    const NOW: UnixSecs = 1_800_000_000;
    const DAY: i64 = 86_400;

    #[test]
    fn only_an_active_volume_changes() {
        assert_eq!(check_active(Active, "resized"), Ok(()));
        for lifecycle in [Retained, Purging, Destroyed] {
            let err = check_active(lifecycle, "snapshotted").unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "is {}; only an active volume can be snapshotted",
                    lifecycle.as_str()
                )
            );
        }
    }

    #[test]
    fn deleting_retains_for_the_grace_period() {
        assert_eq!(
            delete(Active, None, 30, NOW),
            Ok(Retention {
                deleted_unix: NOW,
                purge_after_unix: NOW + 30 * DAY
            })
        );
        assert_eq!(
            delete(Active, None, 1, NOW).unwrap().purge_after_unix,
            NOW + DAY
        );
        // The largest grace a tenant can have at the end of time saturates.
        assert_eq!(
            delete(Active, None, u32::MAX, i64::MAX - 1)
                .unwrap()
                .purge_after_unix,
            i64::MAX
        );
    }

    #[test]
    fn deleting_twice_is_refused_with_the_purge_date() {
        let err = delete(Retained, Some(NOW + 30 * DAY), 30, NOW + 5).unwrap_err();
        assert_eq!(
            err,
            DeleteRefused::AlreadyDeleted {
                purge_after_unix: NOW + 30 * DAY
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "is already deleted; it is kept until {} and destroyed then",
                date_of(NOW + 30 * DAY)
            )
        );
        for lifecycle in [Purging, Destroyed] {
            let err = delete(lifecycle, Some(NOW), 30, NOW).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("is {} already", lifecycle.as_str())
            );
        }
    }

    #[test]
    fn a_restore_is_allowed_until_the_purge_time() {
        let due = NOW + 30 * DAY;
        assert_eq!(check_restore(Retained, Some(due), NOW), Ok(()));
        assert_eq!(check_restore(Retained, Some(due), due - 1), Ok(()));
        // Due, even if the background task has not purged it yet.
        assert_eq!(
            check_restore(Retained, Some(due), due),
            Err(RestoreRefused::GraceOver)
        );
        assert_eq!(
            check_restore(Retained, None, NOW),
            Err(RestoreRefused::GraceOver)
        );
        assert_eq!(
            check_restore(Active, None, NOW),
            Err(RestoreRefused::NotDeleted)
        );
        let err = check_restore(Purging, Some(due), NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            "is purging: past its grace period, it cannot come back"
        );
    }

    #[test]
    fn purge_is_due_from_the_purge_time_on() {
        assert!(!is_due(NOW, NOW - 1));
        assert!(is_due(NOW, NOW));
        assert!(is_due(NOW, NOW + 1));
    }

    #[test]
    fn only_a_purging_volume_reported_destroyed_is_destroyed() {
        let destroyed = VolumePhase::Destroyed as i32;
        let ready = VolumePhase::Ready as i32;
        assert_eq!(after_report(Purging, destroyed), ReportEffect::Destroyed);
        assert_eq!(after_report(Purging, ready), ReportEffect::Recorded);
        assert_eq!(after_report(Active, destroyed), ReportEffect::Recorded);
        assert_eq!(after_report(Retained, destroyed), ReportEffect::Recorded);
        assert_eq!(after_report(Destroyed, destroyed), ReportEffect::Ignored);
        assert_eq!(after_report(Purging, 9999), ReportEffect::Recorded);
    }

    #[test]
    fn resizes_keep_above_the_reservation_and_grant_shrinks_only() {
        assert_eq!(resize(10, 2, 10, true), Ok(None));
        assert_eq!(
            resize(10, 2, 20, true),
            Ok(Some(Resize {
                size_bytes: 20,
                allow_shrink: false
            }))
        );
        assert_eq!(
            resize(10, 2, 5, true),
            Ok(Some(Resize {
                size_bytes: 5,
                allow_shrink: true
            }))
        );
        assert_eq!(
            resize(10, 2, 5, false),
            Ok(Some(Resize {
                size_bytes: 5,
                allow_shrink: false
            }))
        );
        // Exactly the reservation is allowed; below is not.
        assert!(resize(10, 2, 2, true).is_ok());
        assert_eq!(resize(10, 2, 1, true), Err(BelowReservation));
    }

    #[test]
    fn snapshots_are_unique_and_capped() {
        let snap = |s: &str| SnapshotName::new(s).unwrap();
        let mut list = Vec::new();
        add_snapshot(&mut list, snap("a")).unwrap();
        assert_eq!(
            add_snapshot(&mut list, snap("a")),
            Err(SnapshotRefused::Exists)
        );
        for i in 1..MAX_SNAPSHOTS_PER_VOLUME {
            add_snapshot(&mut list, snap(&format!("s{i}"))).unwrap();
        }
        assert_eq!(list.len(), MAX_SNAPSHOTS_PER_VOLUME);
        assert_eq!(
            add_snapshot(&mut list, snap("one-more")),
            Err(SnapshotRefused::TooMany)
        );
        assert_eq!(list.len(), MAX_SNAPSHOTS_PER_VOLUME, "unchanged");
        assert_eq!(list[0], snap("a"), "oldest first");
        assert_eq!(
            SnapshotRefused::TooMany.to_string(),
            "has 64 snapshots, the most allowed; delete one first"
        );
    }
}

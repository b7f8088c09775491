//! A tenant's storage quota: whether a change to its volumes fits.
//!
//! What counts as used is the sum of the sizes of the tenant's active and
//! retained volumes (both still on disk, docs/STORAGE.md); the store sums
//! them in its query. This module owns only the arithmetic on that sum: it
//! reads no volume and knows no tenant name (the store puts it into
//! [`StoreError::QuotaExceeded`](crate::store::StoreError::QuotaExceeded)).

/// A tenant's quota and what its volumes use now, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub quota: u64,
    pub used: u64,
}

/// A refused change: the values people see in the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    pub quota: u64,
    /// In use without the part the change frees.
    pub used: u64,
    pub asked: u64,
}

impl Usage {
    /// Refuses a change that frees `freed` bytes and asks `asked` (a
    /// creation frees nothing; a resize frees the old size and asks the
    /// new one) when it takes usage past the quota. A change that does
    /// not grow usage always passes, so that a tenant over a lowered
    /// quota can still shrink. The sums saturate: a size near `u64::MAX`
    /// is refused, never wrapped into a small one.
    pub fn check_change(self, freed: u64, asked: u64) -> Result<(), OverQuota> {
        let kept = self.used.saturating_sub(freed);
        let after = kept.saturating_add(asked);
        if asked > freed && after > self.quota {
            return Err(OverQuota {
                quota: self.quota,
                used: kept,
                asked,
            });
        }
        Ok(())
    }

    /// Refuses to bring back a retained volume of `size` bytes while the
    /// tenant is over its quota. The volume already counts in `used`
    /// (retained volumes use disk), so restoring it changes nothing on
    /// disk; but a quota lowered since the deletion still refuses it, and
    /// the error shows the volume as the part asked.
    pub fn check_restore(self, size: u64) -> Result<(), OverQuota> {
        if self.used > self.quota {
            return Err(OverQuota {
                quota: self.quota,
                used: self.used.saturating_sub(size),
                asked: size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn usage(quota: u64, used: u64) -> Usage {
        Usage { quota, used }
    }

    #[test]
    fn a_creation_fits_up_to_exactly_the_quota() {
        assert_eq!(usage(10 * GIB, 6 * GIB).check_change(0, 4 * GIB), Ok(()));
        assert_eq!(
            usage(10 * GIB, 6 * GIB).check_change(0, 4 * GIB + 1),
            Err(OverQuota {
                quota: 10 * GIB,
                used: 6 * GIB,
                asked: 4 * GIB + 1
            })
        );
    }

    #[test]
    fn a_resize_counts_only_the_difference() {
        // 6 GiB used, of which the volume's 2 GiB: growing it to 6 GiB
        // makes 10 GiB.
        assert_eq!(
            usage(10 * GIB, 6 * GIB).check_change(2 * GIB, 6 * GIB),
            Ok(())
        );
        assert_eq!(
            usage(10 * GIB, 6 * GIB).check_change(2 * GIB, 7 * GIB),
            Err(OverQuota {
                quota: 10 * GIB,
                used: 4 * GIB,
                asked: 7 * GIB
            })
        );
    }

    #[test]
    fn shrinking_passes_even_over_a_lowered_quota() {
        assert_eq!(
            usage(4 * GIB, 10 * GIB).check_change(6 * GIB, 2 * GIB),
            Ok(())
        );
        // The same size again is not a growth either.
        assert_eq!(
            usage(4 * GIB, 10 * GIB).check_change(6 * GIB, 6 * GIB),
            Ok(())
        );
        assert!(
            usage(4 * GIB, 10 * GIB)
                .check_change(6 * GIB, 6 * GIB + 1)
                .is_err()
        );
    }

    #[test]
    fn sizes_near_the_top_of_u64_are_refused_not_wrapped() {
        assert_eq!(
            usage(10 * GIB, 6 * GIB).check_change(0, u64::MAX),
            Err(OverQuota {
                quota: 10 * GIB,
                used: 6 * GIB,
                asked: u64::MAX
            })
        );
        // A quota of u64::MAX admits everything, even a saturated sum.
        assert_eq!(usage(u64::MAX, u64::MAX - 1).check_change(0, 2), Ok(()));
        // Freeing more than is used (a row the sum no longer sees) counts
        // as freeing everything.
        assert_eq!(
            usage(10 * GIB, GIB).check_change(5 * GIB, 11 * GIB),
            Err(OverQuota {
                quota: 10 * GIB,
                used: 0,
                asked: 11 * GIB
            })
        );
    }

    #[test]
    fn a_restore_is_refused_only_over_the_quota() {
        // At exactly the quota the volume may come back.
        assert_eq!(usage(8 * GIB, 8 * GIB).check_restore(6 * GIB), Ok(()));
        assert_eq!(
            usage(8 * GIB, 10 * GIB).check_restore(6 * GIB),
            Err(OverQuota {
                quota: 8 * GIB,
                used: 4 * GIB,
                asked: 6 * GIB
            })
        );
        // A volume larger than the recorded usage never underflows.
        assert_eq!(
            usage(0, 1).check_restore(5),
            Err(OverQuota {
                quota: 0,
                used: 0,
                asked: 5
            })
        );
    }
}

//! A credential minted with another: it lives at most as long as its
//! minter, and only a live minter mints.
//!
//! Every API token and user certificate a caller obtains is minted with
//! the credential of the call (a token or a certificate). [`lifetime`]
//! decides, before anything is signed, when the new one expires: what
//! was asked, cut to the minter's own expiry. [`within_minter`] is what
//! the store checks again in the transaction that records it, against
//! the minter as it is then: a minter revoked meanwhile mints nothing, so
//! that revoking a credential and everything minted from it (one
//! transaction as well) leaves nothing behind.

use crate::store::{CredentialRef, UnixSecs};

/// Shortest and longest lifetime of an API token or a user certificate.
pub const MIN_CREDENTIAL_TTL: u64 = 60;
pub const MAX_CREDENTIAL_TTL: u64 = 365 * 86400;

/// When a new credential expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub expires_unix: UnixSecs,
    /// The lifetime asked for went past the minter's expiry: the new
    /// credential expires with its minter instead.
    pub limited_by_minter: bool,
}

/// The minter as the store finds it when the new credential is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minter {
    pub credential: CredentialRef,
    pub expires_unix: UnixSecs,
    pub revoked_unix: Option<UnixSecs>,
}

/// Why nothing is minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintRefusal {
    #[error(
        "the credential of this call expires in {left_secs} s, and a new credential, which \
         cannot outlive it, must live at least {MIN_CREDENTIAL_TTL} s; sign in with a \
         longer-lived one"
    )]
    MinterExpiresTooSoon { left_secs: i64 },
    #[error("{0} was revoked: it mints nothing")]
    MinterRevoked(CredentialRef),
    #[error("{0} has expired: it mints nothing")]
    MinterExpired(CredentialRef),
    #[error("it would expire after {0}, the credential it is minted with")]
    OutlivesMinter(CredentialRef),
}

/// A new credential asked to live `ttl_secs` from `now`, minted with a
/// credential expiring at `minter_expires` (`None`: colocd mints it
/// itself, bound by nothing but `ttl_secs`). `ttl_secs` is already within
/// [`MIN_CREDENTIAL_TTL`]..=[`MAX_CREDENTIAL_TTL`] (checked at the door).
pub fn lifetime(
    now: UnixSecs,
    ttl_secs: u64,
    minter_expires: Option<UnixSecs>,
) -> Result<Lifetime, MintRefusal> {
    let asked = now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
    let Some(bound) = minter_expires else {
        return Ok(Lifetime {
            expires_unix: asked,
            limited_by_minter: false,
        });
    };
    let left_secs = bound - now;
    if left_secs < MIN_CREDENTIAL_TTL as i64 {
        return Err(MintRefusal::MinterExpiresTooSoon { left_secs });
    }
    Ok(Lifetime {
        expires_unix: asked.min(bound),
        limited_by_minter: asked > bound,
    })
}

/// Whether `minter`, as it is at `now`, may mint a credential expiring at
/// `expires_unix`.
pub fn within_minter(
    expires_unix: UnixSecs,
    minter: &Minter,
    now: UnixSecs,
) -> Result<(), MintRefusal> {
    if minter.revoked_unix.is_some() {
        return Err(MintRefusal::MinterRevoked(minter.credential.clone()));
    }
    if minter.expires_unix <= now {
        return Err(MintRefusal::MinterExpired(minter.credential.clone()));
    }
    if expires_unix > minter.expires_unix {
        return Err(MintRefusal::OutlivesMinter(minter.credential.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const DAY: u64 = 86400;

    #[test]
    fn a_lifetime_is_cut_to_the_minters() {
        // A member's 1-hour token asks for a 365-day one: it gets an hour.
        let got = lifetime(NOW, 365 * DAY, Some(NOW + 3600)).unwrap();
        assert_eq!(
            got,
            Lifetime {
                expires_unix: NOW + 3600,
                limited_by_minter: true
            }
        );
        // Shorter than the minter: as asked.
        let got = lifetime(NOW, 600, Some(NOW + 3600)).unwrap();
        assert_eq!(
            got,
            Lifetime {
                expires_unix: NOW + 600,
                limited_by_minter: false
            }
        );
        // Exactly the minter's: as asked, not "limited".
        let got = lifetime(NOW, 3600, Some(NOW + 3600)).unwrap();
        assert!(!got.limited_by_minter);
        // colocd's own roots are bound by nothing else.
        let got = lifetime(NOW, 365 * DAY, None).unwrap();
        assert_eq!(got.expires_unix, NOW + 365 * DAY as i64);
    }

    #[test]
    fn a_minter_about_to_expire_mints_nothing() {
        assert_eq!(
            lifetime(NOW, 3600, Some(NOW + 59)),
            Err(MintRefusal::MinterExpiresTooSoon { left_secs: 59 })
        );
        assert!(lifetime(NOW, 3600, Some(NOW + 60)).is_ok());
        assert_eq!(
            lifetime(NOW, 3600, Some(NOW - 5)),
            Err(MintRefusal::MinterExpiresTooSoon { left_secs: -5 })
        );
    }

    #[test]
    fn only_a_live_minter_mints_within_its_lifetime() {
        let tok = CredentialRef::Token("tok-1".into());
        let live = Minter {
            credential: tok.clone(),
            expires_unix: NOW + 3600,
            revoked_unix: None,
        };
        assert_eq!(within_minter(NOW + 3600, &live, NOW), Ok(()));
        assert_eq!(
            within_minter(NOW + 3601, &live, NOW),
            Err(MintRefusal::OutlivesMinter(tok.clone()))
        );
        assert_eq!(
            within_minter(NOW + 60, &live, NOW + 3600),
            Err(MintRefusal::MinterExpired(tok.clone()))
        );
        let revoked = Minter {
            revoked_unix: Some(NOW - 1),
            ..live
        };
        let err = within_minter(NOW + 60, &revoked, NOW).unwrap_err();
        assert_eq!(err, MintRefusal::MinterRevoked(tok));
        assert_eq!(err.to_string(), "token tok-1 was revoked: it mints nothing");
    }
}

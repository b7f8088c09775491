//! Per-address limits on what anyone can make colocd do without
//! credentials: public API calls refused for want of a valid credential,
//! and enrollment attempts.
//!
//! Each peer address (an IPv4 address, or an IPv6 /64, which is what one
//! site usually holds) has a window of [`Rates::window_ms`]. In it, the
//! first [`Rates::written`] refusals get an audit entry of their own; the
//! further ones are only counted, and once the window has closed one
//! summary entry says "N further refused calls from ADDR" (written by the
//! `refusal-summaries` background task, from [`AddressLimiter::sweep`]).
//! Past [`Rates::calls`] calls in a window, calls are refused at once
//! ([`Limited`], `RESOURCE_EXHAUSTED` on the wire) and counted the same
//! way. Memory is bounded too: at most [`Rates::max_addresses`] addresses
//! are tracked; calls from further ones share one window, "other
//! addresses", until the sweep frees room.
//!
//! Time is the controller's clock in milliseconds, passed in by the
//! caller, so tests move it instead of waiting. The limiter decides
//! nothing about who may do what ([`crate::auth`] does) and writes
//! nothing; callers write the entries it tells them to.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use crate::config::ControllerConfig;
use crate::error::ApiError;

/// How much one address may do per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub window_ms: i64,
    /// Calls answered per window; the next ones are refused at once.
    pub calls: u32,
    /// Refusals that get an audit entry of their own per window.
    pub written: u32,
    /// Addresses tracked at once.
    pub max_addresses: usize,
}

/// Refusals of the public API for want of a valid credential: a person
/// whose token expired sees a handful of them, not sixty a minute.
pub const API_REFUSALS: Rates = Rates {
    window_ms: 60_000,
    calls: 60,
    written: 5,
    max_addresses: 10_000,
};

/// Where a call came from, as the limits count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    V4(Ipv4Addr),
    /// The /64 network of an IPv6 address (the host half zeroed).
    V6(Ipv6Addr),
    /// The transport did not say (never the case over TCP).
    Unknown,
    /// Every address past [`Rates::max_addresses`].
    Others,
}

impl Peer {
    /// The address a call came from (`tonic::Request::remote_addr`); an
    /// IPv4 address mapped into IPv6 (a dual-stack listener) counts as
    /// the IPv4 address.
    pub fn of(addr: Option<SocketAddr>) -> Peer {
        match addr.map(|a| a.ip()) {
            None => Peer::Unknown,
            Some(IpAddr::V4(v4)) => Peer::V4(v4),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Peer::V4(v4),
                None => Peer::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
            },
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::V4(a) => write!(f, "{a}"),
            Peer::V6(net) => write!(f, "{net}/64"),
            Peer::Unknown => f.write_str("an unknown address"),
            Peer::Others => f.write_str("other addresses"),
        }
    }
}

/// A call refused at once: the address has used its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// When the address's window closes, rounded up.
    pub retry_after_secs: u64,
}

impl Limited {
    /// The API's error for it: `what` were refused from `peer`.
    pub fn error(self, what: &'static str, peer: Peer) -> ApiError {
        ApiError::RateLimited {
            what,
            peer: peer.to_string(),
            retry_after_secs: self.retry_after_secs,
        }
    }
}

/// What an address did past its written refusals in one closed window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub peer: Peer,
    /// Refusals counted but not written one by one.
    pub count: u64,
    pub from_ms: i64,
    pub to_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: i64,
    calls: u32,
    written: u32,
    unwritten: u64,
}

#[derive(Debug, Default)]
struct State {
    windows: HashMap<Peer, Window>,
    /// Windows closed since the last sweep that have something to say.
    closed: Vec<Summary>,
}

/// One kind of limited call, per address.
#[derive(Debug)]
pub struct AddressLimiter {
    rates: Rates,
    state: Mutex<State>,
}

impl AddressLimiter {
    pub fn new(rates: Rates) -> Self {
        Self {
            rates,
            state: Mutex::new(State::default()),
        }
    }

    pub fn rates(&self) -> Rates {
        self.rates
    }

    /// Counts one call from `peer`; past the window's allowance the call
    /// is to be refused at once, and counts as an unwritten refusal.
    pub fn admit(&self, peer: Peer, now_ms: i64) -> Result<(), Limited> {
        let rates = self.rates;
        self.with_window(peer, now_ms, |w| {
            if w.calls >= rates.calls {
                w.unwritten += 1;
                let left_ms = u64::try_from(w.start_ms + rates.window_ms - now_ms).unwrap_or(0);
                return Err(Limited {
                    retry_after_secs: left_ms.div_ceil(1000),
                });
            }
            w.calls += 1;
            Ok(())
        })
    }

    /// A refusal of a call from `peer`: true when it gets an audit entry
    /// of its own, false when it only counts towards the summary.
    pub fn refusal(&self, peer: Peer, now_ms: i64) -> bool {
        let rates = self.rates;
        self.with_window(peer, now_ms, |w| {
            if w.written < rates.written {
                w.written += 1;
                true
            } else {
                w.unwritten += 1;
                false
            }
        })
    }

    /// The summaries of every window closed by `now_ms` (of every window
    /// when `all`, at shutdown), which are forgotten: each summary is
    /// handed out once.
    pub fn sweep(&self, now_ms: i64, all: bool) -> Vec<Summary> {
        let window_ms = self.rates.window_ms;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = std::mem::take(&mut state.closed);
        state.windows.retain(|peer, w| {
            let closed = all || now_ms >= w.start_ms + window_ms;
            if closed && w.unwritten > 0 {
                out.push(summary(*peer, w, window_ms, now_ms));
            }
            !closed
        });
        out
    }

    fn with_window<T>(&self, peer: Peer, now_ms: i64, f: impl FnOnce(&mut Window) -> T) -> T {
        let window_ms = self.rates.window_ms;
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        let key = if state.windows.contains_key(&peer)
            || state.windows.len() < self.rates.max_addresses
        {
            peer
        } else {
            Peer::Others
        };
        let fresh = Window {
            start_ms: now_ms,
            calls: 0,
            written: 0,
            unwritten: 0,
        };
        let w = state.windows.entry(key).or_insert(fresh);
        if now_ms >= w.start_ms + window_ms {
            if w.unwritten > 0 {
                state.closed.push(summary(key, w, window_ms, now_ms));
            }
            *w = fresh;
        }
        f(w)
    }
}

fn summary(peer: Peer, w: &Window, window_ms: i64, now_ms: i64) -> Summary {
    Summary {
        peer,
        count: w.unwritten,
        from_ms: w.start_ms,
        to_ms: (w.start_ms + window_ms).min(now_ms),
    }
}

/// The limits colocd applies, one limiter per kind of call.
#[derive(Debug)]
pub struct Limiters {
    /// Public API calls refused for want of a valid credential.
    pub api_refusals: AddressLimiter,
    /// Enrollment attempts, whatever their outcome.
    pub enrollments: AddressLimiter,
}

impl Limiters {
    pub fn new(config: &ControllerConfig) -> Self {
        Self {
            api_refusals: AddressLimiter::new(API_REFUSALS),
            enrollments: AddressLimiter::new(Rates {
                calls: config.enrollments_per_minute,
                ..API_REFUSALS
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: Rates = Rates {
        window_ms: 60_000,
        calls: 4,
        written: 2,
        max_addresses: 3,
    };

    fn peer(last: u8) -> Peer {
        Peer::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn addresses_group_ipv6_by_64_and_unmap_ipv4() {
        let v6 = |s: &str| Peer::of(Some(SocketAddr::new(s.parse().unwrap(), 7443)));
        assert_eq!(v6("2001:db8:1:2:aaaa::1"), v6("2001:db8:1:2:bbbb::9"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        assert_eq!(v6("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(v6("::ffff:192.0.2.7"), peer(7));
        assert_eq!(peer(7).to_string(), "192.0.2.7");
        assert_eq!(Peer::of(None), Peer::Unknown);
    }

    #[test]
    fn a_few_refusals_are_written_then_counted_then_summed_up_once() {
        let l = AddressLimiter::new(RATES);
        let written: Vec<bool> = (0..5).map(|i| l.refusal(peer(1), 1000 + i)).collect();
        assert_eq!(written, [true, true, false, false, false]);
        assert!(
            l.refusal(peer(2), 2000),
            "another address has its own window"
        );
        assert_eq!(l.sweep(59_999, false), [], "the window is still open");
        let summaries = l.sweep(61_000, false);
        assert_eq!(
            summaries,
            [Summary {
                peer: peer(1),
                count: 3,
                from_ms: 1000,
                to_ms: 61_000,
            }],
            "address 2 had nothing unwritten"
        );
        assert_eq!(l.sweep(200_000, false), [], "handed out once");
        assert!(l.refusal(peer(1), 200_000), "a new window writes again");
    }

    #[test]
    fn calls_past_the_allowance_are_refused_until_the_window_closes() {
        let l = AddressLimiter::new(RATES);
        for i in 0..4 {
            assert_eq!(l.admit(peer(1), i), Ok(()));
        }
        assert_eq!(
            l.admit(peer(1), 10_500),
            Err(Limited {
                retry_after_secs: 50
            })
        );
        assert_eq!(l.admit(peer(2), 10_500), Ok(()), "others are not held");
        // The next call after the window closes opens a new one; the old
        // window's summary waits for the sweep.
        assert_eq!(l.admit(peer(1), 60_000), Ok(()));
        assert_eq!(
            l.sweep(60_001, false),
            [Summary {
                peer: peer(1),
                count: 1,
                from_ms: 0,
                to_ms: 60_000,
            }]
        );
    }

    #[test]
    fn memory_is_bounded_by_sharing_one_window_past_the_table() {
        let l = AddressLimiter::new(RATES);
        for i in 1..=3 {
            assert!(l.refusal(peer(i), 0));
        }
        // Addresses 4 to 9 share "other addresses": two written in all.
        let written = (4..10).filter(|&i| l.refusal(peer(i), 0)).count();
        assert_eq!(written, 2);
        let summaries = l.sweep(60_000, false);
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].peer, Peer::Others);
        assert_eq!(summaries[0].count, 4);
        assert_eq!(summaries[0].peer.to_string(), "other addresses");
        assert!(l.refusal(peer(9), 60_000), "the sweep made room");
    }

    #[test]
    fn a_sweep_at_shutdown_says_everything() {
        let l = AddressLimiter::new(RATES);
        for _ in 0..3 {
            l.refusal(peer(1), 0);
        }
        assert_eq!(l.sweep(1, false), []);
        let all = l.sweep(1, true);
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].count, all[0].to_ms), (1, 1));
    }
}

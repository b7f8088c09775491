//! Reconnection delays: exponential backoff with full jitter.
//!
//! Hundreds of agents lose the controller at the same moment when it
//! restarts; if they all came back on the same schedule they would hit it
//! in waves. Full jitter (a uniform delay between zero and the current
//! ceiling, the ceiling doubling from `initial` up to `max`) spreads them.
//! Failures a retry cannot fix soon (a refused token, a revoked node) wait
//! at the ceiling instead, with a smaller jitter so they stay slow.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// Failed attempts since the last reset.
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The ceiling for the next delay: `initial * 2^attempt`, capped.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt, uniformly drawn in
    /// `[0, ceiling]`; the ceiling then doubles.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        jitter(Duration::ZERO, ceiling)
    }

    /// The delay for a failure that needs a person to fix it: drawn in
    /// `[max / 2, max]`, so the agent keeps trying without hammering.
    pub fn slow_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        jitter(self.max / 2, self.max)
    }

    /// Back to `initial`, after a session that really worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn max(&self) -> Duration {
        self.max
    }
}

fn jitter(low: Duration, high: Duration) -> Duration {
    let low_ms = u64::try_from(low.as_millis()).unwrap_or(u64::MAX);
    let high_ms = u64::try_from(high.as_millis()).unwrap_or(u64::MAX);
    if high_ms <= low_ms {
        return high;
    }
    Duration::from_millis(rand::rng().random_range(low_ms..=high_ms))
}

/// How to wait after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Waiting can cure it (controller restarting, network, overload):
    /// exponential backoff with full jitter.
    Soon,
    /// A person has to act (token refused, node removed, wrong CA): keep
    /// trying at the maximum backoff, logged at error.
    Slowly,
}

impl Retry {
    /// The policy for a gRPC status from the controller. Every code is
    /// listed so that the choice is deliberate.
    pub fn for_code(code: tonic::Code) -> Retry {
        use tonic::Code;
        match code {
            Code::Ok
            | Code::Cancelled
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::Unavailable => Retry::Soon,
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::DataLoss
            | Code::Unauthenticated => Retry::Slowly,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_the_growing_ceiling() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_millis(1_000);
        let mut backoff = Backoff::new(initial, max);
        let expected = [100, 200, 400, 800, 1_000, 1_000, 1_000];
        for ceiling_ms in expected {
            assert_eq!(backoff.ceiling(), Duration::from_millis(ceiling_ms));
            let delay = backoff.next_delay();
            assert!(delay <= Duration::from_millis(ceiling_ms), "{delay:?}");
        }
        backoff.reset();
        assert_eq!(backoff.ceiling(), initial);
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut backoff =
            Backoff::new(Duration::from_millis(10_000), Duration::from_millis(10_000));
        let delays: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| backoff.next_delay()).collect();
        // 50 draws out of 10 001 values: identical draws every time would
        // mean there is no jitter at all.
        assert!(delays.len() > 10, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(10_000)));
    }

    #[test]
    fn slow_delays_stay_near_the_maximum() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(2_000));
        for _ in 0..100 {
            let d = backoff.slow_delay();
            assert!(
                d >= Duration::from_millis(1_000) && d <= Duration::from_millis(2_000),
                "{d:?}"
            );
        }
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        for _ in 0..200 {
            assert!(backoff.next_delay() <= Duration::from_secs(30));
        }
        assert_eq!(backoff.ceiling(), Duration::from_secs(30));
    }

    #[test]
    fn refusals_wait_for_a_person() {
        assert_eq!(Retry::for_code(tonic::Code::Unavailable), Retry::Soon);
        assert_eq!(Retry::for_code(tonic::Code::Unauthenticated), Retry::Slowly);
        assert_eq!(
            Retry::for_code(tonic::Code::PermissionDenied),
            Retry::Slowly
        );
        assert_eq!(Retry::for_code(tonic::Code::InvalidArgument), Retry::Slowly);
    }
}

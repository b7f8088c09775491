//! The restart counters of app instances over time, which
//! `app-restart-loop` reads: the agent reports each unit's restart count
//! (systemd's NRestarts), and a loop is that count growing by
//! `alerts.app_restarts` within `alerts.app_restart_window_secs`. Kept in
//! the `alerts` task's memory; after a restart of colocd the history
//! starts again, and until it covers a whole window a quiet history
//! resolves nothing.

use std::collections::{HashMap, VecDeque};

use super::{InstanceKey, RestartGrowth};
use crate::store::UnixSecs;

#[derive(Debug, Default)]
pub struct RestartHistory {
    /// Per instance: when the history began, and (time, counter) samples.
    samples: HashMap<InstanceKey, (UnixSecs, VecDeque<(UnixSecs, u32)>)>,
}

impl RestartHistory {
    /// Records this pass's counters (instances not listed are forgotten)
    /// and returns each instance's growth within the window ending now.
    pub fn observe(
        &mut self,
        counters: impl IntoIterator<Item = (InstanceKey, u32)>,
        now: UnixSecs,
        window_secs: i64,
    ) -> HashMap<InstanceKey, RestartGrowth> {
        let mut next = HashMap::new();
        let mut out = HashMap::new();
        for (key, count) in counters {
            let (since, mut samples) = self
                .samples
                .remove(&key)
                .unwrap_or_else(|| (now, VecDeque::new()));
            if samples.back().is_none_or(|(_, c)| *c != count) {
                samples.push_back((now, count));
            }
            // Keep one sample at or before the window's start as the
            // baseline, drop the older ones.
            let start = now.saturating_sub(window_secs);
            while samples.len() > 1 && samples[1].0 <= start {
                samples.pop_front();
            }
            // A counter that went down (the unit was made anew) counts
            // from zero again.
            let grown = samples
                .iter()
                .zip(samples.iter().skip(1))
                .map(|((_, a), (_, b))| if b >= a { b - a } else { *b })
                .sum();
            out.insert(
                key.clone(),
                RestartGrowth {
                    grown,
                    covers_window: since <= start,
                },
            );
            next.insert(key, (since, samples));
        }
        self.samples = next;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::testing::node;
    use crate::store::AppName;
    use coloc_proto::domain::TenantName;

    fn key() -> InstanceKey {
        (
            node("n1"),
            TenantName::new("asso").unwrap(),
            AppName::new("wiki").unwrap(),
        )
    }

    #[test]
    fn growth_within_the_window_only() {
        let mut h = RestartHistory::default();
        let g = h.observe([(key(), 2)], 1000, 600);
        assert_eq!(
            g[&key()],
            RestartGrowth {
                grown: 0,
                covers_window: false
            }
        );
        h.observe([(key(), 4)], 1100, 600);
        let g = h.observe([(key(), 7)], 1200, 600);
        assert_eq!(g[&key()].grown, 5);
        // 700 s later the first two samples fall out of the window; the
        // one at 1200 is the baseline.
        let g = h.observe([(key(), 7)], 1900, 600);
        assert_eq!(
            g[&key()],
            RestartGrowth {
                grown: 0,
                covers_window: true
            }
        );
        // Reset by a new unit: counted from zero.
        let g = h.observe([(key(), 3)], 1950, 600);
        assert_eq!(g[&key()].grown, 3);
        // Gone from the listing: forgotten.
        assert!(h.observe([], 2000, 600).is_empty());
        let g = h.observe([(key(), 9)], 2100, 600);
        assert_eq!(
            g[&key()],
            RestartGrowth {
                grown: 0,
                covers_window: false
            }
        );
    }
}

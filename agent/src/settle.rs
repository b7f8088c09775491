//! Apps turn healthy without waiting for the next periodic pass.
//!
//! A unit is "active" as soon as systemd started it, before the app
//! listens, so the probe right after a start usually fails. Instances
//! found running but unhealthy after a pass ([`Settling`]) are probed again
//! every [`PROBE_EVERY`] for at most [`WINDOW`] after they were first seen
//! so; as soon as one answers, the worker runs a pass, which reports it
//! healthy. Each instance has its own window from the first pass that saw
//! it settling, so an app that never listens is probed for one window, not
//! after every periodic pass.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::apps::Settling;

/// How long an instance is watched after it was first seen running but
/// unhealthy: an app's start timeout.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How often it is probed meanwhile.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Timeout of one of those probes (the app is on loopback).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The worker's watch over settling instances.
#[derive(Debug, Default)]
pub struct SettleWatch {
    /// (tenant, app) → when a pass first saw it settling.
    first_seen: HashMap<(String, String), Instant>,
    /// The instances of the last pass still inside their window.
    due: Vec<Settling>,
}

impl SettleWatch {
    /// Takes in what a pass found settling at `now`: instances no longer
    /// settling are forgotten, new ones start their window.
    pub fn after_pass(&mut self, settling: &[Settling], now: Instant) {
        self.first_seen.retain(|key, _| {
            settling
                .iter()
                .any(|s| (&s.tenant, &s.app) == (&key.0, &key.1))
        });
        for s in settling {
            self.first_seen
                .entry((s.tenant.clone(), s.app.clone()))
                .or_insert(now);
        }
        self.due = settling
            .iter()
            .filter(|s| {
                self.first_seen
                    .get(&(s.tenant.clone(), s.app.clone()))
                    .is_some_and(|first| now.duration_since(*first) < WINDOW)
            })
            .cloned()
            .collect();
    }

    /// The instances to probe now, dropping those whose window closed.
    pub fn due(&mut self, now: Instant) -> &[Settling] {
        let first_seen = &self.first_seen;
        self.due.retain(|s| {
            first_seen
                .get(&(s.tenant.clone(), s.app.clone()))
                .is_some_and(|first| now.duration_since(*first) < WINDOW)
        });
        &self.due
    }

    /// True while some instance is to be probed.
    pub fn active(&self) -> bool {
        !self.due.is_empty()
    }
}

/// Probes `due` once, all at once; true when any answers.
pub async fn any_answers(due: &[Settling]) -> bool {
    futures::future::join_all(due.iter().map(|s| s.probe(PROBE_TIMEOUT)))
        .await
        .into_iter()
        .any(|healthy| healthy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::HealthCheck;

    fn settling(app: &str) -> Settling {
        Settling {
            tenant: "asso".into(),
            app: app.into(),
            check: HealthCheck::Tcp,
            port: 1,
            hostname: format!("{app}.asso.example.org"),
        }
    }

    #[test]
    fn each_instance_is_watched_for_one_window_from_when_it_was_first_seen() {
        let t0 = Instant::now();
        let mut watch = SettleWatch::default();
        watch.after_pass(&[settling("site")], t0);
        assert!(watch.active());
        // A later pass still finds it settling: its window is not reset.
        watch.after_pass(&[settling("site"), settling("radicale")], t0 + WINDOW / 2);
        assert_eq!(watch.due(t0 + WINDOW / 2).len(), 2);
        let later = t0 + WINDOW + Duration::from_millis(1);
        let due: Vec<_> = watch.due(later).iter().map(|s| s.app.clone()).collect();
        assert_eq!(due, ["radicale"]);
        // A pass after both windows: nothing to probe, however often the
        // periodic pass finds them unhealthy.
        watch.after_pass(&[settling("site"), settling("radicale")], t0 + WINDOW * 2);
        assert!(!watch.active());
        // Healthy (gone from the list), then settling again after a
        // restart: a new window.
        watch.after_pass(&[], t0 + WINDOW * 3);
        watch.after_pass(&[settling("site")], t0 + WINDOW * 4);
        assert!(watch.active());
    }

    #[tokio::test]
    async fn a_listening_instance_answers_and_a_silent_one_does_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut up = settling("site");
        up.port = port;
        assert!(any_answers(std::slice::from_ref(&up)).await);
        drop(listener);
        assert!(!any_answers(&[up]).await);
        assert!(!any_answers(&[]).await);
    }
}

//! The store's alert events as the notifier reads them
//! ([`crate::notify::Outbox`]): each event with its alert, the subject
//! worded for people, marked notified at colocd's clock.

use std::sync::Arc;

use async_trait::async_trait;

use crate::notify::{AlertEvent, EventKind, Outbox, Severity};
use crate::store::{AlertEvent as StoredEvent, AlertEventKind, AlertSeverity, Store, StoreResult};
use crate::time::Clock;

/// The outbox on the store.
#[derive(Debug, Clone)]
pub struct StoreOutbox {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl StoreOutbox {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }
}

/// An event as the notifier takes it.
pub fn notify_event(e: StoredEvent) -> AlertEvent {
    let a = e.alert;
    AlertEvent {
        id: e.id,
        alert_id: e.alert_id,
        kind: match e.kind {
            AlertEventKind::Firing => EventKind::Firing,
            AlertEventKind::Resolved => EventKind::Resolved,
        },
        severity: match a.severity {
            AlertSeverity::Info => Severity::Info,
            AlertSeverity::Warning => Severity::Warning,
            AlertSeverity::Critical => Severity::Critical,
        },
        subject: a.subject.describe(),
        node: a.subject.node.map(|n| n.to_string()),
        tenant: a.subject.tenant.map(|t| t.to_string()),
        rule: a.rule,
        summary: a.summary,
        started_unix: a.started_unix,
        ended_unix: a.ended_unix,
        silenced: e.silenced,
    }
}

#[async_trait]
impl Outbox for StoreOutbox {
    async fn pending(&self, after: i64, limit: usize) -> StoreResult<Vec<AlertEvent>> {
        Ok(self
            .store
            .pending_alert_events(after, limit)
            .await?
            .into_iter()
            .map(notify_event)
            .collect())
    }

    async fn mark_notified(&self, ids: &[i64]) -> StoreResult<()> {
        self.store
            .mark_alert_events_notified(ids, self.clock.now())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{AlertChanges, AlertSubject, NewAlert, SubjectKind};
    use crate::time::OffsetClock;

    #[tokio::test]
    async fn the_notifier_reads_the_stores_events_and_marks_them() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let outbox = StoreOutbox::new(store.clone(), Arc::new(OffsetClock::default()));
        store
            .apply_alert_changes(
                AlertChanges {
                    fire: vec![NewAlert {
                        rule: "disk-sectors".into(),
                        severity: AlertSeverity::Warning,
                        subject: AlertSubject {
                            kind: SubjectKind::Disk,
                            node: Some(crate::alerts::testing::node("node-a")),
                            name: "S3X9".into(),
                            tenant: None,
                        },
                        summary: "2 pending sectors".into(),
                    }],
                    ..AlertChanges::default()
                },
                100,
            )
            .await
            .unwrap();
        let events = outbox.pending(0, 10).await.unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, EventKind::Firing);
        assert_eq!(e.severity, Severity::Warning);
        assert_eq!(e.subject, "disk node-a/S3X9");
        assert_eq!(e.node.as_deref(), Some("node-a"));
        assert_eq!(
            (e.started_unix, e.ended_unix, e.silenced),
            (100, None, false)
        );
        outbox.mark_notified(&[e.id]).await.unwrap();
        assert!(outbox.pending(0, 10).await.unwrap().is_empty());
    }
}

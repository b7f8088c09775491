//! What the agent does with a desired configuration from the controller:
//! the ledger only moves forward, and nothing unusable reaches it.

use std::collections::HashMap;
use std::sync::Arc;

use coloc_agent::durable::temp_path;
use coloc_agent::handle_desired;
use coloc_agent::host::Host;
use coloc_agent::ledger::{FileLedger, LEDGER_FILE, LedgerStore, MemoryLedger};
use coloc_agent::reconcile::Reconciler;
use coloc_agent::status::{AgentStatus, Outcome, StatusHub};
use coloc_proto::agent::v1::{DesiredConfig, ReconcileOutcome};
use coloc_proto::domain::NodeName;

fn desired(generation: u64, draining: bool) -> DesiredConfig {
    DesiredConfig {
        generation,
        node_name: "n1".into(),
        site: "paris-1".into(),
        draining,
        labels: HashMap::from([("rack".into(), format!("r{generation}"))]),
        ..Default::default()
    }
}

fn reconciler() -> Reconciler {
    let node = NodeName::new("n1").expect("valid name");
    Reconciler::new(
        node,
        Host::fake("n1"),
        StatusHub::new(AgentStatus::default()),
    )
}

#[tokio::test]
async fn newer_configuration_is_ledgered_then_applied() {
    let ledger: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::holding(desired(4, false)));
    let reconciler = reconciler();
    let observed = handle_desired(&ledger, &reconciler, desired(5, true)).await;
    assert_eq!(observed.generation, 5);
    assert_eq!(observed.outcome(), ReconcileOutcome::Applied);
    assert!(observed.message.is_empty(), "{}", observed.message);
    assert!(observed.draining);
    assert_eq!(ledger.load().expect("load"), Some(desired(5, true)));
    let status = reconciler.status().snapshot();
    assert_eq!(status.ledger_generation, 5);
    assert_eq!(status.applied_generation, 5);
    assert_eq!(status.reconcile_passes, 1);
    assert_eq!(status.last_outcome, Some(Outcome::Applied));
    assert!(status.draining);
    assert_eq!(status.labels.get("rack").map(String::as_str), Some("r5"));
}

#[tokio::test]
async fn older_configuration_is_rejected_and_the_ledger_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = Arc::new(FileLedger::new(dir.path()));
    file.store(&desired(7, true)).expect("store");
    let before = std::fs::read(dir.path().join(LEDGER_FILE)).expect("read");
    let ledger: Arc<dyn LedgerStore> = file;
    let reconciler = reconciler();

    let observed = handle_desired(&ledger, &reconciler, desired(6, false)).await;
    assert_eq!(observed.outcome(), ReconcileOutcome::StaleRejected);
    assert_eq!(
        observed.generation, 7,
        "the answer names the ledger's generation"
    );
    assert!(
        observed.draining,
        "the ledger's draining, not the stale one's"
    );
    assert!(
        observed.message.contains('6') && observed.message.contains('7'),
        "{}",
        observed.message
    );
    assert_eq!(
        std::fs::read(dir.path().join(LEDGER_FILE)).expect("read"),
        before,
        "a stale push must not rewrite the ledger"
    );
    let status = reconciler.status().snapshot();
    assert_eq!(
        status.reconcile_passes, 0,
        "nothing is reconciled against a stale push"
    );
    assert_eq!(status.last_outcome, Some(Outcome::StaleRejected));
}

#[tokio::test]
async fn same_generation_is_reconciled_without_rewriting() {
    let ledger: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::holding(desired(3, false)));
    let reconciler = reconciler();
    let observed = handle_desired(&ledger, &reconciler, desired(3, false)).await;
    assert_eq!(observed.outcome(), ReconcileOutcome::Applied);
    assert_eq!(observed.generation, 3);
    assert_eq!(reconciler.status().snapshot().reconcile_passes, 1);
}

#[tokio::test]
async fn first_configuration_fills_an_empty_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger: Arc<dyn LedgerStore> = Arc::new(FileLedger::new(dir.path()));
    let reconciler = reconciler();
    let observed = handle_desired(&ledger, &reconciler, desired(1, false)).await;
    assert_eq!(observed.outcome(), ReconcileOutcome::Applied);
    assert_eq!(
        FileLedger::new(dir.path()).load().expect("load"),
        Some(desired(1, false))
    );
}

#[tokio::test]
async fn another_nodes_configuration_never_reaches_the_ledger() {
    let ledger: Arc<dyn LedgerStore> = Arc::new(MemoryLedger::holding(desired(2, false)));
    let reconciler = reconciler();
    let mut foreign = desired(9, true);
    foreign.node_name = "n2".into();
    let observed = handle_desired(&ledger, &reconciler, foreign).await;
    assert_eq!(observed.outcome(), ReconcileOutcome::Failed);
    assert_eq!(observed.generation, 2);
    assert!(observed.message.contains("n2"), "{}", observed.message);
    assert_eq!(ledger.load().expect("load"), Some(desired(2, false)));

    let mut bad_label = desired(9, false);
    bad_label.labels.insert("Bad Key".into(), "x".into());
    let observed = handle_desired(&ledger, &reconciler, bad_label).await;
    assert_eq!(observed.outcome(), ReconcileOutcome::Failed);
    assert!(observed.message.contains("label"), "{}", observed.message);
    assert_eq!(ledger.load().expect("load"), Some(desired(2, false)));
}

#[tokio::test]
async fn unwritable_ledger_means_not_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = Arc::new(FileLedger::new(dir.path()));
    file.store(&desired(2, false)).expect("store");
    std::fs::create_dir(temp_path(&dir.path().join(LEDGER_FILE))).expect("block writes");
    let ledger: Arc<dyn LedgerStore> = file;
    let reconciler = reconciler();
    let observed = handle_desired(&ledger, &reconciler, desired(3, true)).await;
    assert_eq!(observed.outcome(), ReconcileOutcome::Failed);
    assert_eq!(observed.generation, 2, "still holding 2");
    assert!(observed.message.contains("ledger"), "{}", observed.message);
    assert_eq!(reconciler.status().snapshot().reconcile_passes, 0);
    assert!(
        !reconciler.status().snapshot().draining,
        "not applied without the ledger"
    );
}

#[tokio::test]
async fn corrupted_ledger_is_replaced_by_the_controllers_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(LEDGER_FILE), b"torn").expect("write");
    let ledger: Arc<dyn LedgerStore> = Arc::new(FileLedger::new(dir.path()));
    let reconciler = reconciler();
    let observed = handle_desired(&ledger, &reconciler, desired(4, false)).await;
    assert_eq!(observed.outcome(), ReconcileOutcome::Applied);
    assert_eq!(ledger.load().expect("load"), Some(desired(4, false)));
}

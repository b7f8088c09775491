//! What a sysadmin finds in the journal: a pass that changes nothing is
//! silent at info, a change is logged once with its journal fields and
//! message id, and a failure is logged when it starts, not every 30 s.

use std::sync::{Arc, Mutex};

use coloc_agent::host::FakeHost;
use coloc_agent::host::volumes::VolumeObject;
use coloc_agent::logging::{Entry, JournalLayer, ids};
use coloc_agent::reconcile::Reconciler;
use coloc_agent::status::{AgentStatus, Outcome, StatusHub};
use coloc_proto::agent::v1::{
    DesiredConfig, PoolKind, PoolLayout, PoolSpec, VolumeSpec, VolumeState,
};
use coloc_proto::domain::NodeName;
use tracing::Level;
use tracing_subscriber::prelude::*;

const GIB: u64 = 1 << 30;
const VOLUME: &str = "00000000000000a1";
const ORPHAN: &str = "00000000000000ff";

/// Entries at info or above, as the journal would get them.
#[derive(Clone, Default)]
struct Journal(Arc<Mutex<Vec<Entry>>>);

impl Journal {
    /// Installs the journal layer for this thread until the guard drops.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = Arc::clone(&self.0);
        let layer = JournalLayer::new(move |e: &Entry| {
            if e.level <= Level::INFO {
                sink.lock().unwrap().push(e.clone());
            }
        });
        tracing::subscriber::set_default(tracing_subscriber::registry().with(layer))
    }

    fn take(&self) -> Vec<Entry> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn field<'a>(entry: &'a Entry, name: &str) -> Option<&'a str> {
    entry
        .fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn with_id<'a>(entries: &'a [Entry], id: &str) -> Vec<&'a Entry> {
    entries
        .iter()
        .filter(|e| field(e, "MESSAGE_ID") == Some(id))
        .collect()
}

fn config(generation: u64) -> DesiredConfig {
    DesiredConfig {
        generation,
        node_name: "n1".into(),
        pools: vec![PoolSpec {
            name: "tank".into(),
            kind: PoolKind::Zfs.into(),
            layout: PoolLayout::Single.into(),
            disks: vec!["serial:SIM-n1-1".into()],
            force: false,
        }],
        volumes: vec![VolumeSpec {
            id: VOLUME.into(),
            tenant: "asso-x".into(),
            name: "data".into(),
            pool: "tank".into(),
            pool_kind: PoolKind::Zfs.into(),
            size_bytes: GIB,
            state: VolumeState::Active.into(),
            owner_uid: 200_001,
            owner_gid: 200_001,
            ..VolumeSpec::default()
        }],
        ..DesiredConfig::default()
    }
}

fn orphan() -> VolumeObject {
    VolumeObject {
        pool: "tank".into(),
        kind: PoolKind::Zfs,
        object: format!("tank/coloc/{ORPHAN}"),
        volume_id: ORPHAN.into(),
        size_bytes: GIB,
        reservation_bytes: 0,
        used_bytes: 0,
        available_bytes: GIB,
        snapshot_bytes: 0,
        read_only: false,
        encrypted: false,
        unlocked: true,
        has_filesystem: true,
        filesystem_bytes: GIB,
        mounted_at: None,
        snapshots: Vec::new(),
    }
}

#[tokio::test]
async fn changes_are_logged_once_with_journal_fields_and_quiet_passes_are_not() {
    let journal = Journal::default();
    let _guard = journal.install();
    let fake = FakeHost::new("n1");
    let r = Reconciler::new(
        NodeName::new("n1").unwrap(),
        fake.host(),
        StatusHub::new(AgentStatus::default()),
    );

    let report = r.reconcile(&config(4)).await;
    assert_eq!(report.outcome, Outcome::Applied, "{}", report.message);
    let first = journal.take();
    let applied = with_id(&first, ids::CONFIG_APPLIED);
    assert_eq!(applied.len(), 1, "{first:#?}");
    assert_eq!(field(applied[0], "GENERATION"), Some("4"));
    assert_eq!(field(applied[0], "NODE"), Some("n1"));
    let created = with_id(&first, ids::VOLUME_CREATED);
    assert_eq!(created.len(), 1, "{first:#?}");
    assert_eq!(field(created[0], "COLOC_TENANT"), Some("asso-x"));
    assert_eq!(field(created[0], "VOLUME"), Some(VOLUME));
    assert_eq!(with_id(&first, ids::POOL_CREATED).len(), 1);

    // Nothing changed: nothing at info or above.
    let report = r.reconcile(&config(4)).await;
    assert_eq!(report.outcome, Outcome::Applied);
    let quiet = journal.take();
    assert!(quiet.is_empty(), "{quiet:#?}");

    // A planted object: warned about once, then quiet.
    fake.zfs.insert_object(orphan());
    r.reconcile(&config(4)).await;
    let found = journal.take();
    let orphans = with_id(&found, ids::ORPHAN_FOUND);
    assert_eq!(orphans.len(), 1, "{found:#?}");
    assert_eq!(orphans[0].level, Level::WARN);
    assert_eq!(field(orphans[0], "VOLUME"), Some(ORPHAN));
    r.reconcile(&config(4)).await;
    assert!(journal.take().is_empty());

    // A pass that starts failing is logged once, at error; the same
    // failure again is not; recovery is logged once.
    fake.zfs.set_pool_health("tank", "FAULTED");
    let report = r.reconcile(&config(4)).await;
    assert_eq!(report.outcome, Outcome::Failed);
    let failing = journal.take();
    let failed = with_id(&failing, ids::PASS_FAILED);
    assert_eq!(failed.len(), 1, "{failing:#?}");
    assert_eq!(failed[0].level, Level::ERROR);
    assert!(
        field(failed[0], "ERROR").is_some_and(|e| e.contains("tank")),
        "{failed:#?}"
    );
    r.reconcile(&config(4)).await;
    assert!(journal.take().is_empty());
    fake.zfs.set_pool_health("tank", "ONLINE");
    r.reconcile(&config(4)).await;
    let back = journal.take();
    assert_eq!(with_id(&back, ids::CONFIG_APPLIED).len(), 1, "{back:#?}");

    // A new generation is a change.
    r.reconcile(&config(5)).await;
    let next = journal.take();
    let applied = with_id(&next, ids::CONFIG_APPLIED);
    assert_eq!(applied.len(), 1, "{next:#?}");
    assert_eq!(field(applied[0], "GENERATION"), Some("5"));
}

//! The hub on the fake host: on-demand runs, scheduled runs, the policy
//! kept across restarts, and what a new session gets.

use super::*;
use crate::host::FakeHost;
use crate::host::health::HealthInputs;
use coloc_proto::agent::v1::ZfsPoolHealth;
use schedule::SubjectState;

const DAY: u64 = 86_400;

fn hub_on(fake: &FakeHost, dir: &std::path::Path) -> HealthHub {
    HealthHub::new("n1", fake.host(), dir.to_path_buf())
}

fn fake_with_pool() -> FakeHost {
    let fake = FakeHost::new("n1");
    fake.zfs.add_pool("tank", 1 << 40);
    fake
}

fn scrubs(report: &HealthReport) -> Vec<&MaintenanceRun> {
    report
        .maintenance
        .iter()
        .filter(|r| r.kind == MaintenanceKind::Scrub as i32 && r.subject == "tank")
        .collect()
}

fn pool<'a>(report: &'a HealthReport, name: &str) -> &'a ZfsPoolHealth {
    report
        .zfs_pools
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("pool {name} not in the report: {:?}", report.zfs_pools))
}

#[tokio::test]
async fn a_scrub_asked_for_is_marked_on_demand_until_reported_finished() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with_pool();
    let hub = hub_on(&fake, dir.path());
    let (first, _) = hub.collect(&HealthInputs::default()).await;
    assert_eq!(pool(&first, "tank").name, "tank");
    assert!(
        scrubs(&first).is_empty(),
        "no scrub before one is asked: {first:?}"
    );

    let started = hub
        .run_on_demand(MaintenanceKind::Scrub, "tank")
        .await
        .unwrap();
    assert_eq!(started, "tank");

    let (running, _) = hub.collect(&HealthInputs::default()).await;
    let runs = scrubs(&running);
    assert_eq!(runs.len(), 1, "{running:?}");
    assert_eq!(runs[0].state, MaintenanceState::Running as i32);
    assert!(
        runs[0].on_demand,
        "a run colocd asked for is marked: {:?}",
        runs[0]
    );

    let (finished, _) = hub.collect(&HealthInputs::default()).await;
    let runs = scrubs(&finished);
    assert_eq!(runs.len(), 1, "{finished:?}");
    assert_eq!(runs[0].state, MaintenanceState::Passed as i32);
    assert!(
        runs[0].on_demand,
        "still marked when reported finished: {:?}",
        runs[0]
    );

    let (later, _) = hub.collect(&HealthInputs::default()).await;
    assert!(
        scrubs(&later).iter().all(|r| !r.on_demand),
        "the mark ends once the run was reported finished: {later:?}"
    );
    // The history counts it: the scheduler will not start another soon.
    let state = HealthState::load(&dir.path().join(HEALTH_STATE_FILE)).unwrap();
    assert!(state.started.0["scrub:tank"].last_started > 0, "{state:?}");
}

#[tokio::test]
async fn maintenance_on_an_unknown_subject_is_refused_and_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with_pool();
    let hub = hub_on(&fake, dir.path());
    hub.collect(&HealthInputs::default()).await;

    let err = hub
        .run_on_demand(MaintenanceKind::Scrub, "nope")
        .await
        .unwrap_err();
    assert!(err.contains("nope"), "the error names the pool: {err}");
    let err = hub
        .run_on_demand(MaintenanceKind::SmartShort, "/dev/../etc/passwd")
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    let err = hub
        .run_on_demand(MaintenanceKind::Unspecified, "tank")
        .await
        .unwrap_err();
    assert!(err.contains("kind"), "{err}");

    let state = HealthState::load(&dir.path().join(HEALTH_STATE_FILE)).unwrap();
    assert!(
        state.started.0.values().all(|s| s.last_started == 0),
        "a refused run is not history: {state:?}"
    );
    let (report, _) = hub.collect(&HealthInputs::default()).await;
    assert!(
        report.maintenance.iter().all(|r| !r.on_demand),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_pool_never_scrubbed_since_long_ago_is_scrubbed_by_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    // The agent has known the pool for 90 days and never saw a scrub.
    let mut state = HealthState::default();
    state.started.0.insert(
        "scrub:tank".into(),
        SubjectState {
            first_seen: now - 90 * DAY,
            last_started: 0,
        },
    );
    state.save(&dir.path().join(HEALTH_STATE_FILE)).unwrap();
    let fake = fake_with_pool();
    fake.health.set_last_scrub("tank", None);
    let hub = hub_on(&fake, dir.path());

    let (_, started) = hub.collect(&HealthInputs::default()).await;
    assert!(started, "a scrub is due after 90 days");
    let (next, _) = hub.collect(&HealthInputs::default()).await;
    let runs = scrubs(&next);
    assert_eq!(runs.len(), 1, "{next:?}");
    assert!(!runs[0].on_demand, "the schedule's run is not on demand");

    // Started once: the next collections start nothing more.
    let (_, again) = hub.collect(&HealthInputs::default()).await;
    assert!(!again, "one scrub per period");
    let state = HealthState::load(&dir.path().join(HEALTH_STATE_FILE)).unwrap();
    assert!(
        state.started.0["scrub:tank"].last_started >= now,
        "{state:?}"
    );
}

#[tokio::test]
async fn the_policy_is_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with_pool();
    let hub = hub_on(&fake, dir.path());
    assert_eq!(
        hub.schedule().period,
        Duration::from_secs(60),
        "default before colocd speaks"
    );
    hub.set_policy(Some(HealthPolicy {
        period_secs: 15,
        scrub_period_days: 14,
        ..HealthPolicy::default()
    }));
    assert_eq!(hub.schedule().period, Duration::from_secs(15));
    drop(hub);

    let again = hub_on(&fake, dir.path());
    assert_eq!(
        again.schedule().period,
        Duration::from_secs(15),
        "kept on disk"
    );
}

#[tokio::test]
async fn a_new_session_gets_the_latest_report_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_with_pool();
    let hub = hub_on(&fake, dir.path());
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);

    // Nothing collected yet: nothing to send, the loop is woken instead.
    hub.session_opened(&tx);
    assert!(rx.try_recv().is_err());
    tokio::time::timeout(Duration::from_secs(5), hub.inner.wake.notified())
        .await
        .expect("the loop is woken to collect for the new session");

    let (report, _) = hub.collect(&HealthInputs::default()).await;
    hub.session_opened(&tx);
    match rx.try_recv().expect("a report is sent at once").body {
        Some(agent_message::Body::Health(sent)) => assert_eq!(*sent, report),
        other => panic!("expected a health report, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreadable_state_file_is_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(HEALTH_STATE_FILE), b"{not json").unwrap();
    let fake = fake_with_pool();
    let hub = hub_on(&fake, dir.path());
    assert_eq!(hub.schedule().period, Duration::from_secs(60));
    let (report, _) = hub.collect(&HealthInputs::default()).await;
    assert_eq!(pool(&report, "tank").name, "tank");
}

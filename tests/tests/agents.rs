//! Simulated agents (the real agent logic over in-memory hosts) against a
//! real colocd over real mTLS: enrollment, desired-state changes, restarts
//! on either side, stale generations.

use std::path::Path;
use std::time::Duration;

use coloc_agent::{AgentHandle, AgentStatus, spawn_sim_agent};
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;

const DEADLINE: Duration = Duration::from_secs(30);

async fn wait_status(
    agent: &AgentHandle,
    what: &str,
    cond: impl Fn(&AgentStatus) -> bool,
) -> Result<AgentStatus> {
    let rx = agent.status();
    wait_for(what, DEADLINE, || {
        let s = rx.borrow().clone();
        let ok = cond(&s);
        async move { ok.then_some(s) }
    })
    .await
}

async fn fleet(ctl: &TestController, dir: &Path, names: &[&str]) -> Result<Vec<AgentHandle>> {
    let mut admin = ctl.admin().await?;
    let mut agents = Vec::new();
    for n in names {
        let token = join_token(&mut admin, "paris-1", 600).await?;
        agents.push(spawn_sim_agent(sim_spec(ctl, n, &token, dir)));
    }
    Ok(agents)
}

#[tokio::test]
async fn simulated_agents_enroll_report_facts_and_apply_changes() -> Result<()> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let dir = tempfile::tempdir()?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let names: Vec<String> = (0..20).map(|i| format!("sim-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let agents = fleet(&ctl, dir.path(), &refs).await?;

    for (a, n) in agents.iter().zip(&names) {
        wait_status(a, "agent connected", |s| s.connected && s.enrolled).await?;
        let node = wait_node(&admin, n, "node ready", DEADLINE, |n| {
            n.status == pb::NodeStatus::Ready as i32 && n.applied_generation == 1
        })
        .await?;
        let facts = node.facts.expect("facts reported");
        assert_eq!(&facts.hostname, n);
        assert!(facts.cpu_count > 0 && facts.memory_bytes > 0);
        assert!(!facts.disks.is_empty());
        assert_eq!(node.site, "paris-1");
    }

    // Large fleets are listed page by page, each node exactly once.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = admin
            .nodes
            .list_nodes(pb::ListNodesRequest {
                site: String::new(),
                after,
                limit: 7,
            })
            .await?
            .into_inner();
        assert!(page.nodes.len() <= 7);
        seen.extend(page.nodes.into_iter().map(|n| n.name));
        if page.next_after.is_empty() {
            break;
        }
        after = page.next_after;
    }
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(all_nodes(&mut admin).await?.len(), 20);

    // A fleet-wide change reaches every agent and is acknowledged.
    let changed = admin
        .nodes
        .set_node_labels(pb::SetNodeLabelsRequest {
            nodes: vec![],
            set: [("rack".to_string(), "b2".to_string())].into(),
            remove: vec![],
        })
        .await?
        .into_inner()
        .updated;
    assert_eq!(changed.len(), 20);
    assert!(changed.iter().all(|n| n.desired_generation == 2));
    for (a, n) in agents.iter().zip(&names) {
        let s = wait_status(a, "label applied", |s| {
            s.labels.get("rack").map(String::as_str) == Some("b2")
        })
        .await?;
        assert_eq!(s.ledger_generation, 2);
        wait_node(&admin, n, "ack recorded", DEADLINE, |n| {
            n.applied_generation == 2
        })
        .await?;
    }

    // Draining one node reaches only that node.
    admin
        .nodes
        .drain_node(pb::DrainNodeRequest {
            name: "sim-3".into(),
            drain: true,
        })
        .await?;
    wait_status(&agents[3], "draining", |s| {
        s.draining && s.ledger_generation == 3
    })
    .await?;
    let n3 = wait_node(&admin, "sim-3", "draining acked", DEADLINE, |n| {
        n.applied_generation == 3
    })
    .await?;
    assert_eq!(n3.status, pb::NodeStatus::Draining as i32);
    assert!(!agents[4].status().borrow().draining);

    // Imperative requests over the session.
    let pong = admin
        .nodes
        .ping_node(pb::GetNodeRequest {
            name: "sim-5".into(),
        })
        .await?
        .into_inner();
    assert!(pong.agent_unix_ms > 0);
    let refreshed = admin
        .nodes
        .refresh_node_facts(pb::GetNodeRequest {
            name: "sim-5".into(),
        })
        .await?
        .into_inner();
    assert_eq!(refreshed.facts.unwrap().hostname, "sim-5");

    // Heartbeats keep last_seen moving.
    let before = node(&mut admin, "sim-7").await?.last_seen_unix;
    wait_node(&admin, "sim-7", "last seen advances", DEADLINE, |n| {
        n.last_seen_unix > before
    })
    .await?;

    for a in agents {
        a.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn an_agent_restarted_with_the_controller_down_applies_its_ledger() -> Result<()> {
    init_test_logging();
    let mut ctl = TestController::start().await?;
    let dir = tempfile::tempdir()?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 600).await?;
    let agent = spawn_sim_agent(sim_spec(&ctl, "n1", &token, dir.path()));
    wait_status(&agent, "connected", |s| s.connected).await?;
    admin
        .nodes
        .set_node_labels(pb::SetNodeLabelsRequest {
            nodes: vec!["n1".into()],
            set: [("role".to_string(), "web".to_string())].into(),
            remove: vec![],
        })
        .await?;
    admin
        .nodes
        .drain_node(pb::DrainNodeRequest {
            name: "n1".into(),
            drain: true,
        })
        .await?;
    wait_status(&agent, "generation 3 applied", |s| {
        s.applied_generation == 3
    })
    .await?;

    ctl.stop().await?;
    agent.shutdown().await;

    // The controller is gone; the agent starts from its ledger alone.
    let agent = spawn_sim_agent(sim_spec(&ctl, "n1", "cjt_not-needed-any-more", dir.path()));
    let s = wait_status(&agent, "ledger reconciled without controller", |s| {
        s.ready && s.reconcile_passes >= 1 && s.applied_generation == 3
    })
    .await?;
    assert!(!s.connected);
    assert!(s.enrolled);
    assert_eq!(s.ledger_generation, 3);
    assert!(s.draining);
    assert_eq!(s.labels.get("role").map(String::as_str), Some("web"));

    // The controller comes back; the agent finds it by itself.
    ctl.restart().await?;
    wait_status(&agent, "reconnected", |s| s.connected).await?;
    let admin = ctl.admin().await?;
    wait_node(&admin, "n1", "ready again", DEADLINE, |n| {
        n.connected && n.applied_generation == 3
    })
    .await?;
    agent.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn agents_reconnect_after_colocd_restarts() -> Result<()> {
    init_test_logging();
    let mut ctl = TestController::start().await?;
    let dir = tempfile::tempdir()?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let agents = fleet(&ctl, dir.path(), &["a1", "a2", "a3", "a4", "a5"]).await?;
    for a in &agents {
        wait_status(a, "connected", |s| s.connected).await?;
    }
    ctl.restart().await?;
    for a in &agents {
        wait_status(a, "second session", |s| {
            s.connected && s.sessions_opened >= 2
        })
        .await?;
    }
    let mut admin = ctl.admin().await?;
    admin
        .nodes
        .set_node_labels(pb::SetNodeLabelsRequest {
            nodes: vec![],
            set: [("after".to_string(), "restart".to_string())].into(),
            remove: vec![],
        })
        .await?;
    for a in &agents {
        wait_status(a, "change after restart", |s| {
            s.labels.contains_key("after")
        })
        .await?;
    }
    let stats = admin
        .nodes
        .get_controller_stats(pb::GetControllerStatsRequest {})
        .await?
        .into_inner();
    assert_eq!(stats.sessions, 5);
    for a in agents {
        a.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn a_node_whose_session_drops_becomes_unreachable() -> Result<()> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let dir = tempfile::tempdir()?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 600).await?;
    let agent = spawn_sim_agent(sim_spec(&ctl, "n1", &token, dir.path()));
    wait_node(&admin, "n1", "ready", DEADLINE, |n| {
        n.status == pb::NodeStatus::Ready as i32 && n.connected
    })
    .await?;
    agent.shutdown().await;
    // fast_config: unreachable 2 s after the session drops.
    let n = wait_node(&admin, "n1", "unreachable", DEADLINE, |n| {
        n.status == pb::NodeStatus::Unreachable as i32
    })
    .await?;
    assert!(!n.connected);
    // The agent comes back: ready again.
    let agent = spawn_sim_agent(sim_spec(&ctl, "n1", &token, dir.path()));
    wait_node(&admin, "n1", "ready again", DEADLINE, |n| {
        n.status == pb::NodeStatus::Ready as i32
    })
    .await?;
    agent.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_stale_generation_from_a_restored_controller_is_rejected() -> Result<()> {
    init_test_logging();
    let mut ctl = TestController::start().await?;
    let dir = tempfile::tempdir()?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 600).await?;
    let agent = spawn_sim_agent(sim_spec(&ctl, "n1", &token, dir.path()));
    wait_status(&agent, "generation 1", |s| s.applied_generation == 1).await?;

    // A backup of the controller's database, taken now.
    ctl.stop().await?;
    let backup = tempfile::tempdir()?;
    let db_files = ["colocd.db", "colocd.db-wal", "colocd.db-shm"];
    for f in db_files {
        let from = ctl.data_dir().join(f);
        if from.exists() {
            std::fs::copy(&from, backup.path().join(f))?;
        }
    }
    ctl.restart().await?;
    let mut admin = ctl.admin().await?;
    for i in 0..2 {
        admin
            .nodes
            .set_node_labels(pb::SetNodeLabelsRequest {
                nodes: vec!["n1".into()],
                set: [("step".to_string(), i.to_string())].into(),
                remove: vec![],
            })
            .await?;
    }
    wait_status(&agent, "generation 3", |s| s.applied_generation == 3).await?;

    // The controller is restored from the older backup: it believes the
    // node is at generation 1 and says so.
    ctl.stop().await?;
    for f in db_files {
        let to = ctl.data_dir().join(f);
        let from = backup.path().join(f);
        if from.exists() {
            std::fs::copy(&from, &to)?;
        } else if to.exists() {
            std::fs::remove_file(&to)?;
        }
    }
    ctl.restart().await?;
    let admin = ctl.admin().await?;
    let n = wait_node(&admin, "n1", "stale rejection reported", DEADLINE, |n| {
        n.last_outcome == coloc_proto::agent::v1::ReconcileOutcome::StaleRejected as i32
    })
    .await?;
    assert_eq!(n.desired_generation, 1);
    assert_eq!(
        n.applied_generation, 3,
        "the agent reports what its ledger holds"
    );
    let s = agent.status().borrow().clone();
    assert_eq!(s.ledger_generation, 3, "the ledger was not rolled back");
    assert_eq!(s.labels.get("step").map(String::as_str), Some("1"));
    agent.shutdown().await;
    Ok(())
}

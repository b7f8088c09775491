//! colocd's background tasks as an admin sees them: the tasks run on
//! their own (heartbeats written, a silent node marked unreachable), the
//! Tasks API shows what each did, a member is refused and the refusal is
//! in the audit log, and `coloc tasks` prints the same through the real
//! binary.

use std::time::Duration;

use coloc_proto::controller::v1 as pb;
use coloc_tests::cli::{Coloc, stderr, stdout};
use coloc_tests::*;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(20);

const TASKS: [&str; 10] = [
    "heartbeat-flush",
    "silent-sessions",
    "unreachable-nodes",
    "volume-purge",
    "membership",
    "refusal-summaries",
    "node-certificates",
    "server-certificate",
    "health-flush",
    "alerts",
];

/// `Tasks.ListTasks` with `token`.
async fn list_tasks(
    ctl: &TestController,
    token: &str,
) -> std::result::Result<pb::ListTasksResponse, tonic::Status> {
    let mut api = ctl
        .api(token)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e:#}")))?;
    Ok(api
        .tasks
        .list_tasks(pb::ListTasksRequest {})
        .await?
        .into_inner())
}

/// Waits until the task called `name` is in a state where `cond` holds.
async fn wait_task(
    ctl: &TestController,
    name: &str,
    what: &str,
    cond: impl Fn(&pb::BackgroundTask) -> bool,
) -> Result<pb::BackgroundTask> {
    let cond = &cond;
    wait_for(what, DEADLINE, || async move {
        let list = list_tasks(ctl, &ctl.admin_token).await.ok()?;
        list.tasks.into_iter().find(|t| t.name == name && cond(t))
    })
    .await
}

#[tokio::test]
async fn admins_see_what_each_background_task_did() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;

    // Every task runs at start and then on its period.
    let all = wait_for("every task to have run", DEADLINE, || async {
        let list = list_tasks(&ctl, &ctl.admin_token).await.ok()?;
        list.tasks.iter().all(|t| t.runs > 0).then_some(list)
    })
    .await?;
    let names: Vec<&str> = all.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, TASKS);
    let by_name = |n: &str| all.tasks.iter().find(|t| t.name == n).unwrap();
    // fast_config: seen_flush_ms = 100; purging is checked every 2 s.
    for n in ["heartbeat-flush", "silent-sessions", "unreachable-nodes"] {
        assert_eq!(by_name(n).period_ms, 100, "{n}");
    }
    assert_eq!(by_name("volume-purge").period_ms, 2000);
    assert_eq!(by_name("membership").period_ms, 5000);
    assert_eq!(by_name("refusal-summaries").period_ms, 1000);
    for n in ["node-certificates", "server-certificate"] {
        assert_eq!(by_name(n).period_ms, 5000, "{n}");
    }
    for t in &all.tasks {
        assert!(!t.description.is_empty(), "{}", t.name);
        assert!(t.last_start_unix_ms > 0, "{}", t.name);
        assert!(
            t.last_start_unix_ms <= all.controller_unix_ms,
            "{}: started after colocd answered",
            t.name
        );
        assert_eq!(t.failures, 0, "{}: {}", t.name, t.last_error);
        assert!(t.last_error.is_empty(), "{}: {}", t.name, t.last_error);
    }
    let purge = by_name("volume-purge");
    assert_eq!(purge.last_outcome, pb::TaskOutcome::Ok as i32);
    assert_eq!(purge.last_summary, "no volume past its grace period");
    assert_eq!(
        by_name("membership").last_summary,
        "no membership changed phase (0 tenants)"
    );

    // A node connects: its heartbeats are written by heartbeat-flush.
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 3600).await?;
    let agent = RawAgent::enroll(&ctl, &token, "n1").await?;
    let flush = wait_task(&ctl, "heartbeat-flush", "a flush of n1's heartbeat", |t| {
        t.last_summary == "last seen times of 1 node recorded"
    })
    .await?;
    assert_eq!(flush.last_outcome, pb::TaskOutcome::Ok as i32);

    // The node goes away; once its session has been gone longer than
    // unreachable_after_secs, unreachable-nodes marks it.
    drop(agent);
    wait_for("n1 disconnected", DEADLINE, || {
        let mut admin = admin.clone();
        async move {
            let n = admin
                .nodes
                .get_node(pb::GetNodeRequest { name: "n1".into() })
                .await
                .ok()?
                .into_inner();
            (!n.connected).then_some(())
        }
    })
    .await?;
    let before = wait_task(&ctl, "unreachable-nodes", "a run", |_| true).await?;
    ctl.clock.advance_secs(3);
    wait_for("n1 unreachable", DEADLINE, || {
        let mut admin = admin.clone();
        async move {
            let n = admin
                .nodes
                .get_node(pb::GetNodeRequest { name: "n1".into() })
                .await
                .ok()?
                .into_inner();
            (n.status == pb::NodeStatus::Unreachable as i32).then_some(())
        }
    })
    .await?;
    let after = wait_task(&ctl, "unreachable-nodes", "a later run", |t| {
        t.runs > before.runs && !t.running
    })
    .await?;
    assert_eq!(after.last_outcome, pb::TaskOutcome::Ok as i32);
    assert_eq!(after.failures, 0, "{}", after.last_error);
    Ok(())
}

#[tokio::test]
async fn members_and_operators_are_refused_and_the_refusal_is_audited() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
    let member = create_user(&mut admin, "bob", "asso-a", pb::Role::Member).await?;
    let operator = create_user(&mut admin, "olga", "asso-a", pb::Role::Operator).await?;

    for (who, token) in [("bob", &member), ("olga", &operator)] {
        let err = list_tasks(&ctl, token).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{who}: {err}");
        assert!(
            err.message()
                .contains("reserved to the cooperative's admins"),
            "{who}: {err}"
        );
        let entries = audit_entries(&mut admin, &format!("user:{who}")).await?;
        let refused = entries
            .iter()
            .find(|e| e.action == "controller.tasks")
            .unwrap_or_else(|| panic!("{who}: no audit entry for the refused read"));
        assert_eq!(refused.outcome, pb::AuditOutcome::Denied as i32);
        assert_eq!(refused.target, "controller");
    }
    let err = list_tasks(&ctl, "cat_not-a-token").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    // An admin's successful read is not audited (reads log only refusals).
    list_tasks(&ctl, &ctl.admin_token).await?;
    let entries = audit_entries(&mut admin, "user:admin").await?;
    assert!(
        entries.iter().all(|e| e.action != "controller.tasks"),
        "{entries:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------- the CLI

#[tokio::test]
async fn coloc_tasks_prints_the_table_and_json() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
    let member = create_user(&mut admin, "bob", "asso-a", pb::Role::Member).await?;
    wait_for("every task to have run", DEADLINE, || async {
        let list = list_tasks(&ctl, &ctl.admin_token).await.ok()?;
        list.tasks.iter().all(|t| t.runs > 0).then_some(())
    })
    .await?;
    let coloc = Coloc::new(&ctl).await?;
    let root = coloc.user(&ctl.admin_token);

    let out = root.run(&["tasks"]).await;
    let stdout = stdout(&out);
    assert!(out.status.success(), "coloc tasks failed: {}", stderr(&out));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1 + TASKS.len(), "{stdout}");
    for header in [
        "NAME", "PERIOD", "LAST RUN", "DURATION", "RUNS", "OUTCOME", "ERROR",
    ] {
        assert!(lines[0].contains(header), "{stdout}");
    }
    for (line, name) in lines[1..].iter().zip(TASKS) {
        assert!(line.starts_with(name), "{stdout}");
        assert!(line.contains(" ok"), "{stdout}");
        assert!(
            line.contains(" ago") || line.contains("just now"),
            "{stdout}"
        );
    }
    assert!(lines[4].contains("2 s"), "volume-purge every 2 s: {stdout}");
    assert!(lines[5].contains("5 s"), "membership every 5 s: {stdout}");
    assert!(
        lines[6].contains("1 s"),
        "refusal-summaries every 1 s: {stdout}"
    );
    assert!(lines[1].contains("100 ms"), "flush every 100 ms: {stdout}");

    let out = root.run(&["--json", "tasks"]).await;
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let tasks = json.as_array().expect("--json prints an array");
    assert_eq!(tasks.len(), TASKS.len(), "{json}");
    for (t, name) in tasks.iter().zip(TASKS) {
        assert_eq!(t["name"], name, "{json}");
        assert!(t["runs"].as_u64() > Some(0), "{json}");
        assert_eq!(t["last_outcome"], "ok", "{json}");
        assert_eq!(t["last_error"], "", "{json}");
    }

    // A member: exit code 4 (permission denied) and colocd's sentence.
    let out = coloc.user(&member).run(&["tasks"]).await;
    assert_eq!(out.status.code(), Some(4));
    let stderr = stderr(&out);
    assert!(
        stderr.contains("permission denied") && stderr.contains("background tasks"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    Ok(())
}

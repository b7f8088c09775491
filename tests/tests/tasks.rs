//! colocd's background tasks as an admin sees them: the four tasks run on
//! their own (heartbeats written, a silent node marked unreachable), the
//! Tasks API shows what each did, a member is refused and the refusal is
//! in the audit log, and `coloc tasks` prints the same through the real
//! binary.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use coloc_proto::controller::v1 as pb;
use coloc_proto::controller::v1::tasks_client::TasksClient;
use coloc_tests::*;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(20);

const TASKS: [&str; 4] = [
    "heartbeat-flush",
    "silent-sessions",
    "unreachable-nodes",
    "volume-purge",
];

/// `Tasks.ListTasks` with `token` (the shared harness has no client for
/// this service yet).
async fn list_tasks(
    ctl: &TestController,
    token: &str,
) -> std::result::Result<pb::ListTasksResponse, tonic::Status> {
    let channel = ctl
        .channel()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(pb::ListTasksRequest {});
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| tonic::Status::invalid_argument("token is not ASCII"))?;
    req.metadata_mut().insert("authorization", bearer);
    Ok(TasksClient::new(channel)
        .list_tasks(req)
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

/// Builds (if needed) and locates the `coloc` binary of this workspace,
/// the way tests/tests/cli.rs does.
fn coloc_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-q", "-p", "coloc-cli", "--bin", "coloc"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building coloc failed");
    });
    // target/debug/deps/<test> -> target/debug/coloc
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("coloc")
}

/// A CLI configuration file for `token`.
fn cli_config(ctl: &TestController, token: &str, dir: &Path, name: &str) -> Result<PathBuf> {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "server = \"{}\"\nca_file = \"{}\"\ntoken = \"{token}\"\n",
            ctl.url(),
            ctl.data_dir().join("ca.pem").display()
        ),
    )?;
    Ok(config)
}

async fn coloc(config: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(coloc_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("COLOC_SERVER")
        .env_remove("COLOC_TOKEN")
        .env_remove("COLOC_CONFIG")
        .output()
        .await
        .expect("coloc runs")
}

#[tokio::test]
async fn coloc_tasks_prints_the_table_and_json() -> Result<()> {
    let ctl = TestController::start().await?;
    let dir = tempfile::tempdir()?;
    let mut admin = ctl.admin().await?;
    create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
    let member = create_user(&mut admin, "bob", "asso-a", pb::Role::Member).await?;
    wait_for("every task to have run", DEADLINE, || async {
        let list = list_tasks(&ctl, &ctl.admin_token).await.ok()?;
        list.tasks.iter().all(|t| t.runs > 0).then_some(())
    })
    .await?;
    let admin_cfg = cli_config(&ctl, &ctl.admin_token, dir.path(), "admin")?;

    let out = coloc(&admin_cfg, &["tasks"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "coloc tasks failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
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
    assert!(lines[1].contains("100 ms"), "flush every 100 ms: {stdout}");

    let out = coloc(&admin_cfg, &["--json", "tasks"]).await;
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let tasks = json.as_array().expect("--json prints an array");
    assert_eq!(tasks.len(), 4, "{json}");
    for (t, name) in tasks.iter().zip(TASKS) {
        assert_eq!(t["name"], name, "{json}");
        assert!(t["runs"].as_u64() > Some(0), "{json}");
        assert_eq!(t["last_outcome"], "ok", "{json}");
        assert_eq!(t["last_error"], "", "{json}");
    }

    // A member: exit code 4 (permission denied) and colocd's sentence.
    let member_cfg = cli_config(&ctl, &member, dir.path(), "bob")?;
    let out = coloc(&member_cfg, &["tasks"]).await;
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("permission denied") && stderr.contains("background tasks"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    Ok(())
}

//! What colocd takes from a node's answers to its requests (facts, logs,
//! pings): only the answer of the node it asked, to what it asked; a node
//! that reads or guesses the id of a request sent to another resolves
//! nothing. Driven by hand with raw agent sessions.

use std::time::Duration;

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(20);

/// Waits until colocd has dropped `n` results that matched nothing.
async fn wait_unmatched(admin: &Api, n: u64) -> Result<()> {
    wait_for(&format!("{n} unmatched results dropped"), DEADLINE, || {
        let mut admin = admin.clone();
        async move {
            let stats = admin
                .nodes
                .get_controller_stats(pb::GetControllerStatsRequest {})
                .await
                .ok()?
                .into_inner();
            (stats.unmatched_results >= n).then_some(())
        }
    })
    .await
}

/// The ids a node might try: the one it read off another node's stream,
/// its neighbours, and small numbers (what a counter would have given).
fn forged_ids(read: u64) -> Vec<u64> {
    let mut ids = vec![read, read.wrapping_add(1), read.wrapping_sub(1)];
    ids.extend(0..8);
    ids
}

fn facts_result(id: u64, hostname: &str) -> apb::RequestResult {
    apb::RequestResult {
        request_id: id,
        ok: true,
        error: String::new(),
        payload: Some(apb::request_result::Payload::Facts(apb::NodeFacts {
            hostname: hostname.into(),
            cpu_count: 64,
            ..Default::default()
        })),
    }
}

#[tokio::test]
async fn a_node_cannot_answer_a_facts_request_sent_to_another() -> Result<()> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let mut agents = raw_fleet(&ctl, "paris-1", &["n-a", "n-b"]).await?;
    let b = agents.pop().context("n-b")?;
    let mut a = agents.pop().context("n-a")?;

    let mut asker = admin.clone();
    let call = tokio::spawn(async move {
        asker
            .nodes
            .refresh_node_facts(pb::GetNodeRequest { name: "n-a".into() })
            .await
    });
    let asked = a.next_request().await?;
    assert!(
        matches!(asked.kind, Some(apb::request::Kind::RefreshFacts(_))),
        "{asked:?}"
    );
    // n-b, compromised, answers in n-a's place: with the id it read (say
    // off a shared log) and with guesses.
    let forged = forged_ids(asked.id);
    for id in &forged {
        b.answer(facts_result(*id, "forged-by-n-b")).await?;
    }
    wait_unmatched(&admin, forged.len() as u64).await?;
    assert!(!call.is_finished(), "a forged answer resolved the request");

    a.answer(facts_result(asked.id, "n-a-real")).await?;
    let node = call.await??.into_inner();
    assert_eq!(node.name, "n-a");
    assert_eq!(node.facts.context("facts")?.hostname, "n-a-real");
    // Nothing of the forgery was recorded, for either node.
    let b_node = node_of(&mut admin, "n-b").await?;
    assert_eq!(b_node.facts.context("facts")?.hostname, "n-b");
    let stats = admin
        .nodes
        .get_controller_stats(pb::GetControllerStatsRequest {})
        .await?
        .into_inner();
    assert_eq!(stats.unmatched_results, forged.len() as u64);
    // Both sessions are still up: a dropped result closes nothing.
    assert_eq!(stats.sessions, 2);
    Ok(())
}

async fn node_of(admin: &mut Api, name: &str) -> Result<pb::Node> {
    Ok(admin
        .nodes
        .get_node(pb::GetNodeRequest { name: name.into() })
        .await?
        .into_inner())
}

/// A member of asso-a reads the logs of its site app on n-a; n-b forges
/// the answer, then n-a goes away before answering. The member is told
/// that n-a is not connected, at once, and never sees n-b's lines.
#[tokio::test]
async fn a_node_cannot_answer_a_logs_request_sent_to_another() -> Result<()> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let mut agents = raw_fleet(&ctl, "paris-1", &["n-a", "n-b"]).await?;
    let b = agents.pop().context("n-b")?;
    let mut a = agents.pop().context("n-a")?;
    create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
    create_pool(&mut admin, "n-a", "tank", apb::PoolKind::Zfs, "serial:a1").await?;
    create_volume(
        &mut admin,
        NewVolume {
            tenant: "asso-a",
            name: "data",
            node: "n-a",
            pool: "tank",
            size_bytes: 1 << 30,
            encrypted: false,
        },
    )
    .await?;
    let member = create_user(&mut admin, "mia", "asso-a", pb::Role::Member).await?;
    let mut mia = ctl.api(&member).await?;
    let request = mia
        .apps
        .request_app(pb::RequestAppRequest {
            tenant: "asso-a".into(),
            app: "site".into(),
            node: "n-a".into(),
            volume: String::new(),
            comment: String::new(),
        })
        .await?
        .into_inner();
    admin
        .apps
        .approve_request(pb::DecideRequestRequest {
            id: request.id,
            comment: String::new(),
        })
        .await?;

    let call = tokio::spawn(async move {
        mia.apps
            .get_instance_logs(pb::GetInstanceLogsRequest {
                instance: "asso-a/site".into(),
                lines: 10,
                after_cursor: String::new(),
            })
            .await
    });
    let asked = a.next_request().await?;
    assert!(
        matches!(asked.kind, Some(apb::request::Kind::AppLogs(_))),
        "{asked:?}"
    );
    let forged = forged_ids(asked.id);
    for id in &forged {
        b.answer(apb::RequestResult {
            request_id: *id,
            ok: true,
            error: String::new(),
            payload: Some(apb::request_result::Payload::Logs(apb::AppLogs {
                lines: vec!["2026-01-01T00:00:00Z forged-by-n-b: password=hunter2".into()],
                cursor: "s=forged".into(),
                truncated: false,
            })),
        })
        .await?;
    }
    wait_unmatched(&admin, forged.len() as u64).await?;
    assert!(!call.is_finished(), "a forged answer resolved the request");

    // n-a's session ends: its waiting request fails now, not after the
    // request timeout.
    drop(a);
    let err = tokio::time::timeout(DEADLINE, call)
        .await
        .context("the logs request still waits after its node left")??
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(
        err.message().starts_with("node n-a is not connected"),
        "{err}"
    );
    assert!(!err.message().contains("forged"), "{err}");
    drop(b);
    Ok(())
}

/// `coloc app logs -n 1000` on an app whose journal lines are 4 KiB each
/// (4 MiB in all, four times a session's message limit), against the real
/// agent logic over the in-memory host: the node sends the newest lines
/// that fit and says it cut; its session survives; following from a
/// cursor goes through every line, in order.
#[tokio::test]
async fn a_large_log_page_is_cut_and_the_session_survives() -> Result<()> {
    use coloc_agent::host::{FakeHost, UnitName};
    use coloc_proto::MAX_LOG_PAGE_BYTES;

    init_test_logging();
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let token = join_token(&mut admin, "paris-1", 3600).await?;
    let dir = tempfile::tempdir()?;
    let host = FakeHost::new("n1");
    let _agent = spawn_sim_node(&ctl, "n1", &token, dir.path(), &host)?;
    wait_node_ready(&admin, "n1", DEADLINE).await?;
    create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
    create_pool(
        &mut admin,
        "n1",
        "tank",
        apb::PoolKind::Zfs,
        "serial:SIM-n1-1",
    )
    .await?;
    create_volume(
        &mut admin,
        NewVolume {
            tenant: "asso-a",
            name: "data",
            node: "n1",
            pool: "tank",
            size_bytes: 1 << 30,
            encrypted: false,
        },
    )
    .await?;
    let request = admin
        .apps
        .request_app(pb::RequestAppRequest {
            tenant: "asso-a".into(),
            app: "site".into(),
            node: "n1".into(),
            volume: String::new(),
            comment: String::new(),
        })
        .await?
        .into_inner();
    admin
        .apps
        .approve_request(pb::DecideRequestRequest {
            id: request.id,
            comment: String::new(),
        })
        .await?;
    let unit = UnitName::new("coloc-app-asso-a-site.service")?;
    let journal: Vec<String> = (1..=1000)
        .map(|i| format!("2026-01-01T00:00:00Z {i:04} {}", "x".repeat(4096)))
        .collect();
    host.journal.set_lines(&unit, journal.clone());
    let stats = |mut api: Api| async move {
        Ok::<_, anyhow::Error>(
            api.nodes
                .get_controller_stats(pb::GetControllerStatsRequest {})
                .await?
                .into_inner(),
        )
    };
    let opened = stats(admin.clone()).await?.sessions_opened;

    let ask = |after_cursor: &str| pb::GetInstanceLogsRequest {
        instance: "asso-a/site".into(),
        lines: 1000,
        after_cursor: after_cursor.into(),
    };
    let page = admin.apps.get_instance_logs(ask("")).await?.into_inner();
    assert!(page.truncated);
    let n = page.lines.len();
    assert!(n > 50 && n < 1000, "{n} lines");
    let bytes: usize = page.lines.iter().map(String::len).sum();
    assert!(bytes <= MAX_LOG_PAGE_BYTES, "{bytes} bytes");
    assert_eq!(page.lines[..], journal[1000 - n..], "the newest lines");
    assert_eq!(page.cursor, "s=fake;i=1000");

    // The session is the same one, and it still answers.
    admin
        .nodes
        .ping_node(pb::GetNodeRequest { name: "n1".into() })
        .await?;
    let now = stats(admin.clone()).await?;
    assert_eq!((now.sessions, now.sessions_opened), (1, opened));

    // Following from the start of the journal: cut pages, every line once.
    let mut seen = Vec::new();
    let mut cursor = "s=fake;i=0".to_string();
    while seen.len() < journal.len() {
        let page = admin
            .apps
            .get_instance_logs(ask(&cursor))
            .await?
            .into_inner();
        assert!(!page.lines.is_empty(), "stuck at {cursor}");
        seen.extend(page.lines);
        cursor = page.cursor;
    }
    assert_eq!(seen, journal);
    assert_eq!(stats(admin.clone()).await?.sessions_opened, opened);
    Ok(())
}

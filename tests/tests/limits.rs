//! What an outsider can make colocd do without any credential, and what a
//! caller's text can make of the audit log: refused calls are bounded,
//! escaped, limited and summed up per address; oversize requests stop at
//! the door; connections are capped; `coloc audit` always lists.
//!
//! Database growth is measured with [`TestController::db_bytes`]: the
//! write-ahead log checkpointed into `colocd.db` and truncated, then
//! `page_count × page_size`, so every byte the calls committed is counted
//! whatever the log held before.

use std::time::Duration;

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::cli::{Coloc, stderr, stdout};
use coloc_tests::*;
use tonic::Code;

const DEADLINE: Duration = Duration::from_secs(20);
/// The attack: a 900 KB node name.
const HUGE: usize = 900 * 1000;
/// Just under the public API's request limit (256 KiB), so that the call
/// reaches authentication.
const LARGE: usize = 200 * 1000;

fn count(results: &[Code], code: Code) -> usize {
    results.iter().filter(|&&c| c == code).count()
}

/// The entries of `actor` for `action`, newest first.
async fn entries_of(admin: &mut Api, actor: &str, action: &str) -> Result<Vec<pb::AuditEntry>> {
    Ok(audit_entries(admin, actor)
        .await?
        .into_iter()
        .filter(|e| e.action == action)
        .collect())
}

/// The summary entry that says `detail`, once the background task wrote it.
async fn summary(admin: &Api, detail: &str) -> Result<pb::AuditEntry> {
    wait_for(&format!("the summary {detail:?}"), DEADLINE, || async {
        let mut admin = admin.clone();
        let entries = audit_entries(&mut admin, "anonymous").await.ok()?;
        entries.into_iter().find(|e| e.detail == detail)
    })
    .await
}

#[tokio::test]
async fn anonymous_floods_grow_the_database_by_little_and_audit_still_lists() -> Result<()> {
    init_test_logging();
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    let mut anon = ctl.anonymous().await?;
    let before = ctl.db_bytes()?;

    // The attack: 100 anonymous GetNode with a 900 KB name. The
    // public API decodes no request that large: refused at the door,
    // before authentication or the audit log.
    let huge = "a".repeat(HUGE);
    for _ in 0..100 {
        let err = anon
            .nodes
            .get_node(pb::GetNodeRequest { name: huge.clone() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange, "{}", err.message());
        assert!(err.message().contains("too large"), "{}", err.message());
    }
    let after_huge = ctl.db_bytes()?;

    // The same with a name that passes the door (200 KB, with a line
    // break and a terminal escape): refused as unauthenticated, the first
    // five written one by one, then only counted; past 60 in the minute,
    // refused at once.
    let large = format!("n1\n\u{1b}[31mforged{}", "a".repeat(LARGE));
    let mut codes = Vec::new();
    for _ in 0..100 {
        let err = anon
            .nodes
            .get_node(pb::GetNodeRequest {
                name: large.clone(),
            })
            .await
            .unwrap_err();
        codes.push(err.code());
        if err.code() == Code::ResourceExhausted {
            assert!(
                err.message()
                    .contains("too many calls without valid credentials from 127.0.0.1"),
                "{}",
                err.message()
            );
        }
    }
    assert_eq!(count(&codes, Code::Unauthenticated), 60, "{codes:?}");
    assert_eq!(count(&codes, Code::ResourceExhausted), 40, "{codes:?}");

    // Enrollment is open to anyone too: 30 attempts a minute per address
    // (fast_config keeps the default), a few of them written.
    let mut agent = ctl.agent_client().await?;
    let mut codes = Vec::new();
    for _ in 0..100 {
        let err = agent
            .enroll(apb::EnrollRequest {
                join_token: "jt-guess".into(),
                node_name: huge.clone(),
                csr_pem: String::new(),
                facts: None,
            })
            .await
            .unwrap_err();
        codes.push(err.code());
    }
    assert!(
        codes[..30].iter().all(|&c| c != Code::ResourceExhausted),
        "{codes:?}"
    );
    assert_eq!(
        count(&codes[30..], Code::ResourceExhausted),
        70,
        "{codes:?}"
    );

    // Credentials still work from the same address.
    admin
        .nodes
        .list_nodes(pb::ListNodesRequest::default())
        .await?;

    let shows = entries_of(&mut admin, "anonymous", "node.show").await?;
    assert_eq!(shows.len(), 5, "{shows:?}");
    for e in &shows {
        assert!(e.target.len() <= 512, "{}", e.target.len());
        assert!(
            e.target.starts_with("node:n1\\n\\u{1b}[31mforged"),
            "{}",
            e.target
        );
        assert!(
            e.target.ends_with(&format!("… ({} bytes)", large.len())),
            "{}",
            e.target
        );
        assert!(e.detail.ends_with("(from 127.0.0.1)"), "{}", e.detail);
        assert!(!e.target.contains('\n') && !e.target.contains('\u{1b}'));
    }
    let enrolls = entries_of(&mut admin, "anonymous", "node.enroll").await?;
    assert_eq!(enrolls.len(), 5, "{enrolls:?}");
    assert!(
        enrolls
            .iter()
            .all(|e| e.detail.len() <= 1024 && e.target.len() <= 512)
    );

    // The window closes: one summary per address and kind.
    ctl.clock.advance_secs(61);
    let calls = summary(&admin, "95 further refused calls from 127.0.0.1").await?;
    assert_eq!(calls.action, "anonymous.refused");
    assert_eq!(calls.target, "address:127.0.0.1");
    assert_eq!(calls.outcome, pb::AuditOutcome::Denied as i32);
    let attempts = summary(
        &admin,
        "95 further refused enrollment attempts from 127.0.0.1",
    )
    .await?;
    assert_eq!(attempts.action, "node.enroll");
    // A new window: written again.
    let err = anon
        .nodes
        .get_node(pb::GetNodeRequest { name: "n1".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let after = ctl.db_bytes()?;
    let growth = after - before;
    eprintln!(
        "database growth: {} bytes for 100 anonymous 900 KB GetNode calls, \
         {growth} bytes for everything in this test (300 anonymous calls)",
        after_huge - before
    );
    assert!(growth < 1_000_000, "the database grew by {growth} bytes");

    // `coloc audit` lists the latest entries, summaries included.
    let coloc = Coloc::new(&ctl).await?;
    let root = coloc.user(&ctl.admin_token);
    let out = root.run(&["audit"]).await;
    assert!(out.status.success(), "coloc audit: {}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("95 further refused calls from 127.0.0.1"),
        "{table}"
    );
    assert!(
        table.contains("95 further refused enrollment attempts from 127.0.0.1"),
        "{table}"
    );
    assert!(!table.contains('\u{1b}'), "{table}");
    let all = root.json(&["audit", "--limit", "1000", "--json"]).await;
    let all = all.as_array().expect("a list");
    assert_eq!(all[0]["action"], "node.show", "the newest first: {all:?}");
    assert_eq!(all[0]["actor"], "anonymous");
    Ok(())
}

/// The audit matrix's anonymous row only says who may do what; here the
/// limit itself: an invalid token counts as no credential, a valid one is
/// never held back by what others sent from the same address.
#[tokio::test]
async fn the_per_address_limit_spares_callers_with_credentials() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    create_tenant(&mut admin, "asso-a", pb::Offer::Participatif).await?;
    let member = create_user(&mut admin, "mem-a", "asso-a", pb::Role::Member).await?;
    let mut member = ctl.api(&member).await?;
    let mut forged = ctl.api("cat_not-a-real-token").await?;

    let mut codes = Vec::new();
    for _ in 0..61 {
        let err = forged
            .tenants
            .list_tenants(pb::ListTenantsRequest {})
            .await
            .unwrap_err();
        codes.push(err.code());
    }
    assert_eq!(count(&codes, Code::Unauthenticated), 60, "{codes:?}");
    assert_eq!(codes[60], Code::ResourceExhausted);

    // Over the limit, from the same address: the admin and a member work.
    admin.sites.list_sites(pb::ListSitesRequest {}).await?;
    let tenants = member
        .tenants
        .list_tenants(pb::ListTenantsRequest {})
        .await?
        .into_inner()
        .tenants;
    assert_eq!(tenants.len(), 1);
    // A member refused by policy is not an anonymous caller: audited as
    // always, not limited.
    let err = member
        .sites
        .create_site(pb::CreateSiteRequest {
            name: "s1".into(),
            country: "FR".into(),
            city: String::new(),
            description: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mine = audit_entries(&mut admin, "user:mem-a").await?;
    assert!(has_audit_entry(
        &mine,
        "user:mem-a",
        "site.create",
        pb::AuditOutcome::Denied
    ));

    // The next minute, a refused caller is told why again.
    ctl.clock.advance_secs(60);
    let err = forged
        .tenants
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("unknown token"), "{}", err.message());
    Ok(())
}

/// What a caller writes reaches the audit log escaped and cut, whoever
/// the caller is.
#[tokio::test]
async fn audit_fields_are_escaped_and_cut() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    let name = format!(
        "n1\r\nid=0 actor=admin outcome=allowed\u{202e}{}",
        "x".repeat(5000)
    );
    let err = admin
        .nodes
        .drain_node(pb::DrainNodeRequest {
            name: name.clone(),
            drain: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let drains = entries_of(&mut admin, "user:admin", "node.drain").await?;
    let e = drains.first().expect("the refused drain is audited");
    assert_eq!(e.outcome, pb::AuditOutcome::Failed as i32);
    assert!(
        e.target
            .starts_with("node:n1\\r\\nid=0 actor=admin outcome=allowed\\u{202e}xxx"),
        "{}",
        e.target
    );
    assert!(
        e.target.ends_with(&format!("… ({} bytes)", name.len())),
        "{}",
        e.target
    );
    assert!(e.target.len() <= 512);
    for text in [&e.target, &e.detail] {
        assert!(
            !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{text:?}"
        );
    }
    Ok(())
}

/// A request larger than the public API needs is refused at the door
/// with a clear error and writes nothing; the agent service keeps its
/// larger limit.
#[tokio::test]
async fn oversize_public_requests_are_refused_at_the_door() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    let entries = audit_entries(&mut admin, "").await?.len();
    let before = ctl.db_bytes()?;
    let err = admin
        .sites
        .create_site(pb::CreateSiteRequest {
            name: "paris-1".into(),
            country: "FR".into(),
            city: String::new(),
            description: "d".repeat(300 * 1024),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    assert!(
        err.message().contains("message length too large")
            && err.message().contains("the limit is: 262144 bytes"),
        "{}",
        err.message()
    );
    assert_eq!(audit_entries(&mut admin, "").await?.len(), entries);
    assert_eq!(ctl.db_bytes()?, before);
    assert!(
        admin
            .sites
            .list_sites(pb::ListSitesRequest {})
            .await?
            .into_inner()
            .sites
            .is_empty()
    );

    // 300 KB reaches enrollment, whose handler refuses the CSR itself.
    let err = ctl
        .agent_client()
        .await?
        .enroll(apb::EnrollRequest {
            join_token: "jt-x".into(),
            node_name: "n1".into(),
            csr_pem: "c".repeat(300 * 1024),
            facts: None,
        })
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::OutOfRange, "{}", err.message());
    Ok(())
}

/// At the connection cap, a further client waits (it is not refused) and
/// gets in as soon as a connection closes; those already in keep working.
#[tokio::test]
async fn clients_past_the_connection_cap_wait_for_a_free_slot() -> Result<()> {
    let ctl = TestController::start_with(coloc_controller::config::ControllerConfig {
        max_connections: 3,
        max_connections_per_address: 3,
        ..fast_config()
    })
    .await?;
    let mut a = ctl.admin().await?;
    let mut b = ctl.admin().await?;
    let c = ctl.admin().await?;

    let endpoint = endpoint(&ctl.url(), &ctl.ca_pem, None)?;
    let waiting = tokio::spawn(async move { endpoint.connect().await });
    let early = tokio::time::timeout(Duration::from_millis(500), async {
        while !waiting.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(early.is_err(), "a fourth connection got in past the cap");
    a.sites.list_sites(pb::ListSitesRequest {}).await?;
    b.sites.list_sites(pb::ListSitesRequest {}).await?;

    drop(c);
    let channel = tokio::time::timeout(DEADLINE, waiting)
        .await
        .context("the waiting client never got in")???;
    let mut d = Api::new(channel, Some(&ctl.admin_token));
    d.sites.list_sites(pb::ListSitesRequest {}).await?;
    a.sites.list_sites(pb::ListSitesRequest {}).await?;
    Ok(())
}

/// One address cannot take every slot: its connections past its share
/// are closed as they come, and those it has keep working.
#[tokio::test]
async fn one_address_cannot_hold_every_connection() -> Result<()> {
    let ctl = TestController::start_with(coloc_controller::config::ControllerConfig {
        max_connections: 100,
        max_connections_per_address: 2,
        ..fast_config()
    })
    .await?;
    let mut a = ctl.admin().await?;
    let mut b = ctl.admin().await?;
    let third = tokio::time::timeout(DEADLINE, ctl.channel())
        .await
        .context("the third connection neither failed nor got in")?;
    assert!(third.is_err(), "a third connection from 127.0.0.1 got in");
    a.sites.list_sites(pb::ListSitesRequest {}).await?;
    b.sites.list_sites(pb::ListSitesRequest {}).await?;
    drop(b);
    // Its slot is given back once the server sees the close.
    let mut c = wait_for("a slot given back", DEADLINE, || async {
        ctl.admin().await.ok()
    })
    .await?;
    c.sites.list_sites(pb::ListSitesRequest {}).await?;
    Ok(())
}

/// A log too large for one message is read page by page: `coloc audit
/// --limit 1000` follows colocd's pages and shows exactly 1000 entries,
/// newest first, none missing or twice.
#[tokio::test]
async fn coloc_audit_follows_pages_bounded_in_bytes() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut admin = ctl.admin().await?;
    // Refused drains of a long, invalid name: about 400 bytes of entry
    // each, so 1000 of them take two pages.
    let name = format!("{}\n", "y".repeat(400));
    for _ in 0..1100 {
        let err = admin
            .nodes
            .drain_node(pb::DrainNodeRequest {
                name: name.clone(),
                drain: true,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }
    let page = admin
        .audit
        .list_audit(pb::ListAuditRequest {
            limit: 1000,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(page.entries.len() < 1000, "{} entries", page.entries.len());
    assert_eq!(
        page.next_before,
        page.entries.last().map(|e| e.id).unwrap_or(0)
    );

    let coloc = Coloc::new(&ctl).await?;
    let root = coloc.user(&ctl.admin_token);
    let listed = root.json(&["audit", "--limit", "1000", "--json"]).await;
    let ids: Vec<u64> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["id"].as_u64().expect("an id"))
        .collect();
    assert_eq!(ids.len(), 1000);
    assert!(ids.windows(2).all(|w| w[0] == w[1] + 1), "{ids:?}");
    assert_eq!(ids[0], page.entries[0].id);
    let out = root.run(&["audit", "--limit", "1000"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let note = stderr(&out);
    assert!(
        note.contains(&format!("coloc audit --before {} --limit 1000", ids[999])),
        "{note}"
    );
    Ok(())
}

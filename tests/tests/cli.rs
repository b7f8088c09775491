//! The README's story, typed at the `coloc` command line against a real
//! colocd: sites, join tokens, tenants, users, grants, tokens, audit, and
//! the exit codes scripts rely on; then sites, nodes, labels and API
//! tokens as tables and JSON, each refusal with its words and exit code
//! and its trace in colocd.

use std::time::Duration;

use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::cli::{Coloc, stderr, text};
use coloc_tests::*;

/// 2026-01-01 00:00 UTC. The controller's clock is pinned here before an
/// action whose time the CLI prints, so the expected text is fixed.
const NOW: i64 = 1_767_225_600;
const GIB: u64 = 1024 * 1024 * 1024;
const DEADLINE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn the_readme_story_at_the_command_line() -> Result<()> {
    let ctl = TestController::start().await?;
    let coloc = Coloc::new(&ctl).await?;
    let admin = coloc.user(&ctl.admin_token);

    admin
        .ok(&[
            "site",
            "create",
            "paris-1",
            "--country",
            "FR",
            "--city",
            "Paris",
        ])
        .await;
    let err = admin
        .fails(&["site", "create", "berlin-1", "--country", "DE"], 6)
        .await;
    assert!(err.contains("France"), "{err}");
    let sites = admin.ok(&["site", "list"]).await;
    assert!(
        sites.contains("paris-1") && !sites.contains("berlin-1"),
        "{sites}"
    );

    let secret = admin
        .ok(&[
            "node", "token", "create", "--site", "paris-1", "--ttl", "1h",
        ])
        .await;
    let secret = secret.trim();
    assert!(secret.starts_with("cjt_"), "{secret}");
    enroll_raw(&ctl, secret, "n1").await?;
    let nodes = admin.json(&["node", "list", "--json"]).await;
    let nodes = nodes.as_array().expect("a list");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["name"], "n1");
    let shown = admin.ok(&["node", "show", "n1"]).await;
    assert!(shown.contains("paris-1"), "{shown}");
    admin.fails(&["node", "show", "ghost"], 5).await;
    admin.fails(&["node", "show", "Bad Name"], 7).await;

    admin
        .ok(&[
            "tenant",
            "create",
            "asso-x",
            "--offer",
            "participatif",
            "--expires",
            "2099-06-30",
        ])
        .await;
    admin
        .fails(
            &[
                "tenant",
                "create",
                "asso-x",
                "--offer",
                "participatif",
                "--expires",
                "2099-06-30",
            ],
            6,
        )
        .await;
    admin
        .ok(&[
            "user", "create", "alice", "--tenant", "asso-x", "--role", "operator",
        ])
        .await;
    admin.ok(&["user", "grant", "alice", "--node", "n1"]).await;
    let alice_token = admin
        .ok(&["token", "create", "--user", "alice", "--ttl", "30d"])
        .await;
    let alice = coloc.user(alice_token.trim());
    let me = alice.json(&["whoami", "--json"]).await;
    assert_eq!(me["name"], "alice");
    let seen = alice.json(&["node", "list", "--json"]).await;
    assert_eq!(seen.as_array().map(Vec::len), Some(1));
    let err = alice.fails(&["node", "drain", "n1"], 4).await;
    assert!(err.contains("permission denied"), "{err}");
    alice
        .fails(
            &[
                "tenant",
                "create",
                "asso-y",
                "--offer",
                "responsable",
                "--expires",
                "2099-01-01",
            ],
            4,
        )
        .await;

    admin.ok(&["node", "drain", "n1"]).await;
    let n1 = admin.json(&["node", "show", "n1", "--json"]).await;
    assert_eq!(n1["draining"], true);

    let audit = admin
        .json(&["audit", "--actor", "user:alice", "--json"])
        .await;
    let entries = audit.as_array().expect("a list");
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "node.drain" && e["outcome"] == "denied"),
        "{audit}"
    );
    // Alice's own view of the audit log is her association's.
    let own = alice.json(&["audit", "--json"]).await;
    assert!(
        own.as_array()
            .expect("a list")
            .iter()
            .all(|e| e["tenant"] == "asso-x")
    );

    // Revoked: exit code 3 and plain words.
    let toks = admin
        .json(&["token", "list", "--user", "alice", "--json"])
        .await;
    let id = toks[0]["id"].as_str().expect("an id").to_string();
    admin.ok(&["token", "revoke", &id]).await;
    let err = alice.fails(&["whoami"], 3).await;
    assert!(err.contains("revoked"), "{err}");
    Ok(())
}

#[tokio::test]
async fn unreachable_controller_and_missing_credentials() -> Result<()> {
    let mut ctl = TestController::start().await?;
    let coloc = Coloc::new(&ctl).await?;
    let admin = coloc.user(&ctl.admin_token);
    ctl.stop().await?;
    let err = admin.fails(&["site", "list"], 8).await;
    assert!(err.contains("cannot reach colocd"), "{err}");
    ctl.restart().await?;
    admin.ok(&["site", "list"]).await;
    coloc.anonymous().fails(&["site", "list"], 3).await;
    Ok(())
}

#[tokio::test]
async fn sites_as_tables_and_json() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut api = ctl.admin().await?;
    create_tenant(&mut api, "asso-x", pb::Offer::Participatif).await?;
    let mia = create_user(&mut api, "mia", "asso-x", pb::Role::Member).await?;
    let coloc = Coloc::new(&ctl).await?;
    let admin = coloc.user(&ctl.admin_token);

    ctl.set_now(NOW);
    let site = admin
        .json(&[
            "--json",
            "site",
            "create",
            "paris-1",
            "--country",
            "fr",
            "--city",
            "Paris",
        ])
        .await;
    assert_eq!(site["name"], "paris-1");
    assert_eq!(site["country"], "FR");
    let err = admin
        .fails(&["site", "create", "paris-1", "--country", "FR"], 6)
        .await;
    assert_eq!(err.trim_end(), "coloc: site \"paris-1\" already exists");
    let err = admin
        .fails(&["site", "create", "berlin-1", "--country", "DE"], 6)
        .await;
    assert!(err.starts_with("coloc: refused by policy: "), "{err}");
    assert!(err.contains("France"), "{err}");

    let list = admin.json(&["site", "list", "--json"]).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["city"], "Paris");
    let table = admin.ok(&["site", "list"]).await;
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("NAME     COUNTRY  CITY"), "{table}");
    let paris = lines.next().unwrap_or_default();
    assert!(paris.starts_with("paris-1  FR       Paris"), "{table}");
    assert!(paris.contains("2026-01-01 00:00"), "{table}");

    let err = coloc
        .user(&mia)
        .fails(&["site", "create", "lyon-1", "--country", "FR"], 4)
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: permission denied: creating a site is reserved to the cooperative's admins"
    );

    // One site in colocd, and every refusal in its audit log.
    let sites = api
        .sites
        .list_sites(pb::ListSitesRequest {})
        .await?
        .into_inner()
        .sites;
    assert_eq!(sites.len(), 1, "{sites:?}");
    let mine = audit_entries(&mut api, "user:mia").await?;
    assert!(
        has_audit_entry(&mine, "user:mia", "site.create", pb::AuditOutcome::Denied),
        "{mine:#?}"
    );
    let root = audit_entries(&mut api, "user:admin").await?;
    let creates: Vec<i32> = root
        .iter()
        .filter(|e| e.action == "site.create")
        .map(|e| e.outcome)
        .collect();
    assert_eq!(
        creates
            .iter()
            .filter(|o| **o == pb::AuditOutcome::Failed as i32)
            .count(),
        2,
        "{root:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn nodes_are_shown_and_labelled() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut api = ctl.admin().await?;
    create_site(&mut api, "paris-1").await?;
    let agents = raw_fleet(&ctl, "paris-1", &["n1", "n2"]).await?;
    agents[0]
        .report_facts(apb::NodeFacts {
            hostname: "n1".into(),
            cpu_count: 4,
            memory_bytes: 8 * GIB,
            disks: vec![apb::Disk {
                name: "nvme0n1".into(),
                model: "QEMU NVMe Ctrl".into(),
                serial: "COLOC0001".into(),
                size_bytes: 20 * GIB,
                transport: "nvme".into(),
                rotational: false,
            }],
            ..Default::default()
        })
        .await?;
    wait_node(&api, "n1", "n1 ready with its facts", DEADLINE, |n| {
        n.status == pb::NodeStatus::Ready as i32
            && n.facts.as_ref().is_some_and(|f| f.cpu_count == 4)
    })
    .await?;
    let coloc = Coloc::new(&ctl).await?;
    let admin = coloc.user(&ctl.admin_token);

    let shown = admin.ok(&["node", "show", "n1"]).await;
    for needle in [
        "ready (connected)",
        "QEMU NVMe Ctrl",
        "COLOC0001",
        "20.0 GiB",
        "8.0 GiB",
    ] {
        assert!(shown.contains(needle), "{needle:?} missing:\n{shown}");
    }
    let err = admin.fails(&["node", "show", "n9"], 5).await;
    assert_eq!(err.trim_end(), "coloc: node \"n9\" not found");

    // --all reaches every node: both get the label in their next desired
    // configuration, at the generation the CLI printed.
    let nodes = admin
        .json(&["node", "label", "--all", "tier=gold", "--json"])
        .await;
    let nodes = nodes.as_array().context("a list")?;
    let names: Vec<&str> = nodes.iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(names, ["n1", "n2"]);
    for (agent, printed) in agents.iter().zip(nodes) {
        let generation = printed["desired_generation"]
            .as_u64()
            .with_context(|| format!("a generation in {printed}"))?;
        agent
            .wait_desired("labelled tier=gold", |d| {
                d.generation == generation && d.labels.get("tier").is_some_and(|v| v == "gold")
            })
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_new_token_is_alone_on_stdout() -> Result<()> {
    let ctl = TestController::start().await?;
    let coloc = Coloc::new(&ctl).await?;
    let admin = coloc.user(&ctl.admin_token);

    ctl.set_now(NOW);
    let o = admin
        .run(&["token", "create", "--description", "backup", "--ttl", "7d"])
        .await;
    let out = text(&o);
    let secret = out.strip_suffix('\n').context("one line")?;
    assert!(
        secret.starts_with("cat_") && !secret.contains(char::is_whitespace),
        "{out:?}"
    );
    let err = stderr(&o);
    assert!(err.contains("shown only once"), "{err}");
    assert!(err.contains("valid until 2026-01-08 00:00 UTC"), "{err}");
    // The secret on stdout is the admin's new credential, as colocd keeps it.
    let me = coloc.user(secret).json(&["whoami", "--json"]).await;
    assert_eq!(me["name"], "admin");
    let mut api = ctl.admin().await?;
    let tokens = api
        .tokens
        .list_tokens(pb::ListTokensRequest {
            user: "admin".into(),
            all: false,
        })
        .await?
        .into_inner()
        .tokens;
    let backup = tokens
        .iter()
        .find(|t| t.description == "backup")
        .with_context(|| format!("the new token in {tokens:#?}"))?;
    assert_eq!(backup.expires_unix - backup.created_unix, 7 * 86_400);

    let t = admin.json(&["token", "create", "--json"]).await;
    assert!(
        t["secret"].as_str().is_some_and(|s| s.starts_with("cat_")),
        "{t}"
    );
    assert_eq!(t["user"], "admin");
    Ok(())
}

/// `coloc node remove`: refused without --confirm (exit 2) or with one
/// that does not match (exit 7), before anything reaches colocd; refused
/// to a member (exit 4); none of which changes the node. Confirmed by an
/// admin, it removes the node and says what is left as orphans.
#[tokio::test]
async fn a_node_is_removed_only_when_confirmed_by_an_admin() -> Result<()> {
    let ctl = TestController::start().await?;
    let mut api = ctl.admin().await?;
    create_site(&mut api, "paris-1").await?;
    let agents = raw_fleet(&ctl, "paris-1", &["n1"]).await?;
    create_tenant(&mut api, "asso-x", pb::Offer::Participatif).await?;
    let member = create_user(&mut api, "mia", "asso-x", pb::Role::Member).await?;
    let coloc = Coloc::new(&ctl).await?;
    let admin = coloc.user(&ctl.admin_token);

    let err = admin.fails(&["node", "remove", "n1"], 2).await;
    assert_eq!(
        err.trim_end(),
        "coloc: removing node n1 refuses its certificate for good and leaves its volumes and \
         apps as orphans; to go ahead, repeat the name: --confirm n1"
    );
    for wrong in ["n2", "N1", ""] {
        let err = admin
            .fails(&["node", "remove", "n1", "--confirm", wrong], 7)
            .await;
        assert!(
            err.contains("does not match the node n1"),
            "{wrong:?}: {err}"
        );
    }
    let err = coloc
        .user(&member)
        .fails(&["node", "remove", "n1", "--confirm", "n1"], 4)
        .await;
    assert!(err.contains("permission denied"), "{err}");

    // Nothing changed: the node is live, its session open, and the only
    // trace in colocd is the member's refusal.
    let n = node(&mut api, "n1").await?;
    assert_eq!(n.status, pb::NodeStatus::Ready as i32, "{n:?}");
    assert_eq!(n.removed_unix, 0, "{n:?}");
    assert!(!agents[0].is_ended());
    let entries = audit_entries(&mut api, "user:admin").await?;
    assert!(
        !entries.iter().any(|e| e.action == "node.remove"),
        "{entries:?}"
    );
    let entries = audit_entries(&mut api, "user:mia").await?;
    assert!(has_audit_entry(
        &entries,
        "user:mia",
        "node.remove",
        pb::AuditOutcome::Denied
    ));

    let out = admin.ok(&["node", "remove", "n1", "--confirm", "n1"]).await;
    assert!(out.starts_with("Node n1 removed"), "{out}");
    assert!(out.contains("It held no volumes and no apps."), "{out}");
    let n = admin.json(&["node", "show", "n1", "--json"]).await;
    assert!(n["removed_unix"].as_i64() > Some(0), "{n}");
    agents[0].wait_ended().await?;
    Ok(())
}

//! `coloc app` and `coloc request`, run as an association's member and the
//! cooperative's sysadmin would against a real colocd whose nodes are
//! agent sessions driven by hand: the catalog, a request discussed then
//! decided, the instances' state and journals (`logs -f` included,
//! stopped by a real SIGINT), which values are refused before anything is
//! sent, the words and exit code of each refusal colocd sends, and what
//! each command did, read back in colocd (requests, instances, audit log)
//! and at the node (its desired configuration, the journal reads it was
//! asked for).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use coloc_controller::config::ControllerConfig;
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::cli::{CliUser, Coloc, cells, row, stderr, stdout, text};
use coloc_tests::*;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// 2026-01-01 00:00 UTC. The controller's clock is pinned to this, or a
/// fixed offset from it, before each action whose time the CLI prints.
const NOW: i64 = 1_767_225_600;
const DOMAIN: &str = "coloc.example";
const DEADLINE: Duration = Duration::from_secs(20);

/// One catalog entry: the app's package and program are named after it.
fn catalog_app(
    name: &str,
    description: &str,
    replaces: &str,
    offers: &str,
    memory: &str,
    cpu: u32,
) -> String {
    format!(
        "name = \"{name}\"\n\
         description = \"{description}\"\n\
         replaces = \"{replaces}\"\n\
         packages = [\"{name}\"]\n\
         offers = [{offers}]\n\
         [service]\n\
         exec = \"/usr/bin/{name}\"\n\
         args = [\"--port\", \"{{port}}\"]\n\
         [health]\n\
         tcp = true\n\
         [resources]\n\
         memory = \"{memory}\"\n\
         cpu_percent = {cpu}\n"
    )
}

fn write_catalog(dir: &std::path::Path) -> Result<()> {
    let both = "\"responsable\", \"participatif\"";
    for (name, description, replaces, offers, memory, cpu) in [
        (
            "prosody",
            "Chat (XMPP)",
            "WhatsApp, Slack",
            both,
            "256M",
            50,
        ),
        (
            "radicale",
            "Calendars and contacts (CalDAV, CardDAV)",
            "Google Calendar, Google Contacts",
            both,
            "256M",
            50,
        ),
        (
            "site",
            "Static website",
            "Wix, Google Sites",
            both,
            "64M",
            25,
        ),
        (
            "syncthing",
            "File synchronisation",
            "Dropbox, Google Drive",
            "\"participatif\"",
            "512M",
            100,
        ),
    ] {
        std::fs::write(
            dir.join(format!("{name}.toml")),
            catalog_app(name, description, replaces, offers, memory, cpu),
        )?;
    }
    Ok(())
}

/// What n1 holds in its journal and what it was asked for, as the node
/// answers `GetAppLogs`: line k (from 1) of an instance's journal has the
/// cursor "c<k>".
#[derive(Default)]
struct Journals {
    /// By "<tenant>/<app>", oldest first.
    lines: HashMap<String, Vec<String>>,
    /// (after_cursor, lines) of every read that reached n1, in order.
    asks: Vec<(String, u32)>,
}

impl Journals {
    fn answer(&mut self, ask: &apb::GetAppLogs) -> std::result::Result<apb::AppLogs, String> {
        self.asks.push((ask.after_cursor.clone(), ask.lines));
        let journal = self
            .lines
            .get(&format!("{}/{}", ask.tenant, ask.app))
            .cloned()
            .unwrap_or_default();
        let start = match ask.after_cursor.as_str() {
            "" => 0,
            c => c
                .strip_prefix('c')
                .and_then(|k| k.parse::<usize>().ok())
                .filter(|k| *k <= journal.len())
                .ok_or_else(|| format!("unknown cursor {c:?}"))?,
        };
        let after = &journal[start..];
        // The last lines, like journalctl -n.
        let skip = after.len().saturating_sub(ask.lines as usize);
        let lines = after[skip..].to_vec();
        let cursor = if lines.is_empty() {
            String::new()
        } else {
            format!("c{}", journal.len())
        };
        Ok(apb::AppLogs { lines, cursor })
    }
}

fn lock(j: &Mutex<Journals>) -> MutexGuard<'_, Journals> {
    j.lock().unwrap_or_else(|p| p.into_inner())
}

/// The story so far, at 2026-01-01:
/// - catalog: prosody, radicale, site (both offers), syncthing
///   (participatif only);
/// - asso-x (participatif) with member mia: volume data on n1 (and old,
///   deleted); request 1 (site, pending), request 2 (radicale, approved:
///   running, healthy), request 3 (prosody, approved: failed, hit its
///   start limit);
/// - asso-y (responsable): volume www on n2; request 4 (site on n2,
///   approved then stopped);
/// - n1 answers journal reads; n2 reported once, then went away.
struct World {
    ctl: TestController,
    api: Api,
    coloc: Coloc,
    mia: String,
    n1: RawAgent,
    journals: Arc<Mutex<Journals>>,
    _catalog: tempfile::TempDir,
}

impl World {
    fn admin(&self) -> CliUser<'_> {
        self.coloc.user(&self.ctl.admin_token)
    }

    fn mia(&self) -> CliUser<'_> {
        self.coloc.user(&self.mia)
    }

    fn asks(&self) -> Vec<(String, u32)> {
        lock(&self.journals).asks.clone()
    }

    /// Appends lines to asso-x/radicale's journal, all at once so that one
    /// read sees them together.
    fn journal_push(&self, lines: &[&str]) {
        lock(&self.journals)
            .lines
            .entry("asso-x/radicale".into())
            .or_default()
            .extend(lines.iter().map(|l| l.to_string()));
    }

    /// The id of the newest audit entry.
    async fn audit_mark(&self) -> Result<u64> {
        let entries = audit_entries(&mut self.api.clone(), "").await?;
        Ok(entries.iter().map(|e| e.id).max().unwrap_or(0))
    }

    /// The (action, outcome) of the audit entries after `mark`, oldest
    /// first.
    async fn audited_since(&self, mark: u64) -> Result<Vec<(String, i32)>> {
        let mut entries = audit_entries(&mut self.api.clone(), "").await?;
        entries.retain(|e| e.id > mark);
        entries.sort_by_key(|e| e.id);
        Ok(entries.into_iter().map(|e| (e.action, e.outcome)).collect())
    }
}

fn app_status(tenant: &str, app: &str, active: &str, sub: &str) -> apb::AppStatus {
    apb::AppStatus {
        tenant: tenant.into(),
        app: app.into(),
        unit: format!("coloc-app-{tenant}-{app}.service"),
        active_state: active.into(),
        sub_state: sub.into(),
        ..Default::default()
    }
}

async fn ask(
    api: &mut Api,
    tenant: &str,
    app: &str,
    node: &str,
    volume: &str,
    comment: &str,
) -> Result<u64> {
    Ok(api
        .apps
        .request_app(pb::RequestAppRequest {
            tenant: tenant.into(),
            app: app.into(),
            node: node.into(),
            volume: volume.into(),
            comment: comment.into(),
        })
        .await?
        .into_inner()
        .id)
}

async fn approve(api: &mut Api, id: u64, comment: &str) -> Result<()> {
    api.apps
        .approve_request(pb::DecideRequestRequest {
            id,
            comment: comment.into(),
        })
        .await?;
    Ok(())
}

async fn world() -> Result<World> {
    init_test_logging();
    let catalog = tempfile::tempdir()?;
    write_catalog(catalog.path())?;
    let ctl = TestController::start_with(ControllerConfig {
        catalog_dir: Some(catalog.path().to_owned()),
        apps_domain: DOMAIN.into(),
        ..fast_config()
    })
    .await?;
    let mut api = ctl.admin().await?;
    create_site(&mut api, "paris-1").await?;
    // Enrolled before the clock moves back: their certificates are checked
    // against the real time.
    let token = join_token(&mut api, "paris-1", 600).await?;
    let mut n1 = RawAgent::enroll(&ctl, &token, "n1").await?;
    let token = join_token(&mut api, "paris-1", 600).await?;
    let n2 = RawAgent::enroll(&ctl, &token, "n2").await?;
    for agent in [&n1, &n2] {
        agent
            .wait_desired("first configuration", |d| d.generation >= 1)
            .await?;
    }
    ctl.set_now(NOW);

    create_tenant(&mut api, "asso-x", pb::Offer::Participatif).await?;
    create_tenant(&mut api, "asso-y", pb::Offer::Responsable).await?;
    let mia = create_user(&mut api, "mia", "asso-x", pb::Role::Member).await?;
    let mut as_mia = ctl.api(&mia).await?;
    for node in ["n1", "n2"] {
        let disk = format!("serial:{node}-1");
        create_pool(&mut api, node, "tank", apb::PoolKind::Zfs, &disk).await?;
    }
    for (tenant, name, node) in [
        ("asso-x", "data", "n1"),
        ("asso-x", "old", "n1"),
        ("asso-y", "www", "n2"),
    ] {
        let volume = NewVolume {
            tenant,
            name,
            node,
            pool: "tank",
            size_bytes: GIB,
            encrypted: false,
        };
        create_volume(&mut api, volume).await?;
    }
    api.storage
        .delete_volume(pb::VolumeRef {
            volume: "asso-x/old".into(),
        })
        .await?;

    let site = ask(
        &mut as_mia,
        "asso-x",
        "site",
        "n1",
        "",
        "Un site pour annoncer nos balades",
    )
    .await?;
    let radicale = ask(
        &mut as_mia,
        "asso-x",
        "radicale",
        "n1",
        "",
        "Calendars for the volunteers",
    )
    .await?;
    let prosody = ask(&mut api, "asso-x", "prosody", "n1", "", "").await?;
    let www = ask(&mut api, "asso-y", "site", "n2", "", "").await?;
    assert_eq!([site, radicale, prosody, www], [1, 2, 3, 4]);
    ctl.set_now(NOW + 3600);
    approve(&mut api, radicale, "Done, enjoy").await?;
    for id in [prosody, www] {
        approve(&mut api, id, "").await?;
    }
    ctl.set_now(NOW);

    // What the nodes report of their instances.
    let d1 = n1
        .wait_desired("radicale and prosody", |d| d.apps.len() == 2)
        .await?;
    let radicale = apb::AppStatus {
        memory_bytes: 42 * MIB,
        healthy: true,
        health_detail: "HTTP 200 on /.web/".into(),
        ..app_status("asso-x", "radicale", "active", "running")
    };
    let prosody = apb::AppStatus {
        restarts: 5,
        health_detail: "connection refused".into(),
        error: "the unit failed 5 times and hit its start limit".into(),
        last_log_lines: vec![
            "prosody: certmanager error: no certificate".into(),
            "systemd: coloc-app-asso-x-prosody.service: Failed with result 'exit-code'.".into(),
        ],
        ..app_status("asso-x", "prosody", "failed", "failed")
    };
    n1.report_apps(d1.generation, vec![radicale, prosody])
        .await?;
    let d2 = n2
        .wait_desired("asso-y's site", |d| d.apps.len() == 1)
        .await?;
    n2.report_apps(
        d2.generation,
        vec![app_status("asso-y", "site", "inactive", "dead")],
    )
    .await?;
    for name in ["asso-x/radicale", "asso-x/prosody", "asso-y/site"] {
        wait_instance(&api, name, "reported", DEADLINE, |i| i.observed.is_some()).await?;
    }
    api.apps
        .stop_instance(pb::InstanceRef {
            instance: "asso-y/site".into(),
        })
        .await?;
    // n2 goes away: its journals cannot be read any more.
    drop(n2);
    wait_node(&api, "n2", "n2 disconnected", DEADLINE, |n| !n.connected).await?;

    let journals = Arc::new(Mutex::new(Journals::default()));
    journals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .lines
        .insert(
            "asso-x/radicale".into(),
            vec![
                "Jan 01 01:00:00 n1 radicale[812]: Starting Radicale".into(),
                "Jan 01 01:00:01 n1 radicale[812]: Listening on 127.0.0.1:20000".into(),
                "Jan 01 01:00:02 n1 radicale[812]: Radicale server ready".into(),
            ],
        );
    let node_side = Arc::clone(&journals);
    n1.answer_requests(move |request| {
        let answer = match &request.kind {
            Some(apb::request::Kind::AppLogs(ask)) => lock(&node_side).answer(ask),
            other => Err(format!("n1 does not answer {other:?} here")),
        };
        match answer {
            Ok(logs) => apb::RequestResult {
                request_id: request.id,
                ok: true,
                error: String::new(),
                payload: Some(apb::request_result::Payload::Logs(logs)),
            },
            Err(error) => apb::RequestResult {
                request_id: request.id,
                ok: false,
                error,
                payload: None,
            },
        }
    })?;
    let coloc = Coloc::new(&ctl).await?;
    Ok(World {
        ctl,
        api,
        coloc,
        mia,
        n1,
        journals,
        _catalog: catalog,
    })
}

#[tokio::test]
async fn the_catalog_as_a_table_and_json() -> Result<()> {
    let w = world().await?;
    let table = w.mia().ok(&["app", "catalog"]).await;
    assert_eq!(
        cells(table.lines().next().unwrap_or_default()),
        ["NAME", "DESCRIPTION", "REPLACES", "OFFERS", "MEMORY", "CPU"]
    );
    assert_eq!(
        cells(row(&table, "radicale")),
        [
            "radicale",
            "Calendars and contacts (CalDAV, CardDAV)",
            "Google Calendar, Google Contacts",
            "responsable, participatif",
            "256.0 MiB",
            "50%"
        ]
    );
    assert_eq!(
        cells(row(&table, "syncthing"))[3..],
        ["participatif", "512.0 MiB", "100%"]
    );

    let list = w.admin().json(&["app", "catalog", "--json"]).await;
    let list = list.as_array().context("a list")?;
    assert_eq!(list.len(), 4);
    assert_eq!(list[1]["name"], "radicale");
    assert_eq!(list[1]["replaces"], "Google Calendar, Google Contacts");
    assert_eq!(list[1]["packages"][0], "radicale");
    assert_eq!(list[1]["offers"][0], "responsable");
    assert_eq!(list[1]["memory_max_bytes"], 256 * MIB);
    assert_eq!(list[1]["cpu_quota_percent"], 50);
    assert_eq!(list[3]["offers"].as_array().map(Vec::len), Some(1));
    Ok(())
}

/// The desired state n1 was last given for an app of asso-x, if any.
fn wanted(agent: &RawAgent, app: &str) -> Option<(i32, u64)> {
    let d = agent.desired()?;
    d.apps
        .iter()
        .find(|a| a.tenant == "asso-x" && a.app == app)
        .map(|a| (a.state, a.restart_nonce))
}

#[tokio::test]
async fn a_member_asks_they_discuss_an_admin_approves() -> Result<()> {
    let w = world().await?;
    let (admin, mia) = (w.admin(), w.mia());
    w.ctl.set_now(NOW);
    let out = mia
        .ok(&[
            "app",
            "request",
            "--tenant",
            "asso-x",
            "--app",
            "syncthing",
            "--node",
            "n1",
            "--comment",
            "Partager les photos des balades",
        ])
        .await;
    assert_eq!(
        out,
        "Request 5: syncthing for asso-x on n1 is pending.\n\
         An administrator will discuss and approve it: coloc request show 5\n"
    );
    // --volume is sent when given; the JSON is the whole request.
    let r = admin
        .json(&[
            "app",
            "request",
            "--tenant",
            "asso-y",
            "--app",
            "radicale",
            "--node",
            "n2",
            "--volume",
            "www",
            "--comment",
            "Les agendas du bureau",
            "--json",
        ])
        .await;
    assert_eq!(r["id"], 6);
    assert_eq!(r["volume"], "www");
    assert_eq!(r["state"], "pending");
    assert_eq!(r["requested_by"], "admin");
    assert_eq!(r["comments"][0]["text"], "Les agendas du bureau");
    let kept = w
        .api
        .clone()
        .apps
        .get_request(pb::GetRequestRequest { id: 6 })
        .await?
        .into_inner();
    assert_eq!(
        (kept.tenant.as_str(), kept.volume.as_str()),
        ("asso-y", "www")
    );

    w.ctl.set_now(NOW + 60);
    let out = admin
        .ok(&["request", "comment", "5", "Which node has room? n1 does."])
        .await;
    assert!(out.starts_with("Comment added to request 5.\n"), "{out}");
    let show = mia.ok(&["request", "show", "5"]).await;
    for needle in [
        "Request:   5",
        "Tenant:    asso-x",
        "App:       syncthing",
        "Node:      n1",
        "Volume:    data",
        "Asked by:  mia",
        "Asked:     2026-01-01 00:00 UTC",
        "State:     pending",
        "\nDiscussion\n  2026-01-01 00:00 UTC  mia\n    Partager les photos des balades\n  2026-01-01 00:01 UTC  admin\n    Which node has room? n1 does.\n",
    ] {
        assert!(show.contains(needle), "{needle:?} missing in\n{show}");
    }

    let table = admin.ok(&["request", "list"]).await;
    assert_eq!(
        cells(table.lines().next().unwrap_or_default()),
        [
            "ID", "TENANT", "APP", "NODE", "VOLUME", "STATE", "ASKED BY", "ASKED", "COMMENTS"
        ]
    );
    assert_eq!(
        cells(row(&table, "5")),
        [
            "5",
            "asso-x",
            "syncthing",
            "n1",
            "data",
            "pending",
            "mia",
            "2026-01-01 00:00",
            "2"
        ]
    );
    assert!(row(&table, "2").contains("approved"), "{table}");
    let pending = admin
        .json(&["request", "list", "--state", "pending", "--json"])
        .await;
    let mut ids: Vec<u64> = pending
        .as_array()
        .context("a list")?
        .iter()
        .filter_map(|r| r["id"].as_u64())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 5, 6]);
    let none = admin
        .ok(&[
            "request", "list", "--tenant", "asso-y", "--state", "rejected",
        ])
        .await;
    assert_eq!(none, "no requests\n");

    // Members do not decide.
    let err = mia.fails(&["request", "approve", "5"], 4).await;
    assert_eq!(
        err.trim_end(),
        "coloc: permission denied: approving an app request is reserved to the cooperative's admins"
    );
    w.ctl.set_now(NOW + 7200);
    let out = admin
        .ok(&["request", "approve", "5", "--comment", "Bonne synchro"])
        .await;
    assert_eq!(
        out,
        "Approved request 5: asso-x/syncthing is created and its node installs and starts it at its next pass.\n\
         Follow it: coloc app status asso-x/syncthing\n"
    );
    w.n1.wait_desired("syncthing asked of n1", |d| {
        d.apps
            .iter()
            .any(|a| a.tenant == "asso-x" && a.app == "syncthing")
    })
    .await?;
    // A request is decided once.
    let err = admin.fails(&["request", "approve", "5"], 6).await;
    assert_eq!(
        err.trim_end(),
        "coloc: request 5: was already approved by admin"
    );
    let r = admin.json(&["request", "show", "5", "--json"]).await;
    assert_eq!(r["state"], "approved");
    assert_eq!(r["decided_by"], "admin");
    assert_eq!(r["comments"][2]["text"], "Bonne synchro");
    let show = admin.ok(&["request", "show", "5"]).await;
    assert!(
        show.contains("State:     approved by admin on 2026-01-01 02:00 UTC"),
        "{show}"
    );
    let list = admin.ok(&["app", "list", "--tenant", "asso-x"]).await;
    assert_eq!(
        cells(row(&list, "asso-x/syncthing"))[1..],
        [
            "n1",
            "https://syncthing.asso-x.coloc.example/",
            "running",
            "not reported",
            "-",
            "-",
            "-"
        ]
    );

    // Rejecting needs a reason, asked for before anything is sent.
    let mark = w.audit_mark().await?;
    let err = admin.fails(&["request", "reject", "1"], 2).await;
    assert_eq!(
        err.trim_end(),
        "coloc: a rejection needs a reason for the tenant: add --comment \"...\" (coloc request reject 1 --comment \"...\")"
    );
    assert_eq!(w.audited_since(mark).await?, []);
    let out = admin
        .ok(&[
            "request",
            "reject",
            "1",
            "--comment",
            "Use the cooperative's shared site instead",
        ])
        .await;
    assert_eq!(
        out,
        "Rejected request 1; the tenant reads why with 'coloc request show 1'.\n"
    );
    let r = mia.json(&["request", "show", "1", "--json"]).await;
    assert_eq!(r["state"], "rejected");
    assert_eq!(
        r["comments"][1]["text"],
        "Use the cooperative's shared site instead"
    );
    let r = admin
        .json(&["request", "reject", "6", "--comment", "Not on n2", "--json"])
        .await;
    assert_eq!(r["state"], "rejected");
    let r = admin
        .json(&["request", "comment", "6", "Ask again for n1", "--json"])
        .await;
    assert_eq!(r["comments"].as_array().map(Vec::len), Some(3));
    let err = admin.fails(&["request", "approve", "1", "--json"], 6).await;
    assert_eq!(
        err.trim_end(),
        "coloc: request 1: was already rejected by admin"
    );
    Ok(())
}

#[tokio::test]
async fn colocd_refuses_requests_with_distinct_codes() -> Result<()> {
    let w = world().await?;
    let mark = w.audit_mark().await?;
    let admin = w.admin();
    let ask = |tenant: &'static str, app: &'static str, node: &'static str| {
        vec![
            "app",
            "request",
            "--tenant",
            tenant,
            "--app",
            app,
            "--node",
            node,
            "--comment",
            "please",
        ]
    };
    let err = admin.fails(&ask("asso-x", "nextcloud", "n1"), 5).await;
    assert_eq!(
        err.trim_end(),
        "coloc: app \"nextcloud (see coloc app catalog)\" not found"
    );
    let err = admin.fails(&ask("asso-x", "radicale", "n9"), 5).await;
    assert_eq!(err.trim_end(), "coloc: node \"n9\" not found");
    // asso-y is responsable: syncthing is for participatif tenants.
    let err = admin.fails(&ask("asso-y", "syncthing", "n1"), 6).await;
    assert_eq!(
        err.trim_end(),
        "coloc: refused by policy: syncthing is not offered to tenants on the responsable offer"
    );
    let err = admin.fails(&ask("asso-y", "radicale", "n1"), 6).await;
    assert_eq!(
        err.trim_end(),
        "coloc: tenant asso-y has no active volume on node n1; an app keeps its data on one (coloc volume create)"
    );
    let mut with_volume = ask("asso-x", "site", "n1");
    with_volume.extend(["--volume", "old"]);
    let err = admin.fails(&with_volume, 6).await;
    assert_eq!(
        err.trim_end(),
        "coloc: tenant asso-x has no active volume old on node n1"
    );
    let err = w.mia().fails(&ask("asso-y", "radicale", "n2"), 4).await;
    assert_eq!(
        err.trim_end(),
        "coloc: permission denied: user mia cannot ask for apps for tenant asso-y"
    );
    let err = admin.fails(&["request", "show", "99"], 5).await;
    assert_eq!(err.trim_end(), "coloc: request \"99\" not found");
    let err = admin.fails(&["request", "comment", "99", "hello"], 5).await;
    assert_eq!(err.trim_end(), "coloc: request \"99\" not found");
    let err = admin
        .fails(&["request", "reject", "2", "--comment", "too late"], 6)
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: request 2: was already approved by admin"
    );
    let err = w
        .coloc
        .user("cat_wrong")
        .fails(&["request", "list"], 3)
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: not authenticated: check your token (unknown token)"
    );

    // Every refused change is in colocd's audit log, and no request was made.
    use pb::AuditOutcome::{Denied, Failed};
    let changes: Vec<(String, i32)> = w
        .audited_since(mark)
        .await?
        .into_iter()
        .filter(|(action, _)| action != "app.request.show" && action != "app.request.list")
        .collect();
    let expected: Vec<(String, i32)> = [
        ("app.request", Failed),
        ("app.request", Failed),
        ("app.request", Failed),
        ("app.request", Failed),
        ("app.request", Failed),
        ("app.request", Denied),
        ("app.request.comment", Failed),
        ("app.request.reject", Failed),
    ]
    .into_iter()
    .map(|(a, o)| (a.to_string(), o as i32))
    .collect();
    assert_eq!(changes, expected);
    let requests = w
        .api
        .clone()
        .apps
        .list_requests(pb::ListRequestsRequest::default())
        .await?
        .into_inner()
        .requests;
    assert_eq!(requests.len(), 4, "{requests:#?}");
    Ok(())
}

#[tokio::test]
async fn bad_values_never_leave_the_cli() -> Result<()> {
    let w = world().await?;
    let mark = w.audit_mark().await?;
    // A token colocd refuses: anything sent would come back as exit 3.
    let stranger = w.coloc.user("cat_unknown");
    let long = "x".repeat(2001);
    let request = |app: &'static str, comment: &str| -> Vec<String> {
        [
            "app",
            "request",
            "--tenant",
            "asso-x",
            "--app",
            app,
            "--node",
            "n1",
            "--comment",
            comment,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let words = |w: &[&str]| -> Vec<String> { w.iter().map(|s| s.to_string()).collect() };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            words(&["app", "status", "radicale"]),
            "is not <tenant>/<app>",
        ),
        (
            words(&["app", "status", "Asso/radicale"]),
            "invalid tenant name",
        ),
        (
            words(&["app", "start", "asso-x/my-app"]),
            "invalid app name: \"my-app\" contains a character outside a-z and 0-9",
        ),
        (
            words(&["app", "stop", "asso-x/Radicale"]),
            "must start with a lowercase letter",
        ),
        (
            words(&["app", "restart", "asso-x/radicale/x"]),
            "invalid app name",
        ),
        (
            words(&["app", "logs", &format!("asso-x/{}", "a".repeat(32))]),
            "longer than 31 characters",
        ),
        (
            words(&["app", "logs", "asso-x/radicale", "-n", "0"]),
            "0 is not in 1..=1000",
        ),
        (
            words(&["app", "logs", "asso-x/radicale", "-n", "1001"]),
            "1001 is not in 1..=1000",
        ),
        (request("my-app", "hi"), "invalid app name"),
        (request("radicale", "two\nlines"), "control characters"),
        (request("radicale", &long), "longer than 2000 characters"),
        (request("radicale", "  "), "invalid comment: empty"),
        (
            words(&[
                "app",
                "request",
                "--tenant",
                "asso_x",
                "--app",
                "site",
                "--node",
                "n1",
                "--comment",
                "hi",
            ]),
            "invalid tenant name",
        ),
        (
            words(&[
                "app",
                "request",
                "--tenant",
                "asso-x",
                "--app",
                "site",
                "--node",
                "n1",
                "--volume",
                "Data",
                "--comment",
                "hi",
            ]),
            "invalid volume name",
        ),
        (words(&["request", "show", "0"]), "0 is not in 1.."),
        (words(&["request", "show", "three"]), "three"),
        (
            words(&["request", "comment", "3", "bell\u{7}"]),
            "control characters",
        ),
        (
            words(&["request", "approve", "3", "--comment", &long]),
            "longer than 2000 characters",
        ),
        (
            words(&["request", "reject", "3", "--comment", ""]),
            "invalid comment: empty",
        ),
        (
            words(&["request", "list", "--state", "done"]),
            "invalid value 'done'",
        ),
        (
            words(&[
                "app",
                "remove",
                "asso-x/radicale",
                "--confirm",
                "asso-x/site",
            ]),
            "--confirm \"asso-x/site\" does not match the instance asso-x/radicale",
        ),
    ];
    for (args, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = stranger.fails(&args, 7).await;
        assert!(err.starts_with("coloc: "), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: {needle:?} missing in {err}"
        );
    }
    let err = stranger
        .fails(&["app", "remove", "asso-x/radicale"], 2)
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: removing asso-x/radicale stops it and takes it off the web (its data stays on the volume); to go ahead, repeat the instance: --confirm asso-x/radicale"
    );
    let err = stranger
        .fails(
            &[
                "app", "request", "--tenant", "asso-x", "--app", "site", "--node", "n1",
            ],
            2,
        )
        .await;
    assert!(err.contains("--comment"), "{err}");
    assert_eq!(w.audited_since(mark).await?, [], "nothing reached colocd");
    assert_eq!(w.asks(), [], "no journal read reached n1");
    Ok(())
}

#[tokio::test]
async fn instances_are_listed_shown_and_driven() -> Result<()> {
    let w = world().await?;
    let (admin, mia) = (w.admin(), w.mia());
    let o = admin.run(&["app", "list"]).await;
    let table = text(&o);
    assert_eq!(
        cells(table.lines().next().unwrap_or_default()),
        [
            "INSTANCE", "NODE", "URL", "STATE", "UNIT", "RESTARTS", "MEMORY", "HEALTH"
        ]
    );
    assert_eq!(
        cells(row(&table, "asso-x/radicale")),
        [
            "asso-x/radicale",
            "n1",
            "https://radicale.asso-x.coloc.example/",
            "running",
            "active/running",
            "0",
            "42.0 MiB",
            "healthy"
        ]
    );
    assert_eq!(
        cells(row(&table, "asso-x/prosody"))[3..],
        ["running", "failed/failed", "5", "-", "unhealthy"]
    );
    assert_eq!(
        cells(row(&table, "asso-y/site"))[3..],
        ["stopped", "inactive/dead", "0", "-", "-"]
    );
    assert!(
        stderr(&o).contains("Some apps report an error: 'coloc app status TENANT/APP'"),
        "{}",
        stderr(&o)
    );

    let on_n2 = admin.json(&["app", "list", "--node", "n2", "--json"]).await;
    let on_n2 = on_n2.as_array().context("a list")?;
    assert_eq!(on_n2.len(), 1);
    assert_eq!(on_n2[0]["tenant"], "asso-y");
    assert_eq!(on_n2[0]["state"], "stopped");
    assert_eq!(on_n2[0]["observed"]["sub_state"], "dead");
    // Members see their own tenant only, and no error note for it here.
    let mine = mia.json(&["app", "list", "--json"]).await;
    let mine = mine.as_array().context("a list")?;
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|i| i["tenant"] == "asso-x"), "{mine:#?}");
    let o = admin.run(&["app", "list", "--tenant", "asso-y"]).await;
    text(&o);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));

    let status = admin.ok(&["app", "status", "asso-x/radicale"]).await;
    for needle in [
        "Instance:      asso-x/radicale",
        "URL:           https://radicale.asso-x.coloc.example/",
        "Node:          n1",
        "Volume:        asso-x/data",
        "Port:          127.0.0.1:20000",
        "Wanted state:  running",
        "Request:       2",
        "Unit:          coloc-app-asso-x-radicale.service",
        "Unit state:    active/running",
        "Restarts:      0",
        "Memory:        42.0 MiB",
        "Health:        healthy (HTTP 200 on /.web/)",
    ] {
        assert!(status.contains(needle), "{needle:?} missing in\n{status}");
    }
    assert!(!status.contains("Error:"), "{status}");
    let failed = admin.ok(&["app", "status", "asso-x/prosody"]).await;
    for needle in [
        "Unit state:    failed/failed",
        "Restarts:      5",
        "Health:        unhealthy (connection refused)",
        "Error:         the unit failed 5 times and hit its start limit",
        "\nLast log lines\n  prosody: certmanager error: no certificate\n  systemd: coloc-app-asso-x-prosody.service: Failed with result 'exit-code'.\n",
    ] {
        assert!(failed.contains(needle), "{needle:?} missing in\n{failed}");
    }
    let v = mia
        .json(&["app", "status", "asso-x/prosody", "--json"])
        .await;
    assert_eq!(v["port"], 20_001);
    assert_eq!(v["observed"]["restarts"], 5);
    assert_eq!(
        v["observed"]["error"],
        "the unit failed 5 times and hit its start limit"
    );
    assert_eq!(
        v["observed"]["last_log_lines"][0],
        "prosody: certmanager error: no certificate"
    );
    let err = admin.fails(&["app", "status", "asso-x/nope"], 5).await;
    assert_eq!(err.trim_end(), "coloc: instance \"asso-x/nope\" not found");
    // Another tenant's instance: refused without saying whether it exists.
    let err = mia.fails(&["app", "status", "asso-y/site"], 4).await;
    assert_eq!(
        err.trim_end(),
        "coloc: permission denied: user mia cannot see tenant asso-y"
    );

    // Stop, start, restart: each reaches n1 as its wanted state.
    let out = admin.ok(&["app", "stop", "asso-x/radicale"]).await;
    assert!(
        out.starts_with("Stopping asso-x/radicale: its node's agent stops it at its next pass; it stays stopped until 'coloc app start asso-x/radicale'.\n"),
        "{out}"
    );
    assert!(out.contains("Wanted state:  stopped"), "{out}");
    w.n1.wait_desired("radicale stopped", |_| {
        wanted(&w.n1, "radicale").is_some_and(|(s, _)| s == apb::AppState::Stopped as i32)
    })
    .await?;
    // Restarting a stopped instance runs it again.
    let (_, nonce) = wanted(&w.n1, "radicale").context("radicale on n1")?;
    let out = admin.ok(&["app", "restart", "asso-x/radicale"]).await;
    assert!(
        out.starts_with(
            "Restarting asso-x/radicale: its node's agent restarts it at its next pass.\n"
        ),
        "{out}"
    );
    assert!(out.contains("Wanted state:  running"), "{out}");
    w.n1.wait_desired("radicale restarted", |_| {
        wanted(&w.n1, "radicale")
            .is_some_and(|(s, n)| s == apb::AppState::Running as i32 && n > nonce)
    })
    .await?;
    let out = admin.ok(&["app", "start", "asso-x/radicale"]).await;
    assert!(
        out.starts_with("Starting asso-x/radicale: its node's agent starts it at its next pass.\n"),
        "{out}"
    );
    let (_, nonce) = wanted(&w.n1, "radicale").context("radicale on n1")?;
    let v = admin
        .json(&["app", "restart", "asso-x/radicale", "--json"])
        .await;
    assert_eq!(v["state"], "running");
    w.n1.wait_desired("radicale restarted again", |_| {
        wanted(&w.n1, "radicale").is_some_and(|(_, n)| n > nonce)
    })
    .await?;
    let out = admin.ok(&["app", "restart", "asso-x/prosody"]).await;
    assert!(
        out.starts_with(
            "Restarting asso-x/prosody: its node's agent restarts it at its next pass.\n"
        ),
        "{out}"
    );
    let v = admin.json(&["app", "stop", "asso-y/site", "--json"]).await;
    assert_eq!(v["state"], "stopped");
    let err = mia.fails(&["app", "stop", "asso-x/radicale"], 4).await;
    assert_eq!(
        err.trim_end(),
        "coloc: permission denied: user mia is a member; only admins and operators start or stop apps"
    );
    let err = admin.fails(&["app", "start", "asso-x/nope"], 5).await;
    assert_eq!(err.trim_end(), "coloc: instance \"asso-x/nope\" not found");

    // Remove: confirmed, and the data is said to stay.
    let err = mia
        .fails(
            &[
                "app",
                "remove",
                "asso-x/radicale",
                "--confirm",
                "asso-x/radicale",
            ],
            4,
        )
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: permission denied: removing an app is reserved to the cooperative's admins"
    );
    let out = admin
        .ok(&[
            "app",
            "remove",
            "asso-x/radicale",
            "--confirm",
            "asso-x/radicale",
        ])
        .await;
    assert_eq!(
        out,
        "Removed asso-x/radicale: its node's agent stops and disables its unit and removes its web route at its next pass.\n\
         Its data stays on the volume asso-x/data, under apps/radicale; a new request for radicale on that volume finds it again.\n"
    );
    w.n1.wait_desired("radicale removed", |_| {
        wanted(&w.n1, "radicale").is_some_and(|(s, _)| s == apb::AppState::Removed as i32)
    })
    .await?;
    let err = admin
        .fails(
            &[
                "app",
                "remove",
                "asso-x/radicale",
                "--confirm",
                "asso-x/radicale",
            ],
            6,
        )
        .await;
    assert_eq!(
        err.trim_end(),
        "coloc: instance asso-x/radicale: is removed; it cannot remove (request the app again)"
    );
    let v = admin
        .json(&[
            "app",
            "remove",
            "asso-y/site",
            "--confirm",
            "asso-y/site",
            "--json",
        ])
        .await;
    assert_eq!(v["state"], "removed");
    let list = admin.json(&["app", "list", "--json"]).await;
    let mut states: Vec<String> = list
        .as_array()
        .context("a list")?
        .iter()
        .map(|i| {
            format!(
                "{}/{} {}",
                i["tenant"].as_str().unwrap_or_default(),
                i["app"].as_str().unwrap_or_default(),
                i["state"].as_str().unwrap_or_default()
            )
        })
        .collect();
    states.sort();
    assert_eq!(
        states,
        [
            "asso-x/prosody running",
            "asso-x/radicale removed",
            "asso-y/site removed"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn logs_are_read_on_the_node() -> Result<()> {
    let w = world().await?;
    let (admin, mia) = (w.admin(), w.mia());
    let out = mia.ok(&["app", "logs", "asso-x/radicale", "-n", "2"]).await;
    assert_eq!(
        out,
        "Jan 01 01:00:01 n1 radicale[812]: Listening on 127.0.0.1:20000\n\
         Jan 01 01:00:02 n1 radicale[812]: Radicale server ready\n"
    );
    let v = admin
        .json(&["app", "logs", "asso-x/radicale", "--json"])
        .await;
    assert_eq!(v["lines"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["cursor"], "c3");
    // Read from the end of the journal, 100 lines unless -n says otherwise.
    assert_eq!(w.asks(), [(String::new(), 2), (String::new(), 100)]);

    // A journal line that carries an escape sequence cannot drive the terminal.
    w.journal_push(&["evil \x1b[2J line"]);
    let out = admin
        .ok(&["app", "logs", "asso-x/radicale", "-n", "1"])
        .await;
    assert_eq!(out, "evil \\u{1b}[2J line\n");

    // An instance with an empty journal says so on stderr, nothing on stdout.
    let o = admin.run(&["app", "logs", "asso-x/prosody"]).await;
    assert!(text(&o).is_empty(), "{}", stdout(&o));
    assert_eq!(stderr(&o), "no journal lines for asso-x/prosody yet\n");

    // n2 is not connected: colocd cannot reach it (exit 8).
    let gone = "coloc: node n2 is not connected: the logs of asso-y/site are read on the node \
                itself; try again once its agent is back";
    let err = admin.fails(&["app", "logs", "asso-y/site"], 8).await;
    assert_eq!(err.trim_end(), gone);
    let err = admin.fails(&["app", "logs", "asso-y/site", "-f"], 8).await;
    assert_eq!(err.trim_end(), gone);
    let err = admin.fails(&["app", "logs", "asso-x/nope"], 5).await;
    assert_eq!(err.trim_end(), "coloc: instance \"asso-x/nope\" not found");
    Ok(())
}

#[tokio::test]
async fn logs_follow_until_ctrl_c() -> Result<()> {
    let w = world().await?;
    let mut run = w
        .admin()
        .spawn(&["app", "logs", "asso-x/radicale", "-f", "-n", "2"])?;
    assert_eq!(
        run.line().await?,
        "Jan 01 01:00:01 n1 radicale[812]: Listening on 127.0.0.1:20000"
    );
    assert_eq!(
        run.line().await?,
        "Jan 01 01:00:02 n1 radicale[812]: Radicale server ready"
    );
    // Lines written after the first read arrive through the polls.
    w.journal_push(&["first poll line 1", "first poll line 2"]);
    assert_eq!(run.line().await?, "first poll line 1");
    assert_eq!(run.line().await?, "first poll line 2");
    w.journal_push(&["second poll line"]);
    assert_eq!(run.line().await?, "second poll line");

    // Each poll went on from the last cursor seen (an empty answer keeps
    // the cursor it had), asking for up to 1000 lines; the first read
    // asked for the last 2 from the end.
    let asks = w.asks();
    assert_eq!(asks[0], (String::new(), 2), "{asks:?}");
    assert!(asks[1..].iter().all(|(_, n)| *n == 1000), "{asks:?}");
    let mut cursors: Vec<&str> = asks[1..].iter().map(|(c, _)| c.as_str()).collect();
    cursors.dedup();
    // A poll from c6 may already have gone out after the last line was read.
    assert!(
        cursors == ["c3", "c5"] || cursors == ["c3", "c5", "c6"],
        "{asks:?}"
    );

    // Ctrl-C ends it with exit 0 and nothing on stderr.
    run.interrupt()?;
    let (status, err) = run.wait().await?;
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(err.is_empty(), "{err}");
    assert_eq!(run.next_line().await?, None);
    Ok(())
}

#[tokio::test]
async fn logs_follow_in_json_lines() -> Result<()> {
    let w = world().await?;
    let mut run =
        w.admin()
            .spawn(&["app", "logs", "asso-x/radicale", "-f", "-n", "1", "--json"])?;
    let first: serde_json::Value = serde_json::from_str(&run.line().await?)?;
    assert_eq!(
        first["lines"][0],
        "Jan 01 01:00:02 n1 radicale[812]: Radicale server ready"
    );
    assert_eq!(first["cursor"], "c3");
    w.journal_push(&["later"]);
    let next: serde_json::Value = serde_json::from_str(&run.line().await?)?;
    assert_eq!(
        next,
        serde_json::json!({ "lines": ["later"], "cursor": "c4" })
    );
    run.interrupt()?;
    let (status, _) = run.wait().await?;
    assert_eq!(status.code(), Some(0));
    Ok(())
}

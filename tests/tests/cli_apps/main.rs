//! `coloc app` and `coloc request`, run as an association's member and the
//! cooperative's sysadmin would against a real colocd whose nodes are
//! agent sessions driven by hand: the catalog, a request discussed then
//! decided, the instances' state and journals (`logs -f` included,
//! stopped by a real SIGINT), which values are refused before anything is
//! sent, the words and exit code of each refusal colocd sends, and what
//! each command did, read back in colocd (requests, instances, audit log)
//! and at the node (its desired configuration, the journal reads it was
//! asked for).

mod instances;
mod requests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use coloc_controller::config::ControllerConfig;
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::cli::{CliUser, Coloc, cells, fails, row, stderr, stdout, text};
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
         cpu_percent = {cpu}\n\
         [web]\n\
         auth = \"{auth}\"\n",
        // Syncthing's web UI has no login of its own.
        auth = if name == "syncthing" { "proxy" } else { "own" },
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
    /// At most this many lines per answer, as a node cuts a page too
    /// large for one message: the newest when reading the end, the
    /// oldest when reading after a cursor, saying so.
    page_cap: Option<usize>,
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
        let mut lines = after[skip..].to_vec();
        let mut end = journal.len();
        let cap = self.page_cap.unwrap_or(usize::MAX);
        let truncated = lines.len() > cap;
        if truncated && ask.after_cursor.is_empty() {
            lines.drain(..lines.len() - cap);
        } else if truncated {
            lines.truncate(cap);
            end = start + skip + cap;
        }
        let cursor = if lines.is_empty() {
            String::new()
        } else {
            format!("c{end}")
        };
        Ok(apb::AppLogs {
            lines,
            cursor,
            truncated,
        })
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

    /// n1 answers at most `lines` lines per page from now on.
    fn cap_pages(&self, lines: usize) {
        lock(&self.journals).page_cap = Some(lines);
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
    let mut fleet = raw_fleet(&ctl, "paris-1", &["n1", "n2"]).await?;
    let (n2, mut n1) = (fleet.remove(1), fleet.remove(0));
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
        [
            "NAME",
            "DESCRIPTION",
            "REPLACES",
            "OFFERS",
            "MEMORY",
            "CPU",
            "WEB LOGIN"
        ]
    );
    assert_eq!(
        cells(row(&table, "radicale")),
        [
            "radicale",
            "Calendars and contacts (CalDAV, CardDAV)",
            "Google Calendar, Google Contacts",
            "responsable, participatif",
            "256.0 MiB",
            "50%",
            "own"
        ]
    );
    assert_eq!(
        cells(row(&table, "syncthing"))[3..],
        ["participatif", "512.0 MiB", "100%", "proxy"]
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
    assert_eq!(list[1]["web_auth"], "own");
    assert_eq!(list[3]["web_auth"], "proxy");
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

//! `coloc app` and `coloc request`, run as an association's member and the
//! cooperative's sysadmin would against the fake: the catalog, a request
//! discussed then decided, the instances' state and journals (`logs -f`
//! included, stopped by a real Ctrl-C), which values are refused before
//! any call, and the exit code of each refusal colocd sends.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::storage::NOW;
use super::storage_cli::{fails, row, text};
use super::*;

const MIB: u64 = 1024 * 1024;

/// The cells of a table line (cells are separated by two spaces or more).
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_as_a_table_and_json() {
    let f = Fixture::start().await;
    let table = text(&f.as_token(MEMBER_TOKEN, &["app", "catalog"]).await);
    assert_eq!(
        cells(table.lines().next().unwrap()),
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

    let list = json(&f.as_admin(&["app", "catalog", "--json"]).await);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[1]["name"], "radicale");
    assert_eq!(list[1]["replaces"], "Google Calendar, Google Contacts");
    assert_eq!(list[1]["packages"][0], "radicale");
    assert_eq!(list[1]["offers"][0], "responsable");
    assert_eq!(list[1]["memory_max_bytes"], 256 * MIB);
    assert_eq!(list[1]["cpu_quota_percent"], 50);
    assert_eq!(list[3]["offers"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_asks_they_discuss_an_admin_approves() {
    let f = Fixture::start().await;
    let out = text(
        &f.as_token(
            MEMBER_TOKEN,
            &[
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
            ],
        )
        .await,
    );
    assert_eq!(
        out,
        "Request 3: syncthing for asso-x on n1 is pending.\n\
         An administrator will discuss and approve it: coloc request show 3\n"
    );
    // --volume is sent when given; the JSON is the whole request.
    let r = json(
        &f.as_admin(&[
            "app",
            "request",
            "--tenant",
            "asso-x",
            "--app",
            "prosody",
            "--node",
            "n1",
            "--volume",
            "data",
            "--comment",
            "Le chat du bureau",
            "--json",
        ])
        .await,
    );
    assert_eq!(r["id"], 4);
    assert_eq!(r["volume"], "data");
    assert_eq!(r["state"], "pending");
    assert_eq!(r["requested_by"], "root");
    assert_eq!(r["comments"][0]["text"], "Le chat du bureau");

    let out = text(
        &f.as_admin(&["request", "comment", "3", "Which node has room? n1 does."])
            .await,
    );
    assert!(out.starts_with("Comment added to request 3.\n"), "{out}");
    let show = text(&f.as_token(MEMBER_TOKEN, &["request", "show", "3"]).await);
    for needle in [
        "Request:   3",
        "Tenant:    asso-x",
        "App:       syncthing",
        "Node:      n1",
        "Volume:    data",
        "Asked by:  mia",
        "Asked:     2026-01-01 00:00 UTC",
        "State:     pending",
        "\nDiscussion\n  2026-01-01 00:00 UTC  mia\n    Partager les photos des balades\n  2026-01-01 00:01 UTC  root\n    Which node has room? n1 does.\n",
    ] {
        assert!(show.contains(needle), "{needle:?} missing in\n{show}");
    }

    let table = text(&f.as_admin(&["request", "list"]).await);
    assert_eq!(
        cells(table.lines().next().unwrap()),
        [
            "ID", "TENANT", "APP", "NODE", "VOLUME", "STATE", "ASKED BY", "ASKED", "COMMENTS"
        ]
    );
    assert_eq!(
        cells(row(&table, "3")),
        [
            "3",
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
    let pending = json(
        &f.as_admin(&["request", "list", "--state", "pending", "--json"])
            .await,
    );
    assert_eq!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 3, 4]
    );
    let none = text(&f.as_admin(&["request", "list", "--tenant", "asso-y"]).await);
    assert_eq!(none, "no requests\n");

    // Members do not decide.
    let o = f.as_token(MEMBER_TOKEN, &["request", "approve", "3"]).await;
    assert_eq!(
        fails(&o, 4).trim_end(),
        "coloc: permission denied: user mia is a member and cannot approve requests"
    );
    let out = text(
        &f.as_admin(&["request", "approve", "3", "--comment", "Bonne synchro"])
            .await,
    );
    assert_eq!(
        out,
        "Approved request 3: asso-x/syncthing is created and its node installs and starts it at its next pass.\n\
         Follow it: coloc app status asso-x/syncthing\n"
    );
    // A request is decided once.
    let o = f.as_admin(&["request", "approve", "3"]).await;
    assert_eq!(
        fails(&o, 6).trim_end(),
        "coloc: request 3 is already decided"
    );
    let r = json(&f.as_admin(&["request", "show", "3", "--json"]).await);
    assert_eq!(r["state"], "approved");
    assert_eq!(r["decided_by"], "root");
    assert_eq!(r["decided_unix"], NOW + 7200);
    assert_eq!(r["comments"][2]["text"], "Bonne synchro");
    let show = text(&f.as_admin(&["request", "show", "3"]).await);
    assert!(
        show.contains("State:     approved by root on 2026-01-01 02:00 UTC"),
        "{show}"
    );
    let list = text(&f.as_admin(&["app", "list", "--tenant", "asso-x"]).await);
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
    f.forget_calls();
    let o = f.as_admin(&["request", "reject", "1"]).await;
    assert_eq!(
        fails(&o, 2).trim_end(),
        "coloc: a rejection needs a reason for the tenant: add --comment \"...\" (coloc request reject 1 --comment \"...\")"
    );
    assert_eq!(f.calls(), Vec::<&str>::new());
    let out = text(
        &f.as_admin(&[
            "request",
            "reject",
            "1",
            "--comment",
            "Use the cooperative's shared site instead",
        ])
        .await,
    );
    assert_eq!(
        out,
        "Rejected request 1; the tenant reads why with 'coloc request show 1'.\n"
    );
    let r = json(
        &f.as_token(MEMBER_TOKEN, &["request", "show", "1", "--json"])
            .await,
    );
    assert_eq!(r["state"], "rejected");
    assert_eq!(
        r["comments"][1]["text"],
        "Use the cooperative's shared site instead"
    );
    let r = json(
        &f.as_admin(&["request", "reject", "4", "--comment", "Not on n1", "--json"])
            .await,
    );
    assert_eq!(r["state"], "rejected");
    let r = json(
        &f.as_admin(&["request", "comment", "4", "Ask again for n2", "--json"])
            .await,
    );
    assert_eq!(r["comments"].as_array().unwrap().len(), 3);
    let o = f.as_admin(&["request", "approve", "1", "--json"]).await;
    assert_eq!(
        fails(&o, 6).trim_end(),
        "coloc: request 1 is already decided"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colocd_refuses_requests_with_distinct_codes() {
    let f = Fixture::start().await;
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
    let o = f.as_admin(&ask("asso-x", "nextcloud", "n1")).await;
    assert_eq!(
        fails(&o, 5).trim_end(),
        "coloc: no app nextcloud in the catalog"
    );
    let o = f.as_admin(&ask("asso-x", "radicale", "n9")).await;
    assert_eq!(fails(&o, 5).trim_end(), "coloc: no node named n9");
    // asso-y is responsable: syncthing is for participatif tenants.
    let o = f.as_admin(&ask("asso-y", "syncthing", "n1")).await;
    assert_eq!(
        fails(&o, 6).trim_end(),
        "coloc: syncthing is not offered to responsable tenants"
    );
    let o = f.as_admin(&ask("asso-y", "radicale", "n1")).await;
    assert_eq!(
        fails(&o, 6).trim_end(),
        "coloc: tenant asso-y has no single active volume on n1; name one"
    );
    let mut with_volume = ask("asso-x", "site", "n1");
    with_volume.extend(["--volume", "old"]);
    let o = f.as_admin(&with_volume).await;
    assert_eq!(
        fails(&o, 6).trim_end(),
        "coloc: tenant asso-x has no active volume old on n1"
    );
    let o = f
        .as_token(MEMBER_TOKEN, &ask("asso-y", "radicale", "n1"))
        .await;
    assert_eq!(
        fails(&o, 4).trim_end(),
        "coloc: permission denied: user mia belongs to asso-x and cannot ask for apps for asso-y"
    );
    let o = f.as_admin(&["request", "show", "99"]).await;
    assert_eq!(fails(&o, 5).trim_end(), "coloc: no request 99");
    let o = f.as_admin(&["request", "comment", "99", "hello"]).await;
    assert_eq!(fails(&o, 5).trim_end(), "coloc: no request 99");
    let o = f
        .as_admin(&["request", "reject", "2", "--comment", "too late"])
        .await;
    assert_eq!(
        fails(&o, 6).trim_end(),
        "coloc: request 2 is already decided"
    );
    let o = f.as_token("cat_wrong", &["request", "list"]).await;
    assert_eq!(
        fails(&o, 3).trim_end(),
        "coloc: not authenticated: check your token (unknown or expired token)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_never_leave_the_cli() {
    let f = Fixture::start().await;
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
        let err = fails(&f.as_admin(&args).await, 7);
        assert!(err.starts_with("coloc: "), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: {needle:?} missing in {err}"
        );
    }
    let err = fails(&f.as_admin(&["app", "remove", "asso-x/radicale"]).await, 2);
    assert_eq!(
        err.trim_end(),
        "coloc: removing asso-x/radicale stops it and takes it off the web (its data stays on the volume); to go ahead, repeat the instance: --confirm asso-x/radicale"
    );
    let err = fails(
        &f.as_admin(&[
            "app", "request", "--tenant", "asso-x", "--app", "site", "--node", "n1",
        ])
        .await,
        2,
    );
    assert!(err.contains("--comment"), "{err}");
    assert_eq!(f.calls(), Vec::<&str>::new());
    assert!(f.state.lock().unwrap().apps.log_asks.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_listed_shown_and_driven() {
    let f = Fixture::start().await;
    let o = f.as_admin(&["app", "list"]).await;
    let table = text(&o);
    assert_eq!(
        cells(table.lines().next().unwrap()),
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

    let on_n2 = json(&f.as_admin(&["app", "list", "--node", "n2", "--json"]).await);
    let on_n2 = on_n2.as_array().unwrap();
    assert_eq!(on_n2.len(), 1);
    assert_eq!(on_n2[0]["tenant"], "asso-y");
    assert_eq!(on_n2[0]["state"], "stopped");
    assert_eq!(on_n2[0]["observed"]["sub_state"], "dead");
    // Members see their own tenant only, and no error note for it here.
    let mine = json(&f.as_token(MEMBER_TOKEN, &["app", "list", "--json"]).await);
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .all(|i| i["tenant"] == "asso-x")
    );
    let o = f.as_admin(&["app", "list", "--tenant", "asso-y"]).await;
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));

    let status = text(&f.as_admin(&["app", "status", "asso-x/radicale"]).await);
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
    let failed = text(&f.as_admin(&["app", "status", "asso-x/prosody"]).await);
    for needle in [
        "Unit state:    failed/failed",
        "Restarts:      5",
        "Health:        unhealthy (connection refused)",
        "Error:         the unit failed 5 times and hit its start limit",
        "\nLast log lines\n  prosody: certmanager error: no certificate\n  systemd: coloc-app-asso-x-prosody.service: Failed with result 'exit-code'.\n",
    ] {
        assert!(failed.contains(needle), "{needle:?} missing in\n{failed}");
    }
    let v = json(
        &f.as_token(MEMBER_TOKEN, &["app", "status", "asso-x/prosody", "--json"])
            .await,
    );
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
    let o = f.as_admin(&["app", "status", "asso-x/nope"]).await;
    assert_eq!(
        fails(&o, 5).trim_end(),
        "coloc: no app instance asso-x/nope"
    );
    let o = f
        .as_token(MEMBER_TOKEN, &["app", "status", "asso-y/site"])
        .await;
    assert_eq!(
        fails(&o, 5).trim_end(),
        "coloc: no app instance asso-y/site"
    );

    // Stop, start, restart.
    let out = text(&f.as_admin(&["app", "stop", "asso-x/radicale"]).await);
    assert!(
        out.starts_with("Stopping asso-x/radicale: its node's agent stops it at its next pass; it stays stopped until 'coloc app start asso-x/radicale'.\n"),
        "{out}"
    );
    assert!(out.contains("Wanted state:  stopped"), "{out}");
    let o = f.as_admin(&["app", "restart", "asso-x/radicale"]).await;
    assert_eq!(
        fails(&o, 6).trim_end(),
        "coloc: app instance asso-x/radicale is stopped; start it instead"
    );
    let out = text(&f.as_admin(&["app", "start", "asso-x/radicale"]).await);
    assert!(
        out.starts_with("Starting asso-x/radicale: its node's agent starts it at its next pass.\n"),
        "{out}"
    );
    let v = json(
        &f.as_admin(&["app", "restart", "asso-x/radicale", "--json"])
            .await,
    );
    assert_eq!(v["state"], "running");
    let out = text(&f.as_admin(&["app", "restart", "asso-x/prosody"]).await);
    assert!(
        out.starts_with(
            "Restarting asso-x/prosody: its node's agent restarts it at its next pass.\n"
        ),
        "{out}"
    );
    let v = json(&f.as_admin(&["app", "stop", "asso-y/site", "--json"]).await);
    assert_eq!(v["state"], "stopped");
    let o = f
        .as_token(MEMBER_TOKEN, &["app", "stop", "asso-x/radicale"])
        .await;
    assert_eq!(
        fails(&o, 4).trim_end(),
        "coloc: permission denied: user mia is a member and cannot stop apps"
    );
    let o = f.as_admin(&["app", "start", "asso-x/nope"]).await;
    assert_eq!(
        fails(&o, 5).trim_end(),
        "coloc: no app instance asso-x/nope"
    );

    // Remove: confirmed, and the data is said to stay.
    let o = f
        .as_token(
            MEMBER_TOKEN,
            &[
                "app",
                "remove",
                "asso-x/radicale",
                "--confirm",
                "asso-x/radicale",
            ],
        )
        .await;
    assert_eq!(
        fails(&o, 4).trim_end(),
        "coloc: permission denied: user mia is a member and cannot remove apps"
    );
    let out = text(
        &f.as_admin(&[
            "app",
            "remove",
            "asso-x/radicale",
            "--confirm",
            "asso-x/radicale",
        ])
        .await,
    );
    assert_eq!(
        out,
        "Removed asso-x/radicale: its node's agent stops and disables its unit and removes its web route at its next pass.\n\
         Its data stays on the volume asso-x/data, under apps/radicale; a new request for radicale on that volume finds it again.\n"
    );
    let o = f
        .as_admin(&[
            "app",
            "remove",
            "asso-x/radicale",
            "--confirm",
            "asso-x/radicale",
        ])
        .await;
    assert_eq!(
        fails(&o, 6).trim_end(),
        "coloc: app instance asso-x/radicale is removed"
    );
    let v = json(
        &f.as_admin(&[
            "app",
            "remove",
            "asso-y/site",
            "--confirm",
            "asso-y/site",
            "--json",
        ])
        .await,
    );
    assert_eq!(v["state"], "removed");
    let list = json(&f.as_admin(&["app", "list", "--json"]).await);
    assert_eq!(
        list.as_array()
            .unwrap()
            .iter()
            .map(|i| format!(
                "{}/{} {}",
                i["tenant"].as_str().unwrap(),
                i["app"].as_str().unwrap(),
                i["state"].as_str().unwrap()
            ))
            .collect::<Vec<_>>(),
        [
            "asso-x/radicale removed",
            "asso-x/prosody running",
            "asso-y/site removed"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_read_on_the_node() {
    let f = Fixture::start().await;
    let out = text(
        &f.as_token(MEMBER_TOKEN, &["app", "logs", "asso-x/radicale", "-n", "2"])
            .await,
    );
    assert_eq!(
        out,
        "Jan 01 01:00:01 n1 radicale[812]: Listening on 127.0.0.1:20000\n\
         Jan 01 01:00:02 n1 radicale[812]: Radicale server ready\n"
    );
    let v = json(
        &f.as_admin(&["app", "logs", "asso-x/radicale", "--json"])
            .await,
    );
    assert_eq!(v["lines"].as_array().unwrap().len(), 3);
    assert_eq!(v["cursor"], "c3");
    // From the end of the journal, 100 lines unless -n says otherwise.
    assert_eq!(
        f.state.lock().unwrap().apps.log_asks,
        [(String::new(), 2), (String::new(), 100)]
    );

    // A journal line that carries an escape sequence cannot drive the terminal.
    f.state
        .lock()
        .unwrap()
        .apps
        .journals
        .get_mut("asso-x/radicale")
        .unwrap()
        .push("evil \x1b[2J line".into());
    let out = text(
        &f.as_admin(&["app", "logs", "asso-x/radicale", "-n", "1"])
            .await,
    );
    assert_eq!(out, "evil \\u{1b}[2J line\n");

    // An instance with an empty journal says so on stderr, nothing on stdout.
    let o = f.as_admin(&["app", "logs", "asso-x/prosody"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    assert_eq!(stderr(&o), "no journal lines for asso-x/prosody yet\n");

    // The node is not connected: colocd cannot reach it (exit 8).
    let o = f.as_admin(&["app", "logs", "asso-y/site"]).await;
    assert_eq!(
        fails(&o, 8).trim_end(),
        "coloc: node n2 is not connected; its journal cannot be read now"
    );
    let o = f.as_admin(&["app", "logs", "asso-y/site", "-f"]).await;
    assert_eq!(
        fails(&o, 8).trim_end(),
        "coloc: node n2 is not connected; its journal cannot be read now"
    );
    let o = f.as_admin(&["app", "logs", "asso-x/nope"]).await;
    assert_eq!(
        fails(&o, 5).trim_end(),
        "coloc: no app instance asso-x/nope"
    );
}

/// A `coloc` left running, its stdout read line by line.
struct Running {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Running {
    /// The next line on stdout, within a deadline.
    async fn next_line(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
            .await
            .expect("a line within 20 s")
            .expect("read stdout")
            .expect("stdout still open")
    }
}

impl Fixture {
    /// Starts coloc as the admin without waiting for it.
    fn spawn_as_admin(&self, args: &[&str]) -> Running {
        // The binary under test, started as a user would (clippy.toml).
        #[allow(clippy::disallowed_methods)]
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_coloc"))
            .env_clear()
            .env("HOME", self.home.path())
            .env("COLOC_SERVER", &self.server)
            .env("COLOC_CA_FILE", &self.ca_file)
            .env("COLOC_TOKEN", ADMIN_TOKEN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start coloc");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Running { child, lines }
    }

    /// Appends lines to asso-x/radicale's journal, all at once so that
    /// one poll sees them together.
    fn journal_push(&self, lines: &[&str]) {
        self.state
            .lock()
            .unwrap()
            .apps
            .journals
            .get_mut("asso-x/radicale")
            .unwrap()
            .extend(lines.iter().map(|l| l.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_until_ctrl_c() {
    let f = Fixture::start().await;
    let mut run = f.spawn_as_admin(&["app", "logs", "asso-x/radicale", "-f", "-n", "2"]);
    assert_eq!(
        run.next_line().await,
        "Jan 01 01:00:01 n1 radicale[812]: Listening on 127.0.0.1:20000"
    );
    assert_eq!(
        run.next_line().await,
        "Jan 01 01:00:02 n1 radicale[812]: Radicale server ready"
    );
    // Lines written after the first read arrive through the polls.
    f.journal_push(&["first poll line 1", "first poll line 2"]);
    assert_eq!(run.next_line().await, "first poll line 1");
    assert_eq!(run.next_line().await, "first poll line 2");
    f.journal_push(&["second poll line"]);
    assert_eq!(run.next_line().await, "second poll line");

    // Each poll went on from the last cursor seen (an empty answer keeps
    // the cursor it had), asking for up to 1000 lines; the first call asked
    // for the last 2 from the end.
    let asks = f.state.lock().unwrap().apps.log_asks.clone();
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
    let pid = run.child.id().expect("still running").to_string();
    // Ctrl-C as a terminal sends it, from outside the process (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(20), run.child.wait())
        .await
        .expect("coloc stopped within 20 s after Ctrl-C")
        .expect("wait coloc");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(run.child.stderr.as_mut().unwrap(), &mut err)
        .await
        .unwrap();
    assert!(err.is_empty(), "{err}");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), run.lines.next_line())
            .await
            .unwrap()
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_in_json_lines() {
    let f = Fixture::start().await;
    let mut run = f.spawn_as_admin(&["app", "logs", "asso-x/radicale", "-f", "-n", "1", "--json"]);
    let first: serde_json::Value = serde_json::from_str(&run.next_line().await).unwrap();
    assert_eq!(
        first["lines"][0],
        "Jan 01 01:00:02 n1 radicale[812]: Radicale server ready"
    );
    assert_eq!(first["cursor"], "c3");
    f.journal_push(&["later"]);
    let next: serde_json::Value = serde_json::from_str(&run.next_line().await).unwrap();
    assert_eq!(
        next,
        serde_json::json!({ "lines": ["later"], "cursor": "c4" })
    );
    let pid = run.child.id().expect("still running").to_string();
    // Ctrl-C as a terminal sends it, from outside the process (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(20), run.child.wait())
        .await
        .expect("stopped after Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

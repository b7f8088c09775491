//! `coloc app request` and `coloc request`: a member asks, people discuss,
//! an admin decides; what colocd refuses and with which words and exit
//! code, and what the CLI refuses before sending anything.

use super::*;

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

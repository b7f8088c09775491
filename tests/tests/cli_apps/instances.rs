//! `coloc app list/status/start/stop/restart/remove` and `coloc app logs`:
//! the instances as the nodes report them, the wanted state each command
//! gives the node, and journals read on the node, followed until Ctrl-C.

use super::*;

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
        serde_json::json!({ "lines": ["later"], "cursor": "c4", "truncated": false })
    );
    run.interrupt()?;
    let (status, _) = run.wait().await?;
    assert_eq!(status.code(), Some(0));
    Ok(())
}

/// A node cuts a page too large for one answer: `coloc app logs` says so
/// on stderr (and in JSON), and following still shows every line, in
/// order, the rest of a cut page coming with the next polls.
#[tokio::test]
async fn a_page_the_node_cut_says_so_and_following_loses_nothing() -> Result<()> {
    let w = world().await?;
    let admin = w.admin();
    w.cap_pages(2);
    let o = admin
        .run(&["app", "logs", "asso-x/radicale", "-n", "1000"])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "Jan 01 01:00:01 n1 radicale[812]: Listening on 127.0.0.1:20000\n\
         Jan 01 01:00:02 n1 radicale[812]: Radicale server ready\n"
    );
    assert_eq!(
        stderr(&o),
        "note: the node sent only the newest 2 lines: one answer carries at most 512 KiB of \
         log; ask for fewer with -n\n"
    );
    let v = admin
        .json(&["app", "logs", "asso-x/radicale", "-n", "1000", "--json"])
        .await;
    assert_eq!(v["truncated"], true);
    assert_eq!(v["lines"].as_array().map(Vec::len), Some(2));

    let mut run = admin.spawn(&["app", "logs", "asso-x/radicale", "-f", "-n", "1"])?;
    assert_eq!(
        run.line().await?,
        "Jan 01 01:00:02 n1 radicale[812]: Radicale server ready"
    );
    let burst: Vec<String> = (1..=7).map(|i| format!("burst line {i}")).collect();
    w.journal_push(&burst.iter().map(String::as_str).collect::<Vec<_>>());
    for line in &burst {
        assert_eq!(&run.line().await?, line);
    }
    run.interrupt()?;
    let (status, err) = run.wait().await?;
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(err.is_empty(), "{err}");
    Ok(())
}

/// A user disabled while following logs is cut off at the next poll: the
/// follow ends with exit 3 (not authenticated) and says why.
#[tokio::test]
async fn a_disabled_users_follow_is_closed() -> Result<()> {
    let w = world().await?;
    let mut run = w
        .mia()
        .spawn(&["app", "logs", "asso-x/radicale", "-f", "-n", "1"])?;
    assert_eq!(
        run.line().await?,
        "Jan 01 01:00:02 n1 radicale[812]: Radicale server ready"
    );
    w.journal_push(&["before"]);
    assert_eq!(run.line().await?, "before");

    w.admin().ok(&["user", "disable", "mia"]).await;
    let (status, err) = run.wait().await?;
    assert_eq!(status.code(), Some(3), "{status:?} {err}");
    assert!(err.contains("user mia is disabled"), "{err}");
    assert_eq!(run.next_line().await?, None);
    Ok(())
}

#[tokio::test]
async fn the_login_in_front_of_an_app_is_hashed_here_and_only_the_hash_leaves() -> Result<()> {
    let mut w = world().await?;
    let id = ask(
        &mut w.api,
        "asso-x",
        "syncthing",
        "n1",
        "data",
        "nos fichiers",
    )
    .await?;
    approve(&mut w.api, id, "ok").await?;
    let (admin, mia) = (w.admin(), w.mia());
    let status = admin.ok(&["app", "status", "asso-x/syncthing"]).await;
    assert!(
        status.contains(
            "Web access:    locked (503) until a password is set: coloc app set-password asso-x/syncthing"
        ),
        "{status}"
    );
    let catalog = admin.ok(&["app", "catalog"]).await;
    assert_eq!(cells(row(&catalog, "syncthing")).last(), Some(&"proxy"));
    assert_eq!(cells(row(&catalog, "radicale")).last(), Some(&"own"));

    let password = "un mot de passe solide";
    let set = [
        "app",
        "set-password",
        "asso-x/syncthing",
        "--password-stdin",
    ];
    // Refused here, before any call: too short, too long, or no terminal
    // to ask on.
    let mark = w.audit_mark().await?;
    let err = fails(&admin.run_with_input(&set, "court\n").await, 7);
    assert!(err.contains("shorter than 12 characters"), "{err}");
    let err = fails(
        &admin
            .run_with_input(&set, &format!("{}\n", "x".repeat(80)))
            .await,
        7,
    );
    assert!(err.contains("72 bytes"), "{err}");
    let err = fails(&admin.run(&set[..3]).await, 2);
    assert!(err.contains("--password-stdin"), "{err}");
    assert_eq!(w.audited_since(mark).await?, []);
    // A member may not set it.
    let err = fails(&mia.run_with_input(&set, &format!("{password}\n")).await, 4);
    assert!(err.contains("operators"), "{err}");

    let out = text(&admin.run_with_input(&set, &format!("{password}\r\n")).await);
    assert!(out.contains("The proxy now asks for user asso-x"), "{out}");
    assert!(
        out.contains("Web access:    login asked by the proxy, user asso-x"),
        "{out}"
    );
    // The node gets a bcrypt hash of exactly the password typed (the line
    // ending is not part of it); colocd's answers and audit never carry
    // the password.
    let d =
        w.n1.wait_desired("the login on n1", |d| {
            d.apps
                .iter()
                .any(|a| a.app == "syncthing" && a.web_login.is_some())
        })
        .await?;
    let login = d
        .apps
        .iter()
        .find(|a| a.app == "syncthing")
        .and_then(|a| a.web_login.clone())
        .context("login")?;
    assert_eq!(login.user, "asso-x");
    assert!(bcrypt::verify(password, &login.password_hash)?);
    assert!(!bcrypt::verify(
        format!("{password}\r"),
        &login.password_hash
    )?);
    let shown = admin
        .json(&["app", "status", "asso-x/syncthing", "--json"])
        .await;
    assert_eq!(shown["web_auth"], "proxy");
    assert_eq!(shown["web_user"], "asso-x");
    assert!(!shown.to_string().contains("$2b$"), "{shown}");
    let audit = admin.ok(&["audit", "--json"]).await;
    assert!(audit.contains("app.password.set"), "{audit}");
    assert!(
        !audit.contains(password) && !audit.contains("$2b$"),
        "{audit}"
    );
    Ok(())
}

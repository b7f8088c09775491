//! Reconciler passes over the fake node: what a pass installs, writes,
//! starts and routes, what a second pass leaves alone, and how a stopped,
//! removed, held-back, crash-looping or refused instance is handled.

use super::*;

#[tokio::test]
async fn a_full_pass_installs_writes_enables_starts_and_routes() {
    let node = Node::new();
    let (port, requests) = http_server(200).await;
    let report = node.pass(&[radicale(port)], Some(&proxy())).await;
    assert!(!report.failed(), "{}", report.summary());

    let s = status(&report, "radicale");
    assert_eq!(s.tenant, "asso-x");
    assert_eq!(s.unit, UNIT);
    assert_eq!(
        (s.active_state.as_str(), s.sub_state.as_str()),
        ("active", "running")
    );
    assert!(s.healthy, "{}", s.health_detail);
    assert_eq!(s.health_detail, "HTTP 200");
    assert_eq!(s.memory_bytes, 42 * 1024 * 1024);
    assert!(s.error.is_empty() && s.last_log_lines.is_empty());
    assert!(lock(&requests)[0].contains("Host: radicale.asso-x.coloc.test"));

    // Packages, then the package's own unit masked and stopped.
    assert_eq!(node.packages.installed(), ["radicale", "caddy"]);
    assert!(node.units.masked("radicale.service"));
    // Debian's caddy.service is masked: only coloc's sandboxed unit runs
    // Caddy.
    assert!(node.units.masked("caddy.service"));
    assert!(!node.units.enabled("caddy.service"));
    // systemd re-read the unit before it was enabled and started.
    let log = node.units.log();
    let at = |entry: &str| {
        log.iter()
            .position(|e| e == entry)
            .unwrap_or_else(|| panic!("{entry} not in {log:#?}"))
    };
    assert!(at("mask radicale.service") < at("stop radicale.service"));
    assert!(at("daemon-reload") < at(&format!("enable {UNIT}")));
    assert!(at(&format!("enable {UNIT}")) < at(&format!("start {UNIT}")));
    assert_eq!(node.units.count("daemon-reload"), 1);
    assert!(node.units.enabled(UNIT));

    // Files: the unit as rendered, owned by root.
    let unit_path = format!("/etc/systemd/system/{UNIT}");
    assert_eq!(node.read(&unit_path), radicale_unit(port));
    assert_eq!(node.meta(&unit_path), (0, 0, 0o644));
    // Configuration readable by the tenant's group only.
    assert_eq!(
        node.meta("/etc/coloc/apps/asso-x-radicale"),
        (0, GID, 0o750)
    );
    assert_eq!(
        node.meta("/etc/coloc/apps/asso-x-radicale/extra.conf"),
        (0, GID, 0o640)
    );
    assert_eq!(
        node.read("/etc/coloc/apps/asso-x-radicale/extra.conf"),
        "[auth]\ntype = htpasswd\n"
    );
    // Data on the tenant's volume, owned by the tenant.
    for dir in [
        "/srv/tenants/asso-x/data/apps",
        "/srv/tenants/asso-x/data/apps/radicale",
        "/srv/tenants/asso-x/data/apps/radicale/collections",
    ] {
        assert_eq!(node.meta(dir), (UID, GID, 0o750), "{dir}");
    }
    // The proxy: routed, enabled, started (not reloaded: it was not running).
    assert_eq!(
        node.read("/etc/caddy/Caddyfile"),
        format!(
            "# Written by coloc-agent from the node's desired configuration;\n\
             # local changes are overwritten.\n\
             {{\n\tadmin unix//run/coloc-proxy/admin.sock\n\tlocal_certs\n}}\n\
             \nradicale.asso-x.coloc.test {{\n\treverse_proxy 127.0.0.1:{port}\n}}\n"
        )
    );
    assert!(node.units.enabled("coloc-proxy.service"));
    assert_eq!(node.units.active_state("coloc-proxy.service"), "active");
    assert_eq!(node.units.count("reload-or-restart coloc-proxy.service"), 0);
    assert_eq!(
        node.read("/var/lib/coloc/apps/asso-x-radicale.nonce"),
        "0\n"
    );
}

#[tokio::test]
async fn a_second_pass_changes_nothing() {
    let node = Node::new();
    let (port, _) = http_server(200).await;
    let apps = [radicale(port)];
    let first = node.pass(&apps, Some(&proxy())).await;
    assert!(!first.failed(), "{}", first.summary());
    let unit_path = node.path(&format!("/etc/systemd/system/{UNIT}"));
    let caddyfile = node.path("/etc/caddy/Caddyfile");
    let config = node.path("/etc/coloc/apps/asso-x-radicale/extra.conf");
    let inode = |p: &Path| std::fs::metadata(p).expect("stat").ino();
    let before = (inode(&unit_path), inode(&caddyfile), inode(&config));
    node.units.clear_log();

    let second = node.pass(&apps, Some(&proxy())).await;
    assert_eq!(second, first);
    let log = node.units.log();
    assert!(!log.iter().any(|e| e == "daemon-reload"), "{log:#?}");
    assert!(!log.iter().any(|e| e.starts_with("restart ")), "{log:#?}");
    assert!(
        !log.iter().any(|e| e.starts_with("reload-or-restart")),
        "{log:#?}"
    );
    // Files were not even replaced by identical copies.
    assert_eq!(
        (inode(&unit_path), inode(&caddyfile), inode(&config)),
        before
    );
}

#[tokio::test]
async fn stop_restart_and_remove_follow_the_desired_state() {
    let node = Node::new();
    let (port, _) = http_server(200).await;
    let mut spec = radicale(port);
    let report = node.pass(&[spec.clone()], Some(&proxy())).await;
    assert!(!report.failed(), "{}", report.summary());
    assert_eq!(node.units.count(&format!("start {UNIT}")), 1);

    // `coloc app restart`: a new nonce restarts it once.
    spec.restart_nonce = 7;
    node.units.clear_log();
    let report = node.pass(&[spec.clone()], Some(&proxy())).await;
    assert!(!report.failed(), "{}", report.summary());
    assert_eq!(node.units.count(&format!("restart {UNIT}")), 1);
    assert_eq!(
        node.read("/var/lib/coloc/apps/asso-x-radicale.nonce"),
        "7\n"
    );
    node.units.clear_log();
    node.pass(&[spec.clone()], Some(&proxy())).await;
    assert_eq!(node.units.count(&format!("restart {UNIT}")), 0);

    // A changed configuration file restarts the running unit too.
    spec.files[0].content = "[auth]\ntype = none\n".into();
    node.units.clear_log();
    node.pass(&[spec.clone()], Some(&proxy())).await;
    assert_eq!(node.units.count(&format!("restart {UNIT}")), 1);
    assert_eq!(
        node.units.count("daemon-reload"),
        0,
        "the unit did not change"
    );

    // Stopped: down, disabled (a reboot keeps it stopped), not routed.
    spec.state = AppState::Stopped.into();
    node.units.clear_log();
    let report = node.pass(&[spec.clone()], Some(&proxy())).await;
    assert!(!report.failed(), "{}", report.summary());
    let s = status(&report, "radicale");
    assert_eq!(s.active_state, "inactive");
    assert!(!s.healthy);
    assert!(!node.units.enabled(UNIT));
    assert!(!node.read("/etc/caddy/Caddyfile").contains("radicale"));
    assert_eq!(node.units.count("reload-or-restart coloc-proxy.service"), 1);

    // Removed: unit and configuration gone, data kept, route gone.
    std::fs::write(
        node.path("/srv/tenants/asso-x/data/apps/radicale/collections/cal.ics"),
        "BEGIN:VCALENDAR",
    )
    .unwrap();
    spec.state = AppState::Removed.into();
    node.units.clear_log();
    let report = node.pass(&[spec.clone()], Some(&proxy())).await;
    assert!(!report.failed(), "{}", report.summary());
    let s = status(&report, "radicale");
    assert_eq!(s.active_state, "removed");
    assert_eq!(s.unit, UNIT);
    let log = node.units.log();
    let at = |entry: &str| log.iter().position(|e| e == entry).unwrap_or(usize::MAX);
    assert!(
        at(&format!("stop {UNIT}")) < at(&format!("disable {UNIT}")),
        "{log:#?}"
    );
    assert!(
        at(&format!("disable {UNIT}")) < at("daemon-reload"),
        "{log:#?}"
    );
    assert!(!node.exists(&format!("/etc/systemd/system/{UNIT}")));
    assert!(!node.exists("/etc/coloc/apps/asso-x-radicale"));
    assert!(!node.exists("/var/lib/coloc/apps/asso-x-radicale.nonce"));
    assert_eq!(
        node.read("/srv/tenants/asso-x/data/apps/radicale/collections/cal.ics"),
        "BEGIN:VCALENDAR"
    );
    // Nothing is deployed any more: Caddy is left alone, not re-enabled.
    assert!(
        !log.iter().any(|e| e == "enable coloc-proxy.service"),
        "{log:#?}"
    );

    // Removing again is a no-op.
    node.units.clear_log();
    let again = node.pass(&[spec], Some(&proxy())).await;
    assert!(!again.failed(), "{}", again.summary());
    assert_eq!(node.units.count("daemon-reload"), 0);
}

#[tokio::test]
async fn a_volume_not_ready_holds_back_only_its_instance() {
    let node = Node::new();
    let (port_x, _) = http_server(200).await;
    let (port_y, _) = http_server(200).await;
    let pending = VolumeStatus {
        phase: VolumePhase::Pending.into(),
        mounted: false,
        ..ready(VOLUME, "/srv/tenants/asso-x/data")
    };
    let volumes = [pending, ready(OTHER_VOLUME, "/srv/tenants/asso-y/files")];
    let report = node
        .pass_with(&[radicale(port_x), site(port_y)], Some(&proxy()), &volumes)
        .await;
    let x = status(&report, "radicale");
    assert!(
        x.error.contains(&format!("volume {VOLUME} is not ready")),
        "{}",
        x.error
    );
    assert_eq!(x.active_state, "inactive");
    assert!(!node.exists(&format!("/etc/systemd/system/{UNIT}")));
    assert!(!node.exists("/srv/tenants/asso-x/data/apps"));
    assert_eq!(node.units.count(&format!("start {UNIT}")), 0);

    let y = status(&report, "site");
    assert!(y.error.is_empty(), "{}", y.error);
    assert_eq!(y.active_state, "active");
    assert!(y.healthy, "{}", y.health_detail);
    assert_eq!(y.health_detail, "TCP connect ok");
    assert_eq!(report.failures.len(), 1, "{:#?}", report.failures);
    assert!(report.failures[0].starts_with("asso-x/radicale: "));

    // A running unit whose volume goes away is left running, not removed.
    let report = node.pass(&[radicale(port_x)], Some(&proxy())).await;
    assert!(!report.failed(), "{}", report.summary());
    node.units.clear_log();
    let report = node
        .pass_with(&[radicale(port_x)], Some(&proxy()), &volumes[..1])
        .await;
    assert!(report.failed());
    assert_eq!(status(&report, "radicale").active_state, "active");
    assert!(!node.units.log().iter().any(|e| e.contains(UNIT)));
    assert!(node.exists(&format!("/etc/systemd/system/{UNIT}")));
}

#[tokio::test]
async fn a_crash_looping_unit_is_reported_failed_with_its_journal() {
    let node = Node::new();
    node.units.set_crashing(UNIT);
    let lines: Vec<String> = (1..=30)
        .map(|i| format!("2026-11-28T21:10:{i:02}Z radicale: error {i}"))
        .collect();
    lock(&node.journal.lines).insert(UNIT.into(), lines.clone());
    let (port, _) = http_server(200).await;
    let report = node.pass(&[radicale(port)], Some(&proxy())).await;
    assert!(report.failed());
    let s = status(&report, "radicale");
    assert_eq!(s.active_state, "failed");
    assert_eq!(s.restarts, 4);
    assert!(!s.healthy);
    assert!(s.error.contains("start-limit-hit"), "{}", s.error);
    assert_eq!(s.last_log_lines, lines[10..].to_vec(), "the last 20 lines");
    assert!(
        report.summary().contains("asso-x/radicale"),
        "{}",
        report.summary()
    );

    // The next pass tries again from a clean slate.
    node.units.clear_log();
    node.pass(&[radicale(port)], Some(&proxy())).await;
    let log = node.units.log();
    let reset = log
        .iter()
        .position(|e| *e == format!("reset-failed {UNIT}"));
    let start = log.iter().position(|e| *e == format!("start {UNIT}"));
    assert!(reset.is_some() && reset < start, "{log:#?}");
}

#[tokio::test]
async fn bad_values_refuse_the_configuration_and_write_nothing() {
    let node = Node::new();
    let reconciler = Reconciler::new(
        NodeName::new("n1").unwrap(),
        node.host(),
        StatusHub::new(AgentStatus::default()),
    )
    .with_root(node.root.path());
    let (port, _) = http_server(200).await;
    let mut evil = radicale(port);
    evil.args.push("x\nExecStart=/bin/sh".into());
    let mut other_tenant = radicale(port + 1);
    other_tenant.app = "cal".into();
    other_tenant.config_dir = "/etc/coloc/apps/asso-x-cal".into();
    other_tenant.hostname = "cal.asso-x.coloc.test".into();
    other_tenant.data_dir = "/srv/tenants/asso-y/files/apps/cal".into();

    let message = refusal(&[site(port + 2), evil.clone()], Some(&proxy()));
    assert!(
        message.starts_with("app #1 (\"asso-x/radicale\")"),
        "{message}"
    );
    assert!(message.contains("control character"), "{message}");
    let message = refusal(&[other_tenant.clone(), site(port + 2)], Some(&proxy()));
    assert!(message.starts_with("app #0 (\"asso-x/cal\")"), "{message}");
    assert!(message.contains("tenant's directory"), "{message}");

    // Through the reconciler: the whole configuration is refused, the
    // valid instance next to the bad ones included, and nothing at all is
    // written or started.
    let desired = DesiredConfig {
        generation: 2,
        node_name: "n1".into(),
        apps: vec![evil, other_tenant, site(port + 2)],
        proxy: Some(proxy()),
        ..DesiredConfig::default()
    };
    let report = reconciler.reconcile(&desired).await;
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(
        report
            .message
            .starts_with("desired configuration refused: app #0"),
        "{}",
        report.message
    );
    assert!(report.apps.is_empty(), "{:?}", report.apps);
    assert!(!node.exists(&format!("/etc/systemd/system/{UNIT}")));
    assert!(!node.exists("/etc/systemd/system/coloc-app-asso-x-cal.service"));
    assert!(!node.exists("/etc/systemd/system/coloc-app-asso-y-site.service"));
    assert!(!node.exists("/srv/tenants/asso-y/files/apps/cal"));
    assert!(!node.exists("/etc/coloc/apps/asso-x-radicale"));
    assert!(!node.exists("/etc/caddy/Caddyfile"));
    assert!(node.units.log().is_empty(), "{:#?}", node.units.log());
}

#[tokio::test]
async fn a_symlink_in_the_data_path_is_refused() {
    let node = Node::new();
    let outside = node.path("/etc/shadow-dir");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, node.path("/srv/tenants/asso-x/data/apps")).unwrap();
    let (port, _) = http_server(200).await;
    let report = node.pass(&[radicale(port)], Some(&proxy())).await;
    let s = status(&report, "radicale");
    assert!(s.error.contains("symbolic link"), "{}", s.error);
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written through the link"
    );
    assert_eq!(
        node.meta("/etc/shadow-dir").0,
        0,
        "not chowned to the tenant"
    );
    assert!(!node.exists(&format!("/etc/systemd/system/{UNIT}")));
    assert_eq!(node.units.count(&format!("start {UNIT}")), 0);

    // A link deeper down, planted by the tenant after a first pass.
    std::fs::remove_file(node.path("/srv/tenants/asso-x/data/apps")).unwrap();
    let report = node.pass(&[radicale(port)], Some(&proxy())).await;
    assert!(!report.failed(), "{}", report.summary());
    let collections = node.path("/srv/tenants/asso-x/data/apps/radicale/collections");
    std::fs::remove_dir(&collections).unwrap();
    std::os::unix::fs::symlink(&outside, &collections).unwrap();
    let report = node.pass(&[radicale(port)], Some(&proxy())).await;
    assert!(status(&report, "radicale").error.contains("symbolic link"));
    assert_eq!(node.meta("/etc/shadow-dir").0, 0);
}

#[tokio::test]
async fn duplicates_and_port_clashes_are_refused_and_missing_packages_are_instance_errors() {
    let node = Node::new();
    lock(&node.packages.unknown).insert("nginx-light".into());
    let (port, _) = http_server(200).await;
    assert_eq!(
        refusal(&[radicale(port), radicale(port)], Some(&proxy())),
        "app asso-x/radicale is declared twice"
    );
    let mut clash = site(port);
    clash.state = AppState::Running.into();
    assert_eq!(
        refusal(&[radicale(port), clash], Some(&proxy())),
        format!("port {port} is declared for both asso-x/radicale and asso-y/site")
    );

    let report = node.pass(&[site(port + 1)], Some(&proxy())).await;
    let s = status(&report, "site");
    assert!(s.error.contains("nginx-light"), "{}", s.error);
    assert!(!node.exists("/etc/systemd/system/coloc-app-asso-y-site.service"));
}

#[tokio::test]
async fn nothing_is_touched_without_apps_or_proxy() {
    let node = Node::new();
    let report = node.pass(&[], None).await;
    assert_eq!(report, AppsReport::default());
    assert!(node.units.log().is_empty());
    assert!(!node.exists("/etc"));
    // Running instances without a proxy are an error, but still run.
    let (port, _) = http_server(200).await;
    let report = node.pass(&[radicale(port)], None).await;
    assert!(
        report.summary().contains("no proxy"),
        "{}",
        report.summary()
    );
    assert_eq!(status(&report, "radicale").active_state, "active");
}

#[tokio::test]
async fn logs_come_from_the_units_journal() {
    let node = Node::new();
    lock(&node.journal.lines).insert(UNIT.into(), vec!["a".into(), "b".into(), "c".into()]);
    let host = node.host();
    let logs = app_logs(
        &host,
        &GetAppLogs {
            tenant: "asso-x".into(),
            app: "radicale".into(),
            lines: 2,
            after_cursor: String::new(),
        },
    )
    .await
    .expect("logs");
    assert_eq!(logs.lines, ["b", "c"]);
    assert_eq!(logs.cursor, "s=1;i=3");

    for (lines, clamped) in [(0, 1), (5000, 1000)] {
        app_logs(
            &host,
            &GetAppLogs {
                tenant: "asso-x".into(),
                app: "radicale".into(),
                lines,
                after_cursor: "s=1;i=3".into(),
            },
        )
        .await
        .expect("logs");
        let asked = lock(&node.journal.asked).last().cloned().unwrap();
        assert_eq!(
            asked,
            (UNIT.to_owned(), clamped, Some("s=1;i=3".to_owned()))
        );
    }

    for (tenant, app, cursor) in [
        ("asso-x", "radi-cale", ""),
        ("../x", "radicale", ""),
        ("asso-x", "radicale", "s=1\n--since=yesterday"),
    ] {
        let err = app_logs(
            &host,
            &GetAppLogs {
                tenant: tenant.into(),
                app: app.into(),
                lines: 10,
                after_cursor: cursor.into(),
            },
        )
        .await;
        assert!(err.is_err(), "{tenant} {app} {cursor:?}");
    }
}

#[tokio::test]
async fn a_unit_the_apps_packages_do_not_ship_is_never_masked() {
    // The attack: a catalog entry names another package's unit (here
    // cron's; ssh and systemd's own are refused by name before this).
    let node = Node::new();
    let (port, _) = http_server(200).await;
    let mut spec = radicale(port);
    spec.package_units = vec!["cron.service".into()];
    let report = node.pass(&[spec], Some(&proxy())).await;
    let s = status(&report, "radicale");
    assert!(
        s.error
            .contains("cron.service is not a unit the app's packages ship"),
        "{}",
        s.error
    );
    assert!(!node.units.masked("cron.service"));
    assert!(!node.units.log().iter().any(|e| e.contains("cron.service")));
    assert!(!node.exists(&format!("/etc/systemd/system/{UNIT}")));
}

#[tokio::test]
async fn a_data_file_is_given_once_and_then_belongs_to_the_app() {
    let node = Node::new();
    let (port, _requests) = http_server(200).await;
    let mut spec = radicale(port);
    spec.data_files = vec![AppFile {
        name: "conf/initial.xml".into(),
        content: "<options/>\n".into(),
    }];
    let data = "/srv/tenants/asso-x/data/apps/radicale";
    let file = format!("{data}/conf/initial.xml");
    let report = node.pass(std::slice::from_ref(&spec), Some(&proxy())).await;
    assert!(!report.failed(), "{}", report.summary());
    assert_eq!(node.read(&file), "<options/>\n");
    assert_eq!(node.meta(&file), (UID, GID, 0o640));
    assert_eq!(node.meta(&format!("{data}/conf")), (UID, GID, 0o750));

    // The app rewrote it: the next passes leave its version alone.
    std::fs::write(node.path(&file), "<options><mine/></options>\n").unwrap();
    let report = node.pass(std::slice::from_ref(&spec), Some(&proxy())).await;
    assert!(!report.failed(), "{}", report.summary());
    assert_eq!(node.read(&file), "<options><mine/></options>\n");

    // A link put where the file goes is neither followed nor replaced.
    std::fs::remove_file(node.path(&file)).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", node.path(&file)).unwrap();
    let report = node.pass(std::slice::from_ref(&spec), Some(&proxy())).await;
    assert!(!report.failed(), "{}", report.summary());
    assert_eq!(
        std::fs::read_link(node.path(&file)).unwrap(),
        Path::new("/etc/shadow")
    );

    // Paths stay inside the data directory.
    for bad in [
        "../escape.xml",
        "/etc/passwd",
        "conf/../../x",
        "",
        "conf//x",
    ] {
        let mut spec = radicale(port);
        spec.data_files = vec![AppFile {
            name: bad.into(),
            content: String::new(),
        }];
        assert!(
            AppDecl::from_spec(&spec, Some("coloc.test")).is_err(),
            "{bad:?}"
        );
    }
}

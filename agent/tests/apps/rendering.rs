//! What the agent writes for systemd and Caddy, against fixed expected
//! text (systemd's own parser reads it in tests/tests/e2e_apps.rs), what it
//! refuses before writing anything, and the health probes.

use super::*;

#[test]
fn the_unit_is_sandboxed_as_designed() {
    let app = AppDecl::from_spec(&radicale(20000), Some("coloc.test")).expect("valid");
    let unit = render_unit(&app).expect("renders");
    assert_eq!(unit, radicale_unit(20000));
}

#[test]
fn arguments_reach_the_program_byte_for_byte() {
    let mut spec = radicale(20000);
    let tricky = [
        "a\"; rm -rf /",
        "%h",
        "$HOME",
        "${HOME}",
        "--foo",
        "back\\slash\\n",
        "it's",
        "",
        "ünïcode → ok",
    ];
    spec.args = tricky.iter().map(|s| (*s).to_owned()).collect();
    let unit = render_unit(&AppDecl::from_spec(&spec, None).expect("valid")).expect("renders");
    assert_eq!(
        unit.lines().filter(|l| l.starts_with("ExecStart=")).count(),
        1
    );
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    // Written out by hand from systemd.service(5), "Command lines": each
    // word double-quoted, `\` and `"` backslash-escaped, `%` and `$`
    // doubled. systemd's own parser reads it back in tests/tests/e2e_apps.rs.
    assert_eq!(
        line,
        r#""/usr/bin/radicale" "a\"; rm -rf /" "%%h" "$$HOME" "$${HOME}" "--foo" "back\\slash\\n" "it's" "" "ünïcode → ok""#
    );
    // The escapes themselves, as systemd must see them.
    assert_eq!(
        quote_exec_word("a\"; rm -rf /").unwrap(),
        "\"a\\\"; rm -rf /\""
    );
    assert_eq!(quote_exec_word("%h").unwrap(), "\"%%h\"");
    assert_eq!(quote_exec_word("$HOME").unwrap(), "\"$$HOME\"");
    assert_eq!(quote_exec_word("a\\b").unwrap(), "\"a\\\\b\"");
}

#[test]
fn environment_values_are_quoted_and_dollars_kept() {
    // systemd does not expand `$` in Environment=: doubling it would hand
    // the program "$$HOME".
    assert_eq!(
        quote_environment("GREETING", "say \"hi\" to $USER at 100%").unwrap(),
        "\"GREETING=say \\\"hi\\\" to $USER at 100%%\""
    );
    assert!(quote_environment("lower", "x").is_err());
    assert!(quote_environment("X", "a\nb").is_err());
    let mut spec = radicale(20000);
    spec.environment = HashMap::from([("B".into(), "2".into()), ("A".into(), "%i".into())]);
    let unit = render_unit(&AppDecl::from_spec(&spec, None).unwrap()).unwrap();
    let env: Vec<&str> = unit
        .lines()
        .filter(|l| l.starts_with("Environment="))
        .collect();
    assert_eq!(env, ["Environment=\"A=%%i\"", "Environment=\"B=2\""]);
}

#[test]
fn control_characters_are_refused_before_any_quoting() {
    for bad in [
        "x\nExecStart=/bin/sh",
        "a\rb",
        "nul\0",
        "esc\x1b[0m",
        "del\x7f",
        "c1\u{85}",
    ] {
        let mut spec = radicale(20000);
        spec.args = vec![bad.into()];
        let err = AppDecl::from_spec(&spec, None).expect_err(bad).to_string();
        assert!(err.contains("control character"), "{bad:?}: {err}");
        assert!(quote_exec_word(bad).is_err(), "{bad:?}");

        let mut spec = radicale(20000);
        spec.environment = HashMap::from([("X".into(), bad.into())]);
        assert!(AppDecl::from_spec(&spec, None).is_err(), "env {bad:?}");
    }
}

#[test]
fn every_field_is_validated() {
    type Mutation = fn(&mut AppSpec);
    let cases: Vec<(&str, Mutation)> = vec![
        ("tenant", |s| s.tenant = "asso-x\n[Service]".into()),
        ("tenant upper", |s| s.tenant = "Asso".into()),
        ("app with dash", |s| s.app = "radi-cale".into()),
        ("app too long", |s| s.app = "a".repeat(32)),
        ("exec relative", |s| s.exec = "radicale".into()),
        ("exec option", |s| s.exec = "--foo".into()),
        ("exec space", |s| s.exec = "/usr/bin/radicale -x".into()),
        ("exec dotdot", |s| s.exec = "/usr/bin/../sbin/x".into()),
        ("exec dollar", |s| s.exec = "/usr/bin/$X".into()),
        ("env key", |s| {
            s.environment = HashMap::from([("home".into(), "x".into())]);
        }),
        ("env key dash", |s| {
            s.environment = HashMap::from([("A-B".into(), "x".into())]);
        }),
        ("port low", |s| s.port = 80),
        ("port high", |s| s.port = 70000),
        ("data_dir other tenant", |s| {
            s.data_dir = "/srv/tenants/asso-y/files/apps/radicale".into();
        }),
        ("data_dir dotdot", |s| {
            s.data_dir = "/srv/tenants/asso-x/data/apps/../../../asso-y/files".into();
        }),
        ("data_dir dotdot volume", |s| {
            s.data_dir = "/srv/tenants/asso-x/../apps/radicale".into();
        }),
        ("data_dir other app", |s| {
            s.data_dir = "/srv/tenants/asso-x/data/apps/site".into();
        }),
        ("data_dir trailing slash", |s| {
            s.data_dir = "/srv/tenants/asso-x/data/apps/radicale/".into();
        }),
        ("data_dir dot", |s| {
            s.data_dir = "/srv/tenants/asso-x/./apps/radicale".into();
        }),
        ("data_dirs absolute", |s| s.data_dirs = vec!["/etc".into()]),
        ("data_dirs dotdot", |s| s.data_dirs = vec!["../../x".into()]),
        ("config_dir", |s| s.config_dir = "/etc/coloc".into()),
        ("file name slash", |s| {
            s.files[0].name = "../agent.toml".into()
        }),
        ("file name upper", |s| s.files[0].name = "A.conf".into()),
        ("file twice", |s| {
            let f = s.files[0].clone();
            s.files.push(f);
        }),
        ("uid root", |s| s.uid = 0),
        ("gid system", |s| s.gid = 100),
        ("uid nobody", |s| s.uid = 65534),
        ("uid -1", |s| s.uid = u32::MAX),
        ("hostname other app", |s| {
            s.hostname = "site.asso-x.coloc.test".into()
        }),
        ("hostname other domain", |s| {
            s.hostname = "radicale.asso-x.evil.test".into();
        }),
        ("hostname brace", |s| {
            s.hostname = "radicale.asso-x.coloc.test {".into();
        }),
        ("package", |s| s.packages = vec!["radicale; reboot".into()]),
        ("package upper", |s| s.packages = vec!["Radicale".into()]),
        ("package unit", |s| {
            s.package_units = vec!["radicale".into()]
        }),
        ("health path", |s| {
            s.health = Some(app_spec::Health::HealthHttpPath(
                "/ HTTP/1.0\r\nX: y".into(),
            ));
        }),
        ("state", |s| s.state = 42),
        ("volume id", |s| s.volume_id = "../x".into()),
    ];
    for (what, mutate) in cases {
        let mut spec = radicale(20000);
        mutate(&mut spec);
        assert!(
            AppDecl::from_spec(&spec, Some("coloc.test")).is_err(),
            "{what} should be refused"
        );
    }
    let ok = AppDecl::from_spec(&radicale(20000), Some("coloc.test")).expect("valid");
    assert_eq!(ok.unit.as_str(), UNIT);
    assert_eq!(ok.volume_path, "/srv/tenants/asso-x/data");
    assert_eq!(
        ok.health,
        HealthCheck::Http {
            path: "/.web/".into()
        }
    );
}

#[test]
fn the_caddyfile_routes_running_instances() {
    let sites = [
        Site {
            hostname: "site.asso-y.coloc.test".into(),
            port: 20001,
            upstream_host: true,
        },
        Site {
            hostname: "radicale.asso-x.coloc.test".into(),
            port: 20000,
            upstream_host: false,
        },
    ];
    let text = render_caddyfile(&proxy_decl(&proxy()), &sites).unwrap();
    assert_eq!(
        text,
        "# Written by coloc-agent from the node's desired configuration;\n\
         # local changes are overwritten.\n\
         {\n\tlocal_certs\n}\n\
         \nradicale.asso-x.coloc.test {\n\treverse_proxy 127.0.0.1:20000\n}\n\
         \nsite.asso-y.coloc.test {\n\treverse_proxy 127.0.0.1:20001 {\n\t\theader_up Host {upstream_hostport}\n\t}\n}\n"
    );
    let acme = ProxySpec {
        acme_email: "admin@encommun.org".into(),
        ..proxy()
    };
    let text = render_caddyfile(&proxy_decl(&acme), &[]).unwrap();
    assert!(
        text.contains("{\n\temail admin@encommun.org\n}\n"),
        "{text}"
    );
    assert!(!text.contains("local_certs"));
    assert!(!text.contains("reverse_proxy"));

    for email in [
        "a@b.c\n}\nimport /etc/*",
        "a b@c.d",
        "{env.X}@c.d",
        "nobody",
    ] {
        let bad = ProxySpec {
            acme_email: email.into(),
            ..proxy()
        };
        assert!(ProxyDecl::try_from(&bad).is_err(), "{email:?}");
    }
    let bad_site = Site {
        hostname: "x.y.z {\n}".into(),
        port: 20000,
        upstream_host: false,
    };
    assert!(render_caddyfile(&proxy_decl(&proxy()), &[bad_site]).is_err());
}

#[tokio::test]
async fn probes_tell_healthy_from_not() {
    let (ok, requests) = http_server(404).await;
    let http = HealthCheck::Http {
        path: "/.web/".into(),
    };
    let outcome = probe(
        &http,
        ok,
        "radicale.asso-x.coloc.test",
        coloc_agent::apps::PROBE_TIMEOUT,
    )
    .await;
    assert_eq!(
        outcome,
        ProbeOutcome {
            healthy: true,
            detail: "HTTP 404".into()
        }
    );
    let request = lock(&requests)[0].clone();
    assert!(request.starts_with("GET /.web/ HTTP/1.0\r\n"), "{request}");
    assert!(
        request.contains("\r\nHost: radicale.asso-x.coloc.test\r\n"),
        "{request}"
    );

    let (broken, _) = http_server(502).await;
    let outcome = probe(
        &http,
        broken,
        "h.t.coloc.test",
        coloc_agent::apps::PROBE_TIMEOUT,
    )
    .await;
    assert!(!outcome.healthy);
    assert_eq!(outcome.detail, "HTTP 502");

    assert!(
        probe(&HealthCheck::Tcp, ok, "h", coloc_agent::apps::PROBE_TIMEOUT)
            .await
            .healthy
    );
    // A port nothing listens on: bind one, then let it go.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    assert!(
        !probe(
            &HealthCheck::Tcp,
            closed,
            "h",
            coloc_agent::apps::PROBE_TIMEOUT
        )
        .await
        .healthy
    );
    assert!(
        !probe(&http, closed, "h", coloc_agent::apps::PROBE_TIMEOUT)
            .await
            .healthy
    );

    // A server that accepts and never answers: the timeout decides.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let outcome = probe(&http, port, "h", std::time::Duration::from_millis(200)).await;
    assert!(!outcome.healthy);
    assert!(
        outcome.detail.contains("within 200 ms"),
        "{}",
        outcome.detail
    );
    drop(silent);
}

//! The catalog on the shipped files and on crafted ones.

use super::*;

fn workspace_catalog() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog")
}

fn ctx() -> RenderContext {
    RenderContext {
        tenant: TenantName::new("asso-x").unwrap(),
        uid: 10001,
        gid: 10001,
        port: 20001,
        volume_id: "0123456789abcdef".into(),
        volume_mount: "/srv/tenants/asso-x/data".into(),
        domain: "encommun.org".into(),
        state: agent_pb::AppState::Running,
        restart_nonce: 7,
        web_login: None,
    }
}

const MINIMAL: &str = r#"
name = "demo"
description = "A demo"
replaces = "Nothing"
packages = ["demo-pkg"]
offers = ["participatif"]

[service]
exec = "/usr/bin/demo"
args = ["--listen", "127.0.0.1:{port}", "--dir={data}/x"]

[health]
tcp = true

[resources]
memory = "64M"
cpu_percent = 10

[web]
auth = "own"
"#;

fn parse(text: &str) -> Result<CatalogApp, CatalogError> {
    CatalogApp::parse(Path::new("catalog/demo.toml"), text)
}

/// `MINIMAL` with `line` put right after `[service]`'s exec line, or
/// appended, for crafting bad files.
fn with_service_line(line: &str) -> String {
    MINIMAL.replace(
        "exec = \"/usr/bin/demo\"\n",
        &format!("exec = \"/usr/bin/demo\"\n{line}\n"),
    )
}

fn refused(text: &str, field: &str) -> String {
    let err = parse(text).expect_err("should be refused");
    let msg = err.to_string();
    assert!(msg.contains("catalog/demo.toml"), "names the file: {msg}");
    match &err {
        CatalogError::Field { field: f, .. } => assert!(f.starts_with(field), "{msg}"),
        CatalogError::Parse { source, .. } => {
            assert!(source.to_string().contains(field), "{msg}: {source}")
        }
        other => panic!("unexpected error {other:?}"),
    }
    msg
}

#[test]
fn every_catalog_file_parses_and_is_embedded() {
    let dir = workspace_catalog();
    let on_disk = Catalog::from_dir(&dir).unwrap();
    let builtin = Catalog::builtin().unwrap();
    let disk_names: Vec<_> = on_disk.apps().map(|a| a.name.clone()).collect();
    let builtin_names: Vec<_> = builtin.apps().map(|a| a.name.clone()).collect();
    assert_eq!(
        disk_names, builtin_names,
        "a catalog file is not embedded: rebuild (build.rs)"
    );
    for expected in ["prosody", "radicale", "site", "syncthing"] {
        assert!(builtin.get(expected).is_some(), "{expected} shipped");
    }
    // Sorted by name.
    let mut sorted = builtin_names.clone();
    sorted.sort();
    assert_eq!(builtin_names, sorted);
    // The embedded text is the file's text.
    for (name, text) in embedded::FILES {
        let on_disk = std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(&on_disk, text, "{name} changed since the build");
    }
}

#[test]
fn shipped_apps_render_for_an_instance() {
    let catalog = Catalog::builtin().unwrap();
    let ctx = ctx();
    for app in catalog.apps() {
        let spec = app.render(&ctx).unwrap();
        assert_eq!(
            spec.data_dir,
            format!("/srv/tenants/asso-x/data/apps/{}", app.name)
        );
        assert_eq!(
            spec.config_dir,
            format!("/etc/coloc/apps/asso-x-{}", app.name)
        );
        assert_eq!(spec.hostname, format!("{}.asso-x.encommun.org", app.name));
        assert!(spec.health.is_some());
        // The port and the data or config directory reach the program.
        let everything = format!(
            "{} {} {}",
            spec.args.join(" "),
            spec.environment
                .values()
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
            spec.files
                .iter()
                .map(|f| f.content.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        );
        assert!(
            everything.contains("127.0.0.1:20001") || everything.contains("{ 20001 }"),
            "{}: port",
            app.name
        );
        assert!(everything.contains(&spec.data_dir), "{}: data", app.name);
        for word in ["{port}", "{data}", "{config}", "{hostname}", "{tenant}"] {
            assert!(!everything.contains(word), "{}: {word} left", app.name);
        }
        assert!(app.allows(Offer::Responsable) || app.allows(Offer::Participatif));
        let proto = app.to_proto();
        assert_eq!(proto.name, app.name.as_str());
        assert_eq!(proto.offers.len(), app.offers.len());
    }
    let site = catalog.get("site").unwrap().render(&ctx).unwrap();
    let conf = &site.files[0].content;
    assert!(conf.contains("listen 127.0.0.1:20001;"), "{conf}");
    assert!(
        conf.contains("root /srv/tenants/asso-x/data/apps/site/www;"),
        "{conf}"
    );
    // nginx's own `$uri` is left alone.
    assert!(conf.contains("try_files $uri $uri/ =404;"), "{conf}");
    assert_eq!(
        site.args,
        [
            "-c",
            "/etc/coloc/apps/asso-x-site/nginx.conf",
            "-e",
            "stderr"
        ]
    );
    let prosody = catalog.get("prosody").unwrap().render(&ctx).unwrap();
    assert!(prosody.files[0].content.contains("http_ports = { 20001 }"));
    assert!(
        prosody.files[0]
            .content
            .contains("VirtualHost \"prosody.asso-x.encommun.org\"")
    );
}

#[test]
fn render_substitutes_and_copies_the_instance() {
    let text = MINIMAL
        .replace(
            "args = [",
            "environment = { HOME = \"{data}\", GREETING = \"hi {tenant} at {hostname}\" }\ndata_dirs = [\"db\", \"a/b\"]\nargs = [\"--conf={config}/demo.conf\", ",
        )
        + "\n[[files]]\nname = \"demo.conf\"\ncontent = \"port={port}\\ntenant={tenant}\\nbraces={{x}} { y }\\n\"\n";
    let app = parse(&text).unwrap();
    let mut ctx = ctx();
    ctx.state = agent_pb::AppState::Stopped;
    let spec = app.render(&ctx).unwrap();
    assert_eq!(
        spec.args,
        [
            "--conf=/etc/coloc/apps/asso-x-demo/demo.conf",
            "--listen",
            "127.0.0.1:20001",
            "--dir=/srv/tenants/asso-x/data/apps/demo/x",
        ]
    );
    assert_eq!(
        spec.environment["HOME"],
        "/srv/tenants/asso-x/data/apps/demo"
    );
    assert_eq!(
        spec.environment["GREETING"],
        "hi asso-x at demo.asso-x.encommun.org"
    );
    assert_eq!(spec.files.len(), 1);
    assert_eq!(spec.files[0].name, "demo.conf");
    assert_eq!(
        spec.files[0].content,
        "port=20001\ntenant=asso-x\nbraces={x} { y }\n"
    );
    assert_eq!(spec.data_dirs, ["db", "a/b"]);
    assert_eq!(spec.tenant, "asso-x");
    assert_eq!(spec.app, "demo");
    assert_eq!(spec.exec, "/usr/bin/demo");
    assert_eq!(spec.port, 20001);
    assert_eq!((spec.uid, spec.gid), (10001, 10001));
    assert_eq!(spec.state, agent_pb::AppState::Stopped as i32);
    assert_eq!(spec.restart_nonce, 7);
    assert_eq!(spec.volume_id, "0123456789abcdef");
    assert_eq!(spec.memory_max_bytes, 64 << 20);
    assert_eq!(spec.cpu_quota_percent, 10);
    assert_eq!(spec.packages, ["demo-pkg"]);
    assert_eq!(
        spec.health,
        Some(agent_pb::app_spec::Health::HealthTcp(true))
    );
    assert!(app.allows(Offer::Participatif));
    assert!(!app.allows(Offer::Responsable));
}

#[test]
fn render_keeps_dollar_and_percent_literal() {
    let text = with_service_line("environment = { PATTERN = \"$HOME %h ${{X}} %%\" }")
        .replace("\"--dir={data}/x\"", "\"$(id)\", \"%n\", \"$$\", \"100%\"");
    let spec = parse(&text).unwrap().render(&ctx()).unwrap();
    assert_eq!(spec.args[2..], ["$(id)", "%n", "$$", "100%"]);
    assert_eq!(spec.environment["PATTERN"], "$HOME %h ${X} %%");
}

#[test]
fn render_refuses_a_bad_context() {
    let app = parse(MINIMAL).unwrap();
    type Spoil = fn(&mut RenderContext);
    let cases: [(&str, Spoil); 7] = [
        ("port", |c| c.port = 0),
        ("uid", |c| c.uid = 0),
        ("uid", |c| c.gid = 0),
        ("volume_mount", |c| {
            c.volume_mount = "/srv/tenants/asso-y/data".into()
        }),
        ("volume_mount", |c| {
            c.volume_mount = "/srv/tenants/asso-x/../asso-y".into()
        }),
        ("domain", |c| {
            c.domain = "evil.org\nExecStart=/bin/sh".into()
        }),
        ("volume_id", |c| c.volume_id = "a b".into()),
    ];
    for (field, spoil) in cases {
        let mut ctx = ctx();
        spoil(&mut ctx);
        match app.render(&ctx) {
            Err(CatalogError::Render { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn network_access_is_closed_unless_declared() {
    let closed = parse(MINIMAL).unwrap().render(&ctx()).unwrap();
    assert!(!closed.outbound);
    assert!(closed.inbound.is_empty());

    let open = parse(&format!(
        "{MINIMAL}\n[network]\noutbound = true\ninbound = [\"5269/tcp\", \"5222/tcp\", \"5222/udp\"]\n"
    ))
    .unwrap()
    .render(&ctx())
    .unwrap();
    assert!(open.outbound);
    let wire = |port, transport: agent_pb::Transport| agent_pb::InboundPort {
        port,
        transport: transport.into(),
    };
    assert_eq!(
        open.inbound,
        [
            wire(5222, agent_pb::Transport::Tcp),
            wire(5222, agent_pb::Transport::Udp),
            wire(5269, agent_pb::Transport::Tcp),
        ]
    );

    // Only the apps that need the outside get it: Syncthing's relays and
    // discovery servers. The others reach 127.0.0.1 alone.
    let catalog = Catalog::builtin().unwrap();
    for app in catalog.apps() {
        let spec = app.render(&ctx()).unwrap();
        assert_eq!(
            spec.outbound,
            app.name.as_str() == "syncthing",
            "{}",
            app.name
        );
        assert!(spec.inbound.is_empty(), "{}", app.name);
    }

    for (inbound, why) in [
        ("[\"22/tcp\"]", "1024"),
        ("[\"443/udp\"]", "1024"),
        ("[\"20000/tcp\"]", "loopback"),
        ("[\"5222\"]", "<port>/tcp"),
        ("[\"5222/sctp\"]", "<port>/tcp"),
        ("[\"5222/tcp\", \"5222/tcp\"]", "twice"),
    ] {
        let msg = refused(
            &format!("{MINIMAL}\n[network]\ninbound = {inbound}\n"),
            "network.inbound",
        );
        assert!(msg.contains(why), "{inbound}: {msg}");
    }
    refused(&format!("{MINIMAL}\n[network]\nports = [1]\n"), "ports");
}

#[test]
fn every_entry_says_how_its_web_endpoint_is_protected() {
    // The shipped apps: a website is public, radicale and prosody ask for
    // their own logins, Syncthing's web UI has none and sits behind the
    // proxy's.
    let catalog = Catalog::builtin().unwrap();
    let web = |name: &str| catalog.get(name).unwrap().web;
    assert_eq!(web("site"), WebProtection::Public);
    assert_eq!(web("radicale"), WebProtection::Own);
    assert_eq!(web("prosody"), WebProtection::Own);
    assert_eq!(web("syncthing"), WebProtection::Proxy);

    // The login goes to the node only for an app the proxy protects.
    let login = WebLogin {
        user: "asso-x".parse().unwrap(),
        hash: "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
            .parse()
            .unwrap(),
    };
    let with_login = RenderContext {
        web_login: Some(login.clone()),
        ..ctx()
    };
    let syncthing = catalog.get("syncthing").unwrap();
    let spec = syncthing.render(&with_login).unwrap();
    assert_eq!(spec.web_auth, agent_pb::WebAuth::Proxy as i32);
    assert_eq!(spec.web_login, Some((&login).into()));
    let locked = syncthing.render(&ctx()).unwrap();
    assert_eq!(locked.web_login, None);
    let radicale = catalog
        .get("radicale")
        .unwrap()
        .render(&with_login)
        .unwrap();
    assert_eq!(radicale.web_auth, agent_pb::WebAuth::Own as i32);
    assert_eq!(radicale.web_login, None);
    assert_eq!(
        syncthing.to_proto().web_auth,
        agent_pb::WebAuth::Proxy as i32
    );

    // No entry goes without a decision, and only the three words mean one.
    let without = MINIMAL.replace("\n[web]\nauth = \"own\"\n", "\n");
    assert!(!without.contains("[web]"));
    assert!(parse(&without).is_err());
    for word in ["", "none", "basic", "Proxy", "own\n"] {
        let text = MINIMAL.replace("auth = \"own\"", &format!("auth = {word:?}"));
        let msg = refused(&text, "web.auth");
        assert!(msg.contains("\"public\", \"own\" or \"proxy\""), "{msg}");
    }
    refused(&format!("{MINIMAL}password = \"x\"\n"), "");
}

#[test]
fn crafted_values_are_refused_at_load() {
    assert!(parse(MINIMAL).is_ok());
    refused(
        &MINIMAL.replace("127.0.0.1:{port}", "a\\nExecStartPre=/bin/sh"),
        "service.args[1]",
    );
    refused(
        &MINIMAL.replace("\"/usr/bin/demo\"", "\"usr/bin/demo\""),
        "service.exec",
    );
    refused(
        &MINIMAL.replace("\"/usr/bin/demo\"", "\"/usr/bin/demo --evil\""),
        "service.exec",
    );
    refused(
        &with_service_line("data_dirs = [\"../other\"]"),
        "service.data_dirs[0]",
    );
    refused(
        &with_service_line("data_dirs = [\"a/../../b\"]"),
        "service.data_dirs[0]",
    );
    refused(
        &with_service_line("data_dirs = [\"/abs\"]"),
        "service.data_dirs[0]",
    );
    refused(&with_service_line("user = \"root\""), "user");
    refused(&format!("{MINIMAL}\nextra = 1\n"), "extra");
    refused(
        &MINIMAL.replace("cpu_percent = 10", "cpu_percent = 10\nio = 3"),
        "io",
    );
    let msg = refused(&MINIMAL.replace("{data}/x", "{home}/x"), "service.args[2]");
    assert!(msg.contains("{home}"), "{msg}");
    refused(
        &MINIMAL.replace("[\"demo-pkg\"]", "[\"Demo\"]"),
        "packages[0]",
    );
    refused(
        &MINIMAL.replace("[\"demo-pkg\"]", "[\"demo pkg\"]"),
        "packages[0]",
    );
    refused(&MINIMAL.replace("[\"demo-pkg\"]", "[]"), "packages");
    refused(&MINIMAL.replace("[\"participatif\"]", "[]"), "offers");
    refused(
        &MINIMAL.replace("[\"participatif\"]", "[\"gratuit\"]"),
        "offers[0]",
    );
    refused(
        &MINIMAL.replace("name = \"demo\"", "name = \"other\""),
        "name",
    );
    refused(
        &MINIMAL.replace("tcp = true", "tcp = true\nhttp = \"/\""),
        "health",
    );
    refused(
        &MINIMAL.replace("tcp = true", "http = \"health\""),
        "health.http",
    );
    refused(&MINIMAL.replace("\"64M\"", "\"1M\""), "resources.memory");
    refused(&MINIMAL.replace("\"64M\"", "\"9G\""), "resources.memory");
    refused(&MINIMAL.replace("= 10", "= 0"), "resources.cpu_percent");
    refused(&MINIMAL.replace("= 10", "= 801"), "resources.cpu_percent");
    refused(
        &MINIMAL.replace("\"A demo\"", "\"two\\nlines\""),
        "description",
    );
    refused(
        &format!("{MINIMAL}\npackage_units = []\n").replace(
            "packages = [\"demo-pkg\"]",
            "packages = [\"demo-pkg\"]\npackage_units = [\"coloc-agent.service\"]",
        ),
        "package_units",
    );
    refused(
        &MINIMAL.replace(
            "packages = [\"demo-pkg\"]",
            "packages = [\"demo-pkg\"]\npackage_units = [\"demo.target\"]",
        ),
        "package_units[0]",
    );
    refused(
        &with_service_line("environment = { \"bad-key\" = \"x\" }"),
        "service.environment.bad-key",
    );
    refused(
        &with_service_line("environment = { K = \"a\\rb\" }"),
        "service.environment.K",
    );
    let files = |name: &str, content: &str| {
        format!("{MINIMAL}\n[[files]]\nname = {name:?}\ncontent = {content:?}\n")
    };
    refused(&files("../x", "a"), "files[0].name");
    refused(&files("a/b", "a"), "files[0].name");
    // A TOML escape, so that the parsed content really holds ESC.
    refused(
        &format!("{MINIMAL}\n[[files]]\nname = \"ok.conf\"\ncontent = \"a\\u001b[31m\"\n"),
        "files[0].content",
    );
    refused(
        &files("ok.conf", &"x".repeat(MAX_FILE_LEN + 1)),
        "files[0].content",
    );
    refused(&files("ok.conf", "{nope}"), "files[0].content");
    let too_many = format!("args = [{}]", vec!["\"a\""; MAX_ARGS + 1].join(", "));
    refused(
        &MINIMAL.replace(
            "args = [\"--listen\", \"127.0.0.1:{port}\", \"--dir={data}/x\"]",
            &too_many,
        ),
        "service.args",
    );
    let long = format!("\"{}\"", "a".repeat(MAX_ARG_LEN + 1));
    refused(&MINIMAL.replace("\"--listen\"", &long), "service.args[0]");
}

#[test]
fn placeholders_and_braces() {
    let t = Template::parse("{port}{{port}}{ port }{}}}").unwrap();
    let values = Values {
        port: "1",
        data: "/d",
        config: "/c",
        hostname: "h",
        tenant: "t",
    };
    assert_eq!(t.render(&values), "1{port}{ port }{}}");
    assert!(Template::parse("{PORT}").is_err());
    assert!(Template::parse("${uri}").is_err());
    assert_eq!(
        Template::parse("${{uri}}").unwrap().render(&values),
        "${uri}"
    );
}

#[test]
fn from_dir_reports_files() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Catalog::from_dir(dir.path()),
        Err(CatalogError::Empty { .. })
    ));
    std::fs::write(dir.path().join("demo.toml"), MINIMAL).unwrap();
    std::fs::write(dir.path().join("README"), "not an app").unwrap();
    let catalog = Catalog::from_dir(dir.path()).unwrap();
    assert_eq!(catalog.apps().count(), 1);
    std::fs::write(dir.path().join("bad.toml"), MINIMAL).unwrap();
    let err = Catalog::from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("bad.toml") && err.contains("name"), "{err}");
    assert!(matches!(
        Catalog::from_dir(&dir.path().join("missing")),
        Err(CatalogError::ReadDir { .. })
    ));
}

#[test]
fn data_files_are_rendered_and_checked() {
    // Syncthing's initial configuration: relays only, no listener of its
    // own on the node's addresses, no reports sent out.
    let spec = Catalog::builtin()
        .unwrap()
        .get("syncthing")
        .unwrap()
        .render(&ctx())
        .unwrap();
    assert_eq!(spec.data_files.len(), 1);
    let config = &spec.data_files[0];
    assert_eq!(config.name, "config/config.xml");
    assert!(
        config.content.contains(
            "<listenAddress>dynamic+https://relays.syncthing.net/endpoint</listenAddress>"
        ),
        "{}",
        config.content
    );
    assert!(
        config
            .content
            .contains("<localAnnounceEnabled>false</localAnnounceEnabled>")
    );
    assert!(config.content.contains("<urAccepted>-1</urAccepted>"));

    let with = |path: &str| {
        format!("{MINIMAL}\n[[data_files]]\npath = {path:?}\ncontent = \"port {{port}}\"\n")
    };
    let rendered = parse(&with("conf/a.txt")).unwrap().render(&ctx()).unwrap();
    assert_eq!(rendered.data_files[0].content, "port 20001");
    for bad in ["../x", "/etc/x", "a//b", "", "a/../b"] {
        refused(&with(bad), "data_files[0].path");
    }
    let twice = format!(
        "{}[[data_files]]\npath = \"conf/a.txt\"\ncontent = \"\"\n",
        with("conf/a.txt")
    );
    refused(&twice, "data_files[1].path");
    refused(
        &format!("{MINIMAL}\n[[data_files]]\npath = \"a\"\ncontent = \"\\u0007\"\n"),
        "data_files[0].content",
    );
}

//! The app rules on crafted values, and an `AppSpec` as the controller
//! renders it, field by field.

use std::collections::HashMap;

use super::*;
use crate::agent::v1::AppFile;

const UID: u32 = 200_000;
const VOLUME: &str = "0123456789abcdef";

/// Radicale for asso-x, as the controller renders it from the catalog.
fn radicale() -> AppSpec {
    let data = "/srv/tenants/asso-x/data/apps/radicale";
    AppSpec {
        tenant: "asso-x".into(),
        app: "radicale".into(),
        state: AppState::Running.into(),
        packages: vec!["radicale".into()],
        package_units: vec!["radicale.service".into()],
        exec: "/usr/bin/radicale".into(),
        args: vec![
            "--server-hosts".into(),
            "127.0.0.1:20000".into(),
            "--storage-filesystem-folder".into(),
            format!("{data}/collections"),
        ],
        environment: HashMap::from([("HOME".into(), data.into())]),
        port: 20000,
        data_dir: data.into(),
        data_dirs: vec!["collections".into()],
        config_dir: "/etc/coloc/apps/asso-x-radicale".into(),
        files: vec![AppFile {
            name: "extra.conf".into(),
            content: "[auth]\ntype = htpasswd\n".into(),
        }],
        uid: UID,
        gid: UID,
        memory_max_bytes: 256 * 1024 * 1024,
        cpu_quota_percent: 50,
        hostname: "radicale.asso-x.coloc.test".into(),
        health: Some(app_spec::Health::HealthHttpPath("/.web/".into())),
        restart_nonce: 0,
        volume_id: VOLUME.into(),
        proxy_upstream_host: false,
        outbound: false,
        inbound: Vec::new(),
        web_auth: crate::agent::v1::WebAuth::Own as i32,
        web_login: None,
        data_files: Vec::new(),
    }
}

#[test]
fn a_rendered_spec_is_accepted_with_its_derived_values() {
    let ok = AppDecl::from_spec(&radicale(), Some("coloc.test")).expect("valid");
    assert_eq!(ok.unit.as_str(), "coloc-app-asso-x-radicale.service");
    assert_eq!(ok.volume_path, "/srv/tenants/asso-x/data");
    assert_eq!(ok.data_dirs, vec![vec!["collections".to_string()]]);
    assert_eq!(
        ok.health,
        HealthCheck::Http {
            path: "/.web/".into()
        }
    );
    assert_eq!(ok.packages[0].as_str(), "radicale");
    // Without a proxy domain, any domain under the app's own names.
    assert!(AppDecl::from_spec(&radicale(), None).is_ok());
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
        ("exec too long", |s| {
            s.exec = format!("/{}", "a".repeat(255))
        }),
        ("arg newline", |s| {
            s.args.push("a\nExecStartPre=/bin/sh".into())
        }),
        ("arg too long", |s| {
            s.args.push("a".repeat(MAX_VALUE_LEN + 1))
        }),
        ("too many args", |s| s.args = vec!["a".into(); MAX_ARGS + 1]),
        ("env key", |s| {
            s.environment = HashMap::from([("home".into(), "x".into())]);
        }),
        ("env key dash", |s| {
            s.environment = HashMap::from([("A-B".into(), "x".into())]);
        }),
        ("env value newline", |s| {
            s.environment = HashMap::from([("A".into(), "x\ny".into())]);
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
        ("data_dirs too deep", |s| {
            s.data_dirs = vec!["a/b/c/d/e/f/g/h/i".into()];
        }),
        ("config_dir", |s| s.config_dir = "/etc/coloc".into()),
        ("file name slash", |s| {
            s.files[0].name = "../agent.toml".into()
        }),
        ("file name upper", |s| s.files[0].name = "A.conf".into()),
        ("file twice", |s| {
            let f = s.files[0].clone();
            s.files.push(f);
        }),
        ("file too large", |s| {
            s.files[0].content = "x".repeat(MAX_FILE_BYTES + 1);
        }),
        ("uid root", |s| s.uid = 0),
        ("gid system", |s| s.gid = 100),
        ("uid nobody", |s| s.uid = 65534),
        ("uid -1", |s| s.uid = u32::MAX),
        ("cpu quota", |s| s.cpu_quota_percent = MAX_CPU_PERCENT + 1),
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
        ("package read by apt as a removal", |s| {
            s.packages = vec!["radicale-".into()]
        }),
        ("package unit", |s| {
            s.package_units = vec!["radicale".into()]
        }),
        ("package unit is coloc's", |s| {
            s.package_units = vec!["coloc-agent.service".into()]
        }),
        ("package unit is the instance's", |s| {
            s.package_units = vec!["coloc-app-asso-x-radicale.service".into()]
        }),
        ("health path", |s| {
            s.health = Some(app_spec::Health::HealthHttpPath(
                "/ HTTP/1.0\r\nX: y".into(),
            ));
        }),
        ("state", |s| s.state = 42),
        ("volume id", |s| s.volume_id = "../x".into()),
        ("package unit is ssh", |s| {
            s.package_units = vec!["ssh.service".into()]
        }),
        ("package unit is systemd's", |s| {
            s.package_units = vec!["systemd-resolved.service".into()]
        }),
        ("inbound below 1024", |s| {
            s.inbound = vec![inbound(443, pb::Transport::Tcp)]
        }),
        ("inbound in the app port range", |s| {
            s.inbound = vec![inbound(20_001, pb::Transport::Tcp)]
        }),
        ("inbound without transport", |s| {
            s.inbound = vec![inbound(5222, pb::Transport::Unspecified)]
        }),
        ("inbound twice", |s| {
            s.inbound = vec![inbound(5222, pb::Transport::Tcp); 2]
        }),
        ("inbound is the loopback port", |s| {
            s.port = 5222;
            s.inbound = vec![inbound(5222, pb::Transport::Tcp)];
        }),
        ("too many inbound", |s| {
            s.inbound = (0..=MAX_INBOUND_PORTS as u32)
                .map(|i| inbound(5000 + i, pb::Transport::Udp))
                .collect();
        }),
    ];
    for (what, mutate) in cases {
        let mut spec = radicale();
        mutate(&mut spec);
        assert!(
            AppDecl::from_spec(&spec, Some("coloc.test")).is_err(),
            "{what} should be refused"
        );
    }
}

fn inbound(port: u32, transport: pb::Transport) -> pb::InboundPort {
    pb::InboundPort {
        port,
        transport: transport.into(),
    }
}

#[test]
fn inbound_ports_and_outbound_access_are_carried_over_sorted() {
    let mut spec = radicale();
    let ok = AppDecl::from_spec(&spec, None).expect("valid");
    assert!(!ok.outbound && ok.inbound.is_empty(), "closed by default");
    spec.outbound = true;
    spec.inbound = vec![
        inbound(5269, pb::Transport::Tcp),
        inbound(5222, pb::Transport::Udp),
        inbound(5222, pb::Transport::Tcp),
    ];
    let ok = AppDecl::from_spec(&spec, None).expect("valid");
    assert!(ok.outbound);
    let shown: Vec<String> = ok.inbound.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["5222/tcp", "5222/udp", "5269/tcp"]);
    let wire: Vec<pb::InboundPort> = ok.inbound.iter().copied().map(Into::into).collect();
    assert_eq!(wire[2], inbound(5269, pb::Transport::Tcp));
}

#[test]
fn inbound_ports_read_as_the_catalog_writes_them() {
    let port: InboundPort = "5222/tcp".parse().expect("valid");
    assert_eq!(
        port,
        InboundPort {
            port: 5222,
            transport: Transport::Tcp
        }
    );
    assert_eq!(
        "19999/udp".parse::<InboundPort>().expect("valid").port,
        19_999
    );
    for bad in [
        "",
        "5222",
        "5222/",
        "/tcp",
        "5222/TCP",
        "5222/sctp",
        "+5222/tcp",
        " 5222/tcp",
        "5222/tcp ",
        "0/tcp",
        "22/tcp",
        "443/udp",
        "1023/tcp",
        "20000/tcp",
        "65535/udp",
        "99999999/tcp",
        "5222/tcp/x",
    ] {
        assert!(bad.parse::<InboundPort>().is_err(), "{bad:?}");
    }
}

#[test]
fn the_identity_survives_a_spec_that_is_otherwise_unusable() {
    let mut spec = radicale();
    spec.exec = "not a path".into();
    assert!(AppDecl::from_spec(&spec, None).is_err());
    let id = AppIdentity::try_from(&spec).expect("tenant and app are fine");
    assert_eq!(id.unit.as_str(), "coloc-app-asso-x-radicale.service");
    assert_eq!(id.config_dir, "/etc/coloc/apps/asso-x-radicale");
    spec.app = "Radicale".into();
    assert!(AppIdentity::try_from(&spec).is_err());
}

#[test]
fn app_names() {
    for ok in ["a", "radicale", "site2", &"a".repeat(31)] {
        assert!(AppName::new(ok).is_ok(), "{ok}");
    }
    for bad in ["", "2site", "radi-cale", "Radicale", "a.b", &"a".repeat(32)] {
        let err = AppName::new(bad).unwrap_err().to_string();
        assert!(err.starts_with("invalid app name"), "{err}");
    }
}

#[test]
fn package_names_follow_debian_policy() {
    for ok in ["radicale", "nginx-light", "g++", "libc6.1", "0ad"] {
        assert!(PackageName::new(ok).is_ok(), "{ok}");
    }
    for bad in ["", "a", "-x", "Radicale", "a b", "a;b", &"a".repeat(129)] {
        assert!(PackageName::new(bad).is_err(), "{bad}");
    }
}

#[test]
fn env_keys_file_names_and_paths() {
    assert!(check_env_key("HOME").is_ok());
    assert!(check_env_key("_X1").is_ok());
    assert!(check_env_key(&"A".repeat(MAX_ENV_KEY_LEN)).is_ok());
    for bad in [
        "",
        "1A",
        "a",
        "A-B",
        "A B",
        &"A".repeat(MAX_ENV_KEY_LEN + 1),
    ] {
        assert!(check_env_key(bad).is_err(), "{bad}");
    }
    for ok in ["extra.conf", ".hidden", "a_b-c"] {
        assert!(check_file_name("file", ok).is_ok(), "{ok}");
    }
    for bad in ["", ".", "..", "a..b", "a/b", "A", &"a".repeat(65)] {
        assert!(check_file_name("file", bad).is_err(), "{bad}");
    }
    assert_eq!(
        check_data_subdir("a/b.c").unwrap(),
        vec!["a".to_string(), "b.c".to_string()]
    );
    for bad in ["/a", "a//b", "a/../b", "a/"] {
        assert!(check_data_subdir(bad).is_err(), "{bad}");
    }
    assert!(check_probe_path("/.web/").is_ok());
    for bad in ["", "x", "/a b", "/\u{e9}", &format!("/{}", "a".repeat(200))] {
        assert!(check_probe_path(bad).is_err(), "{bad}");
    }
    assert!(check_exec("/usr/bin/radicale").is_ok());
    assert!(check_exec("/usr/lib/g++-12/x_y.z").is_ok());
}

#[test]
fn path_shapes() {
    let tenant = TenantName::new("asso-x").unwrap();
    let app = AppName::new("site").unwrap();
    let volume = VolumeName::new("web").unwrap();
    assert_eq!(
        app_unit(&tenant, &app).as_str(),
        "coloc-app-asso-x-site.service"
    );
    assert_eq!(app_config_dir(&tenant, &app), "/etc/coloc/apps/asso-x-site");
    assert_eq!(
        app_data_dir(&tenant, &volume, &app),
        "/srv/tenants/asso-x/web/apps/site"
    );
    assert_eq!(
        app_hostname(&app, &tenant, "coloc.test"),
        "site.asso-x.coloc.test"
    );
}

#[test]
fn proxy_settings() {
    let ok = ProxyDecl::try_from(&ProxySpec {
        domain: "encommun.org".into(),
        acme_email: "admin+acme@encommun.org".into(),
    })
    .unwrap();
    assert_eq!(ok.acme_email.as_deref(), Some("admin+acme@encommun.org"));
    let internal = ProxyDecl::try_from(&ProxySpec {
        domain: "coloc.test".into(),
        acme_email: String::new(),
    })
    .unwrap();
    assert_eq!(internal.acme_email, None);
    let long = format!("{}.org", "a.".repeat(80));
    for domain in [
        "",
        "localhost",
        "Coloc.test",
        "a..b",
        "-a.b",
        "a b.c",
        long.as_str(),
    ] {
        let spec = ProxySpec {
            domain: domain.into(),
            acme_email: String::new(),
        };
        let err = ProxyDecl::try_from(&spec).expect_err(domain);
        assert!(err.to_string().contains("proxy domain"), "{err}");
    }
    for email in [
        "a",
        "@x.org",
        "a@",
        "a@localhost",
        "a b@x.org",
        "a\"@x.org",
        "a%b@x.org",
        "a@X.org",
        "a@x.org\n}",
        "{a}@x.org",
    ] {
        assert!(check_acme_email(email).is_err(), "{email:?}");
    }
    assert!(check_acme_email("a.b_c-d+e@mail.x.org").is_ok());
}

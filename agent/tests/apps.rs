//! The app reconciler over in-memory systemd, apt and journal, writing
//! into a temporary root: what an admin approves is what the node runs,
//! sandboxed and behind the proxy; a crafted value can never add a
//! directive or leave the tenant's directory; one broken instance never
//! holds the others back; and a second pass changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use coloc_agent::apps::probe::{ProbeOutcome, probe};
use coloc_agent::apps::unit::{quote_environment, quote_exec_word};
use coloc_agent::apps::{
    AppDecl, AppsReport, HealthCheck, Site, app_logs, reconcile_apps, render_caddyfile, render_unit,
};
use coloc_agent::desired::Desired;
use coloc_agent::host::{
    FakeHost, Host, HostError, Journal, JournalPage, Packages, UnitDetails, UnitName, UnitOp,
    UnitState, Units,
};
use coloc_agent::reconcile::Reconciler;
use coloc_agent::status::{AgentStatus, Outcome, StatusHub};
use coloc_proto::agent::v1::{
    AppFile, AppSpec, AppState, DesiredConfig, GetAppLogs, PoolKind, PoolLayout, PoolSpec,
    ProxySpec, VolumePhase, VolumeSpec, VolumeState, VolumeStatus, app_spec,
};
use coloc_proto::apps::ProxyDecl;
use coloc_proto::domain::NodeName;
use coloc_proto::error_chain;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const VOLUME: &str = "00000000000000a1";
const OTHER_VOLUME: &str = "00000000000000b2";
const UID: u32 = 200_001;
const GID: u32 = 200_001;
const UNIT: &str = "coloc-app-asso-x-radicale.service";

// ------------------------------------------------------------- the fakes

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct UnitsState {
    /// Every call, in order: "start x.service", "daemon-reload", ...
    log: Vec<String>,
    /// Units shipped by packages: known without a file under the root.
    shipped: BTreeSet<String>,
    /// What systemd has loaded: shipped units and the unit files found
    /// under the root at the last daemon-reload.
    loaded: BTreeSet<String>,
    /// (active_state, sub_state, result, restarts).
    state: BTreeMap<String, (String, String, String, u32)>,
    enabled: BTreeSet<String>,
    masked: BTreeSet<String>,
    /// Units whose process exits at once: systemd restarts them until the
    /// start limit, then leaves them failed.
    crashing: BTreeSet<String>,
}

/// systemd as the app reconciler sees it. It loads unit files from the
/// test root only on daemon-reload, as systemd does, so a unit started
/// before a reload is an error here too.
struct TestUnits {
    root: PathBuf,
    state: Mutex<UnitsState>,
}

impl TestUnits {
    fn new(root: &Path) -> TestUnits {
        TestUnits {
            root: root.to_path_buf(),
            state: Mutex::default(),
        }
    }

    fn ship(&self, unit: &str) {
        let mut s = lock(&self.state);
        s.shipped.insert(unit.into());
        s.loaded.insert(unit.into());
    }

    fn set_crashing(&self, unit: &str) {
        lock(&self.state).crashing.insert(unit.into());
    }

    fn log(&self) -> Vec<String> {
        lock(&self.state).log.clone()
    }

    fn clear_log(&self) {
        lock(&self.state).log.clear();
    }

    fn count(&self, entry: &str) -> usize {
        lock(&self.state).log.iter().filter(|e| *e == entry).count()
    }

    fn enabled(&self, unit: &str) -> bool {
        lock(&self.state).enabled.contains(unit)
    }

    fn masked(&self, unit: &str) -> bool {
        lock(&self.state).masked.contains(unit)
    }

    fn active_state(&self, unit: &str) -> String {
        lock(&self.state)
            .state
            .get(unit)
            .map_or("inactive".into(), |s| s.0.clone())
    }

    fn record(&self, op: &str, unit: &UnitName) -> MutexGuard<'_, UnitsState> {
        let mut s = lock(&self.state);
        s.log.push(format!("{op} {unit}"));
        s
    }

    fn run(&self, op: &str, unit: &UnitName) -> Result<(), HostError> {
        let mut s = self.record(op, unit);
        let name = unit.as_str();
        if !s.loaded.contains(name) {
            return Err(HostError::NoSuchUnit { unit: unit.clone() });
        }
        if s.masked.contains(name) {
            return Err(HostError::UnitJob {
                unit: unit.clone(),
                op: UnitOp::Start,
                result: "masked".into(),
            });
        }
        let state = if s.crashing.contains(name) {
            (
                "failed".into(),
                "failed".into(),
                "start-limit-hit".into(),
                4,
            )
        } else {
            ("active".into(), "running".into(), "success".into(), 0)
        };
        s.state.insert(name.into(), state);
        Ok(())
    }
}

#[async_trait]
impl Units for TestUnits {
    async fn unit_state(&self, unit: &UnitName) -> Result<UnitState, HostError> {
        let d = self.details(unit).await?;
        Ok(UnitState {
            active_state: d.active_state,
            sub_state: d.sub_state,
            load_state: d.load_state,
        })
    }

    async fn start(&self, unit: &UnitName) -> Result<(), HostError> {
        self.run("start", unit)
    }

    async fn stop(&self, unit: &UnitName) -> Result<(), HostError> {
        let mut s = self.record("stop", unit);
        s.state.remove(unit.as_str());
        Ok(())
    }

    async fn restart(&self, unit: &UnitName) -> Result<(), HostError> {
        self.run("restart", unit)
    }

    async fn reload_or_restart(&self, unit: &UnitName) -> Result<(), HostError> {
        self.run("reload-or-restart", unit)
    }

    async fn daemon_reload(&self) -> Result<(), HostError> {
        let mut files = BTreeSet::new();
        if let Ok(entries) = std::fs::read_dir(self.root.join("etc/systemd/system")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".service") {
                    files.insert(name);
                }
            }
        }
        let mut s = lock(&self.state);
        s.log.push("daemon-reload".into());
        s.loaded = s.shipped.union(&files).cloned().collect();
        Ok(())
    }

    async fn enable(&self, unit: &UnitName) -> Result<(), HostError> {
        let mut s = self.record("enable", unit);
        if !s.loaded.contains(unit.as_str()) {
            return Err(HostError::NoSuchUnit { unit: unit.clone() });
        }
        s.enabled.insert(unit.to_string());
        Ok(())
    }

    async fn disable(&self, unit: &UnitName) -> Result<(), HostError> {
        let mut s = self.record("disable", unit);
        s.enabled.remove(unit.as_str());
        Ok(())
    }

    async fn mask(&self, unit: &UnitName) -> Result<(), HostError> {
        let mut s = self.record("mask", unit);
        s.masked.insert(unit.to_string());
        Ok(())
    }

    async fn reset_failed(&self, unit: &UnitName) -> Result<(), HostError> {
        let mut s = self.record("reset-failed", unit);
        if s.state
            .get(unit.as_str())
            .is_some_and(|st| st.0 == "failed")
        {
            s.state.remove(unit.as_str());
        }
        Ok(())
    }

    async fn details(&self, unit: &UnitName) -> Result<UnitDetails, HostError> {
        let s = lock(&self.state);
        let load_state = if s.loaded.contains(unit.as_str()) {
            "loaded"
        } else {
            "not-found"
        };
        let (active, sub, result, restarts) = s.state.get(unit.as_str()).cloned().unwrap_or((
            "inactive".into(),
            "dead".into(),
            "success".into(),
            0,
        ));
        let memory_bytes = (active == "active").then_some(42 * 1024 * 1024);
        Ok(UnitDetails {
            active_state: active,
            sub_state: sub,
            load_state: load_state.into(),
            restarts,
            memory_bytes,
            result,
        })
    }
}

/// apt: records what it was asked to install; some names are unknown.
#[derive(Default)]
struct TestPackages {
    installed: Mutex<Vec<String>>,
    unknown: Mutex<BTreeSet<String>>,
}

impl TestPackages {
    fn installed(&self) -> Vec<String> {
        lock(&self.installed).clone()
    }
}

#[async_trait]
impl Packages for TestPackages {
    async fn ensure_installed(&self, packages: &[String]) -> Result<(), HostError> {
        if let Some(p) = packages.iter().find(|p| lock(&self.unknown).contains(*p)) {
            return Err(HostError::Refused {
                object: p.clone(),
                reason: "no such package in the archive".into(),
            });
        }
        let mut installed = lock(&self.installed);
        for p in packages {
            if !installed.contains(p) {
                installed.push(p.clone());
            }
        }
        Ok(())
    }
}

/// The journal: fixed lines per unit; records what was asked.
#[derive(Default)]
struct TestJournal {
    lines: Mutex<BTreeMap<String, Vec<String>>>,
    asked: Mutex<Vec<(String, u32, Option<String>)>>,
}

#[async_trait]
impl Journal for TestJournal {
    async fn unit_lines(
        &self,
        unit: &UnitName,
        lines: u32,
        after_cursor: Option<&str>,
    ) -> Result<JournalPage, HostError> {
        lock(&self.asked).push((unit.to_string(), lines, after_cursor.map(str::to_owned)));
        let all = lock(&self.lines)
            .get(unit.as_str())
            .cloned()
            .unwrap_or_default();
        let n = usize::try_from(lines).unwrap_or(usize::MAX);
        let tail = all[all.len().saturating_sub(n)..].to_vec();
        Ok(JournalPage {
            cursor: format!("s=1;i={}", all.len()),
            lines: tail,
        })
    }
}

/// One node: a temporary root with tenant asso-x's volume mounted at
/// /srv/tenants/asso-x/data, and the fakes.
struct Node {
    root: tempfile::TempDir,
    units: Arc<TestUnits>,
    packages: Arc<TestPackages>,
    journal: Arc<TestJournal>,
    fake: FakeHost,
}

impl Node {
    fn new() -> Node {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("srv/tenants/asso-x/data")).expect("mount point");
        std::fs::create_dir_all(root.path().join("srv/tenants/asso-y/files")).expect("mount point");
        let units = Arc::new(TestUnits::new(root.path()));
        units.ship("caddy.service");
        units.ship("radicale.service");
        Node {
            units,
            packages: Arc::default(),
            journal: Arc::default(),
            fake: FakeHost::new("n1"),
            root,
        }
    }

    fn host(&self) -> Host {
        Host {
            units: self.units.clone(),
            packages: self.packages.clone(),
            journal: self.journal.clone(),
            ..self.fake.host()
        }
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.root.path().join(abs.trim_start_matches('/'))
    }

    fn read(&self, abs: &str) -> String {
        std::fs::read_to_string(self.path(abs)).unwrap_or_else(|e| panic!("{abs}: {e}"))
    }

    fn exists(&self, abs: &str) -> bool {
        self.path(abs).symlink_metadata().is_ok()
    }

    fn meta(&self, abs: &str) -> (u32, u32, u32) {
        let m = self
            .path(abs)
            .symlink_metadata()
            .unwrap_or_else(|e| panic!("{abs}: {e}"));
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777)
    }

    async fn pass(&self, apps: &[AppSpec], proxy: Option<&ProxySpec>) -> AppsReport {
        self.pass_with(apps, proxy, &volumes()).await
    }

    /// An app pass over `apps` and `proxy` as they arrive on the node:
    /// converted with the rest of a desired configuration first.
    async fn pass_with(
        &self,
        apps: &[AppSpec],
        proxy: Option<&ProxySpec>,
        volumes: &[VolumeStatus],
    ) -> AppsReport {
        let desired = Desired::try_from(&config(apps, proxy))
            .unwrap_or_else(|e| panic!("a valid configuration: {}", error_chain(&e)));
        reconcile_apps(
            &self.host(),
            self.root.path(),
            &desired.apps,
            desired.proxy.as_ref(),
            volumes,
        )
        .await
    }
}

/// A desired configuration holding `apps` and `proxy`.
fn config(apps: &[AppSpec], proxy: Option<&ProxySpec>) -> DesiredConfig {
    DesiredConfig {
        generation: 1,
        node_name: "n1".into(),
        apps: apps.to_vec(),
        proxy: proxy.cloned(),
        ..DesiredConfig::default()
    }
}

/// Why the node refuses a configuration holding `apps` and `proxy`.
fn refusal(apps: &[AppSpec], proxy: Option<&ProxySpec>) -> String {
    error_chain(&Desired::try_from(&config(apps, proxy)).expect_err("refused"))
}

fn proxy_decl(spec: &ProxySpec) -> ProxyDecl {
    ProxyDecl::try_from(spec).expect("valid proxy settings")
}

fn ready(id: &str, mount_path: &str) -> VolumeStatus {
    VolumeStatus {
        id: id.into(),
        phase: VolumePhase::Ready.into(),
        mount_path: mount_path.into(),
        mounted: true,
        ..VolumeStatus::default()
    }
}

fn volumes() -> Vec<VolumeStatus> {
    vec![
        ready(VOLUME, "/srv/tenants/asso-x/data"),
        ready(OTHER_VOLUME, "/srv/tenants/asso-y/files"),
    ]
}

fn proxy() -> ProxySpec {
    ProxySpec {
        domain: "coloc.test".into(),
        acme_email: String::new(),
    }
}

/// Radicale for asso-x, as the controller renders it from the catalog.
fn radicale(port: u16) -> AppSpec {
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
            format!("127.0.0.1:{port}"),
            "--storage-filesystem-folder".into(),
            format!("{data}/collections"),
        ],
        environment: HashMap::from([("HOME".into(), data.into())]),
        port: port.into(),
        data_dir: data.into(),
        data_dirs: vec!["collections".into()],
        config_dir: "/etc/coloc/apps/asso-x-radicale".into(),
        files: vec![AppFile {
            name: "extra.conf".into(),
            content: "[auth]\ntype = htpasswd\n".into(),
        }],
        uid: UID,
        gid: GID,
        memory_max_bytes: 256 * 1024 * 1024,
        cpu_quota_percent: 50,
        hostname: "radicale.asso-x.coloc.test".into(),
        health: Some(app_spec::Health::HealthHttpPath("/.web/".into())),
        restart_nonce: 0,
        volume_id: VOLUME.into(),
        proxy_upstream_host: false,
    }
}

/// A static site for asso-y, probed by TCP.
fn site(port: u16) -> AppSpec {
    let data = "/srv/tenants/asso-y/files/apps/site";
    AppSpec {
        tenant: "asso-y".into(),
        app: "site".into(),
        state: AppState::Running.into(),
        packages: vec!["nginx-light".into()],
        exec: "/usr/sbin/nginx".into(),
        args: vec!["-c".into(), "/etc/coloc/apps/asso-y-site/nginx.conf".into()],
        port: port.into(),
        data_dir: data.into(),
        config_dir: "/etc/coloc/apps/asso-y-site".into(),
        files: vec![AppFile {
            name: "nginx.conf".into(),
            content: format!("http {{ server {{ listen 127.0.0.1:{port}; root {data}; }} }}\n"),
        }],
        uid: 200_002,
        gid: 200_002,
        hostname: "site.asso-y.coloc.test".into(),
        health: Some(app_spec::Health::HealthTcp(true)),
        volume_id: OTHER_VOLUME.into(),
        ..AppSpec::default()
    }
}

/// An HTTP server on 127.0.0.1 answering every request with `status`;
/// returns its port and the requests it got.
async fn http_server(status: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                lock(&seen).push(String::from_utf8_lossy(&got).into_owned());
                let answer = format!("HTTP/1.0 {status} Whatever\r\nContent-Length: 0\r\n\r\n");
                let _ignored = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, requests)
}

fn status<'a>(report: &'a AppsReport, app: &str) -> &'a coloc_proto::agent::v1::AppStatus {
    report
        .statuses
        .iter()
        .find(|s| s.app == app)
        .unwrap_or_else(|| panic!("no status for {app}: {report:#?}"))
}

// ------------------------------------------------------------- rendering

/// The unit of [`radicale`] on `port`, written out as systemd must read it.
fn radicale_unit(port: u16) -> String {
    format!(
        "\
# Written by coloc-agent from the node's desired configuration;
# local changes are overwritten.
[Unit]
Description=coloc app radicale of tenant asso-x
After=network.target
StartLimitIntervalSec=60
StartLimitBurst=5

[Service]
Type=simple
User=200001
Group=200001
ExecStart=\"/usr/bin/radicale\" \"--server-hosts\" \"127.0.0.1:{port}\" \"--storage-filesystem-folder\" \"/srv/tenants/asso-x/data/apps/radicale/collections\"
Environment=\"HOME=/srv/tenants/asso-x/data/apps/radicale\"
WorkingDirectory=/srv/tenants/asso-x/data/apps/radicale
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictNamespaces=yes
CapabilityBoundingSet=
AmbientCapabilities=
TemporaryFileSystem=/srv/tenants:ro
BindPaths=/srv/tenants/asso-x/data/apps/radicale
ReadWritePaths=/srv/tenants/asso-x/data/apps/radicale
ReadOnlyPaths=/etc/coloc/apps/asso-x-radicale
MemoryMax=268435456
CPUQuota=50%
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
"
    )
}

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
    // doubled. systemd's own parser reads it back in tests/e2e_apps.rs.
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

// ------------------------------------------------------------- passes

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
             {{\n\tlocal_certs\n}}\n\
             \nradicale.asso-x.coloc.test {{\n\treverse_proxy 127.0.0.1:{port}\n}}\n"
        )
    );
    assert!(node.units.enabled("caddy.service"));
    assert_eq!(node.units.active_state("caddy.service"), "active");
    assert_eq!(node.units.count("reload-or-restart caddy.service"), 0);
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
    assert_eq!(node.units.count("reload-or-restart caddy.service"), 1);

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
    assert!(!log.iter().any(|e| e == "enable caddy.service"), "{log:#?}");

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

// ------------------------------------------------------------- reconciler

fn tank() -> PoolSpec {
    PoolSpec {
        name: "tank".into(),
        kind: PoolKind::Zfs.into(),
        layout: PoolLayout::Single.into(),
        disks: vec!["serial:SIM-n1-1".into()],
        force: false,
    }
}

fn data_volume() -> VolumeSpec {
    VolumeSpec {
        id: VOLUME.into(),
        tenant: "asso-x".into(),
        name: "data".into(),
        pool: "tank".into(),
        pool_kind: PoolKind::Zfs.into(),
        size_bytes: 1024 * 1024 * 1024,
        state: VolumeState::Active.into(),
        owner_uid: UID,
        owner_gid: GID,
        ..VolumeSpec::default()
    }
}

#[tokio::test]
async fn the_reconciler_runs_apps_after_storage_and_reports_them() {
    let node = Node::new();
    let reconciler = Reconciler::new(
        NodeName::new("n1").unwrap(),
        node.host(),
        StatusHub::new(AgentStatus::default()),
    )
    .with_root(node.root.path());
    assert_eq!(reconciler.root(), node.root.path());
    let (port, _) = http_server(200).await;
    let desired = DesiredConfig {
        generation: 3,
        node_name: "n1".into(),
        pools: vec![tank()],
        volumes: vec![data_volume()],
        apps: vec![radicale(port), site(port + 1)],
        proxy: Some(proxy()),
        ..DesiredConfig::default()
    };
    let report = reconciler.reconcile(&desired).await;
    // The storage pass made asso-x's volume READY; asso-y has none here.
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(
        report.message.contains("apps: asso-y/site: volume"),
        "{}",
        report.message
    );
    let observed = report.to_observed();
    assert_eq!(observed.apps.len(), 2);
    assert_eq!(observed.apps[0].active_state, "active");
    assert!(
        observed.apps[0].error.is_empty(),
        "{}",
        observed.apps[0].error
    );
    assert!(observed.apps[1].error.contains("not ready"));
    assert!(node.exists(&format!("/etc/systemd/system/{UNIT}")));
}

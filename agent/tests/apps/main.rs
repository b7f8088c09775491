//! The app reconciler over in-memory systemd, apt and journal, writing
//! into a temporary root: what an admin approves is what the node runs,
//! sandboxed and behind the proxy; a crafted value can never add a
//! directive or leave the tenant's directory; one broken instance never
//! holds the others back; and a second pass changes nothing.

mod passes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use coloc_agent::apps::probe::{ProbeOutcome, probe};
use coloc_agent::apps::unit::{quote_environment, quote_exec_word};
use coloc_agent::apps::{
    AppDecl, AppsReport, HealthCheck, LOCKED_BODY, Site, SiteAccess, app_logs, reconcile_apps,
    render_caddyfile, render_unit,
};
use coloc_agent::desired::Desired;
use coloc_agent::host::{
    FakeHost, Host, HostError, Journal, JournalEntry, JournalPage, Packages, UnitDetails, UnitName,
    UnitOp, UnitState, Units,
};
use coloc_agent::reconcile::Reconciler;
use coloc_agent::status::{AgentStatus, Outcome, StatusHub};
use coloc_proto::agent::v1::{
    AppFile, AppSpec, AppState, DesiredConfig, GetAppLogs, PoolKind, PoolLayout, PoolSpec,
    ProxySpec, VolumePhase, VolumeSpec, VolumeState, VolumeStatus, WebAuth, WebLogin, app_spec,
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
    async fn unit_files(&self, package: &str) -> Result<BTreeSet<UnitName>, HostError> {
        // Each package ships the unit of its own name, as Debian's do.
        let unit = UnitName::new(format!("{package}.service")).map_err(|e| HostError::Refused {
            object: package.into(),
            reason: e.to_string(),
        })?;
        Ok(BTreeSet::from([unit]))
    }

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
        let start = all.len().saturating_sub(n);
        Ok(JournalPage {
            cursor: format!("s=1;i={}", all.len()),
            entries: all[start..]
                .iter()
                .zip(start + 1..)
                .map(|(line, i)| JournalEntry {
                    line: line.clone(),
                    cursor: format!("s=1;i={i}"),
                })
                .collect(),
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
        units.ship("coloc-proxy.service");
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
        web_auth: WebAuth::Own.into(),
        ..AppSpec::default()
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
        web_auth: WebAuth::Public.into(),
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
            access: SiteAccess::Open,
        },
        Site {
            hostname: "radicale.asso-x.coloc.test".into(),
            port: 20000,
            upstream_host: false,
            access: SiteAccess::Open,
        },
    ];
    let text = render_caddyfile(&proxy_decl(&proxy()), &sites).unwrap();
    assert_eq!(
        text,
        "# Written by coloc-agent from the node's desired configuration;\n\
         # local changes are overwritten.\n\
         {\n\tadmin unix//run/coloc-proxy/admin.sock\n\tlocal_certs\n}\n\
         \nradicale.asso-x.coloc.test {\n\treverse_proxy 127.0.0.1:20000\n}\n\
         \nsite.asso-y.coloc.test {\n\treverse_proxy 127.0.0.1:20001 {\n\t\theader_up Host {upstream_hostport}\n\t}\n}\n"
    );
    let acme = ProxySpec {
        acme_email: "admin@encommun.org".into(),
        ..proxy()
    };
    let text = render_caddyfile(&proxy_decl(&acme), &[]).unwrap();
    assert!(text.contains("\n\temail admin@encommun.org\n}\n"), "{text}");
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
        access: SiteAccess::Open,
    };
    assert!(render_caddyfile(&proxy_decl(&proxy()), &[bad_site]).is_err());
}

const HASH: &str = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";

/// Syncthing for asso-x: no login of its own, the proxy asks for one.
fn syncthing(port: u16, login: Option<WebLogin>) -> AppSpec {
    let data = "/srv/tenants/asso-x/data/apps/syncthing";
    AppSpec {
        tenant: "asso-x".into(),
        app: "syncthing".into(),
        state: AppState::Running.into(),
        packages: vec!["syncthing".into()],
        exec: "/usr/bin/syncthing".into(),
        args: vec!["serve".into(), format!("--gui-address=127.0.0.1:{port}")],
        port: port.into(),
        data_dir: data.into(),
        config_dir: "/etc/coloc/apps/asso-x-syncthing".into(),
        uid: UID,
        gid: GID,
        hostname: "syncthing.asso-x.coloc.test".into(),
        health: Some(app_spec::Health::HealthTcp(true)),
        volume_id: VOLUME.into(),
        proxy_upstream_host: true,
        outbound: true,
        web_auth: WebAuth::Proxy.into(),
        web_login: login,
        ..AppSpec::default()
    }
}

#[test]
fn an_app_without_a_login_is_published_only_behind_the_proxys() {
    let locked = AppDecl::from_spec(&syncthing(20002, None), Some("coloc.test")).unwrap();
    let login = WebLogin {
        user: "asso-x".into(),
        password_hash: HASH.into(),
    };
    let open =
        AppDecl::from_spec(&syncthing(20002, Some(login.clone())), Some("coloc.test")).unwrap();
    let site = |app: &AppDecl| Site {
        hostname: app.hostname.clone(),
        port: app.port,
        upstream_host: app.proxy_upstream_host,
        access: SiteAccess::from(&app.web),
    };

    // No password yet: 503, and the app is not even named upstream.
    let text = render_caddyfile(&proxy_decl(&proxy()), &[site(&locked)]).unwrap();
    assert!(
        text.ends_with(&format!(
            "\nsyncthing.asso-x.coloc.test {{\n\trespond \"{LOCKED_BODY}\" 503\n}}\n"
        )),
        "{text}"
    );
    assert!(!text.contains("reverse_proxy"), "{text}");

    // With a login: basic authentication with the base64 of the hash (Caddy
    // 2.6), the Authorization header kept from the app, the Host rewrite.
    let text = render_caddyfile(&proxy_decl(&proxy()), &[site(&open)]).unwrap();
    let encoded = "JDJiJDEyJFI5aC9jSVB6MGdpLlVSTk5YM2toMk9QU1Q5L1BnQmtxcXV6aS5Tczd\
                   LSVVnTzJ0MGpXTVVX";
    assert!(
        text.ends_with(&format!(
            "\nsyncthing.asso-x.coloc.test {{\n\tbasicauth {{\n\t\tasso-x {encoded}\n\t}}\n\
             \treverse_proxy 127.0.0.1:20002 {{\n\t\theader_up -Authorization\n\
             \t\theader_up Host {{upstream_hostport}}\n\t}}\n}}\n"
        )),
        "{text}"
    );
    assert!(!text.contains(HASH), "only the encoded hash: {text}");

    // A login comes only with the proxy's protection, and each of its
    // words is checked: nothing can open a Caddyfile block.
    let mut own = syncthing(20002, Some(login.clone()));
    own.web_auth = WebAuth::Own.into();
    assert!(AppDecl::from_spec(&own, Some("coloc.test")).is_err());
    let mut unset = syncthing(20002, None);
    unset.web_auth = WebAuth::Unspecified.into();
    assert!(AppDecl::from_spec(&unset, Some("coloc.test")).is_err());
    for (user, hash) in [
        ("asso-x\n}\nimport /etc/*", HASH),
        ("asso x", HASH),
        ("asso-x", "plain password"),
        ("asso-x", &HASH.replace("R9h", "R9}")),
    ] {
        let crafted = WebLogin {
            user: user.into(),
            password_hash: hash.into(),
        };
        assert!(
            AppDecl::from_spec(&syncthing(20002, Some(crafted)), Some("coloc.test")).is_err(),
            "{user:?} {hash:?}"
        );
        let forged = Site {
            access: SiteAccess::Login {
                user: user.into(),
                hash: hash.into(),
            },
            ..site(&locked)
        };
        assert!(
            render_caddyfile(&proxy_decl(&proxy()), &[forged]).is_err(),
            "{user:?} {hash:?}"
        );
    }
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

//! The app reconciler over in-memory systemd, apt and journal, writing
//! into a temporary root: what an admin approves is what the node runs,
//! sandboxed and behind the proxy; a crafted value can never add a
//! directive or leave the tenant's directory; one broken instance never
//! holds the others back; and a second pass changes nothing.

mod passes;
mod rendering;

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
// ------------------------------------------------------------- expected text

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

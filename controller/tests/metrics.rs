//! colocd's /metrics as Prometheus sees it: the rendered text passes
//! `promtool check metrics`; the shipped alerting rules pass `promtool
//! check rules` and their own `promtool test rules`; the endpoint refuses
//! scrapes without the bearer token; and a real Prometheus (Debian's
//! `prometheus`) scrapes a test endpoint with the token, loads the rules,
//! and answers every expression of every panel of the Grafana dashboard
//! with data. promtool and prometheus come from `tools/install-deps`.

mod support;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coloc_controller::metrics::{
    FleetSnapshot, FleetSource, Metrics, MetricsConfig, SnapshotError, render, serve_listener,
};
use support::fleet::{CRAFTED_MODEL, fleet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "test-token-0123456789abcdef";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The test's one spawn point: Debian's promtool or prometheus, by
/// absolute path, with a cleared environment. The coloc-host runner is
/// for the agent's host commands; these are the test's own tools, one of
/// them a server the test keeps running.
#[allow(clippy::disallowed_methods)]
fn tool(name: &str) -> Command {
    let path = ["/usr/bin", "/usr/local/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} not found: install Debian's `prometheus` package (tools/install-deps)")
        });
    let mut cmd = Command::new(path);
    cmd.env_clear().env("LC_ALL", "C");
    cmd
}

fn metrics_with_calls() -> Metrics {
    let m = Metrics::new();
    m.observe_rpc(
        "coloc.controller.v1.Nodes",
        "ListNodes",
        tonic::Code::Ok,
        Duration::from_millis(3),
    );
    m.observe_rpc(
        "coloc.controller.v1.Nodes",
        "GetNode",
        tonic::Code::NotFound,
        Duration::from_micros(400),
    );
    m.observe_store("nodes.list", Duration::from_micros(800));
    m
}

/// The value of the one sample whose line starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<String> {
    let mut found = text.lines().filter(|l| l.starts_with(prefix));
    let line = found.next()?;
    assert!(
        found.next().is_none(),
        "more than one sample starts with {prefix}"
    );
    line.rsplit(' ').next().map(str::to_string)
}

#[test]
fn render_passes_promtool_check_metrics_and_says_what_the_fleet_is() {
    let text = render(&fleet(30, now_unix()), &metrics_with_calls());

    let mut child = tool("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The crafted model is one escaped label value, on one line.
    let escaped = CRAFTED_MODEL
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    let line = text
        .lines()
        .find(|l| {
            l.starts_with(
                "coloc_disk_size_bytes{node=\"node-00000\",serial=\"serial\\\\with\\\"quote\"",
            )
        })
        .expect("the crafted disk is rendered");
    assert!(line.contains(&format!("model=\"{escaped}\"")), "{line}");
    assert!(!text.lines().any(|l| l.starts_with("newline }")));

    // Node 1 raises NVMe critical warning 4 on its first disk.
    assert_eq!(
        sample(
            &text,
            "coloc_disk_nvme_critical_warning{node=\"node-00001\",serial=\"S000001D0\""
        )
        .as_deref(),
        Some("4")
    );
    // Node 3's third disk fails SMART; node 4's fourth is unreadable: no
    // values at all, one unknown series instead.
    assert_eq!(
        sample(
            &text,
            "coloc_disk_smart_passed{node=\"node-00003\",serial=\"S000003D2\""
        )
        .as_deref(),
        Some("0")
    );
    assert!(!text.contains("node=\"node-00004\",serial=\"S000004D3\",model=\"WDC WD40EFRX-68N32N0\",device=\"/dev/sdb\"} 3"));
    assert_eq!(
        sample(
            &text,
            "coloc_disk_temperature_celsius{node=\"node-00004\",serial=\"S000004D3\""
        ),
        None
    );
    assert_eq!(
        sample(
            &text,
            "coloc_health_unknown{node=\"node-00004\",source=\"disks\",subject=\"/dev/sdb\"}"
        )
        .as_deref(),
        Some("1")
    );
    // Node 2's pool is degraded, and only degraded.
    assert_eq!(
        sample(
            &text,
            "coloc_zfs_pool_state{node=\"node-00002\",pool=\"tank\",state=\"degraded\"}"
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(
            &text,
            "coloc_zfs_pool_state{node=\"node-00002\",pool=\"tank\",state=\"online\"}"
        )
        .as_deref(),
        Some("0")
    );
    // A node that never connected is down, with no last-seen time.
    assert_eq!(
        sample(&text, "coloc_node_up{node=\"node-new\"").as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(
            &text,
            "coloc_node_last_seen_timestamp_seconds{node=\"node-new\"}"
        ),
        None
    );
    assert_eq!(
        sample(&text, "coloc_node_generation_lag{node=\"node-new\"}").as_deref(),
        Some("1")
    );
    // The repeated sensor label is written once.
    assert_eq!(
        sample(
            &text,
            "coloc_temperature_celsius{node=\"node-00000\",sensor=\"acpitz temp1\"}"
        )
        .as_deref(),
        Some("27.8")
    );
    // Every rule has its series, firing or not.
    assert_eq!(
        sample(
            &text,
            "coloc_alerts_firing{rule=\"health-unknown\",severity=\"warning\"}"
        )
        .as_deref(),
        Some("0")
    );
    assert_eq!(
        sample(
            &text,
            "colocd_rpc_duration_seconds_bucket{service=\"coloc.controller.v1.Nodes\",method=\"GetNode\",code=\"NotFound\",le=\"0.0005\"}"
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(
            &text,
            "colocd_store_duration_seconds_count{op=\"nodes.list\"}"
        )
        .as_deref(),
        Some("1")
    );
}

#[test]
fn alerting_rules_pass_promtool_check_and_their_tests() {
    let dir = repo().join("deploy/prometheus");
    for args in [
        &["check", "rules", "coloc-rules.yml"][..],
        &["test", "rules", "coloc-rules.test.yml"][..],
    ] {
        let out = tool("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_example_metrics_section_parses() {
    // The example keeps [metrics] commented out (absent = off); uncommented,
    // it must be a valid section.
    let example = std::fs::read_to_string(repo().join("controller/examples/colocd.toml")).unwrap();
    let start = example
        .find("# [metrics]")
        .expect("colocd.toml has a commented [metrics] example");
    let section: String = example[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        .map(|l| format!("{l}\n"))
        .collect();
    #[derive(serde::Deserialize)]
    struct File {
        metrics: MetricsConfig,
    }
    let parsed: File = toml::from_str(&section).unwrap_or_else(|e| panic!("{section}: {e}"));
    assert_eq!(parsed.metrics.listen.port(), 9464);
    assert!(parsed.metrics.bearer_token_file.is_some());
}

/// The fleet, counting how many snapshots were taken.
struct Fleet {
    snapshots: AtomicUsize,
    fail: bool,
}

#[async_trait]
impl FleetSource for Fleet {
    async fn snapshot(&self) -> Result<FleetSnapshot, SnapshotError> {
        self.snapshots.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(SnapshotError::new("the store is closed"));
        }
        Ok(fleet(5, now_unix()))
    }
}

struct Endpoint {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    async fn start(token: Option<&str>, fail: bool, metrics: Arc<Metrics>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let source = Arc::new(Fleet {
            snapshots: AtomicUsize::new(0),
            fail,
        });
        let token = token.map(str::to_string);
        let task = tokio::spawn(async move {
            serve_listener(listener, token, source, metrics, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the endpoint stops")
            .unwrap();
    }
}

/// One HTTP/1.0 request (no chunked answers): status and body.
async fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    try_http(addr, method, path, token)
        .await
        .unwrap_or_else(|| panic!("cannot connect to {addr}"))
}

/// As [`http`], None when nothing listens yet.
async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within 30 s")
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head}"));
    Some((status, body.to_string()))
}

#[tokio::test]
async fn the_endpoint_wants_the_token_and_serves_only_metrics() {
    let ep = Endpoint::start(Some(TOKEN), false, Arc::new(Metrics::new())).await;
    assert_eq!(http(ep.addr, "GET", "/metrics", None).await.0, 401);
    assert_eq!(
        http(
            ep.addr,
            "GET",
            "/metrics",
            Some("test-token-0123456789abcdeX")
        )
        .await
        .0,
        401
    );
    assert_eq!(
        http(ep.addr, "GET", "/metrics", Some(&TOKEN[..TOKEN.len() - 1]))
            .await
            .0,
        401
    );
    let (status, body) = http(ep.addr, "GET", "/metrics", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(body.contains("coloc_node_up{node=\"node-00000\",site=\"site-0\"} 1\n"));
    assert_eq!(http(ep.addr, "GET", "/", Some(TOKEN)).await.0, 404);
    assert_eq!(http(ep.addr, "GET", "/metricsx", Some(TOKEN)).await.0, 404);
    assert_eq!(http(ep.addr, "POST", "/metrics", Some(TOKEN)).await.0, 405);
    let (status, body) = http(ep.addr, "HEAD", "/metrics", Some(TOKEN)).await;
    assert_eq!((status, body.as_str()), (200, ""));
    ep.stop().await;

    // Without a token configured, anyone on the (loopback) address may
    // scrape; a failing source gives 503, not an empty or partial page.
    let ep = Endpoint::start(None, true, Arc::new(Metrics::new())).await;
    let (status, body) = http(ep.addr, "GET", "/metrics", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("snapshot"), "{body}");
    ep.stop().await;
}

/// Prometheus run for one test: killed on drop, its log printed if the
/// test fails.
struct Prometheus {
    child: std::process::Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- prometheus log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_prometheus(target: SocketAddr) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::copy(
        repo().join("deploy/prometheus/coloc-rules.yml"),
        dir.path().join("coloc-rules.yml"),
    )
    .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - coloc-rules.yml\n\
         scrape_configs:\n  - job_name: colocd\n    authorization:\n      type: Bearer\n      \
         credentials_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
        token_file.display()
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.path().join("prometheus.log");
    let child = tool("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Prometheus {
        child,
        addr,
        log,
        _dir: dir,
    }
}

fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The result vector of an instant query (empty while there is no data).
async fn query(prom: SocketAddr, expr: &str) -> Vec<serde_json::Value> {
    let (status, body) = http(
        prom,
        "GET",
        &format!("/api/v1/query?query={}", encode(expr)),
        None,
    )
    .await;
    assert_eq!(status, 200, "query {expr}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Every panel's expressions, with Grafana's variables given the values
/// "All" and a short rate interval give them.
fn dashboard_expressions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/coloc-fleet.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            walk(&p["panels"], out);
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_default();
                assert!(
                    !expr.is_empty(),
                    "panel {} has a target without expr",
                    p["title"]
                );
                let expr = expr
                    .replace("$node", ".*")
                    .replace("$__rate_interval", "1m");
                out.push((p["title"].as_str().unwrap_or_default().to_string(), expr));
            }
        }
    }
    walk(&dash["panels"], &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_with_the_token_and_every_dashboard_panel_has_data() {
    let metrics = Arc::new(Metrics::new());
    let ep = Endpoint::start(Some(TOKEN), false, Arc::clone(&metrics)).await;
    let prom = start_prometheus(ep.addr);
    let expressions = dashboard_expressions();
    assert!(expressions.len() >= 30, "the dashboard has its panels");

    let deadline = Instant::now() + Duration::from_secs(120);
    let wait = |what: String| {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} (prometheus at {})",
            prom.addr
        );
        tokio::time::sleep(Duration::from_millis(250))
    };

    loop {
        if let Some((200, _)) = try_http(prom.addr, "GET", "/-/ready", None).await {
            break;
        }
        wait("prometheus to be ready".into()).await;
    }
    // Scraped with the token: the target is up.
    while query(prom.addr, "up{job=\"colocd\"} == 1").await.len() != 1 {
        wait("the colocd target to be up".into()).await;
    }
    // Calls keep coming, so that rates are not empty.
    for (title, expr) in &expressions {
        loop {
            metrics.observe_rpc(
                "coloc.controller.v1.Nodes",
                "ListNodes",
                tonic::Code::Ok,
                Duration::from_millis(2),
            );
            metrics.observe_store("nodes.list", Duration::from_micros(300));
            if !query(prom.addr, expr).await.is_empty() {
                break;
            }
            wait(format!("data for panel {title:?}: {expr}")).await;
        }
    }
    // The shipped rules load and evaluate without error on these metrics.
    loop {
        let (status, body) = http(prom.addr, "GET", "/api/v1/rules", None).await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let rules: Vec<&serde_json::Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        assert!(rules.len() >= 25, "rules loaded: {body}");
        let bad: Vec<_> = rules
            .iter()
            .filter(|r| r["health"] == "err")
            .map(|r| format!("{}: {}", r["name"], r["lastError"]))
            .collect();
        assert!(bad.is_empty(), "rules failing: {bad:?}");
        if rules.iter().all(|r| r["health"] == "ok") {
            // The synthetic fleet's degraded pool fires its alert.
            let firing = query(prom.addr, "ALERTS{alertname=\"ColocZfsPoolDegraded\"}").await;
            if !firing.is_empty() {
                break;
            }
        }
        wait("the rules to be evaluated".into()).await;
    }
    drop(prom);
    ep.stop().await;
}

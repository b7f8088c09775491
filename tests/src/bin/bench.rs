//! coloc-bench: N simulated agents against one colocd running as its own
//! process (so its memory is measured alone), on this machine's loopback.
//!
//! Measures: time to enroll and connect all N, heartbeat ingest rate,
//! time for one fleet-wide desired-configuration change to be
//! acknowledged by all N (as recorded by the controller), and colocd's
//! peak RSS. Prints a Markdown table row and a JSON line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use coloc_agent::{AgentHandle, SimAgentSpec, spawn_sim_agent};
use coloc_controller::config::ControllerConfig;
use coloc_proto::controller::v1 as pb;
use coloc_tests::{Context, Remote, Result, all_nodes, bail, create_site, join_token, programs};
use futures::StreamExt;

#[derive(Debug, Parser)]
#[command(
    name = "coloc-bench",
    about = "Fleet benchmark: simulated agents against one colocd"
)]
struct Args {
    /// Number of simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// The colocd binary to run.
    #[arg(long, default_value = "target/release/colocd")]
    colocd: PathBuf,
    /// Heartbeat interval the controller hands out, in seconds.
    #[arg(long, default_value_t = 1)]
    heartbeat_secs: u32,
    /// How long to count heartbeats for, in seconds.
    #[arg(long, default_value_t = 10)]
    window_secs: u64,
    /// Agents started per second (a fleet powering on, not a thundering herd).
    #[arg(long, default_value_t = 2000)]
    ramp_per_sec: usize,
    /// Give up on any phase after this many seconds.
    #[arg(long, default_value_t = 900)]
    deadline_secs: u64,
    /// Once the fleet is settled, watch colocd's CPU and memory over this
    /// many periods (each agent reports its health once a period).
    #[arg(long, default_value_t = 3)]
    observe_periods: u32,
    /// The length of one observed period, in seconds: colocd's health
    /// period (60 s by default).
    #[arg(long, default_value_t = 60)]
    period_secs: u64,
}

/// Raises the open-file limit (inherited by colocd): as root beyond the
/// hard limit if the kernel allows, else up to the hard limit.
fn raise_nofile() -> Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let want = hard.max(65_536);
    if setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return Ok(want);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The CPU time a process has used so far (user and system), in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may
    // hold spaces: state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Some((utime + stime) as f64 / tick)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn until<F: FnMut() -> bool>(what: &str, deadline: Duration, mut f: F) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > deadline {
            bail!("{what}: not reached after {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Colocd {
    child: tokio::process::Child,
}

impl Colocd {
    async fn start(bin: &Path, dir: &Path, heartbeat: u32) -> Result<(Self, u16)> {
        let port = free_port()?;
        let status = programs::colocd(bin)
            .args(["init", "--data-dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .status()
            .await
            .with_context(|| format!("cannot run {}", bin.display()))?;
        if !status.success() {
            bail!("colocd init failed: {status}");
        }
        let cfg_path = dir.join("colocd.toml");
        let mut cfg = ControllerConfig::load(&cfg_path)?;
        cfg.heartbeat_interval_secs = heartbeat;
        cfg.unreachable_after_secs = 120;
        // Every simulated agent dials from 127.0.0.1: the per-address
        // limits, meant for one site's few servers, would hold them back.
        cfg.max_connections = 1_000_000;
        cfg.max_connections_per_address = cfg.max_connections;
        cfg.enrollments_per_minute = 1_000_000;
        std::fs::write(&cfg_path, cfg.to_toml())?;
        let log = std::fs::File::create(dir.join("colocd.log"))?;
        let child = programs::colocd(bin)
            .args(["serve", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        Ok((Self { child }, port))
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let nofile = raise_nofile()?;
    // colocd and this process each hold one socket per agent.
    if (nofile as usize) < args.agents + 1000 {
        bail!(
            "open-file limit {nofile} is too low for {} agents",
            args.agents
        );
    }
    let deadline = Duration::from_secs(args.deadline_secs);
    let work = tempfile::tempdir()?;
    let data = work.path().join("colocd");
    let (mut colocd, _port) = Colocd::start(&args.colocd, &data, args.heartbeat_secs).await?;
    let pid = colocd.pid();
    let remote = Remote::from_admin_config(&data.join("admin.toml"))?;
    let start = Instant::now();
    let mut api = loop {
        match remote.api().await {
            Ok(api) => break api,
            Err(_) if start.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.context("colocd did not start")),
        }
    };
    eprintln!("colocd pid {pid} up; creating {} join tokens", args.agents);
    create_site(&mut api, "bench-1").await?;
    let t = Instant::now();
    let tokens: Vec<String> = futures::stream::iter(0..args.agents)
        .map(|_| {
            let mut api = api.clone();
            async move { join_token(&mut api, "bench-1", 3600).await }
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let token_secs = t.elapsed().as_secs_f64();

    eprintln!("starting {} agents at {}/s", args.agents, args.ramp_per_sec);
    let agents_dir = work.path().join("agents");
    let t_enroll = Instant::now();
    let mut agents: Vec<AgentHandle> = Vec::with_capacity(args.agents);
    let batch = (args.ramp_per_sec / 10).max(1);
    for (i, token) in tokens.into_iter().enumerate() {
        agents.push(spawn_sim_agent(SimAgentSpec {
            node_name: format!("b{i}"),
            controller: remote.url.clone(),
            ca_pem: remote.ca_pem.clone(),
            join_token: token,
            state_dir: agents_dir.join(format!("b{i}")),
            backoff_initial_ms: 200,
            backoff_max_ms: 5000,
        }));
        if (i + 1) % batch == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let statuses: Vec<_> = agents.iter().map(|a| a.status()).collect();
    let enrolled = until("all enrolled", deadline, || {
        statuses.iter().all(|s| s.borrow().enrolled)
    })
    .await?;
    let enrolled = t_enroll.elapsed().max(enrolled);
    let connected = until("all connected", deadline, || {
        statuses
            .iter()
            .all(|s| s.borrow().connected && s.borrow().applied_generation >= 1)
    })
    .await?;
    let connected = t_enroll.elapsed().max(connected);
    let stats = api
        .nodes
        .get_controller_stats(pb::GetControllerStatsRequest {})
        .await?
        .into_inner();
    if stats.sessions as usize != args.agents {
        bail!(
            "controller holds {} sessions, expected {}",
            stats.sessions,
            args.agents
        );
    }
    eprintln!(
        "enrolled in {:.1}s, all connected in {:.1}s",
        enrolled.as_secs_f64(),
        connected.as_secs_f64()
    );

    // Heartbeat ingest over a window.
    let sent0: u64 = statuses.iter().map(|s| s.borrow().heartbeats_sent).sum();
    let h0 = stats.heartbeats;
    let t_hb = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.window_secs)).await;
    let stats1 = api
        .nodes
        .get_controller_stats(pb::GetControllerStatsRequest {})
        .await?
        .into_inner();
    let window = t_hb.elapsed().as_secs_f64();
    let sent1: u64 = statuses.iter().map(|s| s.borrow().heartbeats_sent).sum();
    let ingest = (stats1.heartbeats - h0) as f64 / window;
    let offered = (sent1 - sent0) as f64 / window;
    eprintln!("heartbeats: offered {offered:.0}/s, ingested {ingest:.0}/s");

    // One fleet-wide change, acknowledged by every node.
    let t_change = Instant::now();
    let changed = api
        .nodes
        .set_node_labels(pb::SetNodeLabelsRequest {
            nodes: vec![],
            set: [("bench".to_string(), "go".to_string())].into(),
            remove: vec![],
        })
        .await?
        .into_inner();
    let target = changed
        .updated
        .first()
        .map(|n| n.desired_generation)
        .unwrap_or(2);
    let rpc = t_change.elapsed();
    let agents_applied = until("all agents applied", deadline, || {
        statuses
            .iter()
            .all(|s| s.borrow().applied_generation >= target)
    })
    .await?;
    let agents_applied = t_change.elapsed().max(agents_applied);
    let acked = loop {
        let nodes = all_nodes(&mut api).await?;
        let done = nodes
            .iter()
            .filter(|n| n.applied_generation >= target)
            .count();
        if done == args.agents {
            break t_change.elapsed();
        }
        if t_change.elapsed() > deadline {
            bail!("only {done} of {} acknowledged", args.agents);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "change: rpc {:.2}s, applied by all agents {:.2}s, acknowledged in controller {:.2}s",
        rpc.as_secs_f64(),
        agents_applied.as_secs_f64(),
        acked.as_secs_f64()
    );

    // colocd's share of one core over whole health periods, the fleet
    // settled: every agent reports once a period, heartbeats go on.
    let mut periods = Vec::new();
    let mut reports0 = api
        .nodes
        .get_controller_stats(pb::GetControllerStatsRequest {})
        .await?
        .into_inner()
        .health_reports;
    for n in 1..=args.observe_periods {
        let (cpu0, t0) = (cpu_secs(pid).unwrap_or(0.0), Instant::now());
        tokio::time::sleep(Duration::from_secs(args.period_secs)).await;
        let cpu = cpu_secs(pid).unwrap_or(0.0) - cpu0;
        let share = 100.0 * cpu / t0.elapsed().as_secs_f64();
        let rss = proc_kib(pid, "VmRSS:").unwrap_or(0) / 1024;
        let stats = api
            .nodes
            .get_controller_stats(pb::GetControllerStatsRequest {})
            .await?
            .into_inner();
        let reports = stats.health_reports - reports0;
        reports0 = stats.health_reports;
        eprintln!(
            "period {n}: colocd used {cpu:.1} s of CPU ({share:.1} % of one core), RSS {rss} MiB, {reports} health reports accepted"
        );
        periods.push(serde_json::json!({
            "cpu_secs": cpu,
            "cpu_share_percent": share,
            "rss_mib": rss,
            "health_reports_accepted": reports,
        }));
    }

    let peak_kib = proc_kib(pid, "VmHWM:").unwrap_or(0);
    let rss_kib = proc_kib(pid, "VmRSS:").unwrap_or(0);
    let self_kib = proc_kib(std::process::id(), "VmHWM:").unwrap_or(0);

    let stop = futures::future::join_all(agents.into_iter().map(|a| a.shutdown()));
    let _ = tokio::time::timeout(Duration::from_secs(60), stop).await;
    if let Some(id) = colocd.child.id() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(id as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), colocd.child.wait()).await;

    println!(
        "| {} | {:.1} | {:.1} | {:.0} / {:.0} | {:.2} | {:.2} | {} | {} |",
        args.agents,
        enrolled.as_secs_f64(),
        connected.as_secs_f64(),
        ingest,
        offered,
        agents_applied.as_secs_f64(),
        acked.as_secs_f64(),
        peak_kib / 1024,
        self_kib / 1024,
    );
    println!(
        "{}",
        serde_json::json!({
            "agents": args.agents,
            "join_tokens_secs": token_secs,
            "enrolled_secs": enrolled.as_secs_f64(),
            "connected_secs": connected.as_secs_f64(),
            "heartbeat_interval_secs": args.heartbeat_secs,
            "heartbeats_ingested_per_sec": ingest,
            "heartbeats_offered_per_sec": offered,
            "change_rpc_secs": rpc.as_secs_f64(),
            "change_applied_by_agents_secs": agents_applied.as_secs_f64(),
            "change_acknowledged_secs": acked.as_secs_f64(),
            "colocd_peak_rss_mib": peak_kib / 1024,
            "colocd_rss_end_mib": rss_kib / 1024,
            "bench_process_peak_rss_mib": self_kib / 1024,
            "period_secs": args.period_secs,
            "periods": periods,
        })
    );
    Ok(())
}

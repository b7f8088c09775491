//! coloc-bench-agent: what the agent costs a node, side by side with
//! Debian's prometheus-node-exporter in the same guest. The node image
//! boots in QEMU (TCG here) with a ZFS pool, one volume and one app (the
//! static site), the agent collecting health on colocd's default period
//! (60 s); node_exporter is installed from Debian in the same guest and
//! scraped every 15 s by a loop inside the guest (its own unit, so its
//! cost counts for neither). Over the window, every 15 s: each service's
//! CPU from its cgroup (`cpu.stat` `usage_usec`: the process and every
//! child it ran, smartctl and zpool included) and its main process's RSS
//! (`VmRSS`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use coloc_controller::config::{ControllerConfig, HealthConfig};
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::lab::{Lab, NodeSpec, diagnosed, nvme, vm_config};
use coloc_tests::*;
use coloc_vm::Vm;

const MIB: u64 = 1024 * 1024;
const DEADLINE: Duration = Duration::from_secs(1800);
const AGENT: &str = "coloc-agent.service";
const EXPORTER: &str = "prometheus-node-exporter.service";
/// How often Prometheus would scrape node_exporter, and how often the
/// bench samples both.
const EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Parser)]
#[command(
    name = "coloc-bench-agent",
    about = "The agent's RSS and CPU with health collection on, next to node_exporter"
)]
struct Args {
    /// The node image (coloc-image build).
    #[arg(long)]
    image: PathBuf,
    /// coloc-image, to write the seed.
    #[arg(long)]
    coloc_image: PathBuf,
    /// The measured window, in minutes.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
}

/// One service's readings at one moment.
#[derive(Debug, Clone, Copy)]
struct Reading {
    cpu_usec: u64,
    rss_kib: u64,
}

/// Prints, for each unit, `unit cpu_usec rss_kib`.
const READ: &str = r#"for u in "$@"; do
  pid=$(systemctl show -p MainPID --value "$u")
  cpu=$(awk '/^usage_usec/ {print $2}' "/sys/fs/cgroup/system.slice/$u/cpu.stat")
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  echo "$u $cpu $rss"
done"#;

async fn read(vm: &Vm) -> Result<BTreeMap<String, Reading>> {
    let out = vm
        .succeed(&["sh", "-c", READ, "read", AGENT, EXPORTER])
        .await?;
    let mut readings = BTreeMap::new();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [unit, cpu, rss] = words[..] else {
            bail!("unexpected reading {line:?} in {out:?}");
        };
        readings.insert(
            unit.to_string(),
            Reading {
                cpu_usec: cpu.parse().with_context(|| format!("cpu in {line:?}"))?,
                rss_kib: rss.parse().with_context(|| format!("rss in {line:?}"))?,
            },
        );
    }
    for unit in [AGENT, EXPORTER] {
        if !readings.contains_key(unit) {
            bail!("no reading for {unit} in {out:?}");
        }
    }
    Ok(readings)
}

/// What one service cost over the window.
struct Cost {
    cpu_secs: f64,
    rss_mean_mib: f64,
    rss_max_mib: f64,
}

fn cost(samples: &[BTreeMap<String, Reading>], unit: &str) -> Cost {
    let first = samples[0][unit];
    let last = samples[samples.len() - 1][unit];
    let rss: Vec<f64> = samples
        .iter()
        .map(|s| s[unit].rss_kib as f64 / 1024.0)
        .collect();
    Cost {
        cpu_secs: (last.cpu_usec - first.cpu_usec) as f64 / 1e6,
        rss_mean_mib: rss.iter().sum::<f64>() / rss.len() as f64,
        rss_max_mib: rss.iter().cloned().fold(0.0, f64::max),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut lab = Lab::start_with(
        ControllerConfig {
            // colocd's defaults, as a node in production sees them.
            heartbeat_interval_secs: 10,
            health: HealthConfig::default(),
            ..vm_config()
        },
        args.image.clone(),
        args.coloc_image.clone(),
        "coloc-bench",
    )
    .await?;
    let mut node = NodeSpec::new("n1");
    node.disks = vec![nvme("COLOCZ01", 2048)];
    node.disk_size_mib = 6144;
    let vm = lab.boot(&node).await?;
    let result = run(&args, &lab, &vm).await;
    let (samples, reports, window) = diagnosed(&vm, result).await?;

    let agent = cost(&samples, AGENT);
    let exporter = cost(&samples, EXPORTER);
    let window_secs = window.as_secs_f64();
    println!("accelerator: {:?}", coloc_vm::qemu_accel());
    println!(
        "window: {window_secs:.0} s, {} samples every {} s; health reports colocd accepted from the node in the window: {reports}",
        samples.len(),
        EVERY.as_secs()
    );
    println!();
    println!(
        "| process | mean RSS (MiB) | max RSS (MiB) | CPU over the window (s) | CPU share of one core (%) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, c) in [
        ("coloc-agent (health every 60 s)", &agent),
        ("prometheus-node-exporter (scraped every 15 s)", &exporter),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.2} | {:.2} |",
            c.rss_mean_mib,
            c.rss_max_mib,
            c.cpu_secs,
            100.0 * c.cpu_secs / window_secs
        );
    }
    println!();
    println!(
        "agent / node_exporter: mean RSS {:.2}, CPU {:.2} (aims: at most 0.33 and 0.25)",
        agent.rss_mean_mib / exporter.rss_mean_mib,
        agent.cpu_secs / exporter.cpu_secs
    );
    Ok(())
}

type Samples = Vec<BTreeMap<String, Reading>>;

async fn run(args: &Args, lab: &Lab, vm: &Vm) -> Result<(Samples, u64, Duration)> {
    let mut admin = lab.admin.clone();
    lab.wait_ready("n1", DEADLINE).await?;
    vm.wait_for_ssh(DEADLINE).await?;

    // ---- a node as members use it: a pool, a volume, an app
    create_pool(
        &mut admin,
        "n1",
        "tank",
        apb::PoolKind::Zfs,
        "serial:COLOCZ01",
    )
    .await?;
    create_tenant(&mut admin, "bench-a", pb::Offer::Participatif).await?;
    create_volume(
        &mut admin,
        NewVolume {
            tenant: "bench-a",
            name: "data",
            node: "n1",
            pool: "tank",
            size_bytes: 256 * MIB,
            encrypted: false,
        },
    )
    .await?;
    request_approved(&mut admin, "bench-a", "site", "n1", "").await?;
    wait_instance(&admin, "bench-a/site", "healthy", DEADLINE, |i| {
        i.observed
            .as_ref()
            .is_some_and(|o| o.active_state == "active" && o.healthy)
    })
    .await?;

    // ---- node_exporter from Debian, alone (without the recommended
    // textfile collectors and their timers), scraped from inside the guest
    eprintln!("installing prometheus-node-exporter in the guest");
    vm.succeed(&[
        "sh",
        "-c",
        "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q --no-install-recommends prometheus-node-exporter curl >/dev/null \
         && systemctl enable --now prometheus-node-exporter.service",
    ])
    .await?;
    let metrics = wait_for("node_exporter answering on :9100", DEADLINE, || async {
        vm.succeed(&["curl", "-sf", "http://127.0.0.1:9100/metrics"])
            .await
            .ok()
    })
    .await?;
    if !metrics.contains("node_cpu_seconds_total") {
        bail!("node_exporter's answer has no node_cpu_seconds_total");
    }
    vm.succeed(&[
        "systemd-run",
        "--unit=bench-scrape",
        "sh",
        "-c",
        "while :; do curl -sf -o /dev/null http://127.0.0.1:9100/metrics; sleep 15; done",
    ])
    .await?;

    // ---- a health period to settle, then the window
    eprintln!("settling for a minute");
    tokio::time::sleep(Duration::from_secs(60)).await;
    let stats = async |admin: &mut Api| -> Result<u64> {
        Ok(admin
            .nodes
            .get_controller_stats(pb::GetControllerStatsRequest {})
            .await?
            .into_inner()
            .health_reports)
    };
    let reports0 = stats(&mut admin).await?;
    let start = Instant::now();
    let window = Duration::from_secs(args.minutes * 60);
    let mut samples = vec![read(vm).await?];
    let mut next = start;
    while start.elapsed() < window {
        next += EVERY;
        tokio::time::sleep_until(next.into()).await;
        samples.push(read(vm).await?);
        if samples.len() % 4 == 1 {
            eprintln!(
                "{:.0} s: {:?}",
                start.elapsed().as_secs_f64(),
                samples.last()
            );
        }
    }
    let window = start.elapsed();
    let reports = stats(&mut admin).await? - reports0;
    if reports == 0 {
        bail!("no health report reached colocd in the window: health collection is off");
    }
    Ok((samples, reports, window))
}

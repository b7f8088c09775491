//! coloc-bench-apps: time from an admin's approval to a healthy instance,
//! for each catalog app, on the node image in QEMU (TCG here): first for
//! one tenant (packages not on the node: apt downloads them from Debian's
//! archive), then for a second tenant (packages already installed), and the
//! memory systemd reports for each instance (MemoryCurrent).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::lab::{Lab, NodeSpec, diagnosed, nvme, vm_config};
use coloc_tests::*;

const MIB: u64 = 1024 * 1024;
const DEADLINE: Duration = Duration::from_secs(1800);

#[derive(Debug, Parser)]
#[command(
    name = "coloc-bench-apps",
    about = "Approval to a healthy app instance, packages not installed and installed"
)]
struct Args {
    /// The node image (coloc-image build).
    #[arg(long)]
    image: PathBuf,
    /// coloc-image, to write the seed.
    #[arg(long)]
    coloc_image: PathBuf,
    /// Apps to deploy (catalog names).
    #[arg(long = "app", default_values_t = ["site".to_string(), "radicale".to_string()])]
    apps: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut lab = Lab::start_with(
        vm_config(),
        args.image.clone(),
        args.coloc_image.clone(),
        "coloc-bench",
    )
    .await?;
    let mut node = NodeSpec::new("n1");
    node.disks = vec![nvme("COLOCZ01", 2048)];
    node.disk_size_mib = 6144;
    let vm = lab.boot(&node).await?;
    let rows = diagnosed(&vm, run(&args, &mut lab.admin).await).await?;
    println!("accelerator: {:?}", coloc_vm::qemu_accel());
    println!();
    println!("| app | tenant | packages | approval → healthy (s) | MemoryCurrent (MiB) |");
    println!("|---|---|---|---:|---:|");
    for (app, tenant, packages, took, memory) in rows {
        println!(
            "| {app} | {tenant} | {packages} | {:.1} | {} |",
            took.as_secs_f64(),
            memory.map_or("—".to_string(), |m| format!(
                "{:.1}",
                m as f64 / MIB as f64
            ))
        );
    }
    Ok(())
}

type Row = (String, String, &'static str, Duration, Option<u64>);

async fn run(args: &Args, admin: &mut Api) -> Result<Vec<Row>> {
    wait_node_ready(admin, "n1", DEADLINE).await?;
    create_pool(admin, "n1", "tank", apb::PoolKind::Zfs, "serial:COLOCZ01").await?;
    for tenant in ["bench-a", "bench-b"] {
        create_tenant(admin, tenant, pb::Offer::Participatif).await?;
        let volume = NewVolume {
            tenant,
            name: "data",
            node: "n1",
            pool: "tank",
            size_bytes: 256 * MIB,
            encrypted: false,
        };
        create_volume(admin, volume).await?;
    }
    let mut rows = Vec::new();
    for (tenant, packages) in [("bench-a", "not installed"), ("bench-b", "installed")] {
        for app in &args.apps {
            let id = admin
                .apps
                .request_app(pb::RequestAppRequest {
                    tenant: tenant.into(),
                    app: app.clone(),
                    node: "n1".into(),
                    volume: String::new(),
                    comment: "benchmark".into(),
                })
                .await?
                .into_inner()
                .id;
            eprintln!("{tenant}/{app}: approving (packages {packages})");
            let start = Instant::now();
            admin
                .apps
                .approve_request(pb::DecideRequestRequest {
                    id,
                    comment: String::new(),
                })
                .await?;
            let name = format!("{tenant}/{app}");
            let healthy = wait_instance(admin, &name, "healthy", DEADLINE, |i| {
                i.observed
                    .as_ref()
                    .is_some_and(|o| o.active_state == "active" && o.healthy)
            })
            .await?;
            let status = healthy.observed.unwrap_or_default();
            let took = start.elapsed();
            eprintln!("{name}: healthy after {:.1}s", took.as_secs_f64());
            let memory = Some(status.memory_bytes).filter(|m| *m > 0);
            rows.push((app.clone(), tenant.to_string(), packages, took, memory));
        }
    }
    Ok(rows)
}

//! coloc-bench-apps: time from an admin's approval to a healthy instance,
//! for each catalog app, on the node image in QEMU (TCG here): first for
//! one tenant (packages not on the node: apt downloads them from Debian's
//! archive), then for a second tenant (packages already installed), and the
//! memory systemd reports for each instance (MemoryCurrent).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use coloc_controller::config::ControllerConfig;
use coloc_proto::agent::v1 as apb;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use coloc_vm::{Boot, DiskKind, DiskSpec, Vm, VmSpec};

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
    let work = tempfile::tempdir()?;
    let ctl = TestController::start_with(ControllerConfig {
        heartbeat_interval_secs: 5,
        unreachable_after_secs: 120,
        ..fast_config()
    })
    .await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    let key = work.path().join("id_ed25519");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "coloc-bench", "-f"])
        .arg(&key)
        .status()?
        .success();
    if !ok {
        bail!("ssh-keygen failed");
    }
    let token_file = work.path().join("token");
    std::fs::write(&token_file, join_token(&mut admin, "paris-1", 3600).await?)?;
    let seed = work.path().join("seed.img");
    let ok = std::process::Command::new(&args.coloc_image)
        .arg("seed")
        .args(["--hostname", "n1", "--site", "paris-1"])
        .args([
            "--controller",
            &format!("https://10.0.2.2:{}", ctl.addr().port()),
        ])
        .arg("--ca-file")
        .arg(ctl.data_dir().join("ca.pem"))
        .arg("--join-token-file")
        .arg(&token_file)
        .arg("--ssh-key-file")
        .arg(key.with_extension("pub"))
        .arg("-o")
        .arg(&seed)
        .status()?
        .success();
    if !ok {
        bail!("coloc-image seed failed");
    }
    let vm = Vm::start(
        VmSpec {
            name: "n1".into(),
            image: args.image.clone(),
            boot: Boot::Uefi,
            cpus: 2,
            memory_mib: 2048,
            disks: vec![DiskSpec {
                id: "COLOCZ01".into(),
                size_mib: 2048,
                kind: DiskKind::Nvme {
                    serial: "COLOCZ01".into(),
                },
            }],
            seed: Some(seed),
            forwards: vec![],
            ssh_key: Some(key),
            disk_size_mib: Some(6144),
        },
        work.path(),
    )
    .await?;
    let result = run(&args, &mut admin).await;
    if let Err(e) = &result {
        eprintln!("{e:#}\n{}", vm.dump_diagnostics().await);
    }
    let rows = result?;
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
    wait_for("n1 ready", DEADLINE, || {
        let mut admin = admin.clone();
        async move {
            let n = admin
                .nodes
                .get_node(pb::GetNodeRequest { name: "n1".into() })
                .await
                .ok()?
                .into_inner();
            (n.status == pb::NodeStatus::Ready as i32).then_some(())
        }
    })
    .await?;
    admin
        .storage
        .create_pool(pb::CreatePoolRequest {
            node: "n1".into(),
            name: "tank".into(),
            kind: apb::PoolKind::Zfs as i32,
            layout: apb::PoolLayout::Single as i32,
            disks: vec!["serial:COLOCZ01".into()],
            force: false,
        })
        .await?;
    for tenant in ["bench-a", "bench-b"] {
        create_tenant(admin, tenant, pb::Offer::Participatif).await?;
        admin
            .storage
            .create_volume(pb::CreateVolumeRequest {
                tenant: tenant.into(),
                name: "data".into(),
                node: "n1".into(),
                pool: "tank".into(),
                size_bytes: 256 * MIB,
                reservation_bytes: 0,
                encrypted: false,
            })
            .await?;
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
            let status = wait_for(&format!("{name} healthy"), DEADLINE, || {
                let mut admin = admin.clone();
                let name = name.clone();
                async move {
                    let i = admin
                        .apps
                        .get_instance(pb::InstanceRef { instance: name })
                        .await
                        .ok()?
                        .into_inner();
                    i.observed
                        .filter(|o| o.active_state == "active" && o.healthy)
                }
            })
            .await?;
            let took = start.elapsed();
            eprintln!("{name}: healthy after {:.1}s", took.as_secs_f64());
            let memory = Some(status.memory_bytes).filter(|m| *m > 0);
            rows.push((app.clone(), tenant.to_string(), packages, took, memory));
        }
    }
    Ok(rows)
}

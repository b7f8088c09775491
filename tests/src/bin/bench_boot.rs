//! coloc-bench-boot: how long a node takes from power-on to Ready in the
//! controller, against a plain Debian guest's time to multi-user.target,
//! both booted the same way (UEFI under QEMU, the same accelerator, CPUs
//! and memory) in the same run.
//!
//! Times are from starting QEMU: firmware, boot loader, kernel, systemd,
//! and for the node the seed, enrollment and the first session.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use coloc_controller::config::ControllerConfig;
use coloc_proto::controller::v1 as pb;
use coloc_tests::*;
use coloc_vm::{Boot, Vm, VmSpec};

const MULTI_USER: &str = "Reached target multi-user.target";
const DEADLINE: Duration = Duration::from_secs(900);

#[derive(Debug, Parser)]
#[command(
    name = "coloc-bench-boot",
    about = "Node boot time against a plain Debian baseline"
)]
struct Args {
    /// The node image (coloc-image build).
    #[arg(long)]
    image: PathBuf,
    /// coloc-image, to write seeds.
    #[arg(long)]
    coloc_image: PathBuf,
    /// Boots of each image.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Where the baseline guest is built and cached.
    #[arg(long, default_value = "target/tmp")]
    cache_dir: PathBuf,
}

fn spec(name: &str, image: PathBuf) -> VmSpec {
    VmSpec {
        cpus: 2,
        memory_mib: 2048,
        boot: Boot::Uefi,
        ..VmSpec::new(name, image)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let work = tempfile::tempdir()?;
    let mut rows = Vec::new();

    eprintln!("building or reusing the plain Debian baseline guest");
    let baseline = coloc_vm::baseline::guest(&args.cache_dir).await?;
    for run in 0..args.runs {
        let dir = work.path().join(format!("base-{run}"));
        std::fs::create_dir_all(&dir)?;
        // Both guests boot with a seed drive, as nodes do.
        let access = coloc_vm::baseline::access(&dir)?;
        let start = Instant::now();
        let mut vm = Vm::start(
            VmSpec {
                seed: Some(access.seed),
                ..spec("baseline", baseline.disk.clone())
            },
            &dir.join("vm"),
        )
        .await?;
        vm.wait_for_console(MULTI_USER, DEADLINE).await?;
        let mu = start.elapsed();
        eprintln!(
            "baseline run {run}: multi-user.target after {:.1}s",
            mu.as_secs_f64()
        );
        rows.push(("plain Debian (minbase + systemd, sshd)", run, mu, None));
        vm.power_cut().await?;
    }

    let ctl = TestController::start_with(ControllerConfig {
        heartbeat_interval_secs: 5,
        ..fast_config()
    })
    .await?;
    let mut admin = ctl.admin().await?;
    create_site(&mut admin, "paris-1").await?;
    for run in 0..args.runs {
        let name = format!("bench-{run}");
        let dir = work.path().join(&name);
        std::fs::create_dir_all(&dir)?;
        let token_file = dir.join("token");
        std::fs::write(&token_file, join_token(&mut admin, "paris-1", 3600).await?)?;
        let seed = dir.join("seed.img");
        let ok = std::process::Command::new(&args.coloc_image)
            .arg("seed")
            .args(["--hostname", &name, "--site", "paris-1"])
            .args([
                "--controller",
                &format!("https://10.0.2.2:{}", ctl.addr().port()),
            ])
            .arg("--ca-file")
            .arg(ctl.data_dir().join("ca.pem"))
            .arg("--join-token-file")
            .arg(&token_file)
            .arg("-o")
            .arg(&seed)
            .status()?
            .success();
        if !ok {
            bail!("coloc-image seed failed");
        }
        let start = Instant::now();
        let mut vm = Vm::start(
            VmSpec {
                seed: Some(seed),
                disk_size_mib: Some(4096),
                ..spec(&name, args.image.clone())
            },
            &dir.join("vm"),
        )
        .await?;
        let mu = async {
            vm.wait_for_console(MULTI_USER, DEADLINE).await?;
            Ok::<_, anyhow::Error>(start.elapsed())
        };
        let ready = async {
            wait_for("node ready", DEADLINE, || {
                let mut admin = admin.clone();
                let name = name.clone();
                async move {
                    let n = admin
                        .nodes
                        .get_node(pb::GetNodeRequest { name })
                        .await
                        .ok()?
                        .into_inner();
                    (n.status == pb::NodeStatus::Ready as i32).then_some(())
                }
            })
            .await?;
            Ok::<_, anyhow::Error>(start.elapsed())
        };
        let (mu, ready) = tokio::try_join!(mu, ready)?;
        eprintln!(
            "node run {run}: multi-user.target after {:.1}s, Ready in colocd after {:.1}s",
            mu.as_secs_f64(),
            ready.as_secs_f64()
        );
        rows.push((
            "coloc node image (first boot, with seed)",
            run,
            mu,
            Some(ready),
        ));
        vm.power_cut().await?;
    }

    println!("accelerator: {:?}", coloc_vm::qemu_accel());
    println!();
    println!(
        "| image | run | QEMU start → multi-user.target (s) | QEMU start → Ready in colocd (s) |"
    );
    println!("|---|---:|---:|---:|");
    for (what, run, mu, ready) in rows {
        println!(
            "| {what} | {} | {:.1} | {} |",
            run + 1,
            mu.as_secs_f64(),
            ready.map_or("—".to_string(), |r| format!("{:.1}", r.as_secs_f64()))
        );
    }
    Ok(())
}

//! coloc-bench-boot: how long a node takes from power-on to Ready in the
//! controller, against a plain Debian guest's time to multi-user.target,
//! both booted the same way (UEFI under QEMU, the same accelerator, CPUs
//! and memory) in the same run.
//!
//! Times are from starting QEMU: firmware, boot loader, kernel, systemd,
//! and for the node the seed, enrollment and the first session.
//!
//! multi-user.target is timed from inside the guest, the same way for both
//! images: over the test SSH channel the bench reads the guest's uptime and
//! systemd's monotonic timestamp for the target (both counted from the
//! kernel's start), and places the kernel's start on the host's clock from
//! the uptime and the moment of the call (the midpoint of the SSH round
//! trip, so the error is at most half a round trip). The serial console
//! is not used: the node's serial getty takes the console over before
//! multi-user.target and its status lines are lost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use coloc_tests::lab::{Lab, NodeSpec, vm_config};
use coloc_tests::*;
use coloc_vm::{Boot, Vm, VmSpec};

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
                ssh_key: Some(access.key),
                ..spec("baseline", baseline.disk.clone())
            },
            &dir.join("vm"),
        )
        .await?;
        let t = multi_user(&vm, start).await?;
        eprintln!(
            "baseline run {run}: kernel started after {:.1}s, multi-user.target after {:.1}s",
            t.kernel.as_secs_f64(),
            t.multi_user.as_secs_f64()
        );
        rows.push(("plain Debian (minbase + systemd, sshd)", run, t, None));
        vm.power_cut().await?;
    }

    let mut lab = Lab::start_with(
        // Nothing here waits for a node to be declared unreachable.
        vm_config(),
        args.image.clone(),
        args.coloc_image.clone(),
        "coloc-bench",
    )
    .await?;
    for run in 0..args.runs {
        let name = format!("bench-{run}");
        let node = NodeSpec::new(&name);
        let seed = lab.nodes.seed(&mut lab.admin, &name).await?;
        let dir = lab.nodes.node_dir(&name)?.join("vm");
        // The clock starts with QEMU, after the seed is written.
        let start = Instant::now();
        let mut vm = Vm::start(lab.nodes.vm_spec(&node, seed), &dir).await?;
        let mu = multi_user(&vm, start);
        let ready = async {
            wait_node_ready(&lab.admin, &name, DEADLINE).await?;
            Ok::<_, anyhow::Error>(start.elapsed())
        };
        let (mu, ready) = tokio::try_join!(mu, ready)?;
        eprintln!(
            "node run {run}: kernel started after {:.1}s, multi-user.target after {:.1}s, \
             Ready in colocd after {:.1}s",
            mu.kernel.as_secs_f64(),
            mu.multi_user.as_secs_f64(),
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
        "| image | run | QEMU start → kernel (s) | QEMU start → multi-user.target (s) | \
         QEMU start → Ready in colocd (s) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (what, run, t, ready) in rows {
        println!(
            "| {what} | {} | {:.1} | {:.1} | {} |",
            run + 1,
            t.kernel.as_secs_f64(),
            t.multi_user.as_secs_f64(),
            ready.map_or("—".to_string(), |r| format!("{:.1}", r.as_secs_f64()))
        );
    }
    Ok(())
}

/// When, counted from QEMU's start on the host's clock, the guest's kernel
/// started and systemd reached multi-user.target.
struct BootTimes {
    kernel: Duration,
    multi_user: Duration,
}

async fn multi_user(vm: &Vm, qemu_start: Instant) -> Result<BootTimes> {
    let deadline = Instant::now() + DEADLINE;
    vm.wait_for_ssh(DEADLINE).await?;
    loop {
        let before = qemu_start.elapsed();
        let out = vm
            .succeed(&[
                "sh",
                "-c",
                "cat /proc/uptime; \
                 systemctl show -p ActiveEnterTimestampMonotonic --value multi-user.target",
            ])
            .await?;
        let after = qemu_start.elapsed();
        let mut lines = out.lines();
        let uptime: f64 = lines
            .next()
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no uptime in {out:?}"))?;
        let reached_us: u64 = lines
            .next()
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no multi-user.target timestamp in {out:?}"))?;
        if reached_us > 0 {
            let call = before + (after - before) / 2;
            let kernel = call.saturating_sub(Duration::from_secs_f64(uptime));
            return Ok(BootTimes {
                kernel,
                multi_user: kernel + Duration::from_micros(reached_us),
            });
        }
        if Instant::now() > deadline {
            bail!("{}: multi-user.target not reached", vm.name());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

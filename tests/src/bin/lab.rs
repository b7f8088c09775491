//! coloc-lab: boots real node images in QEMU against a running colocd, for
//! `make demo`. Each node gets its own seed (hostname, controller address
//! as seen from the guest, CA, a fresh join token, the lab's SSH key) and
//! two extra disks (an NVMe drive with a serial number and a virtio one),
//! as a sysadmin would plug in hardware. Runs until SIGTERM, then powers
//! the VMs off.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use coloc_proto::controller::v1 as pb;
use coloc_tests::{Remote, Result, bail, join_token};
use coloc_vm::{Boot, DiskKind, DiskSpec, Vm, VmSpec};

#[derive(Debug, Parser)]
#[command(
    name = "coloc-lab",
    about = "Boot coloc node images in QEMU against a colocd"
)]
struct Args {
    /// CLI configuration of an admin (colocd init writes <data-dir>/admin.toml).
    #[arg(long)]
    admin_config: PathBuf,
    /// The node image (coloc-image build).
    #[arg(long)]
    image: PathBuf,
    /// The coloc-image binary, to write seeds.
    #[arg(long)]
    coloc_image: PathBuf,
    /// Port colocd listens on (on the host's loopback).
    #[arg(long, default_value_t = 7443)]
    port: u16,
    /// Site the nodes join (created in France if missing).
    #[arg(long, default_value = "paris-1")]
    site: String,
    /// Node names.
    #[arg(long = "node", default_values_t = ["node-1".to_string(), "node-2".to_string()])]
    nodes: Vec<String>,
    /// Working directory: overlays, seeds, consoles, the lab's SSH key.
    #[arg(long)]
    workdir: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.workdir)?;
    let remote = Remote::from_admin_config(&args.admin_config)?;
    let mut api = remote.api().await?;
    match api
        .sites
        .create_site(pb::CreateSiteRequest {
            name: args.site.clone(),
            country: "FR".into(),
            city: "Paris".into(),
            description: "QEMU lab".into(),
        })
        .await
    {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::AlreadyExists => {}
        Err(s) => return Err(s.into()),
    }
    let key = args.workdir.join("lab_ed25519");
    if !key.exists() {
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "coloc-lab", "-f"])
            .arg(&key)
            .status()?
            .success();
        if !ok {
            bail!("ssh-keygen failed");
        }
    }
    let ca_file = args.workdir.join("ca.pem");
    std::fs::write(&ca_file, &remote.ca_pem)?;
    let mut vms = Vec::new();
    for (i, name) in args.nodes.iter().enumerate() {
        let dir = args.workdir.join(name);
        std::fs::create_dir_all(&dir)?;
        let token_file = dir.join("join-token");
        std::fs::write(&token_file, join_token(&mut api, &args.site, 3600).await?)?;
        let seed = dir.join("seed.img");
        let ok = std::process::Command::new(&args.coloc_image)
            .arg("seed")
            .args(["--hostname", name, "--site", &args.site])
            .args(["--controller", &format!("https://10.0.2.2:{}", args.port)])
            .arg("--ca-file")
            .arg(&ca_file)
            .arg("--join-token-file")
            .arg(&token_file)
            .arg("--ssh-key-file")
            .arg(key.with_extension("pub"))
            .arg("-o")
            .arg(&seed)
            .status()?
            .success();
        if !ok {
            bail!("coloc-image seed failed for {name}");
        }
        let vm = Vm::start(
            VmSpec {
                name: name.clone(),
                image: args.image.clone(),
                boot: Boot::Uefi,
                cpus: 2,
                memory_mib: 1536,
                disks: vec![
                    DiskSpec {
                        id: "nvme0".into(),
                        size_mib: 2048,
                        kind: DiskKind::Nvme {
                            serial: format!("COLOC{:04}", i + 1),
                        },
                    },
                    DiskSpec {
                        id: "data0".into(),
                        size_mib: 1024,
                        kind: DiskKind::Virtio,
                    },
                ],
                seed: Some(seed),
                forwards: vec![],
                ssh_key: Some(key.clone()),
                disk_size_mib: Some(4096),
            },
            &dir,
        )
        .await?;
        eprintln!(
            "{name}: booting (console {}, ssh -p {} root@127.0.0.1 -i {})",
            vm.console_path().display(),
            vm.ssh_port().unwrap_or(0),
            key.display()
        );
        vms.push(vm);
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    for vm in &mut vms {
        if let Err(e) = vm.shutdown(Duration::from_secs(60)).await {
            eprintln!("shutdown: {e:#}");
        }
    }
    Ok(())
}

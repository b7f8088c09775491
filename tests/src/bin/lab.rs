//! coloc-lab: boots real node images in QEMU against a running colocd, for
//! `make demo`. Each node gets its own seed (hostname, controller address
//! as seen from the guest, CA, a fresh join token, the lab's SSH key) and
//! two extra disks (an NVMe drive with a serial number and a virtio one),
//! as a sysadmin would plug in hardware. Runs until SIGTERM, then powers
//! the VMs off.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use coloc_tests::lab::{NodeLab, NodeSpec, SshKey, nvme, virtio};
use coloc_tests::{Remote, Result, ensure_site, init_tool_logging, until_stopped};
use coloc_vm::DiskSpec;

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
    init_tool_logging();
    let args = Args::parse();
    std::fs::create_dir_all(&args.workdir)?;
    let remote = Remote::from_admin_config(&args.admin_config)?;
    let mut api = remote.api().await?;
    ensure_site(&mut api, &args.site, "QEMU lab").await?;
    let key = SshKey::reuse_or_generate(&args.workdir.join("lab_ed25519"), "coloc-lab")?;
    let ca_file = args.workdir.join("ca.pem");
    std::fs::write(&ca_file, &remote.ca_pem)?;
    let lab = NodeLab {
        image: args.image.clone(),
        coloc_image: args.coloc_image.clone(),
        key,
        controller_port: args.port,
        ca_file,
        site: args.site.clone(),
        workdir: args.workdir.clone(),
    };
    let mut vms = Vec::new();
    for (i, name) in args.nodes.iter().enumerate() {
        let mut node = NodeSpec::new(name);
        node.memory_mib = 1536;
        node.disks = vec![
            DiskSpec {
                id: "nvme0".into(),
                ..nvme(&format!("COLOC{:04}", i + 1), 2048)
            },
            virtio("data0", 1024),
        ];
        let vm = lab.boot(&mut api, &node).await?;
        eprintln!(
            "{name}: booting (console {}, ssh -p {} root@127.0.0.1 -i {})",
            vm.console_path().display(),
            vm.ssh_port().unwrap_or(0),
            lab.key.private.display()
        );
        vms.push(vm);
    }
    until_stopped().await?;
    for vm in &mut vms {
        if let Err(e) = vm.shutdown(Duration::from_secs(60)).await {
            eprintln!("shutdown: {e:#}");
        }
    }
    Ok(())
}
